"""Checkpoints that say what they are: weights plus a model card.

A card records the config, the data (seed, subjects, scene), the training seed, the git
commit, the metrics measured on held-out subjects and the torch version, so that a weight
file found on a lab disk months later can be traced and re-made. The card is written both
inside the torch file and beside it as JSON, for people and for tools without torch.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Checkpoint:
    model: str
    preset: str
    config: dict[str, Any]
    state_dict: dict[str, Any]
    card: dict[str, Any]


def git_sha(cwd: Path | None = None) -> str | None:
    """The commit of the code that trained the model, with ``-dirty`` when it had edits."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        # edits to the code count; the shipped weights themselves do not
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=normal",
                "--",
                ":(top)",
                ":(top,exclude)models/weights",
            ],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("-dirty" if dirty else "")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):  # JSON cannot hold it, and torch.load(weights_only=True) refuses it
        return str(value)
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy / torch arrays and scalars
        return _plain(value.tolist())
    return value


def model_card(
    *,
    model: str,
    preset: str,
    config: Any,
    data: dict[str, Any],
    seed: int,
    metrics: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A JSON-ready description of a trained model."""
    import torch  # lazy: torch is in the train extra

    card = {
        "format": FORMAT,
        "model": model,
        "preset": preset,
        "config": _plain(config),
        "data": _plain(data),
        "seed": int(seed),
        "metrics": _plain(metrics),
        "git_sha": git_sha(),
        "torch": str(torch.__version__),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if extra:
        card.update(_plain(extra))
    return card


def save_checkpoint(
    path: str | Path,
    *,
    model: str,
    preset: str,
    config: Any,
    state_dict: dict[str, Any],
    card: dict[str, Any],
) -> Path:
    """Write ``path`` (torch) and ``path.with_suffix('.json')`` (the card); returns ``path``."""
    import torch  # lazy: torch is in the train extra

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": FORMAT,
        "model": model,
        "preset": preset,
        "config": _plain(config),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "card": _plain(card),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(_plain(card), indent=2, sort_keys=False) + "\n")
    return path


def load_checkpoint(path: str | Path, *, model: str | None) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`, refusing one of another model
    (``model=None`` takes whichever model the file holds)."""
    import torch  # lazy: torch is in the train extra

    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged file
        # not torch's own text: it advises weights_only=False, which would run whatever the file holds
        raise CheckpointError(
            f"checkpoint {path}: cannot be read: the file is damaged or not a mestream "
            f"checkpoint ({type(exc).__name__})"
        ) from exc
    if not isinstance(blob, dict) or not {"model", "preset", "config", "state_dict", "card"} <= set(blob):
        raise CheckpointError(
            f"checkpoint {path}: not a mestream checkpoint (missing model/config/state_dict/card)"
        )
    if model is not None and blob["model"] != model:
        raise CheckpointError(f"checkpoint {path}: holds a {blob['model']!r} model, expected {model!r}")
    return Checkpoint(
        model=blob["model"],
        preset=blob["preset"],
        config=dict(blob["config"]),
        state_dict=blob["state_dict"],
        card=dict(blob["card"]),
    )


def record_metrics(path: str | Path, *, model: str, key: str, figures: dict[str, Any]) -> None:
    """Put an evaluation's figures into a checkpoint's card as ``metrics[key]`` (inside the torch
    file and in its JSON twin), so that the weights carry their held-out figures with them."""
    ckpt = load_checkpoint(path, model=model)
    card = {**ckpt.card, "metrics": {**ckpt.card.get("metrics", {}), key: figures}}
    save_checkpoint(
        path, model=model, preset=ckpt.preset, config=ckpt.config, state_dict=ckpt.state_dict, card=card
    )


def shipped_weights(model: str, preset: str = "demo") -> Path:
    """Where the weights shipped in the repository live (they may not exist for every preset)."""
    return WEIGHTS_DIR / f"{model}-{preset}.pt"
