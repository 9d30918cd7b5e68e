"""Evaluate MESNet (the shipped demo weights or --checkpoint) on held-out synthetic subjects.

Subjects come from ``--seed`` (default 1), never the training seed recorded in the model card.
Writes ``OUT/metrics.json``, ``OUT/predictions.json`` and ``OUT/ground_truth.json`` and prints
the MEGC pooled table, MESNet's Eq. 15 metric and the flow-magnitude baseline on the same data.
``metrics.json`` names what was evaluated: seed, subjects, duration, checkpoint, and the commits
that trained and that evaluated it. ``--record`` adds the figures to the checkpoint's card, and so
refuses ``--t-cpn`` / ``--t-crn``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from mestream.engine.metrics import format_table
from mestream.models.checkpoint import load_checkpoint, record_metrics, shipped_weights
from mestream.models.mesnet import baseline
from mestream.models.mesnet.config import ConfigError, MESNetConfig
from mestream.models.mesnet.data import DEFAULT_CACHE, synthetic_videos
from mestream.models.mesnet.spotting import (
    VideoSpotter,
    as_json,
    spotting_metrics,
    step_counts,
    truth_intervals,
)
from mestream.models.synthetic import subject_ids
from mestream.models.training import (
    EvalError,
    check_eval_seed,
    eval_provenance,
    positive_float,
    positive_int,
    report_errors,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seed", type=int, default=1, help="synthetic subject seed (default 1; not the training seed)"
    )
    parser.add_argument(
        "--out", default="runs/mesnet-eval", help="output directory (default runs/mesnet-eval)"
    )
    parser.add_argument("--checkpoint", default=None, help="checkpoint (default: the shipped mesnet-demo.pt)")
    parser.add_argument("--subjects", type=positive_int, default=10, help="number of subjects (default 10)")
    parser.add_argument(
        "--duration", type=positive_float, default=60.0, help="seconds per subject (default 60)"
    )
    parser.add_argument("--t-cpn", type=float, default=None, help="override T_CPN (default: the card's)")
    parser.add_argument("--t-crn", type=float, default=None, help="override T_CRN (default: the card's)")
    parser.add_argument(
        "--cache", default=None, help="flow cache directory (default ~/.cache/mestream/mesnet)"
    )
    parser.add_argument("--no-cache", action="store_true", help="do not cache rendered flow")
    parser.add_argument(
        "--workers", type=positive_int, default=2, help="processes rendering subjects (default 2)"
    )
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--record",
        action="store_true",
        help="also write these metrics into the checkpoint's model card (metrics.test_seed<S>); "
        "not with --t-cpn / --t-crn",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def load(path: str | Path | None) -> tuple[Any, dict[str, Any]]:
    """(network in eval mode, model card) of a checkpoint, the shipped demo weights by default."""
    from mestream.models.mesnet.network import MESNet  # lazy: imports torch (train extra)

    path = path or shipped_weights("mesnet", "demo")
    ckpt = load_checkpoint(path, model="mesnet")
    try:
        net = MESNet(MESNetConfig.from_dict(ckpt.config))
        net.load_state_dict(ckpt.state_dict)
    except (ConfigError, RuntimeError) as exc:  # RuntimeError: weights of another shape than the config's
        raise EvalError(f"checkpoint {path}: {exc}") from None
    return net.eval(), ckpt.card


def check_record(args: argparse.Namespace) -> None:
    """Refuse --record with hand-picked thresholds: the card's figures are at the thresholds
    chosen on the validation subjects, and a reader of the card cannot tell otherwise."""
    if args.record and (args.t_cpn is not None or args.t_crn is not None):
        raise EvalError(
            "--record writes into the model card, whose figures are at the card's own T_CPN / T_CRN: "
            "drop --t-cpn / --t-crn, or drop --record"
        )


def run(args: argparse.Namespace) -> int:
    return report_errors("mestream eval mesnet", lambda: _evaluate(args), ())


def _evaluate(args: argparse.Namespace) -> int:
    import torch  # lazy: torch is in the train extra

    torch.set_num_threads(args.threads)
    check_record(args)
    path = Path(args.checkpoint) if args.checkpoint else shipped_weights("mesnet", "demo")
    net, card = load(path)
    check_eval_seed(args.seed, card, path)
    base = card.get("metrics", {}).get("baseline", {})
    p, half = base.get("p"), base.get("half")
    if p is None or half is None:
        raise EvalError(
            f"checkpoint {path}: the model card has no baseline threshold (metrics.baseline.p / half): "
            "retrain"
        )
    config = net.config
    t_cpn = config.t_cpn if args.t_cpn is None else args.t_cpn
    t_crn = config.t_crn if args.t_crn is None else args.t_crn
    cache = None if args.no_cache else Path(args.cache) if args.cache else DEFAULT_CACHE
    started = time.perf_counter()
    ids = subject_ids(args.seed, args.subjects)
    videos = synthetic_videos(
        ids,
        config,
        cache=cache,
        workers=args.workers,
        progress=not args.no_progress,
        desc=f"seed {args.seed} subjects",
        duration_s=args.duration,
    )
    truth = truth_intervals(videos)
    spotted = time.perf_counter()
    pred = VideoSpotter(net, videos).predict(t_cpn, t_crn)
    spot_s = time.perf_counter() - spotted
    metrics = spotting_metrics(pred, truth)
    base_pred = baseline.predict(videos, p, config.flow_gap, config.sample_hz, half=half)
    base_metrics = spotting_metrics(base_pred, truth)
    result = {
        **eval_provenance(seed=args.seed, subjects=ids, duration_s=args.duration, checkpoint=path, card=card),
        "data": step_counts(videos),
        "thresholds": {"t_cpn": t_cpn, "t_crn": t_crn, "t_nms": config.t_nms},
        "mesnet": metrics,
        "baseline": {
            "method": "flow magnitude peaks, T = mean + p(max - mean), peak ± half steps",
            "p": p,
            "half": half,
            **base_metrics,
        },
        "timing_s": {"spotting": round(spot_s, 2), "total": round(time.perf_counter() - started, 2)},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "predictions.json").write_text(json.dumps(as_json(pred, True), indent=1) + "\n")
    (out / "ground_truth.json").write_text(json.dumps(as_json(truth, False), indent=1) + "\n")
    print(
        format_table(
            metrics["megc"],
            title=f"MESNet, MEGC pooled (IoU >= 0.5), seed {args.seed}, {len(videos)} subjects",
        )
    )
    print()
    print(format_table(metrics["mesnet_eq15"], title="MESNet, Eq. 15 (T_eval 0.5, micro)"))
    print()
    print(
        format_table(
            base_metrics["megc"], title=f"Baseline (flow magnitude, p = {p}, ±{half} steps), MEGC pooled"
        )
    )
    print(
        f"\nmicro F1: MESNet {metrics['megc']['micro']['f1']:.3f} "
        f"vs baseline {base_metrics['megc']['micro']['f1']:.3f}"
        f"; wrote {out}/metrics.json, predictions.json, ground_truth.json"
    )
    if args.record:
        record_metrics(
            path,
            model="mesnet",
            key=f"test_seed{args.seed}",
            figures={
                k: result[k]
                for k in (
                    "subjects",
                    "duration_s",
                    "eval_git_sha",
                    "data",
                    "thresholds",
                    "mesnet",
                    "baseline",
                )
            },
        )
        print(f"recorded in the model card of {path}")
    return 0
