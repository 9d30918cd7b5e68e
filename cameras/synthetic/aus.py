"""Emotion classes, DFME's emotion-to-AU table and the displacement field of each action unit.

Why fields and not re-rendered faces: a micro-expression is a motion of a pixel or two, so
what a spotter or recogniser learns from is *where* the skin moves and in which direction.
Each AU is a few Gaussian blobs of displacement anchored on the subject's landmarks; an
event's field is their sum over one patch, normalised to a peak of 1 px so that the event's
amplitude is its largest displacement in pixels. The camera remaps only that patch, each
frame, with the field scaled by the intensity profile.

Sides follow FACS: ``L-AU12`` is the subject's left, which is the image's right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mestream.cameras.synthetic.subject import FaceModel, eye_opening

EMOTIONS: tuple[str, ...] = ("happiness", "anger", "contempt", "disgust", "fear", "sadness", "surprise")
"""DFME's seven emotion classes."""

NO_EMOTION = "none"
"""The class of events that carry no emotion (blinks)."""

FOUR_CLASSES: tuple[str, ...] = ("positive", "negative", "surprise", "others")

FOUR_CLASS: dict[str, str] = {
    "happiness": "positive",
    "anger": "negative",
    "contempt": "negative",
    "disgust": "negative",
    "fear": "negative",
    "sadness": "negative",
    "surprise": "surprise",
}
"""DFME's seven classes folded into the positive/negative/surprise/others scheme of
CAS(ME)^2 and the MEGC composite set (contempt counts as negative there)."""

BLINK_AUS: tuple[str, ...] = ("AU45",)

# DFME Table 7: the emotion/AU combinations that match in MEs. "L/R-" means one side,
# picked per event.
AU_COMBINATIONS: dict[str, tuple[tuple[str, ...], ...]] = {
    "happiness": (("AU6", "AU12"), ("AU12",)),
    "anger": (("AU4", "AU5"), ("AU23",)),
    "contempt": (("L/R-AU12",), ("AU6", "L/R-AU12")),
    "disgust": (("AU4", "AU7", "AU10"), ("AU14",)),
    "fear": (("AU14", "AU24"), ("AU1", "AU4"), ("AU4", "AU5")),
    "sadness": (("AU14",), ("AU17",), ("AU15",), ("AU14", "AU24")),
    "surprise": (("AU1", "AU2", "AU5"), ("AU1", "AU2"), ("AU5",)),
}
SHARED_NEGATIVE: tuple[tuple[str, ...], ...] = (("AU4",), ("AU4", "AU7"), ("AU7",), ("AU24",))
"""Table 7's combinations shared by anger, disgust, fear and sadness."""

SHARING_EMOTIONS: tuple[str, ...] = ("anger", "disgust", "fear", "sadness")
"""The classes that also draw from `SHARED_NEGATIVE` (contempt, though negative, does not)."""

KNOWN_AUS = (
    "AU1",
    "AU2",
    "AU4",
    "AU5",
    "AU6",
    "AU7",
    "AU10",
    "AU12",
    "AU14",
    "AU15",
    "AU17",
    "AU23",
    "AU24",
    "AU45",
)


def four_class(emotion: str) -> str:
    """The 4-class label of a 7-class emotion; anything else (e.g. "none") is "others"."""
    return FOUR_CLASS.get(emotion, "others")


def choose_aus(emotion: str, rng: np.random.Generator, shared_p: float = 0.25) -> tuple[str, ...]:
    """Draw one Table 7 combination for ``emotion``, resolving L/R to a side.

    Negative classes use one of the shared combinations with probability ``shared_p``,
    as DFME reports they do often; that is what makes negative MEs hard to tell apart.
    """
    if emotion not in AU_COMBINATIONS:
        raise ValueError(f"unknown emotion {emotion!r}; known: {', '.join(EMOTIONS)}")
    combos = AU_COMBINATIONS[emotion]
    if emotion in SHARING_EMOTIONS and rng.random() < shared_p:
        combos = SHARED_NEGATIVE
    combo = combos[int(rng.integers(len(combos)))]
    side = "L" if rng.random() < 0.5 else "R"
    return tuple(au.replace("L/R", side) for au in combo)


def combinations(emotions: tuple[str, ...] = EMOTIONS) -> tuple[tuple[str, ...], ...]:
    """Every AU combination `choose_aus` can return for ``emotions``, and the blink's."""
    out: dict[tuple[str, ...], None] = {BLINK_AUS: None}
    for emotion in emotions:
        combos = AU_COMBINATIONS[emotion] + (SHARED_NEGATIVE if emotion in SHARING_EMOTIONS else ())
        for combo in combos:
            for side in "LR":
                out[tuple(au.replace("L/R", side) for au in combo)] = None
    return tuple(out)


