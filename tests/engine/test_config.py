import pytest

from mestream.engine.config import ConfigError, PRESETS, RunConfig, load_config, merge


def test_defaults_and_presets():
    assert load_config() == RunConfig()
    demo = load_config(preset="demo")
    assert demo.duration == 30.0 and demo.publish.log and demo.ground_truth


def test_toml_overlays_preset(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text('duration = 5\n[source]\nkind = "folder"\nfps = 200\n[publish]\nendpoint = "ipc:///tmp/x"\n'
                    '[[publish.sinks]]\nkind = "jsonl"\noptions = { path = "a.jsonl" }\n')
    config = load_config(path, preset="demo")
    assert config.duration == 5.0 and isinstance(config.duration, float)
    assert config.source.kind == "folder" and config.source.fps == 200.0
    assert config.publish.endpoint == "ipc:///tmp/x"
    assert config.publish.log == PRESETS["demo"].publish.log  # untouched keys keep the preset's value
    assert config.publish.sinks[0].kind == "jsonl" and config.publish.sinks[0].options["path"] == "a.jsonl"


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[source]\nfsp = 300\n", "'source.fsp'"),
        ("bogus = 1\n", "'bogus'"),
        ("[source]\nfps = 'fast'\n", "source.fps"),
        ("[ring]\nseconds = [1]\n", "ring.seconds"),
        ("[source\n", "not valid TOML"),
        ("stats_interval = 0\n", "stats_interval: must be >= 0.05 s"),
        ("duration = -1\n", "duration: must be >= 0"),
        ("[ring]\nseconds = 0\n", "ring.seconds: must be > 0"),
        ("[publish]\nhwm = 0\n", "publish.hwm: must be >= 1"),
        ("[source]\nfps = -5\n", "source.fps: must be >= 0"),
    ],
)
def test_malformed_config_names_file_and_key(tmp_path, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert needle in str(err.value) and str(path) in str(err.value)


def test_missing_file_and_unknown_preset(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        load_config(preset="huge")


def test_configs_are_frozen():
    config = RunConfig()
    with pytest.raises(Exception):
        config.duration = 3.0  # type: ignore[misc]
    assert merge(config, {"source": {"seed": 4}}).source.seed == 4 and config.source.seed == 0
