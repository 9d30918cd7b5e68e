"""Events in the caller's own Python process: a sink that calls a function, and an iterator
over a run (`Pipeline(config, on_event=fn)`, `Pipeline.events()`).

Why sinks: the bus already hands every published event, in order, to its sinks on its one
publisher thread, so an in-process listener is one more sink and sees exactly what a ZeroMQ
subscriber or the JSONL log sees: the same events, ``seq`` numbers and drop counters. Both
listeners receive the typed dataclasses of `mestream.engine.events`, built from a deep copy of
the payload, so a listener that edits an event's dicts cannot change what the other sinks or
the end-of-run scores read.

`CallbackSink` calls ``fn(event)`` on the publisher thread. While ``fn`` runs the bus
publishes nothing, so a slow callback fills the bus queue and the overflow is dropped and
counted (``bus``); hand slow work to a thread of your own, or iterate with `iterate_events`.
A callback that raises loses that event only: the first error is logged with its traceback,
every failure is counted in the sink's ``dropped`` (``sink:on_event`` in the stats events and
the summary), and the callback keeps being called; the run and the other sinks go on.

`iterate_events` runs the pipeline in a background thread and yields the events from a bounded
buffer (`EventBuffer`, as long as the bus queue, ``publish.queue``). The buffer never blocks the
publisher: when the consumer is that far behind, newer events are dropped and counted
(``sink:events``), and the consumer sees the gap as a jump in ``seq``.
"""

from __future__ import annotations

import atexit
import collections
import copy
import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from mestream.engine.events import Event, schema_for

if TYPE_CHECKING:  # the pipeline imports this module
    from mestream.engine.pipeline import Pipeline

log = logging.getLogger("mestream")


def typed_event(topic: str, payload: dict[str, Any]) -> Event:
    """The event's dataclass, on a copy: the payload dict is shared with the other sinks."""
    return schema_for(topic).from_dict(copy.deepcopy(payload))


class CallbackSink:
    """Calls ``fn(event)`` with every published event (see the module docstring).

    Threading: ``fn`` runs on the bus's publisher thread, one event at a time, in order.

    Args:
        fn: called with a `mestream.engine.events.Event` subclass; its return value is ignored.
        name: the sink's name in drop counters and health events.
    """

    def __init__(self, fn: Callable[[Event], object], name: str = "on_event") -> None:
        if not callable(fn):
            raise TypeError(f"on_event: expected a function taking one event, got {type(fn).__name__} {fn!r}")
        self.fn = fn
        self.name = name
        self.dropped = 0
        self.called = 0

    def open(self) -> None:
        pass

    def send(self, topic: str, payload: dict[str, Any]) -> bool:
        """Call ``fn``; False (and counted) when it raised, which never reaches the bus."""
        self.called += 1
        try:
            self.fn(typed_event(topic, payload))
        except BaseException:  # SystemExit too: it would end the bus's thread and every sink's events
            self.dropped += 1
            if self.dropped == 1:
                log.exception(
                    "%s callback raised on a %s event; that event is dropped, as is every later "
                    "one it raises on (counted as sink:%s, not logged again)",
                    self.name,
                    topic,
                    self.name,
                )
            return False
        return True

    def close(self) -> None:
        pass


