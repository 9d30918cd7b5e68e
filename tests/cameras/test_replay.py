"""Video, folder and OpenCV-device sources on fixtures the tests make."""

import cv2
import numpy as np
import pytest

from mestream.cameras.base import SourceError
from mestream.cameras.folder import FolderSource
from mestream.cameras.opencv import OpenCVCamera
from mestream.cameras.video import VideoSource


def _frames(n, size=(64, 48)):
    """Frame k is uniformly k*8 (BGR), so order and identity are checkable after lossless coding."""
    return [np.full((size[1], size[0], 3), (k * 8) % 256, np.uint8) for k in range(n)]


def write_folder(path, n=12, stem="img"):
    path.mkdir()
    for k, frame in enumerate(_frames(n), start=1):
        cv2.imwrite(str(path / f"{stem}{k}.png"), frame)  # img1..img12: natural order matters
    return path


def write_video(path, n=20, fps=100.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert writer.isOpened()
    for frame in _frames(n):
        writer.write(frame)
    writer.release()
    return path


def test_folder_replays_in_natural_order(tmp_path):
    folder = write_folder(tmp_path / "EP02_01f")
    with FolderSource(folder, pace=False) as source:
        assert source.shape == (48, 64) and source.fps == 200.0
        frames = [(f.frame_id, int(f.pixels[0, 0]), f.device_ns) for f in source]
    assert [fid for fid, _, _ in frames] == list(range(12))
    assert [value for _, value, _ in frames] == [(k * 8) % 256 for k in range(12)]
    assert frames[1][2] == 5_000_000  # 200 fps


def test_folder_resize_and_bgr(tmp_path):
    folder = write_folder(tmp_path / "clip", n=3)
    with FolderSource(folder, pace=False, resolution="32x24", pixel_format="bgr8") as source:
        assert source.shape == (24, 32, 3)
        assert all(f.pixels.shape == (24, 32, 3) for f in source)


def test_folder_errors_name_the_folder_and_frame(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        FolderSource(tmp_path / "missing").open()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="holds no images"):
        FolderSource(tmp_path / "empty").open()
    folder = write_folder(tmp_path / "clip", n=4)
    (folder / "img3.png").write_bytes(b"not a png")
    with (
        FolderSource(folder, pace=False) as source,
        pytest.raises(SourceError, match=r"frame 2 \(.*img3.png\)"),
    ):
        list(source)


def test_video_replay(tmp_path):
    path = write_video(tmp_path / "session.avi")
    with VideoSource(path, pace=False) as source:
        assert source.fps == pytest.approx(100.0) and source.shape == (48, 64)
        values = [int(f.pixels.mean()) for f in source]
    assert len(values) == 20
    assert np.allclose(values, [(k * 8) % 256 for k in range(20)], atol=3)


def test_video_missing_and_corrupt(tmp_path):
    with pytest.raises(SourceError, match=r"video file .*nope.avi does not exist"):
        VideoSource(tmp_path / "nope.avi").open()
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises(SourceError, match="junk.avi"):
        VideoSource(junk).open()


def test_truncated_video_names_the_frame(tmp_path):
    path = write_video(tmp_path / "long.avi", n=60)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with VideoSource(path, pace=False) as source:
        with pytest.raises(SourceError, match=r"could not decode frame \d+ .*truncated or corrupt"):
            for _ in source:
                pass


def test_missing_camera_device():
    with pytest.raises(SourceError, match="no camera at device 97"):
        OpenCVCamera(97).open()


def test_iterating_before_open_is_an_error(tmp_path):
    with pytest.raises(SourceError, match="after open"):
        iter(FolderSource(tmp_path))


def test_sixteen_bit_images_use_one_fixed_scale(tmp_path):
    """A per-frame gain would make brightness flicker between frames; the scale is fixed."""
    folder = tmp_path / "raw16"
    folder.mkdir()
    levels = [1000, 30000, 65535]
    for k, level in enumerate(levels):
        image = np.full((24, 32), level, np.uint16)
        image[0, 0] = 0  # a dark pixel: per-frame min/max scaling would be visible
        cv2.imwrite(str(folder / f"f{k}.png"), image)
    with FolderSource(folder, pace=False) as source:
        values = [int(f.pixels[5, 5]) for f in source]
    assert values == [round(level / 257) for level in levels]


def test_unsupported_pixel_type_names_the_source(tmp_path):
    folder = tmp_path / "float"
    folder.mkdir()
    cv2.imwrite(str(folder / "f0.tiff"), np.ones((8, 8), np.float32))
    with (
        FolderSource(folder, pace=False, name="lab") as source,
        pytest.raises(SourceError, match=r"source 'lab' \(folder\): unsupported pixel type float32"),
    ):
        list(source)
