"""What both training commands share: the torch check, seeding, early stopping and curves,
and the options that must behave alike in ``mestream train mesnet`` and ``mestream train akmnet``
(``--preset``, ``--set``, ``--dataset/--root/--folds/--dataset-option``, ``--ship``) with the code
behind them; and what both ``mestream eval`` commands share (the seed refusal, the provenance
written beside the figures).

A user who learnt one command should not trip over the other: the same option means the same
thing, goes through the same parser and fails with the same kind of one-line message on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mestream.models import synthetic
from mestream.models.checkpoint import CheckpointError, git_sha, shipped_weights
from mestream.models.datasets import DatasetError, kfold_splits, read_dataset
from mestream.models.datasets.splits import subjects

C = TypeVar("C")


class MissingExtra(RuntimeError):
    """A command needs an optional dependency group that is not installed."""


def require_torch(what: str) -> None:
    """Fail with the install command when torch (the ``train`` extra) is missing."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise MissingExtra(
            f"{what} needs PyTorch, from the 'train' extra: pip install 'mestream[train]' "
            f"(pins torch==2.13.0)"
        ) from exc


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch, so a preset and a seed give one result on one machine."""
    import torch  # lazy: torch is in the train extra

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class EarlyStopping:
    """Stop when the validation figure has not improved for ``patience`` checks."""

    def __init__(self, patience: int, mode: str = "max", min_delta: float = 0.0) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"EarlyStopping: mode must be 'max' or 'min', got {mode!r}")
        if patience < 1:
            raise ValueError(f"EarlyStopping: patience must be >= 1, got {patience!r}")
        self.patience, self.mode, self.min_delta = patience, mode, min_delta
        self.best = -math.inf if mode == "max" else math.inf
        self.bad = 0

    def step(self, value: float) -> bool:
        """Record one check; True when it is the best so far (save the weights then)."""
        better = (
            value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta
        )
        if better:
            self.best, self.bad = value, 0
        else:
            self.bad += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.bad >= self.patience


def plot_curves(history: dict[str, list[float]], path: str | Path, title: str = "") -> Path:
    """One PNG with a panel per curve (losses, validation figures) against the check number."""
    import matplotlib  # lazy: matplotlib is in the train extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib is in the train extra

    names = [k for k, v in history.items() if len(v)]
    fig, axes = plt.subplots(
        len(names) or 1, 1, figsize=(6, 2.2 * max(len(names), 1)), sharex=False, squeeze=False
    )
    for ax, name in zip(axes[:, 0], names):
        ax.plot(
            range(1, len(history[name]) + 1), history[name], marker="." if len(history[name]) < 50 else None
        )
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("check (epoch)")
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- shared command options


class OptionError(ValueError):
    """Command options that cannot be honoured together (or at all); the message names them."""


class OverrideError(OptionError):
    """A ``--set`` (or ``--dataset-option``) item that is not NAME=VALUE."""


class EvalError(ValueError):
    """An evaluation that must not run (the training seed, an unusable checkpoint or card)."""


DEFAULT_FOLDS = 5
DATASET_ONLY = ("root", "folds", "dataset_option", "class_map")
"""Options that mean something only with --dataset (those a command has)."""
SYNTHETIC_ONLY = ("train_subjects", "val_subjects", "duration")
"""Options that mean something only without --dataset (those a command has)."""


def positive_int(text: str) -> int:
    """argparse type of the counts (subjects, epochs, steps): a 0 would train or score on nothing
    and fail later with an unrelated traceback."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type of durations: a video of 0 s holds no frame."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def add_common_arguments(
    parser: argparse.ArgumentParser,
    model: str,
    *,
    presets: Iterable[str],
    config_class: str,
    set_example: str,
    datasets: Sequence[str],
) -> None:
    """The options both train commands take, with one wording.

    The dataset-only options default to None (or empty) so that `check_data_options` can tell
    "given" from "default" and refuse the ones the chosen data would ignore.
    """
    parser.add_argument(
        "--preset",
        default="paper",
        choices=sorted(presets),
        help="config preset (default paper: the paper's recipe, long on a CPU; "
        "--preset demo trains on 2 CPU cores in minutes)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help=f"override any {config_class} field (repeatable; VALUE is JSON or a bare string), "
        f"e.g. {set_example}",
    )
    parser.add_argument(
        "--dataset",
        choices=datasets,
        help="train on a licensed dataset you hold instead of synthetic subjects",
    )
    parser.add_argument("--root", help="the dataset's folder (with --dataset)")
    parser.add_argument(
        "--folds",
        type=positive_int,
        default=None,
        help=(
            f"with --dataset: subject-independent k-fold; the first fold validates (default {DEFAULT_FOLDS})"
        ),
    )
    parser.add_argument(
        "--dataset-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --dataset: an option of the dataset's reader (repeatable; VALUE is JSON or a "
        "bare string), e.g. annotations=codes.xlsx, frames_dir=Cropped, errors=skip, "
        'columns=\'{"subject": "Subject"}\'',
    )
    parser.add_argument(
        "--ship",
        action="store_true",
        help=f"also copy the checkpoint and its card to models/weights/{model}-<preset>.pt",
    )


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_data_options(args: argparse.Namespace) -> None:
    """Refuse an option the chosen data would silently ignore: ``--root`` without ``--dataset``
    trains on synthetic subjects, ``--train-subjects`` with it changes nothing."""
    if args.dataset:
        given = [_flag(d) for d in SYNTHETIC_ONLY if getattr(args, d, None) is not None]
        where = f"to synthetic subjects, not to --dataset {args.dataset}"
    else:
        given = [_flag(d) for d in DATASET_ONLY if getattr(args, d, None) not in (None, [])]
        where = "with --dataset (without it, training uses synthetic subjects)"
    if given:
        raise OptionError(f"{', '.join(given)} only {'applies' if len(given) == 1 else 'apply'} {where}")


