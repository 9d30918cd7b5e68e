"""Train MESNet: backbone pre-training (Eq. 8), then joint CPN + CRN (Eq. 14).

Data: synthetic subjects of ``--seed`` (default 0, ``mestream.models.synthetic``): the first
``train_subjects`` train, the next ``val_subjects`` validate; or, with ``--dataset``, the long
videos of CAS(ME)² / SAMM Long Videos (``casme_sq_long`` / ``samm_long``) read from ``--root``,
whose first subject-independent fold validates. Validation drives early stopping (which bounds
the paper preset's long schedule) and the choice of T_CPN / T_CRN. Writes
``OUT/mesnet-<preset>.pt`` with its model card (``.json``) and ``OUT/curves.png``.
``--preset``, ``--set``, ``--dataset/--root/--folds/--dataset-option`` and ``--ship`` are shared
with ``mestream train akmnet`` (`mestream.models.training`). ``--max-steps`` shortens a run (for
CI); its card says so, and such a run is never shipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mestream.engine.intervals import cpn_positions, cpn_proposals, labels
from mestream.models.checkpoint import model_card, save_checkpoint
from mestream.models.mesnet import baseline
from mestream.models.mesnet.config import PRESETS, ConfigError, MESNetConfig
from mestream.models.mesnet.data import (
    DEFAULT_CACHE,
    DataError,
    long_video,
    pretrain_clips,
    synthetic_videos,
    training_windows,
    window_flow,
)
from mestream.models.mesnet.spotting import VideoSpotter, step_counts, truth_intervals
from mestream.models.synthetic import subject_ids
from mestream.models.training import (
    EarlyStopping,
    OptionError,
    add_common_arguments,
    check_data_options,
    config_with_overrides,
    dataset_options,
    dataset_split,
    plot_curves,
    positive_float,
    positive_int,
    report_errors,
    seed_everything,
    ship_checkpoint,
)

LONG_DATASETS = ("casme_sq_long", "samm_long")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(
        parser,
        "mesnet",
        presets=PRESETS,
        config_class="MESNetConfig",
        datasets=LONG_DATASETS,
        set_example="--set optimizer=adam --set lr=1e-3 --set conv_channels=[8,16,32,64]",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="synthetic data seed (its subjects), initialisation / sampling seed, and the "
        "--dataset fold seed (default 0)",
    )
    parser.add_argument("--out", default="runs/mesnet", help="output directory (default runs/mesnet)")
    parser.add_argument(
        "--epochs", type=positive_int, default=None, help="joint-training epochs (default: the preset's)"
    )
    parser.add_argument(
        "--pretrain-epochs",
        type=positive_int,
        default=None,
        help="pre-training epochs (default: the preset's)",
    )
    parser.add_argument(
        "--train-subjects",
        type=positive_int,
        default=None,
        help="synthetic training subjects (default: the preset's)",
    )
    parser.add_argument(
        "--val-subjects",
        type=positive_int,
        default=None,
        help="synthetic validation subjects (default: the preset's)",
    )
    parser.add_argument(
        "--duration",
        type=positive_float,
        default=None,
        help="seconds per synthetic subject (default: the preset's)",
    )
    parser.add_argument(
        "--cache", default=None, help="synthetic flow cache directory (default ~/.cache/mestream/mesnet)"
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="render synthetic subjects and compute their flow without caching",
    )
    parser.add_argument(
        "--workers", type=positive_int, default=2, help="processes rendering synthetic subjects (default 2)"
    )
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--max-steps",
        type=positive_int,
        default=None,
        help="stop each phase after this many batches (CI; recorded in the card; not with --ship)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _config(args: argparse.Namespace) -> MESNetConfig:
    return config_with_overrides(
        PRESETS[args.preset],
        args.set,
        epochs=args.epochs,
        pretrain_epochs=args.pretrain_epochs,
        train_subjects=args.train_subjects,
        val_subjects=args.val_subjects,
        duration_s=args.duration,
    )


def _synthetic(
    args: argparse.Namespace, config: MESNetConfig, progress: bool
) -> tuple[list, list, dict[str, Any]]:
    """(training videos, validation videos, card data) from the synthetic subjects of ``--seed``."""
    cache = None if args.no_cache else Path(args.cache) if args.cache else DEFAULT_CACHE
    train_ids = subject_ids(args.seed, config.train_subjects)
    val_ids = subject_ids(args.seed, config.val_subjects, start=config.train_subjects)
    train = synthetic_videos(
        train_ids, config, cache=cache, workers=args.workers, progress=progress, desc="train subjects"
    )
    val = synthetic_videos(
        val_ids, config, cache=cache, workers=args.workers, progress=progress, desc="val subjects"
    )
    data = {
        "source": "synthetic",
        "seed": args.seed,
        "train_subjects": train_ids,
        "val_subjects": val_ids,
        "duration_s": config.duration_s,
        "fps": 200.0,
        "scene": "default SceneConfig (all distractors on)",
    }
    return train, val, data


def _dataset(
    args: argparse.Namespace, config: MESNetConfig, progress: bool
) -> tuple[list, list, dict[str, Any]]:
    """(training videos, validation videos, card data) from a licensed long-video dataset.

    Not cached: the frames are the user's and may change; a CAS(ME)² video reads in seconds.
    """
    train_recs, val_recs, data = dataset_split(
        args.dataset, args.root, args.folds, args.seed, **dataset_options(args)
    )

    def flow(records: list, desc: str) -> list:
        return [
            long_video(r, config, progress=progress) for r in tqdm(records, desc=desc, disable=not progress)
        ]

    return flow(train_recs, "train videos"), flow(val_recs, "val videos"), data


def run(args: argparse.Namespace) -> int:
    return report_errors("mestream train mesnet", lambda: _train(args), (ConfigError, DataError))


def _train(args: argparse.Namespace) -> int:
    import torch  # lazy: torch is in the train extra

    from mestream.models.mesnet.network import MESNet  # lazy: imports torch (train extra)

    check_data_options(args)
    if args.ship and args.max_steps is not None:
        raise OptionError(
            "--ship copies to models/weights/, which holds only complete runs: drop --max-steps "
            "(it cuts each phase short), or drop --ship"
        )
    torch.set_num_threads(args.threads)
    config = _config(args)
    seed_everything(args.seed)
    progress = not args.no_progress
    started = time.perf_counter()
    train, val, data = (_dataset if args.dataset else _synthetic)(args, config, progress)
    data_s = time.perf_counter() - started
    net = MESNet(config)
    history: dict[str, list[float]] = {}
    config, metrics = fit(
        net, train, val, config, history, seed=args.seed, progress=progress, max_steps=args.max_steps
    )
    train_s = time.perf_counter() - started
    out = Path(args.out)
    plot_curves(history, out / "curves.png", title=f"MESNet {args.preset}")
    card = model_card(
        model="mesnet",
        preset=args.preset,
        config=config,
        seed=args.seed,
        metrics=metrics,
        data={**data, "train": step_counts(train), "val": step_counts(val)},
        extra={
            "timing_s": {"data": round(data_s, 1), "total": round(train_s, 1)},
            "torch_threads": args.threads,
            "training": {"max_steps": args.max_steps},
        },
    )  # null: the preset's whole schedule
    path = save_checkpoint(
        out / f"mesnet-{args.preset}.pt",
        model="mesnet",
        preset=args.preset,
        config=config,
        state_dict=net.state_dict(),
        card=card,
    )
    micro = metrics["validation"]["megc"]["micro"]
    print(
        f"mesnet: validation micro F1 {micro['f1']:.3f} (P {micro['precision']:.3f} R {micro['recall']:.3f}) "
        f"at T_CPN {config.t_cpn} T_CRN {config.t_crn}; {train_s / 60:.1f} min; wrote {path}"
    )
    if args.ship:
        print(f"shipped {ship_checkpoint(path, 'mesnet', args.preset)}")
    return 0


def fit(
    net: Any,
    train: list,
    val: list,
    config: MESNetConfig,
    history: dict[str, list[float]],
    *,
    seed: int = 0,
    progress: bool = True,
    max_steps: int | None = None,
) -> tuple[MESNetConfig, dict[str, Any]]:
    """Both training steps, then the thresholds and the baseline chosen on the given videos;
    returns the config with the chosen T_CPN / T_CRN (also set on ``net``) and the card's metrics."""
    rng = np.random.default_rng(seed)
    pre = pretrain(net, train, val, config, rng, history, progress=progress, max_steps=max_steps)
    joint = train_joint(net, train, val, config, rng, history, progress=progress, max_steps=max_steps)
    spotter = VideoSpotter(net, val)
    t_cpn, t_crn, _ = spotter.tune()
    config = dataclasses.replace(config, t_cpn=t_cpn, t_crn=t_crn)
    net.config = config
    base_videos = train + val
    p, half, base_f1 = baseline.tune(
        base_videos, truth_intervals(base_videos), config.flow_gap, config.sample_hz
    )
    metrics = {
        "validation": spotter.score(t_cpn, t_crn),
        "pretrain_val_acc": pre,
        "joint_val_f1": joint,
        "thresholds": {"t_cpn": t_cpn, "t_crn": t_crn, "chosen_on": "validation subjects"},
        "baseline": {
            "p": p,
            "half": half,
            "train_val_micro_f1": base_f1,
            "chosen_on": "training + validation subjects",
        },
    }
    return config, metrics


