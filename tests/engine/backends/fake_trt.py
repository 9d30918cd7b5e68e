"""A numpy stand-in for ``tensorrt`` and ``pycuda.driver``, following the documented calls the
TensorRT backend makes: device memory is a dict of byte arrays, the engine computes the tiny
model's op with numpy, stream capture records instead of running. It proves the backend's own
logic (caching, streams in flight, graph capture and fallback, release), not TensorRT's."""

from __future__ import annotations

import json
import sys
import types
from importlib.machinery import ModuleSpec

import numpy as np

from mestream.engine.backends import trt_plan


def _module(name: str, **attrs: object) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = ModuleSpec(name, None)
    module.__dict__.update(attrs)
    return module


def install_fake(monkeypatch) -> types.SimpleNamespace:
    """``tensorrt`` and ``pycuda.driver`` stand-ins: device memory is a dict of byte arrays, the
    engine computes the tiny model's op with numpy, stream capture records instead of running."""
    memory: dict[int, np.ndarray] = {}
    state = types.SimpleNamespace(
        builds=0,
        executes=0,
        launches=0,
        set_shapes=0,
        ctx_stack=[],
        streams={},
        fail_build=False,
        fail_capture=False,
        memory=memory,
    )

    class Error(Exception):
        pass

    class Alloc:
        def __init__(self, n):
            self.addr = 0x1000 + 0x100000 * len(memory)
            memory[self.addr] = np.zeros(n, np.uint8)

        def __int__(self):
            return self.addr

        def free(self):
            del memory[self.addr]

    class Stream:
        def __init__(self):
            self.handle, self.recording = 7 + len(state.streams), None
            state.streams[self.handle] = self

        def synchronize(self):
            pass

        def begin_capture(self, mode):
            self.recording = []

        def end_capture(self):
            calls, self.recording = self.recording, None
            return types.SimpleNamespace(
                instantiate=lambda: types.SimpleNamespace(launch=lambda s: launch(calls))
            )

    def launch(calls):
        state.launches += 1
        for call in calls:
            call()

    class CudaContext:
        def push(self):
            state.ctx_stack.append(self)

        @staticmethod
        def pop():
            state.ctx_stack.pop()

        def detach(self):
            state.detached = True

    def htod(dst, src, stream):
        memory[int(dst)][: src.nbytes] = np.ascontiguousarray(src).reshape(-1).view(np.uint8)

    def dtoh(dst, src, stream):
        dst.reshape(-1).view(np.uint8)[:] = memory[int(src)][: dst.nbytes]

    device = types.SimpleNamespace(
        name=lambda: "Fake GPU", compute_capability=lambda: (8, 6), retain_primary_context=CudaContext
    )
    driver = _module(
        "pycuda.driver",
        Error=Error,
        init=lambda: None,
        Stream=Stream,
        Context=CudaContext,
        Device=type("Device", (), {"__new__": lambda cls, i: device, "count": staticmethod(lambda: 1)}),
        capture_mode=types.SimpleNamespace(THREAD_LOCAL=2),
        pagelocked_empty=np.empty,
        mem_alloc=Alloc,
        memcpy_htod_async=htod,
        memcpy_dtoh_async=dtoh,
    )

    class Context:
        def __init__(self, plan):
            self.plan, self.shapes, self.addresses = plan, {}, {}

        def set_input_shape(self, name, shape):
            state.set_shapes += 1
            lo, _, hi = self.plan["profiles"][name]
            self.shapes[name] = tuple(shape)
            return all(a <= s <= b for a, s, b in zip(lo, shape, hi))

        def get_tensor_shape(self, name):
            return self.shapes.get(name) or self.shapes.get(self.plan["inputs"][0][0], (-1,))

        def set_tensor_address(self, name, address):
            self.addresses[name] = address
            return True

        def execute_async_v3(self, handle):
            stream = state.streams[handle]
            if stream.recording is not None:
                stream.recording.append(self._run)
                return not state.fail_capture
            self._run()
            return True

        def _run(self):
            state.executes += 1
            args = []
            for name, dtype in self.plan["inputs"]:
                shape, dtype = self.shapes[name], np.dtype(dtype)
                args.append(
                    memory[self.addresses[name]][: trt_plan.buffer_nbytes(shape, dtype)]
                    .view(dtype)
                    .reshape(shape)
                )
            op = self.plan["op"]
            y = (
                args[0]
                if op == "Identity"
                else getattr(np, op.lower().replace("mul", "multiply"))(
                    args[0], args[1] if len(args) > 1 else np.array(self.plan["constant"], args[0].dtype)
                )
            )
            memory[self.addresses["y"]][: y.nbytes] = y.reshape(-1).view(np.uint8)

    class Engine:
        def __init__(self, plan):
            self.plan = plan
            self.names = [n for n, _ in plan["inputs"]] + ["y"]
            self.num_io_tensors = len(self.names)

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            return "input" if name != "y" else "output"

        def get_tensor_dtype(self, name):
            return dict(self.plan["inputs"]).get(name, self.plan["inputs"][0][1])

        def create_execution_context(self):
            return Context(self.plan)

    class Parser:
        def __init__(self, network, logger):
            self.network, self.errors = network, []

        def parse(self, data, path):
            import onnx
            from onnx import numpy_helper

            model = onnx.load_from_string(data)
            node = model.graph.node[0]
            if node.op_type not in ("Add", "Mul"):
                self.errors.append(f"no importer for op {node.op_type}")
                return False
            self.network.plan = {
                "op": node.op_type,
                "constant": [float(numpy_helper.to_array(t)) for t in model.graph.initializer][:1],
                "inputs": [
                    (i.name, str(onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)))
                    for i in model.graph.input
                ],
            }
            self.network.plan["constant"] = (self.network.plan["constant"] or [0.0])[0]
            self.network.num_inputs = len(self.network.plan["inputs"])
            return True

        num_errors = property(lambda self: len(self.errors))

        def get_error(self, i):
            return self.errors[i]

    class BuilderConfig:
        def __init__(self):
            self.profiles, self.cache = [], None

        def set_memory_pool_limit(self, pool, size):
            self.workspace = size

        def set_flag(self, flag):
            pass

        def add_optimization_profile(self, profile):
            self.profiles.append(profile.shapes)
            return len(self.profiles) - 1

        def create_timing_cache(self, data):
            return types.SimpleNamespace(serialize=lambda: b"timings" + bytes(data)[:0])

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Builder:
        platform_has_fast_fp16 = True

        def __init__(self, logger):
            pass

        def create_network(self, flags):
            net = types.SimpleNamespace(plan=None, num_inputs=0)
            net.get_input = lambda i: types.SimpleNamespace(name=net.plan["inputs"][i][0])
            return net

        create_builder_config = staticmethod(BuilderConfig)

        def create_optimization_profile(self):
            profile = types.SimpleNamespace(shapes={})
            profile.set_shape = lambda name, lo, opt, hi: profile.shapes.__setitem__(name, (lo, opt, hi))
            return profile

        def build_serialized_network(self, network, builder_config):
            state.builds += 1
            if state.fail_build:
                return None
            return json.dumps({**network.plan, "profiles": builder_config.profiles[0]}).encode()

    class ILogger:
        Severity = types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self):
            pass

    def deserialize(data):
        try:
            return Engine(json.loads(bytes(data)))
        except ValueError:
            return None

    trt = _module(
        "tensorrt",
        __version__="10.0.fake",
        ILogger=ILogger,
        Builder=Builder,
        OnnxParser=Parser,
        Runtime=lambda logger: types.SimpleNamespace(deserialize_cuda_engine=deserialize),
        MemoryPoolType=types.SimpleNamespace(WORKSPACE=0),
        BuilderFlag=types.SimpleNamespace(FP16=1),
        TensorIOMode=types.SimpleNamespace(INPUT="input", OUTPUT="output"),
        nptype=lambda dtype: np.dtype(dtype).type,
    )
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "pycuda", _module("pycuda", driver=driver))
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    return state
