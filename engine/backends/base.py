"""The `Backend` seam: one exported subgraph, loaded from a manifest, run on some runtime.

Why a runner with a lifecycle (after Polygraphy's runners): constructing one is cheap and
touches no runtime, so a config error or a missing package surfaces before anything heavy
is built; ``activate`` builds the session / engine and its buffers once; ``infer`` is then
called many times on the hot path and allocates nothing in steady state; ``deactivate``
frees it all. Outputs may live in buffers the runner reuses, valid until the next call or
``deactivate``: callers copy what they keep, the same contract as the frame ring.

Inputs are checked on every call against specs resolved at activation (a few tuple
comparisons, no runtime metadata queries), because a wrong shape reaching ONNX Runtime or
TensorRT gives an error that names neither the model nor the expected shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from mestream.engine.config import InferenceConfig
from mestream.engine.manifest import BATCH, Manifest, SubgraphInfo, TensorInfo

log = logging.getLogger("mestream.backends")


class BackendError(RuntimeError):
    """A subgraph cannot be loaded or run; the message names the model subgraph."""


class BackendUnavailable(BackendError):
    """The backend cannot run on this machine; the message says what to install."""


class InputError(ValueError):
    """A subgraph was given an input of the wrong name, shape or dtype; the message names the
    model subgraph, the input and the expected shape."""


@runtime_checkable
class Backend(Protocol):
    """What the engine needs of a backend; `Runner` implements it."""

    name: ClassVar[str]
    subgraph: SubgraphInfo

    def activate(self) -> None: ...

    def warmup(self, batch: int = 1, iterations: int = 3) -> None: ...

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def deactivate(self) -> None: ...


BackendFactory = Callable[[Manifest, str, InferenceConfig], Backend]
"""What a ``mestream.backends`` entry point is: a `Runner` subclass, or any class or callable
taking ``(manifest, key, config)`` that gives a `Backend` (``unavailable()`` optional)."""


class Runner:
    """Base of the built-in backends: state guards, input checks, warm-up, context manager.

    Subclasses set ``name`` and implement ``_activate``, ``_infer`` and ``_deactivate``, and
    ``unavailable()`` when they need something the runtime install does not have.

    Args:
        manifest: the export the subgraph comes from.
        key: the subgraph, ``<model>.<subgraph>``.
        config: threads, batch sizes and backend-specific settings.
    """

    name: ClassVar[str] = "?"
    extra: ClassVar[str] = ""
    """The pip extra that brings this backend's packages (``mestream[extra]``)."""

    def __init__(self, manifest: Manifest, key: str, config: InferenceConfig | None = None) -> None:
        self.manifest = manifest
        self.subgraph = manifest.subgraph(key)
        self.config = config or InferenceConfig()
        self.active = False

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this backend cannot run here (a missing package, no GPU), or None when it can."""
        return None

    @property
    def key(self) -> str:
        return self.subgraph.key

    @property
    def inputs(self) -> tuple[TensorInfo, ...]:
        return self.subgraph.inputs

    @property
    def outputs(self) -> tuple[TensorInfo, ...]:
        return self.subgraph.outputs

    # -- lifecycle -------------------------------------------------------------------------------

    def activate(self) -> None:
        if self.active:
            return
        self._activate()
        self.active = True

    def deactivate(self) -> None:
        if not self.active:
            return
        try:
            self._deactivate()
        finally:
            self.active = False

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The subgraph's outputs by name. They may be overwritten by the next call: copy what you keep."""
        if not self.active:
            raise BackendError(f"{self.name} backend for {self.key}: infer() before activate()")
        self.check(feed)
        return self._infer(feed)

    def warmup(self, batch: int = 1, iterations: int = 3) -> None:
        """Run a few calls so that lazy allocation and kernel selection happen before timing starts."""
        feed = example_feed(self.subgraph, batch)
        for _ in range(iterations):
            self.infer(feed)

    # -- checks ----------------------------------------------------------------------------------

    def check(self, feed: Mapping[str, np.ndarray]) -> None:
        expected = [t.name for t in self.inputs]
        if len(feed) != len(expected) or any(name not in feed for name in expected):
            raise InputError(f"model {self.key}: inputs {sorted(feed)} given, expected {expected}")
        seen: dict[str, tuple[int, str]] = {}  # named axis -> (its size, the input that set it)
        for spec in self.inputs:
            array = feed[spec.name]
            shape = getattr(array, "shape", None)
            if getattr(array, "dtype", None) != spec.dtype or shape is None or len(shape) != len(spec.shape):
                raise InputError(
                    f"model {self.key}: input {spec.name!r} must be {spec.dtype} {describe(spec)}, "
                    f"got {getattr(array, 'dtype', type(array).__name__)} "
                    f"{tuple(shape) if shape is not None else '(no shape)'}"
                )
            for axis, (want, got) in enumerate(zip(spec.shape, shape)):
                if isinstance(want, int):
                    ok = got == want
                elif want == BATCH:
                    ok = 1 <= got <= self.config.max_batch
                else:
                    lo, _, hi = self.subgraph.dims.get(want, (1, 0, 1 << 30))
                    ok = lo <= got <= hi
                if not ok:
                    raise InputError(
                        f"model {self.key}: input {spec.name!r} has shape {tuple(shape)}, expected "
                        f"{describe(spec, self.subgraph, self.config.max_batch)} (axis {axis}: {want})"
                    )
                if isinstance(want, str):
                    # a named axis (batch, time) is one size across all inputs: the graph combines them
                    size, first = seen.setdefault(want, (got, spec.name))
                    if got != size:
                        raise InputError(
                            f"model {self.key}: input {spec.name!r} has shape {tuple(shape)}, expected "
                            f"{describe(spec, self.subgraph, self.config.max_batch)} with {want} {size} as "
                            f"in input {first!r} (axis {axis}: {want})"
                        )

    # -- subclass hooks --------------------------------------------------------------------------

    def _activate(self) -> None:
        raise NotImplementedError

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _deactivate(self) -> None:
        pass


