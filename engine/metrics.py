"""Spotting and recognition metrics shared by training, ``mestream eval`` and the benchmarks.

numpy only (no torch), so the evaluation of a run's JSONL log needs no training extra.

Spotting works on :class:`Interval` (inclusive frame numbers, one video each):

- :func:`mesnet_metric` is MESNet's Eq. 15 (Wang et al., section IV-A): a spotted interval is a
  true positive when its IoU with *some* ground truth of the same video reaches ``T_eval``; recall
  counts ground truths found by at least one spotted interval. Several spotted intervals may
  therefore claim the same ground truth (the paper's Fig. 6), which MEGC's one-to-one rule forbids.
- :func:`megc_metric` is the MEGC pooled metric: one-to-one matching per video and per kind, TP /
  FP / FN summed over videos, reported for micro, macro and overall.

Recognition: :func:`recognition_metrics` (ACC, UF1, UAR as in DFME), :func:`apex_error` (MECIA
Eq. 14), :func:`keyframe_deviation` (GAMDSS Eq. 15-17), :func:`within_tolerance`.

Zero divisions (no predictions, no ground truth, no clips) give 0.0 rather than NaN, so tables
and JSON model cards stay printable; the raw counts are always returned next to the ratios.
"""

from __future__ import annotations

import numbers
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

KINDS = ("micro", "macro")


class MetricError(ValueError):
    """Bad metric input (an impossible interval, mismatched lengths, an unknown label)."""


def _ratio(num: float, den: float) -> float:
    """num / den, or 0.0 when den is 0 (see the module docstring)."""
    return float(num) / float(den) if den else 0.0