@dataclass(frozen=True)
class Blob:
    """A Gaussian patch of displacement: centre, spread (px) and displacement at its peak."""

    x: float
    y: float
    sx: float
    sy: float
    dx: float
    dy: float


def _side_blobs(au: str, side: str, fm: FaceModel) -> list[Blob]:
    """The blobs of a one-sided AU (side "L" or "R") in the neutral image's pixels."""
    lm, a, b = fm.landmarks, fm.a, fm.b
    ex, ey = lm[f"{side}_eye"]
    ew, eh = lm["eye_half"]
    lh = lm["lip_h"][0]
    out = 1.0 if ex > fm.cx else -1.0  # +x points away from the midline on this side
    bi, bo = lm[f"{side}_brow_inner"], lm[f"{side}_brow_outer"]
    mx, my = lm[f"{side}_mouth"]
    if au == "AU1":
        return [Blob(*bi, 0.11 * a, 0.08 * b, 0.0, -1.0)]
    if au == "AU2":
        return [Blob(*bo, 0.12 * a, 0.08 * b, 0.0, -1.0)]
    if au == "AU4":
        mid = (0.5 * (bi[0] + bo[0]), bi[1])
        return [Blob(*bi, 0.11 * a, 0.08 * b, -0.5 * out, 0.8), Blob(*mid, 0.12 * a, 0.07 * b, 0.0, 0.5)]
    if au == "AU5":
        # Centred above the lid line so the lid, not the iris, carries the motion.
        return [Blob(ex, ey - 1.35 * eh, 0.85 * ew, 0.7 * eh, 0.0, -0.8)]
    if au == "AU6":
        return [
            Blob(*lm[f"{side}_cheek"], 0.14 * a, 0.1 * b, 0.0, -1.0),
            Blob(ex + 0.7 * out * ew, ey + eh, 0.5 * ew, eh, 0.0, -0.5),
        ]
    if au == "AU7":
        return [
            Blob(ex, ey + eh, 0.8 * ew, 0.7 * eh, 0.0, -0.9),
            Blob(ex, ey - eh, 0.8 * ew, 0.7 * eh, 0.0, 0.35),
        ]
    if au == "AU10":
        return [Blob(fm.cx + 0.45 * (mx - fm.cx), my - lh, 0.12 * a, 1.3 * lh, 0.0, -1.0)]
    if au == "AU12":
        return [
            Blob(mx, my, 0.11 * a, 0.08 * b, 0.75 * out, -0.7),  # the corner, up and out
            Blob(mx + 0.05 * out * a, my - 0.12 * b, 0.12 * a, 0.08 * b, 0.2 * out, -0.4),
        ]  # the cheek above it
    if au == "AU14":
        return [Blob(mx, my, 0.08 * a, 0.06 * b, 0.8 * out, 0.05)]
    if au == "AU15":
        return [Blob(mx, my, 0.1 * a, 0.07 * b, 0.1 * out, 1.0)]
    raise ValueError(f"AU {au!r} cannot be one-sided")


def _midline_blobs(au: str, fm: FaceModel) -> list[Blob]:
    lm, a, b = fm.landmarks, fm.a, fm.b
    lh = lm["lip_h"][0]
    cx = fm.cx
    _, my = lm["R_mouth"]
    if au == "AU4":
        return [Blob(*lm["glabella"], 0.08 * a, 0.06 * b, 0.0, 0.4)]
    if au == "AU17":
        return [
            Blob(cx, lm["chin"][1] - 0.1 * b, 0.2 * a, 0.1 * b, 0.0, -1.0),
            Blob(*lm["lower_lip"], 0.18 * a, 1.2 * lh, 0.0, -0.6),
        ]
    if au == "AU23":
        mw = cx - lm["R_mouth"][0]
        return [
            Blob(cx, my - 0.5 * lh, 0.45 * mw, lh, 0.0, 0.5),
            Blob(cx, my + 0.7 * lh, 0.45 * mw, lh, 0.0, -0.5),
        ]
    if au == "AU24":
        mw = cx - lm["R_mouth"][0]
        return [
            Blob(*lm["upper_lip"], 0.5 * mw, lh, 0.0, 0.8),
            Blob(*lm["lower_lip"], 0.5 * mw, 1.2 * lh, 0.0, -0.8),
        ]
    return []


def au_blobs(au: str, fm: FaceModel) -> list[Blob]:
    """All blobs of one AU label such as "AU12", "L-AU12" or "R-AU2"."""
    side = None
    name = au
    if au[:2] in ("L-", "R-"):
        side, name = au[0], au[2:]
    if name not in KNOWN_AUS or name == "AU45":
        raise ValueError(f"no displacement model for {au!r}; modelled: {', '.join(KNOWN_AUS[:-1])}")
    if side and name in _MIDLINE:
        raise ValueError(f"{au!r}: {name} has no left/right form here")
    blobs = []
    if name not in _MIDLINE:
        for sd in (side,) if side else ("R", "L"):
            blobs += _side_blobs(name, sd, fm)
    if name == "AU23":  # lips narrow toward the midline too
        for sd in ("R", "L"):
            mx, my = fm.landmarks[f"{sd}_mouth"]
            blobs.append(Blob(mx, my, 0.06 * fm.a, 0.05 * fm.b, 0.5 if mx < fm.cx else -0.5, 0.0))
    if side is None:
        blobs += _midline_blobs(name, fm)
    return blobs


