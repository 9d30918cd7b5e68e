"""Synthetic subjects: a seeded parameter set and its one-off neutral rendering.

A subject is a handful of numbers (face shape, feature placement, skin, hair, lighting,
background), drawn from ``Subject.from_seed(k)`` so that any number of unseen people can
be made for subject-independent splits. ``render_face`` turns those numbers into a static
neutral image plus the geometry the animator needs (landmarks, a head weight map that says
how rigidly each pixel follows the head, and a depth map for head turns). It runs once per
camera, so it favours clarity over speed; nothing here is on the per-frame path.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_SUBJECT_STREAM = 0x5EB1EC7  # mixed into the seed so subject k and camera seed k differ


@dataclass(frozen=True)
class Subject:
    """Appearance of one synthetic person, in resolution-free units.

    Face geometry is in units of the face ellipse: ``u`` runs from -1 (image left) to +1
    across the face width and ``v`` from -1 (top of the forehead) to +1 (chin). Grey levels
    are fractions of 255.

    Args:
        subject_id: the seed the subject was drawn from.
        face_height: face ellipse height as a fraction of image height (0.35-0.5 by design).
        aspect: face width / face height.
        center_x, center_y: face centre as fractions of image width and height.
        skin: skin albedo; hair, shirt, background: their mean levels.
        hair_volume, hair_length, hairline: hair shape (extra size, how far down the sides
            it falls in ``v``, forehead hairline height in ``v``).
        eye_x, eye_y, eye_w, eye_open, iris: eye centre ``|u|`` and ``v``, half width in
            ``u``, opening (half height / half width) and iris level.
        brow_gap, brow_thick, brow_dark, brow_arch: brow height above the eye (``v``),
            thickness (``v``), darkening and arch (``v``).
        nose_y, nose_w: nose tip ``v`` and wing half width (``u``).
        mouth_y, mouth_w, lip_h, lip_dark: mouth line ``v``, half width (``u``), upper lip
            height (``v``), lip darkening.
        light_x, light_y, ambient: light direction and ambient share of the shading.
        socket_depth: how much darker the eye sockets are.
        texture: skin texture amplitude (fraction of the skin level).
    """

    subject_id: int
    face_height: float
    aspect: float
    center_x: float
    center_y: float
    skin: float
    hair: float
    shirt: float
    background: float
    hair_volume: float
    hair_length: float
    hairline: float
    eye_x: float
    eye_y: float
    eye_w: float
    eye_open: float
    iris: float
    brow_gap: float
    brow_thick: float
    brow_dark: float
    brow_arch: float
    nose_y: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_h: float
    lip_dark: float
    light_x: float
    light_y: float
    ambient: float
    socket_depth: float
    texture: float

    @classmethod
    def from_seed(cls, k: int) -> Subject:
        """Subject number ``k`` (any non-negative int): the same k always gives the same person."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"subject seed must be a non-negative int, got {k!r}")
        rng = np.random.default_rng([int(k), _SUBJECT_STREAM])
        u = rng.uniform
        skin = u(0.42, 0.80)
        # Keep the background from matching the skin: Haar needs the face outline.
        background = u(0.15, 0.78)
        if abs(background - skin) < 0.15:
            background = float(np.clip(skin + (0.3 if skin < 0.55 else -0.3), 0.1, 0.9))
        # Hair darker than skin keeps the forehead outline Haar relies on.
        hair = min(u(0.04, 0.45), 0.7 * skin)
        return cls(
            subject_id=int(k),
            face_height=u(0.38, 0.47),
            aspect=u(0.72, 0.82),
            center_x=0.5 + u(-0.06, 0.06),
            center_y=0.47 + u(-0.03, 0.03),
            skin=skin,
            hair=hair,
            shirt=u(0.1, 0.85),
            background=background,
            hair_volume=u(0.0, 1.0),
            hair_length=u(-0.2, 1.3),
            hairline=u(-0.95, -0.78),
            eye_x=u(0.40, 0.47),
            eye_y=u(-0.16, -0.07),
            eye_w=u(0.17, 0.21),
            eye_open=u(0.36, 0.5),
            iris=u(0.12, 0.4),
            brow_gap=u(0.16, 0.22),
            brow_thick=u(0.045, 0.07),
            brow_dark=u(0.35, 0.7),
            brow_arch=u(0.02, 0.06),
            nose_y=u(0.22, 0.30),
            nose_w=u(0.17, 0.24),
            mouth_y=u(0.49, 0.57),
            mouth_w=u(0.30, 0.40),
            lip_h=u(0.045, 0.07),
            lip_dark=u(0.15, 0.32),
            light_x=u(-0.5, 0.5),
            light_y=u(-0.5, 0.0),
            ambient=u(0.45, 0.62),
            socket_depth=u(0.18, 0.32),
            texture=u(0.015, 0.035),
        )


