"""Hand-computed cases for the spotting and recognition metrics."""

from __future__ import annotations

import numpy as np
import pytest

from mestream.engine.metrics import (
    Interval,
    MetricError,
    apex_error,
    format_table,
    iou,
    keyframe_deviation,
    mean_apex_error,
    mean_deviation_ms,
    megc_metric,
    mesnet_metric,
    recognition_metrics,
    within_tolerance,
)


def iv(onset: int, offset: int, video: str = "v", score: float = 1.0, kind: str = "micro") -> Interval:
    return Interval(video, onset, offset, score=score, kind=kind)


# --------------------------------------------------------------------------- Interval and IoU


@pytest.mark.parametrize("onset, offset", [(5, 4), (1.5, 3), (True, 3), ("1", 3)])
def test_interval_rejects_bad_frames(onset, offset):
    with pytest.raises(MetricError, match="interval 'v'"):
        Interval("v", onset, offset)


def test_interval_rejects_unknown_kind_and_accepts_numpy_ints():
    with pytest.raises(MetricError, match="kind"):
        Interval("v", 1, 2, kind="blink")
    item = Interval("v", np.int64(3), np.int32(7))
    assert (item.onset, item.offset, item.length) == (3, 7, 5)
    assert type(item.onset) is int


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ((0, 9), (5, 14), 5 / 15),  # frames 5..9 shared, 0..14 in the union
        ((0, 9), (0, 9), 1.0),
        ((0, 4), (5, 9), 0.0),  # adjacent, no shared frame
        ((0, 5), (5, 9), 1 / 10),  # one shared frame: inclusive ends count
        ((3, 3), (0, 9), 1 / 10),
    ],
)
def test_iou_inclusive_frames(a, b, expected):
    assert iou(iv(*a), iv(*b)) == pytest.approx(expected)
    assert iou(iv(*b), iv(*a)) == pytest.approx(expected)


def test_iou_across_videos_is_zero():
    assert iou(iv(0, 9, video="a"), iv(0, 9, video="b")) == 0.0


# --------------------------------------------------------------------------- MESNet Eq. 15


def fig6():
    """MESNet Fig. 6: two MEs, three spotted intervals; the first is a false positive, the other two
    both overlap the second ME well."""
    truth = [iv(10, 30), iv(60, 80)]
    pred = [iv(100, 120), iv(60, 79), iv(61, 80)]
    return pred, truth


def test_mesnet_metric_fig6():
    result = mesnet_metric(*fig6())
    assert (result["a"], result["m"], result["b"], result["n"]) == (1, 2, 2, 3)
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(1 / 2)
    p, r = 2 / 3, 1 / 2
    assert result["f1"] == pytest.approx(2 * p * r / (p + r))


def test_mesnet_metric_threshold_is_inclusive_and_configurable():
    truth = [iv(0, 9)]
    pred = [iv(0, 19)]  # IoU exactly 0.5
    assert mesnet_metric(pred, truth, t_eval=0.5)["b"] == 1
    assert mesnet_metric(pred, truth, t_eval=0.6)["b"] == 0
    with pytest.raises(MetricError, match="t_eval"):
        mesnet_metric(pred, truth, t_eval=0.0)


def test_mesnet_metric_zero_division_and_cross_video():
    empty = mesnet_metric([], [])
    assert empty == {"a": 0, "m": 0, "b": 0, "n": 0, "recall": 0.0, "precision": 0.0, "f1": 0.0}
    only_pred = mesnet_metric([iv(0, 9)], [])
    assert (only_pred["n"], only_pred["precision"], only_pred["recall"]) == (1, 0.0, 0.0)
    crossed = mesnet_metric([iv(0, 9, video="b")], [iv(0, 9, video="a")])
    assert (crossed["a"], crossed["b"], crossed["f1"]) == (0, 0, 0.0)


def test_mesnet_metric_kind_filter():
    truth = [iv(0, 9), iv(100, 199, kind="macro")]
    pred = [iv(0, 9), iv(100, 199, kind="macro")]
    assert mesnet_metric(pred, truth, kind="micro")["m"] == 1
    assert mesnet_metric(pred, truth)["m"] == 2
    with pytest.raises(MetricError, match="kind must be one of"):
        mesnet_metric(pred, truth, kind="mciro")


