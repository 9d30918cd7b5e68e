"""Where published events go: the `Sink` protocol, a ZeroMQ publisher and a JSONL log.

Sinks are called by the bus's single publisher thread, so none of them is thread-safe. A
sink never blocks the pipeline: when it cannot take an event it returns False and counts
it in ``dropped``; it raises only when it is broken for good, and the bus then disables it.
Built-in sinks register under the ``mestream.sinks`` entry point like a plugin's, and are
built from a config table with ``from_options``.
"""

from __future__ import annotations

import errno
import json
import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, TextIO, runtime_checkable

import zmq
from tqdm import tqdm

from mestream.engine import events

log = logging.getLogger("mestream")


class SinkError(RuntimeError):
    """A sink could not open (bad endpoint, address in use, unwritable path); the message names it."""


@runtime_checkable
class Sink(Protocol):
    """What the bus needs from a sink.

    ``send`` returns False when the event was dropped (and counts it in ``dropped``);
    it raises `events.PayloadError` for an event it cannot serialize (that event only is
    lost) and anything else when the sink is broken (the bus disables it). ``close``
    flushes what was accepted.
    """

    name: str
    dropped: int

    def open(self) -> None: ...

    def send(self, topic: str, payload: dict[str, Any]) -> bool: ...

    def close(self) -> None: ...


