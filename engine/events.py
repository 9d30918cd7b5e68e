"""Topics and payload schemas of every event mestream publishes: the one place they are spelled.

Why one module: a subscriber, the JSONL log and the engine must agree on topic strings and
field names, and a typo in a second copy would fail silently (a prefix filter that never
matches). Everything else imports the constants and dataclasses from here.

Wire format (after Pupil Capture): a two-frame multipart message ``[topic, payload]``, the
topic UTF-8 and dotted so subscribers filter by prefix (``mestream.`` gets everything), the
payload a msgpack map. Every payload is flat: a header followed by the topic's body fields.

Header fields, on every topic:
    schema: `SCHEMA_VERSION`; a reader rejects a version it does not know.
    camera: the stream / camera id the event is about.
    seq: counts the events of one (topic, camera) from one publisher, from 0. It is per
        topic (and camera) rather than per publisher so that a subscriber filtering a single
        topic still sees consecutive numbers and can count what it missed: a jump of k means
        k - 1 events were lost between ``EventBus.emit`` and the reader (bus queue, transport
        high-water mark). A number lower than the last one means the publisher restarted.
    host_ns: host monotonic clock (``time.monotonic_ns``, the clock of ``Frame.host_ns``)
        when the event was published; latencies are differences on this clock.
    wall_ns: host wall clock (``time.time_ns``) at the same moment, to line logs up with
        other recordings; never use it for latency.

Stages build the dataclasses below with ``camera`` and their body fields and hand them to
`mestream.engine.bus.EventBus.emit`; the bus fills ``seq``, ``host_ns`` and ``wall_ns`` when it
publishes (`Event.payload`), so a stage can never number or time an event itself. Sinks
receive the flat payload dict.

Events about the run as a whole rather than one camera (a failure of the stages shared by all
cameras: spotting, recognition) carry the camera id `ALL_CAMERAS` (``"*"``); a subscriber that
filters on one camera should also accept it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import msgpack

TOPIC_SPOT = "mestream.spot"
TOPIC_RECOG = "mestream.recog"
TOPIC_STATS = "mestream.stats"
TOPIC_HEALTH = "mestream.health"
TOPICS: tuple[str, ...] = (TOPIC_SPOT, TOPIC_RECOG, TOPIC_STATS, TOPIC_HEALTH)
TOPIC_PREFIX = "mestream."
"""Subscribing to this prefix receives every topic above."""

SCHEMA_VERSION = 1

ALL_CAMERAS = "*"
"""The ``camera`` of an event about every camera at once, e.g. a ``stage_error`` of the shared
spot or recognition stage. Never a valid camera name (`mestream.engine.config` refuses it)."""

UNSTAMPED = -1
"""``seq`` / ``host_ns`` / ``wall_ns`` of an event the bus has not published yet."""

HEADER_FIELDS: tuple[str, ...] = ("schema", "camera", "seq", "host_ns", "wall_ns")

HEALTH_STATES: tuple[str, ...] = (
    "started",
    "stopped",
    "face_lost",
    "face_found",
    "source_error",
    "stage_error",
    "sink_error",
)
"""The states the engine emits today; `HealthEvent.state` stays a free string so a plugin can add its own."""


class SchemaError(ValueError):
    """A payload does not match its topic's schema; the message names the topic and field."""


class PayloadError(ValueError):
    """A payload holds a value the wire format cannot carry (a sink drops that event only)."""


