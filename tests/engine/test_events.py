"""Schemas of mestream's events: every topic round-trips, and a malformed payload is named."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from mestream.engine import events
from mestream.engine.events import (
    TOPIC_HEALTH,
    TOPIC_RECOG,
    TOPIC_SPOT,
    TOPIC_STATS,
    TOPICS,
    HealthEvent,
    RecogEvent,
    SpotEvent,
    StatsEvent,
)

HEADER = {"camera": "cam0", "seq": 41, "host_ns": 1_234_567_890_123, "wall_ns": 1_767_225_600_000_000_000}

SAMPLES: dict[str, events.Event] = {
    TOPIC_STATS: StatsEvent(
        **HEADER,
        fps_in=500.0,
        fps_out=499.6,
        frames_in=15000,
        frames_out=14990,
        ring_fill=0.02,
        lag_frames=10,
        lag_ms=20.0,
        drops={"camera": 0, "ring_overrun": 0, "bus": 0, "sink:zmq": 3},
        uptime_s=30.0,
        stages={"face.ms_p50": 0.8, "flow.ms_p50": 1.9, "spot.ms_p99": 0.4},
    ),
    TOPIC_HEALTH: HealthEvent(
        **HEADER,
        state="sink_error",
        message="sink 'log' failed and is disabled: OSError: [Errno 28] No space left on device",
        detail={"sink": "log", "error": "OSError: [Errno 28] No space left on device", "topic": TOPIC_STATS},
    ),
    TOPIC_SPOT: SpotEvent(
        **HEADER,
        event_id=7,
        onset_frame=1200,
        apex_frame=1231,
        offset_frame=1290,
        onset_ns=2_400_000_000,
        apex_ns=2_462_000_000,
        offset_ns=2_580_000_000,
        score=0.91,
        scale=32,
        is_micro=True,
        refined={"onset_frame": 1203, "apex_frame": 1229},
        latency={"flow": 1.9, "spot": 0.4, "capture_to_publish_ms": 14.2},
    ),
    TOPIC_RECOG: RecogEvent(
        **HEADER,
        event_id=7,
        label="surprise",
        probabilities={"negative": 0.05, "positive": 0.08, "surprise": 0.82, "others": 0.05},
        key_frames=[1203, 1229, 1290],
        max_key_frame=1229,
        latency={"recog": 6.3, "capture_to_publish_ms": 21.0},
    ),
}


def test_every_topic_has_one_schema_and_a_sample() -> None:
    assert set(SAMPLES) == set(TOPICS)
    assert len(set(TOPICS)) == len(TOPICS)
    for topic in TOPICS:
        assert topic.startswith(events.TOPIC_PREFIX)
        assert events.schema_for(topic).topic == topic


@pytest.mark.parametrize("topic", TOPICS)
def test_as_dict_from_dict_round_trip(topic: str) -> None:
    event = SAMPLES[topic]
    payload = event.as_dict()
    assert list(payload)[:5] == list(events.HEADER_FIELDS)
    assert payload["schema"] == events.SCHEMA_VERSION
    assert type(event).from_dict(payload) == event


@pytest.mark.parametrize("topic", TOPICS)
def test_wire_round_trip(topic: str) -> None:
    event = SAMPLES[topic]
    frames = events.encode(topic, event.as_dict())
    assert len(frames) == 2 and all(isinstance(f, bytes) for f in frames)
    assert frames[0] == topic.encode()
    got_topic, payload = events.decode(frames)
    assert got_topic == topic
    assert events.schema_for(got_topic).from_dict(payload) == event


@pytest.mark.parametrize("topic", TOPICS)
def test_missing_field_is_named_with_topic(topic: str) -> None:
    payload = SAMPLES[topic].as_dict()
    field = sorted(events.schema_for(topic).body_fields())[0]
    del payload[field]
    with pytest.raises(events.SchemaError, match=rf"{topic}: missing field '{field}'"):
        events.schema_for(topic).from_dict(payload)
    del payload["seq"]
    with pytest.raises(events.SchemaError, match=rf"{topic}: missing field 'seq'"):
        events.schema_for(topic).from_dict(payload)


@pytest.mark.parametrize("topic", TOPICS)
def test_unknown_field_is_named_with_topic(topic: str) -> None:
    payload = {**SAMPLES[topic].as_dict(), "colour": "red"}
    with pytest.raises(events.SchemaError, match=rf"{topic}: unknown field 'colour'"):
        events.schema_for(topic).from_dict(payload)


def test_other_schema_version_is_rejected() -> None:
    payload = {**SAMPLES[TOPIC_STATS].as_dict(), "schema": events.SCHEMA_VERSION + 1}
    with pytest.raises(events.SchemaError, match="mestream.stats: field 'schema'"):
        StatsEvent.from_dict(payload)


def test_unknown_topic_lists_the_known_ones() -> None:
    with pytest.raises(events.SchemaError, match="mestream.spot"):
        events.schema_for("mestream.spots")


def test_body_fields_exclude_the_header() -> None:
    for topic in TOPICS:
        body = events.schema_for(topic).body_fields()
        assert not body & set(events.HEADER_FIELDS)
        assert body | set(events.HEADER_FIELDS) == set(SAMPLES[topic].as_dict())


def test_check_body_names_the_offending_field() -> None:
    body = {k: v for k, v in SAMPLES[TOPIC_HEALTH].as_dict().items() if k not in events.HEADER_FIELDS}
    events.check_body(TOPIC_HEALTH, body)
    with pytest.raises(events.SchemaError, match="mestream.health: unknown field 'seq'"):
        events.check_body(TOPIC_HEALTH, {**body, "seq": 1})
    with pytest.raises(events.SchemaError, match="mestream.health: missing field 'detail'"):
        events.check_body(TOPIC_HEALTH, {k: v for k, v in body.items() if k != "detail"})
    with pytest.raises(events.SchemaError, match="unknown topic"):
        events.check_body("mestream.nope", body)


def test_stamp_puts_the_header_first() -> None:
    payload = events.stamp("cam1", 3, 10, 20, {"state": "started", "message": "", "detail": {}})
    assert payload == {
        "schema": events.SCHEMA_VERSION,
        "camera": "cam1",
        "seq": 3,
        "host_ns": 10,
        "wall_ns": 20,
        "state": "started",
        "message": "",
        "detail": {},
    }
    assert HealthEvent.from_dict(payload).seq == 3


@pytest.mark.parametrize("topic", TOPICS)
def test_payload_stamps_the_header_over_an_unstamped_event(topic: str) -> None:
    event = SAMPLES[topic]
    body = {k: v for k, v in event.as_dict().items() if k not in events.HEADER_FIELDS}
    unstamped = events.make(topic, "cam2", body)  # as a stage builds it: no seq or clocks yet
    assert (unstamped.seq, unstamped.host_ns, unstamped.wall_ns) == (events.UNSTAMPED,) * 3
    payload = unstamped.payload(5, 11, 22)
    assert list(payload) == list(unstamped.as_dict())  # the same fields in the same order
    assert type(event).from_dict(payload) == type(event)(
        **{**body, "camera": "cam2", "seq": 5, "host_ns": 11, "wall_ns": 22}
    )


def test_make_names_a_wrong_field_instead_of_a_type_error() -> None:
    with pytest.raises(events.SchemaError, match="mestream.health: missing field 'detail'"):
        events.make(TOPIC_HEALTH, "cam0", {"state": "started", "message": ""})


def test_health_is_the_one_builder_of_health_events() -> None:
    detail = {"stage": "spot"}
    event = events.health(events.ALL_CAMERAS, "stage_error", "spot stage: ValueError: x", detail)
    assert isinstance(event, HealthEvent) and event.camera == "*" and event.topic == TOPIC_HEALTH
    detail["stage"] = "changed"  # the event keeps its own copy
    assert event.detail == {"stage": "spot"}
    assert events.health("cam0", "started", "reading").detail == {}


def test_numpy_values_are_encoded_as_python_numbers() -> None:
    payload = {
        **SAMPLES[TOPIC_RECOG].as_dict(),
        "max_key_frame": np.int64(1229),
        "probabilities": {"surprise": np.float32(0.5)},
        "key_frames": np.array([1, 2, 3]),
    }
    _, decoded = events.decode(events.encode(TOPIC_RECOG, payload))
    assert decoded["max_key_frame"] == 1229 and type(decoded["max_key_frame"]) is int
    assert decoded["probabilities"] == {"surprise": 0.5}
    assert decoded["key_frames"] == [1, 2, 3]


def test_unserializable_value_raises_payload_error_naming_topic() -> None:
    with pytest.raises(events.PayloadError, match="mestream.health"):
        events.encode(TOPIC_HEALTH, {"detail": object()})


def test_decode_rejects_malformed_messages() -> None:
    good = events.encode(TOPIC_STATS, SAMPLES[TOPIC_STATS].as_dict())
    with pytest.raises(events.SchemaError, match="2-frame"):
        events.decode(good[:1])
    with pytest.raises(events.SchemaError, match="2-frame"):
        events.decode([*good, b"extra"])
    with pytest.raises(events.SchemaError, match="not valid msgpack"):
        events.decode([good[0], good[1][:-3]])
    with pytest.raises(events.SchemaError, match="expected a map"):
        events.decode([good[0], msgpack.packb([1, 2])])
    with pytest.raises(events.SchemaError, match="UTF-8"):
        events.decode([b"\xff\xfe", good[1]])
