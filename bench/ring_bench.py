"""What a frame costs the camera thread: `FrameRing.write` against the bare memcpy ceiling.

Usage::

    python -m mestream.bench.ring_bench [--frames N] [--repeat R] [--ring-mb MB] [--cpu K] [--json PATH]

The ring's budget is what it adds on top of copying the pixels, so every figure sits next to
a plain ``np.copyto`` into a pre-touched array of the same size, measured in the same run
(machines differ far more than the ring's overhead). The ring is sized like a real one
(``--ring-mb``, default 146 MB ≈ 1 s of 640×480 at 475 fps), larger than any cache, so the
copies stream to memory as they do in the engine.

Columns: ``ratio`` is write over memcpy; ``shm write`` is the same ring in shared memory
(tmpfs pages, no transparent huge pages); ``bookkeeping`` is `begin_write` + `commit` alone,
the ring's own cost per frame without the pixel copy.

The last table is what waking the readers costs the writer: `Waker.notify` with nobody
asleep (its lock-free fast path, part of every commit and so of ``bookkeeping``), and a
write timed on its own with no reader and with a reader asleep in `ReaderCursor.next`, with
how soon that reader returned.

The first-pass table shows why the ring touches its memory at start-up: writing into fresh
``np.empty`` memory faults in and zeroes every page on the camera thread. How much that costs
depends on the kernel's free-page state, so each run is a fresh process and the worst run is
shown beside the median.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import multiprocessing
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TextIO

import numpy as np

from mestream.engine.ring import FrameRing, Waker

RESOLUTIONS = {"640x480": (480, 640), "1280x1024": (1024, 1280)}
TARGET_FPS = {"640x480": 20_000, "1280x1024": 5_000}
N_SOURCES = 8  # distinct source buffers, as a camera cycles through its DMA buffers


def _rate(n: int, run: Callable[[], None]) -> float:
    """Frames per second of one timed run of ``n`` frames, with the GC out of the way."""
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        run()
        elapsed = time.perf_counter_ns() - t0
    finally:
        gc.enable()
    return n * 1e9 / elapsed


def _first_pass(kind: str, shape: tuple[int, int], capacity: int, cpu: int | None) -> dict:
    """One first pass over a fresh ring, in a fresh process (spawned: see `_cold`).

    The process matters: only the first large allocation of a process pays the full page-fault
    cost (later ones reuse what the kernel just freed), and a camera's ring is exactly that.
    """
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    sources = [np.random.default_rng(i).integers(0, 256, shape, dtype=np.uint8) for i in range(N_SOURCES)]
    t0 = time.perf_counter_ns()
    if kind == "untouched":
        slots = list(np.empty((capacity, *shape), np.uint8))
        setup_ns = time.perf_counter_ns() - t0

        def run() -> None:
            for i in range(capacity):
                np.copyto(slots[i], sources[i % N_SOURCES])

    else:
        ring = FrameRing(capacity, shape)
        setup_ns = time.perf_counter_ns() - t0

        def run() -> None:
            for i in range(capacity):
                ring.write(sources[i % N_SOURCES], i, i)

    return {"fps": _rate(capacity, run), "setup_ms": setup_ns / 1e6}


def _cold(kind: str, shape: tuple[int, int], capacity: int, cpu: int | None) -> dict:
    """Run `_first_pass` in a new spawned process and return its figures."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        this = importlib.import_module("mestream.bench.ring_bench")  # picklable under -m too
        return pool.submit(this._first_pass, kind, shape, capacity, cpu).result()


