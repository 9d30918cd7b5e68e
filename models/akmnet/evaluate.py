"""Evaluate AKMNet (the shipped demo weights, or --checkpoint) on held-out synthetic subjects.

Every micro-expression clip of the subjects of seed S (never the seed the model trained on),
prepared as in training; writes metrics.json (acc, uf1, uar, confusion, apex figures) and
predictions.json (per clip: true and predicted class, probabilities, key frames, max-key
frame, true apex) and prints the metrics table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=1, help="subjects of this seed (default 1); not the training seed")
    parser.add_argument("--out", default="runs/akmnet-eval", help="output folder (default runs/akmnet-eval)")
    parser.add_argument("--checkpoint", help="checkpoint to evaluate (default: the shipped models/weights/akmnet-demo.pt)")
    parser.add_argument("--subjects", type=int, default=10, help="how many subjects (default 10)")
    parser.add_argument("--duration", type=float, help="seconds of video per subject (default: as in training)")
    parser.add_argument("--cache", help="clip cache folder (default ~/.cache/mestream/akmnet or $MESTREAM_CACHE)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--record", action="store_true",
                        help="also write the figures into the checkpoint's model card (metrics.test_seed<S>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def record_metrics(path: Path, key: str, figures: dict[str, Any]) -> None:
    """Add held-out figures to a checkpoint's model card (inside the file and its JSON twin)."""
    from mestream.models.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(path, model="akmnet")
    card = {**ckpt.card, "metrics": {**ckpt.card.get("metrics", {}), key: figures}}
    save_checkpoint(path, model="akmnet", preset=ckpt.preset, config=ckpt.config, state_dict=ckpt.state_dict, card=card)


def load_model(path: str | Path) -> tuple[Any, Any, dict[str, Any]]:
    """(model in eval mode, its AKMNetConfig, its model card) from a checkpoint file."""
    from mestream.models.akmnet.config import AKMNetConfig, ConfigError
    from mestream.models.akmnet.network import build
    from mestream.models.checkpoint import CheckpointError, load_checkpoint

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
    import dataclasses

    from mestream.models.akmnet.data import SyntheticData

    known = {f.name for f in dataclasses.fields(SyntheticData)}
    trained = {k: v for k, v in card.get("data", {}).items() if k in known}
    data = dataclasses.replace(SyntheticData(**trained), seed=seed)
    return dataclasses.replace(data, duration_s=duration) if duration else data


def run(args: argparse.Namespace) -> int:
    import torch

    from mestream.models.akmnet.data import synthetic_clips
    from mestream.models.akmnet.train import evaluate_clips, summarize
    from mestream.models.checkpoint import shipped_weights
    from mestream.models.metrics import format_table
    from mestream.models.synthetic import check_eval_seed, subject_ids

    torch.set_num_threads(max(1, args.threads))
    path = Path(args.checkpoint) if args.checkpoint else shipped_weights("akmnet", "demo")
    model, config, card = load_model(path)
    try:
        check_eval_seed(args.seed, card, f"mestream eval akmnet ({path})")
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    data = evaluation_data(card, args.seed, args.duration)
    clips = synthetic_clips(subject_ids(args.seed, args.subjects), data, config, cache=args.cache,
                            progress=not args.no_progress, desc=f"seed {args.seed} clips")
    rows = evaluate_clips(model, clips, config)
    metrics = summarize(rows, config.class_names)
    names = config.class_names
    predictions = [{"subject": r["subject"], "video": r["video"], "onset": r["onset"], "offset": r["offset"],
                    "true_apex": r["apex"], "true_class": names[r["true"]], "predicted_class": names[r["pred"]],
                    "emotion": r["emotion"], "probabilities": dict(zip(names, r["probabilities"])),
                    "key_frames": r["key_frames"], "max_key_frame": r["max_key_frame"]} for r in rows]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {**metrics, "checkpoint": str(path), "seed": args.seed, "subjects": args.subjects, "clips": len(rows)}
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "predictions.json").write_text(json.dumps(predictions, indent=1) + "\n")
    print(format_table(metrics, title=f"AKMNet {card.get('preset', '?')} on seed {args.seed}: {len(rows)} clips, "
                                      f"{args.subjects} subjects"))
    print(f"\nmax-key frame within ±10% of the clip length of the true apex: {metrics.get('apex_within_10pct', 0.0):.3f}")
    print(f"apex error |p_gt - p| / clip length (mean): {metrics.get('apex_error', 0.0):.3f}")
    print(f"wrote {out / 'metrics.json'} and {out / 'predictions.json'}")
    if args.record:
        keep = ("acc", "uf1", "uar", "n", "confusion", "apex_within_10pct", "apex_error")
        record_metrics(path, f"test_seed{args.seed}", {**{k: metrics[k] for k in keep if k in metrics},
                                                       "subjects": args.subjects})
        print(f"recorded in the model card of {path}")
    return 0
