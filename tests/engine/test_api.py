"""The in-process API: `Pipeline(config, on_event=fn)`, `Pipeline.events()`, sink objects in
`PublishConfig.sinks`, and the names `mestream` exports."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
import tomllib
from typing import Any

import pytest

import mestream
from mestream.engine import events
from mestream.engine.bus import EventBus
from mestream.engine.callback import CallbackSink, EventBuffer
from mestream.engine.config import (
    ConfigError,
    PublishConfig,
    RecogConfig,
    RunConfig,
    SinkConfig,
    SourceConfig,
    SpotConfig,
    merge,
)
from mestream.engine.events import (
    TOPIC_HEALTH,
    TOPIC_RECOG,
    TOPIC_SPOT,
    TOPIC_STATS,
    Event,
    HealthEvent,
    RecogEvent,
    SpotEvent,
    StatsEvent,
    schema_for,
)
from mestream.engine.pipeline import Pipeline, build_sinks


class ListSink:
    """A lab script's own sink: no entry point, no package."""

    def __init__(self, name: str = "mine") -> None:
        self.name = name
        self.dropped = 0
        self.opened = self.closed = 0
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def open(self) -> None:
        self.opened += 1

    def send(self, topic: str, payload: dict[str, Any]) -> bool:
        self.sent.append((topic, payload))
        return True

    def close(self) -> None:
        self.closed += 1


def ingest_only(*, pace: bool = False, sinks: tuple[Any, ...] = (), **changes: Any) -> RunConfig:
    """A run without models (started, stats and stopped events): quick to start and to stop."""
    return RunConfig(
        source=SourceConfig(pace=pace),
        spot=SpotConfig(enabled=False),
        recognise=RecogConfig(enabled=False),
        progress=False,
        publish=PublishConfig(endpoint="", console=False, sinks=sinks),
        **changes,
    )


def run_threads() -> list[str]:
    """A pipeline's threads still alive: its stages, the bus and the events() runner are ``mestream-…``."""
    return [t.name for t in threading.enumerate() if t.name.startswith("mestream")]


def keyed(events: list[Event]) -> list[tuple[str, str, int]]:
    return [(e.topic, e.camera, e.seq) for e in events]


@pytest.fixture(scope="module")
def spotting_run() -> dict[str, Any]:
    """One short unpaced synthetic run (seed 0 has micro-expressions in its first 12 s), read three
    ways at once: a callback, the iterator and a sink object in the config."""
    sink = ListSink()
    config = RunConfig(
        source=SourceConfig(pace=False, seed=0),
        duration=6.0,
        progress=False,
        publish=PublishConfig(endpoint="", console=False, sinks=(sink,)),
    )
    called: list[Event] = []
    pipeline = Pipeline(config, on_event=called.append)
    iterated = list(pipeline.events())
    return {"pipeline": pipeline, "called": called, "iterated": iterated, "sink": sink}


def test_callback_receives_typed_events_in_order_with_seq_per_topic(spotting_run):
    called = spotting_run["called"]
    for event in called:
        assert type(event) is schema_for(event.topic)
    assert isinstance(called[0], HealthEvent) and called[0].state == "started"
    assert isinstance(called[-1], HealthEvent) and called[-1].state == "stopped"
    assert {type(e) for e in called} == {HealthEvent, StatsEvent, SpotEvent, RecogEvent}
    numbers: dict[tuple[str, str], list[int]] = {}
    for event in called:
        numbers.setdefault((event.topic, event.camera), []).append(event.seq)
    assert all(seqs == list(range(len(seqs))) for seqs in numbers.values()), numbers
    published = [(topic, p["camera"], p["seq"]) for topic, p in spotting_run["sink"].sent]
    assert keyed(called) == published  # the order the bus published in, not a re-sorted one


def test_events_yields_every_event_as_published_and_sets_the_summary(spotting_run):
    pipeline, iterated, called = spotting_run["pipeline"], spotting_run["iterated"], spotting_run["called"]
    spots = [e for e in iterated if isinstance(e, SpotEvent)]
    assert spots and all(e.topic == TOPIC_SPOT for e in spots)
    assert [e.as_dict() for e in iterated] == [e.as_dict() for e in called]
    summary = pipeline.summary
    assert summary is not None and not summary.interrupted and not summary.error
    assert summary.spots == len(spots)
    assert summary.recognitions == sum(e.topic == TOPIC_RECOG for e in iterated)
    assert summary.drops["sink:on_event"] == 0 and summary.drops["sink:events"] == 0
    assert run_threads() == []


