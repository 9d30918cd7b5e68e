"""The event bus, its sinks and the listener: round trips over ZeroMQ, drops counted, gaps seen."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from mestream.engine import events, listen
from mestream.engine.bus import EventBus
from mestream.engine.events import TOPIC_HEALTH, TOPIC_RECOG, TOPIC_SPOT, TOPIC_STATS
from mestream.engine.listen import Subscriber
from mestream.engine.sinks import JsonlSink, Sink, SinkError, ZmqSink, read_jsonl
from tests.engine.test_events import SAMPLES


def stats_body(i: int) -> dict[str, Any]:
    return {
        "fps_in": 500.0,
        "fps_out": 499.0,
        "frames_in": i,
        "frames_out": i,
        "ring_fill": 0.1,
        "lag_frames": 2,
        "lag_ms": 4.0,
        "drops": {"bus": 0},
        "uptime_s": i / 500,
        "stages": {"flow.ms_p50": 1.5},
    }


def send(bus: EventBus, topic: str, camera: str, body: dict[str, Any]) -> bool:
    """Emit the topic's event built from a body dict, as a stage builds its dataclass."""
    return bus.emit(events.make(topic, camera, body))


def health_body(state: str = "started") -> dict[str, Any]:
    return {"state": state, "message": f"engine {state}", "detail": {}}


class RecordingSink:
    """Keeps what it is sent; optionally blocks on a gate or raises on the n-th event."""

    def __init__(self, name: str, fail_on: int | None = None, gate: threading.Event | None = None) -> None:
        self.name = name
        self.dropped = 0
        self.fail_on = fail_on
        self.gate = gate
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.opened = self.closed = False
        self.calls = 0

    def open(self) -> None:
        self.opened = True

    def send(self, topic: str, payload: dict[str, Any]) -> bool:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail_on is not None and self.calls > self.fail_on:
            raise OSError(28, "No space left on device")
        self.events.append((topic, payload))
        return True

    def close(self) -> None:
        self.closed = True


