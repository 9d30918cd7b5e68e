"""A webcam or V4L2 device through OpenCV; for bring-up and demos, not for 500 fps science
cameras, whose SDKs plug in as source plugins (see `mestream.plugins`)."""

from __future__ import annotations

from typing import Any, Callable

import cv2

from mestream.cameras.base import SourceError, now_ns
from mestream.cameras.video import CaptureSource


class OpenCVCamera(CaptureSource):
    """Device ``device`` (``/dev/videoN`` on Linux), asked for ``fps`` and ``resolution``
    when given; the device may round them, and the source reports what it got."""

    def __init__(self, device: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.device = int(device)
        self.pace = False  # a live device paces itself

    @classmethod
    def from_config(cls, config: Any) -> "OpenCVCamera":
        return cls(config.device, fps=config.fps, resolution=config.resolution,
                   pixel_format=config.pixel_format, name=config.name, **dict(config.options))

    def _clock(self) -> Callable[[int], int]:
        """The driver's buffer timestamp when the backend reports one, else arrival time."""
        cap = self._cap

        def device_ns(index: int) -> int:
            msec = cap.get(cv2.CAP_PROP_POS_MSEC)
            return int(msec * 1e6) if msec > 0 else now_ns()

        return device_ns

    def _describe(self) -> str:
        return f"camera device {self.device}"

    def _capture(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.device)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"source {self.name!r}: no camera at device {self.device} (is it plugged in, and is /dev/video{self.device} readable?)")
        if self._size is not None:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._size[1])
        if self.fps > 0:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        return cap
