"""Score a run's published spot and recognition events against the synthetic camera's ground truth.

Why a module of its own: the end-of-run summary must score exactly what a subscriber saw (the
payload dicts, not the stages' internal objects), so this works on plain dicts and leans on
`mestream.engine.metrics` for every figure, keeping the live summary and ``mestream eval``
comparable. numpy only: scoring a run must not need the training extra (torch).

Ground truth is duck-typed (``camera``, ``kind``, ``onset_frame``, ``offset_frame``,
``four_class``), so importing this module does not pull in the synthetic camera.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mestream.engine.metrics import Interval, MetricError, iou, megc_metric, recognition_metrics

if TYPE_CHECKING:
    from mestream.cameras.synthetic.schedule import Event

IOU_THRESHOLD = 0.5
LATENCY_KEY = "capture_to_publish_ms"
SPOT_FIELDS = ("camera", "event_id", "onset_frame", "offset_frame", "score", "is_micro", "latency")
RECOG_FIELDS = ("camera", "event_id", "label", "latency")


class ScoringError(ValueError):
    """A published event or the ground truth cannot be scored; the message names the event and field."""


def _where(event: Mapping[str, Any], topic: str) -> str:
    return f"{topic} event (camera {event.get('camera')!r}, event_id {event.get('event_id')!r})"


def _require(event: Mapping[str, Any], fields: Sequence[str], topic: str) -> None:
    if not isinstance(event, Mapping):
        raise ScoringError(f"{topic} event must be a dict, got {type(event).__name__}")
    for name in fields:
        if name not in event:
            raise ScoringError(f"{_where(event, topic)}: missing field {name!r}")
    latency = event["latency"]
    if not isinstance(latency, Mapping) or LATENCY_KEY not in latency:
        raise ScoringError(f"{_where(event, topic)}: field 'latency' must be a dict with {LATENCY_KEY!r}")
    for key, value in latency.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(float(value)):
            raise ScoringError(
                f"{_where(event, topic)}: latency[{key!r}] must be a finite number, got {value!r}"
            )


def _spot_interval(spot: Mapping[str, Any]) -> Interval:
    if not isinstance(spot["is_micro"], (bool, np.bool_)):
        raise ScoringError(
            f"{_where(spot, 'spot')}: field 'is_micro' must be a bool, got {spot['is_micro']!r}"
        )
    try:  # Interval checks the frame numbers and score; re-raise naming the event they came from
        return Interval(
            str(spot["camera"]),
            spot["onset_frame"],
            spot["offset_frame"],
            spot["score"],
            "micro" if spot["is_micro"] else "macro",
        )
    except MetricError as exc:
        raise ScoringError(f"{_where(spot, 'spot')}: {exc}") from None


def _best(pred: Interval, truth: Sequence[Interval]) -> tuple[float, int]:
    """Best IoU of ``pred`` over ``truth`` (other videos give 0) and its index; (0.0, -1) for none."""
    ious = [iou(pred, t) for t in truth]
    if not ious:
        return 0.0, -1
    k = int(np.argmax(ious))
    return float(ious[k]), k


def latency_summary(events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Percentiles of capture-to-publish and of every other stage key; zeros (not NaN) when empty.
    A negative value means unknown (an event whose crops were gone before it was timed): left out."""

    def stats(values: list[float]) -> dict[str, float]:
        if not values:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        p50, p99 = np.percentile(values, [50, 99])
        return {"p50": round(float(p50), 3), "p99": round(float(p99), 3), "max": round(float(max(values)), 3)}

    totals = [float(e["latency"][LATENCY_KEY]) for e in events if float(e["latency"][LATENCY_KEY]) >= 0]
    stages: dict[str, list[float]] = {}
    for e in events:
        for key, value in e["latency"].items():
            if key != LATENCY_KEY and float(value) >= 0:
                stages.setdefault(key, []).append(float(value))
    return {
        "n": len(totals),
        **stats(totals),
        "stages": {k: {q: v for q, v in stats(vs).items() if q != "max"} for k, vs in sorted(stages.items())},
    }


def _rounded(value: Any, digits: int = 4) -> Any:
    """Plain, rounded Python numbers all the way down, so the summary is JSON as-is."""
    if isinstance(value, Mapping):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v, digits) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return round(float(value), digits)
    return value


