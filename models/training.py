"""What both training commands share: the torch check, seeding, early stopping and curves,
and the options that must behave alike in ``mestream train mesnet`` and ``mestream train akmnet``
(``--preset``, ``--set``, ``--dataset/--root/--folds``, ``--ship``) with the code behind them.

A user who learnt one train command should not trip over the other: the same option means the
same thing, goes through the same parser and fails with the same kind of one-line message.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import numpy as np

C = TypeVar("C")


class MissingExtra(RuntimeError):
    """A command needs an optional dependency group that is not installed."""


def require_torch(what: str) -> None:
    """Fail with the install command when torch (the ``train`` extra) is missing."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise MissingExtra(f"{what} needs PyTorch, from the 'train' extra: pip install 'mestream[train]' "
                           f"(pins torch==2.13.0)") from exc


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch, so a preset and a seed give one result on one machine."""
    import torch

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
        better = value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k, v in history.items() if len(v)]
    fig, axes = plt.subplots(len(names) or 1, 1, figsize=(6, 2.2 * max(len(names), 1)), sharex=False, squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        ax.plot(range(1, len(history[name]) + 1), history[name], marker="." if len(history[name]) < 50 else None)
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

class OverrideError(ValueError):
    """A ``--set`` item that is not FIELD=VALUE."""


def add_common_arguments(parser: argparse.ArgumentParser, model: str, *, presets: Iterable[str],
                         config_class: str, set_example: str, datasets: Sequence[str]) -> None:
    """The options both train commands take, with one wording."""
    parser.add_argument("--preset", default="paper", choices=sorted(presets),
                        help="config preset (default paper: the paper's recipe, long on a CPU; "
                             "--preset demo trains on 2 CPU cores in minutes)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help=f"override any {config_class} field (repeatable; VALUE is JSON or a bare string), "
                             f"e.g. {set_example}")
    parser.add_argument("--dataset", choices=datasets,
                        help="train on a licensed dataset you hold instead of synthetic subjects")
    parser.add_argument("--root", help="the dataset's folder (with --dataset)")
    parser.add_argument("--folds", type=int, default=5,
                        help="with --dataset: subject-independent k-fold; the first fold validates (default 5)")
    parser.add_argument("--ship", action="store_true",
                        help=f"also copy the checkpoint and its card to models/weights/{model}-<preset>.pt")


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``--set`` items as field values: JSON where the text parses (``3``, ``[8,16]``, ``true``),
    else the bare string, so that ``--set input_mode=motion`` needs no shell-escaped quotes."""
    values: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise OverrideError(f"--set takes FIELD=VALUE, got {item!r}")
        try:
            values[name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            values[name.strip()] = text
    return values


def config_with_overrides(config: C, items: Sequence[str] = (), **explicit: Any) -> C:
    """``config`` with the ``--set`` items, then the explicit options that were given (not None).

    The result is rebuilt by the config class's strict ``from_dict``, so an unknown field or a
    bad value is the config's own error naming the field, as when a model card is loaded.
    """
    changes = {**parse_overrides(items), **{k: v for k, v in explicit.items() if v is not None}}
    return type(config).from_dict({**dataclasses.asdict(config), **changes})  # type: ignore[attr-defined]


def dataset_split(name: str, root: str | None, folds: int, seed: int,
                  **options: Any) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """(training records, validation records, the card's data) of a licensed dataset: the first
    subject-independent fold validates, the others train. ``options`` go to ``read_dataset``."""
    from mestream.models.datasets import DatasetError, kfold_splits, read_dataset
    from mestream.models.datasets.splits import subjects

    if not root:
        raise DatasetError(f"--dataset {name} needs --root (the dataset's folder)")
    records = read_dataset(name, root, **options)
    fold, train, val = next(kfold_splits(records, folds, seed=seed))
    data = {"source": "dataset", "dataset": name, "root": str(root), "fold": fold, "folds": folds,
            "train_subjects": [s for _, s in subjects(train)], "val_subjects": [s for _, s in subjects(val)]}
    return train, val, data


def ship_checkpoint(path: Path, model: str, preset: str) -> Path:
    """Copy a checkpoint and its card to where `mestream eval` and the runtime look by default."""
    import shutil

    from mestream.models.checkpoint import shipped_weights

    target = shipped_weights(model, preset)
    shutil.copyfile(path, target)
    shutil.copyfile(path.with_suffix(".json"), target.with_suffix(".json"))
    return target


def report_errors(command: str, body: Callable[[], int], errors: tuple[type[Exception], ...]) -> int:
    """Run a command; the user's mistakes (a bad option, a dataset that does not match its layout,
    ``errors``) come out as one line naming the culprit and exit code 2, not as a traceback."""
    from mestream.models.datasets import DatasetError

    try:
        return body()
    except (OverrideError, DatasetError, *errors) as exc:
        print(f"{command}: {exc}")
        return 2
