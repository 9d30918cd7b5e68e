import pytest

from mestream.engine.config import ConfigError, PRESETS, RunConfig, load_config, merge


def test_defaults_and_presets():
    assert load_config() == RunConfig()
    demo = load_config(preset="demo")
    assert demo.duration == 30.0 and demo.publish.log and demo.ground_truth


def test_inference_table_overlays_defaults(tmp_path):
    path = tmp_path / "gpu.toml"
    path.write_text('[inference]\nbackend = "tensorrt"\nmax_batch = 32\n[inference.tensorrt]\nfp16 = false\n')
    inference = load_config(path).inference
    assert inference.backend == "tensorrt" and inference.max_batch == 32 and inference.opt_batch == 4
    assert inference.tensorrt.fp16 is False and inference.tensorrt.streams == 2


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
        ("[inference]\nbackend = 3\n", "inference.backend"),
        ("[inference]\nthreads = 0\n", "inference.threads: must be >= 1"),
        ("[inference]\nopt_batch = 32\n", "inference.opt_batch: must be 1..max_batch (16)"),
        ("[inference.tensorrt]\nstreams = 0\n", "inference.tensorrt.streams"),
        ("[inference.tensorrt]\nfp61 = true\n", "'inference.tensorrt.fp61'"),
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