def test_a_sink_object_in_the_config_is_used_as_it_is(spotting_run):
    sink, called = spotting_run["sink"], spotting_run["called"]
    assert spotting_run["pipeline"].config.publish.sinks[0] is sink
    assert (sink.opened, sink.closed) == (1, 1)
    assert [schema_for(t).from_dict(p) for t, p in sink.sent] == called


def test_events_are_copies_a_listener_may_edit(spotting_run):
    spot = next(e for e in spotting_run["called"] if isinstance(e, SpotEvent))
    recorded = spotting_run["pipeline"].record.events[TOPIC_SPOT][0]
    spot.latency.clear()  # a listener's edit must not reach the scores, which read the recorded payloads
    assert recorded["latency"]["capture_to_publish_ms"] > 0


def test_a_pipeline_runs_once(spotting_run):
    with pytest.raises(RuntimeError, match="already run"):
        spotting_run["pipeline"].events()
    with pytest.raises(RuntimeError, match="already been started"):
        spotting_run["pipeline"].run()


def test_a_callback_that_calls_sys_exit_is_counted_and_the_bus_goes_on():
    sink = ListSink()

    def leave(event):
        raise SystemExit(0)

    callback = CallbackSink(leave)
    bus = EventBus([callback, sink])
    bus.start()
    for _ in range(3):
        bus.emit(events.health("cam0", "started", "m", {}))
    bus.stop()
    assert len(sink.sent) == 3 and callback.dropped == 3


