"""`mestream run` from the command line: the summary file, the console lines and the flags
that shape a run. Each run is a subprocess of a few seconds, so the runs here are few."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

HEADLINE = (
    "frames_in",
    "frames_out",
    "frames_dropped",
    "skips",
    "spot_f1",
    "recog_uf1",
    "spot_latency_ms",
    "recog_latency_ms",
)
SPOT_LINE = re.compile(
    r"^\[cam0\] spot #0 micro-expression: onset (\d+) apex (\d+) offset (\d+) \(frames\), "
    r"score \d\.\d\d  \(-?\d+ ms after the offset\)$",
    re.MULTILINE,
)
# seed 0 at 500 fps: a micro-expression around frames 2470-2640, inside the first 6 s (3000 frames)
SPOTTED = ["--seed", "0", "--unpaced", "--duration", "6", "--publish", "none", "--no-progress"]


def mestream(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mestream", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=120,
    )


def test_quiet_run_writes_the_summary_and_prints_no_events(tmp_path):
    """--summary is what a benchmark script reads: headline figures first, nothing lost unpaced."""
    path = tmp_path / "out" / "summary.json"
    result = mestream("run", *SPOTTED, "--summary", str(path), "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads(path.read_text())
    keys = list(summary)
    assert all(keys.index(k) < keys.index("camera") for k in HEADLINE), keys
    assert {"drops", "scores", "camera", "notes"} <= set(keys)
    assert summary["frames_in"] == 3000 and summary["frames_out"] == 3000  # unpaced: the source waits
    assert summary["frames_dropped"] == 0 and summary["skips"] == 0
    assert set(summary["spot_latency_ms"]) == {"p50", "p99"} == set(summary["recog_latency_ms"])
    assert summary["spots"] >= 1 and summary["recognitions"] >= 1  # there were events to keep quiet about
    assert 0 < summary["spot_f1"] <= 1 and 0 <= summary["recog_uf1"] <= 1
    assert summary["spot_latency_ms"]["p50"] > 0
    assert summary["scores"]["spot_f1"] == summary["spot_f1"]
    assert summary["events"]["mestream.spot"] == summary["spots"]
    assert summary["events"]["mestream.health"] >= 2  # started, stopped
    assert summary["stats_messages"] >= 1 and "mestream.stats" not in summary["events"]
    assert "[cam0] spot" not in result.stdout and "[cam0] recog" not in result.stdout
    assert "mestream run summary (finished)" in result.stdout and f"wrote {path}" in result.stdout


def test_events_are_printed_as_they_are_published():
    """Without --quiet a person watching sees each spot and its recognition, one line each."""
    result = mestream("run", *SPOTTED)
    assert result.returncode == 0, result.stderr
    spots = SPOT_LINE.findall(result.stdout)
    assert spots, result.stdout
    onset, apex, offset = map(int, spots[0])
    assert 2400 <= onset < apex < offset <= 2700
    assert re.search(
        r'^\[cam0\] recog #0 emotion class "(positive|negative|surprise|others)" '
        r"\(p \d\.\d\d; classes: [a-z, ]+\), max key frame \d+  \(",
        result.stdout,
        re.MULTILINE,
    ), result.stdout
    assert result.stdout.index("[cam0] spot #0") < result.stdout.index("mestream run summary")
    # the shipped weights say what they are, before the first event and in the summary
    started = result.stdout.index(
        "[cam0] started: reading synthetic 640x480 mono8 at 500 fps; models: the "
        "shipped demo weights, trained on synthetic faces only and not validated "
        "on real faces"
    )
    assert started < result.stdout.index("[cam0] spot #0")
    assert result.stdout.count("trained on synthetic faces only") == 2


def test_two_cameras_run_side_by_side(tmp_path):
    """--cameras 2: each camera reads its own 1000 frames, and the summary names both."""
    path = tmp_path / "summary.json"
    result = mestream(
        "run",
        "--cameras",
        "2",
        "--unpaced",
        "--duration",
        "2",
        "--publish",
        "none",
        "--quiet",
        "--no-progress",
        "--summary",
        str(path),
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(path.read_text())
    assert summary["frames_in"] == 2000 and summary["frames_out"] == 2000 and summary["frames_dropped"] == 0
    assert summary["camera"] == "cam0, cam1"
    assert set(summary["scores"]["cameras"]) == {"cam0", "cam1"}
    assert "frames in 2000, out 2000" in result.stdout


def test_no_spot_runs_ingest_only(tmp_path):
    """--no-spot measures the camera path alone: no models are loaded and nothing is scored."""
    path = tmp_path / "summary.json"
    result = mestream(
        "run",
        "--no-spot",
        "--unpaced",
        "--duration",
        "1",
        "--publish",
        "none",
        "--quiet",
        "--no-progress",
        "--summary",
        str(path),
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(path.read_text())
    assert summary["frames_in"] == 500 and summary["frames_out"] == 500
    assert "models: none (spotting is off)" in summary["notes"]
    assert summary["spot_f1"] is None and summary["recog_uf1"] is None and summary["spots"] == 0
    assert "models: none (spotting is off)" in result.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--paced", "--unpaced"], "argument --unpaced/--no-pace: not allowed with argument --paced"),
        (["--cameras", "0"], "mestream run: cameras: must be 1..16, got 0"),
        (
            ["--source", "vidoe"],
            "mestream run: source.kind (--source): no source kind 'vidoe' (did you mean "
            "'video'?); available: folder, opencv, synthetic, video",
        ),
    ],
)
def test_bad_flags_exit_2_naming_them(args, needle):
    """A bad command line stops before any camera or model opens, with the flag's name."""
    result = mestream("run", *args, "--publish", "none", "--duration", "1")
    assert result.returncode == 2 and needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "summary" not in result.stdout


