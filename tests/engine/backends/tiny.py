"""One-node ONNX models with a matching `Manifest`, for backend tests that need a real export.

``tiny_manifest(root, "Mul", [("x", ("batch", 4), "float32")], constant=2.0)`` writes
``root/tiny.op.onnx`` (y = x * 2 with a dynamic batch axis) and ``root/manifest.json`` with the
file's sha256, and returns the loaded `Manifest`; the subgraph is ``tiny.op``. With one input,
Add/Mul take ``constant`` as the other operand; with two inputs they combine them. The output
``y`` has the first input's shape and dtype. Dynamic axes other than ``batch`` get ``dims``
(default ``(1, 4, 8)`` each).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mestream.engine.manifest import BATCH, Manifest, ModelInfo, SubgraphInfo, TensorInfo, file_sha256

InputSpec = tuple[str, Sequence[int | str], str]
OPSET = 17


def tiny_model(
    path: str | Path,
    op: str = "Mul",
    inputs: Sequence[InputSpec] = (("x", (BATCH, 4), "float32"),),
    constant: float = 2.0,
) -> Path:
    """Write the one-node model to ``path``; ``op`` is Add, Mul or Identity."""
    import onnx
    from onnx import helper, numpy_helper

    if op not in ("Add", "Mul", "Identity") or not 1 <= len(inputs) <= (1 if op == "Identity" else 2):
        raise ValueError(f"unsupported tiny model: {op} with {len(inputs)} input(s)")
    infos = [
        helper.make_tensor_value_info(
            name, onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), list(shape)
        )
        for name, shape, dtype in inputs
    ]
    _, shape0, dtype0 = inputs[0]
    operands, initializers = [name for name, _, _ in inputs], []
    if op != "Identity" and len(inputs) == 1:
        initializers.append(numpy_helper.from_array(np.array(constant, dtype=dtype0), "c"))
        operands.append("c")
    y = helper.make_tensor_value_info(
        "y", onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype0)), list(shape0)
    )
    graph = helper.make_graph([helper.make_node(op, operands, ["y"])], "tiny", infos, [y], initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mestream-tests"
    )
    model.ir_version = 8  # readable by every onnxruntime and TensorRT 10 parser we support
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def tiny_manifest(
    root: str | Path,
    op: str = "Mul",
    inputs: Sequence[InputSpec] = (("x", (BATCH, 4), "float32"),),
    constant: float = 2.0,
    dims: Mapping[str, tuple[int, int, int]] | None = None,
    model: str = "tiny",
    subgraph: str = "op",
) -> Manifest:
    """Write the model and its manifest under ``root`` and return the manifest as loaded from disk."""
    root = Path(root)
    file = f"{model}.{subgraph}.onnx"
    tiny_model(root / file, op, inputs, constant)
    named = {d for _, shape, _ in inputs for d in shape if isinstance(d, str) and d != BATCH}
    dims = dict(dims) if dims is not None else {name: (1, 4, 8) for name in sorted(named)}
    _, shape0, dtype0 = inputs[0]
    info = SubgraphInfo(
        model=model,
        name=subgraph,
        file=file,
        sha256=file_sha256(root / file),
        inputs=tuple(TensorInfo(n, tuple(s), d) for n, s, d in inputs),
        outputs=(TensorInfo("y", tuple(shape0), dtype0),),
        dims=dims,
    )
    models = {
        model: ModelInfo(
            name=model,
            preset="test",
            checkpoint="none",
            checkpoint_sha256="0" * 64,
            recorded_config={},
            recorded_preprocessing={},
            subgraphs=(info,),
        )
    }
    Manifest(root=root, opset=OPSET, exporter="tests", producer={"tool": "tiny.py"}, models=models).save()
    return Manifest.load(root)