@dataclass(frozen=True)
class Interval:
    """One spotted or ground-truth interval.

    Args:
        video: the video (or camera) the frames belong to; intervals of different videos never match.
        onset: first frame of the interval, inclusive.
        offset: last frame, inclusive (``offset >= onset``).
        score: the spotter's confidence; orders MEGC matching, 1.0 for ground truth.
        kind: ``"micro"`` or ``"macro"``.
    """

    video: str
    onset: int
    offset: int
    score: float = 1.0
    kind: str = "micro"

    def __post_init__(self) -> None:
        for name in ("onset", "offset"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise MetricError(
                    f"interval {self.video!r}: {name} must be an integer frame number, got {value!r}"
                )
            object.__setattr__(self, name, int(value))
        if self.offset < self.onset:
            raise MetricError(f"interval {self.video!r}: offset {self.offset} is before onset {self.onset}")
        if self.kind not in KINDS:
            raise MetricError(
                f"interval {self.video!r} [{self.onset}, {self.offset}]: kind must be one of "
                f"{', '.join(KINDS)}, got {self.kind!r}"
            )
        if (
            not isinstance(self.score, numbers.Real)
            or isinstance(self.score, bool)
            or not np.isfinite(self.score)
        ):
            raise MetricError(
                f"interval {self.video!r} [{self.onset}, {self.offset}]: score must be a finite "
                f"number, got {self.score!r}"
            )
        object.__setattr__(self, "video", str(self.video))
        object.__setattr__(self, "score", float(self.score))

    @property
    def length(self) -> int:
        """Number of frames, both ends included."""
        return self.offset - self.onset + 1


def iou(a: Interval, b: Interval) -> float:
    """Intersection over union of the two inclusive frame sets; 0.0 across different videos."""
    if a.video != b.video:
        return 0.0
    inter = min(a.offset, b.offset) - max(a.onset, b.onset) + 1
    if inter <= 0:
        return 0.0
    return inter / (a.length + b.length - inter)


def _iou_matrix(pred: Sequence[Interval], truth: Sequence[Interval]) -> np.ndarray:
    """IoU of every (pred, truth) pair of one video, shape (len(pred), len(truth))."""
    if not pred or not truth:
        return np.zeros((len(pred), len(truth)))
    p = np.array([(i.onset, i.offset) for i in pred], dtype=np.int64)
    t = np.array([(i.onset, i.offset) for i in truth], dtype=np.int64)
    inter = np.minimum(p[:, None, 1], t[None, :, 1]) - np.maximum(p[:, None, 0], t[None, :, 0]) + 1
    inter = np.clip(inter, 0, None)
    union = (p[:, 1] - p[:, 0] + 1)[:, None] + (t[:, 1] - t[:, 0] + 1)[None, :] - inter
    return inter / union


def _by_video(intervals: Iterable[Interval]) -> dict[str, list[Interval]]:
    groups: dict[str, list[Interval]] = defaultdict(list)
    for item in intervals:
        if not isinstance(item, Interval):
            raise MetricError(f"expected Interval objects, got {type(item).__name__}: {item!r}")
        groups[item.video].append(item)
    return groups


def _check_threshold(name: str, value: float) -> float:
    if not 0.0 < float(value) <= 1.0:
        raise MetricError(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


def mesnet_metric(
    pred: Iterable[Interval], truth: Iterable[Interval], t_eval: float = 0.5, kind: str | None = None
) -> dict[str, float]:
    """MESNet's spotting metric (Eq. 15): recall = a/m, precision = b/n, F1 = 2ab / (an + bm).

    ``a`` ground truths (of ``m``) are found by at least one spotted interval with IoU >= t_eval in
    the same video; ``b`` spotted intervals (of ``n``) are true positives. Many spotted intervals
    may hit one ground truth: each counts in ``b`` but the ground truth counts once in ``a``.

    Args:
        pred: spotted intervals.
        truth: ground-truth intervals.
        t_eval: the evaluation threshold T_eval (the paper's default 0.5).
        kind: score only intervals of this kind on both sides; None scores all (kinds ignored).

    Returns:
        ``{a, m, b, n, recall, precision, f1}``; ratios with a zero denominator are 0.0.
    """
    t_eval = _check_threshold("t_eval", t_eval)
    if kind is not None and kind not in KINDS:
        raise MetricError(f"kind must be one of {', '.join(KINDS)} or None, got {kind!r}")
    preds = _by_video(p for p in pred if kind is None or p.kind == kind)
    truths = _by_video(t for t in truth if kind is None or t.kind == kind)
    a = b = 0
    for video in set(preds) | set(truths):
        hits = _iou_matrix(preds.get(video, []), truths.get(video, [])) >= t_eval
        if hits.size:
            b += int(hits.any(axis=1).sum())
            a += int(hits.any(axis=0).sum())
    m = sum(len(v) for v in truths.values())
    n = sum(len(v) for v in preds.values())
    recall, precision = _ratio(a, m), _ratio(b, n)
    return {
        "a": a,
        "m": m,
        "b": b,
        "n": n,
        "recall": recall,
        "precision": precision,
        "f1": _ratio(2 * a * b, a * n + b * m),
    }


def _counts(tp: int, fp: int, fn: int) -> dict[str, float]:
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


MATCH_POLICIES = ("greedy", "next_best")


def _match_one_to_one(
    pred: Sequence[Interval], truth: Sequence[Interval], threshold: float, policy: str
) -> int:
    """Number of one-to-one matches, predictions visited by descending score (ties: earlier onset)."""
    ious = _iou_matrix(pred, truth)
    if not ious.size:
        return 0
    taken = np.zeros(len(truth), dtype=bool)
    order = sorted(range(len(pred)), key=lambda i: (-pred[i].score, pred[i].onset, pred[i].offset))
    matches = 0
    for i in order:
        row = ious[i] if policy == "greedy" else np.where(taken, -1.0, ious[i])
        j = int(np.argmax(row))
        if row[j] >= threshold and not taken[j]:
            taken[j] = True
            matches += 1
    return matches


def megc_metric(
    pred: Iterable[Interval], truth: Iterable[Interval], iou_threshold: float = 0.5, policy: str = "greedy"
) -> dict[str, dict[str, float]]:
    """MEGC's pooled spotting metric: one-to-one matches per video and kind, counts summed over videos.

    Matching follows the public MEGC spotting code (SoftNet-SpotME's evaluation, a VOC-style
    matcher): predictions are visited by descending ``score`` and each takes the ground truth of the same
    video and kind with the highest IoU, if that IoU is >= ``iou_threshold`` and no earlier
    prediction took it; otherwise the prediction is a false positive (``policy="greedy"``, the
    VOC rule the challenge code uses). ``policy="next_best"`` lets such a prediction take its next
    best free ground truth above the threshold instead; the two differ only where ground truths
    overlap, and next_best never gives fewer TP.
    A prediction's kind decides which ground truths it may match: a micro prediction that lands on
    a macro expression is a micro FP and leaves the macro ground truth a FN.

    Returns:
        ``{"micro": {...}, "macro": {...}, "overall": {...}}``, each ``{tp, fp, fn, precision,
        recall, f1}``; overall sums the counts over kinds before taking ratios.
    """
    iou_threshold = _check_threshold("iou_threshold", iou_threshold)
    if policy not in MATCH_POLICIES:
        raise MetricError(f"policy must be one of {', '.join(MATCH_POLICIES)}, got {policy!r}")
    preds, truths = _by_video(pred), _by_video(truth)
    result: dict[str, dict[str, float]] = {}
    totals = np.zeros(3, dtype=np.int64)
    for kind in KINDS:
        tp = fp = fn = 0
        for video in set(preds) | set(truths):
            p = [i for i in preds.get(video, []) if i.kind == kind]
            t = [i for i in truths.get(video, []) if i.kind == kind]
            matched = _match_one_to_one(p, t, iou_threshold, policy)
            tp, fp, fn = tp + matched, fp + len(p) - matched, fn + len(t) - matched
        result[kind] = _counts(tp, fp, fn)
        totals += (tp, fp, fn)
    result["overall"] = _counts(*(int(x) for x in totals))
    return result


# --------------------------------------------------------------------------- recognition


def _label_indices(labels: Sequence[Any], classes: Sequence[str], what: str) -> np.ndarray:
    index = {name: i for i, name in enumerate(classes)}
    out = np.empty(len(labels), dtype=np.int64)
    for k, label in enumerate(labels):
        if isinstance(label, str):
            if label not in index:
                raise MetricError(f"{what}[{k}] = {label!r} is not one of the classes {list(classes)}")
            out[k] = index[label]
        elif isinstance(label, numbers.Integral) and not isinstance(label, bool):
            if not 0 <= int(label) < len(classes):
                raise MetricError(f"{what}[{k}] = {label} is not a class index in [0, {len(classes)})")
            out[k] = int(label)
        else:
            raise MetricError(f"{what}[{k}] = {label!r}: labels must be class names or integer indices")
    return out


def recognition_metrics(
    y_true: Sequence[Any], y_pred: Sequence[Any], classes: Sequence[str]
) -> dict[str, Any]:
    """ACC, UF1 (macro F1) and UAR (unweighted average recall) as DFME defines them (Eq. 9-11).

    Labels are class names or integer indices into ``classes``. A class with no support and no
    predictions says nothing about the classifier, so it is left out of both averages: UF1 averages
    the classes that occur in ``y_true`` or ``y_pred`` (listed under ``uf1_classes``; a class only
    predicted adds F1 = 0), UAR averages the classes with support (``uar_classes``; recall of a
    class that never occurs is undefined). With no clips every figure is 0.0.

    Returns:
        ``{acc, uf1, uar, n, confusion, per_class, uf1_classes, uar_classes}``; ``confusion`` is a
        list of lists, rows = true class, columns = predicted class, both in ``classes`` order;
        ``per_class`` maps each class to ``{precision, recall, f1, support}``.
    """
    classes = [str(c) for c in classes]
    if not classes or len(set(classes)) != len(classes):
        raise MetricError(f"classes must be a non-empty list of distinct names, got {classes}")
    if len(y_true) != len(y_pred):
        raise MetricError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}")
    t = _label_indices(list(y_true), classes, "y_true")
    p = _label_indices(list(y_pred), classes, "y_pred")
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (t, p), 1)
    tp = np.diag(confusion)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    per_class: dict[str, dict[str, float]] = {}
    for i, name in enumerate(classes):
        fp, fn = predicted[i] - tp[i], support[i] - tp[i]
        per_class[name] = {
            "precision": _ratio(tp[i], predicted[i]),
            "recall": _ratio(tp[i], support[i]),
            "f1": _ratio(2 * tp[i], 2 * tp[i] + fp + fn),
            "support": int(support[i]),
        }
    uf1_classes = [c for i, c in enumerate(classes) if support[i] or predicted[i]]
    uar_classes = [c for i, c in enumerate(classes) if support[i]]
    return {
        "acc": _ratio(tp.sum(), len(t)),
        "uf1": float(np.mean([per_class[c]["f1"] for c in uf1_classes])) if uf1_classes else 0.0,
        "uar": float(np.mean([per_class[c]["recall"] for c in uar_classes])) if uar_classes else 0.0,
        "n": int(len(t)),
        "confusion": confusion.tolist(),
        "per_class": per_class,
        "uf1_classes": uf1_classes,
        "uar_classes": uar_classes,
    }


