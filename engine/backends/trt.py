"""TensorRT backend: an engine per subgraph, built once and cached, several streams in flight.

Why it is shaped this way (TensorRT 10 Python API and pycuda):

- ``tensorrt`` and ``pycuda`` are imported in `_activate` only: constructing a runner or running
  on a CPU machine never loads them, and a missing one is `BackendUnavailable` naming ``mestream[gpu]``.
- Engines take minutes to build, so they are cached on disk under a key of everything they
  depend on (`trt_plan.cache_key`); a stale or damaged entry is rebuilt, never loaded.
- One optimization profile serves every execution context: TensorRT 10 shares profiles across
  contexts by default (``PreviewFeature.PROFILE_SHARING_0806``, "on in TensorRT 10.0" per the
  Python API docs). "Each context in concurrent use must use a separate optimization profile"
  is the TensorRT 8 rule; following it would multiply build time by the stream count.
- ``streams`` execution contexts, each with its own CUDA stream and page-locked host and device
  buffers for every I/O tensor, allocated once at the profile's max shapes. `submit` queues a
  batch on a free context and returns; `collect` waits for it; `infer` is both. Outputs are
  views of those buffers, overwritten by the context's next batch and freed by `deactivate`
  (reading one after that reads freed page-locked memory): callers copy what they keep.
- Calls come from one thread at a time; the CUDA context is pushed around each call, so that
  thread need not be the one that activated the runner.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mestream.engine.backends import trt_plan
from mestream.engine.backends.base import BackendError, BackendUnavailable, Runner, missing_package
from mestream.engine.config import InferenceConfig
from mestream.engine.manifest import Manifest, ManifestError, SubgraphInfo

log = logging.getLogger("mestream.backends")

MAX_GRAPHS = 32
"""CUDA graphs kept per context (one per input-shape combination); beyond that, plain enqueue."""


@functools.cache
def _why_unavailable() -> str | None:
    for package in ("tensorrt", "pycuda"):
        if importlib.util.find_spec(package) is None:
            return missing_package("tensorrt", package, "gpu")
    try:
        import pycuda.driver as cuda  # lazy: the gpu extra

        cuda.init()
        count = cuda.Device.count()
    except Exception as exc:  # a driver error, a pycuda built for another CUDA, no libcuda
        return f"no CUDA device initializes: {type(exc).__name__}: {exc}"
    return None if count > 0 else "no CUDA device initializes: the driver reports 0 devices"


@functools.cache
def _trt_logger(trt: Any) -> Any:
    """One logger for every builder and runtime (TensorRT 8 treats the logger as a singleton and
    it must outlive every object made through it). Forwards to ``mestream.backends`` and keeps
    the last errors so that a failed build or parse can say why."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: deque[str] = deque(maxlen=20)

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
                log.error("tensorrt: %s", msg)
            elif severity == trt.ILogger.Severity.WARNING:
                log.warning("tensorrt: %s", msg)
            else:
                log.debug("tensorrt: %s", msg)

    return Logger()


