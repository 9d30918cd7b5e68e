"""Per subgraph and per backend: latency (median, p99) and items per second at batch 1, 4 and 16.

The target (issue 5) is onnxruntime at least 3× faster than torch eager on the two per-frame
encoders (MESNet's flow encoder, AKMNet's frame encoder), on this CPU, measured side by side
in one run. To make "side by side" mean something on a noisy shared VM, the backends take
turns: each round runs a block of calls on every backend in turn, and the figures pool the
calls of all rounds, so a slow minute hurts every backend alike. Warm-up calls are discarded.
Inputs are the real synthetic-camera inputs saved with the export when the batch fits them,
random otherwise (timing does not depend on values for these networks). Every backend gets
the same number of threads::

    python -m mestream.bench.backend_bench                # the shipped export, every backend here
    python -m mestream.bench.backend_bench --subgraphs mesnet.encoder,akmnet.encoder --rounds 9
    python -m mestream.bench.backend_bench --models runs/export --json /tmp/backends.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from mestream.engine.backends import backend_class, backend_kinds, why_unavailable
from mestream.engine.backends.base import example_feed
from mestream.engine.config import InferenceConfig
from mestream.engine.manifest import Manifest, shipped_export_dir
from mestream.export.check import load_inputs

TARGET = 3.0
TARGET_SUBGRAPHS = ("mesnet.encoder", "akmnet.encoder")
BATCHES = (1, 4, 16)


def feed_for(manifest: Manifest, key: str, batch: int, saved: dict[str, Any]) -> dict[str, np.ndarray]:
    """Real inputs tiled to ``batch`` when the export saved some, random ones otherwise."""
    if key in saved:
        feed = saved[key][0]
        reps = -(-batch // len(next(iter(feed.values()))))
        return {name: np.ascontiguousarray(np.concatenate([a] * reps)[:batch]) for name, a in feed.items()}
    return example_feed(manifest.subgraph(key), batch, np.random.default_rng(0))


def run_point(
    runners: dict[str, Any], feed: dict[str, np.ndarray], rounds: int, block: int, warmup: int
) -> dict[str, np.ndarray]:
    """Per-call times (ns) of every backend, taking turns block by block."""
    times: dict[str, list[int]] = {name: [] for name in runners}
    for runner in runners.values():
        for _ in range(warmup):
            runner.infer(feed)
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for name, runner in runners.items():
            spent = times[name]
            for _ in range(block):
                t0 = clock()
                runner.infer(feed)
                spent.append(clock() - t0)
    return {name: np.asarray(t, dtype=np.int64) for name, t in times.items()}


def summarise(ns: np.ndarray, batch: int) -> dict[str, float]:
    median = float(np.median(ns)) / 1e6
    return {
        "median_ms": median,
        "p99_ms": float(np.percentile(ns, 99)) / 1e6,
        "items_per_s": batch / (median / 1e3),
        "calls": int(len(ns)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="export folder (default: the shipped demo export)")
    parser.add_argument("--backends", help="comma-separated kinds (default: every one that can run here)")
    parser.add_argument("--subgraphs", help="comma-separated subgraph keys (default: all)")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)), help="default %(default)s")
    parser.add_argument("--threads", type=int, default=1, help="threads per backend (default 1)")
    parser.add_argument("--rounds", type=int, default=7, help="turns per backend (default 7)")
    parser.add_argument("--block", type=int, default=20, help="calls per turn (default 20)")
    parser.add_argument(
        "--warmup", type=int, default=10, help="discarded calls per backend and point (default 10)"
    )
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)

    manifest = Manifest.load(args.models or shipped_export_dir())
    batches = [int(b) for b in args.batches.split(",")]
    config = InferenceConfig(threads=args.threads, max_batch=max(batches), opt_batch=min(batches))
    kinds = args.backends.split(",") if args.backends else backend_kinds()
    classes = {}
    for kind in kinds:
        cls = backend_class(kind)
        reason = why_unavailable(cls)
        if reason:
            print(f"skipping {kind}: {reason}")
        else:
            classes[kind] = cls
    keys = args.subgraphs.split(",") if args.subgraphs else list(manifest.subgraphs)
    saved = load_inputs(manifest.root, manifest)
    print(
        f"{platform.processor() or platform.machine()}, {args.threads} thread(s); "
        f"backends {', '.join(classes)}; "
        f"{args.rounds} rounds × {args.block} calls per point"
    )
    header = f"{'subgraph':<20} {'batch':>5} " + " ".join(
        f"{k + ' ms (p99)':>24} {'items/s':>9}" for k in classes
    )
    print(header + ("   ort ÷ torch" if {"onnxruntime", "torch"} <= set(classes) else ""))
    results: list[dict[str, Any]] = []
    for key in keys:
        runners = {kind: cls(manifest, key, config) for kind, cls in classes.items()}
        try:
            for runner in runners.values():
                runner.activate()
            for batch in batches:
                feed = feed_for(manifest, key, batch, saved)
                times = run_point(runners, feed, args.rounds, args.block, args.warmup)
                row = {"subgraph": key, "batch": batch, **{k: summarise(t, batch) for k, t in times.items()}}
                if "onnxruntime" in row and "torch" in row:
                    row["speedup"] = row["torch"]["median_ms"] / row["onnxruntime"]["median_ms"]
                results.append(row)
                cells = " ".join(
                    f"{row[k]['median_ms']:>11.3f} ({row[k]['p99_ms']:>9.3f}) {row[k]['items_per_s']:>9,.0f}"
                    for k in classes
                )
                extra = f"   {row['speedup']:.2f}×" if "speedup" in row else ""
                print(f"{key:<20} {batch:>5} {cells}{extra}", flush=True)
        finally:
            for runner in runners.values():
                runner.deactivate()
    verdicts = []
    for key in TARGET_SUBGRAPHS:
        ratios = [r["speedup"] for r in results if r["subgraph"] == key and "speedup" in r]
        if ratios:
            low = min(ratios)
            verdicts.append(
                f"{key}: onnxruntime ÷ torch {low:.2f}× at worst over batches "
                f"({'met' if low >= TARGET else 'NOT met'}, target ≥ {TARGET:g}×)"
            )
    for line in verdicts:
        print(line)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "threads": args.threads,
                    "rounds": args.rounds,
                    "block": args.block,
                    "results": results,
                    "verdicts": verdicts,
                },
                indent=1,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