@pytest.fixture(params=["ipc", "tcp"])
def endpoint(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # tcp port '*': the OS picks a free port at bind, read back from ZmqSink.bound_endpoint.
    return f"ipc://{tmp_path}/bus.sock" if request.param == "ipc" else "tcp://127.0.0.1:*"


@contextlib.contextmanager
def connected(
    endpoint: str,
    hwm: int = 1000,
    rcvhwm: int = 1000,
    topics: tuple[str, ...] = ("mestream.",),
) -> Iterator[tuple[ZmqSink, Subscriber]]:
    """A bound sink and a subscriber whose subscription has reached it (no slow-joiner loss)."""
    sink = ZmqSink(endpoint=endpoint, hwm=hwm)
    sink.open()
    subscriber = Subscriber(sink.bound_endpoint, topics, rcvhwm=rcvhwm)
    try:
        assert sink.wait_for_subscriber(timeout=5), "subscription never reached the publisher"
        yield sink, subscriber
    finally:
        subscriber.close()
        sink.close()


def receive_all(subscriber: Subscriber, quiet_ms: int = 300) -> list[tuple[str, dict[str, Any]]]:
    received = []
    while (message := subscriber.recv(quiet_ms)) is not None:
        received.append(message)
    return received


def seqs(messages: list[tuple[str, dict[str, Any]]], topic: str, camera: str) -> list[int]:
    return [p["seq"] for t, p in messages if t == topic and p["camera"] == camera]


def test_round_trip_with_continuous_sequences(endpoint: str) -> None:
    with connected(endpoint) as (sink, subscriber):
        with EventBus([sink]) as bus:
            for i in range(60):
                send(bus, TOPIC_STATS, "cam0", stats_body(i))
                if i % 10 == 0:
                    send(bus, TOPIC_HEALTH, "cam1", health_body())
            assert bus.flush(5)
            received = receive_all(subscriber)
        assert bus.drops() == {"bus": 0, "invalid": 0, "sink:zmq": 0}
    assert seqs(received, TOPIC_STATS, "cam0") == list(range(60))
    assert seqs(received, TOPIC_HEALTH, "cam1") == list(range(6))
    assert subscriber.gaps == 0 and subscriber.received == 66
    for topic, payload in received:
        event = events.schema_for(topic).from_dict(payload)  # every payload matches its schema
        assert event.wall_ns > 0 and event.host_ns > 0
    stats = [p for t, p in received if t == TOPIC_STATS]
    assert [p["frames_in"] for p in stats] == list(range(60))
    assert all(a["host_ns"] <= b["host_ns"] for a, b in zip(stats, stats[1:]))


def test_topic_filter_sees_its_own_continuous_sequence(tmp_path: Path) -> None:
    with connected(f"ipc://{tmp_path}/f.sock", topics=(TOPIC_HEALTH,)) as (sink, subscriber):
        with EventBus([sink]) as bus:
            for i in range(30):
                send(bus, TOPIC_STATS, "cam0", stats_body(i))
                if i % 3 == 0:
                    send(bus, TOPIC_HEALTH, "cam0", health_body())
            bus.flush(5)
            received = receive_all(subscriber, 200)
    assert {t for t, _ in received} == {TOPIC_HEALTH}
    assert seqs(received, TOPIC_HEALTH, "cam0") == list(range(10))
    assert subscriber.gaps == 0


def test_slow_subscriber_gap_matches_the_sinks_drop_count(endpoint: str) -> None:
    with connected(endpoint, hwm=2, rcvhwm=2) as (sink, subscriber):
        with EventBus([sink], maxsize=1000) as bus:
            published = 0
            # Nobody reads meanwhile. Bursts until the pipes and kernel buffers overflow (a few
            # hundred events over ipc, a few thousand over tcp).
            while sink.dropped == 0 and published < 200_000:
                for _ in range(500):
                    send(bus, TOPIC_STATS, "cam0", stats_body(published))
                    published += 1
                assert bus.flush(10)
            received = receive_all(subscriber)
            send(bus, TOPIC_STATS, "cam0", stats_body(published))  # the reader caught up: this one arrives
            assert bus.flush(5)
            tail = subscriber.recv(2000)
            drops = bus.drops()
    assert tail is not None and tail[1]["seq"] == published
    assert sink.dropped > 0, "the burst should have overflowed the high-water marks"
    assert subscriber.gaps > 0 and subscriber.gap_count > 0
    assert drops == {"bus": 0, "invalid": 0, "sink:zmq": sink.dropped}
    assert subscriber.gaps == sink.dropped
    assert len(received) + 1 + subscriber.gaps == published + 1
    assert sink.sent == len(received) + 1


def test_zmq_close_still_delivers_what_subscribers_have_not_taken(tmp_path: Path) -> None:
    sink = ZmqSink(endpoint=f"ipc://{tmp_path}/c.sock", hwm=500)
    sink.open()
    with Subscriber(sink.bound_endpoint) as subscriber:
        assert sink.wait_for_subscriber(5)
        for i in range(300):
            assert sink.send(TOPIC_HEALTH, events.stamp("cam0", i, 0, 0, health_body()))
        sink.close()  # linger: ZeroMQ keeps sending after close
        assert [p["seq"] for _, p in receive_all(subscriber)] == list(range(300))


def test_emit_never_blocks_and_queue_drops_show_as_a_seq_gap() -> None:
    gate = threading.Event()
    sink = RecordingSink("rec", gate=gate)
    with EventBus([sink], maxsize=4) as bus:
        send(bus, TOPIC_STATS, "cam0", stats_body(0))
        deadline = time.monotonic() + 5
        while sink.calls == 0 and time.monotonic() < deadline:  # publisher is now stuck in send
            time.sleep(0.001)
        start = time.perf_counter()
        accepted = [send(bus, TOPIC_STATS, "cam0", stats_body(i)) for i in range(1, 101)]
        elapsed = time.perf_counter() - start
        assert elapsed < 0.5, f"100 emits on a full queue took {elapsed:.3f} s"
        assert accepted.count(True) == 4 and bus.drops()["bus"] == 96
        gate.set()
        assert bus.flush(5)
    got = [p["seq"] for _, p in sink.events]
    assert len(got) == 5 and got[0] == 0
    assert got[-1] == 100, "queue drops are folded into the following seq numbers"
    missed = sum(b - a - 1 for a, b in zip(got, got[1:]))
    assert missed == bus.drops()["bus"] == 96
    assert sink.closed


def test_emit_checks_field_names_in_the_callers_thread() -> None:
    bus = EventBus([RecordingSink("rec")])
    with pytest.raises(events.SchemaError, match="mestream.stats: unknown field 'fps'"):
        bus.emit(events.make(TOPIC_STATS, "cam0", {**stats_body(0), "fps": 1.0}))
    with pytest.raises(events.SchemaError, match="unknown topic"):
        bus.emit(events.make("mestream.stat", "cam0", stats_body(0)))
    with pytest.raises(TypeError, match="fps"):  # the dataclass itself refuses a misspelt field
        events.StatsEvent(camera="cam0", fps=1.0)  # type: ignore[call-arg]
    with pytest.raises(events.SchemaError, match="emit takes an event"):
        bus.emit(stats_body(0))  # type: ignore[arg-type]  # a body dict is no longer enough
    assert bus.pending() == 0


def test_the_bus_stamps_the_header_of_the_event_a_stage_built() -> None:
    sink = RecordingSink("rec")
    with EventBus([sink]) as bus:
        before = time.monotonic_ns()
        for _ in range(2):
            bus.emit(events.health("cam3", "face_found", "face found", {"frame_id": 7}))
        bus.flush(5)
    (_, first), (_, second) = sink.events
    assert list(first)[:5] == list(events.HEADER_FIELDS)  # header first, then the body
    assert (first["seq"], second["seq"]) == (0, 1) and first["camera"] == "cam3"
    assert first["host_ns"] >= before and first["wall_ns"] > 0
    assert events.HealthEvent.from_dict(first) == events.HealthEvent(
        camera="cam3",
        seq=0,
        host_ns=first["host_ns"],
        wall_ns=first["wall_ns"],
        state="face_found",
        message="face found",
        detail={"frame_id": 7},
    )


def test_stop_drains_the_queue_then_closes_sinks_and_refuses_late_events(tmp_path: Path) -> None:
    sink = RecordingSink("rec")
    bus = EventBus([sink], maxsize=200)
    for i in range(150):  # queued before start, published after
        send(bus, TOPIC_STATS, "cam0", stats_body(i))
    bus.start()
    assert bus.stop(5)
    assert [p["seq"] for _, p in sink.events] == list(range(150))
    assert sink.opened and sink.closed
    assert send(bus, TOPIC_STATS, "cam0", stats_body(0)) is False
    assert bus.drops()["bus"] == 1


def test_failing_sink_is_disabled_reported_and_others_keep_everything(tmp_path: Path) -> None:
    log_path = tmp_path / "run" / "events.jsonl"
    jsonl = JsonlSink(log_path, name="log")
    boom = RecordingSink("boom", fail_on=3)
    rec = RecordingSink("rec")
    with EventBus([jsonl, boom, rec]) as bus:
        for i in range(10):
            send(bus, TOPIC_STATS, "cam0", stats_body(i))
        bus.flush(5)
    assert boom.closed and len(boom.events) == 3
    assert set(bus.failed) == {"boom"} and "No space left" in bus.failed["boom"]
    topics = [t for t, _ in rec.events]
    assert (
        topics == [TOPIC_STATS] * 4 + [TOPIC_HEALTH] + [TOPIC_STATS] * 6
    )  # the failing event still reached rec
    health = events.HealthEvent.from_dict(rec.events[4][1])
    assert health.state == "sink_error" and health.detail["sink"] == "boom" and "boom" in health.message
    assert list(read_jsonl(log_path)) == rec.events
    assert bus.drops() == {"bus": 0, "invalid": 0, "sink:log": 0, "sink:boom": 8, "sink:rec": 0}


def test_unserializable_payload_is_dropped_without_disabling_sinks(tmp_path: Path) -> None:
    jsonl = JsonlSink(tmp_path / "e.jsonl")
    with EventBus([jsonl]) as bus:
        send(bus, TOPIC_HEALTH, "cam0", {"state": "started", "message": "", "detail": {"obj": object()}})
        send(bus, TOPIC_HEALTH, "cam0", health_body())
    assert bus.failed == {} and bus.drops()["invalid"] == 1
    assert [p["seq"] for _, p in read_jsonl(tmp_path / "e.jsonl")] == [1]


def test_jsonl_lines_are_readable_while_the_sink_is_open(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "events.jsonl"
    sink = JsonlSink.from_options(types.MappingProxyType({"path": str(path)}))
    sink.open()
    try:
        for topic in (TOPIC_STATS, TOPIC_SPOT, TOPIC_RECOG):
            assert sink.send(topic, SAMPLES[topic].as_dict())
            assert len(path.read_text().splitlines()) == sink.written  # on disk before close
        records = list(read_jsonl(path))
    finally:
        sink.close()
    assert [t for t, _ in records] == [TOPIC_STATS, TOPIC_SPOT, TOPIC_RECOG]
    for topic, payload in records:
        assert events.schema_for(topic).from_dict(payload) == SAMPLES[topic]
    assert json.loads(path.read_text().splitlines()[0])["topic"] == TOPIC_STATS


def test_read_jsonl_skips_a_truncated_last_line_and_names_a_corrupt_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.jsonl"
    good = json.dumps({"topic": TOPIC_HEALTH, **SAMPLES[TOPIC_HEALTH].as_dict()})
    path.write_text(f"{good}\n{good}\n{good[:25]}")
    with caplog.at_level(logging.WARNING, logger="mestream"):
        assert len(list(read_jsonl(path))) == 2
    assert f"{path}:3: skipping a truncated last line" in caplog.text
    path.write_text(f"{good}\n{good[:25]}\n{good}\n")
    with pytest.raises(events.SchemaError, match=rf"{path}:2: not valid JSON"):
        list(read_jsonl(path))


def test_bind_errors_name_the_endpoint(tmp_path: Path) -> None:
    with ZmqSink(endpoint="tcp://127.0.0.1:*") as first:
        taken = first.bound_endpoint
        with pytest.raises(SinkError, match=rf"cannot bind '{taken}'.*another process"):
            ZmqSink(endpoint=taken).open()
        rec = RecordingSink("rec")
        bus = EventBus([rec, ZmqSink(endpoint=taken)])
        with pytest.raises(SinkError):
            bus.start()
        assert rec.opened and rec.closed  # sinks opened before the failure are closed again
    with pytest.raises(SinkError, match="cannot bind 'udp://nowhere'"):
        ZmqSink(endpoint="udp://nowhere").open()
    with pytest.raises(SinkError, match="cannot bind 'ipc://"):
        ZmqSink(endpoint=f"ipc://{tmp_path}/missing/dir/x.sock").open()


def test_sinks_are_built_from_options_and_follow_the_protocol(tmp_path: Path) -> None:
    sink = ZmqSink.from_options(types.MappingProxyType({"endpoint": "ipc:///tmp/x.sock", "hwm": 5}))
    assert (sink.endpoint, sink.hwm, sink.name) == ("ipc:///tmp/x.sock", 5, "zmq")
    with pytest.raises(ValueError, match="unknown option 'port'"):
        ZmqSink.from_options({"port": 5556})
    with pytest.raises(ValueError, match="'path' is required"):
        JsonlSink.from_options({})
    assert isinstance(sink, Sink) and isinstance(JsonlSink(tmp_path / "x"), Sink)
    with pytest.raises(ValueError, match="unique"):
        EventBus([RecordingSink("a"), RecordingSink("a")])


def test_listen_prints_events_and_stops_after_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = f"ipc://{tmp_path}/listen.sock"
    stop = threading.Event()

    def publish(bus: EventBus) -> None:
        i = 0
        while not stop.is_set():  # keep publishing: the listener joins at some unknown point
            send(bus, TOPIC_STATS, "cam0", stats_body(i))
            i += 1
            time.sleep(0.005)

    parser = argparse.ArgumentParser()
    listen.add_arguments(parser)
    args = parser.parse_args(
        [endpoint, "--count", "5", "--duration", "5", "--jsonl", str(tmp_path / "l.jsonl")]
    )
    with EventBus([ZmqSink(endpoint=endpoint)]) as bus:
        thread = threading.Thread(target=publish, args=(bus,))
        thread.start()
        try:
            assert listen.run(args) == 0
        finally:
            stop.set()
            thread.join()
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 5 and all(line.startswith("mestream.stats cam0 #") for line in lines)
    assert "fps_in=500.0" in lines[0]
    assert "5 events (mestream.stats 5); 0 missed in 0 gaps" in err
    assert len(list(read_jsonl(tmp_path / "l.jsonl"))) == 5


def test_subscriber_reports_each_gap_and_restart(tmp_path: Path) -> None:
    warnings: list[listen.Gap] = []
    with connected(f"ipc://{tmp_path}/g.sock") as (sink, subscriber):
        subscriber.on_gap = warnings.append
        for i, seq in enumerate((0, 1, 4, 5, 9, 2)):  # 2, 3 missed, then 6..8, then a publisher restart
            spot = SAMPLES[TOPIC_SPOT].as_dict()
            sink.send(TOPIC_SPOT, {**spot, "camera": "cam0", "seq": seq})
            sink.send(TOPIC_SPOT, {**spot, "camera": "cam1", "seq": i})  # its own sequence: no gap
        received = receive_all(subscriber)
    assert len(received) == 12
    assert [(g.camera, g.expected, g.got, g.missed) for g in warnings] == [
        ("cam0", 2, 4, 2),
        ("cam0", 6, 9, 3),
    ]
    assert (subscriber.gaps, subscriber.gap_count, subscriber.restarts) == (5, 2, 1)


def test_format_event_shows_the_main_fields_of_every_topic() -> None:
    for topic, event in SAMPLES.items():
        line = listen.format_event(topic, event.as_dict())
        head, rest = line[: len(topic) + 10], line[len(topic) + 10 :]
        assert head == f"{topic} cam0 #41 " and not rest.startswith("{"), line
    assert "label=surprise p=0.82" in listen.format_event(TOPIC_RECOG, SAMPLES[TOPIC_RECOG].as_dict())
    assert "drops=sink:zmq:3" in listen.format_event(TOPIC_STATS, SAMPLES[TOPIC_STATS].as_dict())
    assert "frames=1200-1231-1290" in listen.format_event(TOPIC_SPOT, SAMPLES[TOPIC_SPOT].as_dict())
    # a payload its formatter cannot read (another version, a plugin's topic) falls back to JSON
    assert (
        listen.format_event(TOPIC_STATS, {"camera": "c", "seq": 1, "x": 2}) == 'mestream.stats c #1 {"x":2}'
    )
    assert (
        listen.format_event("plugin.thing", {"camera": "c", "seq": 1, "x": 2}) == 'plugin.thing c #1 {"x":2}'
    )


def test_subscriber_rejects_a_malformed_endpoint() -> None:
    with pytest.raises(ValueError, match="cannot connect to 'nonsense'"):
        Subscriber("nonsense")


_PUBLISH_THEN_EXIT = """
import sys
from mestream.engine.sinks import ZmqSink
sink = ZmqSink(sys.argv[1], hwm=1000, linger_ms=5000)
sink.open()
sink.wait_for_subscriber(5)
for i in range(300):
    sink.send("mestream.stats", {"i": i, "pad": "x" * 2000})
sink.close()
"""


def test_events_queued_at_close_reach_a_slow_subscriber_after_the_publisher_exits(tmp_path):
    """The tail of a run (final stats, 'stopped') must not die with the process."""
    endpoint = f"ipc://{tmp_path}/tail.sock"
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 5)  # a slow subscriber pushes back: the events wait in the publisher
    sub.setsockopt(zmq.RCVBUF, 4096)
    sub.connect(endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    publisher = subprocess.Popen([sys.executable, "-c", _PUBLISH_THEN_EXIT, endpoint])
    received = 0
    try:
        while sub.poll(1000):
            sub.recv_multipart()
            received += 1
            time.sleep(0.002)
    finally:
        publisher.wait(timeout=30)
        sub.close(linger=0)
        context.term()
    assert publisher.returncode == 0
    # Without the sink's own context terminated on close, about a dozen arrive (the rest die
    # with the process); a SUB socket this small may itself drop a few at its own HWM.
    assert received >= 250
