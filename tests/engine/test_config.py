import dataclasses

import pytest

from mestream.engine.config import (
    PRESETS,
    ConfigError,
    FaceConfig,
    RecogConfig,
    RingConfig,
    RunConfig,
    SourceConfig,
    SpotConfig,
    check_kinds,
    load_config,
    merge,
)


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
    path.write_text(
        'duration = 5\n[source]\nkind = "folder"\nfps = 200\n[publish]\nendpoint = "ipc:///tmp/x"\n'
        '[[publish.sinks]]\nkind = "jsonl"\noptions = { path = "a.jsonl" }\n'
    )
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
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.duration = 3.0  # type: ignore[misc]
    assert merge(config, {"source": {"seed": 4}}).source.seed == 4 and config.source.seed == 0


# ----------------------------------------------------------------------------- live spotting tables


@pytest.mark.parametrize(
    "build, key",
    [
        (lambda: FaceConfig(detector="dlib"), "face.detector"),
        (lambda: FaceConfig(detector="fixed"), "face.roi"),
        (lambda: FaceConfig(detector="fixed", roi=(0, 0, 0, 90)), "face.roi"),
        (lambda: FaceConfig(detector="fixed", roi=(0, 0, 90)), "face.roi"),
        (lambda: FaceConfig(detector="yunet"), "face.model"),
        (lambda: FaceConfig(scale=0.9), "face.scale"),
        (lambda: FaceConfig(smoothing=0.0), "face.smoothing"),
        (lambda: FaceConfig(deadband=0.5), "face.deadband"),
        (lambda: FaceConfig(detect_width=32), "face.detect_width"),
        (lambda: FaceConfig(lost_after=0), "face.lost_after"),
        (lambda: FaceConfig(crop_size=16), "face.crop_size"),
        (lambda: SpotConfig(hop_ms=250.0), "spot.hop_ms"),
        (lambda: SpotConfig(hop_ms=0.0), "spot.hop_ms"),
        (lambda: SpotConfig(settle_steps=-1), "spot.settle_steps"),
        (lambda: SpotConfig(t_cpn=2.0), "spot.t_cpn"),
        (lambda: SpotConfig(t_crn=-0.5), "spot.t_crn"),
        (lambda: SpotConfig(t_nms=1.5), "spot.t_nms"),
        (lambda: SpotConfig(refine_lambda=0.6), "spot.refine_lambda"),
        (lambda: SpotConfig(max_lag_ms=10.0), "spot.max_lag_ms"),
        (lambda: RecogConfig(queue=0), "recognise.queue"),
        (lambda: RecogConfig(batch=0), "recognise.batch"),
        (lambda: RingConfig(when_full="block"), "ring.when_full"),
        (lambda: RunConfig(cameras=0), "cameras"),
        (lambda: RunConfig(cameras=17), "cameras"),
        (lambda: RunConfig(spot=SpotConfig(enabled=False)), "recognise.enabled"),
    ],
)
def test_live_tables_reject_bad_values_naming_the_key(build, key):
    """A lab's typo must stop the run with the key to fix, not run with a silently odd setting."""
    with pytest.raises(ConfigError) as err:
        build()
    assert str(err.value).startswith(f"{key}: must be "), str(err.value)


def test_live_tables_accept_their_boundaries():
    """The limits are inclusive where the docs say so; the check above must not over-reject."""
    assert FaceConfig(detector="fixed", roi=(10, 20, 200, 240)).roi == (10, 20, 200, 240)
    assert FaceConfig(detector="yunet", model="face_detection_yunet_2023mar.onnx").model
    assert FaceConfig(scale=1.0, smoothing=1.0, detect_width=0, crop_size=32).crop_size == 32
    assert SpotConfig(hop_ms=200.0, t_cpn=0.0, t_crn=1.0, t_nms=None, refine_lambda=0.5).hop_ms == 200.0
    assert RecogConfig(queue=1, batch=1).queue == 1
    assert [RingConfig(when_full=w).when_full for w in ("auto", "overwrite", "wait")] == [
        "auto",
        "overwrite",
        "wait",
    ]
    assert RunConfig(cameras=16).cameras == 16
    off = RunConfig(spot=SpotConfig(enabled=False), recognise=RecogConfig(enabled=False))
    assert not off.spot.enabled and not off.recognise.enabled
    assert RunConfig(recognise=RecogConfig(enabled=False)).spot.enabled  # spot without recognition is fine


