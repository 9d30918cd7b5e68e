"""Scoring a run's published events against hand-built ground truth."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mestream.cameras.synthetic.aus import FOUR_CLASSES
from mestream.cameras.synthetic.schedule import Event
from mestream.engine.scoring import ScoringError, format_scores, score_run

CLASSES = list(FOUR_CLASSES)


def ev(
    onset: int, offset: int, kind: str = "micro", emotion: str = "happiness", camera: str = "cam0"
) -> Event:
    aus = {"micro": ("AU12",), "macro": ("AU12",), "blink": ("AU45",)}[kind]
    emotion = "none" if kind == "blink" else emotion
    return Event(
        camera=camera,
        kind=kind,
        onset_frame=onset,
        apex_frame=(onset + offset) // 2,
        offset_frame=offset,
        emotion=emotion,
        aus=aus,
    )


def spot(
    event_id: int,
    onset: int,
    offset: int,
    is_micro: bool = True,
    camera: str = "cam0",
    score: float = 0.9,
    ms: float = 100.0,
    **stages: float,
) -> dict:
    return {
        "camera": camera,
        "event_id": event_id,
        "onset_frame": onset,
        "apex_frame": (onset + offset) // 2,
        "offset_frame": offset,
        "score": score,
        "is_micro": is_micro,
        "refined": {"onset_frame": onset, "apex_frame": (onset + offset) // 2},
        "latency": {"capture_to_publish_ms": ms, **stages},
    }


def recog(event_id: int, label: str, camera: str = "cam0", ms: float = 200.0) -> dict:
    return {
        "camera": camera,
        "event_id": event_id,
        "label": label,
        "probabilities": {c: float(c == label) for c in CLASSES},
        "key_frames": [1, 2, 3],
        "max_key_frame": 2,
        "latency": {"capture_to_publish_ms": ms},
    }


def run(spots, recogs, truth, frames=1000):
    frames_seen = {cam: frames for cam in truth}
    return score_run(spots, recogs, truth, frames_seen, CLASSES)


TRUTH = {
    "cam0": [
        ev(10, 60, emotion="happiness"),
        ev(200, 250, emotion="surprise"),
        ev(400, 450, emotion="anger"),
        ev(600, 800, kind="macro"),
        ev(900, 920, kind="blink"),
    ]
}


def test_perfect_predictions_score_one_and_are_plain_json():
    spots = [spot(0, 10, 60), spot(1, 200, 250), spot(2, 400, 450), spot(3, 600, 800, is_micro=False)]
    recogs = [recog(0, "positive"), recog(1, "surprise"), recog(2, "negative")]
    scores = run(spots, recogs, TRUTH)
    assert scores["spot_f1"] == 1.0 and scores["recog_uf1"] == 1.0
    assert scores["spot"]["micro"] == {"tp": 3, "fp": 0, "fn": 0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert scores["spot"]["macro"]["tp"] == 1
    assert scores["recognition"]["acc"] == 1.0
    assert (
        scores["recognition"]["events"],
        scores["recognition"]["scored"],
        scores["recognition"]["unmatched"],
    ) == (3, 3, 0)
    assert scores["macro_published_as_micro"] == 0 and scores["blinks_published_as_micro"] == 0
    assert scores["cameras"] == {
        "cam0": {
            "spots": 4,
            "micro": 3,
            "recogs": 3,
            "truth_micro": 3,
            "truth_macro": 1,
            "truth_left_out": {"cut_off": 0, "after_end": 0},
        }
    }
    assert json.loads(json.dumps(scores, allow_nan=False)) == scores


def test_missed_event_and_false_positive_counts():
    spots = [spot(0, 10, 60), spot(1, 200, 250), spot(2, 300, 330)]  # misses 400-450, FP at 300
    scores = run(spots, [], TRUTH)
    micro = scores["spot"]["micro"]
    assert (micro["tp"], micro["fp"], micro["fn"]) == (2, 1, 1)
    assert scores["spot_f1"] == round(2 * 2 / (2 * 2 + 1 + 1), 4)
    assert scores["spot"]["macro"]["fn"] == 1  # the macro was not published at all


def test_micro_spot_on_macro_and_on_blink_are_counted():
    spots = [
        spot(0, 610, 790),
        spot(1, 900, 920),
        spot(2, 900, 921, is_micro=False),
    ]  # a macro spot on the blink
    scores = run(spots, [], TRUTH)
    assert scores["macro_published_as_micro"] == 1
    assert scores["blinks_published_as_micro"] == 1
    assert scores["spot"]["micro"]["fp"] == 2 and scores["spot"]["macro"]["fn"] == 1
    assert scores["spot"]["macro"]["fp"] == 1  # a macro spot on a blink is a macro FP, not a blink


def test_events_past_frames_seen_are_not_expected():
    truth = {"cam0": [ev(10, 60), ev(200, 250), ev(400, 450, kind="blink")]}
    scores = score_run([spot(0, 10, 60), spot(1, 400, 450)], [], truth, {"cam0": 250}, CLASSES)
    assert scores["spot"]["micro"]["fn"] == 0  # 200-250 ends on frame 250, not read
    assert scores["cameras"]["cam0"]["truth_micro"] == 1
    assert scores["blinks_published_as_micro"] == 0  # the blink was cut too
    scores = score_run([spot(0, 10, 60)], [], truth, {"cam0": 251}, CLASSES)
    assert scores["spot"]["micro"]["fn"] == 1


def test_recog_of_unmatched_spot_is_not_scored():
    spots = [spot(0, 10, 60), spot(1, 300, 330), spot(2, 600, 800)]  # 1 matches nothing, 2 hits the macro
    recogs = [recog(0, "positive"), recog(1, "negative"), recog(2, "negative"), recog(7, "negative")]
    rec = run(spots, recogs, TRUTH)["recognition"]
    assert (rec["events"], rec["scored"], rec["unmatched"], rec["no_spot"]) == (4, 1, 3, 1)
    assert rec["acc"] == 1.0 and rec["uf1"] == 1.0


def test_wrong_label_lowers_uf1():
    spots = [spot(0, 10, 60), spot(1, 200, 250)]
    scores = run(spots, [recog(0, "positive"), recog(1, "negative")], TRUTH)
    assert scores["recognition"]["acc"] == 0.5
    assert scores["recog_uf1"] < 1.0


def test_two_cameras_never_cross_match():
    truth = {"cam0": [ev(10, 60, camera="cam0")], "cam1": [ev(300, 350, camera="cam1")]}
    spots = [
        spot(0, 300, 350, camera="cam0"),
        spot(0, 10, 60, camera="cam1"),
    ]  # same event_id on both cameras
    scores = run(spots, [recog(0, "positive", camera="cam0"), recog(0, "positive", camera="cam1")], truth)
    assert scores["spot"]["micro"]["tp"] == 0 and scores["spot"]["micro"]["fp"] == 2
    assert scores["recognition"]["scored"] == 0
    assert scores["cameras"]["cam1"] == {
        "spots": 1,
        "micro": 1,
        "recogs": 1,
        "truth_micro": 1,
        "truth_macro": 0,
        "truth_left_out": {"cut_off": 0, "after_end": 0},
    }
    scores = run(
        [spot(0, 10, 60, camera="cam0"), spot(0, 300, 350, camera="cam1")],
        [recog(0, "positive", camera="cam1")],
        truth,
    )
    assert scores["spot_f1"] == 1.0 and scores["recognition"]["scored"] == 1


def test_latency_percentiles_ordered_with_stages():
    spots = [
        spot(i, 10 + 100 * i, 20 + 100 * i, ms=float(ms), flow_ms=ms / 10)
        for i, ms in enumerate([100, 120, 150, 900, 130, 110])
    ]
    lat = run(spots, [], TRUTH)["spot_latency_ms"]
    assert lat["n"] == 6
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"] == 900.0
    assert set(lat["stages"]) == {"flow_ms"}
    assert lat["stages"]["flow_ms"]["p50"] <= lat["stages"]["flow_ms"]["p99"]


def test_unknown_latencies_are_left_out():
    """-1 marks an event whose crops were gone before it could be timed: not a fast event."""
    spots = [spot(0, 10, 60, ms=-1.0, face_ms=-1.0), spot(1, 200, 250, ms=180.0, face_ms=0.5)]
    lat = run(spots, [], TRUTH)["spot_latency_ms"]
    assert lat["n"] == 1 and lat["p50"] == 180.0 and lat["stages"]["face_ms"]["p50"] == 0.5


def test_empty_run_gives_zeros_not_nan():
    scores = run([], [], TRUTH)
    for key in ("spot_latency_ms", "recog_latency_ms"):
        assert scores[key] == {"n": 0, "p50": 0.0, "p99": 0.0, "max": 0.0, "stages": {}}
    assert scores["spot_f1"] == 0.0 and scores["spot"]["micro"]["fn"] == 3  # three missed: a real zero
    assert scores["recog_uf1"] is None  # no clip to score: no figure
    json.dumps(scores, allow_nan=False)
    lines = format_scores(scores)
    assert 2 <= len(lines) <= 5 and "spot n/a (no spot events)" in lines[-1]
    assert "recognition: UF1 n/a (no recognised clip matched a micro-expression)" in lines[2]


def test_format_scores_lines():
    spots = [spot(0, 10, 60, ms=180.0), spot(1, 900, 920)]
    lines = format_scores(run(spots, [recog(0, "positive", ms=300.0)], TRUTH))
    assert 2 <= len(lines) <= 5
    assert lines[0] == "scored cameras cam0 against their ground truth (3 micro-expressions)"
    assert lines[1].startswith("spotting: micro F1 0.40 (TP 1, FP 1, FN 2)")
    assert "blinks as micro 1" in lines[1] and "macro F1" not in lines[1]
    assert "macro: not spotted by this model (1 in the ground truth)" in lines[1]
    assert "UF1 1.00" in lines[2] and "over 1 matched clips" in lines[2]
    assert "recog p50 300 ms" in lines[3]


def test_a_run_with_nothing_to_score_reads_na_not_zero():
    """A short run: no truth ended inside it and nothing was published. 0.00 would read as a
    model that got everything wrong."""
    truth = {"cam0": [ev(10, 60), ev(200, 250, kind="macro"), ev(400, 450)]}
    scores = score_run([], [], truth, {"cam0": 30}, CLASSES)
    assert scores["spot_f1"] is None and scores["recog_uf1"] is None
    assert scores["truth_left_out"] == {"cut_off": 1, "after_end": 2}
    assert scores["cameras"]["cam0"]["truth_left_out"] == {"cut_off": 1, "after_end": 2}
    lines = format_scores(scores)
    assert lines[0] == (
        "scored cameras cam0 against their ground truth (0 micro-expressions; left out 1 cut "
        "off by the run's end and 2 after it)"
    )
    assert lines[1].startswith("spotting: micro F1 n/a (TP 0, FP 0, FN 0)")
    assert "0.00" not in "\n".join(lines)


def test_macro_f1_is_in_the_headline_only_for_a_macro_model():
    spots = [spot(0, 10, 60), spot(3, 600, 800, is_micro=False)]
    scores = score_run(spots, [], TRUTH, {"cam0": 1000}, CLASSES, macro_model=True)
    assert "macro F1 1.00 (TP 1, FP 0, FN 0)" in format_scores(scores)[1]
    assert "macro F1" not in format_scores(run(spots, [], TRUTH))[1]


@pytest.mark.parametrize("field", ["onset_frame", "offset_frame", "score", "is_micro", "event_id", "latency"])
def test_spot_missing_field_is_named(field):
    bad = spot(5, 10, 60)
    del bad[field]
    with pytest.raises(ValueError, match=field) as info:
        run([bad], [], TRUTH)
    assert "cam0" in str(info.value)
    if field != "event_id":
        assert "event_id 5" in str(info.value)


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"onset_frame": 70}, "offset"),
        ({"onset_frame": 1.5}, "onset"),
        ({"score": float("nan")}, "score"),
        ({"is_micro": "yes"}, "is_micro"),
        ({"latency": {"flow_ms": 1.0}}, "capture_to_publish_ms"),
        ({"latency": {"capture_to_publish_ms": None}}, "capture_to_publish_ms"),
    ],
)
def test_spot_bad_value_is_named(change, needle):
    with pytest.raises(ScoringError, match=needle) as info:
        run([{**spot(5, 10, 60), **change}], [], TRUTH)
    assert "event_id 5" in str(info.value)


def test_bad_recog_truth_and_duplicates_raise():
    bad = recog(3, "positive")
    del bad["label"]
    with pytest.raises(ScoringError, match="event_id 3.*'label'"):
        run([], [bad], TRUTH)
    with pytest.raises(ScoringError, match="'happy'"):
        run([], [recog(3, "happy")], TRUTH)
    with pytest.raises(ScoringError, match="duplicate"):
        run([spot(1, 10, 60), spot(1, 200, 250)], [], TRUTH)
    with pytest.raises(ScoringError, match="frames_seen"):
        score_run([], [], TRUTH, {}, CLASSES)
    with pytest.raises(ScoringError, match="'surprise'"):
        score_run([], [], TRUTH, {"cam0": 1000}, ["positive", "negative", "others"])


def test_module_imports_no_torch_or_models():
    code = (
        "import sys, mestream.engine.scoring; "
        "bad = [m for m in sys.modules "
        "if m == 'torch' or m.startswith(('mestream.models', 'mestream.cameras'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
