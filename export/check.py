"""Run every backend that can run here on the same inputs and compare their outputs, in the
spirit of Polygraphy's ``run --onnxrt --trt``.

Why both random and real inputs: random inputs reach corners real data rarely does (every
batch size, the shortest window, masks of every length), while the camera inputs saved at
export (``inputs.npz``) have the value ranges the networks were trained on, where a
precision problem (TensorRT's FP16) actually shows. The torch outputs recorded at export for
those inputs travel in the same file, so a runtime-only install without torch still checks
its backends against PyTorch.

``inputs.npz`` keys: ``<subgraph key>/<input name>`` for the inputs and
``torch/<subgraph key>/<output name>`` for PyTorch's outputs on them at export.

The reference for random inputs is torch when it can run here, else onnxruntime; camera
inputs are compared with the recorded torch outputs (or the reference when none were
recorded). Float outputs are compared by absolute difference, bool and int outputs by the
number of differing elements, which must be 0.

Only numpy and the engine's backend seam here: this runs on a runtime-only install.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mestream.engine import backends
from mestream.engine.backends.base import concrete_shape
from mestream.engine.config import InferenceConfig
from mestream.engine.manifest import Manifest, ManifestError, SubgraphInfo

INPUTS_NAME = "inputs.npz"
RECORDED = "torch"
RECORDED_LABEL = "torch@export"
REFERENCES = ("torch", "onnxruntime")
CAMERA = "camera"


@dataclass(frozen=True)
class Row:
    """One output of one subgraph on one input set, of one backend against the reference.

    ``metric`` is "abs" (``max_diff``/``mean_diff`` are absolute differences) or "mismatches"
    (``max_diff`` is the count of differing elements, ``mean_diff`` their fraction). A row
    with ``error`` set records a backend that failed to load or run the subgraph."""

    subgraph: str
    backend: str
    inputs: str
    output: str
    max_diff: float
    mean_diff: float
    ok: bool
    reference: str = ""
    metric: str = "abs"
    error: str = ""


# -- inputs ----------------------------------------------------------------------------------------


def random_feed(
    subgraph: SubgraphInfo, batch: int, rng: np.random.Generator, which: int = 1
) -> dict[str, np.ndarray]:
    """Random inputs with dynamic axes at their min (0) or opt (1): floats uniform in [0, 1) as
    `example_feed`'s; a (batch, T) bool mask gets valid-first rows of random lengths 1..T, with
    the full and the 1-frame clip among them once the batch has room."""
    if which == 1:
        feed = backends.example_feed(subgraph, batch, rng)
    else:
        feed = {}
        for spec in subgraph.inputs:
            shape = concrete_shape(spec, subgraph, batch, which)
            feed[spec.name] = (
                np.ones(shape, bool)
                if spec.dtype == "bool"
                else rng.random(shape, dtype=np.float64).astype(spec.dtype)
            )
    for spec in subgraph.inputs:
        array = feed[spec.name]
        if spec.dtype == "bool" and array.ndim == 2:
            T = array.shape[1]
            lengths = rng.integers(1, T + 1, size=batch)
            if batch >= 2:
                lengths[:2] = (T, 1)
            feed[spec.name] = np.arange(T)[None, :] < lengths[:, None]
        elif spec.dtype == "bool":
            feed[spec.name] = rng.random(array.shape) < 0.5
    return feed


def random_sets(subgraph: SubgraphInfo, seed: int = 0) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Batch 1 and 3 at the opt shape, and batch 2 at every dynamic axis's minimum when there is one."""
    rng = np.random.default_rng([seed, sum(subgraph.key.encode())])
    sets = [("random b1", random_feed(subgraph, 1, rng)), ("random b3", random_feed(subgraph, 3, rng))]
    named = {d for t in subgraph.inputs for d in t.shape if isinstance(d, str) and d != "batch"}
    if named:
        sets.append((f"random b2 {','.join(sorted(named))} min", random_feed(subgraph, 2, rng, which=0)))
    return sets


