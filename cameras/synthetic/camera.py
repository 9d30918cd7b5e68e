"""The synthetic micro-expression camera: renders a face video and knows its ground truth.

Rendering model (per frame only what moves is touched, so 640x480 runs at thousands of fps):

1. At ``open()`` the subject is rendered once, neutral (`render_face`), together with a
   head weight map and a depth map, and a small bank of sensor-noise images is drawn.
2. Head pose (slow drift plus scheduled head turns) is a backward map over the head's
   bounding box: translation and roll weighted by the head map, yaw as a shift
   proportional to depth (the nose moves, the outline does not). The head is re-warped
   into the ``clean`` frame only when the pose moved by ``pose_step_px``.
3. An active expression or blink is a displacement field over one patch (`aus.au_field`),
   scaled by the event's amplitude and intensity profile and applied with ``cv2.remap`` to
   that patch of the posed ``clean`` frame, following the head's pose.
4. Lighting and sensor: the frame is multiplied by the flicker gain and a noise image from
   the bank, at a per-frame offset, is added, in one ``cv2.addWeighted``.

Everything random comes from generators seeded by (seed, block) or (subject), so the same
arguments give bit-identical frames and ground truth.
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterator, Sequence

import cv2
import numpy as np

from mestream.cameras.base import PIXEL_FORMATS, Frame, Pacer, SourceBase, frame_shape, now_ns, parse_resolution
from mestream.cameras.synthetic.aus import Field, au_field, blink_travel
from mestream.cameras.synthetic.schedule import (
    GROUND_TRUTH_KINDS, HEAD_TURN, NOISE_BANKS, NOISE_MARGIN, REFERENCE_FACE_PX, Event, Planner, SceneConfig)
from mestream.cameras.synthetic.subject import FaceModel, Subject, render_face
from mestream.cameras.synthetic.truth import FrameTruth, write_csv, write_json

MIN_FPS, MAX_FPS = 25.0, 1000.0
DESIGN_FPS = (200.0, 500.0)
_NOISE_STREAM = 0x401CE


class SyntheticCamera(SourceBase):
    """A seeded face video with micro-expressions, distractors and their ground truth.

    Args:
        fps: frame rate. The design range is 200-500 fps (DFME's cameras); 25-1000 is
            accepted, but event durations are set in seconds, so at low rates a
            micro-expression spans only a few frames.
        resolution: ``(width, height)`` or ``"WxH"``, 160x120 to 4096x4096, width/height
            between 0.9 and 2.5. The face is 38-47% of the height.
        seed: drives the schedule, head motion, flicker and noise (and the subject when
            ``subject`` is None).
        subject: None (subject number ``seed``), a subject number, or a `Subject`.
        duration_s: stream length; None streams forever.
        pace: release frames in real time at ``fps``; False renders as fast as it can.
        name: the camera id, carried in every ground-truth event.
        pixel_format: ``mono8`` or ``bgr8`` (grey replicated to three channels).
        scene: event rates, amplitudes, noise, flicker and head motion; see `SceneConfig`.

    Each iteration renders from frame 0 and is a deterministic replay. Frames share one
    pixel buffer: copy what you keep. Ground truth: `ground_truth` is the whole planned
    schedule when ``duration_s`` is set, else the events whose onset has been rendered;
    `events_between` answers for any frame range, rendered or not. An event that would be
    cut by the end of a finite stream is neither rendered nor reported.

    Not thread-safe: ask for ground truth from the thread that iterates, or after it stops.
    """

    def __init__(self, *, fps: float = 500.0, resolution: Sequence[int] | str = (640, 480), seed: int = 0,
                 subject: int | Subject | None = None, duration_s: float | None = None, pace: bool = True,
                 name: str = "synthetic", pixel_format: str = "mono8", scene: SceneConfig | None = None) -> None:
        super().__init__()
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or not MIN_FPS <= fps <= MAX_FPS:
            raise ValueError(f"synthetic camera: fps must be a number within {MIN_FPS:g}-{MAX_FPS:g} "
                             f"(designed for {DESIGN_FPS[0]:g}-{DESIGN_FPS[1]:g}), got {fps!r}")
        width, height = parse_resolution(resolution)
        if not (160 <= width <= 4096 and 120 <= height <= 4096 and 0.9 <= width / height <= 2.5):
            raise ValueError(f"synthetic camera: resolution must be 160x120 to 4096x4096 with width/height "
                             f"within 0.9-2.5, got {width}x{height}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"synthetic camera: seed must be a non-negative int, got {seed!r}")
        if subject is None:
            subject = Subject.from_seed(int(seed))
        elif not isinstance(subject, Subject):
            subject = Subject.from_seed(subject)  # validates the number
        if duration_s is not None and (isinstance(duration_s, bool) or not isinstance(duration_s, (int, float))
                                       or not math.isfinite(duration_s) or duration_s <= 0):
            raise ValueError(f"synthetic camera: duration_s must be a positive number of seconds or None, got {duration_s!r}")
        if pixel_format not in PIXEL_FORMATS:
            raise ValueError(f"synthetic camera: pixel_format must be one of {sorted(PIXEL_FORMATS)}, got {pixel_format!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"synthetic camera: name must be a non-empty string, got {name!r}")
        if scene is None:
            scene = SceneConfig()
        elif not isinstance(scene, SceneConfig):
            raise ValueError(f"synthetic camera: scene must be a SceneConfig, got {type(scene).__name__}")
        self.name, self.fps, self.pixel_format, self.pace = name, float(fps), pixel_format, bool(pace)
        self.seed, self.subject, self.scene = int(seed), subject, scene
        self.resolution = (width, height)
        self.duration_s = None if duration_s is None else float(duration_s)
        self.n_frames = None if duration_s is None else max(1, int(round(duration_s * self.fps)))
        self.scale = subject.face_height * height / REFERENCE_FACE_PX
        self.planner = Planner(seed=self.seed, fps=self.fps, scene=scene, camera=name, scale=self.scale)
        self.frames_rendered = 0
        self._face: FaceModel | None = None
        self._noise: np.ndarray | None = None
        self._regions: dict[tuple[str, ...], tuple[int, int, int, int]] = {}

    @classmethod
    def from_config(cls, config: Any) -> "SyntheticCamera":
        """Build from a `SourceConfig`: fps 0 and an empty resolution mean 500 and 640x480;
        ``options`` may hold ``subject``, ``duration_s`` and any `SceneConfig` field."""
        options = dict(getattr(config, "options", {}) or {})
        subject = options.pop("subject", None)
        duration_s = options.pop("duration_s", None)
        scene = SceneConfig.from_dict(options) if options else None
        return cls(fps=float(config.fps) or 500.0, resolution=config.resolution or (640, 480), seed=config.seed,
                   subject=subject, duration_s=duration_s, pace=config.pace, name=config.name,
                   pixel_format=config.pixel_format, scene=scene)

    @property
    def shape(self) -> tuple[int, ...]:
        return frame_shape(*self.resolution, self.pixel_format)

    @property
    def face(self) -> FaceModel:
        """The rendered neutral subject (rendered on first use)."""
        if self._face is None:
            self._face = render_face(self.subject, *self.resolution)
        return self._face

    # -- ground truth ----------------------------------------------------------------------

    def events_between(self, start_frame: int, stop_frame: int, kinds: Sequence[str] = GROUND_TRUTH_KINDS) -> list[Event]:
        """Events of ``kinds`` whose [onset, offset] overlaps frames [start_frame, stop_frame).

        Works for frames not rendered yet (the schedule is planned ahead); pass
        ``kinds=("head_turn",)`` for the head-turn distractors.
        """
        if start_frame < 0 or stop_frame < start_frame:
            raise ValueError(f"events_between needs 0 <= start_frame <= stop_frame, got {start_frame}, {stop_frame}")
        if self.n_frames is not None:
            stop_frame = min(stop_frame, self.n_frames)
        return [e for e in self.planner.events_between(start_frame, stop_frame) if e.kind in kinds and self._fits(e)]

    @property
    def ground_truth(self) -> list[Event]:
        """The whole schedule if ``duration_s`` is set, else events with a rendered onset."""
        if self.n_frames is not None:
            return self.events_between(0, self.n_frames)
        return [e for e in self.events_between(0, self.frames_rendered) if e.onset_frame < self.frames_rendered]

    def write_ground_truth_json(self, path: str | os.PathLike[str]) -> None:
        write_json(self.ground_truth, path)

    def write_ground_truth_csv(self, path: str | os.PathLike[str]) -> None:
        write_csv(self.ground_truth, path)

    def frame_truth(self, start_frame: int, stop_frame: int) -> FrameTruth:
        """Per-frame labels, intensity, planned pose and gain for frames [start_frame, stop_frame)."""
        if start_frame < 0 or stop_frame < start_frame:
            raise ValueError(f"frame_truth needs 0 <= start_frame <= stop_frame, got {start_frame}, {stop_frame}")
        n = self.planner.block_frames
        parts: dict[str, list[np.ndarray]] = {"label": [], "intensity": [], "pose": [], "gain": []}
        for b in range(start_frame // n, (max(stop_frame, start_frame + 1) - 1) // n + 1):
            blk = self.planner.block(b)
            sl = slice(max(start_frame - blk.first_frame, 0), min(stop_frame - blk.first_frame, n))
            label, intensity = blk.label[sl].copy(), blk.intensity[sl].copy()
            for p in blk.items:  # items cut by the end of the stream were not rendered
                if not self._fits(p.event):
                    lo, hi = p.event.onset_frame - blk.first_frame - sl.start, p.event.offset_frame - blk.first_frame - sl.start + 1
                    label[max(lo, 0):max(hi, 0)] = 0
                    intensity[max(lo, 0):max(hi, 0)] = 0
            for key, arr in (("label", label), ("intensity", intensity), ("pose", blk.pose[sl]), ("gain", blk.gain[sl])):
                parts[key].append(arr)
        cat = {k: np.concatenate(v)[: stop_frame - start_frame] for k, v in parts.items()}
        return FrameTruth(start=start_frame, **cat)

    def event_region(self, event: Event) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``: the patch an expression or blink deforms, in the neutral
        pose (the head's pose shifts it by a few pixels); a head turn's is the head box."""
        if event.kind == HEAD_TURN:
            return self.face.head_box
        box = self._regions.get(event.aus)
        if box is None:
            f = au_field(event.aus, self.face)
            box = self._regions[event.aus] = (f.x0, f.y0, f.x0 + f.size[0], f.y0 + f.size[1])
        return box

    def _fits(self, event: Event) -> bool:
        return self.n_frames is None or event.offset_frame < self.n_frames

    # -- rendering ---------------------------------------------------------------------------

    def _open(self) -> None:
        self.face  # render the subject now rather than on the first frame
        if self._noise is None:
            w, h = self.resolution
            rng = np.random.default_rng([self.seed, _NOISE_STREAM, w, h])
            shape = (NOISE_BANKS, h + NOISE_MARGIN, w + NOISE_MARGIN)
            sigma = self.scene.noise_sigma
            self._noise = np.clip(np.rint(128.0 + sigma * rng.standard_normal(shape, np.float32)), 0, 255).astype(np.uint8)

    def _frames(self) -> Iterator[Frame]:
        renderer = _Renderer(self)
        pacer = Pacer(self.fps) if self.pace else None
        fps, n_total = self.fps, self.n_frames
        fid = 0
        while n_total is None or fid < n_total:
            pixels = renderer.render(fid)
            if pacer is not None:
                pacer.wait(fid)
            host_ns = now_ns()
            if fid >= self.frames_rendered:
                self.frames_rendered = fid + 1
            yield Frame(pixels, fid, int(round(fid * 1e9 / fps)), host_ns)
            fid += 1


class _Renderer:
    """The per-frame state of one pass over the stream (see the module docstring)."""

    def __init__(self, cam: SyntheticCamera) -> None:
        face = cam.face
        self.cam, self.face = cam, face
        self.noise = cam._noise if cam.scene.noise_sigma > 0 else None
        self.flicker = cam.scene.flicker > 0
        self.step = cam.scene.pose_step_px
        self.neutral = face.image
        self.clean = face.image.copy()
        self.work = face.image.copy()
        self.gray = np.empty_like(face.image)
        self.out = self.gray if cam.pixel_format == "mono8" else np.empty(cam.shape, np.uint8)
        # Outside the head box the weight is 0, so the pose map is the identity there.
        x0, y0, x1, y1 = face.head_box
        self.head = (slice(y0, y1), slice(x0, x1))
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        w = np.ascontiguousarray(face.weight[self.head])
        self.base_x, self.base_y = xs, ys
        self.w, self.wd = w, np.ascontiguousarray(face.depth[self.head])
        self.wrx, self.wry = w * (ys - face.cy), w * (xs - face.cx)
        self.map_x, self.map_y = np.empty_like(xs), np.empty_like(ys)
        self.pose = (0.0, 0.0, 0.0, 0.0)  # the pose rendered into clean: neutral
        self.dirty: list[tuple[slice, slice]] = []
        self.fields: dict[tuple[str, ...], tuple[Field, np.ndarray, float, float]] = {}
        self.block_index = -1
        self.blink_px = blink_travel(face)

    def _load_block(self, index: int) -> None:
        blk = self.cam.planner.block(index)
        self.block_index, self.first = index, blk.first_frame
        self.poses, self.gains, self.noise_idx = blk.pose.tolist(), blk.gain.tolist(), blk.noise.tolist()
        self.items = [p for p in blk.items if p.event.kind != HEAD_TURN and self.cam._fits(p.event)]
        self.item_ptr = 0

    def _warp_head(self, tx: float, ty: float, yaw: float, roll: float) -> None:
        mx, my = self.map_x, self.map_y
        cv2.scaleAdd(self.w, -tx, self.base_x, dst=mx)
        cv2.scaleAdd(self.wd, -yaw, mx, dst=mx)
        cv2.scaleAdd(self.wrx, roll, mx, dst=mx)
        cv2.scaleAdd(self.w, -ty, self.base_y, dst=my)
        cv2.scaleAdd(self.wry, -roll, my, dst=my)
        cv2.remap(self.neutral, mx, my, cv2.INTER_LINEAR, dst=self.clean[self.head], borderMode=cv2.BORDER_REPLICATE)
        self.pose = (tx, ty, yaw, roll)

    def _field(self, aus: tuple[str, ...]) -> tuple[Field, np.ndarray, float, float]:
        entry = self.fields.get(aus)
        if entry is None:
            f = au_field(aus, self.face)
            w, h = f.size
            xc, yc = f.x0 + w / 2.0, f.y0 + h / 2.0
            iy, ix = min(int(yc), self.face.weight.shape[0] - 1), min(int(xc), self.face.weight.shape[1] - 1)
            entry = (f, np.empty_like(f.grid), float(self.face.weight[iy, ix]), float(self.face.depth[iy, ix]))
            self.fields[aus] = entry
        return entry

    def _deform(self, aus: tuple[str, ...], amount: float) -> None:
        f, buf, wc, dc = self._field(aus)
        tx, ty, yaw, roll = self.pose
        w, h = f.size
        face = self.face
        cx, cy = f.x0 + w / 2.0, f.y0 + h / 2.0
        ox = int(round(wc * (tx + yaw * dc - roll * (cy - face.cy))))
        oy = int(round(wc * (ty + roll * (cx - face.cx))))
        H, W = self.clean.shape
        x0, y0 = min(max(f.x0 + ox, 0), W - w), min(max(f.y0 + oy, 0), H - h)
        region = (slice(y0, y0 + h), slice(x0, x0 + w))
        cv2.scaleAdd(f.delta, amount, f.grid, dst=buf)
        cv2.remap(self.clean[region], buf, None, cv2.INTER_LINEAR, dst=self.work[region], borderMode=cv2.BORDER_REPLICATE)
        self.dirty.append(region)

    def render(self, fid: int) -> np.ndarray:
        n = self.cam.planner.block_frames
        if fid // n != self.block_index:
            self._load_block(fid // n)
        k = fid - self.first
        for region in self.dirty:
            self.work[region] = self.clean[region]
        self.dirty.clear()
        tx, ty, yaw, roll = self.poses[k]
        ctx, cty, cyaw, croll = self.pose
        if max(abs(tx - ctx), abs(ty - cty), abs(yaw - cyaw), abs(roll - croll) * self.face.a) > self.step:
            self._warp_head(tx, ty, yaw, roll)
            self.work[self.head] = self.clean[self.head]
        items = self.items
        while self.item_ptr < len(items) and items[self.item_ptr].event.offset_frame < fid:
            self.item_ptr += 1
        if self.item_ptr < len(items):
            item = items[self.item_ptr]
            ev = item.event
            if ev.onset_frame <= fid:
                px = item.amplitude * (self.blink_px if ev.kind == "blink" else 1.0)
                self._deform(ev.aus, px * float(item.profile[fid - ev.onset_frame]))
        gain = self.gains[k] if self.flicker else 1.0
        if self.noise is not None:
            bank, oy, ox = self.noise_idx[k]
            H, W = self.gray.shape
            cv2.addWeighted(self.work, gain, self.noise[bank, oy:oy + H, ox:ox + W], 1.0, -128.0, dst=self.gray)
        elif gain != 1.0:
            cv2.convertScaleAbs(self.work, dst=self.gray, alpha=gain)
        else:
            np.copyto(self.gray, self.work)
        if self.out is not self.gray:
            cv2.cvtColor(self.gray, cv2.COLOR_GRAY2BGR, dst=self.out)
        return self.out
