"""`mestream bench`: end-to-end latency and throughput of the engine, with a fixed method,
provenance, a capacity search and the naive offline baseline measured in the same run.

Which points run: by default one axis at a time around the headline point (full pipeline,
500 fps, 640×480, one camera, ONNX Runtime): every pipeline at every frame rate, then every
resolution, camera count and available backend for the full pipeline. ``--grid`` runs the
full cross product instead. ``--quick`` is the short preset (one repetition of a few seconds
per point, about a minute and a half in all). Every figure and how it is measured:
`mestream.bench.measure`; the files written: `mestream.bench.report`.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import shlex
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mestream.bench import report
from mestream.bench.baseline import Stream, run_baseline
from mestream.bench.measure import KEEP_UP, PIPELINES, Method, Point, capacity, measure_point, run_once
from mestream.bench.provenance import provenance
from mestream.bench.report import BEGIN, END
from mestream.bench.stats import median_of, percentiles
from mestream.cameras.base import parse_resolution
from mestream.cameras.synthetic.camera import MAX_FPS
from mestream.engine.backends import backend_class, backend_kinds, why_unavailable
from mestream.engine.config import MAX_CAMERAS, SpotConfig

RESULTS_MD = Path(__file__).resolve().with_name("RESULTS.md")
FULL = Method()
QUICK = Method(warmup_s=1.0, seconds=4.0, min_frames=0, repetitions=1)
FRAME_LATENCY = (
    "capture (the frame's host timestamp) → the spot stage decided it: a window ran the heads over its "
    "40 Hz sample outside the settle margin and published what it found (ingest only: → the first "
    "reader took it from the ring)"
)
EVENT_LATENCY = "the offset frame's capture → the event's publication, as carried by each event"


@dataclass(frozen=True)
class Plan:
    """The points, capacity searches and baseline one invocation runs."""

    head: Point  # the headline point the axes vary around; the baseline runs at its rate and size
    points: tuple[Point, ...]
    capacity: tuple[Point, ...]
    capacity_seconds: float
    capacity_probes: int
    baseline: bool


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        metavar="DIR",
        default="bench-results",
        help="folder for results.json, the CSVs and the PNGs (default: %(default)s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short preset: the three pipelines at the headline point on onnxruntime, one repetition "
        "of 4 s (no frame minimum), a 4-probe capacity search of 2 s probes and a short baseline "
        "comparison (under 2 minutes)",
    )
    parser.add_argument(
        "--update-results",
        action="store_true",
        help="regenerate the suite's section of the results page (--results-md) and copy the figures "
        "to a figures/ folder beside it; not after an interrupted run",
    )
    parser.add_argument(
        "--results-md",
        metavar="FILE",
        default=str(RESULTS_MD),
        help="the results page --update-results writes (default: this install's %(default)s)",
    )
    parser.add_argument(
        "--pipelines", metavar="LIST", help=f"comma-separated, from {', '.join(PIPELINES)} (default: all)"
    )
    parser.add_argument("--fps", metavar="LIST", help="frame rates (default 200,300,500; --quick 500)")
    parser.add_argument(
        "--resolutions",
        metavar="LIST",
        help="WxH sizes (default 640x480,1024x768,1280x1024; --quick 640x480)",
    )
    parser.add_argument("--cameras", metavar="LIST", help="camera counts (default 1,2,4; --quick 1)")
    parser.add_argument("--backends", metavar="LIST", help="backends (default: every one available here)")
    parser.add_argument("--grid", action="store_true", help="every combination, not one axis at a time")
    parser.add_argument(
        "--seconds", type=float, metavar="S", help="measured seconds per repetition (default 20; --quick 4)"
    )
    parser.add_argument(
        "--warmup", type=float, metavar="S", help="warm-up seconds discarded (default 2; --quick 1)"
    )
    parser.add_argument(
        "--min-frames", type=int, metavar="N", help="at least this many frames per repetition (default 10000)"
    )
    parser.add_argument(
        "--repetitions", type=int, metavar="N", help="repetitions per point (default 3; --quick 1)"
    )
    parser.add_argument(
        "--p99-bound-ms", type=float, metavar="MS", help="capacity: frame p99 bound (default 500)"
    )
    parser.add_argument("--seed", type=int, metavar="S", help="synthetic camera seed (default 1)")
    parser.add_argument("--threads", type=int, metavar="N", help="inference threads per stage (default 1)")
    parser.add_argument("--no-capacity", action="store_true", help="skip the capacity search")
    parser.add_argument("--no-baseline", action="store_true", help="skip the naive baseline comparison")


class BenchError(ValueError):
    """A flag the bench cannot run with; the message names it (exit code 2, before anything runs)."""


def _list(text: str | None, default: tuple[Any, ...], kind: Any, flag: str) -> tuple[Any, ...]:
    if text is None:
        return default
    try:
        items = tuple(kind(item.strip()) for item in text.split(",") if item.strip())
    except ValueError:
        raise BenchError(f"{flag}: cannot read {text!r} as a comma-separated list") from None
    if not items:
        raise BenchError(f"{flag}: the list is empty")
    return tuple(dict.fromkeys(items))


def method_from_args(args: argparse.Namespace) -> Method:
    base = QUICK if args.quick else FULL
    given = {
        "warmup_s": args.warmup,
        "seconds": args.seconds,
        "min_frames": args.min_frames,
        "repetitions": args.repetitions,
        "p99_bound_ms": args.p99_bound_ms,
        "seed": args.seed,
        "threads": args.threads,
    }
    method = replace(base, **{k: v for k, v in given.items() if v is not None})
    for flag, ok in (
        ("--seconds", method.seconds > 0),
        ("--warmup", method.warmup_s >= 0),
        ("--repetitions", method.repetitions >= 1),
        ("--min-frames", method.min_frames >= 0),
        ("--p99-bound-ms", method.p99_bound_ms > 0),
        ("--seed", method.seed >= 0),
        ("--threads", method.threads >= 1),
    ):
        if not ok:
            raise BenchError(
                f"{flag}: {getattr(args, flag[2:].replace('-', '_'))} is out of range "
                f"(seconds and the bound > 0; repetitions and threads ≥ 1; the rest ≥ 0)"
            )
    return method


def _check_axes(rates: tuple[float, ...], sizes: tuple[str, ...], counts: tuple[int, ...]) -> None:
    """What `SourceConfig` and the synthetic camera would refuse mid-run, refused here instead."""
    for fps in rates:
        if not 40.0 <= fps <= MAX_FPS:
            raise BenchError(
                f"--fps: {fps:g} is outside 40 (the spotting rate) to {MAX_FPS:g} (the synthetic camera)"
            )
    for size in sizes:
        try:
            parse_resolution(size)
        except ValueError as exc:
            raise BenchError(f"--resolutions: {exc}") from None
    for n in counts:
        if not 1 <= n <= MAX_CAMERAS:
            raise BenchError(f"--cameras: {n} is outside 1 to {MAX_CAMERAS}")


def _check_results_md(path: Path) -> None:
    """``--update-results``: a page that cannot be updated fails now, not after the run."""
    if path.is_dir() or not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise BenchError(f"--results-md: cannot write {path}")
    figures = path.parent / "figures"
    if figures.exists() and not figures.is_dir():
        raise BenchError(f"--results-md: the figures go to {figures}, which is a file")
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if (BEGIN in text) != (END in text):
            raise BenchError(
                f"--results-md: {path} has one of the suite's markers without the other; "
                f"restore the pair or remove both"
            )


def _pixels(resolution: str) -> int:
    width, height = parse_resolution(resolution)
    return width * height


def available_backends() -> tuple[list[str], list[dict[str, str]]]:
    """Backends that can run here, and why each other one cannot."""
    usable, skipped = [], []
    for kind in backend_kinds():
        reason = why_unavailable(backend_class(kind))
        if reason is None:
            usable.append(kind)
        else:
            skipped.append({"what": f"backend {kind}", "why": reason})
    return usable, skipped


def plan_from_args(args: argparse.Namespace, method: Method) -> tuple[Plan, list[dict[str, str]]]:
    quick = args.quick
    pipelines = _list(args.pipelines, PIPELINES, str, "--pipelines")
    unknown = [p for p in pipelines if p not in PIPELINES]
    if unknown:
        raise BenchError(f"--pipelines: unknown {', '.join(unknown)}; known: {', '.join(PIPELINES)}")
    rates = _list(args.fps, (500.0,) if quick else (200.0, 300.0, 500.0), float, "--fps")
    sizes = _list(
        args.resolutions,
        ("640x480",) if quick else ("640x480", "1024x768", "1280x1024"),
        str,
        "--resolutions",
    )
    counts = _list(args.cameras, (1,) if quick else (1, 2, 4), int, "--cameras")
    usable, skipped = available_backends()
    backends = _list(args.backends, tuple(usable) if not quick else ("onnxruntime",), str, "--backends")
    for kind in backends:
        if kind not in usable:
            raise BenchError(
                f"--backends: {kind} cannot run here"
                + "".join(f" ({s['why']})" for s in skipped if s["what"] == f"backend {kind}")
            )
    if quick and not args.backends:
        skipped += [
            {"what": f"backend {kind}", "why": "--quick runs onnxruntime only"}
            for kind in usable
            if kind != "onnxruntime"
        ]
    _check_axes(rates, sizes, counts)
    # the headline: the fullest pipeline, at the highest rate, the smallest frame, the fewest cameras
    head = Point(
        pipeline=max(pipelines, key=PIPELINES.index),
        fps=max(rates),
        resolution=min(sizes, key=lambda r: _pixels(r)),
        cameras=min(counts),
        backend="onnxruntime" if "onnxruntime" in backends else backends[0],
    )
    if args.grid:
        points = [
            Point(p, f, r, c, b)
            for p, f, r, c, b in itertools.product(pipelines, rates, sizes, counts, backends)
        ]
    else:
        points = [replace(head, pipeline=p, fps=f) for p in pipelines for f in rates]
        points += [replace(head, resolution=r) for r in sizes]
        points += [replace(head, cameras=c) for c in counts]
        points += [replace(head, backend=b) for b in backends]
    points = list(dict.fromkeys(points))  # the axes share the headline point: run it once
    spots = head.pipeline != "ingest"  # no search or comparison without spotting
    baseline = not args.no_baseline and spots
    if baseline and importlib.util.find_spec("torch") is None:  # runtime-only install: the rest runs
        from mestream.bench.baseline import TORCH_HINT

        baseline = False
        skipped.append({"what": "naive baseline comparison", "why": TORCH_HINT})
    searches: tuple[Point, ...] = ()
    if not args.no_capacity and spots:
        searches = (head,) if quick else tuple(replace(head, cameras=c) for c in sorted(counts))
    plan = Plan(
        head=head,
        points=tuple(points),
        capacity=searches,
        capacity_seconds=method.seconds if not quick else max(2.0, method.seconds / 2),
        capacity_probes=4 if quick else 8,
        baseline=baseline,
    )
    return plan, skipped


def run_baseline_comparison(method: Method, head: Point, progress: Any) -> dict[str, Any]:
    """The same seeded stream through mestream (spotting, paced and unpaced) and through the
    naive baseline (`mestream.bench.baseline`), in this run; ratios > 1 favour mestream. The
    paced rows (the latency ratios) are medians over ``method.repetitions``; the unpaced ones
    are single runs. A side that fails or is interrupted leaves the rows measured before it,
    and says why."""
    seconds = method.measured_seconds(head.fps, 1)
    stream = Stream(
        seed=method.seed,
        fps=head.fps,
        resolution=head.resolution,
        seconds=seconds,
        warmup_s=method.warmup_s,
        cooldown_s=method.cooldown_s,
        micro_per_min=method.micro_per_min,
    )
    out: dict[str, Any] = {
        "stream": {"kind": "synthetic", **asdict(stream)},
        "rows": [],
        "ratios": {},
        "error": "",
        "interrupted": False,
    }
    point = replace(head, pipeline="spot", cameras=1)
    hop_ms = SpotConfig().hop_ms  # mestream's default: both systems run the same windows

    def ours(paced: bool) -> dict[str, Any]:
        rep, _ = run_once(replace(point, paced=paced), method, seconds)
        if rep["interrupted"]:
            raise KeyboardInterrupt
        spot = rep["event_latency_ms"].get("spot") or percentiles([])
        return {
            "system": "mestream",
            "mode": "paced" if paced else "unpaced",
            "hop_ms": hop_ms,
            "throughput_fps": rep["throughput_fps"],
            "frame_latency_ms": rep["frame_latency_ms"],
            "event_latency_ms": spot,
            "events": spot["n"],
            "windows": None,
            "skipped_windows": None,
            "dropped_frames": rep["dropped_frames"],
            "wall_s": rep["wall_s"],
            "cpu_percent": rep["cpu_percent"],
            "error": rep["error"],
        }

    def theirs(paced: bool, hop: float | None) -> dict[str, Any]:
        row = run_baseline(stream, hop_ms=hop, paced=paced)
        row.pop("frame_latencies_ms", None)
        return row

    runs = [
        ("mestream paced", lambda: ours(True), method.repetitions),
        ("mestream unpaced", lambda: ours(False), 1),
        ("naive paced, 100 ms hop", lambda: theirs(True, hop_ms), method.repetitions),
        ("naive unpaced, 100 ms hop", lambda: theirs(False, hop_ms), 1),
        ("naive unpaced, the paper's stride", lambda: theirs(False, None), 1),
    ]
    try:
        for label, once, times in runs:
            progress.set_postfix_str(f"baseline: {label}")
            out["rows"].append(_median_row([once() for _ in range(times)]))
    except KeyboardInterrupt:
        out["interrupted"], out["error"] = True, "interrupted"
    except Exception as exc:  # noqa: BLE001 (BaselineUnavailable names the extra to install)
        out["error"] = (
            str(exc) if type(exc).__name__ == "BaselineUnavailable" else f"{type(exc).__name__}: {exc}"
        )
    out["ratios"] = ratios(out["rows"], hop_ms)
    return out


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from repeated runs: latency figures the median over the runs (max: the worst),
    counts and rates the median; ``runs`` says how many."""
    out = dict(rows[0])
    for key, value in rows[0].items():
        if isinstance(value, dict) and "n" in value:
            out[key] = median_of([r[key] for r in rows])
        elif (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and key not in ("hop_ms", "hop_steps")
        ):
            values = [r[key] for r in rows if r.get(key) is not None]
            out[key] = round(float(np.median(values)), 3) if values else None
    out["runs"] = len(rows)
    out["error"] = "; ".join(r.get("error", "") for r in rows if r.get("error"))
    return out