# Per-class caches, filled on first use. A plain dict rather than functools.cache: the cache's
# typed ``__call__`` wants Hashable arguments, and mypy checks an event class against that with
# the instance's ``__hash__`` (a frozen dataclass's) rather than the class object's.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_BODY_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _body_names(cls: type) -> tuple[str, ...]:
    names = _BODY_NAMES.get(cls)
    if names is None:
        names = _BODY_NAMES[cls] = tuple(name for name in _field_names(cls) if name not in HEADER_FIELDS)
    return names


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """The header every payload carries (see the module docstring for what each field means)."""

    topic: ClassVar[str] = ""

    schema: int = SCHEMA_VERSION
    camera: str
    seq: int = UNSTAMPED
    host_ns: int = UNSTAMPED
    wall_ns: int = UNSTAMPED

    def as_dict(self) -> dict[str, Any]:
        """The flat payload (header then body). Nested dicts and lists are shared, not copied."""
        return {name: getattr(self, name) for name in _field_names(type(self))}

    def payload(self, seq: int, host_ns: int, wall_ns: int) -> dict[str, Any]:
        """The flat payload as published: this event's body under the header the bus stamps."""
        return stamp(
            self.camera, seq, host_ns, wall_ns, {n: getattr(self, n) for n in _body_names(type(self))}
        )

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> Self:
        """Build the event from a decoded payload, naming any missing or unknown field."""
        names = _field_names(cls)
        unknown = [key for key in payload if key not in names]
        if unknown:
            raise SchemaError(f"{cls.topic}: unknown field {unknown[0]!r} (known: {', '.join(names)})")
        missing = [name for name in names if name not in payload]
        if missing:
            raise SchemaError(f"{cls.topic}: missing field {missing[0]!r}")
        if payload["schema"] != SCHEMA_VERSION:
            raise SchemaError(
                f"{cls.topic}: field 'schema' is {payload['schema']!r}, "
                f"this reader knows version {SCHEMA_VERSION}"
            )
        return cls(**payload)

    @classmethod
    def body_fields(cls) -> frozenset[str]:
        """The fields a stage passes to ``EventBus.emit``: everything but the header."""
        return frozenset(_field_names(cls)) - frozenset(HEADER_FIELDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatsEvent(Event):
    """Periodic throughput and health figures of one camera's pipeline.

    Args:
        fps_in: frames per second read from the source over the last interval.
        fps_out: frames per second that left the last stage over the last interval.
        frames_in: frames read since start.
        frames_out: frames fully processed since start.
        ring_fill: ring occupancy, 0 (empty) to 1 (full; the next write overruns a reader).
        lag_frames: frames between the newest captured frame and the slowest reader.
        lag_ms: the same lag in milliseconds of capture time.
        drops: cumulative drop counters by where they happened, e.g. ``camera``,
            ``ring_overrun``, ``bus``, ``sink:<name>``; keys appear as a stage reports them.
        uptime_s: seconds since the pipeline started.
        stages: free-form per-stage figures, ``"<stage>.<figure>"`` → number
            (e.g. ``"flow.ms_p50"``), so a new stage needs no schema change.
    """

    topic: ClassVar[str] = TOPIC_STATS

    fps_in: float
    fps_out: float
    frames_in: int
    frames_out: int
    ring_fill: float
    lag_frames: int
    lag_ms: float
    drops: dict[str, int]
    uptime_s: float
    stages: dict[str, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthEvent(Event):
    """A change of state worth telling a human or a supervisor about.

    Args:
        state: one of `HEALTH_STATES` or a plugin's own.
        message: one human-readable line.
        detail: machine-readable specifics (e.g. ``{"sink": "zmq", "error": "..."}``).
    """

    topic: ClassVar[str] = TOPIC_HEALTH

    state: str
    message: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class SpotEvent(Event):
    """A spotted facial movement (micro- or macro-expression) with its timing.

    Args:
        event_id: unique per (camera, publisher run); the matching `RecogEvent` carries it.
        onset_frame / apex_frame / offset_frame: source frame ids.
        onset_ns / apex_ns / offset_ns: host capture times of those frames (monotonic ns).
        score: the spotter's confidence.
        scale: the interval's length in source frames (the temporal scale it was spotted at).
        is_micro: duration under the micro-expression limit (≤ 0.5 s).
        refined: GAMDSS's re-selected ``onset_frame`` and ``apex_frame`` (the spotted ones when it
            moved nothing).
        latency: milliseconds per stage, plus ``capture_to_publish_ms`` from the offset
            frame's capture to publication.
    """

    topic: ClassVar[str] = TOPIC_SPOT

    event_id: int
    onset_frame: int
    apex_frame: int
    offset_frame: int
    onset_ns: int
    apex_ns: int
    offset_ns: int
    score: float
    scale: float
    is_micro: bool
    refined: dict[str, int]
    latency: dict[str, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecogEvent(Event):
    """The recognised expression class of a spotted event.

    Args:
        event_id: the `SpotEvent.event_id` this classifies.
        label: the most probable class.
        probabilities: class → probability.
        key_frames: the frame ids fed to the recogniser.
        max_key_frame: the key frame the decision leaned on most.
        latency: milliseconds per stage, plus ``capture_to_publish_ms``.
    """

    topic: ClassVar[str] = TOPIC_RECOG

    event_id: int
    label: str
    probabilities: dict[str, float]
    key_frames: list[int]
    max_key_frame: int
    latency: dict[str, float]


_SCHEMAS: dict[str, type[Event]] = {
    cls.topic: cls for cls in (SpotEvent, RecogEvent, StatsEvent, HealthEvent)
}
_BODY_FIELDS: dict[str, frozenset[str]] = {topic: cls.body_fields() for topic, cls in _SCHEMAS.items()}


def schema_for(topic: str) -> type[Event]:
    """The dataclass of a topic; an unknown topic raises naming the known ones."""
    try:
        return _SCHEMAS[topic]
    except KeyError:
        raise SchemaError(f"unknown topic {topic!r}; known topics: {', '.join(TOPICS)}") from None


def check_body(topic: str, body: Mapping[str, Any]) -> None:
    """Raise `SchemaError` unless ``body`` has exactly the topic's body fields.

    Cheap (one set comparison) so the bus can run it in the caller's thread, where a
    misspelt field points at the stage that wrote it.
    """
    expected = _BODY_FIELDS.get(topic)
    if expected is None:
        raise SchemaError(f"unknown topic {topic!r}; known topics: {', '.join(TOPICS)}")
    if body.keys() == expected:
        return
    unknown = sorted(set(body) - expected)
    if unknown:
        raise SchemaError(
            f"{topic}: unknown field {unknown[0]!r} (body fields: {', '.join(sorted(expected))})"
        )
    raise SchemaError(f"{topic}: missing field {sorted(expected - set(body))[0]!r}")


def make(topic: str, camera: str, body: Mapping[str, Any]) -> Event:
    """The topic's event from a body dict (a plugin's or a test's), naming a wrong field as
    `check_body` does rather than as a constructor's TypeError."""
    check_body(topic, body)
    return _SCHEMAS[topic](camera=camera, **body)


def health(camera: str, state: str, message: str, detail: Mapping[str, Any] | None = None) -> HealthEvent:
    """The one way the engine builds a ``mestream.health`` event (``detail`` is copied).

    Args:
        camera: the camera it is about, or `ALL_CAMERAS` for the shared stages.
        state: one of `HEALTH_STATES` (a plugin may use its own).
        message: one line a human reads.
        detail: machine-readable specifics; {} when there are none.
    """
    return HealthEvent(camera=camera, state=state, message=message, detail=dict(detail or {}))


def stamp(camera: str, seq: int, host_ns: int, wall_ns: int, body: Mapping[str, Any]) -> dict[str, Any]:
    """A full payload from a body dict: the header, then the body's fields (`Event.payload`,
    and a sink driven without a bus)."""
    payload: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "camera": camera,
        "seq": seq,
        "host_ns": host_ns,
        "wall_ns": wall_ns,
    }
    payload.update(body)
    return payload


def to_builtin(value: Any) -> Any:
    """Fallback for serializers: numpy scalars and arrays become Python numbers and lists.

    Stages compute with numpy and should not have to remember ``float(x)`` on every field;
    duck typing keeps numpy out of this module's imports.
    """
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"cannot serialize {type(value).__name__} {value!r}")


def pack(topic: str, payload: Mapping[str, Any]) -> bytes:
    """The msgpack payload frame; raises `PayloadError` naming the topic on a bad value."""
    try:
        return msgpack.packb(payload, use_bin_type=True, default=to_builtin)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PayloadError(f"{topic}: payload cannot be serialized: {exc}") from None


def encode(topic: str, payload: Mapping[str, Any]) -> list[bytes]:
    """``[topic, msgpack payload]``, fully serialized so a send can never go out half-built."""
    return [topic.encode("utf-8"), pack(topic, payload)]


def decode(frames: Sequence[bytes]) -> tuple[str, dict[str, Any]]:
    """``(topic, payload dict)`` from a received multipart message.

    Does not check the payload against its schema (use ``schema_for(topic).from_dict``), so a
    generic listener still shows events of a newer engine.
    """
    if len(frames) != 2:
        raise SchemaError(f"expected a 2-frame message [topic, payload], got {len(frames)} frames")
    try:
        topic = bytes(frames[0]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SchemaError(f"topic frame is not UTF-8: {exc}") from None
    try:
        payload = msgpack.unpackb(frames[1], raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise SchemaError(f"{topic}: payload is not valid msgpack: {exc}") from None
    if not isinstance(payload, dict):
        raise SchemaError(f"{topic}: payload is a {type(payload).__name__}, expected a map")
    return topic, payload
