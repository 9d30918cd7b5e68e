import dataclasses

import cv2
import numpy as np
import pytest

from mestream.models.datasets.base import LabeledInterval, LongVideo
from mestream.models.mesnet import PRESETS
from mestream.models.mesnet.data import flow_steps, long_video, sample_starts, synthetic_video, to_steps
from mestream.models.synthetic import make_camera


def test_sampling_bins():
    starts = sample_starts(23, 200.0, 40.0)
    assert starts.tolist() == [0, 5, 10, 15]
    assert to_steps([0, 4, 5, 19, 22], starts).tolist() == [0, 0, 1, 3, 3]
    assert sample_starts(5, 30.0, 40.0).tolist() == [0, 1, 2, 3, 4]  # slower sources keep every frame


def test_flow_spans_the_gap_and_drops_head_motion():
    """1 px per sample to the right: the top of the face alone gives gap (3) px × flow_scale·16/64;
    the whole face moving (a head turn) gives nothing once the median flow is taken out."""
    config = dataclasses.replace(PRESETS["demo"], input_size=16, flow_crop=64)
    texture = cv2.GaussianBlur(
        np.random.default_rng(0).uniform(0, 255, (64, 64)).astype(np.float32), (0, 0), 2.0
    )
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX)
    whole = (
        np.stack(
            [
                cv2.warpAffine(
                    texture, np.float32([[1, 0, 0.2 * i], [0, 1, 0]]), (64, 64), borderMode=cv2.BORDER_REFLECT
                )
                for i in range(40)
            ]
        )
        .round()
        .astype(np.uint8)
    )
    top = whole.copy()
    top[:, 24:] = texture[24:].round().astype(np.uint8)
    starts = sample_starts(40, 200.0, 40.0)
    expected = config.flow_gap * config.flow_scale * 16 / 64
    moved = flow_steps(top, starts, config).astype(np.float32)[2:-2, 0]  # u; the ends see a shorter gap
    assert abs(moved[:, 1:5, 3:13].mean() - expected) < 0.2 * expected
    assert abs(moved[:, 8:15, 3:13].mean()) < 0.1 * expected
    head = flow_steps(whole, starts, config).astype(np.float32)[2:-2]
    assert np.abs(head.mean(axis=(0, 2, 3))).max() < 0.05 * expected


def test_real_long_video_goes_through_the_same_flow(tmp_path):
    """A frame folder (here: synthetic frames saved as PNG) becomes steps, flow and step labels."""
    config = dataclasses.replace(PRESETS["demo"], sample_hz=20.0)
    camera = make_camera(7, fps=50.0, duration_s=1.2, resolution=(320, 240))
    names = []
    with camera:
        for frame in camera:
            names.append(f"img{frame.frame_id:04d}.png")
            cv2.imwrite(str(tmp_path / names[-1]), frame.pixels)
    video = LongVideo(
        dataset="test",
        subject="s1",
        video="v1",
        frames_dir=tmp_path,
        frame_names=tuple(names),
        frame_numbers=tuple(range(100, 100 + len(names))),
        fps=50.0,
        intervals=(LabeledInterval(onset=110, apex=115, offset=124, kind="micro"),),
    )
    out = long_video(video, config)
    assert out.flow.shape == (len(sample_starts(len(names), 50.0, 20.0)), 2, 32, 32)
    assert np.isfinite(out.flow.astype(np.float32)).all()
    (expr,) = out.expressions
    # frames 10..24 of the video; samples are 2.5 frames long
    assert (expr.kind, expr.onset_step, expr.offset_step) == ("micro", 4, 9)
    # each step stands for the centre of its bin: frames 0-2, 3-4, 5-7, 8-9
    np.testing.assert_allclose(out.sample_frames[:4], [1.0, 3.5, 6.0, 8.5])
    # a gap in the numbering (no file 105-109) must not shift the labels: they follow the files
    gapped = dataclasses.replace(
        video,
        frame_numbers=tuple(range(100, 105)) + tuple(range(110, 105 + len(names))),
        intervals=(LabeledInterval(onset=115, apex=120, offset=129, kind="micro"),),
    )
    (expr,) = long_video(gapped, config).expressions
    assert (expr.onset_step, expr.offset_step, expr.onset_frame, expr.offset_frame) == (4, 9, 10, 24)


def test_unreadable_cache_file_is_rebuilt(tmp_path):
    config = PRESETS["demo"]
    first = synthetic_video(3, config, duration_s=0.2, cache=tmp_path)
    (path,) = tmp_path.rglob("*.npz")
    path.write_bytes(path.read_bytes()[:100])  # a run killed while the disk filled up
    with pytest.warns(UserWarning, match=path.name):
        again = synthetic_video(3, config, duration_s=0.2, cache=tmp_path)
    np.testing.assert_array_equal(again.flow, first.flow)
    assert synthetic_video(3, config, duration_s=0.2, cache=tmp_path).expressions == first.expressions
