"""Run configuration: frozen dataclasses loaded from TOML, overridden by CLI flags.

Why frozen dataclasses and a strict loader: a typo in a lab's config file (``fsp = 300``)
must stop the run with the key's name, not silently fall back to a default and record a
session at the wrong rate. Every table and key is checked against the dataclass fields.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mestream.engine.events import ALL_CAMERAS
from mestream.engine.sinks import Sink
from mestream.plugins import BACKEND_GROUP, NOUNS, SINK_GROUP, SOURCE_GROUP, scan

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
FACE_DETECTORS = ("haar", "yunet", "fixed")
WHEN_FULL = ("auto", "overwrite", "wait")


MODELS_VALUE = "omit the key to use the model's value"
"""How every config field that defers to the exported model says so: None in Python, no key in TOML."""

MAX_CAMERAS = 16
"""Copies of one source a run takes (``--cameras``)."""


SHIPPED_WEIGHTS_NOTE = (
    "models: the shipped demo weights, trained on synthetic faces only and not validated "
    "on real faces; their spots and emotion classes show the pipeline working, not a "
    "measurement"
)
"""What a run on the shipped export says, in its ``started`` event, on the console and in the summary."""


def weights_note(config: RunConfig) -> str:
    """`SHIPPED_WEIGHTS_NOTE` when the run spots with the shipped demo export (``inference.models``
    empty), else "": a newcomer must not read the demo's labels as a validated measurement."""
    return SHIPPED_WEIGHTS_NOTE if config.spot.enabled and not config.inference.models else ""


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
        _require(
            bool(self.name) and self.name != ALL_CAMERAS,
            "source.name",
            f"a non-empty camera id other than {ALL_CAMERAS!r} (events about every camera)",
            self.name,
        )


