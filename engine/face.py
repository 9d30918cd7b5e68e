"""The face stage's geometry: find the face once, then crop every frame with that box.

Micro-expression work crops each clip with one box fixed at its first frame (DFME aligns to
the onset frame): a box that followed the detector frame by frame would jitter by a pixel
or two, more than the motion being measured. The training data (`mestream.models.synthetic`)
and the live engine share this module, so the networks see at run time the crops they
were trained on.

OpenCV's Haar cascade is the built-in detector (it ships inside opencv-python-headless<5);
`make_detector` also offers OpenCV's YuNet network and a fixed box for chin-rest setups.
"""

from __future__ import annotations

import os
from typing import NamedTuple, Protocol

import cv2
import cv2.data  # not re-exported by cv2's stubs, so named here for the type checker
import numpy as np

from mestream.engine.config import FaceConfig

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


def load_cascade() -> cv2.CascadeClassifier:
    """A new Haar cascade. One per thread: a CascadeClassifier is not safe to share between
    threads (two face stages detecting at once on one classifier produced different boxes
    from run to run)."""
    path = cv2.data.haarcascades + CASCADE
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise FaceError(
            f"face detector: cannot load the Haar cascade {path} (is opencv-python-headless<5 installed?)"
        )
    return cascade


def _detector() -> cv2.CascadeClassifier:
    global _cascade
    if _cascade is None:
        _cascade = load_cascade()
    return _cascade


def detect_face(
    gray: np.ndarray, *, min_fraction: float = 0.2, cascade: cv2.CascadeClassifier | None = None
) -> tuple[int, int, int, int] | None:
    """The largest frontal face as ``(x, y, w, h)``, or None.

    ``min_fraction`` of the frame height is the smallest face accepted: an ME camera frames
    one face closely, and the cascade's small false hits in hair or background are ignored.
    Without ``cascade``, a module-wide one is used: fine for one thread (training data), not
    for concurrent callers, which pass their own (`load_cascade`).
    """
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
    side = int(min_fraction * gray.shape[0])
    faces = (cascade or _detector()).detectMultiScale(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side)
    )
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


def crop(
    gray: np.ndarray, box: Box, size: int, out: np.ndarray | None = None, interpolation: int | None = None
) -> np.ndarray:
    """``box`` cut from ``gray`` and resized to ``size``×``size``.

    Parts of the box outside the frame are filled by replicating the border, so a face
    near the edge keeps its size instead of being stretched. Pass ``out`` to reuse a buffer.
    ``interpolation`` defaults to INTER_AREA when shrinking (the training crops) and
    INTER_LINEAR otherwise; the live face stage asks for INTER_LINEAR throughout, which costs
    28 µs instead of 183 µs for a 306 px face cut to 144 px (one core), and the averaging of
    frames into samples and clips absorbs its aliasing.
    """
    if out is not None and (out.shape != (size, size) or out.dtype != gray.dtype):
        # cv2.resize would quietly allocate a new array and leave ``out`` untouched
        raise ValueError(f"crop: out must be a {size}x{size} {gray.dtype} array, got {out.shape} {out.dtype}")
    h, w = gray.shape[:2]
    x0, y0, x1, y1 = box
    if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
        patch = gray[y0:y1, x0:x1]
    else:
        patch = cv2.copyMakeBorder(
            gray[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)],
            max(-y0, 0),
            max(y1 - h, 0),
            max(-x0, 0),
            max(x1 - w, 0),
            cv2.BORDER_REPLICATE,
        )
    if interpolation is None:
        interpolation = cv2.INTER_AREA if box.size >= size else cv2.INTER_LINEAR
    if out is None:
        return cv2.resize(patch, (size, size), interpolation=interpolation)
    cv2.resize(patch, (size, size), dst=out, interpolation=interpolation)
    return out


class Detector(Protocol):
    """Finds the largest face in a grey frame: ``(x, y, w, h)`` in full-frame pixels, or None."""

    def __call__(self, gray: np.ndarray) -> tuple[int, int, int, int] | None: ...


