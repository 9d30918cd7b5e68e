"""One camera's pipeline, assembled from a `RunConfig`: source → ring → stages → bus → sinks.

`Pipeline.run` owns the main thread: it waits for the run to end (duration reached, source
exhausted, an error, or Ctrl-C), then shuts down in the order that loses nothing: stop
ingest, let readers drain the ring, publish the final stats, flush the sinks.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mestream.engine.backends import open_stages
from mestream.engine.bus import EventBus
from mestream.engine.config import RunConfig
from mestream.engine.events import TOPIC_HEALTH
from mestream.engine.ring import FrameRing
from mestream.engine.sinks import JsonlSink, ZmqSink
from mestream.engine.stages import IngestStage, LatencyTap, RunContext, StatsStage
from mestream.plugins import make_sink, make_source

log = logging.getLogger("mestream")


@dataclass
class Summary:
    """What a run did, printed when it ends."""

    camera: str
    source: str
    seconds: float
    frames_in: int
    frames_out: int
    fps: float
    drops: dict[str, int]
    events: int
    outputs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""
    interrupted: bool = False

    def format(self) -> str:
        lost = {k: v for k, v in self.drops.items() if v}
        lines = [
            f"mestream run summary ({'interrupted' if self.interrupted else 'stopped by error' if self.error else 'finished'})",
            f"  camera {self.camera}: {self.source}",
            f"  frames in {self.frames_in}, out {self.frames_out}, in {self.seconds:.1f} s ({self.fps:.1f} fps)",
            f"  drops: {', '.join(f'{k} {v}' for k, v in lost.items()) if lost else 'none'}",
            f"  stats events published: {self.events}",
        ]
        lines += [f"  {note}" for note in self.notes]
        lines += [f"  wrote {path}" for path in self.outputs]
        return "\n".join(lines)


def build_sinks(config: RunConfig) -> list[Any]:
    """ZeroMQ and the JSONL log from their flags, then any extra sinks from the config."""
    publish = config.publish
    sinks: list[Any] = []
    if publish.endpoint:
        sinks.append(ZmqSink(endpoint=publish.endpoint, hwm=publish.hwm))
    if publish.log:
        sinks.append(JsonlSink(publish.log))
    sinks += [make_sink(extra.kind, extra.options) for extra in publish.sinks]
    return sinks


class Pipeline:
    """Everything one `mestream run` starts, built here so that errors surface before any
    thread runs: a missing camera or an address in use fails the constructor."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        # the models first: a missing export or backend fails before the camera opens
        self.models, backend_note = open_stages(config.inference)
        self.backend_notes = [self._describe_models()] + ([backend_note] if backend_note else [])
        try:
            self.source = make_source(config.source)
            self.source.open()
        except BaseException:
            self._release_models()
            raise
        ring = None
        try:
            fps = float(self.source.fps)
            capacity = max(2, math.ceil(config.ring.seconds * fps))
            ring = FrameRing(capacity, self.source.shape, shm_name=config.ring.shared_memory or None)
            self.bus = EventBus(build_sinks(config), maxsize=config.publish.queue)
            self.bus.start()
        except BaseException:
            if ring is not None:
                ring.close()  # a shared-memory ring would otherwise outlive the failed start
            self.source.close()
            self._release_models()
            raise
        self.ring = ring
        camera = config.source.name
        self.ctx = RunContext(camera=camera, fps=fps, ring=self.ring, bus=self.bus)
        max_frames = round(config.duration * fps) if config.duration > 0 else 0
        self.ingest = IngestStage(self.ctx, self.source, max_frames)
        self.tap = LatencyTap(self.ctx)
        self.stats = StatsStage(self.ctx, config.stats_interval, [self.tap], self.tap.cursor)

    def run(self) -> Summary:
        """Run until the duration ends, the source ends, an error, or Ctrl-C / SIGTERM."""
        ctx, started = self.ctx, time.monotonic()
        ctx.bus.emit(TOPIC_HEALTH, ctx.camera, {"state": "started", "message": f"reading {self._describe()}",
                                                "detail": {"fps": ctx.fps, "shape": list(self.ring.shape),
                                                           "models": self.backend_notes}})
        with _StopOnSignal(ctx.stop) as signals:
            try:
                for stage in (self.tap, self.stats, self.ingest):
                    stage.start()
                self._wait()
            finally:
                ctx.stop.set()
                self._shutdown()
        seconds = time.monotonic() - started
        return Summary(
            camera=ctx.camera, source=self._describe(), seconds=seconds,
            frames_in=self.ring.frames_written, frames_out=self.tap.cursor.consumed,
            fps=self.ring.frames_written / max(seconds, 1e-9), drops=self.stats.drops(), events=self.stats.published,
            outputs=self._outputs, notes=self._notes(), error="; ".join(ctx.errors), interrupted=signals.received,
        )

    def _describe_models(self) -> str:
        kinds = sorted({runner.name for runner in self.models.values()})
        return f"models: {', '.join(kinds)} backend, stages {', '.join(self.models)}"

    def _release_models(self) -> None:
        for runner in self.models.values():
            runner.deactivate()

    def _describe(self) -> str:
        src = self.source
        return f"{self.config.source.kind} {'x'.join(map(str, src.shape[1::-1]))} {src.pixel_format} at {src.fps:g} fps"

    def _wait(self) -> None:
        bar = self._progress()
        try:
            while self.ingest.is_alive() and not self.ctx.stop.wait(0.2):
                if bar is not None:
                    bar.update(self.ingest.frames - bar.n)
        finally:
            if bar is not None:
                bar.update(self.ingest.frames - bar.n)
                bar.close()

    def _progress(self) -> Any:
        if not self.config.progress or self.ingest.max_frames <= 0:
            return None
        from tqdm import tqdm

        return tqdm(total=self.ingest.max_frames, unit="frame", desc=f"{self.ctx.camera}", mininterval=0.5, leave=False)

    def _shutdown(self) -> None:
        """Stop in the order that loses nothing; a failing step is reported, never skips the rest."""
        ctx = self.ctx
        if self.ingest.ident is None:
            self.source.close()  # never started; otherwise ingest closes the source it reads
        self.ingest.join(5.0)  # the ingest loop checks stop on every frame
        if self.ingest.is_alive():
            ctx.errors.append(f"source {self.source.name!r} did not return a frame within 5 s of the stop; left open")
        self.ring.finish()
        self.tap.join(5.0)
        self.stats.join(5.0)
        self._outputs = []
        try:
            self.stats.publish()
            self._outputs = self._write_ground_truth()
        except Exception as exc:
            ctx.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            message = "; ".join(ctx.errors) if ctx.errors else "stopped"
            ctx.bus.emit(TOPIC_HEALTH, ctx.camera, {"state": "stopped", "message": message,
                                                    "detail": {"frames_in": self.ring.frames_written}})
            ctx.bus.stop()
            self.ring.close()
            self._release_models()
        if self.config.publish.log:
            self._outputs.append(self.config.publish.log)

    def _notes(self) -> list[str]:
        """What the source knows happened (the synthetic camera's ground truth), by kind."""
        truth = getattr(self.source, "ground_truth", None)
        if not truth:
            return list(self.backend_notes)
        kinds: dict[str, int] = {}
        for event in truth:
            kinds[event.kind] = kinds.get(event.kind, 0) + 1
        return [*self.backend_notes, "ground truth: " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))]

    def _write_ground_truth(self) -> list[str]:
        path = self.config.ground_truth
        writer = getattr(self.source, "write_ground_truth_json", None)
        if not path:
            return []
        if writer is None:
            log.warning("--ground-truth: source %r has no ground truth; nothing written", self.config.source.kind)
            return []
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        writer(path)
        return [path]


class _StopOnSignal:
    """Ctrl-C and SIGTERM set the stop event instead of raising in whatever the main thread
    is doing, so shutdown always runs in order and the sinks are flushed. A second Ctrl-C
    raises KeyboardInterrupt as usual, for a shutdown that hangs."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.received = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = True
        self.stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> "_StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
