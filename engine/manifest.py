"""The export manifest: the contract between `mestream export` and the runtime backends.

Why a manifest rather than reading the ONNX files' own metadata: the runtime must know,
before it opens any file, which stages exist, what each one takes (names, shapes, dtypes,
which axes are dynamic and over which range), how frames must be prepared for them, and
whether the file on disk is the one that was exported and checked. The manifest carries all
of that, plus the sha256 of every ONNX file and of the checkpoint it came from, so a stale
or damaged file is refused with its name instead of giving silently wrong answers.

A manifest is ``manifest.json`` next to its ONNX files. Stages are addressed as
``<model>.<stage>`` (``mesnet.encoder``). Shapes list ints for fixed axes and names for
dynamic ones: ``batch`` always comes first; other names (``time``) have their allowed
``(min, opt, max)`` in the stage's ``dims``.

Only the standard library here: the runtime reads manifests without numpy, torch or onnx.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

FORMAT = 1
MANIFEST_NAME = "manifest.json"
BATCH = "batch"


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
    def from_dict(cls, data: Mapping[str, Any]) -> "TensorInfo":
        return cls(str(data["name"]), tuple(data["shape"]), str(data["dtype"]))


@dataclass(frozen=True)
class StageInfo:
    """One exported inference stage.

    Args:
        model: the model family (``mesnet``).
        name: the stage (``encoder``).
        file: the ONNX file, relative to the manifest.
        sha256: the ONNX file's hash at export.
        inputs, outputs: what the stage takes and gives.
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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StageInfo":
        return cls(model=str(data["model"]), name=str(data["name"]), file=str(data["file"]),
                   sha256=str(data["sha256"]),
                   inputs=tuple(TensorInfo.from_dict(t) for t in data["inputs"]),
                   outputs=tuple(TensorInfo.from_dict(t) for t in data["outputs"]),
                   dims={k: tuple(int(x) for x in v) for k, v in data.get("dims", {}).items()},
                   parity={k: dict(v) for k, v in data.get("parity", {}).items()})


