"""Replay any file OpenCV can open, as if it were a live camera."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mestream.cameras.base import Frame, SourceError
from mestream.cameras.replay import ReplaySource, timed_frames


class CaptureSource(ReplaySource):
    """Shared loop for sources read through `cv2.VideoCapture` (files and devices)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cap: cv2.VideoCapture | None = None
        self._first: np.ndarray | None = None

    def _describe(self) -> str:
        raise NotImplementedError

    def _capture(self) -> cv2.VideoCapture:
        raise NotImplementedError

    def _open(self) -> None:
        cap = self._capture()
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"source {self.name!r}: cannot open {self._describe()}")
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise SourceError(
                f"source {self.name!r}: {self._describe()} opened but frame 0 could not be read"
            )
        if self.fps <= 0:
            self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if self.fps <= 0:
            cap.release()
            raise SourceError(
                f"source {self.name!r}: {self._describe()} reports no frame rate; give one with --fps"
            )
        self._cap, self._first = cap, first
        self._shape = self._size_from(first)

    def _opened(self) -> tuple[cv2.VideoCapture, np.ndarray]:
        """The capture `_open` made and its frame 0; reading either before open() is an error
        naming the source rather than an AttributeError on None."""
        if self._cap is None or self._first is None:
            raise SourceError(f"source {self.name!r}: {self._describe()} is not open")
        return self._cap, self._first

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _after_last(self, index: int) -> None:
        """Called when read() fails at frame ``index``; files check for truncation here."""

    def _clock(self) -> Callable[[int], int] | None:
        """The capture clock, frame index → ns; None (a file) stamps frames on the nominal rate."""
        return None

    def _frames(self) -> Iterator[Frame]:
        return timed_frames(self._decoded(), self.fps, self.pace, self._clock())

    def _decoded(self) -> Iterator[np.ndarray]:
        cap, image = self._opened()
        out = np.empty(self.shape, np.uint8)
        index = 0
        while image is not None:
            yield self._convert(image, out)
            index += 1
            ok, image = cap.read()
            if not ok:
                self._after_last(index)
                return


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

    kind = "video"

    def __init__(
        self,
        path: str | Path,
        *,
        fps: float = 0.0,
        resolution: str | tuple[int, int] = "",
        pixel_format: str = "mono8",
        pace: bool = True,
        name: str = "cam0",
    ) -> None:
        super().__init__(fps=fps, resolution=resolution, pixel_format=pixel_format, pace=pace, name=name)
        self.path = Path(path)
        self._expected = 0

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
