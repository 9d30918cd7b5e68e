"""Train AKMNet on micro-expression clips (the paper's recipe by default).

SGD (momentum 0.9, weight decay 5e-4), learning rate cosine-annealed from 1e-3 to 1e-8, batch
8, 40 epochs, class-balanced resampling, resize 144 → random crop 128, loss CE + GS-MMM.
Clips come from synthetic subjects, or from a licensed short-clip dataset (``--dataset``,
first subject-independent fold validates). Validation after every epoch; the best UF1 is kept
and written as a checkpoint with its model card, beside a PNG of the curves. ``--preset``,
``--set``, ``--dataset/--root/--folds/--dataset-option`` and ``--ship`` are shared with
``mestream train mesnet`` (`mestream.models.training`).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mestream.engine.metrics import mean_apex_error, recognition_metrics, within_tolerance
from mestream.models.akmnet.config import PRESETS, AKMNetConfig, ConfigError
from mestream.models.akmnet.data import (
    DataError,
    SyntheticData,
    balanced_order,
    collate,
    dataset_clips,
    synthetic_clips,
)
from mestream.models.checkpoint import model_card, save_checkpoint
from mestream.models.datasets import get_class_map
from mestream.models.synthetic import subject_ids
from mestream.models.training import (
    OptionError,
    add_common_arguments,
    check_data_options,
    config_with_overrides,
    dataset_options,
    dataset_split,
    plot_curves,
    positive_int,
    report_errors,
    seed_everything,
    ship_checkpoint,
)

DEFAULT_OUT = "runs/akmnet"
CLIP_DATASETS = ("casme2", "samm", "smic", "casme_sq", "dfme")
DEFAULT_CLASS_MAP = "paper4"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(
        parser,
        "akmnet",
        presets=PRESETS,
        config_class="AKMNetConfig",
        datasets=CLIP_DATASETS,
        set_example="--set input_mode=magnified --set widths=[32,64,128,256]",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="data seed (its subjects) and torch seed (default 0)"
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--epochs", type=positive_int, help="override the preset's epochs")
    parser.add_argument("--lr", type=float, help="override the preset's learning rate")
    parser.add_argument("--batch-size", type=positive_int, help="override the preset's batch size")
    parser.add_argument("--train-subjects", type=positive_int, help="synthetic training subjects")
    parser.add_argument(
        "--val-subjects", type=positive_int, help="synthetic validation subjects (after the training ones)"
    )
    parser.add_argument(
        "--class-map",
        default=None,
        help=f"class map for --dataset (default {DEFAULT_CLASS_MAP}; smic3, dfme7)",
    )
    parser.add_argument(
        "--cache", help="clip cache folder (default ~/.cache/mestream/akmnet or $MESTREAM_CACHE)"
    )
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _config(args: argparse.Namespace) -> AKMNetConfig:
    return config_with_overrides(
        PRESETS[args.preset], args.set, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size
    )


def _data(args: argparse.Namespace) -> Any:
    over = {
        k: v
        for k, v in (("train_subjects", args.train_subjects), ("val_subjects", args.val_subjects))
        if v is not None
    }
    return SyntheticData(seed=args.seed, **over)


def evaluate_clips(model: Any, clips: list, config: Any, batch_size: int = 16) -> list[dict[str, Any]]:
    """Predictions of ``model`` (eval mode) on prepared clips: one dict per clip, in order, with
    class indices, probabilities, β and key frames as source frame numbers."""
    import torch  # lazy: torch is in the train extra

    model.eval()
    rows = []
    with torch.no_grad():
        for i in range(0, len(clips), batch_size):
            part = clips[i : i + batch_size]
            frames, mask, _ = collate(part, config.image_size, train=False, pad_to=config.max_frames)
            out = model(torch.from_numpy(frames), torch.from_numpy(mask))
            for b, clip in enumerate(part):
                n = len(clip.frames)
                key = out.key_mask[b, :n].numpy()
                rows.append(
                    {
                        "true": int(clip.label),
                        "pred": int(out.probabilities[b].argmax()),
                        "probabilities": out.probabilities[b].tolist(),
                        "beta": out.beta[b, :n].tolist(),
                        "key_frames": clip.source_frames[key].tolist(),
                        "max_key_frame": int(clip.source_frames[int(out.max_key[b])]),
                        "onset": clip.onset,
                        "apex": clip.apex,
                        "offset": clip.offset,
                        "subject": clip.subject,
                        "video": clip.video,
                        "emotion": clip.emotion,
                    }
                )
    return rows


def summarize(rows: list[dict[str, Any]], classes: tuple[str, ...]) -> dict[str, Any]:
    """Recognition metrics plus the apex figures of the max-key frame."""
    metrics = recognition_metrics([r["true"] for r in rows], [r["pred"] for r in rows], list(classes))
    if rows:
        true_apex = [r["apex"] - r["onset"] for r in rows]
        pred_apex = [r["max_key_frame"] - r["onset"] for r in rows]
        length = [r["offset"] - r["onset"] + 1 for r in rows]
        metrics["apex_within_10pct"] = within_tolerance(true_apex, pred_apex, length, 0.1)
        metrics["apex_error"] = mean_apex_error(true_apex, pred_apex, length)
    return metrics


def train_model(
    config: Any, train_clips: list, val_clips: list, *, seed: int = 0, progress: bool = True, log: Any = print
) -> tuple[Any, dict[str, list[float]], dict[str, Any]]:
    """Train a fresh network; returns (model with the best validation weights, history, best metrics)."""
    import torch  # lazy: torch is in the train extra

    from mestream.models.akmnet.losses import akmnet_loss  # lazy: imports torch (train extra)
    from mestream.models.akmnet.network import build

    seed_everything(seed)
    rng = np.random.default_rng(seed)
    model = build(config)
    opt = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    labels = [c.label for c in train_clips]
    epoch_size = (
        len(balanced_order(labels, np.random.default_rng(0))) if config.balance_classes else len(labels)
    )
    steps_per_epoch = -(-epoch_size // config.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=max(1, config.epochs * steps_per_epoch), eta_min=config.lr_min
    )
    history: dict[str, list[float]] = {
        k: [] for k in ("loss", "ce", "gs", "mmm", "train_acc", "val_uf1", "val_acc", "val_apex10")
    }
    best: dict[str, Any] = {"uf1": -1.0}
    best_state = copy.deepcopy(model.state_dict())
    for epoch in range(config.epochs):
        model.train()
        order = balanced_order(labels, rng) if config.balance_classes else rng.permutation(len(labels))
        sums = np.zeros(5)
        n = 0
        bar = tqdm(
            range(0, len(order), config.batch_size),
            desc=f"epoch {epoch + 1}/{config.epochs}",
            unit="batch",
            disable=not progress,
            leave=False,
        )
        for i in bar:
            part = [train_clips[j] for j in order[i : i + config.batch_size]]
            frames, mask, y = collate(part, config.image_size, train=True, rng=rng)
            frames_t, mask_t, y_t = torch.from_numpy(frames), torch.from_numpy(mask), torch.from_numpy(y)
            out = model(frames_t, mask_t)
            losses = akmnet_loss(
                out.logits,
                y_t,
                out.beta,
                out.key_mask,
                mask_t,
                lambda_gs=config.lambda_gs,
                lambda_mmm=config.lambda_mmm,
                margin=config.margin,
            )
            opt.zero_grad()
            losses.total.backward()
            opt.step()
            sched.step()
            k = len(part)
            acc = float((out.logits.argmax(1) == y_t).float().mean())
            sums += k * np.array([t.item() for t in losses] + [acc])
            n += k
            bar.set_postfix(loss=f"{sums[0] / n:.3f}", acc=f"{sums[4] / n:.2f}")
        for name, v in zip(("loss", "ce", "gs", "mmm", "train_acc"), sums / max(n, 1)):
            history[name].append(float(v))
        rows = evaluate_clips(model, val_clips, config)
        metrics = summarize(rows, config.class_names)
        history["val_uf1"].append(metrics["uf1"])
        history["val_acc"].append(metrics["acc"])
        history["val_apex10"].append(metrics.get("apex_within_10pct", 0.0))
        log(
            f"epoch {epoch + 1}/{config.epochs}: loss {history['loss'][-1]:.3f} (ce {history['ce'][-1]:.3f}) "
            f"train acc {history['train_acc'][-1]:.3f} "
            f"| val uf1 {metrics['uf1']:.3f} acc {metrics['acc']:.3f} "
            f"apex±10% {history['val_apex10'][-1]:.2f}"
        )
        if metrics["uf1"] > best["uf1"]:
            best = {**metrics, "epoch": epoch + 1}
            best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return model, history, best


def _dataset_clips(args: argparse.Namespace, config: Any) -> tuple[list, list, dict[str, Any], Any]:
    """(train clips, validation clips, card data, config) from a licensed dataset: the first
    subject-independent fold validates; the class count follows the class map."""
    class_map = args.class_map or DEFAULT_CLASS_MAP
    options = {"unmapped": "skip", **dataset_options(args)}
    if "class_map" in options:
        raise OptionError("--dataset-option class_map=...: give the class map with --class-map")
    train_recs, val_recs, data = dataset_split(
        args.dataset, args.root, args.folds, args.seed, class_map=class_map, **options
    )
    classes = tuple(get_class_map(class_map).classes)
    config = dataclasses.replace(config, num_classes=len(classes), classes=classes)
    data["class_map"] = class_map
    return dataset_clips(train_recs, config), dataset_clips(val_recs, config), data, config


def run(args: argparse.Namespace) -> int:
    return report_errors("mestream train akmnet", lambda: _train(args), (ConfigError, DataError))


def _clips(args: argparse.Namespace, config: Any, progress: bool) -> tuple[list, list, dict[str, Any], Any]:
    """(train clips, validation clips, card data, config): synthetic subjects, or --dataset."""
    if args.dataset:
        return _dataset_clips(args, config)
    data = _data(args)
    train_ids = subject_ids(data.seed, data.train_subjects)
    val_ids = subject_ids(data.seed, data.val_subjects, start=data.train_subjects)
    train_clips = synthetic_clips(
        train_ids, data, config, cache=args.cache, progress=progress, desc="training clips"
    )
    val_clips = synthetic_clips(
        val_ids, data, config, cache=args.cache, progress=progress, desc="validation clips"
    )
    card_data = {
        **dataclasses.asdict(data),
        "train_subject_ids": [train_ids[0], train_ids[-1]],
        "val_subject_ids": [val_ids[0], val_ids[-1]] if val_ids else [],
    }
    return train_clips, val_clips, card_data, config


def _train(args: argparse.Namespace) -> int:
    import torch  # lazy: torch is in the train extra

    check_data_options(args)
    torch.set_num_threads(args.threads)
    progress = not args.no_progress
    t0 = time.perf_counter()
    train_clips, val_clips, card_data, config = _clips(args, _config(args), progress)
    t_data = time.perf_counter() - t0
    print(f"{len(train_clips)} training clips, {len(val_clips)} validation clips; data {t_data:.0f} s")
    model, history, best = train_model(config, train_clips, val_clips, seed=args.seed, progress=progress)
    t_train = time.perf_counter() - t0 - t_data
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_curves(history, out / "curves.png", title=f"AKMNet {args.preset}")
    card = model_card(
        model="akmnet",
        preset=args.preset,
        config=config,
        seed=args.seed,
        data={**card_data, "train_clips": len(train_clips), "val_clips": len(val_clips)},
        metrics={
            "validation": {
                k: best.get(k) for k in ("uf1", "uar", "acc", "apex_within_10pct", "apex_error", "epoch")
            }
        },
        extra={
            "history": history,
            "train_seconds": round(t_train, 1),
            "data_seconds": round(t_data, 1),
            "torch_threads": torch.get_num_threads(),
        },
    )
    path = save_checkpoint(
        out / f"akmnet-{args.preset}.pt",
        model="akmnet",
        preset=args.preset,
        config=config,
        state_dict=model.state_dict(),
        card=card,
    )
    print(
        f"best validation UF1 {best['uf1']:.3f} (epoch {best.get('epoch')}); "
        f"training {t_train:.0f} s; wrote {path}"
    )
    if args.ship:
        print(f"shipped {ship_checkpoint(path, 'akmnet', args.preset)}")
    return 0
