"""Optical flow between face crops: MESNet's input (the paper feeds it (u, v) flow).

DIS is the default: measured here on 128×128 crops, DIS "ultrafast" takes 0.08 ms a pair
and Farneback 2.5-3.4 ms, and a live 500 fps camera leaves 2 ms per frame for everything.
TV-L1 (the classic choice in the ME literature) lives in opencv-contrib's ``optflow``
module, which the headless wheel lacks; asking for it without contrib says so.
"""

from __future__ import annotations

import cv2
import numpy as np

FLOW_METHODS = ("dis", "farneback", "tvl1")
DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


class OpticalFlow:
    """Dense flow from one grey uint8 frame to the next, as (H, W, 2) float32 (u, v) pixels.

    Not thread-safe (the OpenCV objects keep state): one per thread.
    """

    def __init__(self, method: str = "dis", preset: str = "ultrafast") -> None:
        if method not in FLOW_METHODS:
            raise ValueError(f"optical flow: method must be one of {', '.join(FLOW_METHODS)}, got {method!r}")
        self.method, self.preset = method, preset
        self._dis = self._tvl1 = None
        if method == "dis":
            if preset not in DIS_PRESETS:
                raise ValueError(
                    f"optical flow: DIS preset must be one of {', '.join(DIS_PRESETS)}, got {preset!r}"
                )
            self._dis = cv2.DISOpticalFlow.create(DIS_PRESETS[preset])
        elif method == "tvl1":
            optflow = getattr(cv2, "optflow", None)
            if optflow is None:
                raise ValueError(
                    "optical flow: method 'tvl1' needs OpenCV's contrib modules "
                    "(pip install 'opencv-contrib-python-headless<5' in place of opencv-python-headless); "
                    "use 'dis' or 'farneback'"
                )
            self._tvl1 = optflow.DualTVL1OpticalFlow_create()

    def __call__(self, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        if prev.shape != cur.shape or prev.ndim != 2 or prev.dtype != np.uint8 or cur.dtype != np.uint8:
            raise ValueError(
                f"optical flow: needs two grey uint8 frames of one shape, got {prev.shape} {prev.dtype} "
                f"and {cur.shape} {cur.dtype}"
            )
        if self._dis is not None:
            # OpenCV's stubs omit that ``flow`` may be None (the call allocates the output).
            return self._dis.calc(prev, cur, None)  # type: ignore[call-overload]
        if self._tvl1 is not None:
            return self._tvl1.calc(prev, cur, None)
        # (flow=None, as above)
        return cv2.calcOpticalFlowFarneback(  # type: ignore[call-overload]
            prev, cur, None, 0.5, 3, 15, 3, 5, 1.2, 0
        )


def flow_sequence(frames: np.ndarray, method: str = "dis", preset: str = "ultrafast") -> np.ndarray:
    """Flow from each frame to the next: (N, H, W) uint8 → (N-1, H, W, 2) float32."""
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype != np.uint8:
        raise ValueError(f"flow_sequence: needs (N, H, W) uint8 frames, got {frames.shape} {frames.dtype}")
    flow = OpticalFlow(method, preset)
    out = np.empty((max(len(frames) - 1, 0), *frames.shape[1:], 2), np.float32)
    for i in range(len(out)):
        out[i] = flow(frames[i], frames[i + 1])
    return out


def sample_image(mean: np.ndarray, blur: float, out: np.ndarray | None = None) -> np.ndarray:
    """One MESNet sample: the float32 mean of its source crops, Gaussian-blurred (σ ``blur``,
    skipped when 0), rounded to uint8. Training (`mestream.models.mesnet.data.flow_steps`) and the
    live spot stage both call this, so the two cannot drift apart."""
    if blur > 0:
        mean = cv2.GaussianBlur(mean, (0, 0), blur)
    if out is None:
        out = np.empty(mean.shape, np.uint8)
    np.clip(np.rint(mean), 0, 255, out=mean)
    out[...] = mean
    return out


def flow_input(
    flow: OpticalFlow,
    prev: np.ndarray,
    cur: np.ndarray,
    size: int,
    gain: float,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """MESNet's input for one step: the flow ``prev`` → ``cur`` minus its median (head motion),
    area-averaged to ``size``×``size`` and multiplied by ``gain``, as (2, size, size) float32
    (channel 0 = dx). ``out`` may be a float16 or float32 (2, size, size) array."""
    f = flow(prev, cur)
    f -= np.median(f.reshape(-1, 2), axis=0)
    f = cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA)
    np.multiply(f, gain, out=f)
    if out is None:
        out = np.empty((2, size, size), np.float32)
    out[...] = f.transpose(2, 0, 1)
    return out