def score_run(
    spots: Sequence[Mapping[str, Any]],
    recogs: Sequence[Mapping[str, Any]],
    truth: Mapping[str, Sequence[Event]],
    frames_seen: Mapping[str, int],
    classes: Sequence[str],
    iou_threshold: float = IOU_THRESHOLD,
    macro_model: bool = False,
) -> dict[str, Any]:
    """Spotting (MEGC), recognition (UF1 on matched spots), latency and per-camera counts of one run.

    A ground-truth event counts only if it ended before the run stopped reading its camera
    (``offset_frame < frames_seen[camera]``): one cut by the end of the run could not be spotted.
    Those left out are counted in ``truth_left_out`` (``cut_off``: began before the end;
    ``after_end``: began after it), since a camera's ground truth may run past the run.
    ``spot_f1`` is None when there was nothing to score (no true and no published micro-expression),
    ``recog_uf1`` when no recognition matched one: 0.0 would read as a model that got all wrong.
    Blinks (and head turns) are never expected; blinks only feed ``blinks_published_as_micro``.
    ``macro_model`` says the spotter was trained to find macro-expressions; MESNet's demo weights
    were not (a long spot is "macro" by DFME's duration rule only), so the headline leaves macro F1 out.
    A recognition is scored only when its spot overlaps a true micro-expression (best IoU >=
    ``iou_threshold``), so recognition reflects the classifier, not the spotter's misses.
    """
    for event in spots:
        _require(event, SPOT_FIELDS, "spot")
    for event in recogs:
        _require(event, RECOG_FIELDS, "recog")
        if event["label"] not in classes:
            raise ScoringError(
                f"{_where(event, 'recog')}: label {event['label']!r} is not one of {list(classes)}"
            )
    expected: dict[str, list[Interval]] = {"micro": [], "macro": [], "blink": []}
    micro_class: list[str] = []  # four_class of expected["micro"][k]
    left_out: dict[str, dict[str, int]] = {}  # camera → micro and macro truth {"cut_off": n, "after_end": n}
    for camera, events in truth.items():
        if camera not in frames_seen:
            raise ScoringError(f"truth for camera {camera!r} but frames_seen has no entry for it")
        left_out[str(camera)] = {"cut_off": 0, "after_end": 0}
        for ev in events:
            if ev.kind not in expected:
                continue
            if ev.offset_frame >= int(frames_seen[camera]):
                if ev.kind != "blink":
                    began = ev.onset_frame < int(frames_seen[camera])
                    left_out[str(camera)]["cut_off" if began else "after_end"] += 1
                continue
            if ev.kind == "micro" and ev.four_class not in classes:
                raise ScoringError(f"truth {ev!r}: class {ev.four_class!r} is not one of {list(classes)}")
            try:  # blinks are scored as "micro" only to get a valid Interval
                expected[ev.kind].append(
                    Interval(
                        str(camera),
                        ev.onset_frame,
                        ev.offset_frame,
                        1.0,
                        "macro" if ev.kind == "macro" else "micro",
                    )
                )
            except MetricError as exc:
                raise ScoringError(f"truth of camera {camera!r}: {exc}") from None
            if ev.kind == "micro":
                micro_class.append(ev.four_class)

    pred = [_spot_interval(s) for s in spots]
    by_id: dict[tuple[str, Any], Interval] = {}
    for spot, interval in zip(spots, pred):
        key = (interval.video, spot["event_id"])
        if key in by_id:
            raise ScoringError(f"{_where(spot, 'spot')}: duplicate event_id for this camera")
        by_id[key] = interval
    micro_pred = [p for p in pred if p.kind == "micro"]
    spot = megc_metric(pred, expected["micro"] + expected["macro"], iou_threshold)

    y_true: list[str] = []
    y_pred: list[str] = []
    no_spot = 0
    for rec in recogs:
        spotted = by_id.get((str(rec["camera"]), rec["event_id"]))
        if spotted is None:
            no_spot += 1
            continue
        best, k = _best(spotted, expected["micro"])
        if best >= iou_threshold:
            y_true.append(micro_class[k])
            y_pred.append(rec["label"])
    recognition = {
        **recognition_metrics(y_true, y_pred, classes),
        "events": len(recogs),
        "scored": len(y_true),
        "unmatched": len(recogs) - len(y_true),
        "no_spot": no_spot,
    }
    if not y_true:  # nothing matched: no figure, rather than a zero that reads as all wrong
        recognition.update(acc=None, uf1=None, uar=None)
    micro = spot["micro"]

    names = sorted({*map(str, frames_seen), *(p.video for p in pred), *(str(r["camera"]) for r in recogs)})
    cameras = {
        c: {
            "spots": sum(p.video == c for p in pred),
            "micro": sum(p.video == c for p in micro_pred),
            "recogs": sum(str(r["camera"]) == c for r in recogs),
            "truth_micro": sum(t.video == c for t in expected["micro"]),
            "truth_macro": sum(t.video == c for t in expected["macro"]),
            "truth_left_out": left_out.get(c, {"cut_off": 0, "after_end": 0}),
        }
        for c in names
    }

    return _rounded(
        {
            "iou_threshold": iou_threshold,
            "spot_f1": micro["f1"] if micro["tp"] + micro["fp"] + micro["fn"] else None,
            "recog_uf1": recognition["uf1"],
            "spot": spot,
            "macro_model": macro_model,
            "truth_left_out": {k: sum(c[k] for c in left_out.values()) for k in ("cut_off", "after_end")},
            "macro_published_as_micro": sum(
                _best(p, expected["macro"])[0] >= iou_threshold for p in micro_pred
            ),
            "blinks_published_as_micro": sum(
                _best(p, expected["blink"])[0] >= iou_threshold for p in micro_pred
            ),
            "recognition": recognition,
            "spot_latency_ms": latency_summary(spots),
            "recog_latency_ms": latency_summary(recogs),
            "cameras": cameras,
        }
    )


