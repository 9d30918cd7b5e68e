"""The comparison under `mestream export --check` and the export's parity check: every element
of every output counts, and a NaN or infinity can never pass."""

from __future__ import annotations

import numpy as np
import pytest

from mestream.engine.manifest import SubgraphInfo, TensorInfo
from mestream.export.check import compare, difference, format_rows

nan, inf = np.nan, np.inf
STAGE = SubgraphInfo(
    model="m",
    name="s",
    file="m.s.onnx",
    sha256="0" * 64,
    inputs=(TensorInfo("x", ("batch", 2), "float32"),),
    outputs=(TensorInfo("a", ("batch", 2), "float32"), TensorInfo("b", ("batch", 2), "bool")),
)


@pytest.mark.parametrize(
    "got, want, peak",
    [
        ([[0.0, 1.0], [2.0, 3.0]], [[0.0, 1.0], [2.0, 3.5]], 0.5),  # the last element counts
        ([[nan, 1.0]], [[nan, 1.0]], inf),  # NaN in both is no agreement
        ([[nan, 1.0]], [[0.0, 1.0]], inf),
        ([[1.0, 1.0]], [[1.0, nan]], inf),
        ([[inf, 1.0]], [[inf, 1.0]], inf),  # nor is the same infinity (inf - inf is NaN)
        ([[-inf, 1.0]], [[inf, 1.0]], inf),
    ],
)
def test_difference_is_over_every_element_and_never_nan(got, want, peak):
    result, mean, metric = difference(np.array(got, np.float32), np.array(want, np.float32))
    assert metric == "abs" and result == peak and not np.isnan(mean)
    assert not result <= 1e-4 or peak == 0  # what the callers test


def test_difference_of_0d_and_empty_arrays():
    assert difference(np.float32(nan), np.float32(nan))[0] == inf
    assert difference(np.float32(1), np.float32(1))[0] == 0
    assert difference(np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)) == (0.0, 0.0, "abs")


def test_nan_output_fails_the_check_with_a_figure():
    want = {"a": np.array([[nan, 1.0]], np.float32), "b": np.array([[True, False]])}
    rows = compare(STAGE, "onnxruntime", "random b1", dict(want), want, "torch", 1e-4)
    assert [(r.output, r.ok, r.max_diff) for r in rows] == [("a", False, inf), ("b", True, 0.0)]
    table = format_rows(rows)
    assert (
        "[FAILED]  m.s       onnxruntime  random b1  a       inf" in table
        and "1 of 2 comparisons differ" in table
    )


def test_an_output_without_a_reference_is_a_failure_not_a_skip():
    """A reference (say, the torch outputs recorded in inputs.npz) that lacks an output: that
    output was not compared, which must not read as passed."""
    got = {"a": np.ones((1, 2), np.float32), "b": np.ones((1, 2), bool)}
    rows = compare(STAGE, "onnxruntime", "camera", got, {"a": got["a"].copy()}, "torch@export", 1e-4)
    assert [(r.output, r.ok) for r in rows] == [("a", True), ("b", False)]
    assert rows[1].error == "no torch@export output 'b' to compare with"
