"""`mestream export`: the shipped export is fresh and checks clean; a backend that disagrees
fails the check; bad input is a one-line error; the check runs without torch."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from mestream import cli
from mestream.engine.backends import BackendError
from mestream.engine.backends.onnxrt import OnnxRuntimeBackend
from mestream.engine.manifest import Manifest, shipped_export_dir
from tests.engine.backends.fakebackends import ENTRY_POINTS
from tests.export.conftest import needs_torch
from tests.plugins import install_fake_plugin, on_path


def _hide_torch(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )


@needs_torch
def test_the_shipped_export_is_fresh_and_its_parity_is_within_tolerance():
    from mestream.export.onnx_export import default_checkpoints, is_stale

    assert is_stale(shipped_export_dir(), default_checkpoints(), opset=17) is None
    manifest = Manifest.load(shipped_export_dir())
    assert list(manifest.subgraphs) == [
        "mesnet.encoder",
        "mesnet.window_head",
        "mesnet.crn",
        "akmnet.encoder",
        "akmnet.clip_head",
    ]
    for key, subgraph in manifest.subgraphs.items():
        for group in ("random", "camera"):
            assert set(subgraph.parity[group]) == {t.name for t in subgraph.outputs}, key
            assert max(subgraph.parity[group].values()) <= 1e-4, (key, group)
    for name in ("mesnet", "akmnet"):
        assert manifest.models[name].checkpoint == f"../{name}-demo.pt"


def test_check_passes_on_the_shipped_export(capsys):
    assert cli.main(["export", "--check"]) == 0
    out = capsys.readouterr().out
    assert "[FAILED]" not in out and out.strip().splitlines()[-1].startswith("[PASSED]")
    for key in Manifest.load(shipped_export_dir()).subgraphs:
        assert f"{key} " in out
    assert "torch@export" in out and " camera " in out


def test_check_fails_when_a_backend_disagrees(monkeypatch, capsys, tmp_path):
    on_path(
        monkeypatch, install_fake_plugin(tmp_path, ENTRY_POINTS)
    )  # offbyone: a plugin backend that is off by 1e-3
    assert cli.main(["export", "--check", "--backends", "onnxruntime,offbyone"]) == 1
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.startswith("[FAILED]")]
    assert failed and all(" offbyone " in line or "comparisons differ" in line for line in failed)
    assert any("mesnet.crn" in line and "offsets" in line and "0.001" in line for line in failed)
    assert any(line.startswith("[PASSED]") and " onnxruntime " in line for line in out.splitlines())


def test_check_runs_without_torch_against_the_recorded_outputs(monkeypatch, capsys):
    _hide_torch(monkeypatch)
    assert cli.main(["export", "--check", "--backends", "onnxruntime,torch"]) == 0
    out = capsys.readouterr().out
    assert "[SKIP] torch: " in out and "pip install 'mestream[train]'" in out
    assert "torch@export" in out and "[FAILED]" not in out


def test_export_without_torch_names_the_extra(monkeypatch, capsys, tmp_path):
    _hide_torch(monkeypatch)
    assert cli.main(["export", "--out", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert not out and err.count("\n") == 1 and "pip install 'mestream[train]'" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--checkpoint", "mesnet=/no/such/mesnet.pt"], "checkpoint /no/such/mesnet.pt: no such file"),
        (["--checkpoint", "/no/such/file.pt"], "checkpoint /no/such/file.pt: no such file"),
        (["--checkpoint", "resnet=x.pt"], "unknown model 'resnet'"),
        (["--opset", "16"], "--opset 16"),
        (["--backends", "onnxruntime"], "--backends only applies to --check"),
    ],
)
def test_bad_input_is_one_line_with_exit_2(argv, message, capsys, tmp_path):
    if "/no/such" in " ".join(argv) and importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch to read a checkpoint")
    assert cli.main(["export", "--out", str(tmp_path / "out"), *argv]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("mestream export: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_unknown_backend_kind_is_refused(capsys):
    assert cli.main(["export", "--check", "--backends", "onnxruntime,nope"]) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "onnxruntime" in err and err.count("\n") == 1


@needs_torch
def test_if_stale_exports_only_when_needed(export_copy, small_checkpoints, capsys):
    argv = [
        "export",
        "--out",
        str(export_copy),
        "--if-stale",
        "--no-progress",
        *[f"--checkpoint={m}={p}" for m, p in small_checkpoints.items()],
    ]
    before = (export_copy / "manifest.json").stat().st_mtime_ns
    assert cli.main(argv) == 0
    assert "up to date" in capsys.readouterr().out
    assert (export_copy / "manifest.json").stat().st_mtime_ns == before
    (export_copy / "mesnet.crn.onnx").write_bytes(b"x")
    assert cli.main([*argv, "--check", "--backends", "onnxruntime,torch"]) == 0
    out = capsys.readouterr().out
    assert "exporting: model mesnet.crn" in out and "exported 5 subgraphs" in out and "[PASSED]" in out
    assert Manifest.load(export_copy).verify("mesnet.crn")


def test_a_corrupt_onnx_file_is_a_clear_error_from_onnxruntime(tmp_path):
    """Garbage bytes whose sha256 the manifest carries (a file damaged before export finished,
    or a hand-edited manifest): onnxruntime's own error must not be all the user sees."""
    from mestream.engine.manifest import file_sha256
    from mestream.export.check import check_backends

    root = tmp_path / "export"
    root.mkdir()
    data = json.loads((shipped_export_dir() / "manifest.json").read_text())
    del data["models"]["akmnet"]
    subgraph = data["models"]["mesnet"]["subgraphs"][0]
    (root / subgraph["file"]).write_bytes(b"\x00garbage, not a protobuf\xff" * 10)
    subgraph["sha256"] = file_sha256(root / subgraph["file"])
    data["models"]["mesnet"]["subgraphs"] = [subgraph]
    (root / "manifest.json").write_text(json.dumps(data))
    manifest = Manifest.load(root)
    with pytest.raises(
        BackendError,
        match=r"model mesnet\.encoder: onnxruntime cannot load .*mesnet\.encoder\.onnx: "
        r"the file is damaged",
    ):
        OnnxRuntimeBackend(manifest, "mesnet.encoder").activate()
    rows = check_backends(manifest, ["onnxruntime"], echo=lambda line: None)
    assert rows and not any(r.ok for r in rows) and "damaged" in rows[0].error


