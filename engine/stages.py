"""Stage threads. Each stage owns one thread and talks to the others only through the ring,
bounded queues and the event bus, so a stage added later (face, flow, spot, recognise)
plugs in beside these without reworking them.

Backpressure policy: ingest never blocks (the ring overwrites, and a reader that was lapped
counts the frames it lost); a stage that falls behind skips and counts; the bus drops and
counts when its queue is full. Every counter reaches ``mestream.stats``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from mestream.cameras.base import Source, SourceError
from mestream.engine.bus import EventBus
from mestream.engine.events import ALL_CAMERAS, StatsEvent, health
from mestream.engine.ring import FrameRing, ReaderCursor
from mestream.engine.trace import FrameTrace

log = logging.getLogger("mestream")


@dataclass(kw_only=True)
class Context:
    """What the stages serving every camera share (spot, recognition): the bus, the run's stop
    and its error list. Their failures are about the run, not one camera: they are published
    under `ALL_CAMERAS`, the documented id subscribers accept besides their own camera."""

    bus: EventBus
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)
    camera: str = ALL_CAMERAS

    def fail(self, stage: str, exc: BaseException) -> None:
        """Record why the run stops, tell subscribers, and stop every stage."""
        source = isinstance(exc, SourceError)
        message = str(exc) if source else f"{stage} stage: {type(exc).__name__}: {exc}"
        self.errors.append(message)
        state = "source_error" if source else "stage_error"
        self.bus.emit(health(self.camera, state, message, {"stage": stage}))
        self.stop.set()


@dataclass(kw_only=True)
class RunContext(Context):
    """What every stage of one camera's pipeline shares (a typed context, not a global bag)."""

    camera: str
    fps: float
    ring: FrameRing


class Reporting(Protocol):
    """What `StatsStage` reads from each stage it reports on (a `Stage`, or a per-camera view of
    a shared one)."""

    def figures(self) -> dict[str, float]: ...

    def drops(self) -> dict[str, int]: ...


class Stage(threading.Thread):
    """One pipeline stage on its own thread; an exception in `loop` stops the whole run."""

    def __init__(self, name: str, ctx: Context) -> None:
        super().__init__(name=f"mestream-{name}", daemon=True)
        self.stage = name
        self.ctx = ctx

    def run(self) -> None:
        try:
            self.loop()
        except Exception as exc:  # reported on the bus and in the summary, never swallowed
            log.debug("stage %s failed", self.stage, exc_info=True)
            self.ctx.fail(self.stage, exc)

    def loop(self) -> None:
        raise NotImplementedError

    def figures(self) -> dict[str, float]:
        """Per-stage figures for the ``stages`` field of ``mestream.stats``."""
        return {}

    def drops(self) -> dict[str, int]:
        """This stage's cumulative skip and drop counters, merged into ``drops`` of ``mestream.stats``."""
        return {}


class IngestStage(Stage):
    """Source → ring. A live camera never blocks on anything downstream (the ring overwrites
    its oldest slot); a replay (``ring.when_full = "wait"``) waits for room instead."""

    ctx: RunContext

    def __init__(
        self, ctx: RunContext, source: Source, max_frames: int = 0, wait_when_full: bool = False
    ) -> None:
        super().__init__("ingest", ctx)
        self.source = source
        self.max_frames = max_frames
        self.wait = wait_when_full  # a replay waits for its slowest reader instead of overrunning it
        self.frames = 0

    def loop(self) -> None:
        ring, stop, name, wait = self.ctx.ring, self.ctx.stop, self.source.name, self.wait
        limit = self.max_frames or -1
        try:
            for frame in self.source:
                if stop.is_set():
                    break
                if wait:
                    ring.wait_for_room(stop)
                    if stop.is_set():
                        break
                try:
                    ring.write(frame.pixels, frame.frame_id, frame.device_ns, frame.host_ns)
                except ValueError as exc:
                    raise SourceError(f"source {name!r}, frame {frame.frame_id}: {exc}") from None
                self.frames += 1
                if self.frames == limit:
                    break
        finally:
            ring.finish()
            self.source.close()  # here, not in the main thread: never close a camera another thread reads


