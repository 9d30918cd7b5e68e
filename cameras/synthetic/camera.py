"""The synthetic micro-expression camera: renders a face video and knows its ground truth.

Rendering model (per frame only what moves is touched, so 640x480 runs at thousands of fps):

1. At ``open()`` the subject is rendered once, neutral (`render_face`), together with a
   head weight map and a depth map; the displacement field of every AU combination the
   scene can draw is built, and a bank of sensor-noise images is drawn. Nothing is built
   later, so no frame pays for a first use.
2. Head pose (slow drift plus scheduled head turns) is a backward map over the head's
   bounding box: translation and roll weighted by the head map, yaw as a shift
   proportional to depth (the nose moves, the outline does not). The head is re-warped
   into the ``clean`` frame only when the pose moved by ``pose_step_px``.
3. An active expression or blink is a displacement field over one patch (`aus.au_field`),
   scaled by the event's amplitude and intensity profile and applied with ``cv2.remap`` to
   that patch of the posed ``clean`` frame. The patch follows the head: it is placed at
   the whole-pixel part of the head's local shift and the field is resampled at the
   fractional part, so the field stays fixed to the skin as the head drifts.
4. Lighting and sensor: the frame is multiplied by the flicker gain and a noise image is
   added. Each frame's noise is the sum of two bank images read at independent random
   offsets with random signs; even and odd frames use disjoint banks, so no two
   consecutive frames share noise, and a frame's noise is never a shifted copy of
   another's.
5. Per-frame numbers (pose, gain, noise offsets) come from the planner in chunks of
   `CHUNK_FRAMES`. The next chunk, and the next block's schedule when the chunk reaches
   into it, are prepared a step at a time on a few frames of the current chunk, so no
   frame pays for a whole plan (the first chunk is prepared at ``open()``).

Everything random comes from generators seeded by (seed, block) or (subject), or a hash of
(seed, frame), so the same arguments give bit-identical frames and ground truth.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from mestream.cameras.base import (
    PIXEL_FORMATS,
    Frame,
    Pacer,
    SourceBase,
    SourceError,
    frame_shape,
    now_ns,
    parse_resolution,
)
from mestream.cameras.synthetic.aus import BLINK_AUS, Field, au_field, blink_travel, combinations
from mestream.cameras.synthetic.schedule import (
    CHUNK_FRAMES,
    GROUND_TRUTH_KINDS,
    HEAD_TURN,
    NOISE_BANKS,
    NOISE_MARGIN,
    REFERENCE_FACE_PX,
    Event,
    Planner,
    SceneConfig,
    Track,
)
from mestream.cameras.synthetic.subject import FaceModel, Subject, render_face
from mestream.cameras.synthetic.truth import FrameTruth, write_csv, write_json

if TYPE_CHECKING:  # engine.config imports the plugin registry, which builds these sources
    from mestream.engine.config import SourceConfig

MIN_FPS, MAX_FPS = (
    25.0,
    4000.0,
)  # past any ME camera's rate: `mestream bench` searches the engine's capacity with it
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

    def __init__(
        self,
        *,
        fps: float = 500.0,
        resolution: Sequence[int] | str = (640, 480),
        seed: int = 0,
        subject: int | Subject | None = None,
        duration_s: float | None = None,
        pace: bool = True,
        name: str = "synthetic",
        pixel_format: str = "mono8",
        scene: SceneConfig | None = None,
    ) -> None:
        super().__init__()
        if (
            isinstance(fps, bool)
            or not isinstance(fps, (int, float))
            or not math.isfinite(fps)
            or not MIN_FPS <= fps <= MAX_FPS
        ):
            raise ValueError(
                f"synthetic camera: fps must be a number within {MIN_FPS:g}-{MAX_FPS:g} "
                f"(designed for {DESIGN_FPS[0]:g}-{DESIGN_FPS[1]:g}), got {fps!r}"
            )
        width, height = parse_resolution(resolution)
        if not (160 <= width <= 4096 and 120 <= height <= 4096 and 0.9 <= width / height <= 2.5):
            raise ValueError(
                f"synthetic camera: resolution must be 160x120 to 4096x4096 with width/height "
                f"within 0.9-2.5, got {width}x{height}"
            )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"synthetic camera: seed must be a non-negative int, got {seed!r}")
        if subject is None:
            subject = Subject.from_seed(int(seed))
        elif not isinstance(subject, Subject):
            subject = Subject.from_seed(subject)  # validates the number
        if duration_s is not None and (
            isinstance(duration_s, bool)
            or not isinstance(duration_s, (int, float))
            or not math.isfinite(duration_s)
            or duration_s <= 0
        ):
            raise ValueError(
                "synthetic camera: duration_s must be a positive number of seconds or None, "
                f"got {duration_s!r}"
            )
        if pixel_format not in PIXEL_FORMATS:
            raise ValueError(
                f"synthetic camera: pixel_format must be one of {sorted(PIXEL_FORMATS)}, got {pixel_format!r}"
            )
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
        self.planner = Planner(
            seed=self.seed, fps=self.fps, scene=scene, camera=name, scale=self.scale, n_frames=self.n_frames
        )
        self.frames_rendered = 0
        self._face: FaceModel | None = None
        self._fields: dict[tuple[str, ...], Field] | None = None
        self._noise: np.ndarray | None = None
        self._head: _HeadMaps | None = None
        self._patches: dict[tuple[str, ...], _Patch] = {}
        self._first_chunk: _Columns | None = None

    @classmethod
    def from_config(cls, config: SourceConfig) -> SyntheticCamera:
        """Build from a `SourceConfig`: fps 0 and an empty resolution mean 500 and 640x480;
        ``options`` may hold ``subject``, ``duration_s`` and any `SceneConfig` field."""
        options = dict(getattr(config, "options", {}) or {})
        subject = options.pop("subject", None)
        duration_s = options.pop("duration_s", None)
        scene = SceneConfig.from_dict(options) if options else None
        return cls(
            fps=float(config.fps) or 500.0,
            resolution=config.resolution or (640, 480),
            seed=config.seed,
            subject=subject,
            duration_s=duration_s,
            pace=config.pace,
            name=config.name,
            pixel_format=config.pixel_format,
            scene=scene,
        )

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

    def events_between(
        self, start_frame: int, stop_frame: int, kinds: Sequence[str] = GROUND_TRUTH_KINDS
    ) -> list[Event]:
        """Events of ``kinds`` whose [onset, offset] overlaps frames [start_frame, stop_frame).

        Works for frames not rendered yet (the schedule is planned ahead); pass
        ``kinds=("head_turn",)`` for the head-turn distractors.
        """
        if start_frame < 0 or stop_frame < start_frame:
            raise ValueError(
                f"events_between needs 0 <= start_frame <= stop_frame, got {start_frame}, {stop_frame}"
            )
        return [e for e in self.planner.events_between(start_frame, stop_frame) if e.kind in kinds]

    @property
    def ground_truth(self) -> list[Event]:
        """The whole schedule if ``duration_s`` is set, else events with a rendered onset."""
        return self.events_between(0, self.frames_rendered if self.n_frames is None else self.n_frames)

    def write_ground_truth_json(self, path: str | os.PathLike[str]) -> None:
        write_json(self.ground_truth, path)

    def write_ground_truth_csv(self, path: str | os.PathLike[str]) -> None:
        write_csv(self.ground_truth, path)

    def frame_truth(self, start_frame: int, stop_frame: int) -> FrameTruth:
        """Per-frame labels, intensity, planned pose and gain for frames [start_frame, stop_frame)."""
        if start_frame < 0 or stop_frame < start_frame:
            raise ValueError(
                f"frame_truth needs 0 <= start_frame <= stop_frame, got {start_frame}, {stop_frame}"
            )
        t = self.planner.track(start_frame, stop_frame)
        return FrameTruth(start=start_frame, label=t.label, intensity=t.intensity, pose=t.pose, gain=t.gain)

    def event_region(self, event: Event) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``: the patch an expression or blink deforms, in the neutral
        pose (the head's pose shifts it by a few pixels); a head turn's is the head box."""
        if event.kind == HEAD_TURN:
            return self.face.head_box
        f = self._field(event.aus)
        return (f.x0, f.y0, f.x0 + f.size[0], f.y0 + f.size[1])

    def _all_fields(self) -> dict[tuple[str, ...], Field]:
        """The unit fields built so far; every combination the scene draws is built on first use."""
        if self._fields is None:
            self._fields = {c: au_field(c, self.face) for c in combinations(self.scene.emotions)}
        return self._fields

    def _field(self, aus: tuple[str, ...]) -> Field:
        """The unit field of ``aus``."""
        fields = self._all_fields()
        f = fields.get(aus)
        if f is None:  # not one the scene draws (an event from elsewhere): build it now
            f = fields[aus] = au_field(aus, self.face)
        return f

    # -- rendering ---------------------------------------------------------------------------

    def _open(self) -> None:
        self._field(BLINK_AUS)  # the subject and every field now rather than on some frame
        if self._head is None:
            self._head = _HeadMaps(self.face)
            self._patches = {aus: _Patch(f, self.face) for aus, f in self._all_fields().items()}
        if self._noise is None:
            w, h = self.resolution
            rng = np.random.default_rng([self.seed, _NOISE_STREAM, w, h])
            shape = (NOISE_BANKS, h + NOISE_MARGIN, w + NOISE_MARGIN)
            sigma = self.scene.noise_sigma / math.sqrt(2.0)  # a frame adds two of them
            self._noise = np.clip(
                np.rint(128.0 + sigma * rng.standard_normal(shape, np.float32)), 0, 255
            ).astype(np.uint8)
        if self._first_chunk is None:  # so that frame 0 costs no more than any other
            self._first_chunk = _columns(self.planner, 0, self.scene.noise_sigma > 0)

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