def _check_options(kind: str, options: Mapping[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"{kind} sink: unknown option {unknown[0]!r}; known options: {', '.join(known)}")


class ZmqSink:
    """Publishes ``[topic, msgpack payload]`` on a bound XPUB socket without ever blocking.

    Why XPUB with ``XPUB_NODROP`` rather than PUB: a PUB socket drops silently at the
    high-water mark, so nobody could tell a subscriber it missed events. With
    ``XPUB_NODROP=1`` and a non-blocking send, a full pipe raises ``zmq.Again`` instead;
    the event is then counted in ``dropped`` and the pipeline moves on. The price is
    all-or-nothing delivery: while any subscriber to a topic has a full pipe (stuck, or on
    a slow link), events on that topic are dropped for every subscriber, not just the slow
    one. A subscriber that dies is disconnected by ZeroMQ (socket close, or the ZMTP
    heartbeat after ``heartbeat_ms`` without a reply) and its pipe is freed. With no
    subscriber at all, events are discarded without counting: record with `JsonlSink`.

    XPUB delivers subscription messages to the application; left unread they pile up in
    memory for the life of the socket (one per subscribe / unsubscribe), so ``send`` drains
    them. ``wait_for_subscriber`` uses them to beat the slow-joiner problem.

    Threading: not thread-safe. Use from one thread at a time; the bus opens it in the
    caller's thread and hands it to its publisher thread across ``Thread.start`` / ``join``,
    the full memory barrier ZeroMQ asks for when a socket changes threads.

    Args:
        endpoint: ``tcp://host:port`` (port ``*`` picks a free one, see ``bound_endpoint``)
            or ``ipc:///path``.
        hwm: send high-water mark, in messages per subscriber.
        heartbeat_ms: ZMTP heartbeat interval; a peer silent for 3 intervals is dropped.
        linger_ms: how long ``close`` keeps sending what subscribers have not yet taken (the
            final stats and ``stopped`` events of a run); bounded so that a stuck subscriber
            cannot hang the exit. The sink owns its ZeroMQ context and terminates it on close,
            because pyzmq never terminates the shared context at exit: queued events would
            be lost silently.
        name: the sink's name in drop counters and health events.
    """

    OPTIONS = ("endpoint", "hwm", "heartbeat_ms", "linger_ms", "name")

    def __init__(
        self,
        endpoint: str = "tcp://127.0.0.1:5556",
        hwm: int = 1000,
        heartbeat_ms: int = 2000,
        linger_ms: int = 1000,
        name: str = "zmq",
    ) -> None:
        if hwm < 1:
            raise ValueError(f"zmq sink: hwm must be >= 1, got {hwm} (0 would mean unbounded)")
        self.endpoint = endpoint
        self.hwm = hwm
        self.heartbeat_ms = heartbeat_ms
        self.linger_ms = max(0, linger_ms)
        self.name = name
        self.dropped = 0
        self.sent = 0
        self.subscriptions = 0
        self.bound_endpoint = ""
        self._socket: zmq.Socket | None = None
        self._context: zmq.Context | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ZmqSink:
        """Build from a config table: keys ``endpoint``, ``hwm`` (and ``heartbeat_ms``, ``linger_ms``,
        ``name``)."""
        _check_options("zmq", options, cls.OPTIONS)
        return cls(**options)

    def open(self) -> None:
        """Bind the socket; a second call does nothing."""
        if self._socket is not None:
            return
        context = zmq.Context()
        socket = context.socket(zmq.XPUB)
        try:
            socket.setsockopt(zmq.LINGER, self.linger_ms)
            socket.setsockopt(zmq.SNDHWM, self.hwm)
            socket.setsockopt(zmq.XPUB_NODROP, 1)
            socket.setsockopt(zmq.XPUB_VERBOSE, 1)
            if self.heartbeat_ms > 0:
                socket.setsockopt(zmq.HEARTBEAT_IVL, self.heartbeat_ms)
                socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * self.heartbeat_ms)
            socket.bind(self.endpoint)
            self.bound_endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
        except zmq.ZMQError as exc:
            socket.close(linger=0)
            context.term()
            raise SinkError(_bind_error(self.endpoint, exc)) from None
        self._socket, self._context = socket, context
        log.info("zmq sink %r: publishing on %s", self.name, self.bound_endpoint)

    def send(self, topic: str, payload: dict[str, Any]) -> bool:
        """Publish one event; False (and counted) when a subscriber's pipe is full."""
        if self._socket is None:
            raise SinkError(f"zmq sink {self.name!r}: send before open()")
        frames = events.encode(topic, payload)
        self._drain()
        try:
            self._socket.send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def wait_for_subscriber(self, timeout: float = 5.0) -> bool:
        """Block up to ``timeout`` seconds until a subscription arrives (or has arrived).

        Once the XPUB has read a subscription it also applies its filter, so events sent
        afterwards reach that subscriber: no lost first events (the slow-joiner problem).
        """
        if self._socket is None:
            raise SinkError(f"zmq sink {self.name!r}: wait_for_subscriber before open()")
        deadline = time.monotonic() + timeout
        self._drain()
        while self.subscriptions == 0:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 or not self._socket.poll(remaining_ms, zmq.POLLIN):
                break
            self._drain()
        return self.subscriptions > 0

    def close(self) -> None:
        """Close the socket and wait up to ``linger_ms`` for queued events to go out."""
        if self._socket is not None and self._context is not None:
            self._socket.close()
            self._context.term()
            self._socket = self._context = None

    def _drain(self) -> None:
        socket = self._socket
        assert socket is not None, "drained before open()"
        while int(socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            message = socket.recv(zmq.NOBLOCK)
            if message[:1] == b"\x01":
                self.subscriptions += 1
                log.debug("zmq sink %r: subscription %r", self.name, message[1:])

    def __enter__(self) -> ZmqSink:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bind_error(endpoint: str, exc: zmq.ZMQError) -> str:
    hint = ""
    if exc.errno == errno.EADDRINUSE:
        hint = "; another process (a second mestream?) holds it: pick another port or stop that process"
    elif exc.errno in (errno.EINVAL, errno.EPROTONOSUPPORT, errno.ENODEV):
        hint = "; expected tcp://HOST:PORT (PORT may be *) or ipc:///path/to/socket"
    elif endpoint.startswith("ipc://"):
        hint = "; the socket's directory must exist and the path must be under ~100 characters"
    return f"zmq sink: cannot bind {endpoint!r}: {exc}{hint}"


class JsonlSink:
    """Appends each event as one JSON line ``{"topic": ..., **payload}``, flushed at once.

    Why flush per line: the log is the record of a session when nobody was subscribed, and a
    crash must not take the last seconds with it. Flushing hands each line to the OS (it
    survives the process); it does not fsync, so a power cut can still lose the tail. The
    line is serialized before it is written, so a bad value never leaves half a line.

    Threading: not thread-safe; one thread at a time (the bus's publisher thread).

    Args:
        path: the log file; parent directories are created, an existing file is appended to.
        name: the sink's name in drop counters and health events.
    """

    OPTIONS = ("path", "name")

    def __init__(self, path: str | Path, name: str = "jsonl") -> None:
        self.path = Path(path)
        self.name = name
        self.dropped = 0
        self.written = 0
        self._file: TextIO | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> JsonlSink:
        """Build from a config table: key ``path`` (and ``name``)."""
        _check_options("jsonl", options, cls.OPTIONS)
        if "path" not in options:
            raise ValueError("jsonl sink: option 'path' is required")
        return cls(**options)

    def open(self) -> None:
        if self._file is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8", newline="\n")
        except OSError as exc:
            raise SinkError(f"jsonl sink: cannot open {str(self.path)!r} for appending: {exc}") from None

    def send(self, topic: str, payload: dict[str, Any]) -> bool:
        if self._file is None:
            raise SinkError(f"jsonl sink {self.name!r}: send before open()")
        self._file.write(jsonl_line(topic, payload) + "\n")
        self._file.flush()
        self.written += 1
        return True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> JsonlSink:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def jsonl_line(topic: str, payload: Mapping[str, Any]) -> str:
    """One event as a JSONL line, ``{"topic": ..., **payload}``: the log's format and
    ``listen --jsonl -``'s."""
    if "topic" in payload:
        raise events.PayloadError(f"{topic}: payload has a 'topic' field, which the JSONL line reserves")
    try:
        return json.dumps({"topic": topic, **payload}, default=events.to_builtin)
    except (TypeError, ValueError) as exc:
        raise events.PayloadError(f"{topic}: payload cannot be serialized: {exc}") from None


def read_jsonl(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(topic, payload)`` from an event log, in order.

    A final line that does not parse (the writer was killed mid-line, or is still writing
    it) is skipped with a warning naming the file and line; a bad line anywhere else raises
    `events.SchemaError` with the file and line number, since that is corruption.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                if not line.endswith("\n"):  # only the last line can lack its newline
                    log.warning(
                        "%s:%d: skipping a truncated last line (%d characters)", path, number, len(line)
                    )
                    return
                raise events.SchemaError(f"{path}:{number}: not valid JSON: {exc}") from None
            if not isinstance(record, dict) or not isinstance(record.get("topic"), str):
                raise events.SchemaError(f"{path}:{number}: expected a JSON object with a 'topic' string")
            topic = record.pop("topic")
            yield topic, record


class ConsoleSink:
    """One line per spot and recognition event on standard output, as they happen: what a
    person watching a session wants to see without a subscriber. Each camera's ``started``
    event gets a line too, since it says what is read and with which weights. Stats and the
    other health events stay off the console (the progress bar and the end summary cover them)."""

    OPTIONS = ("name",)

    def __init__(self, name: str = "console") -> None:
        self.name = name
        self.dropped = 0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ConsoleSink:
        _check_options("console", options, cls.OPTIONS)
        return cls(**options)

    def open(self) -> None:
        pass

    def send(self, topic: str, payload: dict[str, Any]) -> bool:
        line = console_line(topic, payload)
        if line:
            tqdm.write(line)  # above the progress bar of a finite run, instead of through it
        return True

    def close(self) -> None:
        pass


def console_line(topic: str, p: Mapping[str, Any]) -> str:
    """The console's line for an event, or "" for topics it does not show.

    Why the words: a newcomer read ``frames 2471-2544-2631`` as a range and ``positive`` as "a
    positive detection". The frames are labelled, and the label is called what it is: one of
    AKMNet's emotion classes, listed from the event's own probabilities."""
    if topic == events.TOPIC_HEALTH:
        return f"[{p['camera']}] started: {p['message']}" if p.get("state") == "started" else ""
    latency = p.get("latency", {}).get("capture_to_publish_ms", -1.0)
    after = f"{latency:.0f} ms after the offset" if latency >= 0 else "untimed: its crops were gone"
    if topic == events.TOPIC_SPOT:
        kind = "micro-expression" if p["is_micro"] else "macro-expression"
        frames = f"onset {p['onset_frame']} apex {p['apex_frame']} offset {p['offset_frame']} (frames)"
        return f"[{p['camera']}] spot #{p['event_id']} {kind}: {frames}, score {p['score']:.2f}  ({after})"
    if topic == events.TOPIC_RECOG:
        probabilities = p["probabilities"]
        prob = probabilities.get(p["label"], 0.0)
        return (
            f'[{p["camera"]}] recog #{p["event_id"]} emotion class "{p["label"]}" (p {prob:.2f}; '
            f"classes: {', '.join(probabilities)}), max key frame {p['max_key_frame']}  ({after})"
        )
    return ""


class RecordSink:
    """Keeps the spot and recognition payloads a run published, for its end-of-run scores,
    and counts every event by topic, for the summary's ``events``.

    In memory: a session publishes tens of events a minute per camera. Only what the bus
    actually handed to the sinks is kept, so the scores are those of the published stream."""

    TOPICS = (events.TOPIC_SPOT, events.TOPIC_RECOG)

    def __init__(self, name: str = "record") -> None:
        self.name = name
        self.dropped = 0
        self.events: dict[str, list[dict[str, Any]]] = {topic: [] for topic in self.TOPICS}
        self.counts: dict[str, int] = {}

    def open(self) -> None:
        pass

    def send(self, topic: str, payload: dict[str, Any]) -> bool:
        self.counts[topic] = self.counts.get(topic, 0) + 1
        if topic in self.events:
            self.events[topic].append(payload)
        return True

    def close(self) -> None:
        pass