def load_inputs(
    root: Path, manifest: Manifest
) -> dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """Per subgraph, the camera inputs saved at export and the torch outputs recorded on them
    (empty when none were recorded); subgraphs missing from the file are left out."""
    path = Path(root) / INPUTS_NAME
    if not path.is_file():
        return {}
    try:
        with np.load(path) as z:
            stored = {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile, pickle and format errors: a damaged file, named
        raise ManifestError(
            f"{path}: the camera inputs cannot be read ({type(exc).__name__}: {exc}); "
            f"re-run `mestream export`"
        ) from None
    out = {}
    for key, subgraph in manifest.subgraphs.items():
        names = [f"{key}/{t.name}" for t in subgraph.inputs]
        if all(n in stored for n in names):
            feed = {t.name: stored[f"{key}/{t.name}"] for t in subgraph.inputs}
            want = {
                t.name: stored[f"{RECORDED}/{key}/{t.name}"]
                for t in subgraph.outputs
                if f"{RECORDED}/{key}/{t.name}" in stored
            }
            out[key] = (feed, want)
    return out


# -- comparison ------------------------------------------------------------------------------------


def difference(got: npt.ArrayLike, want: npt.ArrayLike) -> tuple[float, float, str]:
    """(max, mean, metric) between two arrays of one shape (see `Row`).

    A NaN or infinity in either array is an infinite difference at that element, even where
    both hold the same one: ``nan <= tol`` is False, so a NaN figure would fail a
    ``not peak <= tol`` check but pass a ``peak > tol`` one, and NaN outputs are no parity."""
    got, want = np.asarray(got), np.asarray(want)
    if want.dtype.kind in "fc":
        a, b = got.astype(np.float64), want.astype(np.float64)
        with np.errstate(invalid="ignore"):  # inf - inf
            diff = np.where(np.isfinite(a) & np.isfinite(b), np.abs(a - b), np.inf)
        if not diff.size:
            return 0.0, 0.0, "abs"
        return float(diff.max()), float(diff.mean()), "abs"
    count = int(np.count_nonzero(got != want))
    return float(count), count / max(want.size, 1), "mismatches"


def compare(
    subgraph: SubgraphInfo,
    backend: str,
    label: str,
    got: Mapping[str, np.ndarray],
    want: Mapping[str, np.ndarray],
    reference: str,
    tol: float,
) -> list[Row]:
    rows = []
    for spec in subgraph.outputs:
        common = dict(
            subgraph=subgraph.key, backend=backend, inputs=label, output=spec.name, reference=reference
        )
        if spec.name not in want:  # not compared is not passed: say so rather than leave the output out
            rows.append(
                Row(
                    **common,
                    max_diff=np.nan,
                    mean_diff=np.nan,
                    ok=False,
                    error=f"no {reference} output {spec.name!r} to compare with",
                )
            )
            continue
        value = got.get(spec.name)
        if value is None:
            rows.append(Row(**common, max_diff=np.nan, mean_diff=np.nan, ok=False, error="output missing"))
            continue
        value, expected = np.asarray(value), np.asarray(want[spec.name])
        if value.dtype != np.dtype(spec.dtype) or value.shape != expected.shape:
            rows.append(
                Row(
                    **common,
                    max_diff=np.nan,
                    mean_diff=np.nan,
                    ok=False,
                    error=f"{value.dtype} {value.shape}, expected {spec.dtype} {expected.shape}",
                )
            )
            continue
        peak, mean, metric = difference(value, expected)
        ok = peak <= tol if metric == "abs" else peak == 0
        rows.append(Row(**common, max_diff=peak, mean_diff=mean, ok=bool(ok), metric=metric))
    return rows


def _reference(kinds: list[str]) -> str:
    return next((k for k in REFERENCES if k in kinds), kinds[0])


def runnable_backends(
    kinds: Iterable[str] | None, echo: Callable[[str], None]
) -> list[tuple[str, backends.BackendFactory]]:
    """``(kind, class)`` of each requested kind that can run here; the others are named with
    the reason. An unknown kind is a `BackendError` listing the known ones."""
    known = backends.backend_kinds()
    wanted = list(kinds) if kinds else known
    unknown = [k for k in wanted if k not in known]
    if unknown:
        raise backends.BackendError(
            f"no backend kind {', '.join(map(repr, unknown))}; kinds: {', '.join(known)}"
        )
    out = []
    for kind in wanted:
        try:
            cls = backends.backend_class(kind)
        except backends.BackendError as exc:
            echo(f"[SKIP] {kind}: {exc}")
            continue
        reason = backends.why_unavailable(cls)
        if reason:
            echo(f"[SKIP] {kind}: {reason}")
            continue
        out.append((kind, cls))
    return out


def run_backend(
    cls: backends.BackendFactory,
    manifest: Manifest,
    key: str,
    sets: list[tuple[str, dict[str, np.ndarray]]],
    config: InferenceConfig,
) -> dict[str, Any]:
    """Outputs (copied: runners reuse their buffers) per input set, or the error's text."""
    results: dict[str, Any] = {}
    runner = cls(manifest, key, config)
    try:
        runner.activate()
        for label, feed in sets:
            try:
                results[label] = {k: np.array(v, copy=True) for k, v in runner.infer(feed).items()}
            except Exception as exc:  # any backend, a plugin's too: its failure is a row, not a crash
                results[label] = f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        return {label: f"{type(exc).__name__}: {exc}" for label, _ in sets}
    finally:
        runner.deactivate()
    return results


def check_backends(
    manifest: Manifest,
    kinds: Iterable[str] | None = None,
    *,
    tol: float = 1e-4,
    config: InferenceConfig | None = None,
    echo: Callable[[str], None] = print,
) -> list[Row]:
    """Every subgraph of ``manifest`` on every runnable backend of ``kinds`` (default: all
    registered), compared on random and camera inputs; see the module docstring."""
    config = config or InferenceConfig()
    runnable = runnable_backends(kinds, echo)
    if not runnable:
        return []
    names = [k for k, _ in runnable]
    reference = _reference(names)
    camera = load_inputs(manifest.root, manifest)
    rows: list[Row] = []
    for key, subgraph in manifest.subgraphs.items():
        sets = random_sets(subgraph)
        feed_want = camera.get(key)
        if feed_want is not None:
            sets.append((CAMERA, feed_want[0]))
        results = {kind: run_backend(cls, manifest, key, sets, config) for kind, cls in runnable}
        for label, _ in sets:
            recorded = feed_want[1] if label == CAMERA and feed_want and feed_want[1] else None
            ref_out = results[reference][label]
            for kind in names:
                got = results[kind][label]
                if isinstance(got, str):
                    rows.append(Row(key, kind, label, "-", np.nan, np.nan, False, error=got))
                elif recorded is not None:
                    rows += compare(subgraph, kind, label, got, recorded, RECORDED_LABEL, tol)
                elif kind != reference and not isinstance(ref_out, str):
                    rows += compare(subgraph, kind, label, got, ref_out, reference, tol)
    return rows


def _figure(value: float, metric: str) -> str:
    if np.isnan(value):
        return "-"
    return f"{int(value)}" if metric == "mismatches" else f"{value:.3g}"


def format_rows(rows: list[Row], tol: float = 1e-4) -> str:
    """A table with one ``[PASSED]``/``[FAILED]`` line per comparison and a summary line."""
    head = ("", "subgraph", "backend", "inputs", "output", "max", "mean", "vs")
    table = [head]
    for r in rows:
        mean = (
            f"{r.mean_diff:.2%}"
            if r.metric == "mismatches" and not np.isnan(r.mean_diff)
            else _figure(r.mean_diff, r.metric)
        )
        table.append(
            (
                "[PASSED]" if r.ok else "[FAILED]",
                r.subgraph,
                r.backend,
                r.inputs,
                r.output,
                _figure(r.max_diff, r.metric) + (" mism." if r.metric == "mismatches" else ""),
                mean,
                r.reference or "-",
            )
        )
    widths = [max(len(str(line[i])) for line in table) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in table]
    for r in rows:
        if r.error:
            lines.append(f"[FAILED] {r.subgraph} on {r.backend} ({r.inputs}): {r.error}")
    failed = sum(not r.ok for r in rows)
    used = sorted({r.backend for r in rows})
    if not rows:
        lines = ["nothing compared"]
    elif failed:
        lines.append(
            f"[FAILED] {failed} of {len(rows)} comparisons differ beyond {tol:g} (float: max abs difference; "
            f"bool/int: any mismatch); backends: {', '.join(used)}"
        )
    else:
        lines.append(
            f"[PASSED] {len(rows)} comparisons within {tol:g} (bool/int outputs identical); "
            f"backends: {', '.join(used)}"
        )
    return "\n".join(lines)