def parse_overrides(items: Sequence[str], option: str = "--set", name: str = "FIELD") -> dict[str, Any]:
    """``--set`` (or ``option``) items as values: JSON where the text parses (``3``, ``[8,16]``,
    ``true``), else the bare string, so that ``--set input_mode=motion`` needs no shell-escaped quotes."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise OverrideError(f"{option} takes {name}=VALUE, got {item!r}")
        try:
            values[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            values[key.strip()] = text
    return values


def dataset_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--dataset-option`` items as keyword arguments of ``read_dataset``."""
    return parse_overrides(args.dataset_option, "--dataset-option", "KEY")


def config_with_overrides(config: C, items: Sequence[str] = (), **explicit: Any) -> C:
    """``config`` with the ``--set`` items, then the explicit options that were given (not None).

    The result is rebuilt by the config class's strict ``from_dict``, so an unknown field or a
    bad value is the config's own error naming the field, as when a model card is loaded.
    """
    changes = {**parse_overrides(items), **{k: v for k, v in explicit.items() if v is not None}}
    return type(config).from_dict({**dataclasses.asdict(config), **changes})  # type: ignore[attr-defined]


def dataset_split(
    name: str, root: str | None, folds: int | None, seed: int, **options: Any
) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """(training records, validation records, the card's data) of a licensed dataset: the first
    subject-independent fold validates, the others train. ``options`` go to ``read_dataset``
    (and to the card, so that the run can be repeated)."""
    if not root:
        raise DatasetError(f"--dataset {name} needs --root (the dataset's folder)")
    folds = DEFAULT_FOLDS if folds is None else folds
    records = read_dataset(name, root, **options)
    fold, train, val = next(kfold_splits(records, folds, seed=seed))
    data = {
        "source": "dataset",
        "dataset": name,
        "root": str(root),
        "fold": fold,
        "folds": folds,
        "train_subjects": [s for _, s in subjects(train)],
        "val_subjects": [s for _, s in subjects(val)],
    }
    if options:
        data["options"] = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
    return train, val, data


def ship_checkpoint(path: Path, model: str, preset: str) -> Path:
    """Copy a checkpoint and its card to where `mestream eval` and the runtime look by default."""
    target = shipped_weights(model, preset)
    shutil.copyfile(path, target)
    shutil.copyfile(path.with_suffix(".json"), target.with_suffix(".json"))
    return target


def report_errors(command: str, body: Callable[[], int], errors: tuple[type[Exception], ...]) -> int:
    """Run a command; the user's mistakes (a bad option, a dataset that does not match its layout,
    an unusable checkpoint, ``errors``) come out on stderr as one line naming the culprit, with
    exit code 2, as `mestream run` reports its own; not as a traceback."""
    try:
        return body()
    except (OptionError, DatasetError, CheckpointError, EvalError, *errors) as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 2


# --------------------------------------------------------------------------- shared evaluation


def check_eval_seed(seed: int, card: dict[str, Any], checkpoint: str | Path) -> None:
    """Refuse the seed whose subjects trained or validated the model, in one wording for both models."""
    try:
        synthetic.check_eval_seed(seed, card, f"checkpoint {checkpoint}")
    except ValueError as exc:
        raise EvalError(str(exc)) from None


def eval_provenance(
    *, seed: int, subjects: Sequence[int], duration_s: float, checkpoint: str | Path, card: dict[str, Any]
) -> dict[str, Any]:
    """What an evaluation ran on, for its metrics.json: the data, the weights, the code that
    trained them (from the card) and the code that scored them, which may differ."""
    return {
        "seed": int(seed),
        "subjects": len(subjects),
        "subject_ids": [int(s) for s in subjects],
        "duration_s": float(duration_s),
        "checkpoint": str(checkpoint),
        "trained_git_sha": card.get("git_sha"),
        "eval_git_sha": git_sha(),
    }
