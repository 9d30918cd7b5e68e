"""Models by name: ``create_model("akmnet.paper", num_classes=4)``.

A family is a package ``mestream.models.<family>`` exporting ``PRESETS`` (preset name →
frozen config) and ``build(config)``. Families are imported on first use, so listing or
building one never imports the other, and nothing here imports torch by itself.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

FAMILIES = ("mesnet", "akmnet")


def _family(name: str) -> tuple[Any, str]:
    family, _, preset = name.partition(".")
    if family not in FAMILIES or not preset:
        raise ValueError(
            f"unknown model {name!r}: names are <family>.<preset> with family one of {', '.join(FAMILIES)} "
            f"(see list_models())"
        )
    module = importlib.import_module(f"mestream.models.{family}")
    if preset not in module.PRESETS:
        raise ValueError(f"unknown model {name!r}: {family} presets are {', '.join(sorted(module.PRESETS))}")
    return module, preset


def model_config(name: str, **overrides: Any) -> Any:
    """The preset's config with ``overrides`` applied (unknown fields are an error)."""
    module, preset = _family(name)
    config = module.PRESETS[preset]
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(config)})
    if unknown:
        raise ValueError(f"model {name!r}: unknown config field(s) {', '.join(unknown)}")
    return dataclasses.replace(config, **overrides)


def create_model(name: str, **overrides: Any) -> Any:
    """A freshly initialised network of the named preset (a torch ``nn.Module``)."""
    module, _ = _family(name)
    return module.build(model_config(name, **overrides))


def list_models() -> list[str]:
    return [
        f"{family}.{preset}"
        for family in FAMILIES
        for preset in sorted(importlib.import_module(f"mestream.models.{family}").PRESETS)
    ]