def test_an_unwritable_summary_path_is_refused_before_the_run(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    result = mestream(
        "run", "--unpaced", "--duration", "1", "--publish", "none", "--quiet", "--summary", str(folder)
    )
    assert result.returncode == 2 and f"summary (--summary): {folder} is a folder" in result.stderr


def test_a_fixed_face_box_outside_the_frame_is_refused(tmp_path):
    config = tmp_path / "fixed.toml"
    config.write_text('[face]\ndetector = "fixed"\nroi = [700, 10, 100, 100]\n')
    result = mestream("run", "--config", str(config), "--duration", "1", "--publish", "none", "--quiet")
    assert (
        result.returncode == 2
        and "face.roi: [700, 10, 100, 100] lies outside the 640x480 frames of camera 'cam0'" in result.stderr
    )


def test_ctrl_c_exits_130_after_writing_the_log_and_the_summary(tmp_path):
    """Ctrl-C is how a live session ends: the run still shuts down in order, writes what it was
    asked to, and exits 130 like `mestream bench` (and any command a shell saw killed by SIGINT)."""
    log, path = tmp_path / "events.jsonl", tmp_path / "summary.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mestream",
            "run",
            "--publish",
            "none",
            "--no-progress",
            "--log",
            str(log),
            "--summary",
            str(path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 90
        while not (log.exists() and "started" in log.read_text()) and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.2)
        assert log.exists(), "the run never published its started event"
        os.kill(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
    assert process.returncode == 130, err
    assert "mestream run summary (interrupted)" in out
    assert json.loads(path.read_text())["interrupted"] is True
    assert '"state": "stopped"' in log.read_text()


def test_a_bad_kind_in_a_config_file_names_the_file_and_key(tmp_path):
    """A typo in a lab's file is reported with the file to open and the key to fix."""
    config = tmp_path / "lab.toml"
    config.write_text('[source]\nkind = "nope"\n')
    result = mestream("run", "--config", str(config), "--duration", "1", "--publish", "none", "--quiet")
    assert result.returncode == 2, result.stderr
    assert (
        f"mestream run: config file {config}: source.kind: no source kind 'nope'; available: "
        in result.stderr
    )