def _optimizer(params: Any, config: MESNetConfig) -> Any:
    import torch  # lazy: torch is in the train extra

    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr)
    return torch.optim.SGD(params, lr=config.lr)


def _batches(n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i : i + size] for i in range(0, n, size)]


def pretrain(
    net: Any,
    train: list,
    val: list,
    config: MESNetConfig,
    rng: np.random.Generator,
    history: dict[str, list[float]],
    *,
    progress: bool = True,
    max_steps: int | None = None,
) -> float:
    """Eq. 8 on section III-A's clips; keeps the backbone of the best validation accuracy."""
    from mestream.models.mesnet.losses import pretrain_loss  # lazy: imports torch (train extra)
    from mestream.models.mesnet.network import PretrainNet

    model = PretrainNet(net)
    opt = _optimizer(model.parameters(), config)
    stop = EarlyStopping(config.patience, mode="max")
    val_clips = pretrain_clips(val, config, np.random.default_rng(12345))
    best = None
    for epoch in range(config.pretrain_epochs):
        clips = pretrain_clips(train, config, rng)
        model.train()
        losses = []
        batches = _batches(len(clips), config.batch_size, rng)[:max_steps]
        for idx in tqdm(batches, desc=f"pretrain {epoch + 1}", disable=not progress, leave=False):
            x, y = _clip_batch([clips[i] for i in idx], train)
            loss = pretrain_loss(model(x), y, net, model.head, config.l2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        if not losses:
            break  # no micro-expression in the training videos: nothing to pre-train on
        acc = _clip_accuracy(model, val_clips, val)
        history.setdefault("pretrain_loss", []).append(float(np.mean(losses)))
        history.setdefault("pretrain_val_acc", []).append(acc)
        if stop.step(acc):
            best = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if progress:
            tqdm.write(f"pretrain epoch {epoch + 1}: loss {np.mean(losses):.4f} val acc {acc:.3f}")
        if stop.should_stop:
            break
    if best is not None:
        net.load_state_dict(best)
    return float(max(stop.best, 0.0))


def _clip_batch(clips: list, videos: list) -> tuple[Any, Any]:
    import torch  # lazy: torch is in the train extra

    x = np.stack([videos[v].flow[steps].astype(np.float32) for v, steps, _ in clips])
    return torch.from_numpy(x), torch.tensor([label for _, _, label in clips])


def _clip_accuracy(model: Any, clips: list, videos: list) -> float:
    import torch  # lazy: torch is in the train extra

    model.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(clips), 32):
            x, y = _clip_batch(clips[i : i + 32], videos)
            right += int((model(x).argmax(1) == y).sum())
    return right / max(len(clips), 1)


