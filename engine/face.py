"""The face stage's geometry: find the face once, then crop every frame with that box.

Micro-expression work crops each clip with one box fixed at its first frame (DFME aligns to
the onset frame): a box that followed the detector frame by frame would jitter by a pixel
or two, more than the motion being measured. The training data (`mestream.models.synthetic`)
and the live engine share this module, so the networks see at run time the crops they
were trained on.

OpenCV's Haar cascade is the built-in detector (it ships inside opencv-python-headless<5).
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

CASCADE = "haarcascade_frontalface_default.xml"

_cascade: cv2.CascadeClassifier | None = None


class FaceError(ValueError):
    """No usable face: the message names the source or frame."""


class Box(NamedTuple):
    """A crop box in pixels, ``x0 <= x < x1``, ``y0 <= y < y1``; may overhang the frame."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def size(self) -> int:
        return self.x1 - self.x0


def _detector() -> cv2.CascadeClassifier:
    global _cascade
    if _cascade is None:
        path = cv2.data.haarcascades + CASCADE
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise FaceError(f"face detector: cannot load the Haar cascade {path} (is opencv-python-headless<5 installed?)")
        _cascade = cascade
    return _cascade


def detect_face(gray: np.ndarray, *, min_fraction: float = 0.2) -> tuple[int, int, int, int] | None:
    """The largest frontal face as ``(x, y, w, h)``, or None.

    ``min_fraction`` of the frame height is the smallest face accepted: an ME camera frames
    one face closely, and the cascade's small false hits in hair or background are ignored.
    """
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
    side = int(min_fraction * gray.shape[0])
    faces = _detector().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    return int(x), int(y), int(w), int(h)


def square_box(face: tuple[int, int, int, int], scale: float = 1.2) -> Box:
    """A square box ``scale`` times the detection, centred on it.

    The cascade's box runs from the brows to the chin; 1.2 keeps the forehead (AU1/AU2) and
    the chin (AU17) inside with a little margin for head drift.
    """
    x, y, w, h = face
    side = int(round(max(w, h) * scale))
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    return Box(x0, y0, x0 + side, y0 + side)


def crop(gray: np.ndarray, box: Box, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """``box`` cut from ``gray`` and resized to ``size``×``size`` (area interpolation).

    Parts of the box outside the frame are filled by replicating the border, so a face
    near the edge keeps its size instead of being stretched. Pass ``out`` to reuse a buffer.
    """
    if out is not None and (out.shape != (size, size) or out.dtype != gray.dtype):
        # cv2.resize would quietly allocate a new array and leave ``out`` untouched
        raise ValueError(f"crop: out must be a {size}x{size} {gray.dtype} array, got {out.shape} {out.dtype}")
    h, w = gray.shape[:2]
    x0, y0, x1, y1 = box
    if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
        patch = gray[y0:y1, x0:x1]
    else:
        patch = cv2.copyMakeBorder(gray[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)],
                                   max(-y0, 0), max(y1 - h, 0), max(-x0, 0), max(x1 - w, 0), cv2.BORDER_REPLICATE)
    interpolation = cv2.INTER_AREA if box.size >= size else cv2.INTER_LINEAR
    if out is None:
        return cv2.resize(patch, (size, size), interpolation=interpolation)
    cv2.resize(patch, (size, size), dst=out, interpolation=interpolation)
    return out
