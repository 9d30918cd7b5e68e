"""The event bus: stages hand events to it from any thread; one thread publishes them.

Why a queue and a single publisher thread: a stage that spots an expression must not wait
for a socket, a disk or a slow subscriber, and sinks are not thread-safe. ``emit`` takes a
typed event (`events.Event`: its fields were checked when the stage built it) and puts it on
a bounded queue (``put_nowait``); when the queue is full the event is dropped and counted.
The publisher thread stamps the header (`events.Event.payload`) and fans the flat payload
dict out to every sink, in order.

A sink that raises is closed and disabled (it is broken, e.g. its disk is full); the other
sinks keep what they already recorded and receive a ``mestream.health`` event with state
``sink_error`` naming it (camera: that of the event it failed on). A sink that merely drops
(a full subscriber pipe) stays enabled. A payload a sink cannot serialize loses that event
only, counted as ``invalid``.

Sequence numbers: the publisher numbers events per (topic, camera). Events the queue
dropped are folded into the next number of their (topic, camera), so a subscriber's gap
count covers the bus queue as well as the transport. The folded jump can appear a few
events before the place of the loss (events already queued when it happened go first);
drops before a subscriber's first event, or after the last event of a (topic, camera),
show in ``drops()`` (and the stats event) but not as a gap.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence

from mestream.engine import events
from mestream.engine.events import Event
from mestream.engine.sinks import Sink

log = logging.getLogger("mestream")

_POLL_S = 0.05  # how often an idle publisher checks for stop()


class EventBus:
    """Non-blocking fan-out of events from the pipeline's stages to its sinks.

    Threading: ``emit``, ``drops`` and ``pending`` may be called from any thread; ``start``,
    ``stop`` and ``flush`` from the thread that owns the bus. Sinks are opened in the
    thread calling ``start`` (so a bind error raises there), used only by the publisher
    thread, and closed by ``stop`` after that thread has finished. A bus runs once.

    Args:
        sinks: where events go, each with a unique ``name``.
        maxsize: events the queue holds before ``emit`` drops (``PublishConfig.queue``).
    """

    def __init__(self, sinks: Sequence[Sink], maxsize: int = 4096) -> None:
        if maxsize < 1:
            raise ValueError(f"event bus: maxsize must be >= 1, got {maxsize} (0 would mean unbounded)")
        names = [sink.name for sink in sinks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(
                f"event bus: sink names must be unique, {duplicates[0]!r} appears more than once"
            )
        self._sinks = list(sinks)
        self._active = list(sinks)
        self._queue: queue.Queue[Event] = queue.Queue(maxsize)
        self._lock = threading.Lock()
        self._bus_drops = 0
        self._invalid = 0
        self._skipped: dict[tuple[str, str], int] = {}
        self._seq: dict[tuple[str, str], int] = {}
        self._missed = {name: 0 for name in names}  # events a disabled sink did not get
        self._failed: dict[str, str] = {}
        self._stopping = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Open every sink here, then start the publisher thread.

        If a sink fails to open, the ones already opened are closed and the error propagates.
        """
        if self._thread is not None or self._closed:
            raise RuntimeError("event bus: start() called twice; a bus runs once")
        opened: list[Sink] = []
        try:
            for sink in self._sinks:
                sink.open()
                opened.append(sink)
        except BaseException:
            for sink in opened:
                _close_quietly(sink)
            raise
        self._thread = threading.Thread(target=self._run, name="mestream-bus", daemon=True)
        self._thread.start()

    def add_sink(self, sink: Sink) -> None:
        """Open ``sink`` here and publish to it from the next event on.

        For a listener that attaches after the bus started (`Pipeline.events`), before the run
        emits anything: a sink added mid-run sees the events from then on, numbered as the others.
        """
        if self._closed:
            raise RuntimeError(f"event bus: cannot add sink {sink.name!r} to a stopped bus")
        if sink.name in self._missed:
            raise ValueError(f"event bus: sink names must be unique, {sink.name!r} is taken")
        sink.open()
        self._missed[sink.name] = 0
        self._sinks = [*self._sinks, sink]  # new lists, not appends: the publisher thread may be iterating
        self._active = [*self._active, sink]

    def emit(self, event: Event) -> bool:
        """Queue one event; never blocks. False when it was dropped (queue full, or bus stopped).

        Build the event with the topic's dataclass (`events.SpotEvent`, ...; `events.health`
        for health events): a misspelt field then fails in the stage that wrote it. The bus
        fills the header's ``seq``, ``host_ns`` and ``wall_ns``; the event's nested dicts and
        lists must not be mutated after the call.
        """
        if not isinstance(event, Event) or not event.topic:
            raise events.SchemaError(
                f"event bus: emit takes an event of {', '.join(events.TOPICS)} "
                f"(see mestream.engine.events), got {type(event).__name__}"
            )
        with self._lock:  # with stop(): an event is either queued before the close or counted
            if not self._closed:
                try:
                    self._queue.put_nowait(event)
                    return True
                except queue.Full:
                    pass
            self._bus_drops += 1
            key = (event.topic, event.camera)
            self._skipped[key] = self._skipped.get(key, 0) + 1
        return False

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event queued so far has been handed to the sinks; False on timeout."""
        deadline = time.monotonic() + timeout
        done = self._queue.all_tasks_done
        with done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                done.wait(remaining)
        return True

    def stop(self, timeout: float = 5.0) -> bool:
        """Refuse new events, publish what is queued, then close (flush) the sinks.

        Returns False if the publisher did not finish within ``timeout`` (a sink hangs); the
        sinks are then left open, since closing them under a running thread is unsafe.
        """
        with self._lock:
            self._closed = True
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error(
                    "event bus: publisher still busy after %.1f s; %d events unpublished, sinks left open",
                    timeout,
                    self._queue.qsize(),
                )
                return False
        late = 0
        while True:  # emits that raced with stop(), or a bus never started
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            self._queue.task_done()
            late += 1
        if late:
            with self._lock:
                self._bus_drops += late
        for sink in self._active:
            _close_quietly(sink)
        self._active = []
        return True

    def drops(self) -> dict[str, int]:
        """Cumulative drop counters: ``bus`` (queue full or stopped), ``invalid`` (unserializable
        payloads) and ``sink:<name>`` (the sink's own drops plus events it missed while disabled)."""
        counts = {"bus": self._bus_drops, "invalid": self._invalid}
        for sink in self._sinks:
            counts[f"sink:{sink.name}"] = sink.dropped + self._missed[sink.name]
        return counts

    def pending(self) -> int:
        """Events queued and not yet published."""
        return self._queue.qsize()

    @property
    def failed(self) -> dict[str, str]:
        """Disabled sinks by name, with the error that disabled them."""
        return dict(self._failed)

    def __enter__(self) -> EventBus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # The publisher thread.

    def _run(self) -> None:
        get = self._queue.get
        while True:
            try:
                event = get(timeout=_POLL_S)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            try:
                self._publish(event)
            except Exception:  # a bug here must not kill the thread and silently stop publishing
                log.exception("event bus: failed to publish a %s event", event.topic)
            finally:
                self._queue.task_done()

    def _publish(self, event: Event) -> None:
        topic, camera = event.topic, event.camera
        key = (topic, camera)
        seq = self._seq.get(key, 0)
        if self._skipped:
            with self._lock:
                seq += self._skipped.pop(key, 0)
        self._seq[key] = seq + 1
        payload = event.payload(seq, time.monotonic_ns(), time.time_ns())
        for name in self._failed:
            self._missed[name] += 1
        broken: list[tuple[Sink, Exception]] = []
        invalid: events.PayloadError | None = None
        for sink in self._active:
            try:
                sink.send(topic, payload)
            except events.PayloadError as exc:
                invalid = exc
            except Exception as exc:
                broken.append((sink, exc))
        if invalid is not None:
            self._invalid += 1
            log.error("event bus: dropped an event the sinks cannot serialize: %s", invalid)
        for sink, error in broken:
            self._disable(sink, error, topic, camera)

    def _disable(self, sink: Sink, exc: Exception, topic: str, camera: str) -> None:
        """Take a broken sink out, then tell the others (which may in turn fail)."""
        self._active = [s for s in self._active if s is not sink]
        self._failed[sink.name] = f"{type(exc).__name__}: {exc}"
        self._missed[sink.name] += 1  # the event it failed on
        log.error(
            "event bus: sink %r failed on a %s event and is disabled: %s", sink.name, topic, exc, exc_info=exc
        )
        _close_quietly(sink)
        if self._active:
            message = f"sink {sink.name!r} failed and is disabled: {type(exc).__name__}: {exc}"
            detail = {"sink": sink.name, "error": f"{type(exc).__name__}: {exc}", "topic": topic}
            self._publish(events.health(camera, "sink_error", message, detail))


def _close_quietly(sink: Sink) -> None:
    try:
        sink.close()
    except Exception:
        log.exception("event bus: closing sink %r failed", sink.name)
