"""Eager PyTorch from the checkpoint an export came from: the parity reference, and the
baseline of what a user would otherwise run.

Why it reads the checkpoint rather than the ONNX file: it is the independent path the
exported graphs are checked against (`mestream export --check`), so it must not share them.
It runs the same subgraph wrappers the exporter traced (`mestream.export.subgraphs`), and refuses a
checkpoint whose sha256 is not the one in the manifest: the ONNX files would then come from
other weights, and comparing the two would report a mismatch that is only a stale export.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mestream.engine.backends.base import BackendError, Runner, missing_package
from mestream.engine.manifest import Manifest, file_sha256
from mestream.models.checkpoint import CheckpointError

if TYPE_CHECKING:  # imported where a checkpoint is loaded (_activate): torch is the train extra
    from torch import nn

    from mestream.export.subgraphs import ModelSpec

_SPECS: dict[tuple[str, str, str], ModelSpec] = {}
"""Loaded models by (model, checkpoint path, sha256): the subgraphs of one model share one load."""
_MAX_SPECS = 4


def checkpoint_path(manifest: Manifest, model: str) -> Path:
    """The checkpoint a manifest's model came from (its path is relative to the manifest folder)."""
    return manifest.root / manifest.models[model].checkpoint


class TorchBackend(Runner):
    """Eager PyTorch on the CPU (``torch.inference_mode``), from the export's checkpoint.

    Inputs are wrapped with ``torch.from_numpy`` (no copy); outputs are fresh arrays."""

    name = "torch"
    extra = "train"
    module: nn.Module | None  # the subgraph's wrapper while active

    @classmethod
    def unavailable(cls) -> str | None:
        return None if importlib.util.find_spec("torch") else missing_package("torch", "torch", "train")

    def _activate(self) -> None:
        import torch  # lazy: torch is in the train extra

        from mestream.export.subgraphs import (  # lazy: imports torch (train extra)
            SubgraphError,
            load_spec,
        )

        model = self.subgraph.model
        info = self.manifest.models[model]
        path = checkpoint_path(self.manifest, model)
        if not path.is_file():
            raise BackendError(
                f"torch backend for {self.key}: checkpoint {path} (named in {self.manifest.root}/"
                f"manifest.json) is missing"
            )
        sha = file_sha256(path)
        if sha != info.checkpoint_sha256:
            raise BackendError(
                f"torch backend for {self.key}: checkpoint {path} (sha256 {sha[:12]}…) is not the one "
                f"{self.manifest.root / 'manifest.json'} was exported from (sha256 "
                f"{info.checkpoint_sha256[:12]}…): the export is stale, re-run `mestream export`"
            )
        cache_key = (model, str(path.resolve()), sha)
        spec = _SPECS.get(cache_key)
        if spec is None:
            try:
                spec = load_spec(model, path)
            except (CheckpointError, SubgraphError) as exc:
                raise BackendError(f"torch backend for {self.key}: {exc}") from None
            while len(_SPECS) >= _MAX_SPECS:
                _SPECS.pop(next(iter(_SPECS)))
            _SPECS[cache_key] = spec
        try:
            self.module = spec.subgraph(self.subgraph.name).module.eval()
        except SubgraphError as exc:
            raise BackendError(f"torch backend for {self.key}: {exc}") from None
        torch.set_num_threads(self.config.threads)
        self._torch = torch

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        # from_numpy shares memory; a read-only array (np.load's mmap, a frozen buffer) is copied
        # once rather than letting torch warn on every call, and so is one with negative strides
        # (a reversed view), which from_numpy refuses
        args = [
            torch.from_numpy(
                a if a.flags.writeable and all(s >= 0 for s in a.strides) else np.array(a, order="C")
            )
            for a in (np.asarray(feed[t.name]) for t in self.inputs)
        ]
        if self.module is None:  # Runner.infer calls this only while active
            raise BackendError(f"torch backend for {self.key}: infer() after deactivate()")
        with torch.inference_mode():
            out = self.module(*args)
        out = out if isinstance(out, tuple) else (out,)
        if len(out) != len(self.outputs):
            raise BackendError(
                f"torch backend for {self.key}: the subgraph gave {len(out)} outputs, the manifest names "
                f"{len(self.outputs)}; re-run `mestream export`"
            )
        return {spec.name: value.numpy() for spec, value in zip(self.outputs, out)}

    def _deactivate(self) -> None:
        self.module = None
