"""AKMNet's configuration: the paper's numbers as defaults, and the presets.

One frozen dataclass holds what builds the network *and* what prepares its input (clip
length, magnification, sizes), because a runtime that feeds the exported network must
prepare frames exactly as training did; the model card records the whole of it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The same names in the same order as the class maps of `mestream.models.datasets` (paper4,
# smic3, dfme7): a label index means one class whichever path built the model.
FOUR_CLASSES: tuple[str, ...] = ("positive", "negative", "surprise", "others")
SMIC_CLASSES: tuple[str, ...] = ("positive", "negative", "surprise")
DFME_CLASSES: tuple[str, ...] = ("happiness", "anger", "contempt", "disgust", "fear", "sadness", "surprise")
DEFAULT_CLASSES: dict[int, tuple[str, ...]] = {4: FOUR_CLASSES, 3: SMIC_CLASSES, 7: DFME_CLASSES}

INPUT_MODES = ("magnified", "motion")


class ConfigError(ValueError):
    """A bad AKMNet config value; the message names the field."""


@dataclass(frozen=True)
class AKMNetConfig:
    """AKMNet (Peng, Wang et al.): per-frame ResNet-18, adaptive key-frame mining, pixel-wise bi-GRU.

    Args:
        num_classes: output classes (4: positive/negative/surprise/others; 3 for SMIC, 7 for DFME).
        classes: class names, ``num_classes`` of them; empty = the usual names for that count.
        in_channels: 1 (grey frames).
        image_size: network input side, 128 (Table II: 4×4 at the end of the ResNet).
        train_resize: training frames are resized to this and randomly cropped to ``image_size``.
        widths: channels of the four ResNet stages (Table II: 64/128/256/512).
        blocks: BasicBlocks per stage (ResNet-18: 2 each).
        gru_hidden, gru_layers: the bi-GRU run at each 4×4 position (32 hidden, 2 layers,
            bidirectional, so 64 per position and 16·64 = 1024 into the classifier).
        dropout: before the classifier (0.5).
        lambda_gs, lambda_mmm, margin: GS-MMM loss weights λ1, λ2 and the constant C (Eqs. 10-12).
        lr, lr_min, momentum, weight_decay, batch_size, epochs: SGD with cosine annealing from
            ``lr`` to ``lr_min`` over ``epochs`` (Section IV-B).
        balance_classes: resample the training clips so every class is as frequent as the largest.
        max_frames: clips are padded to this many frames; a longer clip is cut into this many
            equal runs of consecutive frames and each run averaged (a box low-pass, so no
            frame's motion is skipped).
        magnify_alpha: Eulerian magnification factor (the paper uses phase-based magnification
            with α = 15; here linear: reference + α·blur(frame − reference)); 0 disables it.
        magnify_sigma: spatial Gaussian low-pass (pixels at ``train_resize``) of the magnified change.
        input_mode: "magnified" feeds reference + α·change (the paper's magnified frames);
            "motion" feeds mid-grey + α·change, the magnified change alone, without the face.
    """

    num_classes: int = 4
    classes: tuple[str, ...] = ()
    in_channels: int = 1
    image_size: int = 128
    train_resize: int = 144
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    blocks: tuple[int, int, int, int] = (2, 2, 2, 2)
    gru_hidden: int = 32
    gru_layers: int = 2
    dropout: float = 0.5
    lambda_gs: float = 0.1
    lambda_mmm: float = 1.0
    margin: float = 2.0
    lr: float = 1e-3
    lr_min: float = 1e-8
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 8
    epochs: int = 40
    balance_classes: bool = True
    max_frames: int = 128
    magnify_alpha: float = 15.0
    magnify_sigma: float = 1.5
    input_mode: str = "magnified"

    def __post_init__(self) -> None:
        for name in (
            "num_classes",
            "in_channels",
            "image_size",
            "train_resize",
            "gru_hidden",
            "gru_layers",
            "batch_size",
            "epochs",
            "max_frames",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"AKMNetConfig.{name} must be a positive int, got {value!r}")
        if self.classes and len(self.classes) != self.num_classes:
            raise ConfigError(
                f"AKMNetConfig.classes names {len(self.classes)} classes "
                f"but num_classes is {self.num_classes}"
            )
        if not self.classes and self.num_classes < 2:
            raise ConfigError(f"AKMNetConfig.num_classes must be >= 2, got {self.num_classes}")
        for name in ("widths", "blocks"):
            value = getattr(self, name)
            if (
                not isinstance(value, tuple)
                or len(value) != 4
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
            ):
                raise ConfigError(f"AKMNetConfig.{name} must be four positive ints, got {value!r}")
        if self.image_size % 32 or self.image_size < 32:
            raise ConfigError(
                "AKMNetConfig.image_size must be a multiple of 32 (the ResNet divides by 32), "
                f"got {self.image_size}"
            )
        if self.train_resize < self.image_size:
            raise ConfigError(
                f"AKMNetConfig.train_resize ({self.train_resize}) must be >= image_size ({self.image_size})"
            )
        for name in (
            "dropout",
            "lambda_gs",
            "lambda_mmm",
            "margin",
            "lr",
            "lr_min",
            "momentum",
            "weight_decay",
            "magnify_alpha",
            "magnify_sigma",
        ):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ConfigError(f"AKMNetConfig.{name} must be a finite number >= 0, got {value!r}")
        if not self.dropout < 1:
            raise ConfigError(f"AKMNetConfig.dropout must be < 1, got {self.dropout!r}")
        if self.input_mode not in INPUT_MODES:
            raise ConfigError(
                f"AKMNetConfig.input_mode must be one of {', '.join(INPUT_MODES)}, got {self.input_mode!r}"
            )

    @property
    def class_names(self) -> tuple[str, ...]:
        if self.classes:
            return tuple(self.classes)
        return DEFAULT_CLASSES.get(self.num_classes, tuple(f"class{i}" for i in range(self.num_classes)))

    @property
    def feature_size(self) -> int:
        """Side of the last feature map: 4 for 128×128 input."""
        return self.image_size // 32

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AKMNetConfig:
        """Build from a plain dict (a model card's ``config``); an unknown key is an error naming it."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"AKMNetConfig: expected a mapping, got {type(d).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ConfigError(
                f"AKMNetConfig: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
            )
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**kw)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PAPER = AKMNetConfig()

DEMO = AKMNetConfig(
    widths=(16, 32, 64, 128),
    max_frames=12,
    epochs=6,
    lr=1e-2,
    input_mode="motion",
)
"""Trains on 2 CPU cores in minutes (about 8 min for 16 synthetic subjects on one thread):
a ResNet-18 a quarter as wide, clips shortened to 12 frames, 6 epochs at a larger learning
rate (there is no ImageNet/AffectNet pre-training here), and the magnified change alone as
input: from scratch, the face itself buries a sub-pixel motion (with "magnified" input the
same recipe stayed at chance level for its first two epochs)."""

PRESETS: dict[str, AKMNetConfig] = {"paper": PAPER, "demo": DEMO}
