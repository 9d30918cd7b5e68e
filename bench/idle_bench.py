"""What a pipeline costs while its cameras deliver nothing, and whether waiting adds latency.

Usage::

    python -m mestream.bench.idle_bench [--scenarios ...] [--seconds S] [--repeat R] [--json PATH]

Every camera has readers that wait for the next frame or crop (face stage, latency tap, spot
stage); a camera that pauses, or a lab rig between trials, leaves them waiting. The waiting
must cost nothing, so the idle scenarios measure it directly:

- ``idle-1-tap``: one synthetic 500 fps camera, spotting off (ingest → ring → latency tap);
- ``idle-1``: one camera, the whole pipeline (face, spot, recognition);
- ``idle-4``: four cameras, the whole pipeline.

Each camera delivers ``--warm`` seconds of frames (the face is found, every stage has run),
then its source delivers nothing: the ingest thread blocks inside the source, as it would on
a camera that stopped sending. After ``--settle`` seconds the process's CPU time
(`time.process_time`: user + system, every thread) and its voluntary context switches
(each one a thread going to sleep, so about one per wake-up) are taken over ``--seconds`` of
wall time. ``cpu %`` is 100 per core.

The paced scenarios check that blocking on the writer's notification does not make the
readers late: ``paced-tap`` and ``paced`` run the same camera in real time for
``--paced-seconds`` with the engine's frame trace (`Pipeline(config, trace_frames=N)`), and
report the per-frame latency without the first second and the last half second:
``ring`` (capture → the tap read it) for the tap, ``face`` (capture → its crop written) and
``total`` (capture → the spot stage decided it) for the full pipeline.

Figures are medians over ``--repeat`` runs (each a fresh `Pipeline` in this process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from mestream.engine.config import PublishConfig, RecogConfig, RunConfig, SourceConfig, SpotConfig
from mestream.engine.pipeline import Pipeline

IDLE = ("idle-1-tap", "idle-1", "idle-4")
PACED = ("paced-tap", "paced")
SCENARIOS = IDLE + PACED
FPS = 500.0


class StallingSource:
    """Passes the first ``frames`` frames of ``inner`` through, then delivers nothing until
    ``release`` is set, and ends: a camera that stopped sending, without any thread spinning."""

    def __init__(self, inner: Any, frames: int, release: threading.Event) -> None:
        self.inner, self.frames, self.release = inner, frames, release
        self.stalled = threading.Event()

    def __getattr__(self, name: str) -> Any:  # name, fps, shape, ... of the real source
        return getattr(self.inner, name)

    def __iter__(self) -> Iterator[Any]:
        for i, frame in enumerate(self.inner):
            if i == self.frames:
                break
            yield frame
        self.stalled.set()
        self.release.wait()

    def close(self) -> None:
        self.inner.close()


def scenario_config(name: str, seconds: float, seed: int) -> RunConfig:
    """One synthetic 640×480 500 fps camera in real time (four for ``idle-4``), nothing published."""
    config = RunConfig(
        source=SourceConfig(seed=seed, resolution="640x480", fps=FPS),
        duration=seconds,
        progress=False,
        publish=PublishConfig(endpoint="", console=False),
    )
    if name.endswith("-tap"):
        config = replace(config, spot=SpotConfig(enabled=False), recognise=RecogConfig(enabled=False))
    if name == "idle-4":
        config = replace(config, cameras=4)
    return config


def _cpu_s() -> float:
    """User + system time of every thread of the process, to the ns (`os.times` counts 10 ms ticks,
    0.2 % of a 5 s window)."""
    return time.process_time()


def _switches() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw


def run_idle(name: str, warm: float, settle: float, seconds: float, seed: int) -> dict[str, Any]:
    """One idle run: warm up, stall every source, measure, release the sources, let the run end.

    The stalling wrapper replaces each camera's ``ingest.source`` after `Pipeline` opened it:
    the public API has no hook for wrapping a source, and the ingest thread has not started."""
    pipeline = Pipeline(scenario_config(name, 0.0, seed))
    release = threading.Event()
    stalls = []
    for cam in pipeline.cameras:
        cam.ingest.source = StallingSource(cam.ingest.source, round(warm * FPS), release)
        stalls.append(cam.ingest.source)
    figures: dict[str, Any] = {}

    def measure() -> None:
        try:
            for stall in stalls:
                if not stall.stalled.wait(warm * 20 + 30):
                    figures["error"] = "a source never reached its stall"
                    return
            time.sleep(settle)
            cpu0, sw0, wall0 = _cpu_s(), _switches(), time.monotonic()
            time.sleep(seconds)
            cpu1, sw1, wall1 = _cpu_s(), _switches(), time.monotonic()
            span = wall1 - wall0
            figures.update(
                cpu_percent=100 * (cpu1 - cpu0) / span, wakeups_per_s=(sw1 - sw0) / span, wall_s=span
            )
        finally:
            release.set()

    thread = threading.Thread(target=measure, name="idle-bench", daemon=True)
    thread.start()
    summary = pipeline.run()
    thread.join()
    return {
        "scenario": name,
        "cameras": len(pipeline.cameras),
        **figures,
        "frames_in": summary.frames_in,
        "run_error": summary.error,
    }


def _pct(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {}
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3)}


def run_paced(name: str, seconds: float, seed: int) -> dict[str, Any]:
    """One paced run with the frame trace: per-frame latency by stage, CPU %."""
    config = scenario_config(name, seconds, seed)
    pipeline = Pipeline(config, trace_frames=int(round(seconds * FPS)) + 16)
    cpu0, wall0 = _cpu_s(), time.monotonic()
    summary = pipeline.run()
    cpu, wall = _cpu_s() - cpu0, time.monotonic() - wall0
    trace = pipeline.traces["cam0"]
    lat = trace.latencies_ms(since_frame=int(FPS), until_frame=int((seconds - 0.5) * FPS))
    drops = summary.drops
    return {
        "scenario": name,
        "cameras": 1,
        "cpu_percent": 100 * cpu / wall,
        "frames_in": summary.frames_in,
        "dropped": drops.get("camera", 0) + drops.get("ring_overrun", 0),
        "spot_skip": drops.get("spot_skip", 0),
        "latency_ms": {stage: _pct(values) for stage, values in lat.items()},
        "run_error": summary.error,
    }


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of every numeric figure over the runs (nested dicts too); the rest from the first run."""
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        values = [r.get(key) for r in runs]
        if isinstance(first, dict):
            out[key] = medians([v or {} for v in values]) if first else {}
        elif (
            isinstance(first, (int, float))
            and not isinstance(first, bool)
            and all(isinstance(v, (int, float)) for v in values)
        ):
            out[key] = round(statistics.median(values), 3)
        else:
            out[key] = first
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'scenario':<11} {'cams':>4} {'cpu %':>7} {'wakeups/s':>10}  frame latency ms p50 / p99"]
    for r in rows:
        lat = r.get("latency_ms", {})
        shown = "  ".join(
            f"{stage} {v['p50']:.2f} / {v['p99']:.2f}"
            for stage, v in lat.items()
            if stage in ("ring", "face", "total") and v
        )
        wakes = f"{r['wakeups_per_s']:>10,.0f}" if "wakeups_per_s" in r else f"{'':>10}"
        cpu = f"{r['cpu_percent']:>7.1f}" if "cpu_percent" in r else f"{'-':>7}"
        lines.append(f"{r['scenario']:<11} {r['cameras']:>4} {cpu} {wakes}  {shown}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mestream.bench.idle_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="idle wall time measured per run (default 5)"
    )
    parser.add_argument(
        "--warm", type=float, default=1.0, help="seconds of frames before the stall (default 1)"
    )
    parser.add_argument(
        "--settle", type=float, default=1.0, help="seconds after the stall before measuring (default 1)"
    )
    parser.add_argument(
        "--paced-seconds", type=float, default=10.0, help="length of a paced run (default 10)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario; medians shown (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.warm <= 0 or args.settle < 0 or args.paced_seconds < 2 or args.repeat < 1:
        parser.error("--seconds and --warm must be > 0, --settle ≥ 0, --paced-seconds ≥ 2, --repeat ≥ 1")
    rows, raw = [], {}
    for name in args.scenarios:
        runs = [
            run_idle(name, args.warm, args.settle, args.seconds, args.seed)
            if name in IDLE
            else run_paced(name, args.paced_seconds, args.seed)
            for _ in range(args.repeat)
        ]
        raw[name] = runs
        errors = [r.get("error") or r.get("run_error") for r in runs if r.get("error") or r.get("run_error")]
        if errors:
            print(f"{name}: {errors[0]}", file=sys.stderr)
            return 1
        rows.append(medians(runs))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(
        f"medians of {args.repeat} runs; idle: {args.seconds:g} s measured after {args.warm:g} s of frames "
        f"and {args.settle:g} s settling; paced: {args.paced_seconds:g} s at {FPS:g} fps"
    )
    print(table(rows))
    if args.json:
        doc = {
            "bench": "idle_bench",
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "args": vars(args),
            "medians": rows,
            "runs": raw,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