# --------------------------------------------------------------------------- MEGC


def test_megc_metric_fig6_is_one_to_one():
    result = megc_metric(*fig6())["micro"]
    assert (result["tp"], result["fp"], result["fn"]) == (1, 2, 1)
    assert result["precision"] == pytest.approx(1 / 3)
    assert result["recall"] == pytest.approx(1 / 2)
    assert result["f1"] == pytest.approx(2 / (2 + 2 + 1))


def test_megc_two_predictions_on_one_truth_give_one_tp():
    truth = [iv(0, 9)]
    pred = [iv(0, 9, score=0.2), iv(1, 9, score=0.9)]
    result = megc_metric(pred, truth)["micro"]
    assert (result["tp"], result["fp"], result["fn"]) == (1, 1, 0)


def test_megc_matching_follows_score_order():
    # t1 = [0, 9], t2 = [4, 13]; "wide" [1, 10] has IoU 0.82 with t1 and 0.54 with t2,
    # "exact" [0, 9] has IoU 1.0 with t1 and 0.43 with t2.
    truth = [iv(0, 9), iv(4, 13)]
    wide_first = megc_metric([iv(1, 10, score=0.9), iv(0, 9, score=0.5)], truth)["micro"]
    exact_first = megc_metric([iv(1, 10, score=0.5), iv(0, 9, score=0.9)], truth)["micro"]
    assert (wide_first["tp"], wide_first["fp"], wide_first["fn"]) == (1, 1, 1)
    # greedy (the challenge rule): "wide" wants t1, which "exact" took → a false positive
    assert (exact_first["tp"], exact_first["fp"], exact_first["fn"]) == (1, 1, 1)
    again = megc_metric([iv(1, 10, score=0.5), iv(0, 9, score=0.9)], truth, policy="next_best")["micro"]
    assert (again["tp"], again["fp"], again["fn"]) == (2, 0, 0)


def test_megc_policies_differ_only_when_the_best_truth_is_taken():
    truth = [iv(0, 9), iv(2, 11)]
    pred = [iv(0, 9, score=0.9), iv(0, 10, score=0.5)]  # second: 0.91 with t1 (taken), 0.75 with t2
    assert megc_metric(pred, truth)["micro"]["tp"] == 1
    assert megc_metric(pred, truth, policy="next_best")["micro"]["tp"] == 2
    with pytest.raises(MetricError, match="policy"):
        megc_metric(pred, truth, policy="best")


def test_megc_cross_video_does_not_match():
    result = megc_metric([iv(0, 9, video="b")], [iv(0, 9, video="a")])["overall"]
    assert (result["tp"], result["fp"], result["fn"]) == (0, 1, 1)


def test_megc_micro_macro_separation_and_overall_sums():
    truth = [iv(0, 9), iv(100, 199, kind="macro")]
    pred = [iv(0, 9), iv(0, 9, kind="macro"), iv(100, 199)]
    result = megc_metric(pred, truth)
    assert {k: (result[k]["tp"], result[k]["fp"], result[k]["fn"]) for k in result} == {
        "micro": (1, 1, 0),
        "macro": (0, 1, 1),
        "overall": (1, 2, 1),
    }
    assert result["overall"]["precision"] == pytest.approx(1 / 3)
    assert result["overall"]["recall"] == pytest.approx(1 / 2)


def test_megc_zero_division():
    result = megc_metric([], [])
    for kind in ("micro", "macro", "overall"):
        assert result[kind] == {"tp": 0, "fp": 0, "fn": 0, "precision": 0.0, "recall": 0.0, "f1": 0.0}


# --------------------------------------------------------------------------- recognition


