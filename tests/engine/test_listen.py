"""`mestream listen` against a real loopback ZeroMQ publisher: what a newcomer sees when no
engine runs, when an event declares another schema, and when the engine stops. The listener is
a subprocess (as a user runs it), stopped by its pid if a check fails."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from mestream.engine import events
from mestream.engine.events import TOPIC_HEALTH, TOPIC_SPOT, TOPIC_STATS
from mestream.engine.listen import check_schema
from mestream.engine.sinks import ZmqSink
from tests.engine.test_events import SAMPLES


def payload(topic: str, camera: str, seq: int, **changes: object) -> dict:
    return {**SAMPLES[topic].as_dict(), "camera": camera, "seq": seq, **changes}


@contextlib.contextmanager
def listener(*args: str) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(
        [sys.executable, "-m", "mestream", "listen", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_listener_with_no_engine_says_so_and_a_duration_run_fails():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with listener(endpoint, "--duration", "1.5", "--warn-after", "0.5") as process:
        out, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert (
        f"nothing received from {endpoint} in 0.5 s: is no engine publishing there? start one with "
        f"`mestream run`" in err
    )
    assert f"no valid event arrived from {endpoint}" in err and out == ""


def test_schema_99_is_rejected_and_the_listener_stops_when_every_camera_stopped():
    with ZmqSink("tcp://127.0.0.1:*", linger_ms=2000) as sink:
        with listener(
            sink.bound_endpoint, "--until-stopped", "--duration", "60", "--warn-after", "0"
        ) as process:
            assert sink.wait_for_subscriber(timeout=60), process.stderr
            sent = [
                (TOPIC_STATS, payload(TOPIC_STATS, "cam0", 0)),
                (TOPIC_STATS, payload(TOPIC_STATS, "cam1", 0)),
                (TOPIC_SPOT, payload(TOPIC_SPOT, "cam1", 0, schema=99)),
                (TOPIC_SPOT, payload(TOPIC_SPOT, "cam1", 1)),
                (TOPIC_HEALTH, payload(TOPIC_HEALTH, "cam0", 0, state="stopped", message="stopped")),
                (TOPIC_STATS, payload(TOPIC_STATS, "cam1", 1)),  # cam1 still runs: the listener goes on
                (TOPIC_HEALTH, payload(TOPIC_HEALTH, "cam1", 0, state="stopped", message="stopped")),
            ]
            for topic, body in sent:
                assert sink.send(topic, body)
            out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    lines = out.splitlines()
    assert [line.split(" #")[0] for line in lines] == [
        "mestream.stats cam0",
        "mestream.stats cam1",
        "mestream.spot cam1",
        "mestream.health cam0",
        "mestream.stats cam1",
        "mestream.health cam1",
    ], out
    assert "mestream.spot cam1 #1 " in out and "mestream.spot cam1 #0" not in out  # never printed as valid
    assert (
        "mestream listen: rejected mestream.spot cam1 #0: mestream.spot: field 'schema' is 99, this reader "
        "knows version 1" in err
    )
    assert "6 events" in err and "1 rejected" in err and "0 missed in 0 gaps" in err


def test_until_stopped_subscribes_to_health_without_showing_it():
    with ZmqSink("tcp://127.0.0.1:*", linger_ms=2000) as sink:
        with listener(
            sink.bound_endpoint, "--topic", TOPIC_SPOT, "--until-stopped", "--duration", "60"
        ) as process:
            assert sink.wait_for_subscriber(timeout=60)
            sink.send(TOPIC_STATS, payload(TOPIC_STATS, "cam0", 0))  # not subscribed: never arrives
            sink.send(TOPIC_SPOT, payload(TOPIC_SPOT, "cam0", 0))
            sink.send(TOPIC_HEALTH, payload(TOPIC_HEALTH, "cam0", 0, state="stopped", message="stopped"))
            out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert [line.split(" #")[0] for line in out.splitlines()] == ["mestream.spot cam0"]


@pytest.mark.parametrize(
    "topic, changes, needle",
    [
        (TOPIC_STATS, {"schema": 99}, "mestream.stats: field 'schema' is 99, this reader knows version 1"),
        (TOPIC_SPOT, {"schema": None}, "field 'schema' is None"),
        (TOPIC_SPOT, {"score": None, "extra": 1}, "mestream.spot: unknown field 'extra'"),
        ("plugin.thing", {"schema": 2}, "plugin.thing: field 'schema' is 2"),
    ],
)
def test_check_schema_names_topic_and_field(topic, changes, needle):
    body = {**SAMPLES.get(topic, SAMPLES[TOPIC_STATS]).as_dict(), **changes}
    with pytest.raises(events.SchemaError) as err:
        check_schema(topic, body)
    assert needle in str(err.value)


def test_check_schema_accepts_current_events_and_a_plugins_own_fields():
    for topic, event in SAMPLES.items():
        check_schema(topic, event.as_dict())
    check_schema("plugin.thing", {"schema": events.SCHEMA_VERSION, "camera": "c", "seq": 0, "x": 1})
    missing = {k: v for k, v in SAMPLES[TOPIC_SPOT].as_dict().items() if k != "schema"}
    with pytest.raises(events.SchemaError, match="mestream.spot: has no field 'schema'"):
        check_schema(TOPIC_SPOT, missing)


def test_a_timed_run_that_got_only_rejected_events_fails():
    with ZmqSink("tcp://127.0.0.1:*", linger_ms=2000) as sink:
        with listener(sink.bound_endpoint, "--duration", "4", "--warn-after", "0") as process:
            assert sink.wait_for_subscriber(timeout=60)
            for seq in range(3):
                sink.send(TOPIC_STATS, payload(TOPIC_STATS, "cam0", seq, schema=2))
            out, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert out == "" and err.count("mestream listen: rejected mestream.stats cam0 #") == 3
    assert f"no valid event arrived from {sink.bound_endpoint} (3 rejected)" in err
