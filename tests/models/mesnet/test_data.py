import dataclasses

import cv2
import numpy as np

from mestream.models.datasets.base import LabeledInterval, LongVideo
from mestream.models.mesnet import PRESETS
from mestream.models.mesnet.data import long_video, sample_starts, to_steps
from mestream.models.synthetic import make_camera


def test_sampling_bins():
    starts = sample_starts(23, 200.0, 40.0)
    assert starts.tolist() == [0, 5, 10, 15]
    assert to_steps([0, 4, 5, 19, 22], starts).tolist() == [0, 0, 1, 3, 3]
    assert sample_starts(5, 30.0, 40.0).tolist() == [0, 1, 2, 3, 4]  # slower sources keep every frame


def test_real_long_video_goes_through_the_same_flow(tmp_path):
    """A frame folder (here: synthetic frames saved as PNG) becomes steps, flow and step labels."""
    config = dataclasses.replace(PRESETS["demo"], sample_hz=20.0)
    camera = make_camera(7, fps=50.0, duration_s=1.2, resolution=(320, 240))
    names = []
    with camera:
        for frame in camera:
            names.append(f"img{frame.frame_id:04d}.png")
            cv2.imwrite(str(tmp_path / names[-1]), frame.pixels)
    video = LongVideo(dataset="test", subject="s1", video="v1", frames_dir=tmp_path, frame_names=tuple(names),
                      frame_numbers=tuple(range(100, 100 + len(names))), fps=50.0,
                      intervals=(LabeledInterval(onset=110, apex=115, offset=124, kind="micro"),))
    out = long_video(video, config)
    assert out.flow.shape == (len(sample_starts(len(names), 50.0, 20.0)), 2, 32, 32)
    assert np.isfinite(out.flow.astype(np.float32)).all()
    (expr,) = out.expressions
    # frames 10..24 of the video; samples are 2.5 frames long
    assert (expr.kind, expr.onset_step, expr.offset_step) == ("micro", 4, 9)
