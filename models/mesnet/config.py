"""MESNet's configuration: the paper's values, plus documented choices for what it leaves open.

Paper values (Wang et al., section III and IV-A): Table I (conv 8/16/32/64, 3×3, padding 2,
2×2 max-pool), two temporal 1D convs (kernel 3, padding 2, 128 channels), Table II for the
CPN, FC 300/300 with dropout 0.5, λ = 0.01, IoU > 0.7 labels, T_nms = 0.5, lr 1e-4, batch 2,
the sample ratios of the CAS(ME)² setting (r_noL 1.0, r_MaE 0.5, l_noL 16, r_tME 10,
r_tMaE 4, r_tNL 2), windows of 100 steps with an overlap of 20 and T_CPN = T_CRN = 0.5
(the "General" setting).

Not stated by the paper, chosen here (each is a field):

- ``input_size`` 32: the flow field is computed on ``flow_crop`` (128) px face crops and
  area-averaged to 32×32 before the CNN (L = 3·3·64 = 576). The average also cuts the flow
  noise, and on 2 CPU cores the 2D CNN over every step of every window is the training cost
  (64×64 is 3-4× slower).
- ``sample_hz`` 40: the paper downsamples every clip to 100 steps (≈30 Hz on both of its
  datasets); 40 Hz puts the synthetic micro-expressions (150-450 ms) at 6-18 steps, inside
  the CPN windows of 7-15 steps. A sample is the mean of the source frames in its bin.
- flow: DIS "medium" on Gaussian-blurred (σ ``flow_blur``) crops, from sample
  ``i - gap//2`` to ``i + gap - gap//2`` (``flow_gap`` 3, centred), minus the median flow of
  the face (head motion), times ``flow_scale``. Measured on the default synthetic scene:
  consecutive-sample flow hides the 0.7-2 px micro motion under sensor noise; this recipe
  puts every micro-expression's peak above the 99th percentile of still stretches.
- ``pretrain_steps`` (N_pre) 16 and ``crn_steps`` (N_CR) 16; ``mae_apex_k`` (the k of
  "apex+k") 4 steps; ``crn_iou`` 0.7 ("similar to Eq. 10").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mestream.engine.intervals import receptive_fields

CPN_LAYERS: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = (
    ((3, 1), (1, 1)),
    ((3, 1), (3, 1)),
    ((3, 1), (3, 2)),
    ((3, 1), (3, 3)),
    ((3, 2), (3, 3)),
)
"""Table II: ((kernel, dilation) of layer 1, (kernel, dilation) of layer 2) per sub-network."""


POSITIVE_INTS = (
    "input_size",
    "in_channels",
    "temporal_channels",
    "temporal_kernel",
    "cpn_channels",
    "window_steps",
    "pretrain_steps",
    "crn_steps",
    "fc_units",
    "max_proposals",
    "l_nol",
    "flow_crop",
    "flow_gap",
    "batch_size",
    "pretrain_epochs",
    "epochs",
    "patience",
    "train_subjects",
    "val_subjects",
)
"""The counts and sizes of which 0 means nothing to build, train or validate on."""


class ConfigError(ValueError):
    """A MESNet config that cannot be built; the message names the field."""


@dataclass(frozen=True)
class MESNetConfig:
    """Every knob of the network, its data and its training (defaults = the paper's values).

    Args:
        input_size: side of the square flow field fed to the 2D CNN (H = W).
        in_channels: 2, the flow's (u, v).
        conv_channels, conv_padding: Table I.
        temporal_channels, temporal_kernel, temporal_padding: the two backbone 1D convs.
        cpn_channels: width of the CPN's first layers (unstated; the backbone's 128).
        window_steps: N = l_MESNet after downsampling (100); overlap_steps: l_overlap.
        pretrain_steps: N_pre, steps of a pre-training clip.
        crn_steps: N_CR, steps a proposal's f_n are resampled to.
        fc_units, dropout: the FC layers of the pre-training head and the CRN.
        l2: λ of Eq. 8, 11, 12 (applied to weights; the paper omits biases throughout).
        cpn_iou, crn_iou: IoU above which a window / proposal is labelled ME (Eq. 10).
        t_cpn, t_crn, t_nms: the post-processing thresholds.
        max_proposals: CRN batch per window after NMS (keeps the CRN stage's shape bounded).
        r_nol, r_mae, l_nol, mae_apex_k: pre-training sample ratios (section III-A).
        r_tme, r_tmae, r_tnl: joint-training sample ratios (section III-D).
        sample_hz, flow_crop, flow_method, flow_preset, flow_gap, flow_blur, flow_scale:
            the flow preprocessing (module docstring).
        lr, batch_size, optimizer: the paper's mini-batch SGD at 1e-4, batch 2.
        pretrain_epochs, epochs, patience: training lengths and early-stopping patience.
        val_every: joint-training batches between validation checks (0: once per epoch).
        train_subjects, val_subjects, duration_s: the synthetic data (subjects of seed 0).
    """

    input_size: int = 32
    in_channels: int = 2
    conv_channels: tuple[int, ...] = (8, 16, 32, 64)
    conv_padding: int = 2
    temporal_channels: int = 128
    temporal_kernel: int = 3
    temporal_padding: int = 2
    cpn_channels: int = 128
    window_steps: int = 100
    overlap_steps: int = 20
    pretrain_steps: int = 16
    crn_steps: int = 16
    fc_units: int = 300
    dropout: float = 0.5
    l2: float = 0.01
    cpn_iou: float = 0.7
    crn_iou: float = 0.7
    t_cpn: float = 0.5
    t_crn: float = 0.5
    t_nms: float = 0.5
    max_proposals: int = 32
    r_nol: float = 1.0
    r_mae: float = 0.5
    l_nol: int = 16
    mae_apex_k: int = 4
    r_tme: float = 10.0
    r_tmae: float = 4.0
    r_tnl: float = 2.0
    sample_hz: float = 40.0
    flow_crop: int = 128
    flow_method: str = "dis"
    flow_preset: str = "medium"
    flow_gap: int = 3
    flow_blur: float = 1.0
    flow_scale: float = 10.0
    lr: float = 1e-4
    batch_size: int = 2
    optimizer: str = "sgd"
    pretrain_epochs: int = 10000
    epochs: int = 30
    patience: int = 10
    val_every: int = 0
    train_subjects: int = 40
    val_subjects: int = 10
    duration_s: float = 60.0
    cpn_layers: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = field(default=CPN_LAYERS)

    def __post_init__(self) -> None:
        for name in POSITIVE_INTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"MESNetConfig.{name} must be a positive int, got {value!r}")
        for name in ("conv_padding", "temporal_padding", "overlap_steps", "mae_apex_k", "val_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"MESNetConfig.{name} must be an int >= 0, got {value!r}")
        if not self.conv_channels or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in self.conv_channels
        ):
            raise ConfigError(f"MESNetConfig.conv_channels must be positive ints, got {self.conv_channels!r}")
        for name in ("lr", "duration_s", "flow_scale"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"MESNetConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("l2", "flow_blur", "r_nol", "r_mae", "r_tme", "r_tmae", "r_tnl"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"MESNetConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.input_size < 16:
            raise ConfigError(f"MESNetConfig.input_size must be >= 16, got {self.input_size!r}")
        if len(self.cpn_layers) != 5:
            raise ConfigError(
                "MESNetConfig.cpn_layers must hold the five sub-networks of Table II, "
                f"got {len(self.cpn_layers)}"
            )
        if self.window_steps <= max(self.receptive_fields) or not 0 <= self.overlap_steps < self.window_steps:
            raise ConfigError(
                f"MESNetConfig.window_steps ({self.window_steps}) must exceed the largest receptive field "
                f"and overlap_steps ({self.overlap_steps}) must be within 0..window_steps-1"
            )
        if self.crn_steps < 5:
            raise ConfigError(
                f"MESNetConfig.crn_steps must be >= 5 (two unpadded convs), got {self.crn_steps!r}"
            )
        for name in ("cpn_iou", "crn_iou", "t_cpn", "t_crn", "t_nms", "dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"MESNetConfig.{name} must be within 0..1, got {getattr(self, name)!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"MESNetConfig.optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.sample_hz <= 0:
            raise ConfigError(f"MESNetConfig.sample_hz must be > 0, got {self.sample_hz!r}")
        if self.flow_crop < self.input_size:
            raise ConfigError(
                f"MESNetConfig.flow_crop ({self.flow_crop}) must be >= input_size ({self.input_size})"
            )

    @property
    def feature_size(self) -> int:
        """L, the length of f_n: Table I's map side after four conv (+2) / pool (/2) pairs, squared, × 64."""
        side = self.input_size
        for _ in self.conv_channels:
            side = (side + 2 * self.conv_padding - 2) // 2
        return side * side * self.conv_channels[-1]

    @property
    def receptive_fields(self) -> tuple[int, ...]:
        """Each CPN sub-network's receptive field on F (7/9/11/13/15 for Table II)."""
        return receptive_fields(self.temporal_kernel, self.cpn_layers)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MESNetConfig:
        """Strict: an unknown key or a badly typed value raises ConfigError naming it."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"MESNetConfig: expected a mapping, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(f"MESNetConfig: unknown key(s) {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            default = getattr(cls, key, None) if key != "cpn_layers" else CPN_LAYERS
            values[key] = _coerce(key, value, default)
        return cls(**values)


def _tuple(value: Any) -> Any:
    return tuple(_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def _coerce(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool) or isinstance(value, bool):
        raise ConfigError(f"MESNetConfig.{key}: unexpected boolean {value!r}")
    if isinstance(default, int):
        if not isinstance(value, int):
            raise ConfigError(f"MESNetConfig.{key}: expected an int, got {value!r}")
        return value
    if isinstance(default, float):
        if not isinstance(value, (int, float)):
            raise ConfigError(f"MESNetConfig.{key}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"MESNetConfig.{key}: expected a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"MESNetConfig.{key}: expected a list, got {value!r}")
        return _tuple(value)
    return value


PAPER = MESNetConfig()
DEMO = dataclasses.replace(
    PAPER,
    optimizer="adam",
    lr=1e-3,
    l2=1e-3,
    batch_size=8,
    pretrain_epochs=8,
    epochs=1,
    patience=4,
    val_every=100,
    train_subjects=24,
    val_subjects=6,
    duration_s=60.0,
)
"""Trains on 2 CPU cores in minutes; the architecture and losses are the paper's. Deviations:
Adam at 1e-3 (the paper's SGD at 1e-4 needs thousands of epochs) with λ = 1e-3 (at 0.01 the
L2 term holds every weight at zero under Adam: pre-training stays at chance), batch 8, one
joint epoch (the r_tME = 10 windows per ME already show every ME ten times) checked on the
validation subjects every 100 batches with early stopping."""

PRESETS: dict[str, MESNetConfig] = {"paper": PAPER, "demo": DEMO}