def _positions(
    true_apex: npt.ArrayLike, pred_apex: npt.ArrayLike, length: npt.ArrayLike, length_name: str
) -> tuple[np.ndarray, ...]:
    try:
        t, p, n = (np.asarray(x, dtype=np.float64) for x in (true_apex, pred_apex, length))
    except (TypeError, ValueError) as exc:
        raise MetricError(
            f"apex positions and {length_name} must be numbers (drop clips without an apex first): {exc}"
        ) from exc
    try:
        t, p, n = np.broadcast_arrays(t, p, n)
    except ValueError as exc:
        raise MetricError(f"apex arrays and {length_name} do not have matching shapes: {exc}") from exc
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
        raise MetricError("apex positions must be finite numbers (drop clips without an apex first)")
    if np.any(n <= 0) or not np.all(np.isfinite(n)):
        raise MetricError(f"{length_name} must be positive, got {n[(n <= 0) | ~np.isfinite(n)][:5].tolist()}")
    return t, p, n


def _scalar_or_array(values: np.ndarray, *inputs: npt.ArrayLike) -> float | np.ndarray:
    return float(values) if all(np.ndim(x) == 0 for x in inputs) else values


def apex_error(
    true_apex: npt.ArrayLike, pred_apex: npt.ArrayLike, clip_length: npt.ArrayLike
) -> float | np.ndarray:
    """MECIA's apex error (Eq. 14): |p_GT - p_inf| / l_GT, elementwise.

    ``clip_length`` is l_GT, the length of the ground-truth clip in frames (the caller decides
    whether that is ``offset - onset + 1``). Scalars in, float out; arrays in, array out. The paper
    reports the mean over clips: use :func:`mean_apex_error`.
    """
    t, p, n = _positions(true_apex, pred_apex, clip_length, "clip_length")
    return _scalar_or_array(np.abs(t - p) / n, true_apex, pred_apex, clip_length)


