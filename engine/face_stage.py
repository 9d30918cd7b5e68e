"""The face stage: frame ring → crop ring, one face crop for every frame.

Detection is slow (a Haar pass costs about as much as 8 frames at 500 fps), so it runs on a
schedule and every frame in between is cut with the current box. The schedule counts frames,
not seconds: an unpaced replay then detects on the same frames however fast it runs, and
its crops (and so its results) are reproducible.

The crop box moves rarely on purpose. Detections are smoothed, and the crops follow the
smoothed box only once it has drifted past a deadband. A box that followed each detection
would jitter by a pixel or two at every re-detection, which is more than a micro-expression
moves.
"""

from __future__ import annotations

import math
import time
from typing import Any, overload

import cv2
import numpy as np

from mestream.engine.config import ConfigError, FaceConfig
from mestream.engine.crops import CropRing
from mestream.engine.events import health
from mestream.engine.face import Box, Detector, make_detector
from mestream.engine.stages import RunContext, Stage


class BoxTracker:
    """Smooths detections into the crop box, moving that box only past a deadband.

    Args:
        scale: the box's side over the detection's larger side (as `face.square_box`).
        smoothing: weight of a new detection in the smoothed (cx, cy, side); 1 jumps to it.
        deadband: the crop box switches to the smoothed box once the centre or the side
            differs from the crop box's by more than this fraction of the crop box's side.

    The first detection sets the crop box at once, and that placement is not counted in
    `moves`. With ``smoothing=1`` a single detection gives exactly `face.square_box`.
    """

    def __init__(self, scale: float = 1.2, smoothing: float = 0.5, deadband: float = 0.05) -> None:
        self.scale, self.smoothing, self.deadband = scale, smoothing, deadband
        self.box: Box | None = None
        self.moves = 0
        self._smooth: tuple[float, float, float] | None = None
        self._shown = (0.0, 0.0, 0.0)  # (cx, cy, side) the crop box was built from

    @overload
    def update(self, detection: tuple[int, int, int, int]) -> Box: ...
    @overload
    def update(self, detection: None) -> Box | None: ...

    def update(self, detection: tuple[int, int, int, int] | None) -> Box | None:
        """Fold in one detection (None: no face, nothing changes); returns the crop box."""
        if detection is None:
            return self.box
        x, y, w, h = detection
        new = (x + w / 2.0, y + h / 2.0, max(w, h) * self.scale)
        if self._smooth is None:
            smooth = new
        else:
            a = self.smoothing
            (s0, s1, s2), (n0, n1, n2) = self._smooth, new
            smooth = (s0 + a * (n0 - s0), s1 + a * (n1 - s1), s2 + a * (n2 - s2))
        self._smooth = cx, cy, side = smooth
        if self.box is None:
            self._show(smooth)
        else:
            sx, sy, sside = self._shown
            if max(math.hypot(cx - sx, cy - sy), abs(side - sside)) > self.deadband * sside:
                self._show(smooth)
                self.moves += 1
        return self.box

    def reset(self) -> None:
        """Forget the smoothing history but keep the crop box: after a loss, the face may come
        back elsewhere, and averaging with where it was would delay the box by several detections."""
        self._smooth = None

    def _show(self, smooth: tuple[float, float, float]) -> None:
        cx, cy, side = smooth
        n = int(round(side))
        x0, y0 = int(round(cx - n / 2.0)), int(round(cy - n / 2.0))
        self.box = Box(x0, y0, x0 + n, y0 + n)
        self._shown = smooth


