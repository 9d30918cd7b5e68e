"""Replay an image-sequence directory, the way CASME II, SAMM and CAS(ME)² ship their clips."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from mestream.cameras.base import Frame, SourceError
from mestream.cameras.replay import ReplaySource, timed_frames
from mestream.images import IMAGE_SUFFIXES, natural_key

DEFAULT_FOLDER_FPS = 200.0


def list_images(folder: Path) -> list[Path]:
    """The folder's image files in natural order."""
    return sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=natural_key
    )


class FolderSource(ReplaySource):
    """Frames from ``path``'s images in natural order, replayed at ``fps``.

    Args:
        path: the directory holding one clip's frames (e.g. CASME II's ``sub01/EP02_01f``).
        fps: replay rate; the datasets do not record it in the files (CASME II and SAMM: 200,
            CAS(ME)²: 30), so it defaults to 200.
        resolution: resize to ``WxH``; empty keeps the first image's size.
        pixel_format: ``mono8`` or ``bgr8``.
        pace: release at ``fps``; off replays as fast as the disk decodes.
    """

    kind = "folder"

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
        super().__init__(
            fps=fps or DEFAULT_FOLDER_FPS,
            resolution=resolution,
            pixel_format=pixel_format,
            pace=pace,
            name=name,
        )
        self.path = Path(path)
        self._files: list[Path] = []

    @property
    def files(self) -> list[Path]:
        """The frames in replay order; frame_id n is ``files[n]``."""
        return list(self._files)

    def _open(self) -> None:
        if not self.path.is_dir():
            raise SourceError(
                f"source {self.name!r}: image folder {self.path} does not exist or is not a directory"
            )
        try:
            self._files = list_images(self.path)
        except OSError as exc:
            raise SourceError(
                f"source {self.name!r}: image folder {self.path} cannot be read: {exc}"
            ) from exc
        if not self._files:
            raise SourceError(
                f"source {self.name!r}: image folder {self.path} holds no images "
                f"({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        self._shape = self._size_from(self._read(0))

    def _read(self, index: int) -> np.ndarray:
        path = self._files[index]
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise SourceError(f"source {self.name!r}: frame {index} ({path}) is not a readable image")
        return image

    def _frames(self) -> Iterator[Frame]:
        out = np.empty(self.shape, np.uint8)
        images = (self._convert(self._read(i), out) for i in range(len(self._files)))
        return timed_frames(images, self.fps, self.pace)
