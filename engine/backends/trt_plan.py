"""What the TensorRT backend decides before it touches TensorRT: profiles, cache keys, buffer sizes.

Why a module of its own, with numpy and the standard library only: every decision here (which
shapes an engine is built for, when a cached engine is stale, how many bytes each buffer needs)
can be wrong in ways that only show up on a GPU machine, hours into a run. Kept free of
``tensorrt`` and ``pycuda`` it is tested on any machine, and the GPU-side module
(`mestream.engine.backends.trt`) is left with the calls into TensorRT and CUDA.

Engine cache entries are ``<cache>/<model>.<subgraph>-<key[:16]>.engine`` with a JSON sidecar
``<same>.engine.json`` holding the full key, the fields it was computed from and the sha256 and
size of the engine bytes. An entry is used only when the sidecar's key is the expected one and
the bytes hash to the recorded sha256; anything else (missing, another configuration, truncated,
damaged) is rebuilt, never loaded. Writes go to a temporary file that replaces the entry, so a
reader never sees half an engine, and an engine without a matching sidecar is simply stale.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mestream.engine.backends.base import BackendError
from mestream.engine.config import InferenceConfig
from mestream.engine.manifest import BATCH, SubgraphInfo

log = logging.getLogger("mestream.backends")

ENGINE_FORMAT = 1
"""Bumped when the engine file layout or the key's fields change, so old entries turn stale."""

Shape = tuple[int, ...]
Profile = tuple[Shape, Shape, Shape]


def precision(config: InferenceConfig) -> str:
    """``fp16`` or ``fp32``: what was asked for. Whether the GPU has fast FP16 is part of the
    cache key through the GPU name and compute capability, so the request alone is enough."""
    return "fp16" if config.tensorrt.fp16 else "fp32"


# -- optimization profile -----------------------------------------------------------------------


def profile_shapes(subgraph: SubgraphInfo, config: InferenceConfig) -> dict[str, Profile]:
    """``{input: (min, opt, max)}`` for the subgraph's one optimization profile.

    The batch axis runs 1 / ``opt_batch`` / ``max_batch``; other dynamic axes take their
    ``(min, opt, max)`` from the manifest's ``dims``; fixed axes are the same in all three.
    """
    profiles: dict[str, Profile] = {}
    for spec in subgraph.inputs:
        lo: list[int] = []
        opt: list[int] = []
        hi: list[int] = []
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int):
                triple: tuple[int, ...] = (dim, dim, dim)
            elif dim == BATCH:
                triple = (1, config.opt_batch, config.max_batch)
            elif dim in subgraph.dims:
                triple = tuple(int(d) for d in subgraph.dims[dim])
                if len(triple) != 3 or not 1 <= triple[0] <= triple[1] <= triple[2]:
                    raise BackendError(
                        f"model {subgraph.key}: input {spec.name!r} axis {axis} ({dim!r}) has dims "
                        f"{subgraph.dims[dim]!r}; expected (min, opt, max) with 1 <= min <= opt <= max"
                    )
            else:
                raise BackendError(
                    f"model {subgraph.key}: input {spec.name!r} axis {axis} is dynamic ({dim!r}) but the "
                    f"manifest gives no (min, opt, max) for it in the subgraph's dims "
                    f"(known: {', '.join(subgraph.dims) or 'none'}); re-run `mestream export`"
                )
            lo.append(triple[0])
            opt.append(triple[1])
            hi.append(triple[2])
        profiles[spec.name] = (tuple(lo), tuple(opt), tuple(hi))
    return profiles


# -- engine cache -------------------------------------------------------------------------------