def test_camera_sources_copies_the_source_per_camera_with_consecutive_seeds():
    """cam0 → cam0, cam1, cam2: each copy is its own synthetic subject (seed + i)."""
    source = SourceConfig(kind="synthetic", fps=250.0, seed=5, resolution="320x240")
    cams = RunConfig(source=source, cameras=3).camera_sources()
    assert [c.name for c in cams] == ["cam0", "cam1", "cam2"]
    assert [c.seed for c in cams] == [5, 6, 7]
    assert all(c.kind == "synthetic" and c.fps == 250.0 and c.resolution == "320x240" for c in cams)
    assert RunConfig(source=source).camera_sources() == [source]  # one camera: the source as given


def test_camera_sources_names_copies_of_a_custom_id_and_appends_extra_sources():
    """Event camera ids must differ, and [[sources]] run beside the copies, after them."""
    side = SourceConfig(kind="video", name="side", path="side.mp4")
    config = RunConfig(source=SourceConfig(name="lab", seed=2), cameras=3, sources=(side,))
    cams = config.camera_sources()
    assert [c.name for c in cams] == ["lab", "lab-1", "lab-2", "side"]
    assert [c.seed for c in cams[:3]] == [2, 3, 4] and cams[3] == side
    one = RunConfig(sources=(side,)).camera_sources()
    assert [c.name for c in one] == ["cam0", "side"]


@pytest.mark.parametrize(
    "changes",
    [
        {"cameras": 2, "sources": (SourceConfig(kind="video", name="cam1", path="x.mp4"),)},
        {"sources": (SourceConfig(kind="video", path="x.mp4"),)},  # its default name is cam0 too
        {"source": SourceConfig(name="lab"), "cameras": 2, "sources": (SourceConfig(name="lab-1"),)},
    ],
)
def test_camera_sources_rejects_duplicate_names(changes):
    """Two cameras with one id would merge their events, counters and scores: refused when the
    config is built, so a file's error names the file."""
    with pytest.raises(ConfigError, match="^sources: must be cameras with distinct names"):
        RunConfig(**changes)


