"""ONNX Runtime on the CPU: the embedded default backend.

Why IOBinding with our own output buffers: ``session.run`` allocates fresh output arrays on
every call, which at a few hundred calls per second per camera is steady garbage and cache
churn. Here each input shape seen (a batch size, a window length) gets its output arrays
allocated once and bound once; later calls with that shape only re-point the inputs at the
caller's arrays (no copy for C-contiguous arrays) and ORT writes into the same outputs. The
number of shapes kept is bounded (``MAX_SHAPES``, least recently used out first).

Session options are set explicitly (faster-whisper's lesson): intra-op threads from the
config, one inter-op thread, sequential execution, every graph optimization.

One runner is for one thread at a time: its bindings and output arrays are shared state
(the ORT session itself could be shared, the IOBindings cannot). Use a runner per worker.
"""

from __future__ import annotations

import importlib.util
import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from mestream.engine.backends.base import BackendError, BackendUnavailable, Runner, missing_package

log = logging.getLogger("mestream.backends")

MAX_SHAPES = 64
PROVIDERS = ("CPUExecutionProvider",)

ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(bool)": "bool",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
}
"""ONNX Runtime's type names of the numpy dtypes a manifest can name."""


def session_options(threads: int) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # ORT's own warnings are about its internals, not the user's model
    return options


def load_session(path: str, threads: int, providers: tuple[str, ...] = PROVIDERS, *, what: str = "") -> Any:
    """An `InferenceSession` (Polygraphy's session loader): providers are matched against
    the ones this onnxruntime build has, and a missing one fails with the list."""
    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing:
        raise BackendUnavailable(
            f"{what or path}: onnxruntime has no {', '.join(missing)}; available: {', '.join(available)}"
        )
    try:
        return ort.InferenceSession(path, sess_options=session_options(threads), providers=list(providers))
    except Exception as exc:  # ORT raises its own Fail / InvalidProtobuf / InvalidGraph kinds
        raise BackendError(
            f"{what or path}: onnxruntime cannot load {path}: the file is damaged or not an ONNX "
            f"model ({type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]})"
        ) from None


def _c_array(value: npt.ArrayLike) -> np.ndarray:
    """``value`` as a C-contiguous array, copied only when it is not one already. Unlike
    ``np.ascontiguousarray`` it keeps a 0-d array 0-d (that one makes it shape (1,))."""
    array = np.asarray(value)
    return array if array.flags.c_contiguous else np.ascontiguousarray(array)


class _Bound:
    """One input shape's binding: outputs allocated and bound once."""

    __slots__ = ("binding", "outputs")

    def __init__(self, binding: Any, outputs: dict[str, np.ndarray]) -> None:
        self.binding, self.outputs = binding, outputs


class OnnxRuntimeBackend(Runner):
    """ONNX Runtime, CPU execution provider.

    Outputs are the runner's own arrays, reused by the next call with the same input shapes:
    copy what you keep.
    """

    name = "onnxruntime"
    extra = ""

    @classmethod
    def unavailable(cls) -> str | None:
        return (
            None
            if importlib.util.find_spec("onnxruntime")
            else missing_package("onnxruntime", "onnxruntime", "")
        )

    def _activate(self) -> None:
        path = self.manifest.verify(self.key)
        self.session = load_session(str(path), self.config.threads, what=f"model {self.key}")
        self._check_signature()
        self._dtypes = {t.name: np.dtype(t.dtype) for t in self.outputs}
        self._bound: OrderedDict[tuple, _Bound] = OrderedDict()

    def _check_signature(self) -> None:
        """The file's inputs and outputs are the manifest's: names, dtypes, ranks and fixed axes
        (once, at activation; a disagreement would otherwise surface as ORT's own error on
        every call, or as outputs of another shape than the manifest says)."""
        for kind, got, want in (
            ("inputs", self.session.get_inputs(), self.inputs),
            ("outputs", self.session.get_outputs(), self.outputs),
        ):
            names = [t.name for t in got]
            if names != [t.name for t in want]:
                raise BackendError(
                    f"model {self.key}: the ONNX file's {kind} are {names}, the manifest says "
                    f"{[t.name for t in want]}; re-run `mestream export`"
                )
            for arg, spec in zip(got, want):
                dtype = ORT_TYPES.get(arg.type, arg.type)
                shape = tuple(arg.shape) if arg.shape is not None else None
                fixed_differ = shape is not None and (
                    len(shape) != len(spec.shape)
                    or any(
                        isinstance(a, int) and isinstance(b, int) and a != b
                        for a, b in zip(shape, spec.shape)
                    )
                )
                if dtype != spec.dtype or fixed_differ:
                    raise BackendError(
                        f"model {self.key}: {kind[:-1]} {spec.name!r} is {dtype} {shape} in the ONNX "
                        f"file, the manifest says {spec.dtype} {spec.shape}; re-run `mestream export`"
                    )

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        key = tuple(feed[t.name].shape for t in self.inputs)
        try:
            bound = self._bound.get(key)
            if bound is None:
                return dict(self._bind(feed, key).outputs)  # the first run already filled them
            self._bound.move_to_end(key)
            binding = bound.binding
            for spec in self.inputs:
                # the binding keeps a reference to the array it was given until the next bind
                binding.bind_cpu_input(spec.name, _c_array(feed[spec.name]))
            self.session.run_with_iobinding(binding)
        except Exception as exc:  # ORT's own Fail / InvalidArgument / RuntimeError kinds name no model
            raise BackendError(
                f"model {self.key}: onnxruntime failed on inputs of shapes {list(key)}: "
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
            ) from exc
        # a new dict (not the bound one): a caller replacing an entry must not swap out the
        # buffer the next call writes into
        return dict(bound.outputs)

    def _bind(self, feed: Mapping[str, np.ndarray], key: tuple) -> _Bound:
        """First call with these input shapes: learn the output shapes from one ordinary run,
        then allocate and bind the outputs for every later call."""
        first = self.session.run(None, {t.name: _c_array(feed[t.name]) for t in self.inputs})
        binding = self.session.io_binding()
        outputs = {}
        for spec, value in zip(self.outputs, first):
            out = np.empty(value.shape, dtype=self._dtypes[spec.name])
            out[...] = value
            binding.bind_output(spec.name, "cpu", 0, out.dtype, out.shape, out.ctypes.data)
            outputs[spec.name] = out
        bound = self._bound[key] = _Bound(binding, outputs)
        if len(self._bound) > MAX_SHAPES:
            self._bound.popitem(last=False)
        return bound

    def _deactivate(self) -> None:
        self._bound.clear()
        self.session = None
