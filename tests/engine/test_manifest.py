"""`Manifest.load` refuses a malformed manifest naming the file and the field, including a
MESNet or AKMNet field the engine reads; a manifest round-trips through its file; `verify`
names the subgraph and file whatever goes wrong."""

from __future__ import annotations

import json
import shutil

import pytest

from mestream.engine import manifest as manifest_module
from mestream.engine.manifest import (
    FORMAT,
    AKMNetInfo,
    Manifest,
    ManifestError,
    MESNetInfo,
    MESNetModelConfig,
    shipped_export_dir,
)
from tests.engine.backends.tiny import tiny_manifest


@pytest.fixture
def written(tmp_path):
    """A valid manifest on disk (one subgraph with a dynamic time axis) and its JSON."""
    tiny_manifest(tmp_path, "Mul", [("x", ("batch", "time", 3), "float32")], dims={"time": (2, 4, 6)})
    path = tmp_path / "manifest.json"
    return path, json.loads(path.read_text())


def _subgraph(data):
    return data["models"]["tiny"]["subgraphs"][0]


def _delete(key):
    return lambda d, key=key: _subgraph(d).pop(key)


def _set(key, value):
    return lambda d: _subgraph(d).__setitem__(key, value)


def _set_input(key, value):
    return lambda d: _subgraph(d)["inputs"][0].__setitem__(key, value)


@pytest.mark.parametrize(
    "edit, needle",
    [
        (_delete("sha256"), r"models\.tiny\.subgraphs\[0\] has no field 'sha256'"),
        (lambda d: d.pop("opset"), r"manifest has no field 'opset'"),
        (lambda d: d.__setitem__("opset", "17"), r"opset must be an int, got str '17'"),
        (lambda d: d.__setitem__("models", []), r"models must be a dict, got list"),
        (
            lambda d: d["models"]["tiny"].pop("checkpoint_sha256"),
            r"models\.tiny has no field 'checkpoint_sha256'",
        ),
        (
            lambda d: d["models"]["tiny"].__setitem__("subgraphs", {"a": 1}),
            r"models\.tiny\.subgraphs must be a list, got dict",
        ),
        (_set("inputs", "x"), r"models\.tiny\.subgraphs\[0\]\.inputs must be a list, got str"),
        (_set("outputs", [["y"]]), r"subgraphs\[0\]\.outputs\[0\] must be an object, got list"),
        (_set_input("shape", "abc"), r"subgraphs\[0\]\.inputs\[0\]\.shape must be a list, got str 'abc'"),
        (
            _set_input("shape", ["batch", 2.5, 3]),
            r"inputs\[0\]\.shape\[1\] must be an axis length .*got float 2\.5",
        ),
        (
            _set_input("shape", ["batch", True, 3]),
            r"inputs\[0\]\.shape\[1\] must be an axis length .*got bool True",
        ),
        (_set_input("shape", ["batch", -1, 3]), r"inputs\[0\]\.shape\[1\] must be an axis length"),
        (
            _set_input("shape", ["batch", None, 3]),
            r"inputs\[0\]\.shape\[1\] must be an axis length .*got null",
        ),
        (_set_input("dtype", 32), r"inputs\[0\]\.dtype must be a str, got int 32"),
        (_set("dims", {"time": [2, 6]}), r"subgraphs\[0\]\.dims\.time must be \[min, opt, max\]"),
        (
            _set("dims", {"time": [6, 4, 2]}),
            r"subgraphs\[0\]\.dims\.time must be \[min, opt, max\] with 0 <= min <= opt <= max",
        ),
        (_set("dims", {"time": 5}), r"subgraphs\[0\]\.dims\.time must be \[min, opt, max\]"),
        (
            _set("dims", {}),
            r"subgraphs\[0\]\.inputs\[0\]\.shape\[1\] is the dynamic axis 'time', "
            r"which has no \[min, opt, max\]",
        ),
        (
            _set("parity", {"random": {"y": "small"}}),
            r"subgraphs\[0\]\.parity\.random must map outputs to numbers",
        ),
    ],
)
def test_malformed_manifest_names_file_and_field(written, edit, needle):
    path, data = written
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=rf"^{path}: malformed manifest: .*{needle}") as info:
        Manifest.load(path.parent)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("{not json", r"not a readable export manifest: Expecting property name"),
        ("[1, 2]", rf"format '\?', this mestream reads format {FORMAT}"),
        ('{"format": 9}', rf"format 9, this mestream reads format {FORMAT}"),
        (b"\xff\xfe", r"not a readable export manifest"),
    ],
)
def test_unreadable_manifest_names_the_file(tmp_path, text, needle):
    path = tmp_path / "manifest.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ManifestError, match=rf"^{path}: {needle}"):
        Manifest.load(path)


def test_missing_export_folder_hint_names_that_folder(tmp_path):
    """The hint is to export into the folder asked for, not into its parent."""
    for where in (tmp_path / "nowhere", tmp_path / "nowhere" / "manifest.json"):
        with pytest.raises(
            ManifestError,
            match=rf"^{tmp_path / 'nowhere' / 'manifest.json'}: no export manifest here "
            rf"\(run `mestream export --out {tmp_path / 'nowhere'}`\)$",
        ):
            Manifest.load(where)


def test_round_trip(written, tmp_path):
    path, data = written
    manifest = Manifest.load(path)
    assert manifest.subgraph("tiny.op").dims == {"time": (2, 4, 6)}
    assert manifest.subgraph("tiny.op").inputs[0].shape == ("batch", "time", 3)
    copy = Manifest(
        root=tmp_path / "copy",
        opset=manifest.opset,
        exporter=manifest.exporter,
        producer=manifest.producer,
        models=manifest.models,
    )
    again = Manifest.load(copy.save())
    assert again == copy and again.as_dict() == manifest.as_dict()
    assert json.loads((tmp_path / "copy" / "manifest.json").read_text()) == data


