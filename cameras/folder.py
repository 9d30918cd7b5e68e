"""Replay an image-sequence directory, the way CASME II, SAMM and CAS(ME)² ship their clips."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from mestream.cameras.base import Frame, SourceBase, SourceError, frame_shape, parse_resolution, timed_frames
from mestream.cameras.video import convert_pixels

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".pgm", ".ppm"}
DEFAULT_FOLDER_FPS = 200.0


def natural_key(path: Path) -> list[Any]:
    """Sort img2.jpg before img10.jpg, as the datasets number frames without zero padding."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def list_images(folder: Path) -> list[Path]:
    """The folder's image files in natural order."""
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=natural_key)


class FolderSource(SourceBase):
    """Frames from ``path``'s images in natural order, replayed at ``fps``.

    Args:
        path: the directory holding one clip's frames (e.g. CASME II's ``sub01/EP02_01f``).
        fps: replay rate; the datasets do not record it in the files (CASME II and SAMM: 200,
            CAS(ME)²: 30), so it defaults to 200.
        resolution: resize to ``WxH``; empty keeps the first image's size.
        pixel_format: ``mono8`` or ``bgr8``.
        pace: release at ``fps``; off replays as fast as the disk decodes.
    """

    def __init__(self, path: str | Path, *, fps: float = 0.0, resolution: str = "", pixel_format: str = "mono8",
                 pace: bool = True, name: str = "cam0") -> None:
        super().__init__()
        frame_shape(1, 1, pixel_format)
        self.path = Path(path)
        self.name = name
        self.fps = float(fps) or DEFAULT_FOLDER_FPS
        self.pixel_format = pixel_format
        self.pace = pace
        self._size = parse_resolution(resolution) if resolution else None
        self._files: list[Path] = []
        self._shape: tuple[int, ...] | None = None

    @classmethod
    def from_config(cls, config: Any) -> "FolderSource":
        if not config.path:
            raise SourceError(f"source {config.name!r}: the folder source needs a directory (--path DIR)")
        return cls(config.path, fps=config.fps, resolution=config.resolution, pixel_format=config.pixel_format,
                   pace=config.pace, name=config.name, **dict(config.options))

    @property
    def shape(self) -> tuple[int, ...]:
        if self._shape is None:
            raise SourceError(f"source {self.name!r}: the shape is known only after open()")
        return self._shape

    @property
    def files(self) -> list[Path]:
        """The frames in replay order; frame_id n is ``files[n]``."""
        return list(self._files)

    def _open(self) -> None:
        if not self.path.is_dir():
            raise SourceError(f"source {self.name!r}: image folder {self.path} does not exist or is not a directory")
        try:
            self._files = list_images(self.path)
        except OSError as exc:
            raise SourceError(f"source {self.name!r}: image folder {self.path} cannot be read: {exc}") from exc
        if not self._files:
            raise SourceError(f"source {self.name!r}: image folder {self.path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        first = self._read(0)
        width, height = self._size or (first.shape[1], first.shape[0])
        self._shape = frame_shape(width, height, self.pixel_format)

    def _read(self, index: int) -> np.ndarray:
        path = self._files[index]
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise SourceError(f"source {self.name!r}: frame {index} ({path}) is not a readable image")
        if self._size is not None and (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_LINEAR)
        return image

    def _frames(self) -> Iterator[Frame]:
        out = np.empty(self.shape, np.uint8)
        images = (convert_pixels(self._read(i), self.pixel_format, out) for i in range(len(self._files)))
        return timed_frames(images, self.fps, self.pace)
