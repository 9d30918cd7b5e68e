"""A run's pipeline, assembled from a `RunConfig`: per camera source → ring → face → crop ring;
then, for all cameras together, spot → clip queue → recognise, and the bus → sinks.

Threads: per camera an ingest, a face (or, with spotting off, a latency tap) and a stats
thread; one spot and one recognition thread for every camera, so inference batches across
cameras; the bus's publisher thread. The shared stages run in their own `Context`: a failure
of theirs is published on ``mestream.health`` under `events.ALL_CAMERAS` (``"*"``).

`Pipeline.run` owns the main thread: it waits for the run to end (duration reached, sources
exhausted, an error, or Ctrl-C), then shuts down in the order that loses nothing: ingest stops,
the face, spot and recognition stages drain what was captured (unless the run was stopped),
the final stats go out, the sinks are flushed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from tqdm import tqdm

from mestream.cameras.base import Source
from mestream.engine.backends import load_manifest, open_subgraphs
from mestream.engine.backends.base import Backend
from mestream.engine.bus import EventBus
from mestream.engine.callback import CallbackSink, iterate_events
from mestream.engine.clipqueue import ClipQueue
from mestream.engine.config import ConfigError, RunConfig, SinkConfig, SourceConfig, weights_note
from mestream.engine.crops import CropRing
from mestream.engine.events import TOPIC_RECOG, TOPIC_SPOT, TOPIC_STATS, Event, health
from mestream.engine.face_stage import FaceStage
from mestream.engine.manifest import Manifest
from mestream.engine.recognise import CLIP_HEAD, ENCODER, RecogStage
from mestream.engine.ring import FrameRing
from mestream.engine.sampling import READ_BLOCK, keep_frames
from mestream.engine.scoring import latency_summary, score_run
from mestream.engine.sinks import ConsoleSink, JsonlSink, RecordSink, Sink, ZmqSink
from mestream.engine.spot import SUBGRAPHS as SPOT_SUBGRAPHS
from mestream.engine.spot import SpotStage, hop_steps, model_config
from mestream.engine.stages import Context, IngestStage, LatencyTap, Reporting, RunContext, Stage, StatsStage
from mestream.engine.summary import Summary
from mestream.engine.trace import INGEST_STAGES as INGEST_TRACE
from mestream.engine.trace import SPOT_STAGES as SPOT_TRACE
from mestream.engine.trace import FrameTrace
from mestream.plugins import make_sink, make_source

log = logging.getLogger("mestream")

CROP_RING_SECONDS = 4.0
"""At least this much of every camera's crops is kept: a clip (≤ 0.5 s) must still be there
when recognition reaches it, behind the spot stage's latency and the recognition queue."""


def build_sinks(config: RunConfig) -> list[Sink]:
    """ZeroMQ, the JSONL log and the console from their flags, then the config's extra sinks: built
    from their kind, or, for sink objects, the objects themselves."""
    publish = config.publish
    sinks: list[Sink] = []
    if publish.endpoint:
        sinks.append(ZmqSink(endpoint=publish.endpoint, hwm=publish.hwm))
    if publish.log:
        sinks.append(JsonlSink(publish.log))
    if publish.console:
        sinks.append(ConsoleSink())
    sinks += [
        make_sink(extra.kind, extra.options) if isinstance(extra, SinkConfig) else extra
        for extra in publish.sinks
    ]
    taken: set[str] = set()
    for sink in sinks:  # a second jsonl sink beside --log is "jsonl-1": drop counters stay apart
        name, n = sink.name, 0
        while sink.name in taken:
            n += 1
            sink.name = f"{name}-{n}"
        taken.add(sink.name)
    return sinks


@dataclass
class Camera:
    """One camera's part of the pipeline."""

    config: SourceConfig
    source: Source
    ctx: RunContext
    ingest: IngestStage
    reader: FaceStage | LatencyTap  # the face stage, or the latency tap when spotting is off
    crops: CropRing | None
    stats: StatsStage | None = None


class PerCamera(Protocol):
    """A stage shared by the cameras that reports its figures and drops per camera (`SpotStage`)."""

    def camera_figures(self, camera: str) -> dict[str, float]: ...

    def camera_drops(self, camera: str) -> dict[str, int]: ...


class CameraView:
    """A shared stage's figures and drops for one camera's ``mestream.stats``."""

    def __init__(self, stage: PerCamera, camera: str) -> None:
        self.stage, self.camera = stage, camera

    def figures(self) -> dict[str, float]:
        return self.stage.camera_figures(self.camera)

    def drops(self) -> dict[str, int]:
        return self.stage.camera_drops(self.camera)


