"""Training and evaluation data from the synthetic camera: subjects, splits and face crops.

No licensed micro-expression dataset is reachable here, so both networks learn from our
own camera. Subjects are numbered so that seeds never share one: seed S owns subjects
``S*1000 ... S*1000+999``. Training uses seed 0 (training subjects first, validation
subjects after them); ``mestream eval --seed S`` draws fresh subjects from another seed,
and refuses the seed a checkpoint's card says it was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from mestream.cameras.synthetic import SceneConfig, SyntheticCamera
from mestream.engine.face import Box, FaceError, crop, detect_face, square_box

SUBJECTS_PER_SEED = 1000


def subject_ids(seed: int, count: int, start: int = 0) -> list[int]:
    """Subject numbers ``seed*1000 + start + i``; a seed's range never overlaps another's."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"synthetic data: seed must be a non-negative int, got {seed!r}")
    if count < 0 or start < 0 or start + count > SUBJECTS_PER_SEED:
        raise ValueError(
            f"synthetic data: subjects {start}..{start + count - 1} do not fit in one seed's "
            f"{SUBJECTS_PER_SEED} subjects"
        )
    return [seed * SUBJECTS_PER_SEED + start + i for i in range(count)]


def check_eval_seed(seed: int, card: dict, what: str) -> None:
    """Refuse to evaluate on the seed whose subjects trained (or validated) the model."""
    data = card.get("data", {}) if isinstance(card, dict) else {}
    trained = data.get("seed")
    if trained is not None and int(trained) == int(seed):
        raise ValueError(
            f"{what}: seed {seed} is the seed this model was trained on (model card data.seed); "
            f"evaluate on held-out subjects from another seed"
        )


def make_camera(
    subject: int,
    *,
    fps: float = 200.0,
    duration_s: float = 60.0,
    resolution: Sequence[int] = (640, 480),
    scene: SceneConfig | None = None,
) -> SyntheticCamera:
    """An unpaced camera showing subject number ``subject`` (also its schedule seed)."""
    return SyntheticCamera(
        fps=fps,
        resolution=tuple(resolution),
        seed=subject,
        subject=subject,
        duration_s=duration_s,
        pace=False,
        name=f"subject{subject:05d}",
        scene=scene,
    )


def face_box(camera: SyntheticCamera, first_frame: np.ndarray) -> Box:
    """The video's one crop box, from the Haar detector on its first frame."""
    found = detect_face(first_frame)
    if found is None:
        raise FaceError(f"synthetic data: no face found in frame 0 of {camera.name}")
    return square_box(found)


def render_crops(
    camera: SyntheticCamera, frame_ids: np.ndarray, size: int, *, progress: bool = False
) -> np.ndarray:
    """Grey ``size``×``size`` face crops of the requested source frames, in order.

    ``frame_ids`` must be sorted and unique. The camera renders every frame up to the last
    one requested (its frames depend on the ones before), so ask for all of a video's
    frames in one call rather than one call per clip.
    """
    ids = np.asarray(frame_ids, dtype=np.int64)
    if ids.ndim != 1 or (ids.size and (ids[0] < 0 or np.any(np.diff(ids) <= 0))):
        raise ValueError(
            "render_crops: frame_ids must be a 1-D sorted array of unique non-negative frame numbers"
        )
    if camera.n_frames is not None and ids.size and ids[-1] >= camera.n_frames:
        raise ValueError(
            f"render_crops: frame {int(ids[-1])} is past the end of {camera.name} ({camera.n_frames} frames)"
        )
    out = np.empty((ids.size, size, size), np.uint8)
    if not ids.size:
        return out
    box: Box | None = None
    k = 0
    last = int(ids[-1])
    with (
        camera,
        tqdm(
            total=last + 1, desc=f"render {camera.name}", unit="frame", disable=not progress, leave=False
        ) as bar,
    ):
        for frame in camera:
            fid = frame.frame_id
            if box is None:
                box = face_box(camera, frame.pixels)
            if fid == ids[k]:
                crop(frame.pixels, box, size, out=out[k])
                k += 1
            bar.update(1)
            if fid >= last:
                break
    return out