_Columns = tuple[int, list[list[Any]], list[list[int]] | None]


def _columns(planner: Planner, index: int, noise: bool, track: Track | None = None) -> _Columns:
    """Chunk ``index``'s per-frame numbers as plain lists, one per column: cheap to index, and
    no per-frame containers for the garbage collector to walk. Returns ``(index, [tx, ty,
    yaw, roll, gain], noise columns or None)``."""
    a = index * CHUNK_FRAMES
    if track is None:
        track = planner.track(a, a + CHUNK_FRAMES)
    noise_cols = planner.noise(a, a + CHUNK_FRAMES).T.tolist() if noise else None
    return index, track.pose.T.tolist() + [track.gain.tolist()], noise_cols


class _HeadMaps:
    """The static inputs of the head-pose warp over the head box (built once, at open)."""

    def __init__(self, face: FaceModel) -> None:
        x0, y0, x1, y1 = face.head_box
        self.box = (slice(y0, y1), slice(x0, x1))
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        w = np.ascontiguousarray(face.weight[self.box])
        self.base_x, self.base_y = xs, ys
        self.w, self.wd = w, np.ascontiguousarray(face.depth[self.box])
        self.wrx, self.wry = w * (ys - face.cy), w * (xs - face.cx)


class _Patch:
    """One AU field as the renderer uses it: the field, where it sits on the face (head
    weight and depth at its centre) and its buffers."""

    __slots__ = ("field", "cx", "cy", "wc", "dc", "map", "shifted", "shift")

    def __init__(self, field: Field, face: FaceModel) -> None:
        w, h = field.size
        self.field = field
        self.cx, self.cy = field.x0 + w / 2.0, field.y0 + h / 2.0
        iy, ix = min(int(self.cy), face.weight.shape[0] - 1), min(int(self.cx), face.weight.shape[1] - 1)
        self.wc, self.dc = float(face.weight[iy, ix]), float(face.depth[iy, ix])
        self.map = np.empty_like(field.grid)
        self.shifted = np.empty_like(field.delta)
        self.shift = (0.0, 0.0)  # the fractional offset ``shifted`` was resampled at; (0, 0): unused

    def delta(self, fx: float, fy: float) -> np.ndarray:
        """The field resampled at a fractional offset: ``delta(j - (fx, fy))``."""
        if fx == 0.0 and fy == 0.0:
            return self.field.delta
        if (fx, fy) != self.shift:
            w, h = self.field.size
            m = np.array([[1.0, 0.0, fx], [0.0, 1.0, fy]])
            cv2.warpAffine(
                self.field.delta,
                m,
                (w, h),
                dst=self.shifted,
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
            self.shift = (fx, fy)
        return self.shifted


class _Renderer:
    """The per-frame state of one pass over the stream (see the module docstring)."""

    def __init__(self, cam: SyntheticCamera) -> None:
        face = cam.face
        self.cam, self.face, self.planner = cam, face, cam.planner
        if cam._head is None:  # SourceBase iterates only an open camera, and _open builds the maps
            raise SourceError(f"source {cam.name!r}: rendering before open()")
        self.maps = cam._head
        self.noise = cam._noise if cam.scene.noise_sigma > 0 else None
        self.flicker = cam.scene.flicker > 0
        self.step = cam.scene.pose_step_px
        self.neutral = face.image
        self.clean = face.image.copy()
        self.work = face.image.copy()
        self.gray = np.empty_like(face.image)
        self.noise_sum = np.empty_like(face.image)
        self.out = self.gray if cam.pixel_format == "mono8" else np.empty(cam.shape, np.uint8)
        self.map_x, self.map_y = np.empty_like(self.maps.base_x), np.empty_like(self.maps.base_y)
        self.patches = cam._patches  # shared: a patch's buffers are filled and used within one call
        self.pose = (0.0, 0.0, 0.0, 0.0)  # the pose rendered into clean: neutral
        self.dirty: list[tuple[slice, slice]] = []
        self.block_index = self.chunk_index = -1
        self.ready: _Columns | None = cam._first_chunk
        self.ahead: Iterator[None] = iter(())
        self.blink_px = blink_travel(face)

    def _load_block(self, index: int) -> None:
        blk = self.planner.block(index)
        self.block_index = index
        self.items = [p for p in blk.items if p.event.kind != HEAD_TURN]
        self.item_ptr = 0

    def _load_chunk(self, index: int) -> None:
        ready = self.ready
        if ready is None or ready[0] != index:  # not prepared (the stream was entered elsewhere)
            ready = _columns(self.planner, index, self.noise is not None)
        _, (self.tx, self.ty, self.yaw, self.roll, self.gains), self.noise_idx = ready
        self.chunk_index, self.chunk_first = index, index * CHUNK_FRAMES
        self.ready = None
        self.ahead = self._prepare(index + 1)

    def _prepare(self, index: int) -> Iterator[None]:
        """Get chunk ``index`` ready in steps, one per call, spread over the current chunk's
        frames, so that no frame pays for a block plan and a chunk at once."""
        a = index * CHUNK_FRAMES
        for b in range(
            a // self.planner.block_frames, (a + CHUNK_FRAMES - 1) // self.planner.block_frames + 1
        ):
            self.planner.block(b)  # plan the next block ahead
        yield
        track = self.planner.track(a, a + CHUNK_FRAMES)
        yield
        self.ready = _columns(self.planner, index, self.noise is not None, track)
        yield

    def _warp_head(self, tx: float, ty: float, yaw: float, roll: float) -> None:
        m, mx, my = self.maps, self.map_x, self.map_y
        cv2.scaleAdd(m.w, -tx, m.base_x, dst=mx)
        cv2.scaleAdd(m.wd, -yaw, mx, dst=mx)
        cv2.scaleAdd(m.wrx, roll, mx, dst=mx)
        cv2.scaleAdd(m.w, -ty, m.base_y, dst=my)
        cv2.scaleAdd(m.wry, -roll, my, dst=my)
        cv2.remap(
            self.neutral, mx, my, cv2.INTER_LINEAR, dst=self.clean[m.box], borderMode=cv2.BORDER_REPLICATE
        )
        self.pose = (tx, ty, yaw, roll)

    def _deform(self, aus: tuple[str, ...], amount: float) -> None:
        p = self.patches.get(aus)
        if p is None:
            p = self.patches[aus] = _Patch(self.cam._field(aus), self.face)
        f, face = p.field, self.face
        tx, ty, yaw, roll = self.pose
        # Where the head's warp moved the patch centre (see _warp_head): whole pixels move
        # the patch, the fraction resamples the field, so the field stays on the skin.
        ox = p.wc * tx + p.dc * yaw - p.wc * roll * (p.cy - face.cy)
        oy = p.wc * ty + p.wc * roll * (p.cx - face.cx)
        ix, iy = math.floor(ox), math.floor(oy)
        w, h = f.size
        H, W = self.clean.shape
        x0, y0 = min(max(f.x0 + ix, 0), W - w), min(max(f.y0 + iy, 0), H - h)
        region = (slice(y0, y0 + h), slice(x0, x0 + w))
        cv2.scaleAdd(p.delta(ox - ix, oy - iy), amount, f.grid, dst=p.map)
        cv2.remap(  # type: ignore[call-overload]  # the stub lacks map2=None (map1 holds x and y)
            self.clean[region],
            p.map,
            None,
            cv2.INTER_LINEAR,
            dst=self.work[region],
            borderMode=cv2.BORDER_REPLICATE,
        )
        self.dirty.append(region)

    def render(self, fid: int) -> np.ndarray:
        if fid // CHUNK_FRAMES != self.chunk_index:
            self._load_chunk(fid // CHUNK_FRAMES)
        if fid // self.planner.block_frames != self.block_index:
            self._load_block(fid // self.planner.block_frames)
        k = fid - self.chunk_first
        if k % 64 == 32:
            next(self.ahead, None)
        for region in self.dirty:
            self.work[region] = self.clean[region]
        self.dirty.clear()
        tx, ty, yaw, roll = self.tx[k], self.ty[k], self.yaw[k], self.roll[k]
        ctx, cty, cyaw, croll = self.pose
        if max(abs(tx - ctx), abs(ty - cty), abs(yaw - cyaw), abs(roll - croll) * self.face.a) > self.step:
            self._warp_head(tx, ty, yaw, roll)
            self.work[self.maps.box] = self.clean[self.maps.box]
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
        if self.noise is not None and self.noise_idx is not None:  # both set, or neither (_columns)
            b1, r1, c1, b2, r2, c2, signs = (col[k] for col in self.noise_idx)
            H, W = self.gray.shape
            s2 = -1.0 if signs & 1 else 1.0  # 128 + e1 + s2 * e2: exact integers, clipped only past ~3 sigma
            cv2.addWeighted(
                self.noise[b1, r1 : r1 + H, c1 : c1 + W],
                1.0,
                self.noise[b2, r2 : r2 + H, c2 : c2 + W],
                s2,
                -128.0 * s2,
                dst=self.noise_sum,
            )
            s = -1.0 if signs & 2 else 1.0
            cv2.addWeighted(self.work, gain, self.noise_sum, s, -128.0 * s, dst=self.gray)
        elif gain != 1.0:
            cv2.convertScaleAbs(self.work, dst=self.gray, alpha=gain)
        else:
            np.copyto(self.gray, self.work)
        if self.out is not self.gray:
            cv2.cvtColor(self.gray, cv2.COLOR_GRAY2BGR, dst=self.out)
        return self.out
