"""Key frames of a spotted interval: DFME's micro/macro rule and GAMDSS's onset/apex re-selection.

The spotter's onset and apex are where its score curve crossed a threshold and peaked, a
few frames off the frames where the face actually changes most. GAMDSS (Xie et al.,
section III-B) re-selects them inside a small window scaled to the rise, by the largest
pixel difference between aligned crops; the recogniser and the event then use the frames
that carry the motion. numpy only: it runs in the spot stage's thread.
"""

from __future__ import annotations

import numpy as np

__all__ = ["is_micro", "refine"]


def is_micro(
    onset_frame: int,
    apex_frame: int,
    offset_frame: int,
    fps: float,
    max_ms: float = 500.0,
    rise_ms: float = 250.0,
) -> bool:
    """DFME's rule, inclusive frame counts as the dataset writes it (250 / 125 frames at 500 fps):
    micro when onset→offset lasts at most ``max_ms`` or onset→apex at most ``rise_ms``."""
    return (offset_frame - onset_frame + 1) <= max_ms / 1000.0 * fps or (
        apex_frame - onset_frame + 1
    ) <= rise_ms / 1000.0 * fps


def refine(crops: np.ndarray, first_frame: int, onset: int, apex: int, lam: float) -> tuple[int, int]:
    """GAMDSS's re-selected ``(onset, apex)``: the pair with the largest ‖f_a − f_o‖₂ over
    o ∈ [onset, onset + R], a ∈ [apex − R, apex + R], a > o, with R = round((apex − onset)·λ).

    ``crops`` is ``(n, S, S)`` holding frames ``first_frame .. first_frame + n − 1``; the
    window is clipped to them. The onset only moves later, as in the paper's Eq. 2. On a
    tie the given pair wins, so a still clip keeps the spotter's frames. R = 0, or no valid
    pair inside the frames given, returns ``(onset, apex)`` unchanged.
    """
    reach = int(round((apex - onset) * lam))
    if reach <= 0:
        return onset, apex
    n = len(crops)
    last = first_frame + n - 1
    o_lo, o_hi = max(onset, first_frame), min(onset + reach, last)
    a_lo, a_hi = max(apex - reach, first_frame), min(apex + reach, last)
    if o_lo > o_hi or a_lo > a_hi or a_hi <= o_lo:
        return onset, apex
    flat = crops.reshape(n, -1)
    # Centred on one frame of the window: the squared norms stay near the size of the motion,
    # so ‖a‖² + ‖o‖² − 2ao in float32 does not cancel away a micro-expression's few grey levels.
    ref = flat[o_lo - first_frame].astype(np.float32)
    o = flat[o_lo - first_frame : o_hi - first_frame + 1].astype(np.float32)
    a = flat[a_lo - first_frame : a_hi - first_frame + 1].astype(np.float32)
    o -= ref
    a -= ref
    d2 = np.einsum("ij,ij->i", o, o)[:, None] + np.einsum("ij,ij->i", a, a)[None, :] - 2.0 * (o @ a.T)
    o_ids = np.arange(o_lo, o_hi + 1)
    a_ids = np.arange(a_lo, a_hi + 1)
    d2[a_ids[None, :] <= o_ids[:, None]] = -np.inf
    best = np.unravel_index(int(np.argmax(d2)), d2.shape)
    if o_lo <= onset <= o_hi and a_lo <= apex <= a_hi and d2[onset - o_lo, apex - a_lo] >= d2[best]:
        return onset, apex
    return int(o_ids[best[0]]), int(a_ids[best[1]])