def key_fields(
    onnx_sha256: str,
    trt_version: str,
    gpu_name: str,
    compute_capability: Any,
    precision: str,
    profiles: Mapping[str, Profile],
) -> dict[str, Any]:
    """The fields an engine depends on, in plain JSON types (what the sidecar records)."""
    if isinstance(compute_capability, (tuple, list)):
        compute_capability = ".".join(str(int(x)) for x in compute_capability)
    return {
        "format": ENGINE_FORMAT,
        "onnx_sha256": str(onnx_sha256),
        "tensorrt": str(trt_version),
        "gpu": str(gpu_name),
        "compute_capability": str(compute_capability),
        "precision": str(precision),
        "profiles": {name: [list(map(int, s)) for s in triple] for name, triple in sorted(profiles.items())},
    }


def cache_key(
    onnx_sha256: str,
    trt_version: str,
    gpu_name: str,
    compute_capability: Any,
    precision: str,
    profiles: Mapping[str, Profile],
) -> str:
    """sha256 hex of the canonical JSON of `key_fields`.

    Why these fields: an engine is only valid for the exact ONNX file, TensorRT version and GPU
    model it was built with (TensorRT refuses or misbehaves otherwise), and it bakes in its
    precision and profile ranges. Builder settings that only change speed (workspace size)
    are deliberately left out.
    """
    return fields_key(key_fields(onnx_sha256, trt_version, gpu_name, compute_capability, precision, profiles))


