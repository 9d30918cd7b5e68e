"""Replay any file OpenCV can open, as if it were a live camera."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from mestream.cameras.base import Frame, SourceBase, SourceError, frame_shape, parse_resolution, timed_frames


class CaptureSource(SourceBase):
    """Shared loop for sources read through `cv2.VideoCapture` (files and devices).

    Frames are converted (and resized when a resolution is asked for) into one buffer that
    is reused for every frame; the ring copies it on write.
    """

    def __init__(self, *, fps: float = 0.0, resolution: str | tuple[int, int] = "",
                 pixel_format: str = "mono8", pace: bool = True, name: str = "cam0") -> None:
        super().__init__()
        frame_shape(1, 1, pixel_format)  # validates the format name early
        self.name = name
        self.fps = float(fps)
        self.pixel_format = pixel_format
        self.pace = pace
        self._size = parse_resolution(resolution) if resolution else None
        self._cap: cv2.VideoCapture | None = None
        self._first: np.ndarray | None = None
        self._shape: tuple[int, ...] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        if self._shape is None:
            raise SourceError(f"source {self.name!r}: the shape is known only after open()")
        return self._shape

    def _describe(self) -> str:
        raise NotImplementedError

    def _capture(self) -> cv2.VideoCapture:
        raise NotImplementedError

    def _default_fps(self, reported: float) -> float:
        return reported

    def _open(self) -> None:
        cap = self._capture()
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"source {self.name!r}: cannot open {self._describe()}")
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise SourceError(f"source {self.name!r}: {self._describe()} opened but frame 0 could not be read")
        if self.fps <= 0:
            self.fps = self._default_fps(float(cap.get(cv2.CAP_PROP_FPS) or 0.0))
        if self.fps <= 0:
            cap.release()
            raise SourceError(f"source {self.name!r}: {self._describe()} reports no frame rate; give one with --fps")
        self._cap, self._first = cap, first
        width, height = self._size or (first.shape[1], first.shape[0])
        self._shape = frame_shape(width, height, self.pixel_format)

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _convert(self, image: np.ndarray, out: np.ndarray) -> np.ndarray:
        if self._size is not None and (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_LINEAR)
        return convert_pixels(image, self.pixel_format, out)

    def _after_last(self, index: int) -> None:
        """Called when read() fails at frame ``index``; files check for truncation here."""

    def _clock(self) -> Callable[[int], int] | None:
        """The capture clock, frame index → ns; None (a file) stamps frames on the nominal rate."""
        return None

    def _frames(self) -> Iterator[Frame]:
        return timed_frames(self._decoded(), self.fps, self.pace, self._clock())

    def _decoded(self) -> Iterator[np.ndarray]:
        cap, image = self._cap, self._first
        out = np.empty(self.shape, np.uint8)
        index = 0
        while image is not None:
            yield self._convert(image, out)
            index += 1
            ok, image = cap.read()
            if not ok:
                self._after_last(index)
                return


def convert_pixels(image: np.ndarray, pixel_format: str, out: np.ndarray) -> np.ndarray:
    """Convert an OpenCV image (gray, BGR or BGRA) into ``out``, the source's reused buffer."""
    channels = 1 if image.ndim == 2 else image.shape[2]
    if pixel_format == "mono8":
        code = {1: None, 3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}[channels]
    else:
        code = {1: cv2.COLOR_GRAY2BGR, 3: None, 4: cv2.COLOR_BGRA2BGR}[channels]
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(float(image.max()), 1.0))
    if code is None:
        if image.shape != out.shape:
            return image  # ingest's shape check names the frame
        np.copyto(out, image.reshape(out.shape))
        return out
    if image.shape[:2] != out.shape[:2]:
        return cv2.cvtColor(image, code)
    return cv2.cvtColor(image, code, dst=out)


class VideoSource(CaptureSource):
    """A recorded session in any container and codec OpenCV reads.

    Args:
        path: the video file.
        fps: replay rate; 0 uses the file's rate (high-speed cameras often write a wrong
            one into the container, so labs usually give it).
        resolution: resize to ``WxH``; empty keeps the file's size.
        pixel_format: ``mono8`` or ``bgr8``.
        pace: release frames at ``fps`` like a live camera; off replays as fast as possible.
    """

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = Path(path)
        self._expected = 0

    @classmethod
    def from_config(cls, config: Any) -> "VideoSource":
        if not config.path:
            raise SourceError(f"source {config.name!r}: the video source needs a file (--path FILE)")
        return cls(config.path, fps=config.fps, resolution=config.resolution,
                   pixel_format=config.pixel_format, pace=config.pace, name=config.name, **dict(config.options))

    def _describe(self) -> str:
        return f"video file {self.path}"

    def _capture(self) -> cv2.VideoCapture:
        if not self.path.is_file():
            raise SourceError(f"source {self.name!r}: video file {self.path} does not exist")
        cap = cv2.VideoCapture(str(self.path))
        self._expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        return cap

    def _after_last(self, index: int) -> None:
        # Container frame counts can be off by a frame or two; a larger shortfall is a
        # truncated or corrupt file, which the user must hear about rather than see a short run.
        if self._expected and index < self._expected - 2:
            raise SourceError(
                f"source {self.name!r}: video file {self.path} could not decode frame {index} "
                f"(the file claims {self._expected} frames); it is truncated or corrupt"
            )