@dataclass(frozen=True)
class ModelInfo:
    """One model's export: where it came from, how to feed it, and its stages.

    Args:
        name: the model family.
        preset: the checkpoint's preset.
        checkpoint: the checkpoint's file name and ``checkpoint_sha256`` its hash.
        config: the model config (window sizes and thresholds the runtime's post-processing needs).
        preprocessing: the input contract (input size, normalization, flow scaling).
        stages: the model's stages in data order.
    """

    name: str
    preset: str
    checkpoint: str
    checkpoint_sha256: str
    config: Mapping[str, Any]
    preprocessing: Mapping[str, Any]
    stages: tuple[StageInfo, ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelInfo":
        return cls(name=str(data["name"]), preset=str(data["preset"]), checkpoint=str(data["checkpoint"]),
                   checkpoint_sha256=str(data["checkpoint_sha256"]), config=dict(data["config"]),
                   preprocessing=dict(data["preprocessing"]),
                   stages=tuple(StageInfo.from_dict(s) for s in data["stages"]))


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
    def stages(self) -> dict[str, StageInfo]:
        return {s.key: s for m in self.models.values() for s in m.stages}

    def stage(self, key: str) -> StageInfo:
        stages = self.stages
        if key not in stages:
            raise ManifestError(f"{self.root / MANIFEST_NAME}: no stage {key!r}; stages: {', '.join(stages)}")
        return stages[key]

    def path(self, key: str) -> Path:
        return self.root / self.stage(key).file

    def verify(self, key: str) -> Path:
        """The stage's ONNX file, after checking it exists and is the file that was exported."""
        stage, path = self.stage(key), self.path(key)
        if not path.is_file():
            raise ManifestError(f"model {key}: ONNX file {path} is missing (re-run `mestream export`)")
        try:
            actual = file_sha256(path)
        except OSError as exc:  # unreadable (permissions, I/O error): named like a missing file
            raise ManifestError(f"model {key}: ONNX file {path} cannot be read ({exc.strerror or exc})") from None
        if actual != stage.sha256:
            raise ManifestError(f"model {key}: ONNX file {path} does not match its manifest (sha256 {actual[:12]}…, "
                                f"manifest says {stage.sha256[:12]}…); the file was changed or damaged after export, "
                                f"re-run `mestream export`")
        return path

    def as_dict(self) -> dict[str, Any]:
        return {"format": self.format, "opset": self.opset, "exporter": self.exporter, "producer": dict(self.producer),
                "models": {name: asdict(m) for name, m in self.models.items()}}

    def save(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=1, default=_plain) + "\n")
        tmp.replace(path)  # a reader never sees half a manifest
        return path

    @classmethod
    def load(cls, where: str | Path) -> "Manifest":
        """From an export folder or its manifest file."""
        path = Path(where)
        if path.is_dir() or (not path.exists() and path.suffix != ".json"):  # a folder, or one not made yet
            path = path / MANIFEST_NAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ManifestError(f"{path}: no export manifest here (run `mestream export --out {path.parent}`)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"{path}: not a readable export manifest: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ManifestError(f"{path}: format {data.get('format') if isinstance(data, dict) else '?'!r}, "
                                f"this mestream reads format {FORMAT}; re-run `mestream export`")
        problem = _malformed(data)
        if problem:
            raise ManifestError(f"{path}: malformed manifest: {problem}; re-run `mestream export`")
        try:
            models = {name: ModelInfo.from_dict(m) for name, m in data["models"].items()}
            return cls(root=path.parent, opset=int(data["opset"]), exporter=str(data["exporter"]),
                       producer=dict(data.get("producer", {})), models=models)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ManifestError(f"{path}: malformed manifest ({type(exc).__name__}: {exc})") from None


# -- shape of a manifest file ------------------------------------------------------------------------
# Checked field by field before the dataclasses are built, so that a hand-edited or truncated
# manifest is refused naming the field (``models.mesnet.stages[1].inputs[0].shape``) rather than
# with a bare KeyError, or accepted with a string where a list belongs (``tuple("abc")``).

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
            return f"{where}.{key} must be {'an' if kind is int else 'a'} {kind.__name__}, got {_kind(value)} {value!r:.60}"
    return None


def _malformed_tensor(data: Any, where: str) -> str | None:
    problem = _fields(data, where, {"name": str, "shape": list, "dtype": str})
    if problem:
        return problem
    for axis, dim in enumerate(data["shape"]):
        if not ((_is_int(dim) and dim >= 0) or (isinstance(dim, str) and dim)):
            return f"{where}.shape[{axis}] must be an axis length (int >= 0) or an axis name, got {_kind(dim)} {dim!r:.60}"
    return None


def _malformed_stage(data: Any, where: str) -> str | None:
    problem = _fields(data, where, {"model": str, "name": str, "file": str, "sha256": str, "inputs": list,
                                    "outputs": list, "dims": dict, "parity": dict}, optional=("dims", "parity"))
    if problem:
        return problem
    for kind in ("inputs", "outputs"):
        for i, tensor in enumerate(data[kind]):
            problem = _malformed_tensor(tensor, f"{where}.{kind}[{i}]")
            if problem:
                return problem
    dims = data.get("dims", {})
    for name, triple in dims.items():
        if not (isinstance(triple, list) and len(triple) == 3 and all(_is_int(d) for d in triple)
                and 0 <= triple[0] <= triple[1] <= triple[2]):
            return f"{where}.dims.{name} must be [min, opt, max] with 0 <= min <= opt <= max, got {triple!r:.60}"
    for i, tensor in enumerate(data["inputs"]):
        for axis, dim in enumerate(tensor["shape"]):
            if isinstance(dim, str) and dim != BATCH and dim not in dims:
                return (f"{where}.inputs[{i}].shape[{axis}] is the dynamic axis {dim!r}, which has no "
                        f"[min, opt, max] in {where}.dims")
    for group, values in data.get("parity", {}).items():
        if not isinstance(values, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   for v in values.values()):
            return f"{where}.parity.{group} must map outputs to numbers, got {values!r:.60}"
    return None


def _malformed(data: Mapping[str, Any]) -> str | None:
    """The first problem with a manifest's JSON (format already checked), or None."""
    problem = _fields(data, "manifest", {"opset": int, "exporter": str, "producer": dict, "models": dict},
                      optional=("producer",))
    if problem:
        return problem.replace("manifest.", "", 1)
    for name, model in data["models"].items():
        where = f"models.{name}"
        problem = _fields(model, where, {"name": str, "preset": str, "checkpoint": str, "checkpoint_sha256": str,
                                         "config": dict, "preprocessing": dict, "stages": list})
        if problem:
            return problem
        for i, stage in enumerate(model["stages"]):
            problem = _malformed_stage(stage, f"{where}.stages[{i}]")
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
