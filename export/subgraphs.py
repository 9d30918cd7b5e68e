"""What is exported of each model: the subgraph modules, their inputs and outputs, and the
contract for preparing their input.

Why subgraphs rather than one graph per model: what lies between them depends on the data
(which CPN positions become proposals, how many frames a clip has, where a clip starts) and
stays in numpy on the runtime side; each subgraph inside is a fixed computation whose only
dynamic axes are the batch and, for MESNet's window head, the window length. The wrappers
here return plain tuples in the manifest's output order, so the ONNX graph, the manifest
and the torch backend all name the same tensors the same way.

The preprocessing contract written into the manifest is read off the code that prepared
the training data (`mestream.models.mesnet.data.flow_steps`, `mestream.models.akmnet.data.
prepare_clip` and ``collate``, `mestream.engine.face`): a runtime that prepares frames any
other way feeds the networks something they never saw.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from mestream.engine.face import CASCADE
from mestream.engine.manifest import BATCH, SubgraphInfo, TensorInfo
from mestream.export.errors import ExportError
from mestream.models.akmnet.config import AKMNetConfig
from mestream.models.checkpoint import CheckpointError, load_checkpoint
from mestream.models.mesnet.config import MESNetConfig

if TYPE_CHECKING:  # the networks are imported where a checkpoint is built (load_spec)
    from mestream.models.akmnet.network import AKMNet
    from mestream.models.mesnet.network import MESNet

FAMILIES = ("mesnet", "akmnet")


class SubgraphError(ExportError):
    """A model or checkpoint that cannot be described for export; the message names it."""


# -- wrappers ------------------------------------------------------------------------------------


class AKMEncoderSubgraph(nn.Module):
    """AKMNet subgraph 1: frames (B, 1, S, S) → features (B, C, F, F); the pooled vector is left
    out because the clip head pools the (masked) features itself."""

    def __init__(self, net: AKMNet) -> None:
        super().__init__()
        self.encoder = net.encoder

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.encoder(frames)[0]


class ClipHeadSubgraph(nn.Module):
    """AKMNet subgraph 2: features (B, T, C, F, F) and mask (B, T) → probabilities, β, key mask, max key."""

    def __init__(self, net: AKMNet) -> None:
        super().__init__()
        self.head = net.head

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.head(features, mask)
        return out.probabilities, out.beta, out.key_mask, out.max_key


# -- descriptions --------------------------------------------------------------------------------


@dataclass
class SubgraphSpec:
    """One subgraph to export: the module and what the manifest will say of it."""

    model: str
    name: str
    module: nn.Module
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    dims: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.model}.{self.name}"

    @property
    def file(self) -> str:
        return f"{self.key}.onnx"

    def info(
        self,
        sha256: str = "",
        parity: Mapping[str, Mapping[str, float]] | None = None,
        outputs: tuple[TensorInfo, ...] | None = None,
    ) -> SubgraphInfo:
        return SubgraphInfo(
            model=self.model,
            name=self.name,
            file=self.file,
            sha256=sha256,
            inputs=self.inputs,
            outputs=outputs or self.outputs,
            dims=dict(self.dims),
            parity=dict(parity or {}),
        )

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """torch.onnx.export's ``dynamic_axes``: every named axis of every input and output."""
        return {
            t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)}
            for t in (*self.inputs, *self.outputs)
        }


@dataclass
class ModelSpec:
    """One model's subgraphs with the config and preprocessing the manifest records."""

    name: str
    preset: str
    net: nn.Module
    config: dict[str, Any]
    preprocessing: dict[str, Any]
    subgraphs: tuple[SubgraphSpec, ...]

    def subgraph(self, name: str) -> SubgraphSpec:
        for subgraph in self.subgraphs:
            if subgraph.name == name:
                return subgraph
        raise SubgraphError(
            f"model {self.name}: no subgraph {name!r}; subgraphs: {', '.join(s.name for s in self.subgraphs)}"
        )


