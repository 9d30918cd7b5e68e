import ast
import dataclasses
import inspect

import numpy as np

from mestream.engine import intervals
from mestream.engine.intervals import (
    Spots,
    cpn_positions,
    cpn_proposals,
    crn_intervals,
    interval_iou,
    labels,
    merge,
    nms,
    resample,
    shift,
    to_frames,
    window_starts,
)
from mestream.models.mesnet.config import PRESETS


def test_numpy_only():
    tree = ast.parse(inspect.getsource(intervals))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "torch" not in imported


def test_nms_hand_cases():
    ivs = np.array([[0, 9], [1, 10], [20, 29], [0, 4], [2, 8]], dtype=float)
    scores = np.array([0.9, 0.8, 0.7, 0.95, 0.6])
    # [0,4] (0.95) first; [0,9] IoU with it 5/10 = 0.5 is not above 0.5: kept;
    # [1,10] IoU with [0,9] = 9/11: dropped; [20,29] kept; [2,8] IoU with [0,9] = 7/10: dropped
    assert nms(ivs, scores, 0.5).tolist() == [3, 0, 2]
    assert nms(ivs, scores, 0.3).tolist() == [3, 2]
    assert nms(ivs, scores, 1.0).tolist() == [3, 0, 1, 2, 4]
    assert nms(np.zeros((0, 2)), np.zeros(0), 0.5).tolist() == []


def test_window_starts():
    assert window_starts(100, 100, 20) == [0]
    assert window_starts(50, 100, 20) == [0]
    assert window_starts(300, 100, 20) == [0, 80, 160, 200]
    assert window_starts(260, 100, 20) == [0, 80, 160]


def test_cpn_positions_account_for_the_temporal_padding():
    pos = cpn_positions(PRESETS["paper"])
    # sub-network 1 (receptive field 7): output n covers F[n - 4, n + 2]
    assert pos[0][0].tolist() == [0, 2] and pos[0][10].tolist() == [6, 12] and pos[0][-1].tolist() == [97, 99]
    # sub-network 5 (receptive field 15): output n covers F[n - 4, n + 10]
    assert pos[4][20].tolist() == [16, 30] and len(pos[4]) == 94


def test_interval_iou_counts_inclusive_frames():
    a = np.array([[0, 9], [3, 3]])
    b = np.array([[5, 14], [10, 19], [3, 3]])
    # [0,9]∩[5,14] = 5 of 15; [0,9] and [10,19] touch but share no step; [3,3] is one step
    np.testing.assert_allclose(interval_iou(a, b), [[5 / 15, 0, 1 / 10], [0, 0, 1]])


def test_labels_use_iou_above_threshold():
    ivs = np.array([[10, 16], [11, 17], [12, 18], [30, 36]])
    lab, nearest = labels(ivs, np.array([[10, 17], [40, 44]]), 0.7)
    # IoUs with [10,17]: 7/8, 7/8, 6/9, 0
    assert lab.tolist() == [1, 1, 0, 0] and nearest[:3].tolist() == [0, 0, 0]
    assert labels(ivs, np.zeros((0, 2)), 0.7)[0].tolist() == [0, 0, 0, 0]
    # Eq. 10 is strict: an IoU of exactly 0.7 (7 of 10 steps) is not ME
    assert labels(np.array([[0, 9], [0, 7]]), np.array([[0, 6]]), 0.7)[0].tolist() == [0, 1]


def test_cpn_proposals_keep_the_best_positions_after_nms():
    cfg = dataclasses.replace(PRESETS["paper"], max_proposals=2)
    scores = [np.full(len(p), 0.6) for p in cpn_positions(cfg)]
    scores[2][40] = 0.99  # sub-network 3, F[36, 46]
    scores[4][70] = 0.95  # sub-network 5, F[66, 80]
    scores[0][41] = 0.97  # sub-network 1, F[37, 43]: IoU 7/11 with the first, suppressed
    props = cpn_proposals(scores, cfg, 0.9)
    assert props.intervals.tolist() == [[36, 46], [66, 80]] and props.scores.tolist() == [0.99, 0.95]
    # below T_CPN nothing is proposed; the cap applies after NMS, highest scores first
    assert len(cpn_proposals(scores, cfg, 0.999)) == 0
    low = cpn_proposals(scores, cfg, 0.5)
    assert len(low) == 2 and low.scores.tolist() == [0.99, 0.95]


def test_crn_intervals_use_the_proposal_length():
    props = Spots(np.array([[10, 20], [40, 46], [60, 70]]), np.array([0.9, 0.8, 0.7]))
    probs = np.array([[0.2, 0.8], [0.6, 0.4], [0.1, 0.9]])
    offsets = np.array([[0.1, -0.2], [0.0, 0.0], [-0.5, 0.5]])
    out = crn_intervals(props, probs, offsets, 0.5, 0.5)
    # [10 + 0.1*10, 20 - 0.2*10] and [60 - 5, 70 + 5], by score
    np.testing.assert_allclose(out.intervals, [[55, 75], [11, 18]])
    np.testing.assert_allclose(out.scores, [0.9, 0.8])


def test_shift_merge_and_frames():
    a = Spots(np.array([[70.0, 80.0]]), np.array([0.9]))
    b = Spots(np.array([[-10.0, 0.5], [0.0, 10.0]]), np.array([0.8, 0.6]))
    merged = merge([shift(a, 0, 120), shift(b, 70, 120)], 0.5)
    np.testing.assert_allclose(merged.intervals, [[70, 80], [60, 70.5]])
    frames = 5 * np.arange(120) + 2.0
    assert to_frames(merged, frames) == [(352, 402, 0.9), (302, 354, 0.8)]
    # the last window's spots stop at the video's last step (119), not one past it
    end = shift(Spots(np.array([[40.0, 60.0]]), np.array([0.7])), 70, 120)
    np.testing.assert_allclose(end.intervals, [[110, 119]])


def test_resample_linear():
    f = np.arange(20, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    np.testing.assert_allclose(resample(f, 4, 8, 9)[:, 0], np.linspace(4, 8, 9))
    np.testing.assert_allclose(resample(f, 5, 5, 4)[:, 0], [5, 5, 5, 5])
