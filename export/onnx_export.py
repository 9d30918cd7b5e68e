"""Export every subgraph of the models to ONNX, prove each file computes what PyTorch does, and
write the manifest the runtime loads.

Exporter: ``torch.onnx.export`` with the legacy TorchScript exporter (``dynamo=False``),
opset 17. Why not the default dynamo exporter: it needs ``onnxscript`` (not a dependency),
writes opset 18 even when 17 is asked for, and by default puts the weights in a separate
``.data`` file; the TorchScript exporter writes exactly the opset requested, one
self-contained file per subgraph (so one sha256 covers graph and weights), and takes
``dynamic_axes``. Its deprecation warnings are silenced around the call only.

Parity is measured on two kinds of input (`mestream.export.check`): seeded random ones
(batch 1 and 3, and the shortest window the window head accepts) and real ones, a few
seconds of the synthetic camera put through the training preprocessing with each subgraph fed
what the subgraph before it gave. Any float output more than 1e-4 away from PyTorch, or any
bool/int element different, fails the export naming the subgraph and output. The real inputs
and PyTorch's outputs on them are kept in ``inputs.npz`` so `--check` can compare backends on
them without torch.

Nothing of the train extra at import (torch and onnx load inside the functions that need them):
`is_stale` and `mestream export --check` run on a runtime-only install.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import onnxruntime
import onnxruntime as ort
from tqdm import tqdm

from mestream import __version__
from mestream.cameras.synthetic import SceneConfig
from mestream.engine import intervals
from mestream.engine.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    ModelInfo,
    SubgraphInfo,
    TensorInfo,
    file_sha256,
    model_info,
)
from mestream.export.check import (
    INPUTS_NAME,
    RECORDED,
    difference,
    random_feed,
    random_sets,
)
from mestream.export.errors import ExportError, ParityError
from mestream.models.akmnet.data import collate, sample_from_crops
from mestream.models.checkpoint import git_sha, load_checkpoint, shipped_weights
from mestream.models.mesnet.data import flow_steps, sample_starts
from mestream.models.synthetic import make_camera, render_crops

if TYPE_CHECKING:  # imported where it is used (export_all): it imports torch
    from mestream.export.subgraphs import ModelSpec, SubgraphSpec
    from mestream.models.akmnet.config import AKMNetConfig
    from mestream.models.mesnet.config import MESNetConfig

EXPORTER = "torch.onnx.export (TorchScript, dynamo=False)"
MIN_OPSET = 17
TOL = 1e-4
DEFAULT_OUT = Path("runs/export")

CAMERA_SUBJECT = 9000
"""Subject 0 of seed 9: a seed no shipped model was trained, validated or evaluated on."""
CAMERA_FPS = 200.0
CAMERA_SECONDS = 3.0
CAMERA_MICRO_PER_MIN = 30.0
ENCODER_SAMPLES = 6
CRN_PROPOSALS = 4


def default_checkpoints() -> dict[str, Path]:
    return {model: shipped_weights(model, "demo") for model in ("mesnet", "akmnet")}


def checkpoint_family(path: str | Path) -> str:
    """The model a checkpoint holds, from its ``model`` field (CheckpointError when unreadable)."""
    return load_checkpoint(path, model=None).model


# -- one subgraph -------------------------------------------------------------------------------------


def export_subgraph(subgraph: SubgraphSpec, path: Path, opset: int) -> None:
    """Trace ``subgraph`` (a `SubgraphSpec`) to ``path`` and run the ONNX checker on the file."""
    import onnx  # lazy: onnx is in the train extra
    import torch  # lazy: torch is in the train extra

    example = random_feed(
        subgraph.info(), 2, np.random.default_rng(0)
    )  # batch 2: a batch of 1 can be folded into the graph as a constant
    args = tuple(torch.from_numpy(example[t.name]) for t in subgraph.inputs)
    subgraph.module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # the TorchScript exporter's deprecation notices; see the module docstring
            torch.onnx.export(
                subgraph.module,
                args,
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=[t.name for t in subgraph.inputs],
                output_names=[t.name for t in subgraph.outputs],
                dynamic_axes=subgraph.dynamic_axes(),
                do_constant_folding=True,
            )
    except Exception as exc:
        raise ExportError(
            f"model {subgraph.key}: torch.onnx.export failed: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        subgraph.module.eval()  # the exporter restores the module's previous mode on the way out
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportError(f"model {subgraph.key}: {path} fails the ONNX checker: {exc}") from exc


def ort_session(path: Path) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def torch_outputs(subgraph: SubgraphSpec, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    import torch  # lazy: torch is in the train extra

    with torch.inference_mode():
        out = subgraph.module(
            *(torch.from_numpy(np.ascontiguousarray(feed[t.name])) for t in subgraph.inputs)
        )
    out = out if isinstance(out, tuple) else (out,)
    return {t.name: v.numpy() for t, v in zip(subgraph.outputs, out)}


def _signature(subgraph: SubgraphSpec, session: Any, path: Path) -> None:
    """The graph's names and shapes are the spec's: the manifest must describe the file."""
    for kind, got, want in (
        ("inputs", session.get_inputs(), subgraph.inputs),
        ("outputs", session.get_outputs(), subgraph.outputs),
    ):
        have = [(t.name, tuple(t.shape)) for t in got]
        expect = [(t.name, tuple(t.shape)) for t in want]
        if have != expect:
            raise ExportError(f"model {subgraph.key}: {path.name} has {kind} {have}, expected {expect}")


def verify_subgraph(
    subgraph: SubgraphSpec, path: Path, camera: Mapping[str, np.ndarray]
) -> tuple[SubgraphInfo, dict[str, np.ndarray]]:
    """Parity of the ONNX file against the torch module on random and camera inputs.

    Returns the subgraph's manifest entry (with the output dtypes ONNX Runtime actually gives)
    and the arrays for ``inputs.npz``. Raises `ParityError` beyond tolerance."""
    session = ort_session(path)
    _signature(subgraph, session, path)
    names = [t.name for t in subgraph.outputs]
    sets = [*random_sets(subgraph.info()), ("camera", dict(camera))]
    parity: dict[str, dict[str, float]] = {"random": {}, "camera": {}}
    dtypes: dict[str, str] = {}
    recorded: dict[str, np.ndarray] = {}
    for label, feed in sets:
        want = torch_outputs(subgraph, feed)
        got = dict(zip(names, session.run(names, {t.name: feed[t.name] for t in subgraph.inputs})))
        group = "camera" if label == "camera" else "random"
        for name in names:
            if got[name].dtype != want[name].dtype or got[name].shape != want[name].shape:
                raise ParityError(
                    f"model {subgraph.key}: output {name!r} is {got[name].dtype} {got[name].shape} in "
                    f"ONNX Runtime but {want[name].dtype} {want[name].shape} in torch ({label} inputs)"
                )
            dtypes[name] = got[name].dtype.name
            peak, _, metric = difference(got[name], want[name])
            parity[group][name] = max(parity[group].get(name, 0.0), peak)
            if (metric == "abs" and not peak <= TOL) or (metric == "mismatches" and peak):
                what = f"max abs difference {peak:.3g}" if metric == "abs" else f"{int(peak)} elements differ"
                raise ParityError(
                    f"model {subgraph.key}: output {name!r} of {path.name} differs from torch on {label} "
                    f"inputs: {what} (tolerance {TOL:g}; bool/int outputs must be identical)"
                )
        if label == "camera":
            recorded = want
    outputs = tuple(TensorInfo(t.name, t.shape, dtypes[t.name]) for t in subgraph.outputs)
    arrays = {f"{subgraph.key}/{t.name}": np.ascontiguousarray(camera[t.name]) for t in subgraph.inputs}
    arrays.update({f"{RECORDED}/{subgraph.key}/{n}": v for n, v in recorded.items()})
    return subgraph.info(file_sha256(path), parity, outputs), arrays


# -- real inputs -----------------------------------------------------------------------------------


def _render(seconds: float, size: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Face crops of every frame of the camera subject, and its micro-expressions (onset, offset)."""
    camera = make_camera(
        CAMERA_SUBJECT,
        fps=CAMERA_FPS,
        duration_s=seconds,
        scene=SceneConfig(micro_per_min=CAMERA_MICRO_PER_MIN),
    )
    if camera.n_frames is None:  # make_camera gives every camera a duration, so an end
        raise ExportError(f"camera subject {CAMERA_SUBJECT}: no duration, so no frames to render")
    crops = render_crops(camera, np.arange(camera.n_frames), size)
    micro = [
        (e.onset_frame, e.offset_frame)
        for e in camera.ground_truth
        if e.kind == "micro" and e.offset_frame < len(crops)
    ]
    return crops, micro


