import cv2
import numpy as np
import pytest

from mestream.engine.flow import OpticalFlow, flow_sequence


def _textured(shift_x: float = 0.0, shift_y: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.uniform(0, 255, (96, 96)).astype(np.float32), (0, 0), 2.0)
    m = np.float32([[1, 0, shift_x], [0, 1, shift_y]])
    moved = cv2.warpAffine(base, m, (96, 96), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return np.clip(moved * 3 - 200, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_recovers_a_known_shift(method):
    flow = OpticalFlow(method)(_textured(), _textured(1.0, -0.5))
    assert flow.shape == (96, 96, 2) and flow.dtype == np.float32
    u, v = np.median(flow[20:-20, 20:-20, 0]), np.median(flow[20:-20, 20:-20, 1])
    assert abs(u - 1.0) < 0.25 and abs(v + 0.5) < 0.25


def test_sequence_is_frame_to_next_frame():
    frames = np.stack([_textured(), _textured(1.0), _textured(1.0)])
    seq = flow_sequence(frames)
    assert seq.shape == (2, 96, 96, 2)
    assert np.median(seq[0, ..., 0]) > 0.7 and abs(np.median(seq[1, ..., 0])) < 0.1


def test_bad_requests_say_what_is_wrong():
    with pytest.raises(ValueError, match="method"):
        OpticalFlow("lucas")
    with pytest.raises(ValueError, match="preset"):
        OpticalFlow("dis", "slowest")
    if not hasattr(cv2, "optflow"):
        with pytest.raises(ValueError, match="contrib"):
            OpticalFlow("tvl1")
    with pytest.raises(ValueError, match="grey uint8"):
        OpticalFlow()(np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8))
    with pytest.raises(ValueError, match=r"\(N, H, W\) uint8"):
        flow_sequence(np.zeros((3, 8, 8), np.float32))