def _f(value: float | None) -> str:
    """A score as printed: "n/a" where there was nothing to score."""
    return "n/a" if value is None else f"{value:.2f}"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _f1(counts: Mapping[str, Any]) -> str:
    return _f(counts["f1"] if counts["tp"] + counts["fp"] + counts["fn"] else None)


def format_scores(scores: Mapping[str, Any]) -> list[str]:
    """A few human lines for the end-of-run summary; the JSON keeps the detail. Without ground
    truth (a real camera) only the latency line."""
    lines = []
    if "spot" in scores:
        lines += _score_lines(scores)
    parts = []
    for name, key in (("spot", "spot_latency_ms"), ("recog", "recog_latency_ms")):
        lat = scores[key]
        parts.append(
            f"{name} p50 {lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms (n {lat['n']})"
            if lat["n"]
            else f"{name} n/a (no {name} events)"
        )
    lines.append("latency: " + "; ".join(parts))
    return lines


def _score_lines(scores: Mapping[str, Any]) -> list[str]:
    micro, macro, rec = scores["spot"]["micro"], scores["spot"]["macro"], scores["recognition"]
    if scores.get("macro_model"):
        macro_part = f"macro F1 {_f1(macro)} (TP {macro['tp']}, FP {macro['fp']}, FN {macro['fn']})"
    else:
        macro_part = f"macro: not spotted by this model ({macro['fn'] + macro['tp']} in the ground truth)"
    cameras = scores.get("cameras") or {}
    left = scores.get("truth_left_out") or {}
    cut = (
        f"; left out {left.get('cut_off', 0)} cut off by the run's end and "
        f"{left.get('after_end', 0)} after it"
        if left.get("cut_off") or left.get("after_end")
        else ""
    )
    scored = rec["scored"]
    recognised = (
        f"UF1 {_f(rec['uf1'])}, ACC {_f(rec['acc'])} over {scored} matched clips"
        if scored
        else "UF1 n/a (no recognised clip matched a micro-expression)"
    )
    return [
        f"scored cameras {', '.join(cameras) or 'none'} against their ground truth "
        f"({_plural(sum(c['truth_micro'] for c in cameras.values()), 'micro-expression')}{cut})",
        f"spotting: micro F1 {_f1(micro)} (TP {micro['tp']}, FP {micro['fp']}, FN {micro['fn']}) at IoU ≥ "
        f"{scores['iou_threshold']:g}; {macro_part}; macro published as micro "
        f"{scores['macro_published_as_micro']}, blinks as micro {scores['blinks_published_as_micro']}",
        f"recognition: {recognised} ({rec['unmatched']} of {rec['events']} recognised spots matched no "
        f"micro-expression)",
    ]
