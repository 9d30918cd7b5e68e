"""A webcam or V4L2 device through OpenCV; for bring-up and demos, not for 500 fps science
cameras, whose SDKs plug in as source plugins (see `mestream.plugins`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import cv2

from mestream.cameras.base import SourceError, frame_shape, now_ns
from mestream.cameras.video import CaptureSource

if TYPE_CHECKING:  # engine.config imports the plugin registry, which builds these sources
    from mestream.engine.config import SourceConfig

log = logging.getLogger("mestream")


class OpenCVCamera(CaptureSource):
    """Device ``device`` (``/dev/videoN`` on Linux), asked for ``fps`` and ``resolution``
    when given. Devices round what they are asked for: the source reports the rate and size
    the device granted, and logs the difference."""

    kind = "opencv"

    def __init__(
        self,
        device: int = 0,
        *,
        fps: float = 0.0,
        resolution: str | tuple[int, int] = "",
        pixel_format: str = "mono8",
        name: str = "cam0",
    ) -> None:
        super().__init__(fps=fps, resolution=resolution, pixel_format=pixel_format, pace=False, name=name)
        self.device = int(device)  # a live device paces itself

    @classmethod
    def from_config(cls, config: SourceConfig) -> OpenCVCamera:
        return cls(
            config.device,
            fps=config.fps,
            resolution=config.resolution,
            pixel_format=config.pixel_format,
            name=config.name,
            **dict(config.options),
        )

    def _clock(self) -> Callable[[int], int]:
        """The driver's buffer timestamp when the backend reports one, else arrival time."""
        cap = self._opened()[0]

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
            raise SourceError(
                f"source {self.name!r}: no camera at device {self.device} "
                f"(is it plugged in, and is /dev/video{self.device} readable?)"
            )
        if self._size is not None:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._size[1])
        if self.fps > 0:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        return cap

    def _open(self) -> None:
        asked_fps, asked_size = self.fps, self._size
        self.fps = 0.0  # read back what the device granted
        super()._open()
        first = self._opened()[1]
        granted = (first.shape[1], first.shape[0])
        if asked_size is not None and granted != asked_size:
            log.warning(
                "source %r: asked device %d for %dx%d, it delivers %dx%d",
                self.name,
                self.device,
                *asked_size,
                *granted,
            )
        if asked_fps > 0 and abs(self.fps - asked_fps) > 0.5:
            log.warning(
                "source %r: asked device %d for %g fps, it reports %g",
                self.name,
                self.device,
                asked_fps,
                self.fps,
            )
        self._size = None  # deliver what the device gives; never resample a live camera silently
        self._shape = frame_shape(*granted, self.pixel_format)