@dataclass(frozen=True)
class RingConfig:
    """The frame ring.

    Args:
        seconds: ring length in seconds of video at the source's fps; two seconds holds a
            whole micro-expression (≤ 0.5 s) with room for a lagging reader.
        shared_memory: a `multiprocessing.shared_memory` name so that a recorder or viewer
            process can attach to the ring; empty keeps it private to the process.
        when_full: what a writer does when its slowest reader is a whole ring behind:
            ``overwrite`` (the reader loses frames, counted; a live camera cannot wait),
            ``wait`` (the writer waits: a replay loses nothing), or ``auto``: ``wait`` for
            unpaced sources, ``overwrite`` for paced ones.
    """

    seconds: float = 2.0
    shared_memory: str = ""
    when_full: str = "auto"

    def __post_init__(self) -> None:
        _require(self.seconds > 0, "ring.seconds", "> 0", self.seconds)
        _require(
            self.when_full in WHEN_FULL, "ring.when_full", f"one of {', '.join(WHEN_FULL)}", self.when_full
        )


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
        sinks: extra sinks: a `SinkConfig` naming a registered kind (what TOML's
            ``[[publish.sinks]] kind = "lsl"`` gives), or, from Python, a sink object following
            `mestream.engine.sinks.Sink`, used as it is: the run opens and closes it.
        console: print a line per spot and recognition event as it is published.
    """

    endpoint: str = DEFAULT_ENDPOINT
    hwm: int = 1000
    log: str = ""
    queue: int = 4096
    sinks: tuple[SinkConfig | Sink, ...] = ()
    console: bool = True

    def __post_init__(self) -> None:
        _require(self.hwm >= 1, "publish.hwm", ">= 1 (0 would mean unbounded)", self.hwm)
        _require(self.queue >= 1, "publish.queue", ">= 1", self.queue)
        for i, sink in enumerate(self.sinks):
            _require(
                isinstance(sink, (SinkConfig, Sink)),
                f"publish.sinks[{i}]",
                "a SinkConfig or a sink object (name, dropped, open(), send(topic, payload), close())",
                sink,
            )


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
        _require(
            1 <= self.opt_batch <= self.max_batch,
            "inference.opt_batch",
            f"1..max_batch ({self.max_batch})",
            self.opt_batch,
        )


@dataclass(frozen=True)
class FaceConfig:
    """The face stage: find the face, then crop every frame into the crop ring.

    Args:
        detector: ``haar`` (OpenCV's cascade, built in), ``yunet`` (OpenCV's FaceDetectorYN;
            needs ``model``), or ``fixed`` (``roi`` as given: chin-rest setups, no detector).
        model: the YuNet ONNX file (face_detection_yunet_2023mar.onnx from OpenCV's model zoo).
        roi: the face as ``[x, y, w, h]`` pixels for ``fixed``; the crop box is built from it
            as from a detection (``scale``).
        scale: the crop box's side over the detection's, centred on it (the models were trained at 1.2).
        redetect_s: seconds between re-detections while a face is tracked.
        retry_s: seconds between detections while no face is known.
        smoothing: weight of a new detection in the smoothed box (1 = jump to it).
        deadband: the crops switch to the smoothed box only once it moved by more than this
            fraction of the side: a box that followed every detection would jitter by more
            than a micro-expression moves.
        detect_width: frames are downscaled to this width for detection (0 keeps them whole).
        lost_after: consecutive failed detections before ``face_lost`` is published.
        crop_size: side of the crops; omitted (None) is the largest crop the models were trained on.
    """

    detector: str = "haar"
    model: str = ""
    roi: tuple[int, ...] = ()
    scale: float = 1.2
    redetect_s: float = 1.0
    retry_s: float = 0.1
    smoothing: float = 0.5
    deadband: float = 0.05
    detect_width: int = 320
    lost_after: int = 3
    crop_size: int | None = None

    def __post_init__(self) -> None:
        _require(
            self.detector in FACE_DETECTORS,
            "face.detector",
            f"one of {', '.join(FACE_DETECTORS)}",
            self.detector,
        )
        _require(
            self.detector != "yunet" or bool(self.model),
            "face.model",
            "the YuNet .onnx path when detector = 'yunet'",
            self.model,
        )
        _require(
            self.detector != "fixed" or (len(self.roi) == 4 and min(self.roi[2:]) > 0),
            "face.roi",
            "[x, y, w, h] with w, h > 0 when detector = 'fixed'",
            self.roi,
        )
        _require(self.scale >= 1.0, "face.scale", ">= 1", self.scale)
        _require(
            self.redetect_s > 0 and self.retry_s > 0,
            "face.redetect_s / face.retry_s",
            "> 0",
            (self.redetect_s, self.retry_s),
        )
        _require(0 < self.smoothing <= 1, "face.smoothing", "within (0, 1]", self.smoothing)
        _require(0 <= self.deadband < 0.5, "face.deadband", "within [0, 0.5)", self.deadband)
        _require(
            self.detect_width == 0 or self.detect_width >= 64,
            "face.detect_width",
            "0 or >= 64",
            self.detect_width,
        )
        _require(self.lost_after >= 1, "face.lost_after", ">= 1", self.lost_after)
        _require(
            self.crop_size is None or self.crop_size >= 32,
            "face.crop_size",
            f">= 32 ({MODELS_VALUE})",
            self.crop_size,
        )


@dataclass(frozen=True)
class SpotConfig:
    """The spot stage (streaming MESNet) and its key-frame refinement.

    Args:
        enabled: off runs ingest (and nothing else) for measuring the camera path alone.
        sample_hz: the spotting rate: frames are averaged into samples at this rate; omitted
            (None) takes the exported model's (40 Hz for the demo weights: a 100-sample window spans 2.5 s;
            the paper's windows are about 30 Hz). Another rate than the model was trained at
            changes what a window spans and what motion a flow step sees.
        hop_ms: how often the window head and CRN run over the newest window; ≤ 200 ms.
        settle_steps: an interval is published once its offset lies this many steps (samples)
            before the window's end, where the window head still sees context after it.
        t_cpn, t_crn, t_nms: MESNet's thresholds; omitted (None) takes the exported model's.
        refine_lambda: GAMDSS's λ: onset and apex are re-selected within λ·(apex − onset) frames.
        micro_max_ms, micro_rise_ms: DFME's rule: micro when onset→offset < 500 ms or onset→apex < 250 ms.
        max_lag_ms: a spot stage further behind a live camera than this skips to its newest
            crop (counted as ``spot_skip``); at most the crop ring's length (4 s), beyond
            which the crops it would read are gone anyway.
        gather_ms: with several cameras, work ready for one waits this long for the others,
            so the encoder and the heads run once for all of them (paced cameras are not in phase).
    """

    enabled: bool = True
    sample_hz: float | None = None
    hop_ms: float = 100.0
    settle_steps: int = 2
    t_cpn: float | None = None
    t_crn: float | None = None
    t_nms: float | None = None
    refine_lambda: float = 0.1
    micro_max_ms: float = 500.0
    micro_rise_ms: float = 250.0
    max_lag_ms: float = 1000.0
    gather_ms: float = 10.0

    def __post_init__(self) -> None:
        _require(
            self.sample_hz is None or 5 <= self.sample_hz <= 200,
            "spot.sample_hz",
            f"5..200 ({MODELS_VALUE})",
            self.sample_hz,
        )
        _require(0 < self.hop_ms <= 200, "spot.hop_ms", "within (0, 200]", self.hop_ms)
        _require(self.settle_steps >= 0, "spot.settle_steps", ">= 0", self.settle_steps)
        for name in ("t_cpn", "t_crn", "t_nms"):
            value = getattr(self, name)
            _require(value is None or 0 <= value <= 1, f"spot.{name}", f"within 0..1 ({MODELS_VALUE})", value)
        _require(0 <= self.refine_lambda <= 0.5, "spot.refine_lambda", "within 0..0.5", self.refine_lambda)
        _require(
            self.micro_max_ms > 0 and self.micro_rise_ms > 0,
            "spot.micro_max_ms / micro_rise_ms",
            "> 0",
            (self.micro_max_ms, self.micro_rise_ms),
        )
        _require(50 <= self.max_lag_ms <= 3000, "spot.max_lag_ms", "within 50..3000", self.max_lag_ms)
        _require(0 <= self.gather_ms <= 50, "spot.gather_ms", "within 0..50", self.gather_ms)


@dataclass(frozen=True)
class RecogConfig:
    """The recognition stage (AKMNet on each spotted micro-expression).

    Args:
        enabled: off publishes spots only.
        queue: clips waiting for recognition; when full, a live run drops the newest clip and
            counts it (``recog_backlog``), a replay waits.
        batch: clips classified in one clip-head call at most.
    """

    enabled: bool = True
    queue: int = 16
    batch: int = 4

    def __post_init__(self) -> None:
        _require(self.queue >= 1, "recognise.queue", ">= 1", self.queue)
        _require(self.batch >= 1, "recognise.batch", ">= 1", self.batch)


@dataclass(frozen=True)
class RunConfig:
    """One `mestream run`.

    Args:
        source: see `SourceConfig`.
        ring: see `RingConfig`.
        publish: see `PublishConfig`.
        inference: see `InferenceConfig`.
        face, spot, recognise: see `FaceConfig`, `SpotConfig`, `RecogConfig`.
        cameras: run this many copies of ``source`` side by side, named ``<name>``, ``<name>-1``, …
            (``cam0``, ``cam1``, … for the default name) with seeds ``seed``, ``seed + 1``, …;
            inference is batched across them.
        sources: further sources of their own kinds, run beside ``source`` (``[[sources]]`` tables).
        summary: write the end-of-run summary here as JSON.
        duration: seconds of source time to run; 0 runs until Ctrl-C or the source ends.
        stats_interval: seconds between ``mestream.stats`` events.
        ground_truth: where the synthetic camera's ground truth is written (JSON) at the end.
        progress: show a progress bar for finite runs.
    """

    source: SourceConfig = field(default_factory=SourceConfig)
    ring: RingConfig = field(default_factory=RingConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    face: FaceConfig = field(default_factory=FaceConfig)
    spot: SpotConfig = field(default_factory=SpotConfig)
    recognise: RecogConfig = field(default_factory=RecogConfig)
    cameras: int = 1
    sources: tuple[SourceConfig, ...] = ()
    summary: str = ""
    duration: float = 0.0
    stats_interval: float = 1.0
    ground_truth: str = ""
    progress: bool = True

    def __post_init__(self) -> None:
        _require(self.duration >= 0, "duration", ">= 0 (0 = until Ctrl-C)", self.duration)
        _require(self.stats_interval >= 0.05, "stats_interval", ">= 0.05 s", self.stats_interval)
        _require(1 <= self.cameras <= MAX_CAMERAS, "cameras", f"1..{MAX_CAMERAS}", self.cameras)
        _require(
            not self.recognise.enabled or self.spot.enabled,
            "recognise.enabled",
            "false when spot.enabled is false (recognition classifies spotted clips)",
            self.recognise.enabled,
        )
        self.camera_sources()  # distinct camera ids, checked while the config file can still be named

    def camera_sources(self) -> list[SourceConfig]:
        """Every camera of the run: ``cameras`` copies of ``source``, then ``sources``; ids must differ."""
        first = self.source
        copies = (
            [first]
            if self.cameras == 1
            else [
                dataclasses.replace(first, name=_camera_name(first.name, i), seed=first.seed + i)
                for i in range(self.cameras)
            ]
        )
        out = copies + list(self.sources)
        names = [s.name for s in out]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        _require(duplicate is None, "sources", "cameras with distinct names", duplicate)
        return out


def _camera_name(name: str, index: int) -> str:
    """cam0 → cam0, cam1, …; any other id → id, id-1, …"""
    if name == "cam0":
        return f"cam{index}"
    return name if index == 0 else f"{name}-{index}"


PRESETS: dict[str, RunConfig] = {
    "default": RunConfig(),
    # `make demo`: 30 s of the 500 fps synthetic camera, with its event log, ground truth and summary.
    "demo": RunConfig(
        duration=30.0,
        publish=PublishConfig(log="runs/demo/events.jsonl"),
        ground_truth="runs/demo/ground_truth.json",
        summary="runs/demo/summary.json",
    ),
}


def _optional(hint: Any) -> Any:
    """``X`` for ``X | None``, else the hint: TOML has no null, so a key that is present holds an ``X``."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """Coerce a TOML value to the field's annotated type, or raise naming the key."""
    hint = _optional(hint)
    if typing.get_origin(hint) in (
        typing.Union,
        types.UnionType,
    ):  # `SinkConfig | Sink`: TOML spells the table
        hint = next((arg for arg in typing.get_args(hint) if dataclasses.is_dataclass(arg)), hint)
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
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        return merge(hint(), value, where)
    return value


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'fps'?)`` when a choice is close to ``word``; "" otherwise."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.65)
    return f" (did you mean {close[0]!r}?)" if close else ""