class _Downscaled:
    """Detection on a frame shrunk to ``detect_width``; the buffer is kept between calls."""

    def __init__(self, detect_width: int) -> None:
        self.detect_width = int(detect_width)
        self._small: np.ndarray | None = None

    def _shrink(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """``image`` at most ``detect_width`` wide, and the full-frame pixels per pixel of it."""
        h, w = image.shape[:2]
        if not self.detect_width or w <= self.detect_width:
            return image, 1.0
        size = (self.detect_width, max(1, round(h * self.detect_width / w)))
        shape = (size[1], size[0], *image.shape[2:])
        if self._small is None or self._small.shape != shape:
            self._small = np.empty(shape, image.dtype)
        cv2.resize(image, size, dst=self._small, interpolation=cv2.INTER_AREA)
        return self._small, w / size[0]


def _scaled(face: tuple[float, ...], factor: float) -> tuple[int, int, int, int]:
    x, y, w, h = (int(round(float(v) * factor)) for v in face[:4])
    return x, y, w, h


class HaarDetector(_Downscaled):
    """`detect_face` on the frame downscaled to ``detect_width`` (0 keeps it whole).

    The downscale saves less than its pixel count suggests. ``detect_face`` skips faces
    smaller than a fifth of the frame height, so the cascade starts at the same coarse
    pyramid level whatever the input size. Median times for a 640×480 synthetic frame,
    on one core:

    - whole frame: 17.3 ms
    - 320 wide: 16.4 ms (about 5% less; the work saved is resizing the full frame for the pyramid)
    - 240 wide: 12.1 ms
    - 160 wide: 7.9 ms

    At 1280×960 the whole frame takes 17.7 ms and 320 wide 15.9 ms. Narrower widths are
    cheaper because OpenCV scans the finest pyramid levels with a 2-pixel step. The
    box found at 320 wide stays within a few pixels of the whole-frame box. YuNet gains
    more from the downscale, because its cost grows with every input pixel.
    """

    def __init__(self, detect_width: int = 320) -> None:
        super().__init__(detect_width)
        self._cascade = load_cascade()  # its own: each camera's face stage detects on its own thread

    def __call__(self, gray: np.ndarray) -> tuple[int, int, int, int] | None:
        small, factor = self._shrink(gray)
        found = detect_face(small, cascade=self._cascade)
        return None if found is None else _scaled(found, factor)


YUNET_MODEL = "face_detection_yunet_2023mar.onnx"
YUNET_URL = "https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet"


class YuNetDetector(_Downscaled):
    """OpenCV's YuNet CNN (`cv2.FaceDetectorYN`): finds turned and partly covered faces the
    cascade misses, at a cost that grows with the input's pixels (hence ``detect_width``).

    Args:
        model_path: the ONNX file, e.g. face_detection_yunet_2023mar.onnx from OpenCV's model zoo.
        detect_width: frames are downscaled to this width first (0 keeps them whole).
    """

    def __init__(self, model_path: str | os.PathLike[str], detect_width: int = 320) -> None:
        super().__init__(detect_width)
        path = os.fspath(model_path)
        get = f"download {YUNET_MODEL} from OpenCV's model zoo ({YUNET_URL}) and set face.model to its path"
        if not os.path.isfile(path):
            raise FaceError(f"face detector: YuNet model {path!r} not found; {get}")
        try:
            self._net = cv2.FaceDetectorYN.create(path, "", (320, 320))
        except cv2.error as exc:
            reason = str(exc).strip().splitlines()[-1]
            raise FaceError(
                f"face detector: cannot load the YuNet model {path!r} ({reason}); {get}"
            ) from None
        self._size = (320, 320)
        self._bgr: np.ndarray | None = None

    def __call__(self, gray: np.ndarray) -> tuple[int, int, int, int] | None:
        small, factor = self._shrink(gray)
        if small.ndim == 2:  # the network takes BGR
            shape = (*small.shape, 3)
            if self._bgr is None or self._bgr.shape != shape:
                self._bgr = np.empty(shape, np.uint8)
            small = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR, dst=self._bgr)
        size = (small.shape[1], small.shape[0])
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        _, faces = self._net.detect(small)
        if faces is None or len(faces) == 0:
            return None
        best = max(faces, key=lambda f: f[2] * f[3])  # rows: x, y, w, h, 5 landmarks, score
        return _scaled(best, factor)


class FixedDetector:
    """Always "finds" ``roi`` (x, y, w, h): a chin rest holds the face where the operator drew it."""

    def __init__(self, roi: tuple[int, ...]) -> None:
        if len(roi) != 4 or min(roi[2:]) <= 0:
            raise FaceError(f"face detector: roi must be [x, y, w, h] with w, h > 0, got {list(roi)}")
        x, y, w, h = (int(v) for v in roi)
        self.roi = (x, y, w, h)

    def __call__(self, gray: np.ndarray) -> tuple[int, int, int, int] | None:
        return self.roi


def make_detector(config: FaceConfig) -> Detector:
    """The detector ``config.detector`` names, built once per stage (YuNet loads its model here)."""
    if config.detector == "haar":
        return HaarDetector(config.detect_width)
    if config.detector == "yunet":
        return YuNetDetector(config.model, config.detect_width)
    if config.detector == "fixed":
        return FixedDetector(config.roi)
    raise FaceError(f"face detector: unknown detector {config.detector!r} (haar, yunet or fixed)")
