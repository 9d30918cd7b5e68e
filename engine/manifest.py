"""The export manifest: the contract between `mestream export` and the runtime backends.

Why a manifest rather than reading the ONNX files' own metadata: the runtime must know,
before it opens any file, which subgraphs exist, what each one takes (names, shapes, dtypes,
which axes are dynamic and over which range), how frames must be prepared for them, and
whether the file on disk is the one that was exported and checked. The manifest carries all
of that, plus the sha256 of every ONNX file and of the checkpoint it came from, so a stale
or damaged file is refused with its name instead of giving silently wrong answers.

Why it lives in `engine/`: it is what the runtime reads, so the runtime owns it and the
exporter (`mestream.export`) writes it; the engine never imports the exporter.

A manifest is ``manifest.json`` next to its ONNX files. A model is exported as subgraphs
(the pieces between which the runtime does data-dependent work in numpy), addressed as
``<model>.<subgraph>`` (``mesnet.encoder``). Shapes list ints for fixed axes and names for
dynamic ones: ``batch`` always comes first; other names (``time``) have their allowed
``(min, opt, max)`` in the subgraph's ``dims``.

Each entry is parsed once, at load: the structure field by field, then the model config and
preprocessing of the families the engine runs (MESNet, AKMNet) into frozen dataclasses, so a
missing or mistyped field is refused at load naming the file and the field, and the engine
reads attributes, never string keys.

Only the standard library here: the runtime reads manifests without numpy, torch or onnx.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

FORMAT = 2
"""Format 2 names the exported pieces ``subgraphs`` (format 1 called them ``stages``)."""
MANIFEST_NAME = "manifest.json"
BATCH = "batch"
MESNET = "mesnet"
AKMNET = "akmnet"


class ManifestError(ValueError):
    """A manifest or one of its files cannot be used; the message names the file and field."""


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def shipped_export_dir() -> Path:
    """The ONNX export of the shipped demo weights, which `make demo` runs without torch."""
    return Path(str(resources.files("mestream.models").joinpath("weights", "onnx")))


@dataclass(frozen=True)
class TensorInfo:
    """One input or output: ints are fixed axes, strings name dynamic ones."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str  # a numpy dtype name: float32, bool, int64

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorInfo:
        return cls(str(data["name"]), tuple(data["shape"]), str(data["dtype"]))


@dataclass(frozen=True)
class SubgraphInfo:
    """One exported subgraph of a model: one ONNX file.

    Args:
        model: the model family (``mesnet``).
        name: the subgraph (``encoder``).
        file: the ONNX file, relative to the manifest.
        sha256: the ONNX file's hash at export.
        inputs, outputs: what the subgraph takes and gives, in the graph's order.
        dims: allowed ``(min, opt, max)`` of each dynamic axis other than ``batch``.
        parity: max abs difference to PyTorch per check and output, measured at export.
    """

    model: str
    name: str
    file: str
    sha256: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    dims: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)
    parity: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.model}.{self.name}"

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubgraphInfo:
        return cls(
            model=str(data["model"]),
            name=str(data["name"]),
            file=str(data["file"]),
            sha256=str(data["sha256"]),
            inputs=tuple(TensorInfo.from_dict(t) for t in data["inputs"]),
            outputs=tuple(TensorInfo.from_dict(t) for t in data["outputs"]),
            dims={k: (int(v[0]), int(v[1]), int(v[2])) for k, v in data.get("dims", {}).items()},
            parity={k: dict(v) for k, v in data.get("parity", {}).items()},
        )


# -- what the engine reads of each model ---------------------------------------------------------
# The fields below ARE the list of what an export must record for the engine: a manifest
# lacking one is refused at load. The export records more (training's hyperparameters), kept
# as written in `ModelInfo.recorded_config` for provenance and never read by the engine.

CpnLayers = tuple[tuple[tuple[int, int], tuple[int, int]], ...]
"""Per CPN scale, its two (kernel, dilation) layers."""


@dataclass(frozen=True)
class MESNetModelConfig:
    """MESNet's config as the spot stage uses it: window geometry, thresholds and the flow
    preparation training used (`mestream.models.mesnet.config.MESNetConfig` holds the rest)."""

    window_steps: int
    overlap_steps: int
    temporal_kernel: int
    temporal_padding: int
    cpn_layers: CpnLayers
    max_proposals: int
    crn_steps: int
    t_cpn: float
    t_crn: float
    t_nms: float
    sample_hz: float
    flow_crop: int
    flow_blur: float
    input_size: int
    in_channels: int
    flow_scale: float
    flow_gap: int
    flow_method: str
    flow_preset: str