def merge(base: Any, data: Mapping[str, Any], where: str = "") -> Any:
    """Return ``base`` with the keys of ``data`` replaced, recursing into nested tables."""
    hints = typing.get_type_hints(type(base))
    names = {f.name for f in dataclasses.fields(base)}
    changes = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise ConfigError(
                f"unknown key {path!r}{did_you_mean(key, names)}; known keys here: {', '.join(sorted(names))}"
            )
        current = getattr(base, key)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            changes[key] = merge(current, value, path)
        else:
            changes[key] = _check_type(value, hints[key], path)
    return dataclasses.replace(base, **changes)


CAMERA_TABLES = (
    "a run's cameras are one [source] table (single brackets; `cameras = N` copies it) and, for "
    "cameras of other kinds, one [[sources]] table each (double brackets: a list); a file with "
    "[[sources]] tables only runs exactly those cameras"
)
_CAMERA_HEADER = re.compile(r"^\s*(\[\[?)\s*(sources?)\s*\]", re.MULTILINE)


def _camera_tables(config: RunConfig, data: Mapping[str, Any]) -> RunConfig:
    """Merge ``data`` into ``config``, reading the camera tables the way a lab means them.

    ``[[source]]`` and ``[sources]`` are the two easy slips between the camera tables; each
    gets an explanation instead of a type error. A file with ``[[sources]]`` but no
    ``[source]`` runs the listed cameras only: the first becomes ``source``, so the default
    synthetic camera is not added beside them.
    """
    source, sources = data.get("source"), data.get("sources")
    if isinstance(source, list):
        raise ConfigError(
            f"source: [[source]] is a list of tables, but there is one [source]; {CAMERA_TABLES}"
        )
    if sources is not None and not isinstance(sources, list):
        raise ConfigError(
            f"sources: [sources] is a single table, but each further camera is its own "
            f"[[sources]] table; {CAMERA_TABLES}"
        )
    if source is not None or not sources:
        return merge(config, data)
    config = merge(config, {k: v for k, v in data.items() if k != "sources"})
    cameras = [_check_type(entry, SourceConfig, f"sources[{i}]") for i, entry in enumerate(sources)]
    return dataclasses.replace(config, source=cameras[0], sources=tuple(cameras[1:]))


