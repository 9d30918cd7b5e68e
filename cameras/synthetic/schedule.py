"""What happens when: the event schedule, head pose, flicker and noise offsets, planned in blocks.

Why blocks: an infinite stream cannot be planned up front, and a training pipeline wants to
ask for the ground truth of hour three without rendering hours one and two. The timeline is
cut into blocks of ``SceneConfig.block_s`` seconds; block ``n`` is drawn from its own
generator seeded by ``(seed, n)``, so it is the same whenever and in whatever order it is
asked for. Events never cross a block edge and keep ``min_gap_s`` from each other, across
block edges too: the first event of a block starts at least half a gap after the block's
first frame and the last one ends at least half a gap before its end.

A block holds only the schedule (a few dozen items), so planning one is cheap. The
per-frame arrays (head pose, lighting gain, labels, intensity) are computed on demand for
chunks of `CHUNK_FRAMES` frames: slow head drift and flicker are smooth functions of
absolute time drawn once per seed, so they stay continuous across block edges, and the
sensor-noise offsets are a hash of the frame number.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from mestream.cameras.synthetic.aus import BLINK_AUS, EMOTIONS, NO_EMOTION, choose_aus, four_class
from mestream.cameras.synthetic.subject import smoothstep

GROUND_TRUTH_KINDS: tuple[str, ...] = ("micro", "macro", "blink")
HEAD_TURN = "head_turn"
LABELS: dict[str, int] = {"none": 0, "micro": 1, "macro": 2, "blink": 3, HEAD_TURN: 4}
"""Per-frame label codes of `FrameTruth.label`."""

REFERENCE_FACE_PX = 200.0
"""Amplitudes in `SceneConfig` are pixels on a face this tall (about 42% of 480 lines);
the camera scales them by the rendered face height."""

NOISE_BANKS = 6
"""Sensor-noise images per camera: frames of even number draw two of the first three, odd
frames two of the last three, so consecutive frames share no noise."""
NOISE_MARGIN = 64
"""Each noise image is this much larger than the frame on both axes; a frame reads it at a
random offset (0 to ``NOISE_MARGIN - 1``) per axis."""
CHUNK_FRAMES = 256
"""Per-frame arrays are computed this many frames at a time, aligned to frame 0."""

_SCHEDULE_STREAM = 0x5C4ED
_GLOBAL_STREAM = 0x61084
_NOISE_PAIRS = np.array([(0, 1), (0, 2), (1, 2)])


@dataclass(frozen=True)
class Event:
    """Ground truth of one expression, blink or head turn, in the source's frame numbers.

    ``onset_frame`` and ``offset_frame`` are the last still frames before and after the
    motion: the intensity is 0 on both and above 0 on every frame strictly between them,
    peaking (1) on ``apex_frame``. So with nothing else moving, frame ``onset_frame``
    equals frame ``onset_frame - 1``, the first change shows on ``onset_frame + 1`` and
    frame ``offset_frame`` is back at rest. ``emotion`` is one of DFME's seven classes, or
    "none" for blinks and head turns; in dicts it is the key "class".
    """

    camera: str
    kind: str
    onset_frame: int
    apex_frame: int
    offset_frame: int
    emotion: str
    aus: tuple[str, ...]

    @property
    def duration_frames(self) -> int:
        return self.offset_frame - self.onset_frame + 1

    @property
    def four_class(self) -> str:
        return four_class(self.emotion)

    def as_dict(self) -> dict[str, Any]:
        return {
            "camera": self.camera,
            "kind": self.kind,
            "onset_frame": self.onset_frame,
            "apex_frame": self.apex_frame,
            "offset_frame": self.offset_frame,
            "class": self.emotion,
            "aus": list(self.aus),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Event:
        """Build from `as_dict`'s form or a CSV row (``aus`` joined with "+"); a missing or
        malformed field raises ValueError that names it ("field 'onset_frame': ...")."""
        if not isinstance(d, Mapping):
            raise ValueError(
                f"expected an object with the keys {', '.join(_FIELD_TYPES)}, got {type(d).__name__}"
            )
        values = {}
        for key, convert in _FIELD_TYPES.items():
            if key not in d:
                raise ValueError(f"field {key!r}: missing")
            try:
                values[key] = convert(d[key])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"field {key!r}: {exc}") from None
        return cls(
            camera=values["camera"],
            kind=values["kind"],
            onset_frame=values["onset_frame"],
            apex_frame=values["apex_frame"],
            offset_frame=values["offset_frame"],
            emotion=values["class"],
            aus=values["aus"],
        )


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _frame_number(value: Any) -> int:
    if isinstance(value, str):  # the CSV form
        value = value.strip()
        if not value.lstrip("-").isdigit():
            raise ValueError(f"expected a whole frame number, got {value!r}")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"expected a whole frame number, got {value!r}")
    if value < 0:
        raise ValueError(f"frame numbers are >= 0, got {value}")
    return int(value)


def _au_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):  # the CSV form: "AU6+AU12"
        return tuple(a for a in value.split("+") if a)
    if not isinstance(value, (list, tuple)) or not all(isinstance(a, str) for a in value):
        raise ValueError(f"expected a list of AU names or a '+'-joined string, got {value!r}")
    return tuple(value)


_FIELD_TYPES: dict[str, Callable[[Any], Any]] = {
    "camera": _text,
    "kind": _text,
    "onset_frame": _frame_number,
    "apex_frame": _frame_number,
    "offset_frame": _frame_number,
    "class": _text,
    "aus": _au_list,
}


def dfme_is_micro(onset: int, apex: int, offset: int, fps: float) -> bool:
    """DFME's rule: micro when onset-to-offset is under 500 ms or onset-to-apex under 250 ms.

    In frames, as the paper writes it for 500 fps: ``offset - onset + 1 <= 250`` or
    ``apex - onset + 1 <= 125``. Every micro-expression this camera draws satisfies the
    first branch (they last 40-500 ms, as micro-expressions are defined to), so the second
    one (a long expression with a fast rise) never decides; macro-expressions fail both.
    """
    return (offset - onset + 1) <= 0.5 * fps or (apex - onset + 1) <= 0.25 * fps


@dataclass(frozen=True)
class SceneConfig:
    """What the synthetic camera puts on screen besides the neutral face.

    Args:
        micro_per_min, macro_per_min, blink_per_min, turn_per_min: mean rates; a block
            that cannot fit what it drew drops events at random.
        min_gap_s: event-free time kept between any two events (and head turns); less
            than half of ``block_s``.
        block_s: length of one planning block, 2-600 s; an item that cannot fit in a block
            together with ``min_gap_s`` (a long macro-expression in short blocks) is never
            scheduled, so it lowers that kind's rate without crowding others out.
        micro_amplitude_px, macro_amplitude_px: peak displacement range ``(low, high)``, in
            pixels on a 200 px tall face (`REFERENCE_FACE_PX`).
        emotions: the classes expressions are drawn from, uniformly.
        noise_sigma: sensor noise standard deviation in grey levels; 0 disables it.
        flicker: relative amplitude of the mains ripple in the lighting; 0 disables it.
        mains_hz: ripple frequency (twice the mains frequency); 0 picks 100 or 120 per seed.
        drift_px: amplitude of the slow head drift, in reference pixels; 0 disables it.
        turn_px: range ``(low, high)`` of a head turn's largest shift (at the nose tip),
            reference pixels.
        pose_step_px: the head is re-warped only when its pose moved this far, which keeps
            still stretches cheap; drift is therefore rendered in steps this small.
    """

    micro_per_min: float = 18.0
    macro_per_min: float = 4.0
    blink_per_min: float = 15.0
    turn_per_min: float = 3.0
    min_gap_s: float = 0.4
    block_s: float = 10.0
    micro_amplitude_px: tuple[float, float] = (0.7, 2.0)
    macro_amplitude_px: tuple[float, float] = (3.0, 6.0)
    emotions: tuple[str, ...] = EMOTIONS
    noise_sigma: float = 2.0
    flicker: float = 0.008
    mains_hz: float = 0.0
    drift_px: float = 2.0
    turn_px: tuple[float, float] = (2.0, 6.0)
    pose_step_px: float = 0.02

    def __post_init__(self) -> None:
        for name in (
            "micro_per_min",
            "macro_per_min",
            "blink_per_min",
            "turn_per_min",
            "min_gap_s",
            "block_s",
            "noise_sigma",
            "flicker",
            "mains_hz",
            "drift_px",
            "pose_step_px",
        ):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ValueError(f"SceneConfig.{name} must be a finite number >= 0, got {value!r}")
        if not 2.0 <= self.block_s <= 600.0:
            raise ValueError(f"SceneConfig.block_s must be within 2-600 s, got {self.block_s!r}")
        if not self.min_gap_s < 0.5 * self.block_s:
            raise ValueError(
                f"SceneConfig.min_gap_s must be less than half of block_s ({0.5 * self.block_s:g} s), "
                f"got {self.min_gap_s!r}"
            )
        if self.noise_sigma > 40 or self.flicker > 0.2:
            raise ValueError("SceneConfig: noise_sigma must be <= 40 grey levels and flicker <= 0.2")
        if not 0.0 < self.pose_step_px <= 1.0:
            raise ValueError(f"SceneConfig.pose_step_px must be in (0, 1], got {self.pose_step_px!r}")
        for name in ("micro_amplitude_px", "macro_amplitude_px", "turn_px"):
            pair = getattr(self, name)
            if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(_is_number(v) for v in pair):
                raise ValueError(f"SceneConfig.{name} must be a pair of numbers (low, high), got {pair!r}")
            lo, hi = pair
            if not 0 <= lo <= hi <= 50:
                raise ValueError(
                    f"SceneConfig.{name} must be (low, high) with 0 <= low <= high <= 50, got {(lo, hi)!r}"
                )
        if (
            not isinstance(self.emotions, (tuple, list))
            or not self.emotions
            or any(e not in EMOTIONS for e in self.emotions)
        ):
            raise ValueError(
                f"SceneConfig.emotions must be a non-empty tuple of names from {EMOTIONS}, "
                f"got {self.emotions!r}"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SceneConfig:
        """Build from a config table; unknown keys are an error that names them."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown scene option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        kw: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**kw)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Draw(NamedTuple):
    """One item as drawn, before it is placed in its block (durations in frames)."""

    kind: str
    span: int  # offset - onset
    rise: int  # apex - onset
    hold: float  # share of the fall spent near the top (see `intensity_profile`)
    emotion: str
    aus: tuple[str, ...]
    amplitude: float


