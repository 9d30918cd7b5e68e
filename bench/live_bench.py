"""Live spotting and recognition on the synthetic camera, through the public `Pipeline` API:
dropped frames, event latency and capacity (issue 6's targets).

Scenarios (each a whole `mestream run`, one after another in this process):

- ``paced``: one 500 fps 640×480 camera in real time for ``--seconds`` (default 60):
  zero dropped frames, spot latency p50 ≤ 250 ms and p99 ≤ 500 ms, recognition p99 ≤ 1.5 s;
- ``unpaced``: the same camera as fast as the pipeline takes it (the ring waits, nothing is
  lost): frames per second of capacity, target ≥ 1,000;
- ``paced-1000``: a 1,000 fps camera in real time: the capacity, checked live;
- ``two-cameras``: two 500 fps cameras in real time, batched: the scaling;
- ``two-unpaced``: two cameras as fast as possible: aggregate capacity.

Latency is from the offset frame's capture to the event's publication, as every event
carries it. CPU is the process's user + system time over wall time (200 % = both cores)::

    python -m mestream.bench.live_bench                       # everything, about 4 minutes
    python -m mestream.bench.live_bench --scenarios paced --seconds 20 --json /tmp/live.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from dataclasses import replace
from typing import Any

from mestream.engine.config import PublishConfig, RunConfig, SourceConfig
from mestream.engine.pipeline import Pipeline

SCENARIOS = ("paced", "unpaced", "paced-1000", "two-cameras", "two-unpaced")


def scenario_config(name: str, seconds: float, seed: int) -> RunConfig:
    base = RunConfig(
        source=SourceConfig(seed=seed, resolution="640x480", fps=500.0),
        duration=seconds,
        progress=False,
        publish=PublishConfig(endpoint="", console=False),
    )
    changes: dict[str, Any] = {
        "paced": {},
        "unpaced": {"source": replace(base.source, pace=False)},
        "paced-1000": {"source": replace(base.source, fps=1000.0), "duration": seconds / 2},
        "two-cameras": {"cameras": 2},
        "two-unpaced": {"cameras": 2, "source": replace(base.source, pace=False)},
    }[name]
    return replace(base, **changes)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_scenario(name: str, seconds: float, seed: int) -> dict[str, Any]:
    config = scenario_config(name, seconds, seed)
    pipeline = Pipeline(config)
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    summary = pipeline.run()
    cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
    scores = summary.scores
    drops = summary.drops
    lost = drops.get("camera", 0) + drops.get("ring_overrun", 0)
    return {
        "scenario": name,
        "cameras": config.cameras,
        "fps": config.source.fps,
        "paced": config.source.pace,
        "video_s": config.duration,
        "wall_s": round(wall, 2),
        "frames_in": summary.frames_in,
        "throughput_fps": round(summary.frames_in / wall, 1),
        "frames_dropped": lost,
        "spot_skip": drops.get("spot_skip", 0),
        "recog_backlog": drops.get("recog_backlog", 0),
        "recog_lost": drops.get("recog_lost", 0),
        "cpu_percent": round(100 * cpu / wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "spots": summary.spots,
        "recognitions": summary.recognitions,
        "spot_latency_ms": scores.get("spot_latency_ms", {}),
        "recog_latency_ms": scores.get("recog_latency_ms", {}),
        "spot_f1": scores.get("spot_f1"),
        "recog_uf1": scores.get("recog_uf1"),
        "error": summary.error,
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| scenario | frames in | wall s | frames/s | dropped | spot skips | spot p50 / p99 ms | "
        "recog p50 / p99 ms | CPU % | spot F1 | recog UF1 |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        s, g = r["spot_latency_ms"], r["recog_latency_ms"]
        lines.append(
            f"| {r['scenario']} ({r['cameras']}× {r['fps']:g} fps, {'paced' if r['paced'] else 'unpaced'}) "
            f"| {r['frames_in']:,} | {r['wall_s']} | {r['throughput_fps']:,.0f} "
            f"| {r['frames_dropped']} | {r['spot_skip']} "
            f"| {s.get('p50', 0):.0f} / {s.get('p99', 0):.0f} (n {s.get('n', 0)}) "
            f"| {g.get('p50', 0):.0f} / {g.get('p99', 0):.0f} (n {g.get('n', 0)}) | {r['cpu_percent']:.0f} "
            f"| {r['spot_f1']} | {r['recog_uf1']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated, from: " + ", ".join(SCENARIOS)
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="video seconds per scenario (default 60)")
    parser.add_argument("--seed", type=int, default=1, help="synthetic camera seed (default 1)")
    parser.add_argument("--json", metavar="FILE", help="write the figures here")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    rows = []
    for name in names:
        print(f"running {name} ...", flush=True)
        rows.append(run_scenario(name, args.seconds, args.seed))
    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": platform.platform(), "cores": os.cpu_count(), "rows": rows}, f, indent=2)
    return 1 if any(r["error"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