def describe(spec: TensorInfo, subgraph: SubgraphInfo | None = None, max_batch: int | None = None) -> str:
    """``(batch ≤ 16, 2, 32, 32)``: a shape with its dynamic axes' ranges, for error messages."""
    parts = []
    for dim in spec.shape:
        if isinstance(dim, int):
            parts.append(str(dim))
        elif dim == BATCH:
            parts.append(f"batch 1..{max_batch}" if max_batch else dim)
        elif subgraph is not None and dim in subgraph.dims:
            lo, _, hi = subgraph.dims[dim]
            parts.append(f"{dim} {lo}..{hi}")
        else:
            parts.append(dim)
    return f"({', '.join(parts)})"


def concrete_shape(spec: TensorInfo, subgraph: SubgraphInfo, batch: int, which: int = 1) -> tuple[int, ...]:
    """The spec's shape at ``batch`` with other dynamic axes at their min (0), opt (1) or max (2)."""
    return tuple(
        d if isinstance(d, int) else batch if d == BATCH else subgraph.dims[d][which] for d in spec.shape
    )


def example_feed(
    subgraph: SubgraphInfo, batch: int, rng: np.random.Generator | None = None
) -> dict[str, np.ndarray]:
    """Inputs of the right names, shapes (dynamic axes at opt) and dtypes: zeros, or random
    values when ``rng`` is given (uniform [0, 1) floats, all-true masks)."""
    feed = {}
    for spec in subgraph.inputs:
        shape = concrete_shape(spec, subgraph, batch)
        if spec.dtype == "bool":
            feed[spec.name] = np.ones(shape, dtype=bool)
        elif rng is not None:
            feed[spec.name] = rng.random(shape, dtype=np.float64).astype(spec.dtype)
        else:
            feed[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return feed


def missing_package(backend: str, package: str, extra: str) -> str:
    """The one wording of "install this" every backend uses."""
    return (
        f"the {backend} backend needs the Python package {package!r}, which is not installed: "
        f"pip install 'mestream[{extra}]' (from a source checkout: pip install -e '.[{extra}]')"
    )


def describe_runner(runner: Backend) -> str:
    return f"{getattr(runner, 'name', type(runner).__name__)} ({runner.subgraph.key})"
