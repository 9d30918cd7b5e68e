"""AKMNet's clips: onset→offset micro-expressions, magnified, shortened to T frames, cached.

Synthetic clips come from the synthetic camera (`mestream.models.synthetic`): every
micro-expression of a subject's video, cropped with that video's one face box, labelled with
the event's 4-class label and its true apex. Real clips (CASME II, SAMM, …) come from
`mestream.models.datasets` records and go through the same `prepare_clip`.

`prepare_clip` is numpy + OpenCV only, so the runtime can prepare frames the way training did:
flicker removal, shortening to ``max_frames`` and magnification are described in
`mestream.engine.clips`, which the live recognition stage shares.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mestream.cameras.synthetic import SceneConfig, four_class
from mestream.engine import clips
from mestream.models.akmnet.config import AKMNetConfig
from mestream.models.datasets import load_frames
from mestream.models.synthetic import make_camera, render_crops


class DataError(ValueError):
    """Bad clip data; the message names the clip or field."""


@dataclass(frozen=True)
class ClipSample:
    """One prepared clip: ``frames`` (n, S, S) uint8 with n <= max_frames; ``source_frames``
    (n,) the source frame each prepared frame stands for (the middle of its run)."""

    frames: np.ndarray
    source_frames: np.ndarray
    label: int
    onset: int
    apex: int
    offset: int
    subject: str
    video: str = ""
    emotion: str = ""


@dataclass(frozen=True)
class SyntheticData:
    """Which synthetic subjects and videos make the clips.

    Args:
        seed: subjects ``seed*1000 + i`` (`mestream.models.synthetic.subject_ids`).
        train_subjects, val_subjects: training subjects first, validation subjects after them.
        fps, duration_s: each subject's video.
        micro_per_min: micro-expressions per minute of video (the camera's default is 18);
            more clips per rendered second. Macro-expressions, blinks and head turns keep
            the camera's defaults.
    """

    seed: int = 0
    train_subjects: int = 16
    val_subjects: int = 6
    fps: float = 200.0
    duration_s: float = 60.0
    micro_per_min: float = 30.0

    def __post_init__(self) -> None:
        for name in ("train_subjects", "val_subjects"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DataError(f"SyntheticData.{name} must be a positive int, got {value!r}")
        for name in ("fps", "duration_s", "micro_per_min"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise DataError(f"SyntheticData.{name} must be a positive number, got {value!r}")


def prepare_clip(crops: np.ndarray, config: AKMNetConfig) -> tuple[np.ndarray, list[np.ndarray]]:
    """(L, S, S) uint8 face crops, onset first → (n, S, S) uint8 network frames and the runs
    of input indices each one averages (`mestream.engine.clips.prepare_clip`, shared with the runtime)."""
    try:
        return clips.prepare_clip(
            crops,
            max_frames=config.max_frames,
            magnify_alpha=config.magnify_alpha,
            magnify_sigma=config.magnify_sigma,
            input_mode=config.input_mode,
        )
    except ValueError as exc:
        raise DataError(str(exc)) from None


def sample_from_crops(
    crops: np.ndarray,
    frame_ids: np.ndarray,
    config: AKMNetConfig,
    *,
    label: int,
    onset: int,
    apex: int,
    offset: int,
    subject: str,
    video: str = "",
    emotion: str = "",
) -> ClipSample:
    ids = np.asarray(frame_ids, dtype=np.int64)
    if ids.shape != (len(crops),):
        raise DataError(
            f"clip {subject}/{video} (onset {onset}): {len(crops)} frames but {ids.size} frame numbers"
        )
    frames, runs = prepare_clip(crops, config)
    source = np.array([int(ids[r[len(r) // 2]]) for r in runs], dtype=np.int64)
    return ClipSample(frames, source, int(label), int(onset), int(apex), int(offset), subject, video, emotion)


# -- synthetic clips ---------------------------------------------------------------------------


def _cache_dir(cache: str | os.PathLike[str] | None) -> Path:
    if cache is not None:
        return Path(cache)
    return Path(os.environ.get("MESTREAM_CACHE", Path.home() / ".cache" / "mestream")) / "akmnet"


def _key(parts: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


PREP_FIELDS = ("train_resize", "max_frames", "magnify_alpha", "magnify_sigma", "input_mode")


def subject_clips(
    subject: int, data: SyntheticData, config: AKMNetConfig, *, cache: str | os.PathLike[str] | None = None
) -> list[ClipSample]:
    """Every micro-expression clip of one synthetic subject's video, prepared and cached on disk.

    Labels index ``config.class_names`` (the event's 4-class label); with another class list
    the event's 7-class emotion is used.
    """
    names = config.class_names
    parts = {
        "subject": subject,
        "fps": data.fps,
        "duration_s": data.duration_s,
        "micro_per_min": data.micro_per_min,
        **{k: getattr(config, k) for k in PREP_FIELDS},
        "version": 1,
    }
    path = _cache_dir(cache) / f"subject{subject:05d}-{_key(parts)}.npz"
    if path.is_file():
        return _load(path, names)
    camera = make_camera(
        subject, fps=data.fps, duration_s=data.duration_s, scene=SceneConfig(micro_per_min=data.micro_per_min)
    )
    events = [e for e in camera.ground_truth if e.kind == "micro"]
    ids = (
        np.unique(np.concatenate([np.arange(e.onset_frame, e.offset_frame + 1) for e in events]))
        if events
        else np.zeros(0, np.int64)
    )
    crops = render_crops(camera, ids, config.train_resize)
    where = {int(f): i for i, f in enumerate(ids)}
    samples = []
    for e in events:
        span = np.arange(e.onset_frame, e.offset_frame + 1)
        samples.append(
            sample_from_crops(
                crops[[where[int(f)] for f in span]],
                span,
                config,
                label=-1,
                onset=e.onset_frame,
                apex=e.apex_frame,
                offset=e.offset_frame,
                subject=str(subject),
                video=camera.name,
                emotion=e.emotion,
            )
        )
    _save(path, samples)
    return _load(path, names)


def _save(path: Path, samples: Sequence[ClipSample]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = [{k: v for k, v in asdict(s).items() if k not in ("frames", "source_frames")} for s in samples]
    arrays = {f"frames{i}": s.frames for i, s in enumerate(samples)}
    arrays.update({f"source{i}": s.source_frames for i, s in enumerate(samples)})
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, meta=np.array(json.dumps(meta)), **arrays)
    tmp.replace(path)


def _load(path: Path, names: Sequence[str]) -> list[ClipSample]:
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        out = []
        for i, m in enumerate(meta):
            emotion = m["emotion"]
            label_name = four_class(emotion) if "positive" in names else emotion
            if label_name not in names:
                raise DataError(f"{path}: clip {i} has class {label_name!r}, not one of {list(names)}")
            m = {**m, "label": names.index(label_name)}
            out.append(ClipSample(frames=z[f"frames{i}"], source_frames=z[f"source{i}"], **m))
    return out


def synthetic_clips(
    subjects: Iterable[int],
    data: SyntheticData,
    config: AKMNetConfig,
    *,
    cache: str | os.PathLike[str] | None = None,
    progress: bool = True,
    desc: str = "clips",
) -> list[ClipSample]:
    """The clips of several subjects (rendered once, then read from the cache)."""
    out: list[ClipSample] = []
    subjects = list(subjects)
    for s in tqdm(subjects, desc=desc, unit="subject", disable=not progress):
        out += subject_clips(s, data, config, cache=cache)
    return out


# -- real datasets ---------------------------------------------------------------------------


def dataset_clips(records: Iterable[Any], config: AKMNetConfig) -> list[ClipSample]:
    """Clips from `mestream.models.datasets` records that carry a ``label`` (apply a class map
    first, e.g. ``apply_class_map(clips, "paper4")``). The datasets ship cropped faces, so each
    frame is only read grey and resized to ``train_resize``. A clip without an apex (SMIC)
    gets its middle frame as apex; a label outside ``config.class_names`` is an error naming it.
    """
    names = config.class_names
    out = []
    for rec in records:
        if rec.label not in names:
            raise DataError(
                f"{rec.source or rec.name}: label {rec.label!r} "
                f"is not one of the model's classes {list(names)}"
                " (apply a class map first)"
            )
        crops = load_frames(rec.frames, config.train_resize)
        ids = np.asarray(rec.frame_numbers, dtype=np.int64)
        apex = rec.apex if rec.apex is not None else int(ids[len(ids) // 2])
        try:
            out.append(
                sample_from_crops(
                    crops,
                    ids,
                    config,
                    label=names.index(rec.label),
                    onset=rec.onset,
                    apex=apex,
                    offset=rec.offset,
                    subject=f"{rec.dataset}/{rec.subject}",
                    video=rec.clip,
                    emotion=rec.emotion,
                )
            )
        except DataError as exc:
            raise DataError(f"{rec.source or rec.name}: {exc}") from exc
    return out


# -- batches -----------------------------------------------------------------------------------


def collate(
    samples: Sequence[ClipSample],
    size: int,
    *,
    train: bool,
    rng: np.random.Generator | None = None,
    pad_to: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (B, T, 1, size, size) float32 in [0, 1], mask (B, T) bool, labels (B,).

    Training: one random ``size`` crop per clip (the same for all its frames); otherwise
    each frame is resized to ``size`` (Section IV-A). T is ``pad_to`` or the longest clip.
    """
    T = pad_to or max(len(s.frames) for s in samples)
    out = np.zeros((len(samples), T, 1, size, size), np.float32)
    mask = np.zeros((len(samples), T), bool)
    for b, s in enumerate(samples):
        n, S = len(s.frames), s.frames.shape[1]
        if n > T:
            raise DataError(f"clip {s.video}:{s.onset} has {n} frames, more than the batch's {T}")
        if train and S > size:
            rng = rng or np.random.default_rng()
            y0, x0 = (int(v) for v in rng.integers(0, S - size + 1, 2))
            out[b, :n, 0] = s.frames[:, y0 : y0 + size, x0 : x0 + size] / 255.0
        else:
            clips.network_frames(s.frames, size, out=out[b, :n, 0])
        mask[b, :n] = True
    return out, mask, np.array([s.label for s in samples], np.int64)


def balanced_order(labels: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """One epoch of indices with every present class resampled up to the largest class's count."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    top = max(int((labels == c).sum()) for c in classes)
    picks = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        extra = rng.choice(idx, top - len(idx), replace=True) if top > len(idx) else np.zeros(0, int)
        picks.append(np.concatenate([idx, extra]))
    return rng.permutation(np.concatenate(picks))
