import numpy as np
import pytest

from mestream.engine.face import crop
from mestream.models.synthetic import check_eval_seed, face_box, make_camera, render_crops, subject_ids


def test_seeds_own_disjoint_subjects():
    assert subject_ids(0, 3) == [0, 1, 2]
    assert subject_ids(2, 2, start=5) == [2005, 2006]
    assert not set(subject_ids(0, 1000)) & set(subject_ids(1, 1000))
    with pytest.raises(ValueError, match="do not fit"):
        subject_ids(0, 10, start=995)
    with pytest.raises(ValueError, match="seed"):
        subject_ids(-1, 1)


def test_render_crops_returns_exactly_the_requested_frames():
    cam = make_camera(7, duration_s=0.5)
    ids = np.array([0, 3, 40, 99])
    crops = render_crops(cam, ids, 48)
    assert crops.shape == (4, 48, 48) and crops.dtype == np.uint8
    wanted, box = {}, None
    with cam:
        for f in cam:
            box = box or face_box(cam, f.pixels)
            if f.frame_id in ids:
                wanted[f.frame_id] = crop(f.pixels, box, 48)
    for k, fid in enumerate(ids):
        np.testing.assert_array_equal(crops[k], wanted[fid])
    assert not np.array_equal(crops[0], crops[3])  # noise differs frame to frame


@pytest.mark.parametrize(
    "ids, message", [([3, 1], "sorted"), ([1, 1], "sorted"), ([-1, 2], "sorted"), ([10_000], "past the end")]
)
def test_render_crops_rejects_bad_frame_lists(ids, message):
    with pytest.raises(ValueError, match=message):
        render_crops(make_camera(1, duration_s=0.2), np.array(ids), 32)


def test_eval_refuses_the_training_seed():
    check_eval_seed(1, {"data": {"seed": 0}}, "eval")
    check_eval_seed(1, {}, "eval")
    with pytest.raises(ValueError, match="seed 0 is the seed this model was trained on"):
        check_eval_seed(0, {"data": {"seed": 0}}, "eval")
