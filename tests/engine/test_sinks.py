"""The console and record sinks: what a person watching a session sees, and what a run scores."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mestream.engine import events
from mestream.engine.events import TOPIC_HEALTH, TOPIC_RECOG, TOPIC_SPOT, TOPIC_STATS, RecogEvent, SpotEvent
from mestream.engine.sinks import ConsoleSink, RecordSink, Sink, console_line
from mestream.plugins import SINK_GROUP, make_sink, registered
from tests.engine.test_events import SAMPLES

HEADER = {"camera": "cam1", "seq": 0, "host_ns": 5_000_000_000, "wall_ns": 1_700_000_000_000_000_000}


def spot(event_id: int = 3, is_micro: bool = True, latency_ms: float = 519.4) -> dict:
    """A spot payload as the spot stage publishes it (built through the schema, so the fields are real)."""
    return SpotEvent(
        **HEADER,
        event_id=event_id,
        onset_frame=2471,
        apex_frame=2544,
        offset_frame=2631,
        onset_ns=4_942_000_000,
        apex_ns=5_088_000_000,
        offset_ns=5_262_000_000,
        score=0.8731,
        scale=161.0,
        is_micro=is_micro,
        refined={"onset_frame": 2474, "apex_frame": 2540},
        latency={"capture_to_publish_ms": latency_ms, "face_ms": 1.2, "wait_ms": 3.0},
    ).as_dict()


def recog(event_id: int = 3) -> dict:
    return RecogEvent(
        **HEADER,
        event_id=event_id,
        label="positive",
        probabilities={"negative": 0.03, "positive": 0.91, "surprise": 0.04, "others": 0.02},
        key_frames=[2474, 2540, 2560, 2631],
        max_key_frame=2560,
        latency={
            "capture_to_publish_ms": 586.2,
            "spot_ms": 519.4,
            "queue_ms": 0.1,
            "prepare_ms": 2.0,
            "encoder_ms": 40.0,
            "head_ms": 3.0,
        },
    ).as_dict()


def test_console_prints_one_line_per_spot_and_recognition(capsys):
    """The live view: one line per event as it is published, nothing buffered."""
    sink = ConsoleSink()
    sink.open()
    assert sink.send(TOPIC_SPOT, spot()) is True
    assert sink.send(TOPIC_RECOG, recog()) is True
    sink.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines == [console_line(TOPIC_SPOT, spot()), console_line(TOPIC_RECOG, recog())]
    assert lines[0].startswith("[cam1] spot #3 ") and lines[1].startswith("[cam1] recog #3 ")
    assert sink.dropped == 0


def test_console_stays_quiet_for_stats_and_health(capsys):
    """Stats arrive every second per camera: printing them would bury the spots. Health events
    other than ``started`` belong to the summary too."""
    sink = ConsoleSink()
    for topic in (TOPIC_STATS, TOPIC_HEALTH):
        assert sink.send(topic, SAMPLES[topic].as_dict()) is True
        assert console_line(topic, SAMPLES[topic].as_dict()) == ""
    assert capsys.readouterr().out == ""


def test_console_line_for_a_spot_names_camera_event_kind_frames_and_latency():
    micro = console_line(TOPIC_SPOT, spot())
    assert micro == (
        "[cam1] spot #3 micro-expression: onset 2471 apex 2544 offset 2631 (frames), "
        "score 0.87  (519 ms after the offset)"
    )
    macro = console_line(TOPIC_SPOT, spot(event_id=4, is_micro=False, latency_ms=1234.6))
    assert " spot #4 macro-expression: onset 2471 apex 2544 offset 2631 " in macro
    assert "(1235 ms after the offset)" in macro


def test_console_line_for_a_recognition_names_label_probability_key_frame_and_latency():
    line = console_line(TOPIC_RECOG, recog())
    assert line == (
        '[cam1] recog #3 emotion class "positive" (p 0.91; classes: negative, positive, '
        "surprise, others), max key frame 2560  (586 ms after the offset)"
    )


def test_console_line_reads_the_sample_payloads_of_every_topic():
    """The schema's own samples (another camera, label and latencies) format without error."""
    assert console_line(TOPIC_SPOT, SAMPLES[TOPIC_SPOT].as_dict()).startswith(
        "[cam0] spot #7 micro-expression: onset 1200 apex 1231 offset 1290 (frames), score 0.91  (14 ms"
    )
    assert console_line(TOPIC_RECOG, SAMPLES[TOPIC_RECOG].as_dict()).startswith(
        '[cam0] recog #7 emotion class "surprise" (p 0.82; classes: '
    )


