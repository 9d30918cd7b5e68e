"""MESNet's data: long videos turned into flow steps, pre-training clips and training windows.

A video becomes a `FlowVideo`: the face crops are averaged into samples at ``sample_hz``
(a box filter before downsampling, which also averages the sensor noise), blurred, and the
DIS flow from sample i - gap//2 to i + gap - gap//2 is taken, minus the face's median flow,
area-averaged to ``input_size`` and scaled (see `config`). Synthetic subjects come from
`mestream.models.synthetic`; a real long video (`mestream.models.datasets` ``LongVideo``) goes
through the same `flow_steps`. Synthetic videos are cached as .npz under a directory keyed
by every parameter that changes the arrays, so later runs skip rendering and flow.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from mestream.engine.face import crop, detect_face, square_box
from mestream.engine.flow import OpticalFlow, flow_input, sample_image
from mestream.models.mesnet.config import MESNetConfig
from mestream.models.synthetic import make_camera, render_crops

CACHE_VERSION = 1
DEFAULT_CACHE = Path(os.environ.get("MESTREAM_CACHE", Path.home() / ".cache" / "mestream")) / "mesnet"


class DataError(ValueError):
    """A video that cannot be turned into MESNet data; the message names it."""


@dataclass(frozen=True)
class Expression:
    """One labelled interval in steps (inclusive) and in source frames."""

    kind: str
    onset_step: int
    apex_step: int
    offset_step: int
    onset_frame: int
    offset_frame: int


@dataclass(frozen=True)
class FlowVideo:
    """One long video as MESNet sees it: flow (T, 2, H, W) float16, each step's source frame."""

    name: str
    flow: np.ndarray
    sample_frames: np.ndarray
    expressions: tuple[Expression, ...]
    fps: float

    def truth(self, kind: str = "micro") -> np.ndarray:
        """(M, 2) step intervals of one kind."""
        rows = [(e.onset_step, e.offset_step) for e in self.expressions if e.kind == kind]
        return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


def sample_starts(n_frames: int, fps: float, sample_hz: float) -> np.ndarray:
    """First source frame of each sample; a sample spans the frames up to the next start."""
    step = max(fps / sample_hz, 1.0)
    starts = np.unique(np.ceil(np.arange(int(n_frames / step)) * step - 1e-9).astype(np.int64))
    return starts[starts < n_frames]


def to_steps(frames: Iterable[int], starts: np.ndarray) -> np.ndarray:
    """The sample holding each source frame."""
    return np.clip(np.searchsorted(starts, np.asarray(list(frames)), side="right") - 1, 0, len(starts) - 1)


def flow_steps(
    crops: np.ndarray, starts: np.ndarray, config: MESNetConfig, *, progress: bool = False, desc: str = "flow"
) -> np.ndarray:
    """Face crops (n_frames, S, S) uint8 → MESNet input (T, 2, H, W) float16 (module docstring)."""
    bounds = np.append(starts, len(crops))
    samples = np.empty((len(starts), *crops.shape[1:]), np.uint8)
    for i in range(len(starts)):
        sample_image(
            crops[bounds[i] : bounds[i + 1]].mean(axis=0, dtype=np.float32), config.flow_blur, out=samples[i]
        )
    flow = OpticalFlow(config.flow_method, config.flow_preset)
    back, ahead = config.flow_gap // 2, config.flow_gap - config.flow_gap // 2
    size = config.input_size
    gain = config.flow_scale * size / crops.shape[1]
    out = np.empty((len(samples), 2, size, size), np.float16)
    last = len(samples) - 1
    for i in tqdm(range(len(samples)), desc=desc, unit="step", disable=not progress, leave=False):
        flow_input(flow, samples[max(i - back, 0)], samples[min(i + ahead, last)], size, gain, out=out[i])
    return out