def mean_apex_error(true_apex: npt.ArrayLike, pred_apex: npt.ArrayLike, clip_length: npt.ArrayLike) -> float:
    """Mean of :func:`apex_error` over clips (MECIA's reported figure); 0.0 for no clips."""
    errors = np.atleast_1d(apex_error(true_apex, pred_apex, clip_length))
    return float(errors.mean()) if errors.size else 0.0


def keyframe_deviation(
    f_re: npt.ArrayLike,
    f_orig: npt.ArrayLike,
    L: npt.ArrayLike,  # noqa: N803 (the paper's name)
    fps: npt.ArrayLike,
) -> dict[str, float | np.ndarray]:
    """GAMDSS's key-frame deviation between a re-selected and an original key frame.

    Args:
        f_re: index of the re-selected key frame (GAMDSS's re-annotation, or our prediction).
        f_orig: index of the original (manual) annotation.
        L: total number of frames of the micro-expression sequence.
        fps: the dataset's frame rate.

    Returns:
        ``{"d_percent": |f_re - f_orig| / L x 100 (Eq. 15), "d_ms": |f_re - f_orig| x 1000 / FPS
        (Eq. 16)}``, floats for scalar input, arrays otherwise. Eq. 17 (the mean over onset, apex
        and offset) is :func:`mean_deviation_ms`.
    """
    re, orig, length = _positions(f_re, f_orig, L, "L")
    rate = np.asarray(fps, dtype=np.float64)
    if np.any(rate <= 0) or not np.all(np.isfinite(rate)):
        raise MetricError(f"fps must be positive, got {fps!r}")
    delta = np.abs(re - orig)
    inputs = (f_re, f_orig, L, fps)
    return {
        "d_percent": _scalar_or_array(delta / length * 100.0, *inputs),
        "d_ms": _scalar_or_array(delta * 1000.0 / rate, *inputs),
    }