@dataclass(frozen=True)
class MESNetPreprocessing:
    """The side of the face crop MESNet's flow is computed on."""

    flow_crop: int


@dataclass(frozen=True)
class AKMNetModelConfig:
    """AKMNet's config as the recognition stage uses it: class names and clip preparation."""

    classes: tuple[str, ...]
    max_frames: int
    image_size: int
    magnify_alpha: float
    magnify_sigma: float
    input_mode: str


@dataclass(frozen=True)
class AKMNetPreprocessing:
    """The side of the face crop AKMNet's clips are cut at."""

    crop_side: int


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """One model's export: where it came from and its subgraphs.

    Args:
        name: the model family.
        preset: the checkpoint's preset.
        checkpoint: the checkpoint's file name and ``checkpoint_sha256`` its hash.
        recorded_config, recorded_preprocessing: the entry's ``config`` and ``preprocessing``
            exactly as exported (every field, training's too): written back by `Manifest.save`.
        subgraphs: the model's subgraphs in data order.
    """

    name: str
    preset: str
    checkpoint: str
    checkpoint_sha256: str
    recorded_config: Mapping[str, Any]
    recorded_preprocessing: Mapping[str, Any]
    subgraphs: tuple[SubgraphInfo, ...]

    def subgraph(self, name: str) -> SubgraphInfo:
        for subgraph in self.subgraphs:
            if subgraph.name == name:
                return subgraph
        raise ManifestError(
            f"model {self.name}: no subgraph {name!r}; subgraphs: {', '.join(s.name for s in self.subgraphs)}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "preset": self.preset,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "config": dict(self.recorded_config),
            "preprocessing": dict(self.recorded_preprocessing),
            "subgraphs": [dataclasses.asdict(s) for s in self.subgraphs],
        }


@dataclass(frozen=True, kw_only=True)
class MESNetInfo(ModelInfo):
    """A MESNet export with the fields the spot stage reads."""

    config: MESNetModelConfig
    preprocessing: MESNetPreprocessing


@dataclass(frozen=True, kw_only=True)
class AKMNetInfo(ModelInfo):
    """An AKMNet export with the fields the recognition stage reads."""

    config: AKMNetModelConfig
    preprocessing: AKMNetPreprocessing


def model_info(data: Mapping[str, Any], where: str = "models.?") -> ModelInfo:
    """One model entry (JSON shape already checked) → its `ModelInfo`; for MESNet and AKMNet
    the typed `MESNetInfo` / `AKMNetInfo`. Raises `ManifestError` naming the field (``where``
    is the entry's path in the manifest) when a field the engine reads is missing or mistyped."""
    common: dict[str, Any] = dict(
        name=str(data["name"]),
        preset=str(data["preset"]),
        checkpoint=str(data["checkpoint"]),
        checkpoint_sha256=str(data["checkpoint_sha256"]),
        recorded_config=dict(data["config"]),
        recorded_preprocessing=dict(data["preprocessing"]),
        subgraphs=tuple(SubgraphInfo.from_dict(s) for s in data["subgraphs"]),
    )
    config, prep = data["config"], data["preprocessing"]
    if common["name"] == MESNET:
        return MESNetInfo(
            **common,
            config=parse_fields(MESNetModelConfig, config, f"{where}.config"),
            preprocessing=parse_fields(MESNetPreprocessing, prep, f"{where}.preprocessing"),
        )
    if common["name"] == AKMNET:
        return AKMNetInfo(
            **common,
            config=parse_fields(AKMNetModelConfig, config, f"{where}.config"),
            preprocessing=parse_fields(AKMNetPreprocessing, prep, f"{where}.preprocessing"),
        )
    return ModelInfo(**common)  # a family the engine does not run: described, not interpreted


T = TypeVar("T")


