"""One bench point: a whole `mestream run` through the public `Pipeline` API, measured.

A point is a pipeline (ingest only, + spotting, + recognition), a frame rate, a resolution, a
camera count and a backend. Each repetition builds a fresh pipeline on the synthetic camera
(the same seeded session every time), runs ``warmup_s + seconds`` of source time, and keeps
only the frames after the first ``warmup_s · fps`` (and the events that end after them):

- per-frame latency from the engine's frame trace (`mestream.engine.trace`): capture → the end
  of the spot stage (ingest only: capture → the first reader), and each stage's share;
- per-event latency from the published events themselves (what a subscriber sees): the
  offset frame's capture → publish, and the stage fields each event carries;
- throughput (measured frames that went through every stage, per second over their capture
  span, or over the span of their ends when the pipeline is the slower: a replay), the rate
  the camera delivered them at (``camera_fps``), CPU % (process user + system time over wall time, 200 % is
  both cores; after the warm-up when paced, the whole run when unpaced), peak RSS (the
  process's, reset before each repetition), dropped frames (lost by the camera, overrun in a
  ring) and skipped frames (read, but skipped by a spotter that fell behind).

The headline figures of a point are the medians over its repetitions.
"""

from __future__ import annotations

import gc
import resource
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mestream.bench.stats import cdf, median_of, percentiles
from mestream.engine.config import (
    InferenceConfig,
    PublishConfig,
    RecogConfig,
    RunConfig,
    SourceConfig,
    SpotConfig,
)
from mestream.engine.events import TOPIC_RECOG, TOPIC_SPOT
from mestream.engine.pipeline import Pipeline
from mestream.engine.scoring import LATENCY_KEY
from mestream.engine.summary import events_dropped, frames_dropped

PIPELINES = ("ingest", "spot", "spot+recog")
KEEP_UP = 0.97
"""A capacity probe passes only if the camera delivered, and the pipeline put through, this
share of the frame rate (a camera thread starved of CPU releases frames late, not dropped)."""


@dataclass(frozen=True)
class Method:
    """How every point is measured (recorded with the results)."""

    warmup_s: float = 2.0
    cooldown_s: float = 0.5
    seconds: float = 20.0
    min_frames: int = 10_000
    repetitions: int = 3
    p99_bound_ms: float = 500.0
    seed: int = 1
    threads: int = 1
    micro_per_min: float = (
        60.0  # the synthetic camera's default is 18: more events, more event-latency samples
    )

    def measured_seconds(self, fps: float, cameras: int) -> float:
        """At least ``seconds``, and long enough for ``min_frames`` frames."""
        return max(self.seconds, self.min_frames / (fps * cameras))


@dataclass(frozen=True)
class Point:
    pipeline: str = "spot+recog"
    fps: float = 500.0
    resolution: str = "640x480"
    cameras: int = 1
    backend: str = "onnxruntime"
    paced: bool = True

    @property
    def id(self) -> str:
        pace = "" if self.paced else " unpaced"
        return f"{self.pipeline} {self.fps:g}fps {self.resolution} {self.cameras}cam {self.backend}{pace}"


def run_config(point: Point, method: Method, seconds: float) -> RunConfig:
    """The `RunConfig` a user would write for this point (`mestream run` flags in docs/cli.md)."""
    spot = point.pipeline != "ingest"
    return RunConfig(
        source=SourceConfig(
            seed=method.seed,
            fps=point.fps,
            resolution=point.resolution,
            pace=point.paced,
            options={"micro_per_min": method.micro_per_min},
        ),
        cameras=point.cameras,
        duration=method.warmup_s + seconds + method.cooldown_s,
        progress=False,
        publish=PublishConfig(endpoint="", console=False),
        spot=SpotConfig(enabled=spot),
        recognise=RecogConfig(enabled=point.pipeline == "spot+recog"),
        inference=InferenceConfig(backend=point.backend, fallback=False, threads=method.threads),
    )