def build_engine(
    onnx_path: str | Path, subgraph: SubgraphInfo, config: InferenceConfig, timing_cache_path: str | Path
) -> bytes:
    """Parse the subgraph's ONNX file and build a serialized engine with one optimization profile
    (batch 1 / opt / max, other axes from the manifest), reusing and updating the timing cache."""
    import tensorrt as trt  # lazy: the gpu extra

    where = f"model {subgraph.key} ({onnx_path})"
    logger = _trt_logger(trt)
    logger.errors.clear()
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10; the flag is ignored
    parser = trt.OnnxParser(network, logger)
    data = Path(onnx_path).read_bytes()
    if not parser.parse(data, str(onnx_path)):  # the path lets the parser find external weights
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BackendError(
            f"{where}: TensorRT cannot parse the ONNX file: " + "; ".join(errors or list(logger.errors))
        )
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    expected = {spec.name for spec in subgraph.inputs}
    if names != expected:
        raise BackendError(
            f"{where}: the ONNX graph's inputs {sorted(names)} are not the manifest's {sorted(expected)}"
        )

    builder_config = builder.create_builder_config()
    # TensorRT 10 removed max_workspace_size; the workspace is a memory pool (migration guide,
    # docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-8x-to-10x-python-api.html).
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.tensorrt.workspace_mb << 20)
    if config.tensorrt.fp16:
        # platform_has_fast_fp16 and BuilderFlag.FP16 are deprecated since 10.12 (strong typing)
        # but still honoured; a build without the attribute just asks for FP16.
        if getattr(builder, "platform_has_fast_fp16", True):
            builder_config.set_flag(trt.BuilderFlag.FP16)
        else:
            log.warning("%s: this GPU has no fast FP16; building in FP32", where)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in trt_plan.profile_shapes(subgraph, config).items():
        profile.set_shape(name, lo, opt, hi)
    if builder_config.add_optimization_profile(profile) < 0:
        raise BackendError(
            f"{where}: TensorRT rejected the optimization profile: " + "; ".join(logger.errors)
        )

    cache = None  # must stay referenced until the build returns
    with contextlib.suppress(Exception):  # a damaged file: no cache is better than no engine
        cache = builder_config.create_timing_cache(trt_plan.read_timing_cache(timing_cache_path))
    if cache is None or not builder_config.set_timing_cache(cache, False):  # False: refuse another GPU's
        log.info(
            "%s: timing cache %s is unusable here (other device or version, or damaged); starting afresh",
            where,
            timing_cache_path,
        )
        cache = builder_config.create_timing_cache(b"")
        builder_config.set_timing_cache(cache, False)

    plan = builder.build_serialized_network(network, builder_config)
    if plan is None:  # the Python binding returns None where C++ returns nullptr
        raise BackendError(f"{where}: TensorRT failed to build an engine: " + "; ".join(logger.errors))
    try:
        trt_plan.store_timing_cache(
            timing_cache_path, memoryview(builder_config.get_timing_cache().serialize())
        )
    except OSError as exc:
        log.warning("%s: cannot save the timing cache to %s: %s", where, timing_cache_path, exc)
    return bytes(memoryview(plan))


@dataclass
class _Slot:
    """One execution context with its stream and its buffers (sized once, at max shapes)."""

    context: Any
    stream: Any
    host: dict[str, np.ndarray]
    device: dict[str, Any]
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    out_views: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    graphs: dict[tuple, Any] = field(default_factory=dict)
    no_graph: set = field(default_factory=set)
    busy: bool = False
    serial: int = 0


@dataclass(frozen=True)
class Pending:
    """A batch in flight: hand it to `TensorRTBackend.collect`."""

    slot: int
    serial: int