def parse_fields(cls: type[T], data: Any, where: str) -> T:
    """A frozen dataclass from the JSON object ``data``, every field checked against its type
    hint; the error names ``where.field``. Fields the dataclass does not have are ignored."""
    if not isinstance(data, Mapping):
        raise ManifestError(f"{where} must be an object, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            raise ManifestError(f"{where} has no field {f.name!r}, which the engine reads")
        values[f.name] = _convert(data[f.name], hints[f.name], f"{where}.{f.name}")
    return cls(**values)


def _convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` as ``hint`` (int, float, str, bool, tuples of those), or a ManifestError."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):  # a list in JSON, a tuple when the exporter builds one
            raise ManifestError(f"{where} must be a list, got {_kind(value)} {value!r:.60}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ManifestError(f"{where} must be a list of {len(args)}, got {len(value)}: {value!r:.60}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"{where}: union hints are not parsed")  # a programming error, not a bad file
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if _is_int(value):
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"{where}: no parser for {hint!r}")
    noun = {int: "an int", float: "a number", str: "a string", bool: "true or false"}[hint]
    raise ManifestError(f"{where} must be {noun}, got {_kind(value)} {value!r:.60}")


@dataclass(frozen=True)
class Manifest:
    """Every exported model of one export folder (``root``)."""

    root: Path
    opset: int
    exporter: str
    producer: Mapping[str, str]
    models: Mapping[str, ModelInfo]
    format: int = FORMAT

    @property
    def subgraphs(self) -> dict[str, SubgraphInfo]:
        return {s.key: s for m in self.models.values() for s in m.subgraphs}

    def subgraph(self, key: str) -> SubgraphInfo:
        subgraphs = self.subgraphs
        if key not in subgraphs:
            raise ManifestError(
                f"{self.root / MANIFEST_NAME}: no subgraph {key!r}; subgraphs: {', '.join(subgraphs)}"
            )
        return subgraphs[key]

    @property
    def mesnet(self) -> MESNetInfo:
        """The MESNet entry; a ManifestError when the export has none."""
        return self._typed(MESNET, MESNetInfo)

    @property
    def akmnet(self) -> AKMNetInfo:
        """The AKMNet entry; a ManifestError when the export has none."""
        return self._typed(AKMNET, AKMNetInfo)

    def _typed(self, name: str, cls: type[T]) -> T:
        info = self.models.get(name)
        if not isinstance(info, cls):
            raise ManifestError(
                f"{self.root / MANIFEST_NAME}: no {name} model (it holds {', '.join(self.models) or 'none'})"
            )
        return info

    def path(self, key: str) -> Path:
        return self.root / self.subgraph(key).file

    def verify(self, key: str) -> Path:
        """The subgraph's ONNX file, after checking it exists and is the file that was exported."""
        subgraph, path = self.subgraph(key), self.path(key)
        if not path.is_file():
            raise ManifestError(f"model {key}: ONNX file {path} is missing (re-run `mestream export`)")
        try:
            actual = file_sha256(path)
        except OSError as exc:  # unreadable (permissions, I/O error): named like a missing file
            raise ManifestError(
                f"model {key}: ONNX file {path} cannot be read ({exc.strerror or exc})"
            ) from None
        if actual != subgraph.sha256:
            raise ManifestError(
                f"model {key}: ONNX file {path} does not match its manifest (sha256 "
                f"{actual[:12]}…, manifest says {subgraph.sha256[:12]}…); the file was "
                f"changed or damaged after export, re-run `mestream export`"
            )
        return path

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "opset": self.opset,
            "exporter": self.exporter,
            "producer": dict(self.producer),
            "models": {name: m.as_dict() for name, m in self.models.items()},
        }

    def save(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=1, default=_plain) + "\n")
        tmp.replace(path)  # a reader never sees half a manifest
        return path

    @classmethod
    def load(cls, where: str | Path) -> Manifest:
        """From an export folder or its manifest file."""
        path = Path(where)
        if path.is_dir() or (not path.exists() and path.suffix != ".json"):  # a folder, or one not made yet
            path = path / MANIFEST_NAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ManifestError(
                f"{path}: no export manifest here (run `mestream export --out {path.parent}`)"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"{path}: not a readable export manifest: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ManifestError(
                f"{path}: format {data.get('format') if isinstance(data, dict) else '?'!r}, "
                f"this mestream reads format {FORMAT}; re-run `mestream export`"
            )
        problem = _malformed(data)
        if problem:
            raise ManifestError(f"{path}: malformed manifest: {problem}; re-run `mestream export`")
        try:
            models = {name: model_info(m, f"models.{name}") for name, m in data["models"].items()}
        except ManifestError as exc:
            raise ManifestError(f"{path}: {exc}; re-run `mestream export`") from None
        return cls(
            root=path.parent,
            opset=int(data["opset"]),
            exporter=str(data["exporter"]),
            producer=dict(data.get("producer", {})),
            models=models,
        )


# -- shape of a manifest file ------------------------------------------------------------------------
# Checked field by field before the dataclasses are built, so that a hand-edited or truncated
# manifest is refused naming the field (``models.mesnet.subgraphs[1].inputs[0].shape``) rather
# than with a bare KeyError, or accepted with a string where a list belongs (``tuple("abc")``).


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fields(data: Any, where: str, spec: Mapping[str, Any], optional: tuple[str, ...] = ()) -> str | None:
    """The first problem with the fields of ``data`` (a JSON object at ``where``): ``spec`` maps
    a field to its JSON type (``str``, ``int``, ``dict``, ``list``)."""
    if not isinstance(data, dict):
        return f"{where} must be an object, got {_kind(data)}"
    for key, kind in spec.items():
        if key not in data:
            if key in optional:
                continue
            return f"{where} has no field {key!r}"
        value = data[key]
        if not (_is_int(value) if kind is int else isinstance(value, kind)):
            article = "an" if kind is int else "a"
            return f"{where}.{key} must be {article} {kind.__name__}, got {_kind(value)} {value!r:.60}"
    return None


def _malformed_tensor(data: Any, where: str) -> str | None:
    problem = _fields(data, where, {"name": str, "shape": list, "dtype": str})
    if problem:
        return problem
    for axis, dim in enumerate(data["shape"]):
        if not ((_is_int(dim) and dim >= 0) or (isinstance(dim, str) and dim)):
            return (
                f"{where}.shape[{axis}] must be an axis length (int >= 0) or an axis name, "
                f"got {_kind(dim)} {dim!r:.60}"
            )
    return None


def _malformed_subgraph(data: Any, where: str) -> str | None:
    problem = _fields(
        data,
        where,
        {
            "model": str,
            "name": str,
            "file": str,
            "sha256": str,
            "inputs": list,
            "outputs": list,
            "dims": dict,
            "parity": dict,
        },
        optional=("dims", "parity"),
    )
    if problem:
        return problem
    for kind in ("inputs", "outputs"):
        for i, tensor in enumerate(data[kind]):
            problem = _malformed_tensor(tensor, f"{where}.{kind}[{i}]")
            if problem:
                return problem
    dims = data.get("dims", {})
    for name, triple in dims.items():
        if not (
            isinstance(triple, list)
            and len(triple) == 3
            and all(_is_int(d) for d in triple)
            and 0 <= triple[0] <= triple[1] <= triple[2]
        ):
            return (
                f"{where}.dims.{name} must be [min, opt, max] with 0 <= min <= opt <= max, got {triple!r:.60}"
            )
    for i, tensor in enumerate(data["inputs"]):
        for axis, dim in enumerate(tensor["shape"]):
            if isinstance(dim, str) and dim != BATCH and dim not in dims:
                return (
                    f"{where}.inputs[{i}].shape[{axis}] is the dynamic axis {dim!r}, which has no "
                    f"[min, opt, max] in {where}.dims"
                )
    for group, values in data.get("parity", {}).items():
        if not isinstance(values, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.values()
        ):
            return f"{where}.parity.{group} must map outputs to numbers, got {values!r:.60}"
    return None


def _malformed(data: Mapping[str, Any]) -> str | None:
    """The first problem with a manifest's JSON (format already checked), or None."""
    problem = _fields(
        data,
        "manifest",
        {"opset": int, "exporter": str, "producer": dict, "models": dict},
        optional=("producer",),
    )
    if problem:
        return problem.replace("manifest.", "", 1)
    for name, model in data["models"].items():
        where = f"models.{name}"
        problem = _fields(
            model,
            where,
            {
                "name": str,
                "preset": str,
                "checkpoint": str,
                "checkpoint_sha256": str,
                "config": dict,
                "preprocessing": dict,
                "subgraphs": list,
            },
        )
        if problem:
            return problem
        for i, subgraph in enumerate(model["subgraphs"]):
            problem = _malformed_subgraph(subgraph, f"{where}.subgraphs[{i}]")
            if problem:
                return problem
    return None


def _plain(value: Any) -> Any:
    """JSON for the values asdict leaves behind (tuples are lists already; Paths and mappings)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot write {type(value).__name__} into a manifest")