def mesnet_camera(spec: ModelSpec) -> dict[str, dict[str, np.ndarray]]:
    """Flow of the first window (`flow_steps`, as training), its features, and the features
    of the window head's best positions resampled for the CRN (`postprocess.resample`)."""
    import torch  # lazy: torch is in the train extra

    cfg = cast("MESNetConfig", spec.net.config)  # nn.Module's __getattr__ types it Tensor | Module
    crops, _ = _render(
        max(CAMERA_SECONDS, (cfg.window_steps + cfg.flow_gap + 1) / cfg.sample_hz), cfg.flow_crop
    )
    flow = flow_steps(crops, sample_starts(len(crops), CAMERA_FPS, cfg.sample_hz), cfg).astype(np.float32)
    window = np.zeros((cfg.window_steps, *flow.shape[1:]), np.float32)
    window[: min(len(flow), cfg.window_steps)] = flow[: cfg.window_steps]
    with torch.inference_mode():
        features = spec.subgraph("encoder").module(torch.from_numpy(window)).numpy()
        scores = [s[0].numpy() for s in spec.subgraph("window_head").module(torch.from_numpy(features)[None])]
    positions = np.concatenate(intervals.cpn_positions(cfg))
    best = np.argsort(-np.concatenate(scores), kind="stable")[:CRN_PROPOSALS]
    proposals = np.stack(
        [intervals.resample(features, int(a), int(b), cfg.crn_steps) for a, b in positions[best]]
    )
    motion = np.abs(flow).mean(axis=(1, 2, 3))
    picks = np.unique(
        np.concatenate(
            [
                np.argsort(-motion, kind="stable")[: ENCODER_SAMPLES // 2],
                np.linspace(0, len(flow) - 1, ENCODER_SAMPLES // 2).round().astype(int),
            ]
        )
    )
    return {
        "encoder": {"flow": flow[picks]},
        "window_head": {"features": features[None]},
        "crn": {"proposals": proposals.astype(np.float32)},
    }


def akmnet_camera(spec: ModelSpec) -> dict[str, dict[str, np.ndarray]]:
    """Two spotted clips through `sample_from_crops` and ``collate`` (as evaluation): a whole
    micro-expression and a short clip that leaves padding; their encoder features, with the
    padded slots zero as `AKMNet.encode` leaves them."""
    import torch  # lazy: torch is in the train extra

    cfg = cast("AKMNetConfig", spec.net.config)  # nn.Module's __getattr__ types it Tensor | Module
    crops, micro = _render(CAMERA_SECONDS, cfg.train_resize)
    spans = (micro + [(0, min(43, len(crops) - 1)), (len(crops) // 2, len(crops) - 1)])[:2]
    short = max(1, cfg.max_frames // 2)
    spans[1] = (spans[1][0], min(spans[1][0] + short - 1, spans[1][1]))
    clips = [
        sample_from_crops(
            crops[a : b + 1],
            np.arange(a, b + 1),
            cfg,
            label=0,
            onset=a,
            apex=a,
            offset=b,
            subject=str(CAMERA_SUBJECT),
        )
        for a, b in spans
    ]
    frames, mask, _ = collate(clips, cfg.image_size, train=False, pad_to=cfg.max_frames)
    with torch.inference_mode():
        valid = spec.subgraph("encoder").module(torch.from_numpy(frames[mask])).numpy()
    features = np.zeros((*mask.shape, *valid.shape[1:]), np.float32)
    features[mask] = valid
    n = int(mask[0].sum())
    picks = np.unique(np.linspace(0, n - 1, min(4, n)).round().astype(int))
    return {"encoder": {"frames": frames[0, picks]}, "clip_head": {"features": features, "mask": mask}}


CAMERA = {"mesnet": mesnet_camera, "akmnet": akmnet_camera}


# -- everything ------------------------------------------------------------------------------------


def producer() -> dict[str, str]:
    import onnx  # lazy: onnx is in the train extra
    import torch  # lazy: torch is in the train extra

    return {
        "torch": str(torch.__version__),
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "mestream": __version__,
        "git_sha": git_sha() or "unknown",
    }


def relative_to(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when there is such a path (not across Windows drives), else absolute."""
    try:
        return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()
    except ValueError:
        return str(path.resolve())


def export_all(
    checkpoints: Mapping[str, str | Path] | None = None,
    out: str | Path = DEFAULT_OUT,
    *,
    opset: int = MIN_OPSET,
    progress: bool = True,
) -> Manifest:
    """Export, check and describe every subgraph of each checkpoint (model → path; default: both
    shipped demo checkpoints) into ``out``; the manifest is written last, so an export that
    fails leaves no manifest claiming its files."""
    import torch  # lazy: torch is in the train extra

    from mestream.export.subgraphs import load_spec  # lazy: imports torch (train extra)

    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is not supported: the subgraphs need opset {MIN_OPSET} or newer")
    paths = {m: Path(p) for m, p in (checkpoints or default_checkpoints()).items()}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specs = {model: load_spec(model, path) for model, path in paths.items()}
    # from here the folder's files are overwritten: a manifest left from an earlier export
    # would claim files this export is replacing, and outlive this export if it fails
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    models: dict[str, ModelInfo] = {}
    arrays: dict[str, np.ndarray] = {}
    total = sum(len(s.subgraphs) for s in specs.values())
    with tqdm(total=total, desc="export", unit="subgraph", disable=not progress) as bar:
        for model, spec in specs.items():
            bar.set_postfix_str(f"{model}: camera inputs")
            camera = CAMERA[model](spec)
            subgraphs = []
            for subgraph in spec.subgraphs:
                bar.set_postfix_str(subgraph.key)
                path = out / subgraph.file
                export_subgraph(subgraph, path, opset)
                info, part = verify_subgraph(subgraph, path, camera[subgraph.name])
                subgraphs.append(info)
                arrays.update(part)
                bar.update()
            path = paths[model]
            # parsed as the runtime will load it: an export lacking a field the engine reads fails here
            entry = {
                "name": model,
                "preset": spec.preset,
                "checkpoint": relative_to(path, out),
                "checkpoint_sha256": file_sha256(path),
                "config": spec.config,
                "preprocessing": spec.preprocessing,
                "subgraphs": [dataclasses.asdict(s) for s in subgraphs],
            }
            models[model] = model_info(entry, f"models.{model}")
    tmp = out / (INPUTS_NAME + ".tmp.npz")
    # numpy's stub types the keyword allow_pickle, which a ** of arrays could name; these keys are paths
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(out / INPUTS_NAME)
    manifest = Manifest(
        root=out,
        opset=opset,
        exporter=f"{EXPORTER} torch {torch.__version__}",
        producer=producer(),
        models=models,
    )
    manifest.save()
    return manifest


def is_stale(
    out: str | Path, checkpoints: Mapping[str, str | Path] | None = None, *, opset: int | None = None
) -> str | None:
    """Why the export in ``out`` does not match ``checkpoints`` (default: the shipped demo
    ones), or None when it does: no manifest, a model missing, a checkpoint or an ONNX file
    changed since the export, the camera inputs missing, another opset. Code changes to the
    subgraphs are not detected: re-export after changing a network."""
    checkpoints = checkpoints or default_checkpoints()
    try:
        manifest = Manifest.load(out)
    except ManifestError as exc:
        return str(exc)
    if opset is not None and manifest.opset != opset:
        return f"the export in {out} is opset {manifest.opset}, opset {opset} was asked for"
    for model, path in checkpoints.items():
        info = manifest.models.get(model)
        if info is None:
            return (
                f"model {model} is not in the export in {out} (it has {', '.join(manifest.models) or 'none'})"
            )
        if not Path(path).is_file():
            return f"checkpoint {path}: no such file"
        sha = file_sha256(path)
        if sha != info.checkpoint_sha256:
            return (
                f"checkpoint {path} (sha256 {sha[:12]}…) is not the one model {model} was exported from "
                f"(sha256 {info.checkpoint_sha256[:12]}…)"
            )
    for key in manifest.subgraphs:
        try:
            manifest.verify(key)
        except ManifestError as exc:
            return str(exc)
    if not (Path(out) / INPUTS_NAME).is_file():
        return f"{Path(out) / INPUTS_NAME} (the camera inputs for --check) is missing"
    return None
