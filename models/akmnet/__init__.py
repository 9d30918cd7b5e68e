"""AKMNet: micro-expression recognition with adaptive key-frame mining (Peng, Wang et al.).

``PRESETS`` and ``build`` are what `mestream.models.registry` needs:
``create_model("akmnet.paper", num_classes=4)``. The network modules import torch; the
config does not.
"""

from __future__ import annotations

from typing import Any

from mestream.models.akmnet.config import PRESETS, AKMNetConfig


def build(config: AKMNetConfig) -> Any:
    """A freshly initialised `AKMNet` for ``config`` (imports torch)."""
    from mestream.models.akmnet.network import build as _build  # lazy: imports torch (train extra)

    return _build(config)


def __getattr__(name: str) -> Any:
    if name in ("AKMNet", "FrameEncoder", "ClipHead", "ClipOutput", "MaskedBiGRU"):
        from mestream.models.akmnet import network  # lazy: imports torch (train extra)

        return getattr(network, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PRESETS",
    "AKMNetConfig",
    "build",
    "AKMNet",
    "FrameEncoder",
    "ClipHead",
    "ClipOutput",
    "MaskedBiGRU",
]