_MIDLINE = ("AU17", "AU23", "AU24")


@dataclass(frozen=True)
class Field:
    """A backward-map increment over one patch of the neutral image.

    ``delta`` (h, w, 2) is what to add, per unit of amplitude in pixels, to the identity map
    ``grid`` so that ``cv2.remap`` moves the patch content forward by the displacement.
    """

    x0: int
    y0: int
    grid: np.ndarray
    delta: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        return self.delta.shape[1], self.delta.shape[0]


def _patch(
    x0: float, y0: float, x1: float, y1: float, fm: FaceModel, margin: float
) -> tuple[int, int, int, int]:
    H, W = fm.image.shape[:2]
    return (
        max(0, int(np.floor(x0 - margin))),
        max(0, int(np.floor(y0 - margin))),
        min(W, int(np.ceil(x1 + margin))),
        min(H, int(np.ceil(y1 + margin))),
    )


def _grid(x0: int, y0: int, x1: int, y1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0 : y1 - y0, 0 : x1 - x0].astype(np.float32)
    return xs, ys, np.dstack([xs, ys])


def au_field(aus: tuple[str, ...], fm: FaceModel, margin: float = 2.0) -> Field:
    """The unit field of an AU combination (peak displacement 1 px)."""
    if tuple(aus) == BLINK_AUS:
        return blink_field(fm, margin)
    blobs = [bl for au in aus for bl in au_blobs(au, fm)]
    if not blobs:
        raise ValueError(f"AU combination {aus!r} has no displacement model")
    x0, y0, x1, y1 = _patch(
        min(bl.x - 3 * bl.sx for bl in blobs),
        min(bl.y - 3 * bl.sy for bl in blobs),
        max(bl.x + 3 * bl.sx for bl in blobs),
        max(bl.y + 3 * bl.sy for bl in blobs),
        fm,
        margin,
    )
    xs, ys, grid = _grid(x0, y0, x1, y1)
    d = np.zeros(grid.shape, np.float32)
    for bl in blobs:
        g = np.exp(-0.5 * (((xs + x0 - bl.x) / bl.sx) ** 2 + ((ys + y0 - bl.y) / bl.sy) ** 2))
        d[..., 0] += bl.dx * g
        d[..., 1] += bl.dy * g
    peak = float(np.sqrt((d**2).sum(axis=2)).max())
    return Field(x0, y0, grid, (-d / max(peak, 1e-6)).astype(np.float32))


def blink_field(fm: FaceModel, margin: float = 2.0) -> Field:
    """Upper lids sliding down over the eyes; at amplitude ``blink_travel(fm)`` they close.

    Each column of the eye opening moves by its own opening height, the lid skin above it
    stretches, and the lower lid stays put (the fold at the lash line is the closed lid).
    """
    ew, eh = fm.landmarks["eye_half"]
    eyes = [fm.landmarks["R_eye"], fm.landmarks["L_eye"]]
    lid = 1.6 * eh
    x0, y0, x1, y1 = _patch(
        min(e[0] for e in eyes) - 1.3 * ew,
        eyes[0][1] - eh - lid,
        max(e[0] for e in eyes) + 1.3 * ew,
        eyes[0][1] + eh + 3.0,
        fm,
        margin,
    )
    xs, ys, grid = _grid(x0, y0, x1, y1)
    X, Y = xs + x0, ys + y0
    d = np.zeros(grid.shape, np.float32)
    travel = blink_travel(fm)
    for ex, ey in eyes:
        dx = (X - ex) / ew
        half = eye_opening(X, ex, ew, eh)
        top, bottom = ey - half, ey + half
        ramp = np.where(Y < top, np.clip((Y - (top - lid)) / lid, 0, 1), 1.0)
        ramp = ramp * np.where(Y > bottom, np.clip(1.0 - (Y - bottom) / 1.5, 0, 1), 1.0)
        ramp = ramp * ramp * (3 - 2 * ramp)
        reach = np.clip((1.15 - np.abs(dx)) / 0.2, 0, 1)
        d[..., 1] += ((2.0 * half + 1.0) * reach * ramp / travel).astype(np.float32)
    return Field(x0, y0, grid, -d)


def blink_travel(fm: FaceModel) -> float:
    """The lid travel in pixels that closes the eye: the amplitude of a full blink."""
    return 2.0 * fm.landmarks["eye_half"][1] + 1.0