def backend_settings(config: RunConfig) -> dict[str, Any]:
    inf = config.inference
    return {"threads": inf.threads, "max_batch": inf.max_batch, "opt_batch": inf.opt_batch}


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _reset_peak_rss() -> bool:
    """Linux: zero the process's peak RSS (VmHWM), so that each repetition reports its own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class _Clock(threading.Thread):
    """Notes process CPU time, wall time and the drop counters when the warm-up ends, from
    beside the run, so that the figures cover the measured part only."""

    def __init__(self, delay_s: float, pipeline: Pipeline) -> None:
        super().__init__(daemon=True)
        self.delay_s, self.pipeline, self.done = delay_s, pipeline, threading.Event()
        self.mark: tuple[float, float, dict[str, int]] | None = None

    def run(self) -> None:
        if not self.done.wait(self.delay_s):
            self.mark = (_cpu_s(), time.monotonic(), self.pipeline.drops())


def run_once(
    point: Point, method: Method, seconds: float | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One repetition: its figures (JSON-able) and the raw per-frame latencies (ms) by stage."""
    seconds = method.measured_seconds(point.fps, point.cameras) if seconds is None else seconds
    config = run_config(point, method, seconds)
    gc.collect()  # the last repetition's rings and models are gone before the peak is reset
    rss_scope = "repetition" if _reset_peak_rss() else "process"  # off Linux: the process's lifetime peak
    pipeline = Pipeline(config, trace_frames=int(round(config.duration * point.fps)) + 16)
    clock = _Clock(method.warmup_s, pipeline)
    cpu0, wall0 = _cpu_s(), time.monotonic()
    if point.paced:  # a replay's warm-up is over in a fraction of warmup_s: its figures are the whole run's
        clock.start()
    summary = pipeline.run()
    cpu1, wall1 = _cpu_s(), time.monotonic()
    clock.done.set()
    cpu0, wall0, drops0 = clock.mark or (cpu0, wall0, {})
    window = _measured_frames(pipeline, method, point.fps)
    raw: dict[str, list[np.ndarray]] = {}
    finished, unfinished, late, delivered = 0, 0, [], 0.0
    spans: list[tuple[int, int, int, int]] = []  # per camera: first and last capture, first and last end
    for camera, (since, until) in window.items():
        trace = pipeline.traces[camera]
        for stage, values in trace.latencies_ms(since, until).items():
            raw.setdefault(stage, []).append(values)
        done = trace.finished(since, until)
        finished += int(done.sum())
        unfinished += trace.unfinished(since, until)
        late.append(_lateness_ms(trace, since, until, point.fps))
        if done.sum() > 1:
            t = trace.times[:, : len(done)][:, done]
            spans.append((int(t[0].min()), int(t[0].max()), int(t[-1].min()), int(t[-1].max())))
            delivered += (done.sum() - 1) / max((spans[-1][1] - spans[-1][0]) / 1e9, 1e-9)
    lat = {stage: np.concatenate(parts) for stage, parts in raw.items()}
    # frames through per second: over their capture span, or their ends' span when the pipeline is the slower
    span_s = (
        max(
            max(s[1] for s in spans) - min(s[0] for s in spans),
            max(s[3] for s in spans) - min(s[2] for s in spans),
        )
        / 1e9
        if spans
        else 0.0
    )
    events = _measured_events(pipeline, window)
    timed = {topic: [e for e in evs if e["latency"][LATENCY_KEY] >= 0] for topic, evs in events.items()}
    drops = {k: v - drops0.get(k, 0) for k, v in summary.drops.items()}
    rep = {
        "wall_s": round(wall1 - wall0, 3),
        "frames": finished,
        "throughput_fps": round((finished - len(spans)) / span_s, 1) if span_s > 0 else None,
        "camera_fps": round(delivered, 1) if spans else None,
        "cpu_percent": round(100 * (cpu1 - cpu0) / max(wall1 - wall0, 1e-9), 1),
        "peak_rss_mb": _peak_rss_mb(),
        "peak_rss_scope": rss_scope,
        "dropped_frames": frames_dropped(drops),
        "skipped_frames": int(drops.get("spot_skip", 0)),
        "unfinished_frames": unfinished,
        "events_dropped": events_dropped(drops),
        "untimed_events": sum(len(evs) - len(timed[topic]) for topic, evs in events.items()),
        "camera_late_ms": percentiles(np.concatenate(late) if late else []),
        "frame_latency_ms": percentiles(lat.get("total", [])),
        "frame_stages_ms": {stage: percentiles(values) for stage, values in lat.items() if stage != "total"},
        "event_latency_ms": {
            topic: percentiles([e["latency"][LATENCY_KEY] for e in evs]) for topic, evs in timed.items()
        },
        "event_stages_ms": {
            topic: {
                key: percentiles([e["latency"][key] for e in evs if e["latency"].get(key, -1) >= 0])
                for key in _stage_keys(evs)
            }
            for topic, evs in timed.items()
        },
        "spot_f1": summary.scores.get("spot_f1"),
        "recog_uf1": summary.scores.get("recog_uf1"),
        "backend_notes": pipeline.backend_notes,
        "error": summary.error,
        "interrupted": summary.interrupted,
    }
    return rep, lat