def train_joint(
    net: Any,
    train: list,
    val: list,
    config: MESNetConfig,
    rng: np.random.Generator,
    history: dict[str, list[float]],
    *,
    progress: bool = True,
    max_steps: int | None = None,
) -> float:
    """Eq. 14 on section III-D's windows; early stopping on the validation micro F1."""
    import torch  # lazy: torch is in the train extra

    opt = _optimizer(net.parameters(), config)
    stop = EarlyStopping(config.patience, mode="max")
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    best = None
    parts: dict[str, list[float]] = {"cpn": [], "crn": []}
    check = 0
    for epoch in range(config.epochs):
        windows = training_windows(train, config, rng)
        batches = _batches(len(windows), config.batch_size, rng)[:max_steps]
        if not batches:
            break
        every = config.val_every or len(batches)
        for i, idx in enumerate(tqdm(batches, desc=f"joint {epoch + 1}", disable=not progress, leave=False)):
            net.train()
            cpn, crn = joint_step(net, [windows[j] for j in idx], train, config, gen)
            opt.zero_grad()
            (cpn + crn).backward()
            opt.step()
            parts["cpn"].append(float(cpn.detach()))
            parts["crn"].append(float(crn.detach()))
            if (i + 1) % every and i + 1 != len(batches):
                continue
            check += 1
            _, _, f1 = VideoSpotter(net, val).tune((0.5, 0.7, 0.9))
            for k in list(parts):
                history.setdefault(f"{k}_loss", []).append(float(np.mean(parts[k])))
                parts[k] = []
            history.setdefault("val_micro_f1", []).append(f1)
            if stop.step(f1):
                best = {k: v.detach().clone() for k, v in net.state_dict().items()}
            if progress:
                tqdm.write(
                    f"joint check {check} (epoch {epoch + 1}, batch {i + 1}/{len(batches)}): "
                    f"cpn {history['cpn_loss'][-1]:.4f} crn {history['crn_loss'][-1]:.4f} "
                    f"val micro F1 {f1:.3f}"
                )
            if stop.should_stop:
                break
        if stop.should_stop:
            break
    if best is not None:
        net.load_state_dict(best)
    net.eval()
    return float(max(stop.best, 0.0))


