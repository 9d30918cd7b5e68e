"""Small models, their checkpoints and one export of them, shared by the export tests so
that the whole folder stays a few seconds on two cores."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from tests.models import conftest as models_conftest

SMALL = {
    "mesnet": dict(input_size=16, window_steps=24, overlap_steps=6, crn_steps=8, pretrain_steps=8, l_nol=8),
    "akmnet": dict(widths=(8, 16, 16, 16), image_size=64, train_resize=72, max_frames=6),
}
"""Per family: the preset's layers on small inputs, so every test network exports in a second."""

needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("onnx") is None,
    reason="exporting needs the 'train' extra (torch, onnx)",
)

_one_thread = models_conftest._one_thread  # autouse: one torch thread here too


def small_model(name: str, seed: int = 0):
    import torch

    from mestream.models.registry import create_model

    torch.manual_seed(seed)
    return create_model(name, **SMALL[name.partition(".")[0]]).eval()


def save_small(path: Path, name: str, seed: int = 0) -> Path:
    """A checkpoint of a small freshly initialised ``name`` (family.preset)."""
    import dataclasses

    from mestream.models.checkpoint import save_checkpoint

    family, _, preset = name.partition(".")
    net = small_model(name, seed)
    return save_checkpoint(
        path,
        model=family,
        preset=preset,
        config=dataclasses.asdict(net.config),
        state_dict=net.state_dict(),
        card={"model": family, "preset": preset},
    )


@pytest.fixture(scope="session")
def small_checkpoints(tmp_path_factory) -> dict[str, Path]:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch")
    folder = tmp_path_factory.mktemp("checkpoints")
    return {
        family: save_small(folder / f"{family}-small.pt", f"{family}.demo") for family in ("mesnet", "akmnet")
    }


@pytest.fixture(scope="session")
def small_export(tmp_path_factory, small_checkpoints) -> Path:
    """One export of the small checkpoints; tests that change it work on a copy (`export_copy`)."""
    import torch

    from mestream.export.onnx_export import export_all

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("export")
        export_all(small_checkpoints, out, progress=False)
    finally:
        torch.set_num_threads(before)
    return out


@pytest.fixture
def export_copy(small_export, tmp_path) -> Path:
    """A copy of the small export, its checkpoint paths made absolute (they are relative to the
    export folder, and only the export moved)."""
    import dataclasses

    from mestream.engine.manifest import Manifest

    out = tmp_path / "export"
    shutil.copytree(small_export, out)
    manifest = Manifest.load(out)
    models = {
        name: dataclasses.replace(info, checkpoint=str((small_export / info.checkpoint).resolve()))
        for name, info in manifest.models.items()
    }
    dataclasses.replace(manifest, models=models).save()
    return out