def mean_deviation_ms(d_ms: Mapping[str, Any]) -> float:
    """GAMDSS Eq. 17: the mean over key-frame types K (onset, apex, offset) of D_ms^(k).

    ``d_ms`` maps each key-frame type to its D(ms) value, or to an array over clips (averaged
    first). A type with no values is left out (it has no deviation, not a zero one); 0.0 when
    no type has any.
    """
    per_type = [float(np.mean(np.asarray(v, dtype=np.float64))) for v in d_ms.values() if np.size(v)]
    return float(np.mean(per_type)) if per_type else 0.0


def within_tolerance(
    true_apex: npt.ArrayLike, pred_apex: npt.ArrayLike, clip_length: npt.ArrayLike, fraction: float = 0.1
) -> float:
    """Share of clips whose predicted apex is within ±fraction·clip_length of the true apex (0.0 for none)."""
    if not 0.0 <= float(fraction):
        raise MetricError(f"fraction must be >= 0, got {fraction!r}")
    t, p, n = _positions(true_apex, pred_apex, clip_length, "clip_length")
    ok = np.atleast_1d(np.abs(t - p) <= fraction * n)
    return float(ok.mean()) if ok.size else 0.0


# --------------------------------------------------------------------------- printing


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):.{digits}f}"
    return str(value)


def _grid(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int) -> list[str]:
    cells = [[str(h) for h in header]] + [[_cell(v, digits) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def format_table(metrics: Mapping[str, Any], title: str | None = None, digits: int = 3) -> str:
    """A fixed-width text table of a metrics dict, for terminals and logs.

    Understands the shapes this module returns: :func:`megc_metric` (one row per kind),
    :func:`recognition_metrics` (summary, per-class rows and the confusion matrix) and flat dicts
    such as :func:`mesnet_metric` (one row per key); nested dicts of numbers become one row each.
    """
    lines = [title] if title else []
    if "per_class" in metrics and "confusion" in metrics:
        summary = [k for k in ("acc", "uf1", "uar", "n") if k in metrics]
        lines += _grid(summary, [[metrics[k] for k in summary]], digits)
        per_class = metrics["per_class"]
        names = list(per_class)
        lines += [""] + _grid(
            ["class", "precision", "recall", "f1", "support"],
            [[c] + [per_class[c][k] for k in ("precision", "recall", "f1", "support")] for c in names],
            digits,
        )
        lines += ["", "confusion (rows = true, columns = predicted)"]
        lines += _grid([""] + names, [[c] + list(row) for c, row in zip(names, metrics["confusion"])], digits)
        return "\n".join(lines)
    nested = {k: v for k, v in metrics.items() if isinstance(v, Mapping)}
    flat = {k: v for k, v in metrics.items() if not isinstance(v, Mapping)}
    if nested:
        columns: list[str] = []
        for row in nested.values():
            columns += [c for c in row if c not in columns and not isinstance(row[c], (Mapping, list, tuple))]
        lines += _grid(
            [""] + columns, [[k] + [row.get(c, "") for c in columns] for k, row in nested.items()], digits
        )
    if flat:
        if nested:
            lines.append("")
        lines += _grid(["metric", "value"], [[k, v] for k, v in flat.items()], digits)
    return "\n".join(lines)