class TensorRTBackend(Runner):
    """Runs one exported subgraph with TensorRT on a CUDA device (see the module docstring)."""

    name: ClassVar[str] = "tensorrt"
    extra: ClassVar[str] = "gpu"

    def __init__(self, manifest: Manifest, key: str, config: InferenceConfig | None = None) -> None:
        super().__init__(manifest, key, config)
        self._slots: list[_Slot] = []
        self._next = 0
        # pycuda and tensorrt ship no type information: their objects are Any to mypy
        self._ctx: Any = None  # the device's primary CUDA context
        self._cuda: Any = None  # the pycuda.driver module, once imported
        self._engine: Any = None
        self._runtime: Any = None
        self._inputs: list[str] = []  # the engine's input and output tensor names
        self._outputs: list[str] = []

    @classmethod
    def unavailable(cls) -> str | None:
        """Missing ``tensorrt`` or ``pycuda``, or no CUDA device; cached after the first call."""
        return _why_unavailable()

    def _fail(self, what: str, exc: BaseException | None = None) -> BackendError:
        detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
        return BackendError(f"tensorrt backend, model {self.key} ({self.subgraph.file}): {what}{detail}")

    @contextlib.contextmanager
    def _current(self) -> Iterator[None]:
        """Make the runner's CUDA context current for the duration of a call (pycuda and TensorRT
        both work on the calling thread's current context)."""
        self._ctx.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    # -- activation ------------------------------------------------------------------------------

    def _activate(self) -> None:
        try:
            import pycuda.driver as cuda  # lazy: the gpu extra
            import tensorrt as trt
        except ImportError as exc:
            package = "pycuda" if (exc.name or "").startswith("pycuda") else "tensorrt"
            reason = (
                missing_package("tensorrt", package, "gpu")
                if importlib.util.find_spec(package) is None
                else f"the tensorrt backend cannot import {package!r}: {exc}"
            )
            raise BackendUnavailable(f"model {self.key}: {reason}") from None
        try:
            onnx_path = self.manifest.verify(self.key)
        except ManifestError as exc:
            raise BackendError(f"tensorrt backend: {exc}") from None
        tc = self.config.tensorrt
        try:
            cuda.init()
            count = cuda.Device.count()
        except Exception as exc:  # pycuda.driver.Error, or a pycuda built against another CUDA
            raise BackendUnavailable(f"model {self.key}: no CUDA device initializes: {exc}") from None
        if tc.device >= count:
            raise BackendUnavailable(
                f"model {self.key}: inference.tensorrt.device = {tc.device}, but only {count} "
                f"CUDA device(s) are present"
            )
        if tc.cuda_graph and not hasattr(cuda.Stream, "begin_capture"):
            raise self._fail(
                "inference.tensorrt.cuda_graph = true needs a pycuda with CUDA-graph stream capture "
                "(Stream.begin_capture / end_capture, CUDA >= 10); the installed pycuda has none. "
                "Upgrade pycuda or set cuda_graph = false"
            )
        self._cuda = cuda
        try:
            device = cuda.Device(tc.device)
            # The primary context is the one TensorRT (CUDA runtime API) works in; make_context()
            # would create a second context on the same device.
            self._ctx = device.retain_primary_context()
        except cuda.Error as exc:
            raise self._fail(f"cannot open CUDA device {tc.device}", exc) from None
        try:
            with self._current():
                self._setup(trt, cuda, device, onnx_path)
        except BaseException as exc:
            self._deactivate()
            if isinstance(exc, cuda.Error):
                raise self._fail("CUDA error while loading the engine", exc) from None
            raise

    def _engine_bytes(self, trt: Any, device: Any, onnx_path: Path) -> tuple[bytes, Path, bool]:
        profiles = trt_plan.profile_shapes(self.subgraph, self.config)
        fields = trt_plan.key_fields(
            self.subgraph.sha256,
            trt.__version__,
            device.name(),
            device.compute_capability(),
            trt_plan.precision(self.config),
            profiles,
        )
        key = trt_plan.fields_key(fields)
        path = trt_plan.engine_path(self.config, self.subgraph, key)
        data = trt_plan.cached_engine(path, key)
        if data is not None:
            log.info("tensorrt: %s: engine from cache %s", self.key, path)
            return data, path, True
        log.info("tensorrt: %s: building an engine (%s, this takes a while)", self.key, fields["precision"])
        data = build_engine(onnx_path, self.subgraph, self.config, trt_plan.timing_cache_path(self.config))
        try:
            trt_plan.store_engine(path, data, key, fields)
        except OSError as exc:
            log.warning("tensorrt: %s: cannot cache the engine at %s: %s", self.key, path, exc)
        return data, path, False

    def _setup(self, trt: Any, cuda: Any, device: Any, onnx_path: Path) -> None:
        data, path, cached = self._engine_bytes(trt, device, onnx_path)
        self._runtime = trt.Runtime(_trt_logger(trt))
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None and cached:  # written by a TensorRT build that cannot read it back
            log.warning("tensorrt: %s: cached engine %s does not deserialize; rebuilding", self.key, path)
            path.unlink(missing_ok=True)
            data, path, _ = self._engine_bytes(trt, device, onnx_path)
            self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise self._fail(f"TensorRT cannot deserialize the engine {path}")
        engine = self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        dtypes = {name: np.dtype(trt.nptype(engine.get_tensor_dtype(name))) for name in names}
        problem = trt_plan.io_mismatch(self.subgraph, inputs, outputs, dtypes)
        if problem:
            raise self._fail(problem)
        plan = trt_plan.io_plan(self.subgraph, self.config)
        self._inputs, self._outputs = inputs, outputs
        for k in range(self.config.tensorrt.streams):
            context = engine.create_execution_context()
            if context is None:
                raise self._fail(
                    f"cannot create execution context {k + 1} of {self.config.tensorrt.streams} "
                    f"(out of device memory?)"
                )
            self._slots.append(_Slot(context, cuda.Stream(), {}, {}))
        nbytes = self._size_outputs(self._slots[0].context, plan)
        for slot in self._slots:
            for name in names:
                dtype = plan[name].dtype
                slot.host[name] = cuda.pagelocked_empty((-(-nbytes[name] // dtype.itemsize),), dtype)
                slot.device[name] = cuda.mem_alloc(max(nbytes[name], 1))
                # execute_async_v3 needs set_tensor_address for every I/O tensor first (TensorRT 8.x->10.x
                # migration guide, "Migrating from enqueueV2 to enqueueV3"); the addresses never change.
                if not slot.context.set_tensor_address(name, int(slot.device[name])):
                    raise self._fail(f"set_tensor_address({name!r}) failed")
        log.info(
            "tensorrt: %s ready: %d stream(s), buffers %s",
            self.key,
            len(self._slots),
            ", ".join(f"{n} {nbytes[n]} B" for n in names),
        )

    def _size_outputs(self, context: Any, plan: Mapping[str, trt_plan.TensorPlan]) -> dict[str, int]:
        """Bytes per tensor: inputs from the plan; outputs from the engine with the inputs at
        their max shapes (also checked against the manifest where it gives a shape)."""
        nbytes = {n: int(plan[n].nbytes or 0) for n in self._inputs}
        for name in self._inputs:
            if not context.set_input_shape(name, plan[name].max_shape):
                raise self._fail(f"the engine refuses input {name!r} at {plan[name].max_shape}")
        for name in self._outputs:
            shape = tuple(context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise self._fail(
                    f"output {name!r} has a data-dependent shape {shape}; this backend needs output "
                    f"shapes that follow from the input shapes"
                )
            if plan[name].max_shape is not None and shape != plan[name].max_shape:
                raise self._fail(
                    f"output {name!r} is {shape} at max inputs, the manifest says {plan[name].max_shape}"
                )
            nbytes[name] = trt_plan.buffer_nbytes(shape, plan[name].dtype)
            upper = getattr(context, "get_max_output_size", None)  # TensorRT >= 10.x: bound over the profile
            if upper is not None:
                nbytes[name] = max(nbytes[name], int(upper(name)))
        return nbytes

    # -- inference -------------------------------------------------------------------------------

    def submit(self, feed: Mapping[str, np.ndarray]) -> Pending:
        """Queue a batch on the next free stream and return without waiting; `collect` it later.
        At most ``streams`` batches can be in flight."""
        if not self.active:
            raise self._fail("submit() before activate()")
        self.check(feed)
        return self._submit(feed)

    def collect(self, pending: Pending) -> dict[str, np.ndarray]:
        """Wait for a submitted batch; its outputs live in buffers the next batch on the same
        stream overwrites."""
        if not self.active:
            raise self._fail("collect() before activate()")
        slot = self._slots[pending.slot]
        if not slot.busy or slot.serial != pending.serial:
            raise self._fail(f"batch {pending} was already collected")
        try:
            with self._current():
                slot.stream.synchronize()
        except self._cuda.Error as exc:
            raise self._fail("inference failed on the GPU", exc) from None
        finally:
            slot.busy = False
        return slot.outputs

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.collect(self._submit(feed))

    def _submit(self, feed: Mapping[str, np.ndarray]) -> Pending:
        n = len(self._slots)
        index = next((i % n for i in range(self._next, self._next + n) if not self._slots[i % n].busy), None)
        if index is None:
            raise self._fail(f"all {n} streams have a batch in flight; collect() one before submitting more")
        self._next = index + 1
        slot, cuda = self._slots[index], self._cuda
        try:
            with self._current():
                changed = False
                for name in self._inputs:
                    array = feed[name]
                    view = slot.host[name][: array.size].reshape(array.shape)
                    np.copyto(view, array, casting="no")
                    if slot.shapes.get(name) != array.shape:
                        if not slot.context.set_input_shape(name, array.shape):
                            raise self._fail(f"the engine refuses input {name!r} of shape {array.shape}")
                        slot.shapes[name] = array.shape
                        changed = True
                    cuda.memcpy_htod_async(slot.device[name], view, slot.stream)
                if changed or not slot.out_views:
                    slot.out_views = {name: self._output_view(slot, name) for name in self._outputs}
                self._enqueue(slot, changed)
                for name, view in slot.out_views.items():
                    cuda.memcpy_dtoh_async(view, slot.device[name], slot.stream)
        except cuda.Error as exc:
            raise self._fail("queuing the batch failed", exc) from None
        slot.outputs, slot.busy, slot.serial = dict(slot.out_views), True, slot.serial + 1
        return Pending(index, slot.serial)

    def _output_view(self, slot: _Slot, name: str) -> np.ndarray:
        shape = tuple(slot.context.get_tensor_shape(name))
        size = int(np.prod(shape, dtype=np.int64))
        if min(shape, default=0) < 0 or size > slot.host[name].size:
            raise self._fail(f"output {name!r} has shape {shape} for inputs {slot.shapes}, beyond its buffer")
        return slot.host[name][:size].reshape(shape)

    def _enqueue(self, slot: _Slot, changed: bool) -> None:
        """``execute_async_v3`` on the slot's stream, or the CUDA graph captured for these shapes.

        Graph capture follows trtexec: a shape is first run plainly (so that TensorRT's one-off
        work after a shape change is not captured), captured the next time it comes unchanged,
        and replayed from then on. The capture records the enqueue only; the copies stay outside.
        """
        key = tuple(slot.shapes[name] for name in self._inputs)
        graph = slot.graphs.get(key)
        if (
            graph is None
            and self.config.tensorrt.cuda_graph
            and not changed
            and key not in slot.no_graph
            and len(slot.graphs) < MAX_GRAPHS
        ):
            graph = self._capture(slot, key)
        if graph is not None:
            graph.launch(slot.stream)
        elif not slot.context.execute_async_v3(slot.stream.handle):
            raise self._fail("execute_async_v3 failed; see the tensorrt log messages above")

    def _capture(self, slot: _Slot, key: tuple) -> Any:
        """The enqueue captured as a graph (nothing runs yet), or None when this engine's enqueue
        cannot be captured (trtexec falls back the same way)."""
        ok, graph, stream = False, None, slot.stream
        try:
            stream.begin_capture(self._cuda.capture_mode.THREAD_LOCAL)
            try:
                ok = slot.context.execute_async_v3(stream.handle)
            finally:
                graph = stream.end_capture()
        except self._cuda.Error as exc:
            log.debug("tensorrt: %s: stream capture: %s", self.key, exc)
        if not ok or graph is None:
            log.warning(
                "tensorrt: %s: CUDA graph capture failed for input shapes %s; running them without",
                self.key,
                key,
            )
            slot.no_graph.add(key)
            return None
        slot.graphs[key] = graph = graph.instantiate()
        return graph

    # -- release ---------------------------------------------------------------------------------

    def _deactivate(self) -> None:
        """Free in dependency order: graphs and buffers, contexts, engine, then the CUDA context."""
        ctx = self._ctx
        if ctx is None:
            return
        try:
            with self._current():
                for slot in self._slots:
                    with contextlib.suppress(Exception):
                        slot.stream.synchronize()  # nothing may still write into what is freed next
                    slot.graphs.clear()
                    slot.context = None
                    for buffer in slot.device.values():
                        buffer.free()
                    for array in slot.host.values():
                        with contextlib.suppress(Exception):
                            allocation: Any = array.base  # pycuda's HostAllocation, unknown to numpy's stub
                            allocation.free()
                    slot.host.clear()
                    slot.outputs, slot.out_views = {}, {}
                self._slots = []
                self._engine = None
                self._runtime = None
        finally:
            self._ctx = None
            ctx.detach()