def test_toml_face_spot_recognise_and_sources_tables(tmp_path):
    """The live tables load from a lab's file, with ints coerced where floats are expected."""
    path = tmp_path / "live.toml"
    path.write_text(
        "cameras = 2\n"
        '[source]\nkind = "synthetic"\n'
        '[face]\ndetector = "fixed"\nroi = [10, 20, 200, 240]\nsmoothing = 1\n'
        "[spot]\nhop_ms = 50\nt_cpn = 0.4\nsettle_steps = 3\n"
        "[recognise]\nqueue = 8\nbatch = 2\n"
        '[ring]\nwhen_full = "wait"\n'
        '[[sources]]\nkind = "video"\nname = "side"\npath = "side.mp4"\n'
        '[[sources]]\nkind = "folder"\nname = "casme"\npath = "sub01/EP02"\nfps = 200\n'
    )
    config = load_config(path)
    assert config.face.detector == "fixed" and config.face.roi == (10, 20, 200, 240)
    assert config.face.smoothing == 1.0 and isinstance(config.face.smoothing, float)
    assert config.spot.hop_ms == 50.0 and isinstance(config.spot.hop_ms, float)
    assert config.spot.t_cpn == 0.4 and config.spot.settle_steps == 3 and config.spot.enabled
    assert (config.recognise.queue, config.recognise.batch, config.recognise.enabled) == (8, 2, True)
    assert config.ring.when_full == "wait"
    assert all(isinstance(s, SourceConfig) for s in config.sources)
    assert [(s.kind, s.name, s.path) for s in config.sources] == [
        ("video", "side", "side.mp4"),
        ("folder", "casme", "sub01/EP02"),
    ]
    assert config.sources[1].fps == 200.0
    assert [c.name for c in config.camera_sources()] == ["cam0", "cam1", "side", "casme"]


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[spot]\nhop = 50\n", "unknown key 'spot.hop'"),
        ("[face]\ndetecter = 'haar'\n", "unknown key 'face.detecter'"),
        ("[recognise]\nqueue_len = 4\n", "unknown key 'recognise.queue_len'"),
        ("[[sources]]\nkind = 'video'\nfsp = 30\n", "unknown key 'sources[0].fsp'"),
        ("[face]\ndetector = 'dlib'\n", "face.detector: must be one of haar, yunet, fixed"),
        ("[face]\ndetector = 'fixed'\n", "face.roi: must be"),
        ("[face]\nroi = [1.5, 2, 3, 4]\n", "face.roi[0]: expected int"),
        ("[spot]\nhop_ms = 500\n", "spot.hop_ms: must be within (0, 200]"),
        ("[spot]\nt_cpn = 2\n", "spot.t_cpn: must be"),
        ("[spot]\nenabled = false\n", "recognise.enabled: must be false"),
        ("[recognise]\nqueue = 0\n", "recognise.queue: must be >= 1"),
        ("[ring]\nwhen_full = 'drop'\n", "ring.when_full: must be one of auto, overwrite, wait"),
        ("cameras = 0\n", "cameras: must be 1..16"),
        (
            "cameras = 2\n[source]\nseed = 1\n[[sources]]\nname = 'cam1'\n",
            "bad.toml: sources: must be cameras with distinct names, got 'cam1'",
        ),
    ],
)
def test_malformed_live_tables_name_file_and_key(tmp_path, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert needle in str(err.value), str(err.value)


def test_spot_table_lists_the_known_keys_on_a_typo():
    """The error says what would have been right, so the fix needs no trip to the docs."""
    with pytest.raises(ConfigError) as err:
        merge(RunConfig(), {"spot": {"hopms": 50}})
    message = str(err.value)
    assert "unknown key 'spot.hopms'" in message and "hop_ms" in message and "t_cpn" in message


def test_demo_preset_writes_the_summary(tmp_path):
    """`make demo` leaves its summary beside its event log and ground truth."""
    demo = load_config(preset="demo")
    assert demo.summary == "runs/demo/summary.json"
    assert demo.publish.log == "runs/demo/events.jsonl" and demo.ground_truth == "runs/demo/ground_truth.json"
    assert RunConfig().summary == ""  # a plain run writes no file unless asked
    path = tmp_path / "short.toml"
    path.write_text("duration = 2\n")
    assert load_config(path, preset="demo").summary == "runs/demo/summary.json"


# ------------------------------------------------------------------------------ what a newcomer's slips read


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[source]\nfsp = 300\n", "unknown key 'source.fsp' (did you mean 'fps'?)"),
        ("[spot]\nhopms = 50\n", "unknown key 'spot.hopms' (did you mean 'hop_ms'?)"),
        ("duraton = 5\n", "unknown key 'duraton' (did you mean 'duration'?)"),
        ("[[source]]\nkind = 'video'\n", "source: [[source]] is a list of tables, but there is one [source]"),
        (
            "[sources]\nkind = 'video'\n",
            "sources: [sources] is a single table, but each further camera is its own [[sources]] table",
        ),
        ("[source]\nkind = 'video'\n[[source]]\nkind = 'folder'\n", "a run's cameras are one [source] table"),
        (
            "[sources]\nkind = 'video'\n[[sources]]\nkind = 'folder'\n",
            "a run's cameras are one [source] table",
        ),
        ("[spot]\nt_cpn = -1\n", "spot.t_cpn: must be within 0..1 (omit the key to use the model's value)"),
        ("[spot]\nsample_hz = 0\n", "spot.sample_hz: must be 5..200 (omit the key to use the model's value)"),
        ("[face]\ncrop_size = 0\n", "face.crop_size: must be >= 32 (omit the key to use the model's value)"),
    ],
)
def test_config_errors_suggest_the_fix(tmp_path, text, needle):
    """Every error names the file and the key, and says what was probably meant."""
    path = tmp_path / "lab.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"config file {path}: ") and needle in message, message
    assert "Cannot overwrite" not in message or "[[sources]]" in message  # never a raw parser message alone