def test_recognition_metrics_hand_computed():
    classes = ["a", "b", "c", "d"]
    result = recognition_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], classes)
    assert result["confusion"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert result["acc"] == pytest.approx(3 / 5)
    assert result["per_class"]["a"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    )
    assert result["per_class"]["b"] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2}
    )
    assert result["per_class"]["c"]["f1"] == 0.0
    # d has no support and no predictions: left out of both averages
    assert result["uf1_classes"] == ["a", "b", "c"] and result["uar_classes"] == ["a", "b", "c"]
    assert result["uf1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert result["uar"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    by_name = recognition_metrics(["a", "a", "b", "b", "c"], ["a", "b", "b", "b", "a"], classes)
    assert by_name["confusion"] == result["confusion"] and by_name["uf1"] == result["uf1"]


def test_recognition_class_only_predicted_counts_in_uf1_not_uar():
    result = recognition_metrics([0, 0], [0, 1], ["a", "b"])
    assert result["uf1_classes"] == ["a", "b"] and result["uar_classes"] == ["a"]
    assert result["uf1"] == pytest.approx((2 / 3 + 0.0) / 2)
    assert result["uar"] == pytest.approx(0.5)


def test_recognition_zero_and_errors():
    empty = recognition_metrics([], [], ["a", "b"])
    assert (empty["acc"], empty["uf1"], empty["uar"], empty["n"]) == (0.0, 0.0, 0.0, 0)
    with pytest.raises(MetricError, match="y_true has 2 labels but y_pred has 1"):
        recognition_metrics([0, 1], [0], ["a", "b"])
    with pytest.raises(MetricError, match=r"y_pred\[1\] = 'z'"):
        recognition_metrics([0, 1], [0, "z"], ["a", "b"])
    with pytest.raises(MetricError, match=r"y_true\[0\] = 2"):
        recognition_metrics([2], [0], ["a", "b"])


# --------------------------------------------------------------------------- key frames


def test_apex_error_elementwise_and_mean():
    errors = apex_error([10, 20], [12, 20], [20, 10])
    np.testing.assert_allclose(errors, [0.1, 0.0])
    assert mean_apex_error([10, 20], [12, 20], [20, 10]) == pytest.approx(0.05)
    assert apex_error(30, 21, 45) == pytest.approx(0.2)
    assert isinstance(apex_error(30, 21, 45), float)
    with pytest.raises(MetricError, match="clip_length"):
        apex_error(1, 2, 0)
    with pytest.raises(MetricError, match="drop clips without an apex"):
        apex_error([1, None], [2, 3], 10)


def test_keyframe_deviation_gamdss():
    result = keyframe_deviation(105, 100, 50, 200)
    assert result["d_percent"] == pytest.approx(10.0)  # 5 / 50 x 100
    assert result["d_ms"] == pytest.approx(25.0)  # 5 x 1000 / 200
    arrays = keyframe_deviation([105, 90], 100, [50, 40], 500)
    np.testing.assert_allclose(arrays["d_percent"], [10.0, 25.0])
    np.testing.assert_allclose(arrays["d_ms"], [10.0, 20.0])
    assert mean_deviation_ms({"onset": 5.0, "apex": [10.0, 20.0], "offset": 0.0}) == pytest.approx(20 / 3)
    assert mean_deviation_ms({"onset": 5.0, "apex": [15.0], "offset": []}) == pytest.approx(
        10.0
    )  # no offsets
    assert mean_deviation_ms({}) == 0.0
    with pytest.raises(MetricError, match="fps"):
        keyframe_deviation(1, 2, 10, 0)


def test_within_tolerance():
    assert within_tolerance([50, 50, 50], [55, 60, 44], 100, fraction=0.1) == pytest.approx(1.0)
    assert within_tolerance([50, 50, 50], [55, 60, 44], 50, fraction=0.1) == pytest.approx(1 / 3)
    assert within_tolerance([], [], 10) == 0.0


# --------------------------------------------------------------------------- printing


def test_format_table_spotting_recognition_and_flat():
    spot = format_table(megc_metric(*fig6()), title="MEGC")
    lines = spot.splitlines()
    assert lines[0] == "MEGC"
    assert [line.split()[0] for line in lines[3:6]] == ["micro", "macro", "overall"]
    assert "0.333" in lines[3] and len({len(line) for line in lines[1:6]}) == 1  # fixed width
    recog = format_table(recognition_metrics([0, 1], [0, 0], ["pos", "neg"]))
    assert "confusion" in recog and "pos" in recog and "0.500" in recog
    flat = format_table(mesnet_metric(*fig6()), digits=2)
    assert "precision" in flat and "0.67" in flat