def fields_key(fields: Mapping[str, Any]) -> str:
    """The key of already-collected `key_fields` (what `cache_key` returns for the same values)."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def cache_dir(config: InferenceConfig) -> Path:
    """``inference.tensorrt.cache_dir``, else ``$MESTREAM_CACHE/tensorrt`` (default ``~/.cache/mestream``)."""
    if config.tensorrt.cache_dir:
        return Path(config.tensorrt.cache_dir).expanduser()
    return Path(os.environ.get("MESTREAM_CACHE", Path.home() / ".cache" / "mestream")) / "tensorrt"


def engine_path(config: InferenceConfig, subgraph: SubgraphInfo, key: str) -> Path:
    return cache_dir(config) / f"{subgraph.model}.{subgraph.name}-{key[:16]}.engine"


def timing_cache_path(config: InferenceConfig) -> Path:
    """One timing cache for all subgraphs: layer timings carry over between models. TensorRT checks
    its header against the device and we start afresh when it belongs to another GPU."""
    return cache_dir(config) / "timing.cache"


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def cached_engine(path: str | os.PathLike[str], expected_key: str) -> bytes | None:
    """The engine bytes at ``path`` when they are the ones for ``expected_key`` and intact, else
    None (with the reason logged) so that the caller rebuilds."""
    path = Path(path)
    if not path.is_file():
        log.info("tensorrt: no cached engine at %s; building one", path)
        return None
    try:
        meta = json.loads(sidecar_path(path).read_text())
        recorded_key, recorded_sha, recorded_size = meta["key"], meta["sha256"], int(meta["bytes"])
    except FileNotFoundError:
        log.warning("tensorrt: cached engine %s has no sidecar %s; rebuilding", path, sidecar_path(path).name)
        return None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        log.warning("tensorrt: cached engine %s has an unreadable sidecar (%s); rebuilding", path, exc)
        return None
    if recorded_key != expected_key:
        log.info(
            "tensorrt: cached engine %s was built for another configuration (key %.12s…, want %.12s…); "
            "rebuilding",
            path,
            recorded_key,
            expected_key,
        )
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.warning("tensorrt: cannot read cached engine %s (%s); rebuilding", path, exc)
        return None
    if len(data) != recorded_size or hashlib.sha256(data).hexdigest() != recorded_sha:
        log.warning(
            "tensorrt: cached engine %s is truncated or damaged (%d bytes, sidecar says %d); rebuilding",
            path,
            len(data),
            recorded_size,
        )
        return None
    return data


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def store_engine(
    path: str | os.PathLike[str], data: bytes, key: str, fields: Mapping[str, Any] | None = None
) -> None:
    """Write the engine, then its sidecar, each atomically. A crash between the two leaves an
    engine whose bytes do not match the old sidecar's sha256, which `cached_engine` rejects."""
    path = Path(path)
    data = bytes(data)
    _atomic_write(path, data)
    meta = {
        "key": key,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "fields": dict(fields or {}),
    }
    _atomic_write(sidecar_path(path), (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())


def read_timing_cache(path: str | os.PathLike[str]) -> bytes:
    """The serialized timing cache, or ``b""`` (TensorRT's "start a new one") when there is none."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        log.warning("tensorrt: cannot read timing cache %s (%s); starting a new one", path, exc)
        return b""


def store_timing_cache(path: str | os.PathLike[str], data: bytes | memoryview) -> None:
    _atomic_write(Path(path), bytes(data))


# -- buffers ------------------------------------------------------------------------------------


def buffer_nbytes(shape: tuple[int, ...], dtype: npt.DTypeLike) -> int:
    """Bytes of a C-contiguous array of ``shape`` and ``dtype`` (a scalar is one element)."""
    if any(int(d) < 0 for d in shape):
        raise ValueError(f"shape {tuple(shape)} has a negative (unresolved) dimension")
    count = 1
    for d in shape:
        count *= int(d)
    return count * np.dtype(dtype).itemsize


@dataclass(frozen=True)
class TensorPlan:
    """One I/O tensor's buffer: allocated once at ``max_shape`` (``nbytes``).

    ``max_shape``/``nbytes`` are None for outputs with named axes other than ``batch``: the
    manifest names such an axis (``frames``) but not how it follows from the inputs, so it
    cannot be resolved here. The backend sizes those from the engine at activation
    (``context.get_tensor_shape`` after setting the inputs to their max profile shapes).
    """

    name: str
    is_input: bool
    dtype: np.dtype
    max_shape: Shape | None
    nbytes: int | None


def io_plan(subgraph: SubgraphInfo, config: InferenceConfig) -> dict[str, TensorPlan]:
    """Every input and output of the subgraph with the largest shape it can take and its bytes.

    Inputs are at the max of their profile. Outputs whose axes are ints or ``batch`` are at
    ``max_batch``; the rest are left for the engine to size (see `TensorPlan`).
    """
    plans: dict[str, TensorPlan] = {}
    for name, (_, _, hi) in profile_shapes(subgraph, config).items():
        dtype = np.dtype(next(s.dtype for s in subgraph.inputs if s.name == name))
        plans[name] = TensorPlan(name, True, dtype, hi, buffer_nbytes(hi, dtype))
    for spec in subgraph.outputs:
        dtype = np.dtype(spec.dtype)
        if all(isinstance(d, int) or d == BATCH for d in spec.shape):
            shape = tuple(config.max_batch if d == BATCH else int(d) for d in spec.shape)
            plans[spec.name] = TensorPlan(spec.name, False, dtype, shape, buffer_nbytes(shape, dtype))
        else:
            plans[spec.name] = TensorPlan(spec.name, False, dtype, None, None)
    return plans


def io_mismatch(
    subgraph: SubgraphInfo, inputs: list[str], outputs: list[str], dtypes: Mapping[str, npt.DTypeLike]
) -> str | None:
    """Why an engine's I/O tensors (names by mode, numpy dtypes) are not the manifest's, or None.
    Checked at activation because a mismatch would otherwise surface as wrong buffer sizes."""
    want_in, want_out = [s.name for s in subgraph.inputs], [s.name for s in subgraph.outputs]
    if set(inputs) != set(want_in) or set(outputs) != set(want_out):
        return (
            f"engine tensors {sorted(inputs)} -> {sorted(outputs)} "
            f"are not the manifest's {want_in} -> {want_out}"
        )
    for spec in (*subgraph.inputs, *subgraph.outputs):
        if np.dtype(dtypes[spec.name]) != np.dtype(spec.dtype):
            return (
                f"tensor {spec.name!r} is {np.dtype(dtypes[spec.name])} in the engine "
                f"but {spec.dtype} in the manifest"
            )
    return None
