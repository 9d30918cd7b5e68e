import numpy as np
import pytest

from mestream.cameras.synthetic import SyntheticCamera
from mestream.engine.face import Box, crop, detect_face, square_box


def _first_frame(seed: int) -> tuple[np.ndarray, SyntheticCamera]:
    cam = SyntheticCamera(fps=200, resolution=(640, 480), seed=seed, duration_s=0.1, pace=False)
    with cam:
        return next(iter(cam)).pixels.copy(), cam


@pytest.mark.parametrize("seed", [0, 5])
def test_detects_the_synthetic_face_and_boxes_it_square(seed):
    frame, cam = _first_frame(seed)
    found = detect_face(frame)
    assert found is not None
    box = square_box(found)
    nx, ny = cam.face.landmarks["nose_tip"]
    assert box.x0 < nx < box.x1 and box.y0 < ny < box.y1
    assert box.x1 - box.x0 == box.y1 - box.y0 >= max(found[2:])


def test_blank_frame_has_no_face():
    assert detect_face(np.full((240, 320), 128, np.uint8)) is None


def test_crop_resizes_and_reuses_the_buffer():
    img = np.arange(100 * 100, dtype=np.uint32).reshape(100, 100).astype(np.uint8)
    out = np.zeros((20, 20), np.uint8)
    got = crop(img, Box(10, 20, 50, 60), 20, out=out)
    assert got is out and out.shape == (20, 20)
    np.testing.assert_array_equal(out, crop(img, Box(10, 20, 50, 60), 20))  # written into, not replaced
    assert out.any()
    np.testing.assert_array_equal(crop(img, Box(10, 20, 30, 40), 20), img[20:40, 10:30])
    with pytest.raises(ValueError, match="out must be a 20x20 uint8"):
        crop(img, Box(10, 20, 50, 60), 20, out=np.zeros((10, 10), np.uint8))


def test_crop_overhanging_the_frame_replicates_the_border():
    img = np.zeros((50, 50), np.uint8)
    img[:, 0] = 200
    got = crop(img, Box(-10, 0, 10, 20), 20)
    assert got.shape == (20, 20)
    assert (got[:, :11] == 200).all() and (got[:, 11:] == 0).all()
