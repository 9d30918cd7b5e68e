"""Evaluate AKMNet (the shipped demo weights, or --checkpoint) on held-out synthetic subjects.

Every micro-expression clip of the subjects of seed S (never the seed the model trained on),
prepared as in training; writes metrics.json (acc, uf1, uar, confusion, apex figures) and
predictions.json (per clip: true and predicted class, probabilities, key frames, max-key
frame, true apex) and prints the metrics table. ``metrics.json`` names what was evaluated: seed,
subjects, duration, checkpoint, and the commits that trained and that evaluated it. A
checkpoint that cannot be used, or the training seed, is a one-line error with exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from mestream.engine.metrics import format_table
from mestream.models.akmnet.config import AKMNetConfig, ConfigError
from mestream.models.akmnet.data import SyntheticData, synthetic_clips
from mestream.models.akmnet.train import evaluate_clips, summarize
from mestream.models.checkpoint import CheckpointError, load_checkpoint, record_metrics, shipped_weights
from mestream.models.synthetic import subject_ids
from mestream.models.training import (
    check_eval_seed,
    eval_provenance,
    positive_float,
    positive_int,
    report_errors,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seed", type=int, default=1, help="subjects of this seed (default 1); not the training seed"
    )
    parser.add_argument("--out", default="runs/akmnet-eval", help="output folder (default runs/akmnet-eval)")
    parser.add_argument(
        "--checkpoint", help="checkpoint to evaluate (default: the shipped models/weights/akmnet-demo.pt)"
    )
    parser.add_argument("--subjects", type=positive_int, default=10, help="how many subjects (default 10)")
    parser.add_argument(
        "--duration", type=positive_float, help="seconds of video per subject (default: as in training)"
    )
    parser.add_argument(
        "--cache", help="clip cache folder (default ~/.cache/mestream/akmnet or $MESTREAM_CACHE)"
    )
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--record",
        action="store_true",
        help="also write the figures into the checkpoint's model card (metrics.test_seed<S>)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def load_model(path: str | Path) -> tuple[Any, Any, dict[str, Any]]:
    """(model in eval mode, its AKMNetConfig, its model card) from a checkpoint file."""
    from mestream.models.akmnet.network import build  # lazy: imports torch (train extra)

    ckpt = load_checkpoint(path, model="akmnet")
    try:
        config = AKMNetConfig.from_dict(ckpt.config)
        model = build(config)
        model.load_state_dict(ckpt.state_dict)
    except (ConfigError, RuntimeError) as exc:  # RuntimeError: weights that do not fit the config
        raise CheckpointError(f"checkpoint {path}: {exc}") from exc
    return model.eval(), config, ckpt.card


def evaluation_data(card: dict[str, Any], seed: int, duration: float | None) -> Any:
    """The training data's video settings (fps, length, rates), on the evaluation seed."""
    known = {f.name for f in dataclasses.fields(SyntheticData)}
    trained = {k: v for k, v in card.get("data", {}).items() if k in known}
    data = dataclasses.replace(SyntheticData(**trained), seed=seed)
    return dataclasses.replace(data, duration_s=duration) if duration else data


def run(args: argparse.Namespace) -> int:
    return report_errors("mestream eval akmnet", lambda: _evaluate(args), ())


def _evaluate(args: argparse.Namespace) -> int:
    import torch  # lazy: torch is in the train extra

    torch.set_num_threads(args.threads)
    path = Path(args.checkpoint) if args.checkpoint else shipped_weights("akmnet", "demo")
    model, config, card = load_model(path)
    check_eval_seed(args.seed, card, path)
    data = evaluation_data(card, args.seed, args.duration)
    ids = subject_ids(args.seed, args.subjects)
    clips = synthetic_clips(
        ids, data, config, cache=args.cache, progress=not args.no_progress, desc=f"seed {args.seed} clips"
    )
    rows = evaluate_clips(model, clips, config)
    metrics = summarize(rows, config.class_names)
    names = config.class_names
    predictions = [
        {
            "subject": r["subject"],
            "video": r["video"],
            "onset": r["onset"],
            "offset": r["offset"],
            "true_apex": r["apex"],
            "true_class": names[r["true"]],
            "predicted_class": names[r["pred"]],
            "emotion": r["emotion"],
            "probabilities": dict(zip(names, r["probabilities"])),
            "key_frames": r["key_frames"],
            "max_key_frame": r["max_key_frame"],
        }
        for r in rows
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        **metrics,
        **eval_provenance(
            seed=args.seed, subjects=ids, duration_s=data.duration_s, checkpoint=path, card=card
        ),
        "clips": len(rows),
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "predictions.json").write_text(json.dumps(predictions, indent=1) + "\n")
    print(
        format_table(
            metrics,
            title=f"AKMNet {card.get('preset', '?')} on seed {args.seed}: {len(rows)} clips, "
            f"{args.subjects} subjects",
        )
    )
    print(
        "\nmax-key frame within ±10% of the clip length of the true apex: "
        f"{metrics.get('apex_within_10pct', 0.0):.3f}"
    )
    print(f"apex error |p_gt - p| / clip length (mean): {metrics.get('apex_error', 0.0):.3f}")
    print(f"wrote {out / 'metrics.json'} and {out / 'predictions.json'}")
    if args.record:
        keep = ("acc", "uf1", "uar", "n", "confusion", "apex_within_10pct", "apex_error")
        record_metrics(
            path,
            model="akmnet",
            key=f"test_seed{args.seed}",
            figures={
                **{k: metrics[k] for k in keep if k in metrics},
                **{k: summary[k] for k in ("subjects", "duration_s", "eval_git_sha")},
            },
        )
        print(f"recorded in the model card of {path}")
    return 0
