"""MESNet, the micro-expression spotting network (Wang et al., paper 002), in PyTorch.

``PRESETS`` and `build` are what `mestream.models.registry` uses; the network classes import
torch, so they are loaded on first access and ``import mestream.models.mesnet`` stays light.
"""

from __future__ import annotations

from typing import Any

from mestream.models.mesnet.config import PRESETS, ConfigError, MESNetConfig

_NETWORK = (
    "MESNet",
    "SpatialEncoder",
    "TemporalConv",
    "CPN",
    "CRN",
    "PretrainHead",
    "PretrainNet",
    "EncoderSubgraph",
    "WindowHeadSubgraph",
    "CRNSubgraph",
)

__all__ = ["PRESETS", "ConfigError", "MESNetConfig", "build", *_NETWORK]


def build(config: MESNetConfig) -> Any:
    """A freshly initialised `MESNet` for ``config``."""
    from mestream.models.mesnet.network import MESNet  # lazy: imports torch (train extra)

    return MESNet(config)


def __getattr__(name: str) -> Any:
    if name in _NETWORK:
        from mestream.models.mesnet import network  # lazy: imports torch (train extra)

        return getattr(network, name)
    raise AttributeError(f"module 'mestream.models.mesnet' has no attribute {name!r}")