def _toml_hint(text: str) -> str:
    """What a TOML error probably means when the file mixes the camera tables' spellings."""
    headers = set(_CAMERA_HEADER.findall(text))
    wrong = ("[[", "source") in headers or ("[", "sources") in headers
    mixed = wrong or len({name for _, name in headers}) < len(headers)
    return f"; {CAMERA_TABLES}" if mixed else ""


def check_kinds(config: RunConfig) -> None:
    """Every source, sink and backend kind the config names is registered; the error names the
    key, so a file's typo (``kind = "vidoe"``) is reported with the file, before anything opens."""
    named = [("source.kind", SOURCE_GROUP, config.source.kind)]
    named += [(f"sources[{i}].kind", SOURCE_GROUP, s.kind) for i, s in enumerate(config.sources)]
    named += [
        (f"publish.sinks[{i}].kind", SINK_GROUP, s.kind)
        for i, s in enumerate(config.publish.sinks)
        if isinstance(s, SinkConfig)  # a sink object given from Python has no kind to look up
    ]
    named += [("inference.backend", BACKEND_GROUP, config.inference.backend)]
    for key, group, kind in named:
        kinds, clashes = scan(group)
        if kind not in kinds and kind not in clashes:  # a clash is reported (both packages) when it is used
            raise ConfigError(
                f"{key}: no {NOUNS[group]} kind {kind!r}{did_you_mean(kind, kinds)}; "
                f"available: {', '.join(sorted(kinds))}"
            )


def load_config(path: str | Path | None = None, preset: str = "default") -> RunConfig:
    """The preset, overlaid with a TOML file when one is given."""
    if preset not in PRESETS:
        raise ConfigError(
            f"unknown preset {preset!r}{did_you_mean(preset, PRESETS)}; presets: {', '.join(PRESETS)}"
        )
    config = PRESETS[preset]
    if path is None:
        return config
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: cannot be read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}{_toml_hint(text)}") from None
    try:
        return _camera_tables(config, data)
    except ConfigError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
