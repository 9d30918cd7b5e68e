"""The crop ring: every frame's face crop, at the full frame rate, for the spot and
recognition stages.

A crop slot carries, next to the `FrameRing`'s metadata (the source frame's id and capture
times), the box it was cut with, when the face stage wrote it, and the frame ring's seq of
its frame (to re-crop it with another box while the frame is still held). Recognition needs the box:
DFME crops a whole clip with the box of its onset frame, and the face stage may have moved
its box (a re-detection) inside a clip. ``done_ns`` gives each event's face-stage latency.

Same contract as the frame ring: one writer (the face stage), readers copy what they keep,
and a value read from ``boxes`` / ``done_ns`` counts only if `FrameRing.is_valid` still holds
for its seq afterwards.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from mestream.engine.face import Box, crop
from mestream.engine.ring import FrameRing


class CropRing:
    """A `FrameRing` of ``size``×``size`` uint8 crops with each slot's box and write time."""

    def __init__(self, capacity: int, size: int, interpolation: int = cv2.INTER_LINEAR) -> None:
        self.size = int(size)
        self.interpolation = interpolation  # see `mestream.engine.face.crop`
        self.ring = FrameRing(capacity, (self.size, self.size))
        self.boxes = np.zeros((capacity, 4), np.int32)
        self.done_ns = np.zeros(capacity, np.int64)
        self.source_seq = np.zeros(capacity, np.int64)  # the frame ring's seq of the frame it was cut from

    @property
    def capacity(self) -> int:
        return self.ring.capacity

    def write(self, gray: np.ndarray, box: Box, frame_id: int, device_ns: int, host_ns: int, wall_ns: int,
              source_seq: int) -> int:
        """Cut ``box`` out of ``gray`` straight into the next slot; returns the crop's seq."""
        ring = self.ring
        slot_pixels = ring.begin_write()
        try:
            crop(gray, box, self.size, out=slot_pixels, interpolation=self.interpolation)
        except BaseException:
            ring.abort_write()
            raise
        slot = (ring.head + 1) % ring.capacity
        self.boxes[slot] = box
        self.done_ns[slot] = time.monotonic_ns()
        self.source_seq[slot] = source_seq
        return ring.commit(frame_id, device_ns, host_ns, wall_ns)

    def written_ns(self, seq: int) -> int:
        """When the face stage wrote crop ``seq`` (host monotonic ns); raises if it is gone."""
        value = int(self.done_ns[seq % self.capacity])
        self.ring.validate(seq)
        return value

    def close(self) -> None:
        self.ring.close()
