"""The crop ring: every frame's face crop, at the full frame rate, for the spot and
recognition stages.

A crop slot carries, next to the `FrameRing`'s metadata (the source frame's id and capture
times), the box it was cut with, when the face stage wrote it, and the frame ring's seq of
its frame (to re-crop it with another box while the frame is still held). Recognition needs the box:
DFME crops a whole clip with the box of its onset frame, and the face stage may have moved
its box (a re-detection) inside a clip. The write time gives each event's face-stage latency.

Same contract as the frame ring: one writer (the face stage), readers copy what they keep.
The slot metadata sits under the pixels' seqlock: the writer claims the slot (its seq
becomes invalid), writes box, source seq, pixels and write time, then commits; every read
here copies what it returns and checks afterwards that the slot still holds the seq it
asked for, so a box or a time is never one of the next lap's. Readers go through the
methods; nothing outside this module indexes the metadata arrays.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np

from mestream.engine.face import Box, crop
from mestream.engine.ring import FrameRing, ReaderCursor, RingError, Waker


@dataclass(frozen=True)
class CropClip:
    """Crops ``first .. first + len - 1`` and their slot metadata, copied out and checked.

    Args:
        first: the seq of the first crop.
        pixels: (n, size, size) uint8 crops (the caller's buffer when it passed one).
        frame_id: each crop's source frame id.
        host_ns: each source frame's capture time (host monotonic ns).
        boxes: (n, 4) int32, the `Box` each crop was cut with.
        source_seq: the frame ring's seq of each crop's frame.
        written_ns: when the face stage wrote each crop (host monotonic ns).
    """

    first: int
    pixels: np.ndarray
    frame_id: np.ndarray
    host_ns: np.ndarray
    boxes: np.ndarray
    source_seq: np.ndarray
    written_ns: np.ndarray

    def __len__(self) -> int:
        return len(self.pixels)


class CropRing:
    """A `FrameRing` of ``size``×``size`` uint8 crops with each slot's box, source seq and write time."""

    def __init__(self, capacity: int, size: int, interpolation: int = cv2.INTER_LINEAR) -> None:
        self.size = int(size)
        self.interpolation = interpolation  # see `mestream.engine.face.crop`
        self._ring = FrameRing(capacity, (self.size, self.size))
        self._boxes = np.zeros((capacity, 4), np.int32)
        self._written_ns = np.zeros(capacity, np.int64)
        self._source_seq = np.zeros(capacity, np.int64)
        self._next = 0  # the seq the next write gets: this ring is its FrameRing's only writer

    @property
    def ring(self) -> FrameRing:
        """The crops' `FrameRing` (pixels, frame ids and capture times), for cursors and checks."""
        return self._ring

    @property
    def capacity(self) -> int:
        return self._ring.capacity

    def add_waker(self, waker: Waker) -> None:
        """Notify ``waker`` on every crop written, and at finish and close (`FrameRing.add_waker`)."""
        self._ring.add_waker(waker)

    @property
    def updates(self) -> int:
        """`FrameRing.updates` of the crops: grows with every write, finish and close."""
        return self._ring.updates

    @property
    def head(self) -> int:
        """The newest crop's seq; -1 while empty."""
        return self._ring.head

    @property
    def finished(self) -> bool:
        """The face stage finished: no more crops will come."""
        return self._ring.finished

    # -- the face stage's side ------------------------------------------------------------------

    def write(
        self,
        gray: np.ndarray,
        box: Box,
        frame_id: int,
        device_ns: int,
        host_ns: int,
        wall_ns: int,
        source_seq: int,
    ) -> int:
        """Cut ``box`` out of ``gray`` straight into the next slot; returns the crop's seq."""
        slot_pixels = self._begin(box, source_seq)
        try:
            crop(gray, box, self.size, out=slot_pixels, interpolation=self.interpolation)
        except BaseException:
            self._ring.abort_write()
            raise
        return self._commit(frame_id, device_ns, host_ns, wall_ns)

    def write_crop(
        self,
        pixels: np.ndarray,
        box: Box,
        frame_id: int,
        device_ns: int,
        host_ns: int,
        wall_ns: int,
        source_seq: int,
    ) -> int:
        """Store a crop that was cut elsewhere (a camera that crops on board, a test) with the
        box it was cut with; returns its seq."""
        if pixels.shape != (self.size, self.size) or pixels.dtype != np.uint8:
            raise ValueError(
                f"crop ring: a crop must be a {self.size}x{self.size} uint8 array, "
                f"got {pixels.shape} {pixels.dtype}"
            )
        np.copyto(self._begin(box, source_seq), pixels)
        return self._commit(frame_id, device_ns, host_ns, wall_ns)

    def _begin(self, box: Box, source_seq: int) -> np.ndarray:
        slot_pixels = self._ring.begin_write()  # the slot's seq is invalid from here until `_commit`
        slot = self._next % self.capacity
        self._boxes[slot] = box
        self._source_seq[slot] = source_seq
        return slot_pixels

    def _commit(self, frame_id: int, device_ns: int, host_ns: int, wall_ns: int) -> int:
        seq = self._next
        self._written_ns[seq % self.capacity] = time.monotonic_ns()
        got = self._ring.commit(frame_id, device_ns, host_ns, wall_ns)
        if got != seq:
            raise RuntimeError(
                f"crop ring: the frame ring numbered crop {seq} as {got}; "
                "something else writes to this crop ring's FrameRing"
            )
        self._next = seq + 1
        return seq

    def wait_for_room(self, stop: threading.Event) -> float:
        """A replay's face stage waits here for the slowest reader (`FrameRing.wait_for_room`)."""
        return self._ring.wait_for_room(stop)

    def finish(self) -> None:
        """No more crops: readers drain what was written, then see the end."""
        self._ring.finish()

    # -- readers ----------------------------------------------------------------------------------

    def register_reader(self, name: str) -> ReaderCursor:
        """A cursor over the crops for stage ``name`` (`FrameRing.register_reader`)."""
        return self._ring.register_reader(name)

    def read_clip(self, first: int, last: int, out: np.ndarray | None = None) -> CropClip:
        """Crops ``first .. last`` (inclusive) with their metadata, into ``out`` when given
        (shape (n, size, size)); raises `RingError` if any of them is gone or not written yet."""
        batch = self._ring.read_range(first, last + 1, out=out)
        slots = np.arange(first, last + 1) % self.capacity
        boxes, sources, written = self._boxes[slots], self._source_seq[slots], self._written_ns[slots]
        self._ring.validate(first)  # the oldest is still held, so are the newer ones: none was rewritten
        meta = batch.meta
        return CropClip(first, batch.pixels, meta["frame_id"], meta["host_ns"], boxes, sources, written)

    def slot_info(self, first: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The boxes (n, 4) and write times (n,) of crops ``first .. first + n - 1``, which the
        caller has just read; raises `RingError` if the first one is gone by now."""
        slots = np.arange(first, first + n) % self.capacity
        boxes, written = self._boxes[slots], self._written_ns[slots]
        self._ring.validate(first)
        return boxes, written

    def frame_id(self, seq: int) -> int:
        """The source frame id of crop ``seq``; raises `RingError` if it is gone."""
        return int(self._ring.read(seq, copy=False).frame_id)

    def captured_ns(self, seq: int) -> int:
        """When crop ``seq``'s frame was captured (host monotonic ns); raises `RingError` if it is gone."""
        return int(self._ring.read(seq, copy=False).host_ns)

    def written_ns(self, seq: int) -> int:
        """When the face stage wrote crop ``seq`` (host monotonic ns); raises `RingError` if it is gone."""
        if seq < 0:
            raise RingError(f"sequence numbers start at 0, got {seq}")
        value = int(self._written_ns[seq % self.capacity])
        self._ring.validate(seq)
        return value

    def recrop(self, frame: np.ndarray, box: Box, out: np.ndarray) -> np.ndarray:
        """Cut ``box`` out of a full frame (mono8 or bgr8) into ``out`` exactly as the face
        stage cuts the crops of this ring: grey, ``size``×``size``, its interpolation."""
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        return crop(gray, box, self.size, out=out, interpolation=self.interpolation)

    def close(self) -> None:
        self._ring.close()
