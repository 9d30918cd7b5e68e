"""Latency statistics as every bench figure reports them: the same percentiles, the same
empty-case rule, and a compact CDF for the plots, so results from different runs compare."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))
KEYS = tuple(k for k, _ in PERCENTILES) + ("max", "n")
CDF_QUANTILES = tuple(float(q) for q in range(0, 100)) + (99.5, 99.9, 100.0)
"""Where a CDF is sampled: every percent, and the tail a latency plot is about."""


def percentiles(values_ms: Iterable[float] | np.ndarray) -> dict[str, Any]:
    """p50 / p90 / p99 / p99.9 / max of ``values_ms`` and their count; every figure is None
    when there are none (an empty run has no latency, not a latency of zero)."""
    x = np.asarray(list(values_ms) if not isinstance(values_ms, np.ndarray) else values_ms, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not len(x):
        return {**dict.fromkeys(KEYS[:-1]), "n": 0}
    got = np.percentile(x, [q for _, q in PERCENTILES])
    out: dict[str, Any] = {k: round(float(v), 3) for (k, _), v in zip(PERCENTILES, got)}
    out["max"] = round(float(x.max()), 3)
    out["n"] = int(len(x))
    return out


def cdf(values_ms: np.ndarray) -> list[float] | None:
    """``values_ms`` at `CDF_QUANTILES` (None when empty): enough to redraw a CDF from the JSON."""
    x = np.asarray(values_ms, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not len(x):
        return None
    return [round(float(v), 3) for v in np.percentile(x, CDF_QUANTILES)]


def median_of(reps: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-figure median over repetitions of `percentiles` dicts (the headline, as Holoscan
    reports it); ``max`` is the worst repetition's and ``n`` the total."""
    if not reps:
        return percentiles([])
    out: dict[str, Any] = {}
    for key in KEYS[:-2]:
        values = [r[key] for r in reps if r.get(key) is not None]
        out[key] = round(float(np.median(values)), 3) if values else None
    maxima = [r["max"] for r in reps if r.get("max") is not None]
    out["max"] = round(float(max(maxima)), 3) if maxima else None
    out["n"] = int(sum(r.get("n", 0) for r in reps))
    return out
