"""Run configuration: frozen dataclasses loaded from TOML, overridden by CLI flags.

Why frozen dataclasses and a strict loader: a typo in a lab's config file (``fsp = 300``)
must stop the run with the key's name, not silently fall back to a default and record a
session at the wrong rate. Every table and key is checked against the dataclass fields.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"


class ConfigError(ValueError):
    """A config file or flag is malformed; the message names the file and the key."""


def _require(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: must be {rule}, got {value!r}")


@dataclass(frozen=True)
class SourceConfig:
    """Where frames come from.

    Args:
        kind: a registered source (``mestream sources`` lists them): synthetic, video,
            folder, opencv, or a plugin's name.
        name: the camera id carried by every event.
        fps: nominal frame rate; 0 means the source's own: 500 for the synthetic camera,
            the file's rate for a video, 200 for an image folder (CASME II and SAMM's rate),
            the device's for an OpenCV camera.
        resolution: ``WxH``; the synthetic camera renders at it (default 640x480), an OpenCV
            device is asked for it, replays are resized to it; empty keeps the native size.
        pixel_format: ``mono8`` (the engine's working format) or ``bgr8``.
        seed: the synthetic camera's seed (video and ground truth follow from it).
        pace: release frames in real time at ``fps``; off replays as fast as possible.
        path: the video file or image folder to replay.
        device: the OpenCV device index.
        options: source-specific keys for plugin sources, passed through untouched.
    """

    kind: str = "synthetic"
    name: str = "cam0"
    fps: float = 0.0
    resolution: str = ""
    pixel_format: str = "mono8"
    seed: int = 0
    pace: bool = True
    path: str = ""
    device: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require(self.fps >= 0, "source.fps", ">= 0 (0 = the source's own rate)", self.fps)
        _require(bool(self.name), "source.name", "a non-empty camera id", self.name)


@dataclass(frozen=True)
class RingConfig:
    """The frame ring.

    Args:
        seconds: ring length in seconds of video at the source's fps; two seconds holds a
            whole micro-expression (≤ 0.5 s) with room for a lagging reader.
        shared_memory: a `multiprocessing.shared_memory` name so that a recorder or viewer
            process can attach to the ring; empty keeps it private to the process.
    """

    seconds: float = 2.0
    shared_memory: str = ""

    def __post_init__(self) -> None:
        _require(self.seconds > 0, "ring.seconds", "> 0", self.seconds)


@dataclass(frozen=True)
class SinkConfig:
    """An extra sink (e.g. from a plugin), built by its ``from_options(options)``."""

    kind: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishConfig:
    """Where events go.

    Args:
        endpoint: the ZeroMQ endpoint the publisher binds (``tcp://`` or ``ipc://``);
            empty disables the ZeroMQ sink.
        hwm: the ZeroMQ send high-water mark, in messages per subscriber.
        log: a JSONL event log path; every event is appended and flushed.
        queue: the bus queue between stages and sinks; when full, events are dropped and counted.
        sinks: extra sinks by kind, e.g. ``[[publish.sinks]] kind = "lsl"``.
    """

    endpoint: str = DEFAULT_ENDPOINT
    hwm: int = 1000
    log: str = ""
    queue: int = 4096
    sinks: tuple[SinkConfig, ...] = ()

    def __post_init__(self) -> None:
        _require(self.hwm >= 1, "publish.hwm", ">= 1 (0 would mean unbounded)", self.hwm)
        _require(self.queue >= 1, "publish.queue", ">= 1", self.queue)


@dataclass(frozen=True)
class TensorRTConfig:
    """The TensorRT backend (GPU): how engines are built and run.

    Args:
        fp16: build with the FP16 flag (layers TensorRT finds faster in half precision run in it).
        workspace_mb: the builder's workspace memory-pool limit.
        cache_dir: serialized engines and the timing cache; empty is ``~/.cache/mestream/tensorrt``.
        streams: execution contexts / CUDA streams per stage, for batches in flight at once.
        cuda_graph: capture each (stream, shape) once as a CUDA graph and replay it.
        device: the CUDA device index.
    """

    fp16: bool = True
    workspace_mb: int = 1024
    cache_dir: str = ""
    streams: int = 2
    cuda_graph: bool = False
    device: int = 0

    def __post_init__(self) -> None:
        _require(self.workspace_mb >= 16, "inference.tensorrt.workspace_mb", ">= 16", self.workspace_mb)
        _require(1 <= self.streams <= 16, "inference.tensorrt.streams", "1..16", self.streams)
        _require(self.device >= 0, "inference.tensorrt.device", ">= 0", self.device)


@dataclass(frozen=True)
class InferenceConfig:
    """Which backend runs the exported models, and how.

    Args:
        backend: ``onnxruntime`` (CPU, the default), ``tensorrt`` (GPU), ``torch`` (eager
            reference, needs the ``train`` extra), or a plugin's kind.
        fallback: when ``backend`` cannot run here (package or GPU missing), warn and use
            onnxruntime instead of stopping.
        models: the export folder (``mestream export --out DIR``); empty is the export of the
            shipped demo weights.
        threads: ONNX Runtime intra-op threads (torch threads for the torch backend).
        opt_batch, max_batch: the batch sizes engines are built for (TensorRT profiles:
            min 1, opt, max) and the largest batch a stage is given.
        tensorrt: see `TensorRTConfig`.
    """

    backend: str = "onnxruntime"
    fallback: bool = True
    models: str = ""
    threads: int = 1
    opt_batch: int = 4
    max_batch: int = 16
    tensorrt: TensorRTConfig = field(default_factory=TensorRTConfig)

    def __post_init__(self) -> None:
        _require(self.threads >= 1, "inference.threads", ">= 1", self.threads)
        _require(self.max_batch >= 1, "inference.max_batch", ">= 1", self.max_batch)
        _require(1 <= self.opt_batch <= self.max_batch, "inference.opt_batch", f"1..max_batch ({self.max_batch})",
                 self.opt_batch)


@dataclass(frozen=True)
class RunConfig:
    """One `mestream run`.

    Args:
        source: see `SourceConfig`.
        ring: see `RingConfig`.
        publish: see `PublishConfig`.
        inference: see `InferenceConfig`.
        duration: seconds of source time to run; 0 runs until Ctrl-C or the source ends.
        stats_interval: seconds between ``mestream.stats`` events.
        ground_truth: where the synthetic camera's ground truth is written (JSON) at the end.
        progress: show a progress bar for finite runs.
    """

    source: SourceConfig = field(default_factory=SourceConfig)
    ring: RingConfig = field(default_factory=RingConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    duration: float = 0.0
    stats_interval: float = 1.0
    ground_truth: str = ""
    progress: bool = True

    def __post_init__(self) -> None:
        _require(self.duration >= 0, "duration", ">= 0 (0 = until Ctrl-C)", self.duration)
        _require(self.stats_interval >= 0.05, "stats_interval", ">= 0.05 s", self.stats_interval)


PRESETS: dict[str, RunConfig] = {
    "default": RunConfig(),
    # `make demo`: 30 s of the 500 fps synthetic camera, with its event log and ground truth.
    "demo": RunConfig(
        duration=30.0,
        publish=PublishConfig(log="runs/demo/events.jsonl"),
        ground_truth="runs/demo/ground_truth.json",
    ),
}


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """Coerce a TOML value to the field's annotated type, or raise naming the key."""
    origin = typing.get_origin(hint)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool):
        if type(value) is not hint:
            raise ConfigError(f"{where}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
        return value
    if origin in (Mapping, dict) or hint is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        return types.MappingProxyType(dict(value))
    if origin is tuple:
        (item,) = typing.get_args(hint)[:1]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return tuple(_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        return merge(hint(), value, where)
    return value


def merge(base: Any, data: Mapping[str, Any], where: str = "") -> Any:
    """Return ``base`` with the keys of ``data`` replaced, recursing into nested tables."""
    hints = typing.get_type_hints(type(base))
    names = {f.name for f in dataclasses.fields(base)}
    changes = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise ConfigError(f"unknown key {path!r}; known keys here: {', '.join(sorted(names))}")
        current = getattr(base, key)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            changes[key] = merge(current, value, path)
        else:
            changes[key] = _check_type(value, hints[key], path)
    return dataclasses.replace(base, **changes)


def load_config(path: str | Path | None = None, preset: str = "default") -> RunConfig:
    """The preset, overlaid with a TOML file when one is given."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    config = PRESETS[preset]
    if path is None:
        return config
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None
    try:
        return merge(config, data)
    except ConfigError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
