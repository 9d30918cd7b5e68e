"""Inference backends: the `Backend` seam and how one is chosen.

Built-in kinds (registered as entry points in group ``mestream.backends``, like a plugin's):

- ``onnxruntime``: CPU, the default; needs nothing beyond the runtime install.
- ``tensorrt``: GPU; needs ``mestream[gpu]`` (TensorRT, pycuda) and a CUDA device.
- ``torch``: eager PyTorch from the checkpoint, the parity reference; needs ``mestream[train]``.

A kind that cannot run here falls back to onnxruntime with a warning naming what is missing,
unless the config says ``fallback = false``, in which case it is an error.
"""

from __future__ import annotations

import logging

from mestream.engine.backends.base import (
    Backend,
    BackendError,
    BackendFactory,
    BackendUnavailable,
    InputError,
    Runner,
    example_feed,
)
from mestream.engine.config import InferenceConfig
from mestream.engine.manifest import Manifest, shipped_export_dir
from mestream.plugins import BACKEND_GROUP, PluginError, lookup, registered

__all__ = [
    "Backend",
    "BackendError",
    "BackendFactory",
    "BackendUnavailable",
    "InputError",
    "Runner",
    "example_feed",
    "backend_kinds",
    "backend_class",
    "why_unavailable",
    "select_backend",
    "open_subgraphs",
    "load_manifest",
]

DEFAULT = "onnxruntime"
log = logging.getLogger("mestream.backends")


def backend_kinds() -> list[str]:
    return sorted(registered(BACKEND_GROUP))


def backend_class(kind: str) -> BackendFactory:
    """The class registered as ``kind``; the error lists the kinds there are."""
    try:
        return lookup(BACKEND_GROUP, kind)
    except PluginError as exc:
        raise BackendError(f"inference.backend (--backend): {exc}") from None


def why_unavailable(cls: BackendFactory) -> str | None:
    check = getattr(cls, "unavailable", None)
    return check() if check is not None else None


def select_backend(kind: str, *, fallback: bool = True) -> tuple[BackendFactory, str | None]:
    """``(class, note)``: the backend to use for ``kind``, and a note when it was replaced.

    Raises `BackendUnavailable` naming what is missing when ``kind`` cannot run here and
    ``fallback`` is off (or the fallback itself cannot run)."""
    cls = backend_class(kind)
    reason = why_unavailable(cls)
    if reason is None:
        return cls, None
    if not fallback or kind == DEFAULT:
        raise BackendUnavailable(f"backend {kind!r} cannot run here: {reason}")
    note = f"backend {kind!r} cannot run here ({reason}); using {DEFAULT!r} instead"
    log.warning(note)
    return select_backend(DEFAULT, fallback=False)[0], note


def load_manifest(config: InferenceConfig) -> Manifest:
    return Manifest.load(config.models or shipped_export_dir())


def open_subgraphs(
    config: InferenceConfig,
    keys: list[str] | None = None,
    *,
    warmup: bool = True,
    manifest: Manifest | None = None,
) -> tuple[dict[str, Backend], str | None]:
    """Every subgraph of the configured export (or ``keys``) on the configured backend, activated
    and warmed up, plus the fallback note if the backend was replaced. On an error the subgraphs
    already activated are released. ``manifest``: the export already loaded (else the
    configured one is loaded), so a caller that checked it runs exactly what it checked."""
    manifest = manifest or load_manifest(config)
    cls, note = select_backend(config.backend, fallback=config.fallback)
    runners: dict[str, Backend] = {}
    try:
        for key in keys or list(manifest.subgraphs):
            runner = cls(manifest, key, config)
            runner.activate()
            runners[key] = runner
            if warmup:
                runner.warmup()
    except BaseException:
        for runner in runners.values():
            runner.deactivate()
        raise
    return runners, note