def bench_resolution(
    name: str, shape: tuple[int, int], frames: int, repeat: int, ring_mb: float, cpu: int | None = None
) -> dict:
    """Steady-state rates (interleaved, medians) and cold first-pass rates for one resolution."""
    frame_bytes = shape[0] * shape[1]
    capacity = max(2, int(ring_mb * 1e6 // frame_bytes))
    rng = np.random.default_rng(0)
    sources = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(N_SOURCES)]

    ceiling_store = np.empty((capacity, *shape), np.uint8)
    ceiling_store.fill(0)
    slots = list(ceiling_store)
    ring = FrameRing(capacity, shape)
    shm_ring = FrameRing(capacity, shape, shm_name=f"mes_bench_{os.getpid()}")

    def ceiling() -> None:
        for i in range(frames):
            np.copyto(slots[i % capacity], sources[i % N_SOURCES])

    def writes(target: FrameRing) -> Callable[[], None]:
        def run() -> None:
            write = target.write
            for i in range(frames):
                write(sources[i % N_SOURCES], i, i)

        return run

    def zero_copy() -> None:
        """Claim and publish only: the ring's bookkeeping without the pixel copy."""
        begin, commit = ring.begin_write, ring.commit
        for i in range(frames):
            begin()
            commit(i, i)

    runs = {"ceiling": ceiling, "write": writes(ring), "shm_write": writes(shm_ring), "zero_copy": zero_copy}
    try:
        for run in runs.values():
            run()  # warm-up: caches, branch predictors, every code path imported
        rates: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(repeat):  # interleaved, so drift in the machine hits every variant alike
            for key, run in runs.items():
                rates[key].append(_rate(frames, run))
    finally:
        ring.close()
        shm_ring.close()
    med = {k: statistics.median(v) for k, v in rates.items()}

    cold = {
        kind: [_cold(kind, shape, capacity, cpu) for _ in range(repeat)] for kind in ("untouched", "touched")
    }
    return {
        "resolution": name,
        "capacity": capacity,
        "ring_mb": round(capacity * frame_bytes / 1e6, 1),
        "frames": frames,
        "repeat": repeat,
        "ceiling_fps": med["ceiling"],
        "write_fps": med["write"],
        "shm_write_fps": med["shm_write"],
        "zero_copy_fps": med["zero_copy"],
        "write_vs_ceiling": med["write"] / med["ceiling"],
        "bookkeeping_us_per_frame": 1e6 / med["zero_copy"],
        "target_fps": TARGET_FPS.get(name),
        "meets_target": med["write"] >= TARGET_FPS.get(name, 0),
        "first_pass_untouched_fps": statistics.median(c["fps"] for c in cold["untouched"]),
        "first_pass_untouched_worst_fps": min(c["fps"] for c in cold["untouched"]),
        "first_pass_touched_fps": statistics.median(c["fps"] for c in cold["touched"]),
        "first_pass_touched_worst_fps": min(c["fps"] for c in cold["touched"]),
        "touch_ms": statistics.median(c["setup_ms"] for c in cold["touched"]),
        "touch_worst_ms": max(c["setup_ms"] for c in cold["touched"]),
        "all_rates": rates,
        "all_first_pass": cold,
    }


def bench_notify(calls: int = 200_000, woken: int = 2_000) -> dict:
    """What waking the readers costs the writer. `Waker.notify` in a loop with nobody asleep
    (its fast path, ns per call); then single writes of a tiny frame, each timed on its own,
    with no reader and with a reader asleep in `ReaderCursor.next` (the writer waits for it to
    fall asleep again between writes), and how long after the write began the reader woke."""
    waker = Waker()
    notify = waker.notify
    for _ in range(1000):
        notify()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            notify()
        idle_ns = (time.perf_counter_ns() - t0) / calls
    finally:
        gc.enable()

    ring = FrameRing(64, (2, 2))
    pixels = np.zeros((2, 2), np.uint8)
    clock = time.perf_counter_ns

    def timed_write(i: int) -> int:
        t0 = clock()
        ring.write(pixels, i, i)
        return clock() - t0

    alone = [timed_write(i) for i in range(woken)]
    cursor = ring.register_reader("sleeper")
    woke: list[int] = []

    def sleeper() -> None:
        while cursor.next(timeout=1.0) is not None:
            woke.append(clock())

    thread = threading.Thread(target=sleeper, daemon=True)
    thread.start()
    own = ring.waker
    with_sleeper, wake_ns = [], []
    try:
        for i in range(woken):
            deadline = time.monotonic() + 1.0
            while not (own._sleepers and len(woke) == i) and time.monotonic() < deadline:
                time.sleep(20e-6)  # until the reader is asleep again
            t0 = clock()
            ring.write(pixels, woken + i, woken + i)
            with_sleeper.append(clock() - t0)
            while len(woke) == i and time.monotonic() < deadline:
                time.sleep(0)
            if len(woke) > i:
                wake_ns.append(woke[i] - t0)
    finally:
        ring.finish()
        thread.join()
        ring.close()
    a50 = float(np.median(alone))
    s50, s99 = (float(v) for v in np.percentile(with_sleeper, [50, 99]))
    w50, w99 = (float(v) for v in np.percentile(wake_ns, [50, 99])) if wake_ns else (np.nan, np.nan)
    return {
        "idle_notify_ns": idle_ns,
        "write_alone_ns_p50": a50,
        "write_sleeper_ns_p50": s50,
        "write_sleeper_ns_p99": s99,
        "wake_latency_us_p50": w50 / 1e3,
        "wake_latency_us_p99": w99 / 1e3,
        "calls": calls,
        "woken": woken,
    }


def print_notify(n: dict, out: TextIO = sys.stdout) -> None:
    lines = [
        "",
        "waking the readers (a 2x2 frame, so the write is all bookkeeping)",
        f"  Waker.notify with nobody asleep: {n['idle_notify_ns']:.0f} ns (a loop of {n['calls']:,})",
        f"  one write, no reader: {n['write_alone_ns_p50'] / 1e3:.2f} us p50; with a reader asleep: "
        f"{n['write_sleeper_ns_p50'] / 1e3:.2f} / {n['write_sleeper_ns_p99'] / 1e3:.2f} us p50 / p99",
        f"  the reader returns from next() {n['wake_latency_us_p50']:.0f} / "
        f"{n['wake_latency_us_p99']:.0f} us p50 / p99 after the write began ({n['woken']:,} writes)",
    ]
    print("\n".join(lines), file=out)


def print_table(results: list[dict], out: TextIO = sys.stdout) -> None:
    """Two compact tables: steady-state write cost, then the cold first pass."""
    r0 = results[0]
    lines = [
        f"ring write, mono8, one writer thread: median of {r0['repeat']} runs x {r0['frames']} frames",
        f"{'res':>9} {'slots':>5} {'memcpy fps':>10} {'write fps':>9} {'ratio':>5} {'shm write':>9} "
        f"{'bookkeeping':>11} {'target':>13}",
    ]
    for r in results:
        verdict = "ok" if r["meets_target"] else "MISSED"
        lines.append(
            f"{r['resolution']:>9} {r['capacity']:>5} {r['ceiling_fps']:>10,.0f} {r['write_fps']:>9,.0f} "
            f"{r['write_vs_ceiling']:>5.2f} {r['shm_write_fps']:>9,.0f} "
            f"{r['bookkeeping_us_per_frame']:>8.2f} us "
            f"{r['target_fps']:>6,} {verdict:>6}"
        )
    lines += [
        "",
        "first pass over a fresh ring, each run in a fresh process: median / worst of the runs",
        f"{'res':>9} {'MB':>6} {'untouched np.empty fps':>22} {'touched ring fps':>17} "
        f"{'touch at start-up':>19}",
    ]
    for r in results:
        lines.append(
            f"{r['resolution']:>9} {r['ring_mb']:>6.1f} "
            f"{r['first_pass_untouched_fps']:>12,.0f} / {r['first_pass_untouched_worst_fps']:>7,.0f} "
            f"{r['first_pass_touched_fps']:>7,.0f} / {r['first_pass_touched_worst_fps']:>7,.0f} "
            f"{r['touch_ms']:>6.0f} / {r['touch_worst_ms']:>4.0f} ms"
        )
    print("\n".join(lines), file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mestream.bench.ring_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--frames", type=int, default=3000, help="frames per timed run (default 3000)")
    parser.add_argument(
        "--repeat", type=int, default=5, help="timed runs per figure; the median is shown (default 5)"
    )
    parser.add_argument("--ring-mb", type=float, default=146.0, help="ring size in MB (default 146)")
    parser.add_argument("--resolutions", nargs="+", default=list(RESOLUTIONS), choices=list(RESOLUTIONS))
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU (Linux) for a one-core figure")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.repeat < 1:
        parser.error("--frames and --repeat must be ≥ 1")
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    results = [
        bench_resolution(r, RESOLUTIONS[r], args.frames, args.repeat, args.ring_mb, args.cpu)
        for r in args.resolutions
    ]
    notify = bench_notify()
    print_table(results)
    print_notify(notify)
    if args.json:
        doc = {
            "bench": "ring_bench",
            "python": platform.python_version(),
            "numpy": np.__version__,
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "pinned_cpu": args.cpu,
            "results": results,
            "notify": notify,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
    return 0 if all(r["meets_target"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