def _plain(config: MESNetConfig | AKMNetConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def scale_positions(config: MESNetConfig, steps: int) -> list[int]:
    """Output positions of each CPN scale for a window of ``steps`` features: the two padded
    temporal convs give steps + 2·(2p − (k − 1)), each scale's unpadded dilated pair then
    takes its receptive field on that (as in `postprocess.cpn_positions`)."""
    k, p = config.temporal_kernel, config.temporal_padding
    length = steps + 2 * (2 * p - (k - 1))
    return [length - (rf - 2 * (k - 1)) + 1 for rf in config.receptive_fields]


def min_window_steps(config: MESNetConfig) -> int:
    """The shortest window for which every CPN scale gives at least one position (7 for the
    paper's Table II: the largest receptive field, 15, less the 8 steps of temporal padding)."""
    steps = 1
    while (
        min(scale_positions(config, steps)) < 1
        or steps + 2 * config.temporal_padding - (config.temporal_kernel - 1) < 1
    ):
        steps += 1
    return steps


def mesnet_spec(net: MESNet, preset: str, config: Mapping[str, Any] | None = None) -> ModelSpec:
    """MESNet's three subgraphs, with a dynamic window length for the window head (a stream's
    first window, or a short video, need not be padded to ``window_steps``)."""
    cfg = net.config
    subgraphs = net.eval().subgraphs()
    S, L, N = cfg.input_size, cfg.feature_size, cfg.window_steps
    lo = min_window_steps(cfg)
    dims = {"time": (lo, N, N)}
    for s, (a, b) in enumerate(zip(scale_positions(cfg, lo), scale_positions(cfg, N)), 1):
        dims[f"positions_{s}"] = (a, b, b)
    f32 = "float32"
    specs = (
        SubgraphSpec(
            "mesnet",
            "encoder",
            subgraphs["encoder"],
            (TensorInfo("flow", (BATCH, 2, S, S), f32),),
            (TensorInfo("features", (BATCH, L), f32),),
        ),
        SubgraphSpec(
            "mesnet",
            "window_head",
            subgraphs["window_head"],
            (TensorInfo("features", (BATCH, "time", L), f32),),
            tuple(
                TensorInfo(f"scores_{s}", (BATCH, f"positions_{s}"), f32)
                for s in range(1, len(cfg.receptive_fields) + 1)
            ),
            dims,
        ),
        SubgraphSpec(
            "mesnet",
            "crn",
            subgraphs["crn"],
            (TensorInfo("proposals", (BATCH, cfg.crn_steps, L), f32),),
            (TensorInfo("probabilities", (BATCH, 2), f32), TensorInfo("offsets", (BATCH, 2), f32)),
        ),
    )
    return ModelSpec(
        "mesnet",
        preset,
        net,
        dict(config) if config is not None else _plain(cfg),
        mesnet_preprocessing(cfg),
        specs,
    )


def akmnet_spec(net: AKMNet, preset: str, config: Mapping[str, Any] | None = None) -> ModelSpec:
    """AKMNet's two subgraphs; the clip length is fixed at ``max_frames`` because the masked
    bi-GRU is unrolled over it (shorter clips are padded and masked)."""
    cfg = net.config
    net.eval()
    S, C, F, T, K = cfg.image_size, cfg.widths[3], cfg.feature_size, cfg.max_frames, cfg.num_classes
    specs = (
        SubgraphSpec(
            "akmnet",
            "encoder",
            AKMEncoderSubgraph(net).eval(),
            (TensorInfo("frames", (BATCH, 1, S, S), "float32"),),
            (TensorInfo("features", (BATCH, C, F, F), "float32"),),
        ),
        SubgraphSpec(
            "akmnet",
            "clip_head",
            ClipHeadSubgraph(net).eval(),
            (TensorInfo("features", (BATCH, T, C, F, F), "float32"), TensorInfo("mask", (BATCH, T), "bool")),
            (
                TensorInfo("probabilities", (BATCH, K), "float32"),
                TensorInfo("beta", (BATCH, T), "float32"),
                TensorInfo("key_mask", (BATCH, T), "bool"),
                TensorInfo("max_key", (BATCH,), "int64"),
            ),
        ),
    )
    recorded = dict(config) if config is not None else _plain(cfg)
    if not recorded.get("classes"):  # the runtime names classes without rebuilding AKMNetConfig
        recorded["classes"] = list(cfg.class_names)
    return ModelSpec("akmnet", preset, net, recorded, akmnet_preprocessing(cfg), specs)


def model_spec(
    family: str, net: nn.Module, preset: str, config: Mapping[str, Any] | None = None
) -> ModelSpec:
    """The export description of a built network (``config``: the checkpoint's, else the net's own)."""
    if family == "mesnet":
        return mesnet_spec(cast("MESNet", net), preset, config)
    if family == "akmnet":
        return akmnet_spec(cast("AKMNet", net), preset, config)
    raise SubgraphError(f"no export description for model {family!r}; models: {', '.join(FAMILIES)}")


def load_spec(family: str, checkpoint: str | Path) -> ModelSpec:
    """Load a checkpoint (CheckpointError naming the file when it cannot be used) and describe it."""
    if family not in FAMILIES:
        raise SubgraphError(f"no export description for model {family!r}; models: {', '.join(FAMILIES)}")
    ckpt = load_checkpoint(checkpoint, model=family)
    net: nn.Module
    try:
        if family == "mesnet":
            from mestream.models.mesnet.network import (
                MESNet,  # lazy: imports torch (train extra)
            )

            net = MESNet(MESNetConfig.from_dict(ckpt.config))
        else:
            from mestream.models.akmnet.network import (
                build,  # lazy: imports torch (train extra)
            )

            net = build(AKMNetConfig.from_dict(ckpt.config))
        net.load_state_dict(ckpt.state_dict)
    except (ValueError, RuntimeError) as exc:  # a bad config, or weights of another shape than the config's
        raise CheckpointError(f"checkpoint {checkpoint}: {exc}") from None
    return model_spec(family, net.eval(), ckpt.preset, ckpt.config)


# -- the preprocessing contract --------------------------------------------------------------------


def _face_box(rule: str) -> dict[str, Any]:
    return {
        "detector": f"OpenCV Haar cascade {CASCADE}: the largest face, at least 0.2 of the frame height "
        "(mestream.engine.face.detect_face)",
        "scale": 1.2,
        "shape": "square, side round(1.2·max(w, h)), centred on the detection",
        "fixed": rule,
        "crop": "cut with the border replicated where the box overhangs the frame, resized with INTER_AREA "
        "(INTER_LINEAR when the box is smaller than the crop), grey uint8",
    }


def mesnet_preprocessing(cfg: MESNetConfig) -> dict[str, Any]:
    """How a video becomes MESNet's flow steps (`mestream.models.mesnet.data.flow_steps`)."""
    return {
        "input": "flow",
        "face_box": _face_box(
            "detected once on the video's first frame; every frame is cropped with that box"
        ),
        "flow_crop": cfg.flow_crop,
        "sample_hz": cfg.sample_hz,
        "sampling": "sample i is the float32 mean of source frames starts[i]..starts[i+1]-1, "
        "starts = unique(ceil(arange(int(n_frames / step)) * step - 1e-9)), step = max(fps / sample_hz, 1)",
        "flow_blur": cfg.flow_blur,
        "blur": "GaussianBlur sigma = flow_blur on each sample's float mean (skipped when 0), then rint, "
        "clip 0..255, uint8",
        "flow_method": cfg.flow_method,
        "flow_preset": cfg.flow_preset,
        "flow_gap": cfg.flow_gap,
        "gap_rule": "step i's flow is from sample max(i - flow_gap // 2, 0) to sample "
        "min(i + flow_gap - flow_gap // 2, last) (centred)",
        "median_subtraction": "each channel's median over the whole crop is subtracted (head motion)",
        "input_size": cfg.input_size,
        "resize": "cv2.resize to input_size x input_size with INTER_AREA, after the median subtraction",
        "flow_scale": cfg.flow_scale,
        "flow_gain": "flow_scale * input_size / crop_side (crop_side = flow_crop)",
        "flow_gain_value": cfg.flow_scale * cfg.input_size / cfg.flow_crop,
        "channels": ["dx", "dy"],
        "layout": "(2, input_size, input_size) per step, channel 0 = dx, channel 1 = dy "
        "(OpenCV's flow order)",
        "dtype": "float32",
        "dtype_note": "training stored the flow as float16 and fed it cast to float32",
        "window_steps": cfg.window_steps,
        "overlap_steps": cfg.overlap_steps,
        "window_padding": "a window reaching past the video's end is padded with zero flow "
        "(encoder features of zero flow); or run the window head on the shorter window, "
        "down to dims.time min",
        "crn_resampling": "each proposal's features f_a..f_b are linearly resampled to crn_steps rows, ends "
        "included (mestream.engine.intervals.resample)",
    }


def akmnet_preprocessing(cfg: AKMNetConfig) -> dict[str, Any]:
    """How a spotted clip becomes AKMNet's frames (`prepare_clip`, then ``collate`` at evaluation)."""
    return {
        "input": "frames",
        "face_box": _face_box(
            "one box for the whole clip, fixed at the clip's onset frame or before it (the "
            "training videos used their first frame); never re-detected per frame"
        ),
        "crop_side": cfg.train_resize,
        "onset_first": "the clip's frames from onset to offset, onset first",
        "intensity": "float32 frames, each scaled so its mean equals the onset frame's mean "
        "(frame * mean[0] / max(mean, 1e-3))",
        "max_frames": cfg.max_frames,
        "shortening": "a clip longer than max_frames is cut into max_frames runs of consecutive frames "
        "(numpy.array_split) and each run averaged; a shorter clip keeps every frame",
        "input_mode": cfg.input_mode,
        "magnify_alpha": cfg.magnify_alpha,
        "magnify_sigma": cfg.magnify_sigma,
        "magnify": "change = GaussianBlur(y - y[0], sigma = magnify_sigma at crop_side; skipped when 0); "
        "'magnified': y + alpha * change, 'motion': 128 + alpha * change; then rint, clip 0..255, uint8",
        "image_size": cfg.image_size,
        "resize": "each prepared frame resized to image_size x image_size with INTER_AREA "
        "when crop_side differs",
        "scaling": "uint8 / 255 -> float32 in [0, 1]",
        "layout": "(1, image_size, image_size) per frame",
        "dtype": "float32",
        "mask": "clip_head mask (max_frames,) bool: True for the clip's n prepared frames, first; "
        "padded slots may hold anything (the head zeroes them)",
        "source_frames": "prepared frame j stands for the middle source frame of its run; "
        "max_key indexes prepared frames",
        "class_names": list(cfg.class_names),
    }