@dataclass(frozen=True)
class FaceModel:
    """A subject rendered at one resolution: neutral image and the animator's geometry.

    ``weight`` is 1 on the head (face, hair, ears), 0 on the static scene and ramps between
    them, so a head pose warp moves the head and drags only a thin band of background.
    ``depth`` (already multiplied by ``weight``) is 1 at the nose tip and 0 at the face
    outline: a head turn shifts pixels by ``yaw * depth``.
    """

    image: np.ndarray
    weight: np.ndarray
    depth: np.ndarray
    head_box: tuple[int, int, int, int]
    landmarks: dict[str, tuple[float, float]]
    cx: float
    cy: float
    a: float
    b: float


def smoothstep(x: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, and the cubic ``3x^2 - 2x^3`` between (flat at both ends)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def eye_opening(x: np.ndarray, ex: float, ew: float, eh: float) -> np.ndarray:
    """Half height of the eye opening over columns ``x`` for an eye centred at ``ex`` with
    half width ``ew`` and half height ``eh``: an almond, slightly taller toward the image
    left, 0 beyond the corners. The renderer draws the eye with it and the blink closes it."""
    dx = (x - ex) / ew
    return eh * np.sqrt(np.clip(1.0 - dx * dx, 0.0, 1.0)) * (1.0 - 0.12 * dx)


def _inside(signed_px: np.ndarray, soft: float = 1.0) -> np.ndarray:
    """Anti-aliased coverage from a signed distance in pixels (positive inside)."""
    return np.clip(signed_px / soft + 0.5, 0.0, 1.0)


def _gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Zero-mean, unit-ish noise with features about ``cell`` pixels across."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    small = rng.standard_normal((gh, gw)).astype(np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return big / max(float(big.std()), 1e-6)


def _fine_noise(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    n: np.ndarray = rng.standard_normal((h, w)).astype(np.float32)
    n = cv2.GaussianBlur(n, (0, 0), sigma)
    return n / max(float(n.std()), 1e-6)


def _segment_distance(x, y, p0, p1):
    """Distance in pixels from each pixel to the segment p0-p1."""
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / max(dx * dx + dy * dy, 1e-6), 0.0, 1.0)
    return np.hypot(x - (x0 + t * dx), y - (y0 + t * dy))


def render_face(subject: Subject, width: int, height: int) -> FaceModel:
    """Render ``subject`` neutral at ``width`` x ``height`` (grey, uint8) with its geometry."""
    rng = np.random.default_rng([subject.subject_id, _SUBJECT_STREAM, width, height])
    s = subject
    H, W = height, width
    px = H / 480.0  # feature sizes that are "a pixel or two" scale with the image
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    b = 0.5 * s.face_height * H
    a = s.aspect * b
    cx, cy = s.center_x * W, s.center_y * H
    u, v = (x - cx) / a, (y - cy) / b
    r = np.sqrt(u * u + v * v)

    # Static scene: smooth blotches, a few soft-edged shapes (shelves, a door), fine grain.
    img = (
        s.background
        * 255.0
        * (1.0 + 0.08 * _smooth_noise(rng, H, W, 60 * px) + 0.03 * _smooth_noise(rng, H, W, 12 * px))
    )
    img *= 1.0 + 0.15 * (x / W - 0.5) * rng.uniform(-1, 1)
    for _ in range(rng.integers(2, 5)):
        x0, y0 = rng.uniform(-0.1, 0.9) * W, rng.uniform(-0.1, 0.8) * H
        x1, y1 = x0 + rng.uniform(0.1, 0.5) * W, y0 + rng.uniform(0.05, 0.4) * H
        box = _inside(np.minimum.reduce([x - x0, x1 - x, y - y0, y1 - y]), 1.5 * px)
        img = img * (1 - box) + box * img * rng.uniform(0.75, 1.2)
    img += 3.0 * _fine_noise(rng, H, W, 0.8)

    # Torso and neck, part of the static scene: the head turns on top of them.
    shoulder = cy + 1.18 * b
    torso_half = a * (1.25 + 2.2 * np.clip((y - shoulder) / b, 0, None))
    torso = _inside(np.minimum(torso_half - np.abs(x - cx), (y - shoulder) * 3.0), 2 * px)
    shirt = s.shirt * 255.0 * (1.0 + 0.05 * _smooth_noise(rng, H, W, 20 * px))
    img = img * (1 - torso) + torso * shirt
    neck = _inside(np.minimum(0.52 * a - np.abs(x - cx), y - cy), 1.5 * px) * (y < shoulder + 0.4 * b)
    neck_shade = 0.62 + 0.2 * np.clip((y - (cy + b)) / (0.5 * b), 0, 1)
    img = img * (1 - neck) + neck * s.skin * 255.0 * neck_shade

    # Back hair: a larger ellipse behind the head, falling down the sides by hair_length.
    ha, hb = a * (1.1 + 0.12 * s.hair_volume), b * (1.06 + 0.1 * s.hair_volume)
    hr = np.sqrt(((x - cx) / ha) ** 2 + ((y - (cy - 0.08 * b)) / hb) ** 2)
    hair_mask = _inside((1.0 - hr) * hb, 1.5 * px) * _inside((s.hair_length - v) * b, 3 * px)
    strands = cv2.blur(rng.standard_normal((H, W)).astype(np.float32), (1, max(3, int(9 * px)))) * 0.25
    hair_img = s.hair * 255.0 * (1.0 + 0.5 * strands) * (1.0 + 0.15 * _smooth_noise(rng, H, W, 15 * px))
    img = img * (1 - hair_mask) + hair_mask * hair_img

    # Ears, in front of the back hair unless the hair is long.
    ear_img = s.skin * 255.0 * 0.78
    for side in (-1.0, 1.0):
        er = np.sqrt(
            ((x - (cx + side * 0.98 * a)) / (0.13 * a)) ** 2 + ((y - (cy - 0.02 * b)) / (0.2 * b)) ** 2
        )
        ear = _inside((1.0 - er) * 0.13 * a, 1.2 * px) * (1.0 - 0.8 * hair_mask * (s.hair_length > 0.3))
        img = img * (1 - ear) + ear * ear_img

    # Face: a shaded ellipsoid of skin, then multiplicative features.
    face = _inside((1.0 - r) * min(a, b), 1.2 * px)
    nz = np.sqrt(np.clip(1.0 - 0.85 * r * r, 0.0, 1.0))
    light = np.array([s.light_x, s.light_y, 1.0])
    light /= np.linalg.norm(light)
    norm = np.sqrt(0.64 * u * u + 0.49 * v * v + nz * nz) + 1e-6
    lambert = np.clip((0.8 * u * light[0] + 0.7 * v * light[1] + nz * light[2]) / norm, 0, 1)
    shade = s.ambient + (1.0 - s.ambient) * lambert
    f = np.ones_like(x)

    ex_r, ex_l = cx - s.eye_x * a, cx + s.eye_x * a  # subject's right eye is on the image left
    ey = cy + s.eye_y * b
    ew, eh = s.eye_w * a, s.eye_w * a * s.eye_open
    for ex in (ex_r, ex_l):
        f *= 1.0 - s.socket_depth * _gauss(x, y, ex, ey - 0.2 * eh, 1.5 * ew, 2.6 * eh)
        f *= 1.0 + 0.06 * _gauss(x, y, ex + np.sign(ex - cx) * 0.1 * a, ey + 0.33 * b, 0.2 * a, 0.12 * b)
    # Nose: bright bridge and tip, darker flanks and nostrils, wings.
    ny = cy + s.nose_y * b
    bridge = (
        np.exp(-0.5 * ((x - cx) / (0.06 * a)) ** 2)
        * smoothstep((y - ey) / (0.3 * b))
        * smoothstep((ny - y) / (0.05 * b) + 1)
    )
    f *= 1.0 + 0.10 * bridge
    f *= 1.0 + 0.08 * _gauss(x, y, cx, ny - 0.02 * b, 0.09 * a, 0.05 * b)
    for side in (-1.0, 1.0):
        flank = _gauss(x, y, cx + side * 0.13 * a, 0.5 * (ey + ny), 0.06 * a, 0.2 * b)
        f *= 1.0 - (0.1 + 0.08 * side * s.light_x) * flank
        f *= 1.0 - 0.55 * _gauss(x, y, cx + side * 0.09 * a, ny + 0.035 * b, 0.045 * a, 0.018 * b)
        f *= 1.0 - 0.18 * np.exp(
            -0.5
            * (
                _segment_distance(
                    x,
                    y,
                    (cx + side * s.nose_w * a, ny - 0.08 * b),
                    (cx + side * (s.nose_w - 0.03) * a, ny + 0.03 * b),
                )
                / (1.2 * px)
            )
            ** 2
        )
    # Mouth: lips, the dark mouth line, a shadow under the lower lip, nasolabial folds.
    my, mw, lh = cy + s.mouth_y * b, s.mouth_w * a, s.lip_h * b
    t = np.clip((x - cx) / mw, -1.0, 1.0)
    span = np.sqrt(np.clip(1.0 - t * t, 0.0, 1.0))
    line_y = my + 0.15 * lh * t * t
    upper = line_y - lh * span * (1.0 - 0.25 * np.exp(-0.5 * (t / 0.12) ** 2))
    lower = line_y + 1.35 * lh * span
    in_mouth = np.abs(x - cx) < mw
    lips = _inside(np.minimum(y - upper, lower - y), 0.8 * px) * in_mouth
    f *= 1.0 - s.lip_dark * lips
    f *= 1.0 + 0.08 * lips * _gauss(x, y, cx, line_y + 0.8 * lh, 0.35 * mw, 0.35 * lh)
    f *= 1.0 - 0.6 * np.exp(-0.5 * ((y - line_y) / (0.9 * px)) ** 2) * smoothstep((1.0 - np.abs(t)) * 6.0)
    f *= 1.0 - 0.14 * _gauss(x, y, cx, lower + 0.9 * lh, 0.45 * mw, 0.5 * lh)
    for side in (-1.0, 1.0):
        fold = _segment_distance(
            x,
            y,
            (cx + side * (s.nose_w + 0.03) * a, ny - 0.03 * b),
            (cx + side * (s.mouth_w + 0.1) * a, my + 0.1 * b),
        )
        f *= 1.0 - 0.12 * np.exp(-0.5 * (fold / (1.6 * px)) ** 2)
    # Brows: tapered arcs with a hair texture.
    brow_y = ey - s.brow_gap * b
    brow_tex = 0.8 + 0.2 * np.clip(
        cv2.blur(rng.standard_normal((H, W)).astype(np.float32), (max(3, int(5 * px)), 1)), -1, 1
    )
    brow_half = 1.25 * ew
    for ex in (ex_r, ex_l):
        side = np.sign(ex - cx)
        bx = ex + side * 0.05 * a
        tt = (x - bx) / brow_half  # -1..1 along the brow
        outer = np.clip(side * tt, -1, 1)  # +1 at the outer end
        arc = brow_y - s.brow_arch * b * (1.0 - tt * tt) + 0.02 * b * outer
        thick = s.brow_thick * b * (1.0 - 0.45 * np.clip(outer, 0, 1)) * 0.5
        brow = _inside(np.minimum(thick - np.abs(y - arc), (1.0 - np.abs(tt)) * brow_half), 1.2 * px)
        f *= 1.0 - s.brow_dark * brow * brow_tex
        # Lid crease and the shadow under the brow ridge.
        crease = np.abs(y - (ey - 1.35 * eh * np.sqrt(np.clip(1 - ((x - ex) / (1.1 * ew)) ** 2, 0, 1))))
        f *= 1.0 - 0.12 * np.exp(-0.5 * (crease / (1.0 * px)) ** 2) * (np.abs(x - ex) < 1.1 * ew)
    f *= 1.0 + s.texture * _fine_noise(rng, H, W, 0.7) + 0.5 * s.texture * _smooth_noise(rng, H, W, 8 * px)
    face_img = s.skin * 255.0 * shade * f

    # Hair fringe over the forehead above the hairline.
    fringe = face * _inside((s.hairline + 0.45 * u * u - v) * b, 2 * px)
    img = img * (1 - face) + face * face_img
    img = img * (1 - fringe) + fringe * hair_img

    # Eyes: almond openings with sclera, iris, pupil and a dark upper lid line.
    for ex in (ex_r, ex_l):
        dx = (x - ex) / ew
        half = eye_opening(x, ex, ew, eh)
        eye = _inside(np.minimum(half - np.abs(y - ey), (1.0 - np.abs(dx)) * ew), 0.8 * px)
        ir = np.hypot(x - ex, y - ey)
        sclera = s.skin * 255.0 * 0.8 * shade + 40.0
        iris = _inside(0.48 * ew - ir, 0.8 * px)
        pupil = _inside(0.2 * ew - ir, 0.8 * px)
        eye_img = sclera * (1 - iris) + iris * (s.iris * 255.0 * (1 - pupil) + pupil * 12.0)
        img = img * (1 - eye) + eye * eye_img
        lid = np.exp(-0.5 * ((y - (ey - half)) / (1.1 * px)) ** 2) * (np.abs(dx) < 1.05)
        img *= 1.0 - 0.65 * lid
        img *= 1.0 - 0.25 * np.exp(-0.5 * ((y - (ey + half)) / (0.8 * px)) ** 2) * (np.abs(dx) < 0.9)

    image = np.clip(img, 0, 255).astype(np.uint8)

    # Head weight: 1 on the head, ramping to 0 over a band of background and neck.
    head = np.maximum(np.maximum(face, hair_mask * (v < 0.9)), 0.0) > 0.5
    ears = (np.abs(np.abs(u) - 0.98) < 0.13) & (np.abs(v + 0.02) < 0.2)
    head |= ears
    band = max(5.0, 0.16 * b)
    outside = cv2.distanceTransform((~head).astype(np.uint8), cv2.DIST_L2, 5)
    weight = (1.0 - smoothstep(outside / band)).astype(np.float32)
    depth = np.sqrt(np.clip(1.0 - r * r, 0.0, 1.0)) * 0.8
    depth += (
        0.35
        * np.exp(-0.5 * ((x - cx) / (0.1 * a)) ** 2)
        * smoothstep((y - ey) / (0.25 * b))
        * smoothstep((ny + 0.05 * b - y) / (0.05 * b))
    )
    depth = (np.clip(depth / max(float(depth.max()), 1e-6), 0, 1) * weight).astype(np.float32)
    ys, xs = np.nonzero(weight > 0)
    head_box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)

    landmarks = {
        "R_eye": (ex_r, ey),
        "L_eye": (ex_l, ey),
        "eye_half": (ew, eh),
        "R_brow_inner": (ex_r + 0.8 * ew, brow_y),
        "R_brow_outer": (ex_r - 1.0 * ew, brow_y),
        "L_brow_inner": (ex_l - 0.8 * ew, brow_y),
        "L_brow_outer": (ex_l + 1.0 * ew, brow_y),
        "glabella": (cx, brow_y + 0.02 * b),
        "nose_tip": (cx, ny),
        "R_cheek": (ex_r - 0.05 * a, ey + 0.3 * b),
        "L_cheek": (ex_l + 0.05 * a, ey + 0.3 * b),
        "R_mouth": (cx - mw, my),
        "L_mouth": (cx + mw, my),
        "upper_lip": (cx, my - lh),
        "lower_lip": (cx, my + 1.2 * lh),
        "chin": (cx, cy + 0.85 * b),
        "lip_h": (lh, lh),
    }
    return FaceModel(
        image=image,
        weight=weight,
        depth=depth,
        head_box=head_box,
        landmarks=landmarks,
        cx=cx,
        cy=cy,
        a=a,
        b=b,
    )
