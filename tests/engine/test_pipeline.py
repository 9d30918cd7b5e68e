"""The pipeline and `mestream run` end to end: stats out, bad input stops cleanly and keeps
what was already written."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from mestream.engine.backends import BackendUnavailable
from mestream.engine.config import (
    ConfigError,
    InferenceConfig,
    PublishConfig,
    RunConfig,
    SinkConfig,
    SourceConfig,
)
from mestream.engine.events import ALL_CAMERAS
from mestream.engine.pipeline import Pipeline
from mestream.engine.sinks import read_jsonl
from mestream.engine.spot import SpotStage
from tests.cameras.test_replay import write_folder
from tests.plugins import install_fake_plugin, on_path


def mestream(*args, env=None, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "mestream", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        **kwargs,
    )


def free_endpoint(tmp_path, name="pub"):
    return f"ipc://{tmp_path}/{name}.sock"


def test_wrong_frame_shape_stops_with_a_clear_error_and_keeps_the_log(tmp_path, monkeypatch):
    on_path(monkeypatch, install_fake_plugin(tmp_path / "plugin"))
    log_path = tmp_path / "events.jsonl"
    config = RunConfig(
        source=SourceConfig(kind="brokencam", options={"bad_at": 300, "fps": 500.0}),
        publish=PublishConfig(endpoint="", log=str(log_path), sinks=(SinkConfig(kind="listsink"),)),
        stats_interval=0.2,
        progress=False,
    )
    pipeline = Pipeline(config)
    summary = pipeline.run()
    assert "source 'brokencam', frame 300" in summary.error and "(24, 31)" in summary.error
    assert summary.frames_in == 300  # every good frame before the bad one went through
    topics = [(topic, p.get("state")) for topic, p in read_jsonl(log_path)]
    assert topics[0] == ("mestream.health", "started")
    assert ("mestream.health", "source_error") in topics
    assert topics[-1] == ("mestream.health", "stopped")
    assert sum(1 for t, _ in topics if t == "mestream.stats") >= 2  # periodic + final
    listed = pipeline.bus._sinks[-1].sent  # the plugin sink saw the same events, in the same order
    assert [(t, p.get("state")) for t, p in listed] == topics


def test_cli_rejects_bad_config_and_missing_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[source]\nfsp = 300\n")
    result = mestream("run", "--config", str(bad), "--duration", "1")
    assert result.returncode == 2 and "'source.fsp'" in result.stderr and str(bad) in result.stderr
    result = mestream("run", "--source", "video", "--path", str(tmp_path / "none.mp4"), "--publish", "none")
    assert result.returncode == 2 and "none.mp4 does not exist" in result.stderr
    result = mestream("run", "--source", "gige")
    assert result.returncode == 2 and "no source kind 'gige'" in result.stderr


def test_run_loads_the_models_first_and_names_a_missing_export_or_backend(tmp_path):
    result = mestream("run", "--models", str(tmp_path / "my-export"), "--publish", "none", "--duration", "1")
    assert (
        result.returncode == 2
        and f"no export manifest here (run `mestream export --out {tmp_path / 'my-export'}`)" in result.stderr
    )
    result = mestream("run", "--backend", "onnx", "--publish", "none", "--duration", "1")
    assert result.returncode == 2 and "inference.backend (--backend): no backend kind 'onnx'" in result.stderr


def test_run_on_a_backend_that_cannot_run_here_falls_back_and_says_so(tmp_path, monkeypatch):
    from tests.engine.backends.fakebackends import ENTRY_POINTS

    on_path(monkeypatch, install_fake_plugin(tmp_path / "plugin", ENTRY_POINTS))
    log_path = tmp_path / "events.jsonl"
    config = RunConfig(
        source=SourceConfig(pace=False),
        publish=PublishConfig(endpoint="", log=str(log_path)),
        inference=InferenceConfig(backend="needsgpu"),
        duration=0.2,
        progress=False,
    )
    summary = Pipeline(config).run()
    assert not summary.error
    text = summary.format()
    assert "models: onnxruntime backend, subgraphs mesnet.encoder" in text
    assert "backend 'needsgpu' cannot run here (no CUDA device initializes" in text
    started = next(p for t, p in read_jsonl(log_path) if p.get("state") == "started")
    assert any("using 'onnxruntime' instead" in line for line in started["detail"]["models"])
    with pytest.raises(BackendUnavailable, match="backend 'needsgpu' cannot run here"):
        Pipeline(replace(config, inference=InferenceConfig(backend="needsgpu", fallback=False)))


def test_run_synthetic_publishes_stats_to_listen_and_log(tmp_path):
    endpoint = free_endpoint(tmp_path)
    heard = tmp_path / "heard.jsonl"
    log_path = tmp_path / "events.jsonl"
    truth = tmp_path / "truth.json"
    listener = subprocess.Popen(
        [sys.executable, "-m", "mestream", "listen", endpoint, "--jsonl", str(heard), "--duration", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # let the listener connect before the engine binds and starts
        result = mestream(
            "run",
            "--source",
            "synthetic",
            "--duration",
            "3",
            "--publish",
            endpoint,
            "--log",
            str(log_path),
            "--ground-truth",
            str(truth),
            "--no-progress",
        )
    finally:
        listener.send_signal(signal.SIGINT)
        out, err = listener.communicate(timeout=20)
    assert result.returncode == 0, result.stderr
    assert "frames in 1500" in result.stdout and "drops and skips: none" in result.stdout
    logged = list(read_jsonl(log_path))
    stats = [p for t, p in logged if t == "mestream.stats"]
    assert len(stats) >= 3
    assert [p["seq"] for p in stats] == list(range(len(stats)))
    assert stats[-1]["frames_in"] == 1500 and stats[-1]["frames_out"] == 1500
    assert stats[1]["fps_in"] == pytest.approx(500, rel=0.2)
    assert all(p["camera"] == "cam0" and p["schema"] == 1 for p in stats)
    heard_stats = [p for t, p in read_jsonl(heard) if t == "mestream.stats"]
    assert heard_stats and heard_stats[-1] == stats[-1]  # the subscriber got the same payloads
    events = json.loads(truth.read_text())
    assert events and set(events[0]) == {
        "camera",
        "kind",
        "onset_frame",
        "apex_frame",
        "offset_frame",
        "class",
        "aus",
    }
    assert all(0 <= e["onset_frame"] < 1500 for e in events)  # events whose onset was streamed


def test_dead_subscriber_does_not_disturb_the_run(tmp_path):
    endpoint = free_endpoint(tmp_path, "dead")
    log_path = tmp_path / "events.jsonl"
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mestream",
            "run",
            "--source",
            "synthetic",
            "--duration",
            "3",
            "--publish",
            endpoint,
            "--log",
            str(log_path),
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    listener = subprocess.Popen(
        [sys.executable, "-m", "mestream", "listen", endpoint],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    listener.kill()
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    stats = [p for t, p in read_jsonl(log_path) if t == "mestream.stats"]
    assert stats[-1]["frames_in"] == 1500 and [p["seq"] for p in stats] == list(range(len(stats)))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_cleanly_and_flush(tmp_path, signum):
    """A slow paced source (4 fps): the signal lands while ingest waits inside the source."""
    write_folder(tmp_path / "clip", n=40)
    log_path = tmp_path / "events.jsonl"
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mestream",
            "run",
            "--source",
            "folder",
            "--path",
            str(tmp_path / "clip"),
            "--fps",
            "4",
            "--no-spot",
            "--publish",
            "none",
            "--log",
            str(log_path),
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60  # a loaded machine may take a while to start: wait for the first stats
    while time.monotonic() < deadline and run.poll() is None:
        if log_path.exists() and any(t == "mestream.stats" for t, _ in read_jsonl(log_path)):
            break
        time.sleep(0.1)
    time.sleep(1.0)
    sent = time.monotonic()
    run.send_signal(signum)
    out, err = run.communicate(timeout=30)
    assert (
        time.monotonic() - sent < 3.0
    )  # the stop is noticed within a frame period, not at the end of the clip
    assert run.returncode == 130, err  # interrupted, as `mestream bench` reports it
    assert "(interrupted)" in out and "Traceback" not in err
    logged = list(read_jsonl(log_path))
    assert logged[-1][0] == "mestream.health" and logged[-1][1]["state"] == "stopped"
    frames = logged[-1][1]["detail"]["frames_in"]
    assert 4 <= frames < 40
    assert [p for t, p in logged if t == "mestream.stats"][-1]["frames_in"] == frames


def test_shared_memory_ring_is_readable_from_another_process(tmp_path):
    from mestream.engine.ring import FrameRing

    name = f"mestream-test-{os.getpid()}"
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mestream",
            "run",
            "--source",
            "synthetic",
            "--duration",
            "4",
            "--publish",
            "none",
            "--shared-memory",
            name,
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                ring = FrameRing.attach(name)
                break
            except (FileNotFoundError, ValueError):  # not created yet, or still being initialised
                if time.monotonic() > deadline or run.poll() is not None:
                    raise
                time.sleep(0.05)
        with ring:
            assert ring.shape == (480, 640) and ring.capacity == 1000  # 2 s at 500 fps
            while ring.head < 100:
                time.sleep(0.01)
            first = ring.latest()
            time.sleep(0.2)
            second = ring.latest()
            assert second.frame_id > first.frame_id and second.host_ns > first.host_ns
            assert first.pixels.shape == (480, 640) and first.pixels.std() > 5  # a rendered face, not zeros
    finally:
        out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert "leaked shared_memory" not in err  # closed by mestream, not swept up by the resource tracker
    with pytest.raises(FileNotFoundError):
        FrameRing.attach(name)


def test_address_in_use_fails_before_the_run_and_frees_the_ring(tmp_path):
    import zmq

    from mestream.engine.ring import FrameRing

    blocker = zmq.Context.instance().socket(zmq.PUB)
    port = blocker.bind_to_random_port("tcp://127.0.0.1")
    name = f"mestream-busy-{os.getpid()}"
    try:
        result = mestream(
            "run", "--duration", "1", "--publish", f"tcp://127.0.0.1:{port}", "--shared-memory", name
        )
    finally:
        blocker.close(linger=0)
    assert result.returncode == 2 and f"tcp://127.0.0.1:{port}" in result.stderr
    assert "leaked shared_memory" not in result.stderr
    with pytest.raises(FileNotFoundError):
        FrameRing.attach(name)


def test_a_failure_building_the_shared_stages_closes_every_camera(monkeypatch):
    """No thread runs yet, so the constructor itself must close what it opened."""
    import mestream.engine.pipeline as pipeline_module

    opened = []
    real = pipeline_module.make_source

    def make_source(config):
        opened.append(real(config))
        return opened[-1]

    def broken(*args, **kwargs):
        raise ValueError("the export and its manifest disagree")

    monkeypatch.setattr(pipeline_module, "make_source", make_source)
    monkeypatch.setattr(pipeline_module, "SpotStage", broken)
    with pytest.raises(ValueError, match="disagree"):
        Pipeline(RunConfig(cameras=2, progress=False, publish=PublishConfig(endpoint="", console=False)))
    assert len(opened) == 2 and not any(source._is_open for source in opened)


def test_an_export_whose_manifest_lacks_a_key_the_engine_reads_is_refused(tmp_path):
    import shutil

    from mestream.engine.manifest import shipped_export_dir

    export = tmp_path / "export"
    shutil.copytree(shipped_export_dir(), export)
    manifest = json.loads((export / "manifest.json").read_text())
    del manifest["models"]["akmnet"]["config"]["max_frames"]
    (export / "manifest.json").write_text(json.dumps(manifest))
    result = mestream("run", "--models", str(export), "--publish", "none", "--duration", "1")
    assert result.returncode == 2, result.stderr
    assert (
        "manifest.json: models.akmnet.config has no field 'max_frames', which the engine reads"
        in result.stderr
    )


def test_a_shared_stage_failure_is_published_under_all_cameras(tmp_path, monkeypatch):
    """The spot stage serves both cameras: its failure is about the run, so its health event
    carries the documented id ``*`` rather than one camera's (or a made-up "cam0,cam1")."""

    def broken(self):
        raise RuntimeError("the heads disagree")

    monkeypatch.setattr(SpotStage, "run_pass", broken)
    log_path = tmp_path / "events.jsonl"
    pipeline = Pipeline(
        RunConfig(
            source=SourceConfig(pace=False),
            cameras=2,
            duration=2.0,
            progress=False,
            publish=PublishConfig(endpoint="", log=str(log_path), console=False),
        )
    )
    assert pipeline.spot.ctx.camera == pipeline.recog.ctx.camera == ALL_CAMERAS == "*"
    summary = pipeline.run()
    assert "spot stage: RuntimeError: the heads disagree" in summary.error
    failures = [p for t, p in read_jsonl(log_path) if t == "mestream.health" and p["state"] == "stage_error"]
    assert [(p["camera"], p["detail"]) for p in failures] == [("*", {"stage": "spot"})]


def test_the_all_cameras_id_is_not_a_camera_name():
    with pytest.raises(ConfigError, match=r"source.name.*'\*'"):
        SourceConfig(name="*")
