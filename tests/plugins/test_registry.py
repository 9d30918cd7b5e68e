import subprocess
import sys

import pytest

from mestream.engine.config import SourceConfig
from mestream.plugins import (
    SINK_GROUP,
    SOURCE_GROUP,
    PluginError,
    lookup,
    make_sink,
    make_source,
    registered,
)
from tests.plugins import install_fake_plugin, on_path, plugin_env
from tests.plugins.fakecam import BrokenCamera, ListSink


def test_builtins_are_registered():
    assert {"synthetic", "video", "folder", "opencv"} <= set(registered(SOURCE_GROUP))
    assert {"zmq", "jsonl"} <= set(registered(SINK_GROUP))


def test_plugin_found_through_entry_points(tmp_path, monkeypatch):
    assert "brokencam" not in registered(SOURCE_GROUP)
    on_path(monkeypatch, install_fake_plugin(tmp_path))
    sources = registered(SOURCE_GROUP)
    assert sources["brokencam"].origin == "fakecam"
    source = make_source(SourceConfig(kind="brokencam", options={"bad_at": 2}))
    assert isinstance(source, BrokenCamera) and source.bad_at == 2
    assert isinstance(make_sink("listsink", {"name": "x"}), ListSink)


def test_unknown_option_names_the_table(tmp_path, monkeypatch):
    with pytest.raises(PluginError, match=r"source.options: .*unexpected keyword argument 'fsp'"):
        make_source(SourceConfig(kind="folder", path=str(tmp_path), options={"fsp": 3}))
    on_path(monkeypatch, install_fake_plugin(tmp_path / "plugin"))
    with pytest.raises(PluginError, match=r"sink 'listsink' options: .*'colour'"):
        make_sink("listsink", {"colour": "red"})


def test_unknown_kind_lists_what_exists():
    with pytest.raises(PluginError, match=r"no source kind 'gige'; available: .*synthetic"):
        lookup(SOURCE_GROUP, "gige")


def test_clashing_and_broken_plugins_are_named(tmp_path, monkeypatch):
    on_path(monkeypatch, install_fake_plugin(tmp_path, "[mestream.sources]\nsynthetic = x:Y\n"))
    with pytest.raises(PluginError, match="'synthetic' from fakecam .* clashes with the one from mestream"):
        lookup(SOURCE_GROUP, "synthetic")
    assert lookup(SOURCE_GROUP, "folder")  # one bad package does not break the other kinds
    out = subprocess.run(
        [sys.executable, "-m", "mestream", "sources"],
        capture_output=True,
        text=True,
        env=plugin_env(tmp_path),
        check=True,
    ).stdout
    assert "CLASH" in out and "fakecam" in out
    monkeypatch.undo()
    on_path(
        monkeypatch, install_fake_plugin(tmp_path / "b", "[mestream.sources]\nghost = no_such_module:Cam\n")
    )
    with pytest.raises(PluginError, match=r"'ghost' \(no_such_module:Cam, from fakecam\) failed to load"):
        lookup(SOURCE_GROUP, "ghost")


def test_sources_command_lists_builtins_and_plugins(tmp_path):
    root = install_fake_plugin(tmp_path)
    env = plugin_env(root)
    out = subprocess.run(
        [sys.executable, "-m", "mestream", "sources"], capture_output=True, text=True, env=env, check=True
    ).stdout
    for name in ("synthetic", "video", "folder", "opencv", "zmq", "jsonl", "brokencam", "listsink"):
        assert f"  {name} " in out
    assert "fakecam" in out and "Test camera, paced at" in out


def test_sources_command_says_which_backends_can_run_here(tmp_path):
    from tests.engine.backends.fakebackends import ENTRY_POINTS

    root = install_fake_plugin(tmp_path, ENTRY_POINTS)
    env = plugin_env(root)
    out = subprocess.run(
        [sys.executable, "-m", "mestream", "sources"], capture_output=True, text=True, env=env, check=True
    ).stdout
    backends = out.split("backends (mestream.backends):")[1].splitlines()
    row = backends.index(next(line for line in backends if line.startswith("  needsgpu ")))
    assert "fakecam" in backends[row] and backends[row + 2].strip().startswith(
        "unavailable here: no CUDA device"
    )
    row = backends.index(next(line for line in backends if line.startswith("  onnxruntime ")))
    assert backends[row + 2].strip() == "available here"


def test_builtins_are_exactly_the_entry_points_pyproject_declares():
    """One declaration: what is registered as mestream's is what pyproject.toml lists."""
    import tomllib

    from tests.plugins import CHECKOUT

    declared = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]["entry-points"]
    for group, kinds in declared.items():
        own = {name: p.target for name, p in registered(group).items() if p.origin == "mestream"}
        assert own == kinds, group


def test_a_source_tree_that_was_not_installed_says_to_install_it(monkeypatch):
    """No second table of built-ins: without mestream's own entry points, the error says what to run."""
    from importlib import metadata

    from mestream.plugins import NotInstalled

    others = [
        ep
        for ep in metadata.entry_points(group=SOURCE_GROUP)
        if ep.dist is None or ep.dist.name != "mestream"
    ]
    monkeypatch.setattr(metadata, "entry_points", lambda group: others)
    with pytest.raises(NotInstalled, match=r"not installed\. Run `pip install -e \.` in it"):
        lookup(SOURCE_GROUP, "synthetic")
    with pytest.raises(PluginError, match=r"pip install -e \."):
        make_source(SourceConfig(kind="synthetic"))