class EventBuffer:
    """A bounded buffer between the bus's publisher thread (``send``) and one consumer (``get``).

    ``send`` never blocks: when ``maxsize`` events wait, the new one is dropped and counted in
    ``dropped``. ``finish`` marks the end of the run; ``get`` then returns what is left, then None.
    """

    def __init__(self, maxsize: int, name: str = "events") -> None:
        if maxsize < 1:
            raise ValueError(f"event buffer: maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.name = name
        self.dropped = 0
        self._items: collections.deque[Event] = collections.deque()
        self._ready = threading.Condition()
        self._finished = False

    def open(self) -> None:
        pass

    def send(self, topic: str, payload: dict[str, Any]) -> bool:
        # only the consumer shrinks the deque: a length read without the lock can only be too high
        if len(self._items) >= self.maxsize:
            self.dropped += 1
            if self.dropped == 1:
                log.warning(
                    "events(): the consumer is %d events behind; dropping newer events until it "
                    "catches up (counted as sink:%s)",
                    self.maxsize,
                    self.name,
                )
            return False
        try:
            event = typed_event(topic, payload)
        except Exception:  # a payload its dataclass refuses: lose that event, never the consumer's run
            self.dropped += 1
            log.exception("events(): cannot type a %s event; dropped", topic)
            return False
        with self._ready:
            self._items.append(event)
            self._ready.notify()
        return True

    def close(self) -> None:
        pass

    def finish(self) -> None:
        """No more events will come: ``get`` returns None once the buffer is empty."""
        with self._ready:
            self._finished = True
            self._ready.notify_all()

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None at the end; `TimeoutError` when none came within ``timeout`` seconds."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._items or self._finished, timeout):
                raise TimeoutError(f"events(): no event within {timeout:g} s")
            return self._items.popleft() if self._items else None


def iterate_events(pipeline: Pipeline, timeout: float | None = None) -> Iterator[Event]:
    """Run ``pipeline`` in a background thread and yield each event as it is published.

    The run starts at the first ``next()``. The iterator ends when the run ends, after the
    ``stopped`` health event; ``pipeline.summary`` then holds its `Summary`. Closing the iterator
    early stops the run as Ctrl-C would and waits for its shutdown, so no thread of it is left
    running; the summary then says ``interrupted``. ``break`` and an exception in the loop close
    it when the ``for`` statement holds the only reference (``for event in pipeline.events()``);
    an iterator kept in a variable is closed by ``iterator.close()``, ``contextlib.closing``, or
    at the latest when the interpreter exits. An error that ends the run is raised from the
    iterator once the events before it were yielded.

    Args:
        pipeline: a pipeline that has not run yet.
        timeout: the longest wait for the next event, in seconds; past it the run is stopped and
            `TimeoutError` raised. None waits as long as the run lasts (stats events come every
            ``stats_interval`` while it does).
    """
    if timeout is not None and not timeout > 0:
        raise ValueError(f"events(): timeout must be > 0 seconds or None, got {timeout!r}")
    if pipeline.started or pipeline.summary is not None:
        raise RuntimeError("events(): this pipeline has already run; a pipeline runs once, build a new one")
    return _iterate(pipeline, timeout)


def _iterate(pipeline: Pipeline, timeout: float | None) -> Iterator[Event]:
    taken = {key.removeprefix("sink:") for key in pipeline.bus.drops() if key.startswith("sink:")}
    name, n = "events", 0
    while name in taken:
        n += 1
        name = f"events-{n}"
    buffer = EventBuffer(pipeline.config.publish.queue, name=name)
    pipeline.bus.add_sink(buffer)  # before the thread starts: the run's first event reaches it
    failure: list[BaseException] = []

    def run() -> None:
        try:
            pipeline.run()
        except BaseException as exc:  # handed to the consumer
            failure.append(exc)
        finally:
            buffer.finish()

    def stop_at_exit() -> None:
        pipeline.stop()
        thread.join()

    thread = threading.Thread(target=run, name="mestream-run", daemon=True)
    thread.start()
    # an iterator left suspended (kept in a variable past a `break`) must not leave the run to be
    # killed mid-frame when the interpreter exits: the sinks would lose their last events
    atexit.register(stop_at_exit)
    ended = False
    try:
        while (event := buffer.get(timeout)) is not None:
            yield event
        ended = True
    finally:
        stopped = not ended and thread.is_alive()
        if stopped:
            pipeline.stop()
        thread.join()
        atexit.unregister(stop_at_exit)
        if stopped and pipeline.summary is not None:
            pipeline.summary.interrupted = True
        if failure and not ended:
            log.error("the run stopped by events() had failed: %s", failure[0], exc_info=failure[0])
    if failure:
        raise failure[0]
