"""The `Source` seam: cameras and replays all yield `Frame`s through one protocol.

The engine never asks what kind of source it reads. Anything with the attributes and
methods of `Source` plugs in, built in or registered by a camera SDK package through the
``mestream.sources`` entry point (see `mestream.plugins`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

PIXEL_FORMATS = {"mono8": (np.uint8, 1), "bgr8": (np.uint8, 3)}


class SourceError(RuntimeError):
    """A source could not open or produced bad data; the message names the source and frame."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured image.

    ``pixels`` may be a buffer the source reuses for the next frame (as Polygraphy's runners
    reuse output buffers): a consumer copies what it keeps. The ring copies on write.
    """

    pixels: np.ndarray
    frame_id: int
    device_ns: int
    host_ns: int


@runtime_checkable
class Source(Protocol):
    """What the engine needs from a camera or a replay."""

    name: str
    fps: float
    pixel_format: str

    @property
    def shape(self) -> tuple[int, ...]: ...

    def open(self) -> None: ...

    def close(self) -> None: ...

    def __iter__(self) -> Iterator[Frame]: ...

    def __enter__(self) -> Source: ...

    def __exit__(self, *exc: object) -> None: ...


def frame_shape(width: int, height: int, pixel_format: str) -> tuple[int, ...]:
    """The numpy shape of one frame, mono8 as (H, W) and bgr8 as (H, W, 3)."""
    if pixel_format not in PIXEL_FORMATS:
        raise ValueError(f"unknown pixel format {pixel_format!r}; known: {sorted(PIXEL_FORMATS)}")
    channels = PIXEL_FORMATS[pixel_format][1]
    return (height, width) if channels == 1 else (height, width, channels)


def parse_resolution(text: str | Sequence[int]) -> tuple[int, int]:
    """'640x480' or (640, 480) -> (width, height)."""
    if isinstance(text, str):
        parts = text.lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"resolution must look like 640x480, got {text!r}")
        width, height = (int(p) for p in parts)
    else:
        width, height = (int(v) for v in text)
    if width <= 0 or height <= 0:
        raise ValueError(f"resolution must be positive, got {width}x{height}")
    return width, height


class SourceBase:
    """Shared plumbing for built-in sources: context manager, open state and frame checks.

    Subclasses implement ``_open``, ``_close`` and ``_frames`` (a generator of Frames).
    Plugins are free to implement `Source` from scratch instead.
    """

    name: str = "source"
    fps: float = 0.0
    pixel_format: str = "mono8"

    def __init__(self) -> None:
        self._is_open = False

    @property
    def shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def open(self) -> None:
        if not self._is_open:
            self._open()
            self._is_open = True

    def close(self) -> None:
        if self._is_open:
            self._is_open = False
            self._close()

    def __enter__(self) -> SourceBase:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        if not self._is_open:
            raise SourceError(f"source {self.name!r}: iterate only after open() (or use it in a with block)")
        return self._frames()

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _frames(self) -> Iterator[Frame]:
        raise NotImplementedError


def check_frame(source_name: str, frame: Frame, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Reject a frame that does not match the source's declared shape and dtype.

    For source authors and their tests; the engine's ingest gets the same check from
    `FrameRing.write` and names the source and frame when it fails.
    """
    pixels = frame.pixels
    if pixels.shape != shape or pixels.dtype != dtype:
        raise SourceError(
            f"source {source_name!r}, frame {frame.frame_id}: got pixels of shape {pixels.shape} "
            f"and dtype {pixels.dtype}, expected shape {shape} and dtype {np.dtype(dtype)}"
        )


def now_ns() -> int:
    """Host monotonic time in ns, the clock every latency figure in mestream is measured on."""
    return time.monotonic_ns()


class Pacer:
    """Sleeps so that frame n is released at start + n / fps, without drifting over a long run."""

    def __init__(self, fps: float) -> None:
        self.period_ns = int(round(1e9 / fps))
        self.start_ns = time.monotonic_ns()

    def wait(self, index: int) -> None:
        due = self.start_ns + index * self.period_ns
        delay = due - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
