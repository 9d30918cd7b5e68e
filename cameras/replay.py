"""What replays and OpenCV devices share: size, pixel-format conversion into one reused
buffer, and releasing frames on a clock like a camera."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import cv2
import numpy as np

from mestream.cameras.base import Frame, Pacer, SourceBase, SourceError, frame_shape, now_ns, parse_resolution

if TYPE_CHECKING:  # engine.config imports the plugin registry, which builds these sources
    from mestream.engine.config import SourceConfig

_TO_MONO = {1: None, 3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}
_TO_BGR = {1: cv2.COLOR_GRAY2BGR, 3: None, 4: cv2.COLOR_BGRA2BGR}


def convert_pixels(image: np.ndarray, pixel_format: str, out: np.ndarray) -> np.ndarray:
    """Convert an OpenCV image (gray, BGR or BGRA; 8 or 16 bit) into ``out``, the reused buffer.

    16-bit images are scaled by a fixed 1/257 (full scale to full scale), never by each
    frame's own maximum: a per-frame gain would flicker, and flow would read that as motion.
    An image of another size than ``out`` is returned converted but unplaced, so that the
    engine's shape check names the frame.
    """
    if image.dtype == np.uint16:
        image = cv2.convertScaleAbs(image, alpha=1.0 / 257.0)
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported pixel type {image.dtype}; expected 8- or 16-bit images")
    channels = 1 if image.ndim == 2 else image.shape[2]
    code = (_TO_MONO if pixel_format == "mono8" else _TO_BGR)[channels]
    if image.shape[:2] != out.shape[:2]:
        return image if code is None else cv2.cvtColor(image, code)
    if code is None:
        np.copyto(out, image.reshape(out.shape))
        return out
    return cv2.cvtColor(image, code, dst=out)


def timed_frames(
    images: Iterable[np.ndarray], fps: float, pace: bool, device_ns: Callable[[int], int] | None = None
) -> Iterator[Frame]:
    """Number, stamp and (when ``pace``) pace images as a camera would release them.

    ``device_ns(index)`` gives the capture clock; by default a replay's clock is its frame
    index on the nominal rate.
    """
    pacer = Pacer(fps) if pace else None
    period_ns = 1e9 / fps
    for index, pixels in enumerate(images):
        if pacer is not None:
            pacer.wait(index)
        stamp = device_ns(index) if device_ns is not None else int(index * period_ns)
        yield Frame(pixels, index, stamp, now_ns())


class ReplaySource(SourceBase):
    """Base of the video, folder and OpenCV-device sources.

    Subclasses set ``self._shape`` in ``_open`` (with `_size_from`) and convert each image
    with `_convert`.
    """

    kind = "replay"  # the source kind, for messages

    def __init__(
        self,
        *,
        fps: float = 0.0,
        resolution: str | tuple[int, int] = "",
        pixel_format: str = "mono8",
        pace: bool = True,
        name: str = "cam0",
    ) -> None:
        super().__init__()
        frame_shape(1, 1, pixel_format)  # validates the format name early
        self.name = name
        self.fps = float(fps)
        self.pixel_format = pixel_format
        self.pace = pace
        self._size = parse_resolution(resolution) if resolution else None
        self._shape: tuple[int, ...] | None = None

    @classmethod
    def from_config(cls, config: SourceConfig) -> ReplaySource:
        """Build a file or folder replay from a `SourceConfig`; ``options`` go to the constructor."""
        if not config.path:
            raise SourceError(f"source {config.name!r}: the {cls.kind} source needs a path (--path)")
        build: Callable[..., ReplaySource] = cls  # the file and folder subclasses take the path first
        return build(
            config.path,
            fps=config.fps,
            resolution=config.resolution,
            pixel_format=config.pixel_format,
            pace=config.pace,
            name=config.name,
            **dict(config.options),
        )

    @property
    def shape(self) -> tuple[int, ...]:
        if self._shape is None:
            raise SourceError(f"source {self.name!r}: the shape is known only after open()")
        return self._shape

    def _size_from(self, first: np.ndarray) -> tuple[int, ...]:
        """The frame shape: the asked-for resolution, else the first image's."""
        width, height = self._size or (first.shape[1], first.shape[0])
        return frame_shape(width, height, self.pixel_format)

    def _convert(self, image: np.ndarray, out: np.ndarray) -> np.ndarray:
        if self._size is not None and (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_LINEAR)
        try:
            return convert_pixels(image, self.pixel_format, out)
        except ValueError as exc:
            raise SourceError(f"source {self.name!r} ({self.kind}): {exc}") from None
