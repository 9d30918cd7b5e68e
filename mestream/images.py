"""Image files on disk as the micro-expression datasets ship their frames: which suffixes are
images, and the frame order. Shared by the folder source (`mestream.cameras.folder`) and the
dataset readers (`mestream.models.datasets`), so neither imports the other."""

from __future__ import annotations

import re
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".pgm", ".ppm"})


def natural_key(path: Path) -> list[int | str]:
    """Sort img2.jpg before img10.jpg, as the datasets number frames without zero padding."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]
