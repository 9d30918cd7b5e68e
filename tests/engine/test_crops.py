"""The crop ring: slot metadata travels with the pixels and is refused once the slot is rewritten."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mestream.engine.crops import CropRing
from mestream.engine.face import Box, crop
from mestream.engine.ring import Overwritten, RingError

SIZE = 16


def frame(k: int, shape: tuple[int, ...] = (48, 64)) -> np.ndarray:
    return (np.arange(np.prod(shape), dtype=np.int64).reshape(shape) * (k + 1) % 251).astype(np.uint8)


def box(k: int) -> Box:
    return Box(k, k + 1, k + 32, k + 33)


def filled(capacity: int, n: int) -> CropRing:
    ring = CropRing(capacity, SIZE)
    for k in range(n):
        assert ring.write(frame(k), box(k), 100 + k, 0, 1_000 + k, 0, source_seq=10 + k) == k
    return ring


def test_read_clip_returns_each_crops_pixels_and_metadata() -> None:
    ring = filled(8, 6)
    clip = ring.read_clip(2, 4)
    assert len(clip) == 3 and clip.first == 2
    assert list(clip.frame_id) == [102, 103, 104] and list(clip.host_ns) == [1_002, 1_003, 1_004]
    assert [tuple(b) for b in clip.boxes] == [box(2), box(3), box(4)]
    assert list(clip.source_seq) == [12, 13, 14]
    assert np.all(np.diff(clip.written_ns) >= 0) and clip.written_ns[0] > 0
    for i, k in enumerate(range(2, 5)):
        want = crop(frame(k), box(k), SIZE, interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(clip.pixels[i], want)
    boxes, written = ring.slot_info(2, 3)
    np.testing.assert_array_equal(boxes, clip.boxes)
    np.testing.assert_array_equal(written, clip.written_ns)
    assert ring.written_ns(4) == clip.written_ns[2]
    assert ring.frame_id(4) == 104 and ring.captured_ns(4) == 1_004


def test_metadata_of_a_rewritten_slot_is_never_returned() -> None:
    ring = filled(4, 6)  # seqs 2..5 held
    with pytest.raises(Overwritten):
        ring.read_clip(1, 3)
    with pytest.raises(RingError):
        ring.slot_info(1, 2)
    with pytest.raises(RingError):
        ring.written_ns(0)


def test_a_failed_write_invalidates_its_slot_and_the_next_write_takes_its_seq() -> None:
    ring = filled(4, 4)  # seqs 0..3; the next write claims seq 0's slot
    with pytest.raises(ValueError, match="crop: out must be"):  # a float frame cannot fill a uint8 slot
        ring.write(np.zeros((48, 64), np.float32), box(9), 999, 0, 0, 0, source_seq=99)
    with pytest.raises(RingError):  # its box was written under the claim: seq 0 is gone with it
        ring.read_clip(0, 0)
    assert [tuple(b) for b in ring.read_clip(1, 3).boxes] == [box(1), box(2), box(3)]
    assert ring.write(frame(4), box(4), 104, 0, 0, 0, source_seq=14) == 4
    assert tuple(ring.read_clip(4, 4).boxes[0]) == box(4)


def test_write_crop_stores_a_crop_cut_elsewhere_and_checks_its_shape() -> None:
    ring = CropRing(4, SIZE)
    pixels = np.full((SIZE, SIZE), 7, np.uint8)
    assert ring.write_crop(pixels, box(1), 5, 0, 0, 0, source_seq=3) == 0
    clip = ring.read_clip(0, 0)
    np.testing.assert_array_equal(clip.pixels[0], pixels)
    assert tuple(clip.boxes[0]) == box(1) and clip.source_seq[0] == 3
    with pytest.raises(ValueError, match="16x16 uint8"):
        ring.write_crop(np.zeros((SIZE, SIZE + 1), np.uint8), box(1), 6, 0, 0, 0, source_seq=4)


def test_recrop_cuts_as_the_face_stage_does_from_mono_or_bgr_frames() -> None:
    ring = filled(4, 1)
    gray = frame(0)
    out = np.empty((SIZE, SIZE), np.uint8)
    ring.recrop(gray, box(0), out)
    np.testing.assert_array_equal(out, ring.read_clip(0, 0).pixels[0])  # the crop the face stage wrote
    bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    again = np.empty_like(out)
    ring.recrop(bgr, box(0), again)
    np.testing.assert_array_equal(again, out)