@dataclass(frozen=True)
class Planned:
    """One scheduled item with what the renderer needs: the ground truth (`event`), its
    intensity ``profile`` (index 0 = onset frame), its amplitude (pixels for expressions
    and turns, fraction of a full closure for blinks) and, for head turns, the pose change
    per pixel of amplitude (``direction``: tx, ty, yaw, roll)."""

    event: Event
    profile: np.ndarray
    amplitude: float
    direction: tuple[float, ...] = ()


@dataclass(frozen=True)
class Block:
    """One planning block: its first frame and its items in time order."""

    first_frame: int
    items: tuple[Planned, ...]


class Track(NamedTuple):
    """Per-frame arrays for a run of frames (index 0 = the run's first frame)."""

    pose: np.ndarray  # (n, 4) float32: tx, ty, yaw (px) and roll (rad)
    gain: np.ndarray  # (n,) float32
    label: np.ndarray  # (n,) int8 codes of LABELS
    intensity: np.ndarray  # (n,) float32


def intensity_profile(onset: int, apex: int, offset: int, hold: float = 0.0) -> np.ndarray:
    """Rise-apex-fall intensity for frames onset..offset: 0 at both ends, a unique 1 at apex.

    The rise is a smoothstep; the fall may first hold near the top for ``hold`` of its
    length (macro-expressions and blinks linger, micro-expressions do not).
    """
    rise = smoothstep(np.arange(apex - onset + 1) / max(apex - onset, 1))
    s = np.arange(1, offset - apex + 1) / max(offset - apex, 1)
    fall = (1.0 - 0.08 * s) * (1.0 - smoothstep((s - hold) / max(1.0 - hold, 1e-6)))
    return np.concatenate([rise, fall]).astype(np.float32)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a uint64 hash with every input bit reaching every output bit."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class Planner:
    """Plans blocks lazily and keeps the last few; every block is a pure function of its index.

    ``n_frames`` is the stream's length (None: endless); an item that would be cut by the
    end of the stream is left out of its block, so it is neither rendered nor reported.
    """

    def __init__(
        self,
        *,
        seed: int,
        fps: float,
        scene: SceneConfig,
        camera: str,
        scale: float,
        n_frames: int | None = None,
        cache: int = 8,
    ) -> None:
        self.seed, self.fps, self.scene, self.camera, self.scale = seed, fps, scene, camera, scale
        self.n_frames = n_frames
        self.block_frames = max(1, int(round(scene.block_s * fps)))
        self._cache: OrderedDict[int, Block] = OrderedDict()
        self._cache_size = cache
        self._events: dict[int, tuple[Event, ...]] = {}
        g = np.random.default_rng([seed, _GLOBAL_STREAM])
        # Slow drift: three sinusoids per axis, periods 12-100 s (at most ~1 px/s at the
        # default amplitude); roll and yaw drift less. Rows: tx, ty, yaw, roll.
        drift = [
            (g.uniform(0.01, 0.08, 3), g.uniform(0, 2 * np.pi, 3), g.dirichlet(np.ones(3))) for _ in range(4)
        ]
        amp = np.array([1.0, 0.6, 0.3, 0.004]) * scene.drift_px * np.array([scale, scale, scale, 1.0])
        self._drift_freq = np.array([2 * np.pi * f for f, _, _ in drift])[:, :, None]  # (4, 3, 1) rad/s
        self._drift_phase = np.array([p for _, p, _ in drift])[:, :, None]
        self._drift_weight = (np.array([w for _, _, w in drift]) * amp[:, None])[:, :, None]
        self.mains_hz = scene.mains_hz or float(g.choice([100.0, 120.0]))
        self._flicker_phase = g.uniform(0, 2 * np.pi)
        self._noise_key = np.uint64(g.integers(0, 2**63))

    def block(self, index: int) -> Block:
        block = self._cache.get(index)
        if block is None:
            block = self._plan(index)
            self._cache[index] = block
            self._events[index] = tuple(p.event for p in block.items)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(index)
        return block

    def events_between(self, start: int, stop: int) -> list[Event]:
        """Events (all kinds, head turns too) whose [onset, offset] overlaps frames [start, stop).

        Events are kept for every block ever planned (a few hundred bytes per block), so a
        long run's ground truth is not re-planned each time it is asked for.
        """
        if stop <= start:
            return []
        out = []
        for b in range(start // self.block_frames, (stop - 1) // self.block_frames + 1):
            events = self._events.get(b)
            if events is None:
                events = tuple(p.event for p in self.block(b).items)
            out += [e for e in events if e.offset_frame >= start and e.onset_frame < stop]
        return out

    def track(self, start: int, stop: int) -> Track:
        """Head pose, lighting gain, labels and intensity for frames [start, stop).

        Computed per aligned chunk of `CHUNK_FRAMES`, so a frame's values do not depend on
        the range it was asked in.
        """
        first, last = start // CHUNK_FRAMES, max(stop - 1, start) // CHUNK_FRAMES
        chunks = [self._chunk(c) for c in range(first, last + 1)]
        lo = start - first * CHUNK_FRAMES
        if len(chunks) == 1:
            return Track(*(a[lo : lo + stop - start] for a in chunks[0]))
        return Track(*(np.concatenate(parts)[lo : lo + stop - start] for parts in zip(*chunks)))

    def noise(self, start: int, stop: int) -> np.ndarray:
        """Per frame of [start, stop): ``(bank1, row1, col1, bank2, row2, col2, signs)``.

        A frame's noise is bank1 at (row1, col1) plus bank2 at (row2, col2), each with the
        sign given by bit 0 (bank2) and bit 1 (the sum) of ``signs``; see the camera. The
        choice is a hash of the frame number: random-looking, never a sequence of shifts.
        """
        fid = np.arange(start, stop, dtype=np.uint64)
        h = _mix(self._noise_key + fid * np.uint64(0x9E3779B97F4A7C15))
        group = (fid % np.uint64(2)).astype(np.int64) * 3  # even frames banks 0-2, odd frames 3-5
        pair = _NOISE_PAIRS[(h % np.uint64(3)).astype(np.int64)]
        m = np.uint64(NOISE_MARGIN)
        out = np.empty((stop - start, 7), np.int64)
        out[:, 0], out[:, 3] = group + pair[:, 0], group + pair[:, 1]
        for col, shift in ((1, 8), (2, 20), (4, 32), (5, 44)):
            out[:, col] = ((h >> np.uint64(shift)) % m).astype(np.int64)
        out[:, 6] = ((h >> np.uint64(56)) & np.uint64(3)).astype(np.int64)
        return out

    # -- planning -------------------------------------------------------------------------

    def _chunk(self, c: int) -> Track:
        a, b = c * CHUNK_FRAMES, (c + 1) * CHUNK_FRAMES
        t = np.arange(a, b) / self.fps
        pose = (self._drift_weight * np.sin(self._drift_freq * t + self._drift_phase)).sum(axis=1).T
        label = np.zeros(b - a, np.int8)
        intensity = np.zeros(b - a, np.float32)
        for index in range(a // self.block_frames, (b - 1) // self.block_frames + 1):
            for p in self.block(index).items:
                onset, offset = p.event.onset_frame, p.event.offset_frame
                if offset < a:
                    continue
                if onset >= b:
                    break
                lo, hi = max(onset, a), min(offset + 1, b)
                seg = p.profile[lo - onset : hi - onset]
                label[lo - a : hi - a] = LABELS[p.event.kind]
                intensity[lo - a : hi - a] = seg
                if p.direction:
                    pose[lo - a : hi - a] += np.outer(seg * p.amplitude, p.direction)
        gain = 1.0 + self.scene.flicker * np.sin(2 * np.pi * self.mains_hz * t + self._flicker_phase)
        return Track(pose.astype(np.float32), gain.astype(np.float32), label, intensity)

    def _draw_micro(self, rng: np.random.Generator) -> Draw:
        fps = self.fps
        longest = max(2, int(math.floor(0.5 * fps)) - 1)  # offset - onset, so that n <= fps / 2
        span = int(round((0.04 + 0.45 * rng.beta(2.2, 1.6)) * fps))
        span = min(max(span, int(math.ceil(0.04 * fps)), 2), longest)
        rise = min(max(1, int(round(rng.uniform(0.3, 0.6) * span))), span - 1)
        emotion = str(rng.choice(self.scene.emotions))
        amp = rng.uniform(*self.scene.micro_amplitude_px) * self.scale
        return Draw("micro", span, rise, 0.0, emotion, choose_aus(emotion, rng), amp)

    def _draw_macro(self, rng: np.random.Generator) -> Draw:
        fps = self.fps
        span = int(round(math.exp(rng.uniform(math.log(0.6), math.log(3.9))) * fps))
        span = max(span, int(math.ceil(0.55 * fps)))
        rise = max(int(round(rng.uniform(0.25, 0.45) * span)), int(math.ceil(0.27 * fps)))
        emotion = str(rng.choice(self.scene.emotions))
        amp = rng.uniform(*self.scene.macro_amplitude_px) * self.scale
        return Draw(
            "macro", span, min(rise, span - 1), rng.uniform(0.2, 0.5), emotion, choose_aus(emotion, rng), amp
        )

    def _draw_blink(self, rng: np.random.Generator) -> Draw:
        fps = self.fps
        span = int(round((0.1 + 0.3 * rng.beta(1.6, 2.4)) * fps))
        span = max(min(span, int(math.floor(0.4 * fps))), int(math.ceil(0.1 * fps)), 3)
        rise = min(max(1, int(round(rng.uniform(0.25, 0.4) * span))), span - 1)
        return Draw("blink", span, rise, rng.uniform(0.1, 0.3), NO_EMOTION, BLINK_AUS, rng.uniform(0.75, 1.0))

    def _draw_turn(self, rng: np.random.Generator) -> Draw:
        span = max(3, int(round(rng.uniform(0.6, 2.0) * self.fps)))
        rise = min(max(1, int(round(rng.uniform(0.3, 0.45) * span))), span - 1)
        amp = rng.uniform(*self.scene.turn_px) * self.scale
        return Draw(HEAD_TURN, span, rise, rng.uniform(0.2, 0.5), NO_EMOTION, (), amp)

    def _plan(self, index: int) -> Block:
        sc, fps, n = self.scene, self.fps, self.block_frames
        rng = np.random.default_rng([self.seed, _SCHEDULE_STREAM, index])
        minutes = n / fps / 60.0
        draws: list[Draw] = []
        for rate, draw in (
            (sc.micro_per_min, self._draw_micro),
            (sc.macro_per_min, self._draw_macro),
            (sc.blink_per_min, self._draw_blink),
            (sc.turn_per_min, self._draw_turn),
        ):
            draws += [draw(rng) for _ in range(rng.poisson(rate * minutes))]
        gap = max(1, int(round(sc.min_gap_s * fps)))
        # An item that cannot fit even alone would only push others out in the drop loop.
        draws = [d for d in draws if d.span + 1 + gap <= n]
        order = list(rng.permutation(len(draws)))
        while order and sum(draws[i].span + 1 for i in order) + gap * len(order) > n:
            order.pop(int(rng.integers(len(order))))  # too much for one block: drop at random
        slack = n - sum(draws[i].span + 1 for i in order) - gap * len(order)
        extra = (
            np.floor(rng.dirichlet(np.ones(len(order) + 1)) * slack).astype(int)
            if slack > 0
            else np.zeros(len(order) + 1, int)
        )
        first = index * n
        # floor(gap / 2) free frames before the first item, at least ceil(gap / 2) after the last.
        cursor = first + gap // 2 + int(extra[0])
        items = []
        for k, i in enumerate(order):
            d = draws[i]
            onset, apex, offset = cursor, cursor + d.rise, cursor + d.span
            cursor = offset + 1 + gap + int(extra[k + 1])
            direction: tuple[float, ...] = ()
            if d.kind == HEAD_TURN:
                sign = 1.0 if rng.random() < 0.5 else -1.0
                # Mostly yaw, some sideways and vertical travel, a degree or so of roll.
                roll_per_px = rng.uniform(-0.004, 0.004) / max(self.scale, 1e-6)
                direction = (sign * rng.uniform(0.0, 0.3), rng.uniform(-0.3, 0.3), sign, roll_per_px)
            if self.n_frames is not None and offset >= self.n_frames:
                continue  # cut by the end of the stream
            event = Event(self.camera, d.kind, onset, apex, offset, d.emotion, tuple(d.aus))
            items.append(
                Planned(event, intensity_profile(onset, apex, offset, d.hold), float(d.amplitude), direction)
            )
        return Block(first_frame=first, items=tuple(items))