def joint_step(
    net: Any, windows: list[tuple[int, int]], videos: list, config: MESNetConfig, gen: Any
) -> tuple[Any, Any]:
    """One mini-batch of Eq. 14: the CPN loss over every position, the CRN loss over the proposals.

    Deviation: besides the CPN's own proposals (the paper's "every clip proposed by CPN"), up to
    4 positions per window whose Eq. 10 label is ME join the CRN batch, so that the CRN sees
    positive examples from the first step, before the CPN proposes anything useful.
    """
    import torch  # lazy: torch is in the train extra

    # lazy: imports torch (train extra)
    from mestream.models.mesnet.losses import cpn_loss, crn_loss, regression_targets
    from mestream.models.mesnet.network import resample_features

    n = config.window_steps
    x = torch.from_numpy(np.stack([window_flow(videos[v], s, n) for v, s in windows]))
    logits, features = net(x)
    positions = cpn_positions(config)
    all_pos = np.concatenate(positions)
    truths = [videos[v].truth("micro") - s for v, s in windows]
    cpn_labels = [
        torch.from_numpy(np.stack([labels(p, t, config.cpn_iou)[0] for t in truths])) for p in positions
    ]
    l_cpn = cpn_loss(logits, cpn_labels, net, config.l2, gen)
    with torch.no_grad():
        scores = [torch.softmax(lg, 1)[:, 1].numpy() for lg in logits]
    rows, cls, tgt = [], [], []
    for b, truth in enumerate(truths):
        props = cpn_proposals([s[b] for s in scores], config, config.t_cpn).intervals
        pos_lab = np.concatenate([lb[b].numpy() for lb in cpn_labels])
        positives = all_pos[pos_lab == 1]
        if len(positives):
            pick = np.random.default_rng(int(torch.randint(2**31, (1,), generator=gen))).permutation(
                len(positives)
            )[:4]
            props = np.concatenate([props.reshape(-1, 2), positives[pick]])
        if not len(props):
            continue
        lab, nearest = labels(props, truth, config.crn_iou)
        rows.append(resample_features(features[b], props, config.crn_steps))
        cls.append(torch.from_numpy(lab))
        matched = truth[np.maximum(nearest, 0)] if len(truth) else np.zeros_like(props)
        tgt.append(regression_targets(torch.from_numpy(props).float(), torch.from_numpy(matched).float()))
    if rows:
        logits_cr, offsets = net.crn(torch.cat(rows))
        l_crn = crn_loss(logits_cr, offsets, torch.cat(cls), torch.cat(tgt), net.crn, config.l2)
    else:
        l_crn = crn_loss(
            torch.zeros(0, 2),
            torch.zeros(0, 2),
            torch.zeros(0, dtype=torch.long),
            torch.zeros(0, 2),
            net.crn,
            config.l2,
        )
    return l_cpn, l_crn