def _stage_keys(events: list[dict[str, Any]]) -> list[str]:
    """The stage fields the events carry (their `latency` keys but the total), in their order."""
    return list(dict.fromkeys(k for e in events for k in e["latency"] if k != LATENCY_KEY))


def _measured_frames(pipeline: Pipeline, method: Method, fps: float) -> dict[str, tuple[int, int]]:
    """Per camera, the frame ids measured: after the warm-up, and before the last ``cooldown_s``
    (the stream's end is flushed at once, with no look-ahead or hop to wait for)."""
    out = {}
    for camera, trace in pipeline.traces.items():
        n = min(trace.count, trace.capacity)
        if n:
            first, last = int(trace.frame_id[0]), int(trace.frame_id[n - 1])
            out[camera] = (first + round(method.warmup_s * fps), last + 1 - round(method.cooldown_s * fps))
    return out


def _lateness_ms(trace: Any, since: int, until: int, fps: float) -> np.ndarray:
    """How late the camera released each frame against its own clock (frame n at start + n/fps),
    relative to its most punctual frame: a camera thread starved of CPU releases frames late,
    which the latency from their capture stamps cannot show."""
    n = min(trace.count, trace.capacity)
    ids, capture = trace.frame_id[:n], trace.times[0, :n]
    keep = (ids >= since) & (ids < until)
    if not keep.any():
        return np.zeros(0)
    offset = capture[keep] - (ids[keep] - ids[0]) * (1e9 / fps)
    return (offset - offset.min()) / 1e6


def _measured_events(
    pipeline: Pipeline, window: dict[str, tuple[int, int]]
) -> dict[str, list[dict[str, Any]]]:
    """The events whose offset frame is one of the measured frames, by topic."""
    if not pipeline.config.spot.enabled:
        return {}
    spots = [
        e
        for e in pipeline.record.events[TOPIC_SPOT]
        if e["camera"] in window and window[e["camera"]][0] <= e["offset_frame"] < window[e["camera"]][1]
    ]
    out = {"spot": spots}
    if pipeline.config.recognise.enabled:
        kept = {(e["camera"], e["event_id"]) for e in spots}
        out["recog"] = [
            e for e in pipeline.record.events[TOPIC_RECOG] if (e["camera"], e["event_id"]) in kept
        ]
    return out


