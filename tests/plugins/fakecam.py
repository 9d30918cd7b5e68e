"""A camera SDK package as a third party would write it, installed by the tests as a fake
distribution with entry points (see `install_fake_plugin`)."""

import numpy as np

from mestream.cameras.base import Frame, Pacer, SourceBase, now_ns


class BrokenCamera(SourceBase):
    """Test camera, paced at ``fps``, whose frame ``bad_at`` has the wrong shape."""

    pixel_format = "mono8"

    def __init__(self, bad_at: int = 5, frames: int = 400, fps: float = 500.0) -> None:
        super().__init__()
        self.name, self.fps, self.bad_at, self.frames = "brokencam", fps, bad_at, frames

    @property
    def shape(self):
        return (24, 32)

    def _frames(self):
        good, bad = np.zeros((24, 32), np.uint8), np.zeros((24, 31), np.uint8)
        pacer = Pacer(self.fps)
        for i in range(self.frames):
            pacer.wait(i)
            yield Frame(bad if i == self.bad_at else good, i, i * 2_000_000, now_ns())


class ListSink:
    """Test sink that keeps what it is sent."""

    def __init__(self, name: str = "list") -> None:
        self.name, self.dropped, self.sent = name, 0, []

    def open(self):
        pass

    def send(self, topic, payload):
        self.sent.append((topic, payload))
        return True

    def close(self):
        pass
