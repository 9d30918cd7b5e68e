"""`mestream listen`: subscribe to a running engine, show its events and count what was missed.

The `Subscriber` does the work (and is what tests and client code reuse); the command only
prints. Gaps are found from the header's ``seq``, which counts per (topic, camera), so a
listener filtering one topic still sees every loss on it (see `mestream.engine.events`).

Events are checked against the schema they declare before anyone sees them: a payload whose
``schema`` is not this reader's `events.SCHEMA_VERSION`, or that lacks or adds a field of its
topic, is rejected and counted, never shown as if it were valid (a reader that guessed at a
newer engine's fields would print numbers that mean something else).

Exit codes of the command: 0, also on Ctrl-C (the usual way to end it); 1 when a ``--duration``
or ``--until-stopped`` run received no valid event; 2 for a bad endpoint or log file.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import zmq

from mestream.engine import events
from mestream.engine.config import DEFAULT_ENDPOINT
from mestream.engine.sinks import JsonlSink, SinkError, jsonl_line

log = logging.getLogger("mestream")


@dataclass(frozen=True, slots=True)
class Gap:
    """``missed`` events of (topic, camera) never arrived: ``seq`` jumped from ``expected`` to ``got``."""

    topic: str
    camera: str
    expected: int
    got: int

    @property
    def missed(self) -> int:
        return self.got - self.expected


class Subscriber:
    """A SUB socket that decodes mestream events and counts sequence gaps.

    Threading: not thread-safe; one thread (ZeroMQ sockets must not be shared).

    Args:
        endpoint: the engine's endpoint, ``tcp://host:port`` or ``ipc:///path``.
        topics: topic prefixes to subscribe to; the default receives everything.
        rcvhwm: receive high-water mark in messages. When it is reached ZeroMQ pushes back
            on the publisher, whose sink then drops (and counts) rather than this side.
        on_gap: called with a `Gap` whenever a jump in ``seq`` is seen.
        on_reject: called with ``(topic, payload, error)`` for an event that does not match the
            schema it declares; without it, a warning is logged.

    Counters: ``received`` (valid events returned); ``gaps`` (events missed, summed over all
    gaps); ``gap_count`` (how many jumps); ``restarts`` (``seq`` went back: the publisher
    restarted); ``errors`` (undecodable messages, skipped); ``rejected`` (decoded, but another
    schema version or fields that do not match the topic's schema: skipped).
    """

    def __init__(
        self,
        endpoint: str,
        topics: Iterable[str] = (events.TOPIC_PREFIX,),
        rcvhwm: int = 1000,
        on_gap: Callable[[Gap], None] | None = None,
        on_reject: Callable[[str, dict[str, Any], events.SchemaError], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.topics = tuple(topics)
        self.on_gap = on_gap
        self.on_reject = on_reject
        self.received = 0
        self.gaps = 0
        self.gap_count = 0
        self.restarts = 0
        self.errors = 0
        self.rejected = 0
        self._last_seq: dict[tuple[str, str], int] = {}
        socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
        try:
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.RCVHWM, rcvhwm)
            socket.connect(endpoint)
            for prefix in self.topics:
                socket.setsockopt(zmq.SUBSCRIBE, prefix.encode("utf-8"))
        except zmq.ZMQError as exc:
            socket.close(linger=0)
            raise ValueError(
                f"cannot connect to {endpoint!r}: {exc}; expected tcp://HOST:PORT or ipc:///path"
            ) from None
        self._socket: zmq.Socket | None = socket

    def recv(self, timeout_ms: int | None = None) -> tuple[str, dict[str, Any]] | None:
        """The next ``(topic, payload)``, or None if nothing arrived within ``timeout_ms``
        (None waits forever). Undecodable messages are counted in ``errors`` and skipped."""
        if self._socket is None:
            raise RuntimeError(f"subscriber to {self.endpoint}: recv after close()")
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        while True:
            wait_ms = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not self._socket.poll(wait_ms, zmq.POLLIN):
                return None
            frames = self._socket.recv_multipart(zmq.NOBLOCK)
            try:
                topic, payload = events.decode(frames)
            except events.SchemaError as exc:
                self.errors += 1
                log.warning("subscriber to %s: skipping a bad message: %s", self.endpoint, exc)
                continue
            self._track(topic, payload)  # it did arrive: its seq is no gap, even if it is rejected
            try:
                check_schema(topic, payload)
            except events.SchemaError as exc:
                self.rejected += 1
                if self.on_reject is not None:
                    self.on_reject(topic, payload, exc)
                else:
                    log.warning("subscriber to %s: rejected an event: %s", self.endpoint, exc)
                continue
            self.received += 1
            return topic, payload

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _track(self, topic: str, payload: dict[str, Any]) -> None:
        seq, camera = payload.get("seq"), payload.get("camera")
        if not isinstance(seq, int) or not isinstance(camera, str):
            return
        key = (topic, camera)
        last = self._last_seq.get(key)
        self._last_seq[key] = seq
        if last is None or seq == last + 1:
            return
        if seq > last + 1:
            gap = Gap(topic, camera, last + 1, seq)
            self.gaps += gap.missed
            self.gap_count += 1
            if self.on_gap is not None:
                self.on_gap(gap)
        else:
            self.restarts += 1
            log.info(
                "subscriber to %s: %s %s seq went back from %d to %d; publisher restarted?",
                self.endpoint,
                topic,
                camera,
                last,
                seq,
            )


def check_schema(topic: str, payload: dict[str, Any]) -> None:
    """Raise `events.SchemaError` naming the topic and field unless ``payload`` declares this
    reader's schema version and, for a mestream topic, has exactly that topic's fields.
    A plugin's own topic is held to the version only: its fields are its own."""
    version = payload.get("schema")
    if version != events.SCHEMA_VERSION:
        said = "has no field 'schema'" if "schema" not in payload else f"field 'schema' is {version!r}"
        raise events.SchemaError(f"{topic}: {said}, this reader knows version {events.SCHEMA_VERSION}")
    if topic in events.TOPICS:
        events.schema_for(topic).from_dict(payload)


# The command.

NO_MESSAGE_WARN_S = 3.0
"""Seconds without any message before `mestream listen` asks whether an engine is publishing."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "endpoint", metavar="ENDPOINT", help="the engine's endpoint, e.g. tcp://127.0.0.1:5556"
    )
    parser.add_argument(
        "--jsonl",
        metavar="FILE",
        help=(
            "also append every event to FILE as JSON lines; "
            "'-' writes JSON lines to stdout instead of the summary lines"
        ),
    )
    parser.add_argument(
        "--topic",
        metavar="PREFIX",
        action="append",
        help=f"topic prefix to subscribe to; repeatable (default: {events.TOPIC_PREFIX})",
    )
    parser.add_argument("--count", type=int, metavar="N", help="exit after N events")
    parser.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help="exit after S seconds; the exit code is 1 if no valid event arrived",
    )
    parser.add_argument(
        "--until-stopped",
        action="store_true",
        help="exit once every camera seen has published its 'stopped' health event (the "
        "engine's run ended); the exit code is 1 if no valid event arrived",
    )
    parser.add_argument(
        "--warn-after",
        type=float,
        metavar="S",
        default=NO_MESSAGE_WARN_S,
        help="warn on stderr when nothing arrived for S seconds (default %(default)g; 0: never)",
    )


def run(args: argparse.Namespace) -> int:
    prefixes = args.topic or [events.TOPIC_PREFIX]
    # --until-stopped needs the health topic even when only spots are shown
    health = args.until_stopped and not _shown(events.TOPIC_HEALTH, prefixes)
    wanted = prefixes + ([events.TOPIC_HEALTH] if health else [])
    to_stdout = args.jsonl == "-"
    log_sink = JsonlSink(args.jsonl, name="listen") if args.jsonl and not to_stdout else None

    def warn_gap(gap: Gap) -> None:
        print(
            f"mestream listen: gap on {gap.topic} {gap.camera}: {gap.missed} missed "
            f"(seq {gap.expected}..{gap.got - 1})",
            file=sys.stderr,
            flush=True,
        )

    def warn_reject(topic: str, payload: dict[str, Any], error: events.SchemaError) -> None:
        where = f"{topic} {payload.get('camera', '?')} #{payload.get('seq', '?')}"
        print(f"mestream listen: rejected {where}: {error}", file=sys.stderr, flush=True)

    try:
        subscriber = Subscriber(args.endpoint, wanted, on_gap=warn_gap, on_reject=warn_reject)
    except ValueError as exc:
        print(f"mestream listen: {exc}", file=sys.stderr)
        return 2
    try:
        if log_sink is not None:
            log_sink.open()
    except SinkError as exc:
        subscriber.close()
        print(f"mestream listen: {exc}", file=sys.stderr)
        return 2
    print(
        f"mestream listen: subscribed to {', '.join(prefixes)} on {args.endpoint}",
        file=sys.stderr,
        flush=True,
    )
    counts: collections.Counter[str] = collections.Counter()
    try:
        _loop(subscriber, args, prefixes, counts, log_sink, to_stdout)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `mestream listen ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        subscriber.close()
        if log_sink is not None:
            log_sink.close()
    print(_summary(counts, subscriber), file=sys.stderr, flush=True)
    if (args.duration is not None or args.until_stopped) and subscriber.received == 0:
        rejected = f" ({subscriber.rejected} rejected)" if subscriber.rejected else ""
        print(
            f"mestream listen: no valid event arrived from {args.endpoint}{rejected}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return 0


def _shown(topic: str, prefixes: list[str]) -> bool:
    return any(topic.startswith(prefix) for prefix in prefixes)


def _loop(
    subscriber: Subscriber,
    args: argparse.Namespace,
    prefixes: list[str],
    counts: collections.Counter[str],
    log_sink: JsonlSink | None,
    to_stdout: bool,
) -> None:
    started = time.monotonic()
    deadline = None if args.duration is None else started + args.duration
    warn_at = started + args.warn_after if args.warn_after and args.warn_after > 0 else None
    running: set[str] = set()  # cameras seen that have not published 'stopped' yet (--until-stopped)
    while args.count is None or sum(counts.values()) < args.count:
        timeout_ms = 200  # short, so --duration and Ctrl-C are noticed promptly
        now = time.monotonic()
        if deadline is not None:
            remaining = deadline - now
            if remaining <= 0:
                return
            timeout_ms = min(timeout_ms, int(remaining * 1000) + 1)
        if warn_at is not None and now >= warn_at:
            warn_at = None
            if subscriber.received + subscriber.rejected + subscriber.errors == 0:
                print(
                    f"mestream listen: nothing received from {args.endpoint} in {args.warn_after:g} s: "
                    f"is no engine publishing there? start one with `mestream run` (it publishes on "
                    f"{DEFAULT_ENDPOINT} unless --publish says otherwise)",
                    file=sys.stderr,
                    flush=True,
                )
        message = subscriber.recv(timeout_ms)
        if message is None:
            continue
        topic, payload = message
        stopped = False
        if args.until_stopped:
            camera = str(payload.get("camera", "?"))
            stopped = topic == events.TOPIC_HEALTH and payload.get("state") == "stopped"
            if stopped:
                running.discard(camera)
            else:
                running.add(camera)
        if _shown(topic, prefixes):
            _show(topic, payload, counts, log_sink, to_stdout)
        if args.until_stopped and stopped and not running:
            return


def _show(
    topic: str,
    payload: dict[str, Any],
    counts: collections.Counter[str],
    log_sink: JsonlSink | None,
    to_stdout: bool,
) -> None:
    counts[topic] += 1
    if log_sink is not None:
        try:
            log_sink.send(topic, payload)
        except events.PayloadError as exc:
            print(f"mestream listen: not logged: {exc}", file=sys.stderr, flush=True)
    if to_stdout:
        print(jsonl_line(topic, payload), flush=True)
    else:
        print(format_event(topic, payload), flush=True)


def _summary(counts: collections.Counter[str], subscriber: Subscriber) -> str:
    per_topic = ", ".join(f"{topic} {n}" for topic, n in sorted(counts.items()))
    text = f"mestream listen: {sum(counts.values())} events"
    if per_topic:
        text += f" ({per_topic})"
    text += f"; {subscriber.gaps} missed in {subscriber.gap_count} gaps"
    if subscriber.restarts:
        text += f"; publisher restarted {subscriber.restarts}x"
    if subscriber.errors:
        text += f"; {subscriber.errors} undecodable"
    if subscriber.rejected:
        text += f"; {subscriber.rejected} rejected (another schema version or fields that do not match)"
    return text


def _ms(latency: Any) -> str:
    if isinstance(latency, dict) and "capture_to_publish_ms" in latency:
        return f" latency={latency['capture_to_publish_ms']:.1f}ms"
    return ""


def _stats(p: dict[str, Any]) -> str:
    drops = ",".join(f"{k}:{v}" for k, v in sorted(p["drops"].items()) if v)
    return (
        f"fps_in={p['fps_in']:.1f} fps_out={p['fps_out']:.1f} frames={p['frames_in']}/{p['frames_out']} "
        f"ring={p['ring_fill']:.2f} lag={p['lag_frames']}f/{p['lag_ms']:.1f}ms drops={drops or 0} "
        f"up={p['uptime_s']:.0f}s"
    )


def _spot(p: dict[str, Any]) -> str:
    kind = "micro" if p["is_micro"] else "macro"
    return (
        f"id={p['event_id']} {kind} frames={p['onset_frame']}-{p['apex_frame']}-{p['offset_frame']} "
        f"score={p['score']:.2f} scale={p['scale']}{_ms(p['latency'])}"
    )


def _recog(p: dict[str, Any]) -> str:
    probability = p["probabilities"].get(p["label"], float("nan"))
    return (
        f"id={p['event_id']} label={p['label']} p={probability:.2f} "
        f"key={p['max_key_frame']}{_ms(p['latency'])}"
    )


def _health(p: dict[str, Any]) -> str:
    detail = f" {json.dumps(p['detail'], default=str)}" if p["detail"] else ""
    return f"state={p['state']} {p['message']!r}{detail}"


_FORMATTERS: dict[str, Callable[[dict[str, Any]], str]] = {
    events.TOPIC_STATS: _stats,
    events.TOPIC_SPOT: _spot,
    events.TOPIC_RECOG: _recog,
    events.TOPIC_HEALTH: _health,
}


def format_event(topic: str, payload: dict[str, Any]) -> str:
    """One line: topic, camera, ``#seq`` and the fields a human looks at first.

    A payload that does not fit its formatter (another schema version, a plugin's topic)
    falls back to its fields as compact JSON rather than failing the listener.
    """
    head = f"{topic} {payload.get('camera', '?')} #{payload.get('seq', '?')}"
    formatter = _FORMATTERS.get(topic)
    if formatter is not None:
        try:
            return f"{head} {formatter(payload)}"
        except (KeyError, TypeError, ValueError, AttributeError):
            pass
    body = {k: v for k, v in payload.items() if k not in events.HEADER_FIELDS}
    return f"{head} {json.dumps(body, default=str, separators=(',', ':'))}"
