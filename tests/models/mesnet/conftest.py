"""Small MESNet configs and fake flow videos, so the MESNet tests stay fast."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mestream.models.mesnet.config import PRESETS
from mestream.models.mesnet.data import Expression, FlowVideo


@pytest.fixture
def tiny():
    """The paper's layers on 16×16 inputs and 24-step windows."""
    return dataclasses.replace(
        PRESETS["paper"],
        input_size=16,
        window_steps=24,
        overlap_steps=6,
        crn_steps=8,
        pretrain_steps=8,
        l_nol=8,
        batch_size=4,
        optimizer="adam",
        lr=1e-3,
        l2=1e-3,
    )


def fake_video(
    config, steps: int = 60, seed: int = 0, micro=((10, 17), (35, 44)), macro=((22, 30),)
) -> FlowVideo:
    """Random flow with a bump of motion inside each expression, sample i ↔ source frame 5i + 2."""
    rng = np.random.default_rng(seed)
    size = config.input_size
    flow = rng.normal(0, 0.2, (steps, 2, size, size)).astype(np.float32)
    exprs = []
    for kind, spans in (("micro", micro), ("macro", macro)):
        for a, b in spans:
            flow[a : b + 1, :, size // 4 : size // 2, size // 4 : size // 2] += (
                2.0 if kind == "micro" else 4.0
            )
            exprs.append(Expression(kind, a, (a + b) // 2, b, 5 * a, 5 * b + 4))
    return FlowVideo(f"fake{seed}", flow.astype(np.float16), 5 * np.arange(steps) + 2.0, tuple(exprs), 200.0)
