"""`export_all`: files, manifest, parity figures, camera inputs, staleness and its refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mestream.engine.manifest import Manifest, ManifestError, file_sha256
from tests.export.conftest import needs_torch, save_small

pytestmark = needs_torch

STAGES = ["mesnet.encoder", "mesnet.window_head", "mesnet.crn", "akmnet.encoder", "akmnet.clip_head"]


def test_export_writes_every_stage_with_its_hash_and_parity(small_export, small_checkpoints):
    import onnx

    manifest = Manifest.load(small_export)
    assert list(manifest.subgraphs) == STAGES
    assert manifest.opset == 17 and "dynamo=False" in manifest.exporter
    assert {"torch", "onnx", "onnxruntime", "mestream", "git_sha"} <= set(manifest.producer)
    for key, subgraph in manifest.subgraphs.items():
        path = manifest.verify(key)
        assert file_sha256(path) == subgraph.sha256
        model = onnx.load(str(path))
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 17
        assert not list(small_export.glob("*.data")), "weights must live inside the .onnx files"
        assert set(subgraph.parity) == {"random", "camera"}
        for group in ("random", "camera"):
            assert set(subgraph.parity[group]) == {t.name for t in subgraph.outputs}, (key, group)
            assert all(v <= 1e-4 for v in subgraph.parity[group].values()), (
                key,
                group,
                subgraph.parity[group],
            )
    head = manifest.subgraph("akmnet.clip_head")
    assert [(t.name, t.dtype) for t in head.outputs] == [
        ("probabilities", "float32"),
        ("beta", "float32"),
        ("key_mask", "bool"),
        ("max_key", "int64"),
    ]
    for name, path in small_checkpoints.items():
        info = manifest.models[name]
        assert not info.checkpoint.startswith("/")  # relative to the export folder
        assert (small_export / info.checkpoint).resolve() == path.resolve()
        assert info.checkpoint_sha256 == file_sha256(path)
    assert manifest.mesnet.config.window_steps == 24 and manifest.mesnet.config.input_size == 16
    assert manifest.mesnet.recorded_preprocessing["input_size"] == 16


def test_manifest_round_trips(small_export, tmp_path):
    manifest = Manifest.load(small_export)
    copy = Manifest(
        root=tmp_path,
        opset=manifest.opset,
        exporter=manifest.exporter,
        producer=manifest.producer,
        models=manifest.models,
    )
    copy.save()
    again = Manifest.load(tmp_path)
    assert again == copy
    assert again.as_dict() == manifest.as_dict()
    assert json.loads((tmp_path / "manifest.json").read_text()) == json.loads(
        (small_export / "manifest.json").read_text()
    )


def test_camera_inputs_are_saved_with_the_torch_outputs(small_export):
    manifest = Manifest.load(small_export)
    with np.load(small_export / "inputs.npz") as z:
        stored = {k: z[k] for k in z.files}
    for key, subgraph in manifest.subgraphs.items():
        for t in subgraph.inputs:
            array = stored[f"{key}/{t.name}"]
            assert array.dtype == np.dtype(t.dtype) and array.ndim == len(t.shape), (key, t.name)
            assert all(d == n for d, n in zip(t.shape, array.shape) if isinstance(d, int))
        for t in subgraph.outputs:
            assert f"torch/{key}/{t.name}" in stored
    mask = stored["akmnet.clip_head/mask"]
    assert mask[0].all() and not mask[1].all(), "one whole clip and one padded clip"
    assert stored["mesnet.window_head/features"].shape == (
        1,
        24,
        manifest.subgraph("mesnet.window_head").inputs[0].shape[2],
    )
    assert np.abs(stored["mesnet.encoder/flow"]).max() > 0.1, "real flow, not zeros"


def test_verify_rejects_a_changed_file_naming_the_stage(export_copy):
    manifest = Manifest.load(export_copy)
    path = manifest.path("mesnet.crn")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(
        ManifestError, match=r"model mesnet\.crn: ONNX file .*mesnet\.crn\.onnx does not match"
    ):
        manifest.verify("mesnet.crn")
    manifest.verify("mesnet.encoder")  # the others are untouched


def test_is_stale_says_why(export_copy, small_checkpoints, tmp_path):
    from mestream.export.onnx_export import is_stale

    assert is_stale(export_copy, small_checkpoints) is None
    assert "opset 17" in is_stale(export_copy, small_checkpoints, opset=18)
    assert "no export manifest" in is_stale(tmp_path / "nowhere", small_checkpoints)
    other = save_small(tmp_path / "other.pt", "mesnet.demo", seed=1)
    assert "is not the one model mesnet was exported from" in is_stale(export_copy, {"mesnet": other})
    assert "no such file" in is_stale(export_copy, {"mesnet": tmp_path / "gone.pt"})
    (export_copy / "inputs.npz").unlink()
    assert "inputs.npz" in is_stale(export_copy, small_checkpoints)
    (export_copy / "akmnet.encoder.onnx").write_bytes(b"changed")
    assert "model akmnet.encoder" in is_stale(export_copy, small_checkpoints)


def test_a_stage_that_differs_from_torch_fails_naming_stage_and_output(
    small_checkpoints, tmp_path, monkeypatch
):
    from mestream.export import onnx_export

    real = onnx_export.torch_outputs

    def drifted(subgraph, feed):
        out = real(subgraph, feed)
        if subgraph.key == "mesnet.crn":
            out["offsets"] = out["offsets"] + np.float32(1e-3)
        return out

    monkeypatch.setattr(onnx_export, "torch_outputs", drifted)
    with pytest.raises(
        onnx_export.ParityError, match=r"mesnet\.crn: output 'offsets'.*differs from torch.*0\.001"
    ):
        onnx_export.export_all({"mesnet": small_checkpoints["mesnet"]}, tmp_path, progress=False)
    assert not (tmp_path / "manifest.json").exists(), "no manifest for a failed export"


def test_opset_below_17_is_refused(small_checkpoints, tmp_path):
    from mestream.export.onnx_export import ExportError, export_all

    with pytest.raises(ExportError, match="opset 16"):
        export_all(small_checkpoints, tmp_path, opset=16, progress=False)


def test_a_failed_re_export_leaves_no_manifest_and_a_dtype_change_is_a_parity_failure(
    export_copy, small_checkpoints, monkeypatch
):
    """Re-exporting into a folder that holds an export: once its files start being replaced the
    old manifest no longer describes them, so a failure must not leave it behind. An output of
    another dtype or shape in ONNX Runtime than in torch is a disagreement (exit 1), like a
    value beyond tolerance."""
    from mestream.export import onnx_export

    real = onnx_export.torch_outputs

    def widened(subgraph, feed):
        out = real(subgraph, feed)
        if subgraph.key == "mesnet.encoder":
            out["features"] = out["features"].astype(np.float64)
        return out

    monkeypatch.setattr(onnx_export, "torch_outputs", widened)
    assert (export_copy / "manifest.json").is_file()
    with pytest.raises(
        onnx_export.ParityError, match=r"mesnet\.encoder: output 'features' is float32 .* but float64"
    ):
        onnx_export.export_all({"mesnet": small_checkpoints["mesnet"]}, export_copy, progress=False)
    assert not (export_copy / "manifest.json").exists()
