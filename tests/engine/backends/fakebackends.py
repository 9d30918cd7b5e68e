"""Backends a plugin package could register, for the selection and parity tests."""

from __future__ import annotations

from mestream.engine.backends.base import Runner
from mestream.engine.backends.onnxrt import OnnxRuntimeBackend

ENTRY_POINTS = """\
[mestream.backends]
needsgpu = tests.engine.backends.fakebackends:NeedsGpu
offbyone = tests.engine.backends.fakebackends:OffByOne
"""


class NeedsGpu(Runner):
    """A backend that cannot run on a machine without a GPU."""

    name = "needsgpu"

    @classmethod
    def unavailable(cls) -> str | None:
        return "no CUDA device initializes: pip install 'mestream[gpu]' and run on a GPU machine"


class OffByOne(OnnxRuntimeBackend):
    """ONNX Runtime with every float output shifted by 1e-3: a backend that disagrees."""

    name = "offbyone"

    def _infer(self, feed):
        outputs = super()._infer(feed)
        return {k: v + 1e-3 if v.dtype.kind == "f" else v for k, v in outputs.items()}