def test_verify_names_subgraph_and_file(written, monkeypatch):
    path, _ = written
    manifest = Manifest.load(path)
    assert manifest.verify("tiny.op") == path.parent / "tiny.op.onnx"
    with pytest.raises(ManifestError, match=r"no subgraph 'tiny\.other'; subgraphs: tiny\.op"):
        manifest.verify("tiny.other")

    def unreadable(p):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(manifest_module, "file_sha256", unreadable)
    with pytest.raises(
        ManifestError,
        match=r"model tiny\.op: ONNX file .*tiny\.op\.onnx cannot be read \(Permission denied\)",
    ):
        manifest.verify("tiny.op")


@pytest.fixture
def shipped(tmp_path):
    """A copy of the shipped export's manifest (the ONNX files are not needed to load it) and its JSON."""
    path = tmp_path / "manifest.json"
    shutil.copy(shipped_export_dir() / "manifest.json", path)
    return path, json.loads(path.read_text())


def test_the_shipped_manifest_parses_into_the_typed_entries(shipped):
    path, _ = shipped
    manifest = Manifest.load(path)
    assert isinstance(manifest.mesnet, MESNetInfo) and isinstance(manifest.akmnet, AKMNetInfo)
    config = manifest.mesnet.config
    assert isinstance(config, MESNetModelConfig) and config.window_steps == 100 and config.sample_hz == 40.0
    assert config.cpn_layers[0] == ((3, 1), (1, 1)) and isinstance(config.cpn_layers, tuple)
    assert manifest.akmnet.config.classes == ("positive", "negative", "surprise", "others")
    assert manifest.akmnet.preprocessing.crop_side == 144 and manifest.mesnet.preprocessing.flow_crop == 128
    assert manifest.subgraph("mesnet.window_head").output_names == tuple(f"scores_{s}" for s in range(1, 6))


def test_a_format_1_manifest_is_refused_with_a_re_export_hint(shipped):
    """Format 1 named the subgraphs ``stages``: read as format 2 it would look empty."""
    path, data = shipped
    data["format"] = 1
    for model in data["models"].values():
        model["stages"] = model.pop("subgraphs")
    path.write_text(json.dumps(data))
    with pytest.raises(
        ManifestError,
        match=rf"^{path}: format 1, this mestream reads format {FORMAT}; "
        r"re-run `mestream export`$",
    ):
        Manifest.load(path)


@pytest.mark.parametrize(
    "model, part, key, value, needle",
    [
        (
            "mesnet",
            "config",
            "window_steps",
            None,
            r"models\.mesnet\.config has no field 'window_steps', which the engine reads",
        ),
        (
            "mesnet",
            "config",
            "t_cpn",
            "high",
            r"models\.mesnet\.config\.t_cpn must be a number, got str 'high'",
        ),
        (
            "mesnet",
            "config",
            "window_steps",
            99.5,
            r"models\.mesnet\.config\.window_steps must be an int, got float",
        ),
        ("mesnet", "config", "flow_gap", True, r"models\.mesnet\.config\.flow_gap must be an int, got bool"),
        (
            "mesnet",
            "config",
            "cpn_layers",
            [[[3, 1]]],
            r"models\.mesnet\.config\.cpn_layers\[0\] must be a list of 2",
        ),
        (
            "mesnet",
            "preprocessing",
            "flow_crop",
            None,
            r"models\.mesnet\.preprocessing has no field 'flow_crop'",
        ),
        (
            "akmnet",
            "config",
            "classes",
            "positive",
            r"models\.akmnet\.config\.classes must be a list, got str",
        ),
        (
            "akmnet",
            "config",
            "classes",
            ["a", 2],
            r"models\.akmnet\.config\.classes\[1\] must be a string, got int",
        ),
        ("akmnet", "config", "max_frames", None, r"models\.akmnet\.config has no field 'max_frames'"),
        (
            "akmnet",
            "preprocessing",
            "crop_side",
            "144",
            r"models\.akmnet\.preprocessing\.crop_side must be an int",
        ),
    ],
)
def test_a_missing_or_mistyped_model_field_is_refused_at_load(shipped, model, part, key, value, needle):
    path, data = shipped
    entry = data["models"][model][part]
    if value is None:
        del entry[key]
    else:
        entry[key] = value
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=rf"^{path}: {needle}.*; re-run `mestream export`$"):
        Manifest.load(path)


def test_fields_the_engine_does_not_read_are_kept_as_recorded(shipped, tmp_path):
    """Training's hyperparameters travel through load and save untouched, for provenance."""
    path, data = shipped
    manifest = Manifest.load(path)
    assert manifest.mesnet.recorded_config["lr"] == data["models"]["mesnet"]["config"]["lr"]
    copy = Manifest(
        root=tmp_path / "copy",
        opset=manifest.opset,
        exporter=manifest.exporter,
        producer=manifest.producer,
        models=manifest.models,
    )
    assert json.loads(copy.save().read_text()) == data


def test_a_model_family_the_engine_does_not_run_is_described_not_refused(written):
    """The tiny test model has no typed config: it loads, and asking for MESNet names what is there."""
    path, _ = written
    manifest = Manifest.load(path)
    with pytest.raises(ManifestError, match=r"no mesnet model \(it holds tiny\)"):
        _ = manifest.mesnet