def test_damaged_camera_inputs_are_named(export_copy, capsys, monkeypatch):
    (export_copy / "inputs.npz").write_bytes(b"not a zip")
    monkeypatch.setattr("mestream.export.command.shipped_export_dir", lambda: export_copy)
    assert cli.main(["export", "--check", "--backends", "onnxruntime"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inputs.npz: the camera inputs cannot be read" in err


def test_export_help_imports_neither_torch_nor_the_networks():
    """`export --check` runs on a runtime-only install: nothing that needs torch loads before an export."""
    probe = (
        "import sys\nfrom mestream import cli\n"
        "try:\n    cli.main(['export', '--help'])\nexcept SystemExit:\n    pass\n"
        "import mestream.export.check, mestream.export.onnx_export\n"
        "print(sorted(m for m in sys.modules if m in ('torch', 'onnx') or m.endswith(('.network', '.losses'))"
        " or m == 'mestream.export.subgraphs'))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


@needs_torch
def test_a_multi_line_error_is_printed_on_one_line(monkeypatch, capsys, tmp_path):
    """torch.onnx.export's and onnx.checker's messages, which ExportError quotes, span lines."""
    from mestream.export import command
    from mestream.export.errors import ExportError

    def fail(*args, **kwargs):
        raise ExportError("model mesnet.encoder: torch.onnx.export failed: RuntimeError: first\n\n  second")

    monkeypatch.setattr(command, "export_all", fail)
    assert cli.main(["export", "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert (
        err == "mestream export: model mesnet.encoder: torch.onnx.export failed: RuntimeError: first second\n"
    )


@needs_torch
def test_an_out_folder_that_cannot_be_made_is_exit_2(capsys, tmp_path):
    taken = tmp_path / "a-file"
    taken.write_text("not a folder")
    assert cli.main(["export", "--out", str(taken), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mestream export: ") and str(taken) in err and err.count("\n") == 1, err


@needs_torch
def test_the_shipped_export_matches_what_the_current_code_exports(tmp_path):
    """The freshness check above compares hashes of checkpoints and files; this one catches a
    change to the network or subgraph code that was not re-exported: the shipped ONNX files and
    a fresh export of the same checkpoints must give the same outputs on the saved camera inputs."""
    from mestream.engine.backends.onnxrt import OnnxRuntimeBackend
    from mestream.export.check import load_inputs
    from mestream.export.onnx_export import export_all

    fresh = export_all(out=tmp_path, progress=False)
    shipped = Manifest.load(shipped_export_dir())
    assert list(fresh.subgraphs) == list(shipped.subgraphs)
    inputs = load_inputs(shipped.root, shipped)
    assert set(inputs) == set(shipped.subgraphs)
    for key, (feed, _) in inputs.items():
        assert fresh.subgraph(key).inputs == shipped.subgraph(key).inputs, key
        with OnnxRuntimeBackend(shipped, key) as old, OnnxRuntimeBackend(fresh, key) as new:
            want = {k: v.copy() for k, v in old.infer(feed).items()}
            got = new.infer(feed)
        for name, value in want.items():
            # float32 rounding differs between ONNX Runtime and torch releases by ~1e-6; a change
            # to the network that was not re-exported moves the outputs by orders more
            np.testing.assert_allclose(
                got[name],
                value,
                rtol=1e-5,
                atol=1e-5,
                err_msg=f"{key} {name}: re-run `mestream export --out models/weights/onnx`",
            )