def test_a_file_with_only_sources_tables_runs_exactly_those_cameras(tmp_path):
    """No default synthetic cam0 slipped in beside the cameras the lab listed."""
    path = tmp_path / "lab.toml"
    path.write_text(
        '[[sources]]\nkind = "video"\nname = "side"\npath = "side.mp4"\n'
        '[[sources]]\nkind = "folder"\nname = "casme"\npath = "sub01"\nfps = 200\n'
    )
    cams = load_config(path).camera_sources()
    assert [(c.kind, c.name) for c in cams] == [("video", "side"), ("folder", "casme")]
    assert cams[1].fps == 200.0
    path.write_text('[[sources]]\nkind = "video"\nname = "side"\nfsp = 30\n')
    with pytest.raises(ConfigError, match=r"unknown key 'sources\[0\].fsp' \(did you mean 'fps'\?\)"):
        load_config(path)
    path.write_text(
        '[source]\nkind = "synthetic"\n[[sources]]\nkind = "video"\nname = "side"\npath = "s.mp4"\n'
    )
    assert [c.name for c in load_config(path).camera_sources()] == ["cam0", "side"]  # said, so kept


def test_fields_that_defer_to_the_model_are_none_until_set(tmp_path):
    """One spelling: None in Python, an omitted key in TOML; a value given is taken as given."""
    spot, face = SpotConfig(), FaceConfig()
    assert spot.sample_hz is None and (spot.t_cpn, spot.t_crn, spot.t_nms) == (None, None, None)
    assert face.crop_size is None
    path = tmp_path / "lab.toml"
    path.write_text("[spot]\nsample_hz = 30\nt_cpn = 0\n[face]\ncrop_size = 64\n")
    config = load_config(path)
    assert config.spot.sample_hz == 30.0 and isinstance(config.spot.sample_hz, float)
    assert config.spot.t_cpn == 0.0 and config.spot.t_crn is None and config.face.crop_size == 64
    path.write_text("[spot]\nt_nms = 'model'\n")
    with pytest.raises(ConfigError, match="spot.t_nms: expected float, got str"):
        load_config(path)


@pytest.mark.parametrize(
    "config, needle",
    [
        (
            RunConfig(source=SourceConfig(kind="nope")),
            "source.kind: no source kind 'nope'; available: folder, ",
        ),
        (
            RunConfig(source=SourceConfig(kind="vidoe")),
            "source.kind: no source kind 'vidoe' (did you mean 'video'?)",
        ),
        (
            RunConfig(sources=(SourceConfig(kind="foldr", name="b"),)),
            "sources[0].kind: no source kind 'foldr' (did ",
        ),
        (
            merge(RunConfig(), {"publish": {"sinks": [{"kind": "jsnl"}]}}),
            "publish.sinks[0].kind: no sink kind 'jsnl'",
        ),
        (merge(RunConfig(), {"inference": {"backend": "onnx"}}), "inference.backend: no backend kind 'onnx'"),
    ],
)
def test_unknown_kinds_name_their_key(config, needle):
    with pytest.raises(ConfigError) as err:
        check_kinds(config)
    assert str(err.value).startswith(needle), str(err.value)


def test_known_kinds_pass():
    check_kinds(
        merge(
            RunConfig(),
            {
                "source": {"kind": "video", "path": "x.mp4"},
                "publish": {"sinks": [{"kind": "jsonl"}]},
                "inference": {"backend": "tensorrt"},
            },
        )
    )