def test_record_sink_keeps_only_spot_and_recog_payloads():
    """The end-of-run scores are computed from what the bus published, and only from events."""
    sink = RecordSink()
    sink.open()
    sent = [
        (TOPIC_STATS, SAMPLES[TOPIC_STATS].as_dict()),
        (TOPIC_SPOT, spot(3)),
        (TOPIC_HEALTH, SAMPLES[TOPIC_HEALTH].as_dict()),
        (TOPIC_RECOG, recog(3)),
        (TOPIC_SPOT, spot(4)),
    ]
    assert all(sink.send(topic, payload) for topic, payload in sent)
    sink.close()
    assert set(sink.events) == {TOPIC_SPOT, TOPIC_RECOG}
    assert [p["event_id"] for p in sink.events[TOPIC_SPOT]] == [3, 4]
    assert sink.events[TOPIC_SPOT][0] is sent[1][1]  # kept as published, not re-encoded
    assert sink.events[TOPIC_RECOG] == [recog(3)]
    assert sink.counts == {TOPIC_STATS: 1, TOPIC_SPOT: 2, TOPIC_HEALTH: 1, TOPIC_RECOG: 1}
    assert sink.dropped == 0


def test_console_and_record_sinks_satisfy_the_sink_protocol():
    assert isinstance(ConsoleSink(), Sink) and isinstance(RecordSink(), Sink)
    assert ConsoleSink().name == "console" and RecordSink().name == "record"


def test_console_sink_is_declared_under_the_sinks_entry_point():
    """Built-in sinks register like a plugin's, so a config table can name them by kind."""
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    declared = pyproject["project"]["entry-points"]["mestream.sinks"]
    assert declared["console"] == "mestream.engine.sinks:ConsoleSink"
    assert ConsoleSink.from_options({"name": "screen"}).name == "screen"
    with pytest.raises(ValueError, match="console sink: unknown option 'colour'; known options: name"):
        ConsoleSink.from_options({"colour": True})


def test_make_sink_builds_the_console_sink():
    """`[[publish.sinks]] kind = "console"` builds it like any plugin sink."""
    sink = make_sink("console", {})
    assert type(sink) is ConsoleSink and sink.name == "console"
    assert make_sink("console", {"name": "screen"}).name == "screen"
    assert "console" in registered(SINK_GROUP)


def test_sample_payloads_are_those_of_the_schema():
    """Guards the helpers above: a renamed event field must break these tests, not pass them."""
    events.check_body(TOPIC_SPOT, {k: v for k, v in spot().items() if k not in events.HEADER_FIELDS})
    events.check_body(TOPIC_RECOG, {k: v for k, v in recog().items() if k not in events.HEADER_FIELDS})


def test_console_shows_each_camera_started_event_with_its_weights(capsys):
    """What is read and with which weights is the first thing a person at the console sees."""
    message = "reading synthetic 640x480 mono8 at 500 fps; models: the shipped demo weights"
    started = events.HealthEvent(**HEADER, state="started", message=message, detail={}).as_dict()
    sink = ConsoleSink()
    assert sink.send(TOPIC_HEALTH, started)
    assert capsys.readouterr().out == f"[cam1] started: {message}\n"
