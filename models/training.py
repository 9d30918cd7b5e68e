"""What both training loops share: the torch check, seeding, early stopping and curves."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np


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


def pick_device(name: str = "cpu") -> str:
    """The torch device to train on: the CPU unless CUDA is asked for and present."""
    import torch

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available on this machine; use 'cpu'")
    return name


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
