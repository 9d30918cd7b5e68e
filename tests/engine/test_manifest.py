"""`Manifest.load` refuses a malformed manifest naming the file and the field; a manifest
round-trips through its file; `verify` names the stage and file whatever goes wrong."""

from __future__ import annotations

import json

import pytest

from mestream.export import manifest as manifest_module
from mestream.export.manifest import Manifest, ManifestError
from mestream.tests.engine.backends.tiny import tiny_manifest


@pytest.fixture
def written(tmp_path):
    """A valid manifest on disk (one stage with a dynamic time axis) and its JSON."""
    tiny_manifest(tmp_path, "Mul", [("x", ("batch", "time", 3), "float32")], dims={"time": (2, 4, 6)})
    path = tmp_path / "manifest.json"
    return path, json.loads(path.read_text())


def _stage(data):
    return data["models"]["tiny"]["stages"][0]


def _delete(key):
    return lambda d, key=key: _stage(d).pop(key)


def _set(key, value):
    return lambda d: _stage(d).__setitem__(key, value)


def _set_input(key, value):
    return lambda d: _stage(d)["inputs"][0].__setitem__(key, value)


@pytest.mark.parametrize("edit, needle", [
    (_delete("sha256"), r"models\.tiny\.stages\[0\] has no field 'sha256'"),
    (lambda d: d.pop("opset"), r"manifest has no field 'opset'"),
    (lambda d: d.__setitem__("opset", "17"), r"opset must be an int, got str '17'"),
    (lambda d: d.__setitem__("models", []), r"models must be a dict, got list"),
    (lambda d: d["models"]["tiny"].pop("checkpoint_sha256"), r"models\.tiny has no field 'checkpoint_sha256'"),
    (lambda d: d["models"]["tiny"].__setitem__("stages", {"a": 1}), r"models\.tiny\.stages must be a list, got dict"),
    (_set("inputs", "x"), r"models\.tiny\.stages\[0\]\.inputs must be a list, got str"),
    (_set("outputs", [["y"]]), r"stages\[0\]\.outputs\[0\] must be an object, got list"),
    (_set_input("shape", "abc"), r"stages\[0\]\.inputs\[0\]\.shape must be a list, got str 'abc'"),
    (_set_input("shape", ["batch", 2.5, 3]), r"inputs\[0\]\.shape\[1\] must be an axis length .*got float 2\.5"),
    (_set_input("shape", ["batch", True, 3]), r"inputs\[0\]\.shape\[1\] must be an axis length .*got bool True"),
    (_set_input("shape", ["batch", -1, 3]), r"inputs\[0\]\.shape\[1\] must be an axis length"),
    (_set_input("shape", ["batch", None, 3]), r"inputs\[0\]\.shape\[1\] must be an axis length .*got null"),
    (_set_input("dtype", 32), r"inputs\[0\]\.dtype must be a str, got int 32"),
    (_set("dims", {"time": [2, 6]}), r"stages\[0\]\.dims\.time must be \[min, opt, max\]"),
    (_set("dims", {"time": [6, 4, 2]}), r"stages\[0\]\.dims\.time must be \[min, opt, max\] with 0 <= min <= opt <= max"),
    (_set("dims", {"time": 5}), r"stages\[0\]\.dims\.time must be \[min, opt, max\]"),
    (_set("dims", {}), r"stages\[0\]\.inputs\[0\]\.shape\[1\] is the dynamic axis 'time', which has no \[min, opt, max\]"),
    (_set("parity", {"random": {"y": "small"}}), r"stages\[0\]\.parity\.random must map outputs to numbers"),
])
def test_malformed_manifest_names_file_and_field(written, edit, needle):
    path, data = written
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=rf"^{path}: malformed manifest: .*{needle}") as info:
        Manifest.load(path.parent)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, needle", [
    ("{not json", r"not a readable export manifest: Expecting property name"),
    ("[1, 2]", r"format '\?', this mestream reads format 1"),
    ('{"format": 9}', r"format 9, this mestream reads format 1"),
    (b"\xff\xfe", r"not a readable export manifest"),
])
def test_unreadable_manifest_names_the_file(tmp_path, text, needle):
    path = tmp_path / "manifest.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ManifestError, match=rf"^{path}: {needle}"):
        Manifest.load(path)


def test_missing_export_folder_hint_names_that_folder(tmp_path):
    """The hint is to export into the folder asked for, not into its parent."""
    for where in (tmp_path / "nowhere", tmp_path / "nowhere" / "manifest.json"):
        with pytest.raises(ManifestError, match=rf"^{tmp_path / 'nowhere' / 'manifest.json'}: no export manifest here "
                                                rf"\(run `mestream export --out {tmp_path / 'nowhere'}`\)$"):
            Manifest.load(where)


def test_round_trip(written, tmp_path):
    path, data = written
    manifest = Manifest.load(path)
    assert manifest.stage("tiny.op").dims == {"time": (2, 4, 6)}
    assert manifest.stage("tiny.op").inputs[0].shape == ("batch", "time", 3)
    copy = Manifest(root=tmp_path / "copy", opset=manifest.opset, exporter=manifest.exporter,
                    producer=manifest.producer, models=manifest.models)
    again = Manifest.load(copy.save())
    assert again == copy and again.as_dict() == manifest.as_dict()
    assert json.loads((tmp_path / "copy" / "manifest.json").read_text()) == data


def test_verify_names_stage_and_file(written, monkeypatch):
    path, _ = written
    manifest = Manifest.load(path)
    assert manifest.verify("tiny.op") == path.parent / "tiny.op.onnx"
    with pytest.raises(ManifestError, match=r"no stage 'tiny\.other'; stages: tiny\.op"):
        manifest.verify("tiny.other")

    def unreadable(p):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(manifest_module, "file_sha256", unreadable)
    with pytest.raises(ManifestError, match=r"model tiny\.op: ONNX file .*tiny\.op\.onnx cannot be read \(Permission denied\)"):
        manifest.verify("tiny.op")