def ratios(rows: list[dict[str, Any]], hop_ms: float) -> dict[str, float | None]:
    """mestream over the baseline at the same hop: throughput (unpaced) and latency (paced)."""

    def row(system: str, mode: str) -> dict[str, Any] | None:
        return next(
            (r for r in rows if r["system"] == system and r["mode"] == mode and r["hop_ms"] == hop_ms), None
        )

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a is not None and b else None

    ours_u, theirs_u = row("mestream", "unpaced"), row("baseline", "unpaced")
    ours_p, theirs_p = row("mestream", "paced"), row("baseline", "paced")
    out: dict[str, float | None] = {
        "throughput": ratio(
            ours_u["throughput_fps"] if ours_u else None, theirs_u["throughput_fps"] if theirs_u else None
        )
    }
    for kind in ("frame", "event"):
        for q in ("p50", "p99"):
            ours = ((ours_p or {}).get(f"{kind}_latency_ms") or {}).get(q)
            theirs = ((theirs_p or {}).get(f"{kind}_latency_ms") or {}).get(q)
            out[f"{kind}_latency_{q}"] = ratio(theirs, ours)
    return out


def run(args: argparse.Namespace) -> int:
    try:
        method = method_from_args(args)
        plan, skipped = plan_from_args(args, method)
        if args.update_results:
            _check_results_md(Path(args.results_md))
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
    except BenchError as exc:
        print(f"mestream bench: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"mestream bench: --out {args.out}: cannot create the folder: {exc.strerror}", file=sys.stderr)
        return 2
    results: dict[str, Any] = {
        "schema": 1,
        "command": shlex.join(getattr(args, "command_line", None) or ["mestream", "bench"]),
        "quick": bool(args.quick),
        "headline": plan.head.id,
        "provenance": provenance(),
        "method": {
            **asdict(method),
            "keep_up": KEEP_UP,
            "frame_latency": FRAME_LATENCY,
            "event_latency": EVENT_LATENCY,
        },
        "points": [],
        "capacity": [],
        "baseline": None,
        "skipped": skipped,
    }
    missing = report.figures_unavailable()
    if missing:
        skipped.append({"what": "figures", "why": missing})
    report.remove_outputs(out)  # a results folder never mixes this run's files with an older run's
    interrupted = _measure(plan, method, results, lambda: report.write_json(results, out))
    written = report.write_all(results, out)
    failures = _failures(results)
    if args.update_results and interrupted:
        print(
            f"mestream bench: --results-md {args.results_md}: not updated from an interrupted run",
            file=sys.stderr,
        )
    elif args.update_results:
        try:
            report.update_results_md(
                results, Path(args.results_md), [p for p in written if p.suffix == ".png"]
            )
            written.append(Path(args.results_md))
        except (OSError, ValueError) as exc:  # the results folder is written: nothing measured is lost
            failures.append(f"--results-md {args.results_md}: not updated: {exc}")
    print(_headline(results))
    for path in written:
        print(f"wrote {path}")
    for skip in results["skipped"]:
        if not skip["what"].startswith("backend "):  # backends that cannot run here are listed in the results
            print(f"skipped {skip['what']}: {skip['why']}")
    for failure in failures:
        print(f"mestream bench: {failure}", file=sys.stderr)
    if interrupted:
        print(
            "mestream bench: interrupted; the files hold what was measured before the stop", file=sys.stderr
        )
        return 130
    return 1 if failures else 0


def _failures(results: dict[str, Any]) -> list[str]:
    out = [f"point {p['id']}: {p['error']}" for p in results["points"] if p["error"]]
    out += [
        f"capacity {c['pipeline']} {c['cameras']}cam: probe at {p['fps']:g} fps: {p['error']}"
        for c in results["capacity"]
        for p in c["probes"]
        if p["error"] and p["error"] != "interrupted"
    ]
    base = results.get("baseline")
    if base and base["error"] and not base["interrupted"]:
        out.append(f"baseline: {base['error']}")
    return out


def _measure(plan: Plan, method: Method, results: dict[str, Any], save: Any) -> bool:
    """Every step of the plan into ``results``, in order, saving after each (a crash or a kill
    keeps what was measured); True when Ctrl-C ended it early."""
    steps = len(plan.points) + len(plan.capacity) + int(plan.baseline)
    with tqdm(total=steps, unit="step", desc="mestream bench") as bar:
        try:
            for point in plan.points:
                bar.set_postfix_str(point.id)
                results["points"].append(measure_point(point, method))
                save()
                bar.update()
                if results["points"][-1]["interrupted"]:
                    return True
            for point in plan.capacity:
                results["capacity"].append(
                    capacity(
                        point,
                        method,
                        seconds=plan.capacity_seconds,
                        max_probes=plan.capacity_probes,
                        progress=bar,
                    )
                )
                save()
                bar.update()
                if results["capacity"][-1]["interrupted"]:
                    return True
            if plan.baseline:
                results["baseline"] = run_baseline_comparison(method, plan.head, bar)
                bar.update()
                return bool(results["baseline"]["interrupted"])
        except KeyboardInterrupt:  # outside a run (loading models, the baseline): stop, keep the rest
            return True
    return False


def _headline(results: dict[str, Any]) -> str:
    lines = []
    for p in results["points"]:
        f = p["frame_latency_ms"]
        lines.append(
            f"{p['id']}: {p['throughput_fps'] or 0:,.0f} frames/s, "
            f"frame latency p50 {f['p50']} / p99 {f['p99']} ms, "
            f"dropped {p['dropped_frames']}"
        )
    for c in results["capacity"]:
        found = "none" if c["capacity_fps"] is None else f"{c['capacity_fps']:,.0f} fps per camera"
        if c["capped"]:
            found = f"≥ {c['capacity_fps']:,.0f} fps per camera (search limit)"
        note = "" if c["capped"] or c["converged"] else " (bracket > 10 %)"
        lines.append(f"capacity {c['pipeline']} {c['resolution']} {c['cameras']}cam: {found}{note}")
    base = results.get("baseline")
    if base:
        shown = ", ".join(
            f"{k.replace('_', ' ')} {'–' if v is None else f'{v:.2f}x'}" for k, v in base["ratios"].items()
        )
        lines.append(
            f"mestream against the naive baseline (> 1 favours mestream): {shown}"
            + (f" ({base['error']})" if base["error"] else "")
        )
    return "\n".join(lines)