class LatencyTap(Stage):
    """Reads every frame out of the ring as the first analysis stage will, and measures the
    capture-to-read latency. With no analysis stage configured it is the pipeline's output,
    so ``fps_out`` and the lag it reports are what a real reader at the head of the chain sees."""

    WINDOW = 8192  # latencies kept for the per-interval percentiles

    ctx: RunContext

    def __init__(self, ctx: RunContext, trace: FrameTrace | None = None) -> None:
        super().__init__("tap", ctx)
        self.trace = trace  # per-frame capture-to-read times, when measured
        self.cursor = ctx.ring.register_reader("tap")
        self._buffer = np.empty(ctx.ring.shape, ctx.ring.dtype)
        self._latency_ns = np.zeros(self.WINDOW, np.int64)
        self._count = 0
        self._reported = 0

    def loop(self) -> None:
        cursor, out, lat, stop, trace = self.cursor, self._buffer, self._latency_ns, self.ctx.stop, self.trace
        window = self.WINDOW
        while True:
            frame = cursor.next(timeout=0.1, out=out)  # sleeps until the next frame; 0.1 s: sees `stop`
            if frame is None:
                if self.ctx.ring.finished or stop.is_set():
                    if cursor.lag == 0:
                        return
                continue
            now = time.monotonic_ns()
            lat[self._count % window] = now - frame.host_ns
            if trace is not None:
                trace.add_frame(frame.frame_id, frame.host_ns, now)
            self._count += 1

    def figures(self) -> dict[str, float]:
        new = min(self._count - self._reported, self.WINDOW)
        self._reported = self._count
        if new <= 0:
            return {}
        end = self._count % self.WINDOW
        recent = np.take(self._latency_ns, np.arange(end - new, end), mode="wrap") / 1e6
        p50, p99 = np.percentile(recent, [50, 99])
        return {"tap.latency_ms_p50": round(float(p50), 3), "tap.latency_ms_p99": round(float(p99), 3)}


class StatsStage(Stage):
    """Publishes ``mestream.stats`` every interval."""

    ctx: RunContext

    def __init__(
        self, ctx: RunContext, interval: float, stages: Sequence[Reporting], out_cursor: ReaderCursor
    ) -> None:
        super().__init__("stats", ctx)
        self.interval = interval
        self.stages = stages
        self.out_cursor = out_cursor
        self.started = time.monotonic()
        self._last = (self.started, 0, 0)
        self.published = 0

    def loop(self) -> None:
        while not self.ctx.stop.wait(self.interval):
            self.publish()

    def drops(self) -> dict[str, int]:
        """Every drop counter of the run, cumulative: camera gaps, ring overruns, bus and sinks."""
        counts = {
            "camera": self.ctx.ring.camera_drops,
            "ring_overrun": self.out_cursor.overruns,
            **self.ctx.bus.drops(),
        }
        for stage in self.stages:
            counts.update(stage.drops())
        return counts

    def publish(self) -> StatsEvent:
        ring, cursor = self.ctx.ring, self.out_cursor
        now = time.monotonic()
        frames_in, frames_out = ring.head + 1, cursor.consumed
        then, last_in, last_out = self._last
        span = max(now - then, 1e-9)
        self._last = (now, frames_in, frames_out)
        lag = cursor.lag
        drops = self.drops()
        figures: dict[str, float] = {}
        for stage in self.stages:
            figures.update(stage.figures())
        event = StatsEvent(
            camera=self.ctx.camera,
            fps_in=round((frames_in - last_in) / span, 2),
            fps_out=round((frames_out - last_out) / span, 2),
            frames_in=frames_in,
            frames_out=frames_out,
            ring_fill=round(lag / ring.capacity, 4),
            lag_frames=lag,
            lag_ms=round(lag * 1000.0 / self.ctx.fps, 3),
            drops=drops,
            uptime_s=round(now - self.started, 3),
            stages=figures,
        )
        self.ctx.bus.emit(event)
        self.published += 1
        return event