def measure_point(point: Point, method: Method, *, repetitions: int | None = None) -> dict[str, Any]:
    """Every repetition of ``point``, and the medians over them (the point's headline). A point
    that cannot run (a backend or camera that fails to start) is reported with its error, so
    that the points measured before and after it are kept."""
    reps: list[dict[str, Any]] = []
    pooled: dict[str, list[np.ndarray]] = {}
    error, interrupted = "", False
    header = {"id": point.id, **asdict(point)}
    try:
        seconds = method.measured_seconds(point.fps, point.cameras)
        header = _point_header(point, method, seconds)
        for _ in range(repetitions or method.repetitions):
            rep, lat = run_once(point, method, seconds)
            if rep["interrupted"]:  # cut short: its figures would skew the medians; the point says so
                interrupted = True
                break
            reps.append(rep)
            for stage, values in lat.items():
                pooled.setdefault(stage, []).append(values)
            if rep["error"]:
                break
    except KeyboardInterrupt:  # outside a run (building the pipeline): keep the repetitions made
        interrupted = True
    except Exception as exc:  # noqa: BLE001 (reported in the results, and on stderr by the suite)
        error = f"{type(exc).__name__}: {exc}"
    errors = [r["error"] for r in reps if r["error"]] + ([error] if error else [])
    return {
        **header,
        **_over_repetitions(reps, pooled),
        "interrupted": interrupted or any(r["interrupted"] for r in reps),
        "error": "; ".join(errors),
    }


def _point_header(point: Point, method: Method, seconds: float) -> dict[str, Any]:
    return {
        "id": point.id,
        "pipeline": point.pipeline,
        "fps": point.fps,
        "resolution": point.resolution,
        "cameras": point.cameras,
        "backend": point.backend,
        "paced": point.paced,
        "backend_settings": backend_settings(run_config(point, method, seconds)),
        "seconds": round(seconds, 3),
    }


def _over_repetitions(reps: list[dict[str, Any]], pooled: dict[str, list[np.ndarray]]) -> dict[str, Any]:
    """Medians over repetitions (worst for peak RSS and drops); latency CDFs pooled."""

    def med(key: str, digits: int = 1) -> float | None:
        values = [r[key] for r in reps if r[key] is not None]
        return round(float(np.median(values)), digits) if values else None

    def worst(key: str) -> Any:
        values = [r[key] for r in reps if r[key] is not None]
        return max(values) if values else None

    stages = list(dict.fromkeys(s for r in reps for s in r["frame_stages_ms"]))
    topics: dict[str, dict[str, None]] = {}
    for r in reps:  # a repetition without events has no stage keys: take every repetition's
        for t, keys in r["event_stages_ms"].items():
            topics.setdefault(t, {}).update(dict.fromkeys(keys))
    return {
        "throughput_fps": med("throughput_fps"),
        "camera_fps": med("camera_fps"),
        "cpu_percent": med("cpu_percent"),
        "peak_rss_mb": worst("peak_rss_mb"),
        "dropped_frames": worst("dropped_frames"),
        "skipped_frames": worst("skipped_frames"),
        "unfinished_frames": worst("unfinished_frames"),
        "events_dropped": worst("events_dropped"),
        "untimed_events": worst("untimed_events"),
        "camera_late_ms": median_of([r["camera_late_ms"] for r in reps]),
        "frame_latency_ms": median_of([r["frame_latency_ms"] for r in reps]),
        "frame_stages_ms": {
            s: median_of([r["frame_stages_ms"][s] for r in reps if s in r["frame_stages_ms"]]) for s in stages
        },
        "event_latency_ms": {
            t: median_of([r["event_latency_ms"][t] for r in reps if t in r["event_latency_ms"]])
            for t in topics
        },
        "event_stages_ms": {
            t: {
                k: median_of(
                    [r["event_stages_ms"][t][k] for r in reps if k in r["event_stages_ms"].get(t, {})]
                )
                for k in keys
            }
            for t, keys in topics.items()
        },
        "spot_f1": med("spot_f1", 4),
        "recog_uf1": med("recog_uf1", 4),
        "cdf_ms": {stage: cdf(np.concatenate(parts)) for stage, parts in pooled.items()},
        "repetitions": reps,
    }


