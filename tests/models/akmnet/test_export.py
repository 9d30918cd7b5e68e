"""The two subgraphs export to ONNX (opset 17, dynamic batch) and ONNX Runtime agrees with torch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")  # torch's ONNX exporter writes the model through it
ort = pytest.importorskip("onnxruntime")

from mestream.models.akmnet.network import ClipHead, FrameEncoder  # noqa: E402
from tests.models.akmnet.test_network import TINY, _model  # noqa: E402

OUTPUTS = ["probabilities", "beta", "key_mask", "max_key"]


class _Head(torch.nn.Module):
    """The clip head with plain tuple outputs, as a runtime consumes them."""

    def __init__(self, head: ClipHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.head(features, mask)
        return out.probabilities, out.beta, out.key_mask, out.max_key


class _Encoder(torch.nn.Module):
    def __init__(self, encoder: FrameEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(frames)


def _export(
    module: torch.nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str]
) -> ort.InferenceSession:
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes={n: {0: "batch"} for n in inputs + outputs},
        )
    module.eval()  # the exporter restores the wrapper's (training) mode on the way out
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_clip_head_exports_and_matches(tmp_path: Path) -> None:
    model = _model()
    T, C, S = 8, TINY.widths[3], TINY.feature_size
    torch.manual_seed(0)
    head = _Head(model.head)
    session = _export(
        head,
        (torch.randn(2, T, C, S, S), torch.ones(2, T, dtype=torch.bool)),
        tmp_path / "head.onnx",
        ["features", "mask"],
        OUTPUTS,
    )
    features = torch.randn(5, T, C, S, S)  # another batch size than at export
    mask = torch.arange(T).view(1, T) < torch.tensor([8, 3, 1, 6, 8]).view(-1, 1)
    got = session.run(None, {"features": features.numpy(), "mask": mask.numpy()})
    with torch.no_grad():
        want = head(features, mask)
    np.testing.assert_allclose(got[0], want[0].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[1], want[1].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(got[2], want[2].numpy())
    np.testing.assert_array_equal(got[3], want[3].numpy())


def test_frame_encoder_exports_and_matches(tmp_path: Path) -> None:
    model = _model()
    enc = _Encoder(model.encoder)
    session = _export(
        enc, (torch.rand(3, 1, 64, 64),), tmp_path / "enc.onnx", ["frames"], ["features", "pooled"]
    )
    frames = torch.rand(7, 1, 64, 64)
    got = session.run(None, {"frames": frames.numpy()})
    with torch.no_grad():
        want = enc(frames)
    assert got[0].shape == (7, TINY.widths[3], TINY.feature_size, TINY.feature_size)
    np.testing.assert_allclose(got[0], want[0].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[1], want[1].numpy(), rtol=1e-4, atol=1e-5)
