"""DFME's micro rule and GAMDSS's onset/apex re-selection."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mestream.cameras.synthetic.schedule import dfme_is_micro
from mestream.engine.keyframes import is_micro, refine


@pytest.mark.parametrize("fps", [200.0, 300.0, 500.0])
def test_is_micro_agrees_with_the_synthetic_cameras_rule(fps):
    onset = 1000
    for rise, length in itertools.product(range(1, 320, 3), range(1, 320, 3)):
        apex, offset = onset + rise - 1, onset + length - 1
        assert is_micro(onset, apex, offset, fps) == dfme_is_micro(onset, apex, offset, fps), (
            fps,
            rise,
            length,
        )


def test_is_micro_edges_at_500_fps():
    assert is_micro(0, 200, 249, 500.0)  # 250 frames inclusive: 500 ms
    assert not is_micro(0, 200, 250, 500.0)
    assert is_micro(0, 124, 400, 500.0)  # a 250 ms rise decides a long expression
    assert not is_micro(0, 125, 400, 500.0)
    assert not is_micro(0, 124, 400, 500.0, rise_ms=200.0)


def sequence(curve: np.ndarray, side: int = 24, seed: int = 0) -> np.ndarray:
    """Frames = a textured face + curve(t)·a fixed change pattern: ‖f_a − f_o‖ ∝ |curve(a) − curve(o)|."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(60, 160, (side, side))
    pattern = rng.uniform(-1, 1, (side, side)) * 40
    return np.clip(np.rint(base + curve[:, None, None] * pattern), 0, 255).astype(np.uint8)


def ramp(n: int, first: int, low: int, peak: int, end: int) -> np.ndarray:
    """Intensity falling slowly to 0 at ``low`` (a movement fading), rising to 1 at ``peak``, back to 0
    at ``end``."""
    t = np.arange(first, first + n, dtype=np.float64)
    return np.where(
        t <= low,
        0.2 * (low - t) / 10.0,
        np.where(t <= peak, (t - low) / (peak - low), np.clip((end - t) / (end - peak), 0, 1)),
    )


def test_refine_finds_the_max_difference_pair_near_the_given_one():
    first = 100
    crops = sequence(ramp(60, first, low=110, peak=132, end=150))
    # given 107 / 129: R = round(22·0.2) = 4, so o ∈ [107, 111] and a ∈ [125, 133] hold the true pair
    assert refine(crops, first, 107, 129, 0.2) == (110, 132)


def test_refine_does_not_move_beyond_the_window():
    first = 100
    crops = sequence(ramp(60, first, low=120, peak=145, end=158))
    # R = round(25·0.2) = 5: true onset 120 and apex 145 lie outside o ∈ [104, 109], a ∈ [124, 134],
    # so the window's ends nearest them win
    onset, apex = refine(crops, first, 104, 129, 0.2)
    assert (onset, apex) == (109, 134)


def test_refine_keeps_the_given_pair_when_r_is_zero_or_nothing_moves():
    first = 0
    crops = sequence(ramp(40, first, low=5, peak=20, end=30))
    assert refine(crops, first, 3, 18, 0.0) == (3, 18)
    assert refine(crops, first, 3, 5, 0.2) == (3, 5)  # round(2·0.2) = 0
    still = np.full((40, 16, 16), 90, np.uint8)
    assert refine(still, first, 3, 18, 0.3) == (3, 18)  # every pair ties: the spotter's stands


def test_refine_clips_the_window_to_the_frames_given():
    first = 100
    crops = sequence(ramp(32, first, low=110, peak=140, end=160))  # frames 100..131 only
    onset, apex = refine(crops, first, 108, 128, 0.25)  # R = 5: a ∈ [123, 133] clipped to 131
    assert (onset, apex) == (110, 131)


def test_refine_matches_a_brute_force_search():
    rng = np.random.default_rng(3)
    for trial in range(20):
        first = int(rng.integers(0, 50))
        crops = rng.integers(0, 256, (50, 20, 20), dtype=np.uint8)
        onset = first + int(rng.integers(0, 20))
        apex = onset + int(rng.integers(5, 25))
        lam = float(rng.choice([0.1, 0.2, 0.3]))
        r = int(round((apex - onset) * lam))
        last = first + len(crops) - 1
        best, pair = -1, (onset, apex)
        for o in range(max(onset, first), min(onset + r, last) + 1):
            for a in range(max(apex - r, first), min(apex + r, last) + 1):
                if a <= o:
                    continue
                d = int(np.sum((crops[a - first].astype(np.int64) - crops[o - first]) ** 2))
                if d > best:
                    best, pair = d, (o, a)
        assert refine(crops, first, onset, apex, lam) == (pair if r > 0 else (onset, apex)), trial