def probe(point: Point, method: Method, seconds: float) -> dict[str, Any]:
    """One capacity probe: can the pipeline take ``point.fps`` live, with no frame dropped,
    skipped or left unfinished and no event dropped, the frames through at the camera's rate (a
    camera thread starved of CPU releases frames late rather than dropping them) and the frame
    p99 within the bound?"""
    failed = {
        "fps": point.fps,
        "dropped_frames": None,
        "skipped_frames": None,
        "unfinished_frames": None,
        "events_dropped": None,
        "throughput_fps": None,
        "camera_fps": None,
        "frame_p99_ms": None,
        "cpu_percent": None,
        "ok": False,
    }
    try:
        rep, _ = run_once(point, method, seconds)
    except KeyboardInterrupt:
        return {**failed, "error": "interrupted", "interrupted": True}
    except Exception as exc:  # noqa: BLE001 (a rate the source refuses fails the probe, with why)
        return {**failed, "error": f"{type(exc).__name__}: {exc}", "interrupted": False}
    p99 = rep["frame_latency_ms"]["p99"]
    rate = KEEP_UP * point.fps * point.cameras
    kept_up = (rep["throughput_fps"] or 0) >= rate and (rep["camera_fps"] or 0) >= rate
    lost = rep["dropped_frames"] + rep["skipped_frames"] + rep["unfinished_frames"] + rep["events_dropped"]
    ok = not rep["error"] and lost == 0 and kept_up and p99 is not None and p99 <= method.p99_bound_ms
    return {
        "fps": point.fps,
        **{
            k: rep[k]
            for k in (
                "dropped_frames",
                "skipped_frames",
                "unfinished_frames",
                "events_dropped",
                "throughput_fps",
                "camera_fps",
                "cpu_percent",
            )
        },
        "frame_p99_ms": p99,
        "ok": bool(ok),
        "error": rep["error"],
        "interrupted": rep["interrupted"],
    }


def capacity(
    point: Point,
    method: Method,
    *,
    seconds: float,
    start_fps: float = 500.0,
    max_fps: float = 4000.0,
    floor_fps: float = 40.0,
    max_probes: int = 8,
    progress: Any = None,
) -> dict[str, Any]:
    """The highest frame rate ``point`` takes live (`probe`): doubling from ``start_fps`` until a
    probe fails (halving when the first one fails), then bisecting between the last pass and
    the first failure to within 10 %. ``capped``: every probe passed up to ``max_fps`` (the
    capacity is at least that); ``converged``: the bracket is within 10 %. The floor is the
    spotting rate (40 Hz): a camera slower than that is refused. Ctrl-C ends the search with
    the probes made so far."""
    probes: list[dict[str, Any]] = []

    def more() -> bool:
        return len(probes) < max_probes and not (probes and probes[-1]["interrupted"])

    def attempt(fps: float) -> bool:
        result = probe(replace(point, fps=round(fps)), method, seconds)
        probes.append(result)
        if progress is not None:
            progress.set_postfix_str(
                f"capacity probe {result['fps']:g} fps: {'ok' if result['ok'] else 'fails'}"
            )
        return result["ok"] and not result["interrupted"]

    good, bad, fps = 0.0, 0.0, start_fps
    while more() and not bad and good < max_fps:
        if attempt(fps):
            good, fps = fps, min(fps * 2, max_fps)
        else:
            bad = fps
    while more() and not good and bad / 2 >= floor_fps:  # the start already fails: search below it
        fps = bad / 2
        if attempt(fps):
            good = fps
        else:
            bad = fps
    while more() and good and bad and bad / good > 1.1:
        fps = (good + bad) / 2
        if attempt(fps):
            good = fps
        else:
            bad = fps
    return {
        "pipeline": point.pipeline,
        "resolution": point.resolution,
        "cameras": point.cameras,
        "backend": point.backend,
        "bound_ms": method.p99_bound_ms,
        "seconds": seconds,
        "capacity_fps": float(round(good)) if good else None,
        "upper_fps": float(round(bad)) if bad else None,
        "capped": bool(good >= max_fps),
        "converged": bool(good >= max_fps or (good and bad and bad / good <= 1.1)),
        "probes": probes,
        "interrupted": bool(probes and probes[-1]["interrupted"]),
    }
