"""The end-of-run summary: its printed lines and the ``--summary`` file's fields."""

from __future__ import annotations

import json

from mestream.engine.scoring import latency_summary
from mestream.engine.summary import Summary


def summary(scores: dict | None = None, camera: str = "cam0, side") -> Summary:
    return Summary(
        camera=camera,
        source="synthetic; video",
        seconds=2.0,
        frames_in=2000,
        frames_out=2000,
        fps=1000.0,
        drops={"camera": 0},
        events={"mestream.health": 4, "mestream.spot": 3, "mestream.recog": 2},
        stats_messages=6,
        spots=3,
        recognitions=2,
        scores=scores or {},
    )


def test_events_count_events_by_topic_and_stats_messages_apart():
    """`events` once held the number of stats messages; a reader took it for events published."""
    s = summary()
    data = s.as_json()
    assert data["events"] == {"mestream.health": 4, "mestream.spot": 3, "mestream.recog": 2}
    assert data["stats_messages"] == 6
    assert "events published: 3 spot, 2 recog, 4 health; 6 stats messages" in s.format()
    json.dumps(data, allow_nan=False)


def test_nothing_to_score_is_null_in_the_file_and_na_on_screen():
    empty = {"spot_latency_ms": latency_summary([]), "recog_latency_ms": latency_summary([])}
    data = summary(empty).as_json()
    assert data["spot_f1"] is None and data["recog_uf1"] is None
    assert data["spot_latency_ms"] == {"p50": None, "p99": None}
    assert "latency: spot n/a (no spot events); recog n/a (no recog events)" in summary(empty).format()


def test_cameras_without_ground_truth_are_named_as_not_scored():
    scores = {
        "spot": {
            "micro": {"tp": 0, "fp": 0, "fn": 0, "f1": 0.0},
            "macro": {"tp": 0, "fp": 0, "fn": 0, "f1": 0.0},
        },
        "iou_threshold": 0.5,
        "macro_published_as_micro": 0,
        "blinks_published_as_micro": 0,
        "recognition": {"scored": 0, "events": 0, "unmatched": 0, "uf1": None, "acc": None},
        "cameras": {"cam0": {"truth_micro": 0}},
        "truth_left_out": {"cut_off": 0, "after_end": 0},
        "spot_latency_ms": latency_summary([]),
        "recog_latency_ms": latency_summary([]),
    }
    text = summary(scores).format()
    assert "scored cameras cam0 against their ground truth" in text
    assert "not scored: side (no ground truth" in text
    assert "not scored" not in summary(scores, camera="cam0").format()