def test_a_callback_that_raises_is_counted_and_the_others_still_receive(caplog):
    sink = ListSink()
    calls: list[str] = []

    def fragile(event: Event) -> None:
        calls.append(event.topic)
        if isinstance(event, StatsEvent):
            raise KeyError("a bug in the lab script")

    pipeline = Pipeline(ingest_only(sinks=(sink,), duration=1.0, stats_interval=0.1), on_event=fragile)
    with caplog.at_level(logging.ERROR, logger="mestream"):
        summary = pipeline.run()
    stats = sum(topic == TOPIC_STATS for topic, _ in sink.sent)
    assert stats >= 2 and not summary.error
    assert calls == [topic for topic, _ in sink.sent]  # called on every event, after each failure too
    assert summary.drops["sink:on_event"] == stats and summary.drops["sink:mine"] == 0
    assert [p["state"] for t, p in sink.sent if t == TOPIC_HEALTH] == ["started", "stopped"]  # no sink_error
    failures = [r for r in caplog.records if "callback raised" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None


def test_breaking_out_of_events_stops_the_run_and_leaves_no_thread():
    pipeline = Pipeline(ingest_only(pace=True, duration=20.0))  # paced for 20 s, unless stopped
    start = time.monotonic()
    for event in pipeline.events():
        assert isinstance(event, HealthEvent) and event.state == "started"
        break
    assert time.monotonic() - start < 10.0
    assert run_threads() == []
    assert pipeline.summary is not None and pipeline.summary.interrupted and not pipeline.summary.error


def test_a_consumer_exception_stops_the_run_and_propagates():
    pipeline = Pipeline(ingest_only(pace=True, duration=20.0))
    start = time.monotonic()
    with pytest.raises(ZeroDivisionError):
        for _ in pipeline.events():
            _ = 1 / 0
    assert time.monotonic() - start < 10.0
    assert run_threads() == [] and pipeline.summary is not None and pipeline.summary.interrupted


def test_an_iterator_left_open_is_stopped_cleanly_at_exit(tmp_path):
    log = tmp_path / "events.jsonl"
    script = textwrap.dedent("""
        import sys
        from mestream.engine.config import PublishConfig, RecogConfig, RunConfig, SpotConfig
        from mestream.engine.pipeline import Pipeline
        config = RunConfig(duration=20.0, progress=False, spot=SpotConfig(enabled=False),
                           recognise=RecogConfig(enabled=False),
                           publish=PublishConfig(endpoint="", console=False, log=sys.argv[1]))
        events = Pipeline(config).events()
        next(events)  # no close(): the interpreter exits while the run goes on
    """)
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script, str(log)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 15.0  # stopped, not run to its 20 s
    last = json.loads(log.read_text().splitlines()[-1])
    assert (last["topic"], last["state"]) == (TOPIC_HEALTH, "stopped")  # shut down in order, sinks flushed


def test_no_event_within_the_timeout_stops_the_run_and_raises():
    def stall(event: Event) -> None:  # holds the publisher thread: nothing reaches the iterator meanwhile
        if isinstance(event, HealthEvent) and event.state == "started":
            time.sleep(1.5)

    pipeline = Pipeline(ingest_only(pace=True, duration=20.0), on_event=stall)
    with pytest.raises(TimeoutError, match="no event within 0.3 s"):
        for _ in pipeline.events(timeout=0.3):
            pass
    assert run_threads() == [] and pipeline.summary is not None


def test_events_refuses_a_timeout_that_is_not_positive(spotting_run):
    with pytest.raises(ValueError, match="timeout must be > 0"):
        spotting_run["pipeline"].events(timeout=0)


# -- the pieces --------------------------------------------------------------------------------


def health(seq: int) -> tuple[str, dict[str, Any]]:
    return TOPIC_HEALTH, {
        "schema": 1,
        "camera": "cam0",
        "seq": seq,
        "host_ns": 1,
        "wall_ns": 2,
        "state": "started",
        "message": "m",
        "detail": {"seq": seq},
    }


def test_event_buffer_drops_and_counts_when_the_consumer_lags_and_never_blocks():
    buffer = EventBuffer(maxsize=3)
    start = time.monotonic()
    accepted = [buffer.send(*health(seq)) for seq in range(10)]
    assert time.monotonic() - start < 0.5
    assert accepted == [True] * 3 + [False] * 7 and buffer.dropped == 7
    assert [buffer.get(0.1).seq for _ in range(3)] == [0, 1, 2]  # the oldest kept, in order
    assert buffer.send(*health(10)) and buffer.get(0.1).seq == 10  # room again once the consumer caught up
    with pytest.raises(TimeoutError):
        buffer.get(0.05)
    buffer.finish()
    assert buffer.get() is None


def test_callback_sink_refuses_what_it_cannot_call():
    with pytest.raises(TypeError, match="on_event: expected a function"):
        CallbackSink("print")  # type: ignore[arg-type]


def test_bus_add_sink_names_and_lifecycle():
    sink = ListSink("late")
    bus = EventBus([ListSink("first")])
    bus.start()
    bus.add_sink(sink)
    with pytest.raises(ValueError, match="'late' is taken"):
        bus.add_sink(ListSink("late"))
    bus.emit(events.health("cam0", "started", "m", {}))
    bus.stop()
    assert [p["seq"] for _, p in sink.sent] == [0] and "sink:late" in bus.drops() and sink.closed == 1
    with pytest.raises(RuntimeError, match="stopped bus"):
        bus.add_sink(ListSink("after"))


def test_publish_sinks_take_objects_and_kinds_but_nothing_else():
    mine = ListSink()
    sinks = (mine, SinkConfig(kind="console"))
    config = RunConfig(publish=PublishConfig(endpoint="", console=False, sinks=sinks))
    built = build_sinks(config)
    assert built[0] is mine and type(built[1]).__name__ == "ConsoleSink"
    with pytest.raises(ConfigError, match=r"publish.sinks\[1\]: must be a SinkConfig or a sink object"):
        PublishConfig(sinks=(mine, "console"))  # type: ignore[arg-type]
    toml = merge(RunConfig(), tomllib.loads('[[publish.sinks]]\nkind = "console"\n'))
    assert toml.publish.sinks == (SinkConfig(kind="console"),)
    with pytest.raises(ConfigError, match=r"publish.sinks\[0\]: expected a table"):
        merge(RunConfig(), tomllib.loads('[publish]\nsinks = ["console"]\n'))


# -- the package --------------------------------------------------------------------------------


def test_package_exports_the_public_names():
    assert sorted(mestream.__all__) == sorted(["__version__", *mestream._EXPORTS])
    assert mestream.Pipeline is Pipeline and mestream.RunConfig is RunConfig
    assert mestream.SpotEvent is SpotEvent and mestream.Event is Event
    for name in mestream.__all__:
        assert getattr(mestream, name) is not None and name in dir(mestream)
    with pytest.raises(AttributeError, match="no attribute 'Pipelin'"):
        _ = mestream.Pipelin


def test_importing_the_package_stays_light():
    code = (
        "import sys, mestream; heavy = [m for m in ('mestream.engine', 'cv2', 'numpy', 'zmq', 'torch') "
        "if m in sys.modules]; assert not heavy, heavy; mestream.RunConfig; "
        "assert 'torch' not in sys.modules and 'mestream.engine.pipeline' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