def _cache_key(config: MESNetConfig, extra: dict[str, Any]) -> str:
    fields = {
        k: getattr(config, k)
        for k in (
            "input_size",
            "sample_hz",
            "flow_crop",
            "flow_method",
            "flow_preset",
            "flow_gap",
            "flow_blur",
            "flow_scale",
        )
    }
    blob = json.dumps({"v": CACHE_VERSION, **fields, **extra}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def synthetic_video(
    subject: int,
    config: MESNetConfig,
    *,
    fps: float = 200.0,
    duration_s: float | None = None,
    cache: Path | None = DEFAULT_CACHE,
    progress: bool = False,
) -> FlowVideo:
    """One synthetic subject (default scene) as a `FlowVideo`, cached."""
    duration_s = config.duration_s if duration_s is None else duration_s
    path = None
    if cache is not None:
        key = _cache_key(config, {"fps": fps, "duration_s": duration_s, "scene": "default"})
        path = Path(cache) / key / f"subject{subject:05d}.npz"
        if path.is_file():
            try:
                return _load(path)
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                # a truncated or foreign file (killed run, full disk): render it again and overwrite
                warnings.warn(
                    f"MESNet flow cache {path} is unreadable ({type(exc).__name__}: {exc}); rebuilding it",
                    stacklevel=2,
                )
    camera = make_camera(subject, fps=fps, duration_s=duration_s)
    crops = render_crops(camera, np.arange(camera.n_frames), config.flow_crop, progress=progress)
    starts = sample_starts(camera.n_frames, fps, config.sample_hz)
    flow = flow_steps(crops, starts, config, progress=progress, desc=f"flow {camera.name}")
    events = [(e.kind, e.onset_frame, e.apex_frame, e.offset_frame) for e in camera.ground_truth]
    video = _build(camera.name, flow, starts, len(crops), events, fps)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(
            f"{path.stem}.{os.getpid()}.tmp.npz"
        )  # two runs filling one cache do not collide
        np.savez(
            tmp,
            flow=video.flow,
            starts=starts,
            n_frames=len(crops),
            fps=fps,
            name=video.name,
            events=json.dumps(events),
        )
        tmp.replace(path)
    return video


def _build(
    name: str,
    flow: np.ndarray,
    starts: np.ndarray,
    n_frames: int,
    events: Sequence[tuple[str, int, int, int]],
    fps: float,
) -> FlowVideo:
    ends = np.append(starts[1:], n_frames) - 1
    centres = (starts + ends) / 2.0
    exprs = []
    for kind, on, apex, off in events:
        s_on, s_apex, s_off = to_steps([on, apex, off], starts)
        exprs.append(Expression(kind, int(s_on), int(s_apex), int(s_off), int(on), int(off)))
    return FlowVideo(name, flow, centres, tuple(exprs), fps)


def _load(path: Path) -> FlowVideo:
    with np.load(path) as z:
        return _build(
            str(z["name"]),
            z["flow"],
            z["starts"],
            int(z["n_frames"]),
            [tuple(e) for e in json.loads(str(z["events"]))],
            float(z["fps"]),
        )


def synthetic_videos(
    subjects: Sequence[int],
    config: MESNetConfig,
    *,
    cache: Path | None = DEFAULT_CACHE,
    workers: int = 1,
    progress: bool = True,
    desc: str = "subjects",
    duration_s: float | None = None,
) -> list[FlowVideo]:
    """Several subjects, rendered in ``workers`` processes when not cached yet."""
    if workers <= 1 or len(subjects) <= 1:
        return [
            synthetic_video(s, config, cache=cache, duration_s=duration_s)
            for s in tqdm(subjects, desc=desc, disable=not progress)
        ]
    with ProcessPoolExecutor(workers, initializer=_single_thread) as pool:
        futures = [
            pool.submit(synthetic_video, s, config, cache=cache, duration_s=duration_s) for s in subjects
        ]
        return [f.result() for f in tqdm(futures, desc=desc, disable=not progress)]


def _single_thread() -> None:
    cv2.setNumThreads(1)


def long_video(video: Any, config: MESNetConfig, *, progress: bool = False) -> FlowVideo:
    """A real long video (``mestream.models.datasets`` ``LongVideo``) as a `FlowVideo`.

    Thin by design: frames are read grey, cropped with the engine's face box from the first
    frame, and go through the same `flow_steps`; annotated intervals keep their kind. Source
    frames here (``sample_frames``, ``Expression.onset_frame``) are positions in the folder
    (0 = the first file), not the annotation sheet's frame numbers.
    """
    if not len(video.frame_names):
        raise DataError(f"long video {video.video!r} ({video.frames_dir}): no frames")
    crops = np.empty((len(video), config.flow_crop, config.flow_crop), np.uint8)
    box = None
    for i, name in enumerate(
        tqdm(video.frame_names, desc=f"read {video.video}", disable=not progress, leave=False)
    ):
        gray = cv2.imread(str(Path(video.frames_dir) / name), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise DataError(
                f"long video {video.video!r}: cannot read frame file {Path(video.frames_dir) / name}"
            )
        if box is None:
            found = detect_face(gray)
            if found is None:
                raise DataError(f"long video {video.video!r}: no face in frame file {name}")
            box = square_box(found)
        crop(gray, box, config.flow_crop, out=crops[i])
    starts = sample_starts(len(crops), video.fps, config.sample_hz)
    numbers = np.asarray(video.frame_numbers, dtype=np.int64)

    def index(frame: int) -> int:
        # position of the frame in the folder, so a gap in the numbering does not shift the labels
        return int(np.clip(np.searchsorted(numbers, frame), 0, len(numbers) - 1))

    events = [
        (iv.kind, index(iv.onset), index(iv.apex if iv.apex is not None else iv.onset), index(iv.offset))
        for iv in video.intervals
    ]
    flow = flow_steps(crops, starts, config, progress=progress)
    return _build(
        f"{video.dataset}/{video.subject}/{video.video}", flow, starts, len(crops), events, video.fps
    )


# --------------------------------------------------------------------------- training samples


def _index_clip(start: int, end: int, steps: int) -> np.ndarray:
    return np.rint(np.linspace(start, end, steps)).astype(np.int64)


def _busy(video: FlowVideo, kinds: tuple[str, ...] = ("micro", "macro")) -> np.ndarray:
    busy = np.zeros(len(video.flow), bool)
    for e in video.expressions:
        if e.kind in kinds:
            busy[max(e.onset_step - 2, 0) : e.offset_step + 3] = True
    return busy


def pretrain_clips(
    videos: Sequence[FlowVideo], config: MESNetConfig, rng: np.random.Generator
) -> list[tuple[int, np.ndarray, int]]:
    """Section III-A's samples as (video index, step indices (N_pre,), label 1 = ME): every ME,
    ``r_noL``·n_l unlabelled clips of ``l_noL`` steps, ``r_MaE``·n_l macro clips onset → apex+k."""
    me = [(v, e) for v, video in enumerate(videos) for e in video.expressions if e.kind == "micro"]
    macro = [(v, e) for v, video in enumerate(videos) for e in video.expressions if e.kind == "macro"]
    n = config.pretrain_steps
    clips = [(v, _index_clip(e.onset_step, e.offset_step, n), 1) for v, e in me]
    for _ in range(int(round(len(me) * config.r_nol))):
        for _attempt in range(50):
            v = int(rng.integers(len(videos)))
            busy = _busy(videos[v])
            start = int(rng.integers(0, len(busy) - config.l_nol))
            if not busy[start : start + config.l_nol].any():
                clips.append((v, _index_clip(start, start + config.l_nol - 1, n), 0))
                break
    if macro:
        for k in rng.integers(len(macro), size=int(round(len(me) * config.r_mae))):
            v, e = macro[int(k)]
            end = min(e.apex_step + config.mae_apex_k, len(videos[v].flow) - 1)
            clips.append((v, _index_clip(e.onset_step, end, n), 0))
    return clips


def training_windows(
    videos: Sequence[FlowVideo], config: MESNetConfig, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """Section III-D's windows as (video index, first step): ``r_tME``·n_me around MEs (each ME
    whole inside), ``r_tMaE``·n_me around macro-expressions, ``r_tNL``·n_me anywhere.

    Deviation: the paper's r_tNL clips are "without any label"; at the synthetic scene's ~22
    expressions a minute a 2.5 s window is rarely label-free, so these are drawn anywhere.
    """
    n = config.window_steps
    me = [(v, e) for v, video in enumerate(videos) for e in video.expressions if e.kind == "micro"]
    macro = [(v, e) for v, video in enumerate(videos) for e in video.expressions if e.kind == "macro"]
    out: list[tuple[int, int]] = []

    def around(v: int, e: Expression) -> tuple[int, int]:
        hi = min(e.onset_step, len(videos[v].flow) - n)
        lo = max(e.offset_step - n + 1, 0)
        return v, int(rng.integers(lo, hi + 1)) if hi >= lo else max(hi, 0)

    for _ in range(int(round(config.r_tme))):
        out += [around(v, e) for v, e in me]
    if macro:
        out += [
            around(*macro[int(k)]) for k in rng.integers(len(macro), size=int(round(config.r_tmae * len(me))))
        ]
    for _ in range(int(round(config.r_tnl * len(me)))):
        v = int(rng.integers(len(videos)))
        out.append((v, int(rng.integers(0, max(len(videos[v].flow) - n, 0) + 1))))
    return out


def window_flow(video: FlowVideo, start: int, steps: int) -> np.ndarray:
    """Steps start..start+steps-1 as float32, zero-padded past the end."""
    part = video.flow[start : start + steps].astype(np.float32)
    if len(part) < steps:
        part = np.concatenate([part, np.zeros((steps - len(part), *part.shape[1:]), np.float32)])
    return part