class FaceStage(Stage):
    """Frame ring → crop ring: detects on a frame schedule and crops every frame.

    Args:
        ctx: the camera's run context; this stage reads ``ctx.ring`` as reader ``face``.
        crops: where the crops go; their size is ``crops.size``.
        config: detector, schedule, smoothing and loss settings (`FaceConfig`).
        wait_when_full: wait for the crop ring's slowest reader instead of overwriting
            (replays, where a lost crop would change the results).
        detector: overrides the one ``config`` names (tests, plugins).

    Schedule: the first frame is searched. After that, the stage searches every
    ``round(redetect_s·fps)`` frames while the last detection succeeded, and every
    ``round(retry_s·fps)`` frames after a miss. A face that just vanished is then declared
    lost after ``lost_after`` quick retries, not after ``lost_after`` seconds. Frames before
    the first face are counted (``drops()["no_face"]``), not cropped. After a miss, the last
    box keeps cutting crops.
    """

    WINDOW = 1024  # timings kept for the per-interval medians

    ctx: RunContext

    def __init__(
        self,
        ctx: RunContext,
        crops: CropRing,
        config: FaceConfig,
        wait_when_full: bool,
        detector: Detector | None = None,
    ) -> None:
        super().__init__("face", ctx)
        shape = ctx.ring.shape
        if ctx.ring.dtype != np.uint8 or not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)):
            raise ValueError(
                f"face stage: frames must be mono8 (H, W) or bgr8 (H, W, 3) uint8, "
                f"got {shape} {ctx.ring.dtype}"
            )
        if config.detector == "fixed":
            x, y, w, h = config.roi
            if x >= shape[1] or y >= shape[0] or x + w <= 0 or y + h <= 0:
                raise ConfigError(
                    f"face.roi: {list(config.roi)} lies outside the {shape[1]}x{shape[0]} frames "
                    f"of camera {ctx.camera!r}"
                )
        self.crops = crops
        self.config = config
        self.wait_when_full = wait_when_full
        self.detector = make_detector(config) if detector is None else detector
        self.tracker = BoxTracker(config.scale, config.smoothing, config.deadband)
        self.cursor = ctx.ring.register_reader("face")
        self._frame = np.empty(shape, np.uint8)
        self._gray = self._frame if len(shape) == 2 else np.empty(shape[:2], np.uint8)
        self._every_found = max(1, round(config.redetect_s * ctx.fps))
        self._every_missing = max(1, round(config.retry_s * ctx.fps))
        self._detect_ns = np.zeros(self.WINDOW, np.int64)
        self._crop_ns = np.zeros(self.WINDOW, np.int64)
        self.detections = 0
        self.frames = 0
        self.no_face = 0
        self._crops_done = 0
        self._reported = (0, 0)
        self._found = False
        self._misses = 0
        self._lost = False
        self._found_frame = 0  # `frames` at the last successful detection

    @property
    def found(self) -> bool:
        """True while a face is tracked: found, and not declared lost since."""
        return self._found and not self._lost

    def loop(self) -> None:
        try:
            self._run()
        finally:
            self.crops.finish()  # readers drain what was written, then see the end

    def _run(self) -> None:
        ring, cursor, stop = self.ctx.ring, self.cursor, self.ctx.stop
        frame_buf, gray, bgr = self._frame, self._gray, self._frame is not self._gray
        crops, crop_room = self.crops, self.crops.wait_for_room
        wait, crop_ns, window = self.wait_when_full, self._crop_ns, self.WINDOW
        countdown = 0
        clock = time.perf_counter_ns
        while not stop.is_set():
            frame = cursor.next(timeout=0.1, out=frame_buf)  # sleeps until the next frame, as `LatencyTap`
            if frame is None:
                if ring.finished and cursor.lag == 0:
                    return
                continue
            self.frames += 1
            if bgr:
                cv2.cvtColor(frame_buf, cv2.COLOR_BGR2GRAY, dst=gray)
            if countdown == 0:
                countdown = self._detect(gray, frame.frame_id)
            countdown -= 1
            box = self.tracker.box
            if box is None:
                self.no_face += 1
                continue
            if wait:
                crop_room(stop)
                if stop.is_set():
                    return
            start = clock()
            crops.write(
                gray, box, frame.frame_id, frame.device_ns, frame.host_ns, frame.wall_ns, source_seq=frame.seq
            )
            crop_ns[self._crops_done % window] = clock() - start
            self._crops_done += 1

    def _detect(self, gray: np.ndarray, frame_id: int) -> int:
        """One scheduled detection and the health events it causes; returns frames to the next."""
        start = time.perf_counter_ns()
        face = self.detector(gray)
        self._detect_ns[self.detections % self.WINDOW] = time.perf_counter_ns() - start
        self.detections += 1
        if face is None:
            self._misses += 1
            if not self._lost and self._misses >= self.config.lost_after:
                self._lost = True
                self.tracker.reset()
                if self._found:
                    since = self.frames - self._found_frame
                    self._health(
                        "face_lost",
                        f"face lost: no face in {self._misses} detections",
                        {"frame_id": frame_id, "frames_since_found": since},
                    )
                else:  # never seen: say so once, so a missing or misframed subject is not a silent counter
                    self._health(
                        "face_lost",
                        f"no face found in the first {self.frames} frames "
                        f"({self._misses} detections); frames are not analysed until one is",
                        {"frame_id": frame_id, "frames_since_found": None},
                    )
            return self._every_missing
        box = self.tracker.update(face)
        if not self._found or self._lost:
            self._health(
                "face_found",
                f"face found at frame {frame_id}",
                {"frame_id": frame_id, "box": list(box), "detection": list(face)},
            )
        self._found, self._lost, self._misses, self._found_frame = True, False, 0, self.frames
        return self._every_found

    def _health(self, state: str, message: str, detail: dict[str, Any]) -> None:
        self.ctx.bus.emit(health(self.ctx.camera, state, message, detail))

    def figures(self) -> dict[str, float]:
        detected, cropped = self.detections, self._crops_done
        last_detected, last_cropped = self._reported
        self._reported = (detected, cropped)
        out: dict[str, float] = {"face.box_moves": self.tracker.moves, "face.detections": detected}
        ms = _recent_median(self._detect_ns, detected, last_detected)
        if ms is not None:
            out["face.detect_ms_p50"] = round(ms / 1e6, 3)
        us = _recent_median(self._crop_ns, cropped, last_cropped)
        if us is not None:
            out["face.crop_us_p50"] = round(us / 1e3, 2)
        return out

    def drops(self) -> dict[str, int]:
        return {"no_face": self.no_face}


def _recent_median(values: np.ndarray, count: int, reported: int) -> float | None:
    """Median of the values written to the circular ``values`` since ``reported`` of ``count``."""
    new = min(count - reported, len(values))
    if new <= 0:
        return None
    end = count % len(values)
    return float(np.median(np.take(values, np.arange(end - new, end), mode="wrap")))