def wait_when_full(config: RunConfig, source: SourceConfig) -> bool:
    """``ring.when_full``: ``auto`` waits for unpaced sources (replays) and overwrites for live ones."""
    when = config.ring.when_full
    return when == "wait" or (when == "auto" and not source.pace)


class Pipeline:
    """Everything one `mestream run` starts, built here so that errors surface before any
    thread runs: a missing export, camera or address in use fails the constructor.

    ``trace_frames > 0`` records every camera's first ``trace_frames`` frames' stage times in
    `traces` (`mestream.engine.trace`): what `mestream bench` measures per-frame latency with.

    ``on_event(event)`` is called with every published event (`mestream.engine.events`), on the
    bus's publisher thread, after the other sinks; see `mestream.engine.callback.CallbackSink`."""

    def __init__(
        self, config: RunConfig, *, on_event: Callable[[Event], object] | None = None, trace_frames: int = 0
    ) -> None:
        self.config = config
        self.trace_frames = trace_frames
        self.traces: dict[str, FrameTrace] = {}  # camera id → per-frame stage times (``trace_frames`` > 0)
        self.cameras: list[Camera] = []
        self.models: dict[str, Backend] = {}
        self.spot: SpotStage | None = None
        self.recog: RecogStage | None = None
        self.clips: ClipQueue | None = None  # where spot puts micro clips and recognition takes them
        self.record = RecordSink()
        self.summary: Summary | None = None  # set when the run ends
        self.started = False  # a pipeline runs once: its rings, threads and sources are spent after
        self._outputs: list[str] = []
        sources = config.camera_sources()
        # the models first: a missing export or backend fails before any camera opens
        self.manifest = load_manifest(config.inference) if config.spot.enabled else None
        if config.summary:  # a path that cannot be written fails now, not after the session
            _check_writable(Path(config.summary), "summary (--summary)")
        self.backend_notes = self._open_models()
        opened: list[tuple[SourceConfig, Source]] = []
        try:
            for source_config in sources:
                source = make_source(source_config)
                source.open()
                opened.append((source_config, source))
            callbacks = [CallbackSink(on_event)] if on_event is not None else []
            self.bus = EventBus([self.record, *build_sinks(config), *callbacks], maxsize=config.publish.queue)
            self.bus.start()
        except BaseException:
            for _, source in opened:
                source.close()
            self._release_models()
            raise
        stop, errors = threading.Event(), list[str]()
        try:
            for source_config, source in opened:
                self.cameras.append(self._camera(source_config, source, stop, errors))
            self._shared_stages(stop, errors)
        except BaseException:  # no thread runs yet: close every source here
            for _, source in opened:
                source.close()
            self._close_cameras()
            self.bus.stop()
            self._release_models()
            raise

    # -- construction ---------------------------------------------------------------------------

    @property
    def _manifest(self) -> Manifest:
        """The export, for the paths that run only when spotting is on (which loads it)."""
        if self.manifest is None:
            raise RuntimeError("no model export is loaded: spotting is off")
        return self.manifest

    def _open_models(self) -> list[str]:
        if not self.config.spot.enabled:
            return ["models: none (spotting is off)"]
        wanted = ["mesnet"] + (["akmnet"] if self.config.recognise.enabled else [])
        missing = [m for m in wanted if m not in self._manifest.models]
        if missing:
            raise ConfigError(
                f"the export {self._manifest.root} has no {', '.join(missing)} model (it holds "
                f"{', '.join(self._manifest.models)}); export it, or turn off "
                f"{'recognition (recognise.enabled = false)' if missing == ['akmnet'] else 'spotting'}"
            )
        keys = list(SPOT_SUBGRAPHS) + ([ENCODER, CLIP_HEAD] if self.config.recognise.enabled else [])
        absent = [key for key in keys if key not in self._manifest.subgraphs]
        if absent:
            raise ConfigError(
                f"the export {self._manifest.root} lacks the subgraph(s) {', '.join(absent)} "
                f"(it has {', '.join(self._manifest.subgraphs)}); re-export it with `mestream export`"
            )
        self.models, backend_note = open_subgraphs(self.config.inference, keys, manifest=self.manifest)
        kinds = sorted({runner.name for runner in self.models.values()})
        return [f"models: {', '.join(kinds)} backend, subgraphs {', '.join(self.models)}"] + (
            [backend_note] if backend_note else []
        )

    def _crop_size(self) -> int:
        if self.config.face.crop_size is not None:
            return self.config.face.crop_size
        # the same crops whether recognition runs or not, so turning it off never changes the spots
        sizes = [self._manifest.mesnet.preprocessing.flow_crop]
        if "akmnet" in self._manifest.models:
            sizes.append(self._manifest.akmnet.preprocessing.crop_side)
        return max(sizes)

    def _crop_capacity(self, fps: float) -> int:
        """The crop ring: at least `CROP_RING_SECONDS`, and always more than a replay's spot
        stage holds plus a read block (a shorter ring would leave the face stage waiting forever)."""
        model = model_config(self._manifest.mesnet, self.config.spot)
        held = keep_frames(model, fps, hop_steps(self.config.spot, model))
        return max(
            math.ceil(max(self.config.ring.seconds, CROP_RING_SECONDS) * fps),
            held + READ_BLOCK + math.ceil(fps),
        )

    def _camera(
        self, source_config: SourceConfig, source: Source, stop: threading.Event, errors: list[str]
    ) -> Camera:
        config = self.config
        fps = float(source.fps)
        wait = wait_when_full(config, source_config)
        shm = config.ring.shared_memory
        ring = FrameRing(
            max(2, math.ceil(config.ring.seconds * fps)),
            source.shape,
            shm_name=(f"{shm}-{len(self.cameras)}" if self.cameras else shm) if shm else None,
        )
        ctx = RunContext(
            camera=source_config.name, fps=fps, ring=ring, bus=self.bus, stop=stop, errors=errors
        )
        max_frames = round(config.duration * fps) if config.duration > 0 else 0
        ingest = IngestStage(ctx, source, max_frames, wait_when_full=wait)
        trace = None
        if self.trace_frames > 0:
            trace = FrameTrace(self.trace_frames, SPOT_TRACE if config.spot.enabled else INGEST_TRACE)
            self.traces[source_config.name] = trace
        crops = None
        try:
            if config.spot.enabled:
                crops = CropRing(self._crop_capacity(fps), self._crop_size())
                reader: FaceStage | LatencyTap = FaceStage(ctx, crops, config.face, wait_when_full=wait)
            else:
                reader = LatencyTap(ctx, trace)
        except BaseException:
            ring.close()
            if crops is not None:
                crops.close()
            raise
        return Camera(source_config, source, ctx, ingest, reader, crops)

    def _shared_stages(self, stop: threading.Event, errors: list[str]) -> None:
        config, cams = self.config, self.cameras
        shared = Context(bus=self.bus, stop=stop, errors=errors)  # their failures go out under ALL_CAMERAS
        waits = {c.ctx.camera: wait_when_full(config, c.config) for c in cams}
        # every camera has a crop ring when spotting is on (see _camera)
        crops = {c.ctx.camera: c.crops for c in cams if c.crops is not None}
        if config.spot.enabled and config.recognise.enabled:
            # the queue waits only when every camera is a replay: a live camera's clips are never held up
            self.clips = ClipQueue(
                waits, config.recognise.queue, wait_when_full=all(waits.values()), stop=stop
            )
            self.recog = RecogStage(
                shared,
                self.clips,
                crops,
                {c.ctx.camera: c.ctx.ring for c in cams},
                self.models,
                self._manifest.akmnet,
                config.recognise,
            )
        if config.spot.enabled:
            self.spot = SpotStage(
                shared,
                {c.ctx.camera: (crops[c.ctx.camera], c.ctx.fps, waits[c.ctx.camera]) for c in cams},
                self.models,
                self._manifest.mesnet,
                config.spot,
                clips=self.clips,
                max_batch=config.inference.max_batch,
                traces=self.traces,
            )
        for i, cam in enumerate(cams):
            stages: list[Reporting] = [cam.reader]
            if self.spot is not None:
                stages.append(CameraView(self.spot, cam.ctx.camera))
            if self.recog is not None and i == 0:
                stages.append(self.recog)  # one recognition queue for all cameras: reported with the first
            cam.stats = StatsStage(cam.ctx, config.stats_interval, stages, cam.reader.cursor)

    # -- running --------------------------------------------------------------------------------

    def run(self) -> Summary:
        """Run until the duration ends, the sources end, an error, or Ctrl-C / SIGTERM."""
        if self.started:
            raise RuntimeError("Pipeline.run(): this pipeline has already been started; build a new one")
        self.started = True
        started = time.monotonic()
        stop = self.cameras[0].ctx.stop
        weights = weights_note(self.config)
        for cam in self.cameras:
            ctx = cam.ctx
            message = f"reading {self._describe(cam)}" + (f"; {weights}" if weights else "")
            detail = {
                "fps": ctx.fps,
                "shape": list(ctx.ring.shape),
                "models": self.backend_notes,
                "weights": weights or self.config.inference.models,
            }
            ctx.bus.emit(health(ctx.camera, "started", message, detail))
        with _StopOnSignal(stop) as signals:
            try:
                for stage in self._threads():
                    stage.start()
                self._wait()
                self._drain()
            finally:
                stop.set()
                self._shutdown()
        seconds = time.monotonic() - started
        frames_in = sum(c.ctx.ring.frames_written for c in self.cameras)
        drops = self.drops()
        spots, recogs = self.record.events[TOPIC_SPOT], self.record.events[TOPIC_RECOG]
        errors = self.cameras[0].ctx.errors
        self.summary = Summary(
            camera=", ".join(c.ctx.camera for c in self.cameras),
            source="; ".join(self._describe(c) for c in self.cameras),
            seconds=seconds,
            frames_in=frames_in,
            frames_out=sum(c.reader.cursor.consumed for c in self.cameras),
            fps=frames_in / max(seconds, 1e-9),
            drops=drops,
            events={t: n for t, n in self.record.counts.items() if t != TOPIC_STATS},
            stats_messages=self.record.counts.get(TOPIC_STATS, 0),
            spots=len(spots),
            recognitions=len(recogs),
            scores=self._scores(spots, recogs),
            outputs=self._outputs,
            notes=self._notes(),
            error="; ".join(errors),
            interrupted=signals.received,
        )
        return self.summary

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Run in a background thread and yield each event as it is published; closing the iterator
        (``break`` out of ``for event in pipeline.events()``) stops the run. See
        `mestream.engine.callback.iterate_events`."""
        return iterate_events(self, timeout)

    def stop(self) -> None:
        """Ask the run to stop, as Ctrl-C does; from any thread, an ``on_event`` callback included."""
        self.cameras[0].ctx.stop.set()

    def drops(self) -> dict[str, int]:
        """Every drop and skip counter so far, summed over the cameras (safe while running)."""
        drops: dict[str, int] = {}
        shared = set(
            self.bus.drops()
        )  # the bus's and sinks' counters, in every camera's stats: count them once
        for cam in self.cameras:
            for key, value in (cam.stats.drops() if cam.stats else {}).items():
                drops[key] = value if key in shared else drops.get(key, 0) + value
        return drops

    def write_summary(self, summary: Summary) -> None:
        """``--summary FILE``."""
        path = Path(self.config.summary)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary.as_json(), indent=2) + "\n")

    def _threads(self) -> list[Stage]:
        threads: list[Stage] = [s for s in (self.recog, self.spot) if s is not None]
        for cam in self.cameras:
            threads += [s for s in (cam.reader, cam.stats, cam.ingest) if s is not None]
        return threads

    def _describe(self, cam: Camera) -> str:
        src = cam.source
        return (
            f"{cam.config.kind} {'x'.join(map(str, src.shape[1::-1]))} {src.pixel_format} at {src.fps:g} fps"
        )

    def _wait(self) -> None:
        bar = self._progress()
        stop = self.cameras[0].ctx.stop
        try:
            while any(c.ingest.is_alive() for c in self.cameras) and not stop.wait(0.2):
                if bar is not None:
                    bar.update(self._frames() - bar.n)
        finally:
            if bar is not None:
                bar.update(self._frames() - bar.n)
                bar.close()

    def _frames(self) -> int:
        return sum(c.ingest.frames for c in self.cameras)

    def _progress(self) -> tqdm | None:
        total = sum(c.ingest.max_frames for c in self.cameras)
        if not self.config.progress or not all(c.ingest.max_frames > 0 for c in self.cameras):
            return None
        return tqdm(
            total=total,
            unit="frame",
            desc=", ".join(c.ctx.camera for c in self.cameras),
            mininterval=0.5,
            leave=False,
        )

    def _drain(self) -> None:
        """The sources ended (or the duration did): let every stage finish what was captured."""
        stop = self.cameras[0].ctx.stop
        for stage in [c.reader for c in self.cameras] + [self.spot]:
            while stage is not None and stage.is_alive() and not stop.wait(0.05):
                pass
        if self.clips is not None and self.recog is not None and not stop.is_set():
            self.clips.finish()
            while self.recog.is_alive() and not stop.wait(0.05):
                pass

    def _shutdown(self) -> None:
        """Stop in the order that loses nothing; a failing step is reported, never skips the rest."""
        errors = self.cameras[0].ctx.errors
        for cam in self.cameras:
            if cam.ingest.ident is None:
                cam.source.close()  # never started; otherwise ingest closes the source it reads
            cam.ingest.join(5.0)  # the ingest loop checks stop on every frame
            if cam.ingest.is_alive():
                errors.append(
                    f"source {cam.source.name!r} did not return a frame within 5 s of the stop; left open"
                )
            cam.ctx.ring.finish()
        hung = []
        for stage in [c.reader for c in self.cameras] + [s for s in (self.spot, self.recog) if s is not None]:
            if stage.ident is not None:
                stage.join(5.0)
                if stage.is_alive():
                    hung.append(stage.stage)
        if hung:
            errors.append(
                f"stage(s) {', '.join(hung)} still running 5 s after the stop; their models are left loaded"
            )
        for cam in self.cameras:
            if cam.stats is not None and cam.stats.ident is not None:
                cam.stats.join(5.0)
        try:
            for cam in self.cameras:
                if cam.stats is not None:
                    cam.stats.publish()
            self._outputs = self._write_ground_truth()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            message = "; ".join(errors) if errors else "stopped"
            for cam in self.cameras:
                frames_in = cam.ctx.ring.frames_written
                self.bus.emit(health(cam.ctx.camera, "stopped", message, {"frames_in": frames_in}))
            self.bus.stop()
            if not hung:  # never pull rings or models from under a stage that is still running
                self._close_cameras()
                self._release_models()
        if self.config.publish.log:
            self._outputs.append(self.config.publish.log)
        if self.config.summary:
            self._outputs.append(self.config.summary)

    def _close_cameras(self) -> None:
        for cam in self.cameras:
            cam.ctx.ring.close()
            if cam.crops is not None:
                cam.crops.close()

    def _release_models(self) -> None:
        for runner in self.models.values():
            runner.deactivate()

    # -- results --------------------------------------------------------------------------------

    def _truth(self) -> dict[str, list[Any]]:
        """Ground truth of the cameras that know it (the synthetic camera); {} otherwise."""
        truth = {}
        for cam in self.cameras:
            events = getattr(cam.source, "ground_truth", None)
            if events is not None:
                truth[cam.ctx.camera] = list(events)
        return truth

    def _scores(self, spots: list[dict[str, Any]], recogs: list[dict[str, Any]]) -> dict[str, Any]:
        """Latency over every camera's events; F1 and UF1 over the cameras that know their ground truth."""
        if not self.config.spot.enabled:
            return {}
        latency = {"spot_latency_ms": latency_summary(spots), "recog_latency_ms": latency_summary(recogs)}
        truth = self._truth()
        if not truth:
            return latency
        classes = (
            list(self._manifest.akmnet.config.classes)
            if "akmnet" in self._manifest.models
            else sorted({e.four_class for events in truth.values() for e in events})
        )
        frames = {c.ctx.camera: c.ctx.ring.frames_written for c in self.cameras if c.ctx.camera in truth}
        try:
            scores = score_run(
                [s for s in spots if s["camera"] in truth],
                [r for r in recogs if r["camera"] in truth],
                truth,
                frames,
                classes,
            )
        except ValueError as exc:  # scoring is a report: it never hides the run's own outcome
            log.warning("could not score the run against the ground truth: %s", exc)
            return latency
        return {**scores, **latency}

    def _notes(self) -> list[str]:
        """What the sources know happened (the synthetic camera's ground truth), by kind."""
        kinds: dict[str, int] = {}
        for events in self._truth().values():
            for event in events:
                kinds[event.kind] = kinds.get(event.kind, 0) + 1
        notes = list(self.backend_notes) + ([weights_note(self.config)] if weights_note(self.config) else [])
        if kinds:
            notes.append("ground truth: " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())))
        return notes

    def _write_ground_truth(self) -> list[str]:
        path = self.config.ground_truth
        if not path:
            return []
        written = []
        for i, cam in enumerate(self.cameras):
            writer = getattr(cam.source, "write_ground_truth_json", None)
            if writer is None:
                log.warning("--ground-truth: source %r has no ground truth; nothing written", cam.config.kind)
                continue
            target = (
                Path(path)
                if i == 0
                else Path(path).with_name(f"{Path(path).stem}-{cam.ctx.camera}{Path(path).suffix}")
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            writer(target)
            written.append(str(target))
        return written


def _check_writable(path: Path, what: str) -> None:
    """Refuse an output file whose folder cannot be made or written, naming the key and path."""
    if path.is_dir():
        raise ConfigError(f"{what}: {path} is a folder; give a file path")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot create the folder {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{what}: the folder {folder} is not writable")


class _StopOnSignal:
    """Ctrl-C and SIGTERM set the stop event instead of raising in whatever the main thread
    is doing, so shutdown always runs in order and the sinks are flushed. A second Ctrl-C
    raises KeyboardInterrupt as usual, for a shutdown that hangs."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.received = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = True
        self.stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
