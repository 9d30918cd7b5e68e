"""What happens when: the event schedule, head pose, flicker and noise offsets, planned in blocks.

Why blocks: an infinite stream cannot be planned up front, and a training pipeline wants to
ask for the ground truth of hour three without rendering hours one and two. The timeline is
cut into blocks of ``SceneConfig.block_s`` seconds; block ``n`` is drawn from its own
generator seeded by ``(seed, n)``, so it is the same whenever and in whatever order it is
asked for. Events never cross a block edge and keep ``min_gap_s`` from each other and from
the edges, so every gap is a clearly event-free stretch.

Slow head drift and flicker are smooth functions of absolute time drawn once per seed, so
they stay continuous across block edges.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from mestream.cameras.synthetic.aus import BLINK_AUS, EMOTIONS, NO_EMOTION, choose_aus, four_class

GROUND_TRUTH_KINDS: tuple[str, ...] = ("micro", "macro", "blink")
HEAD_TURN = "head_turn"
LABELS: dict[str, int] = {"none": 0, "micro": 1, "macro": 2, "blink": 3, HEAD_TURN: 4}
"""Per-frame label codes of `FrameTruth.label`."""

REFERENCE_FACE_PX = 200.0
"""Amplitudes in `SceneConfig` are pixels on a face this tall (about 42% of 480 lines);
the camera scales them by the rendered face height."""

NOISE_BANKS = 4
NOISE_MARGIN = 32

_SCHEDULE_STREAM = 0x5C4ED
_GLOBAL_STREAM = 0x61084


@dataclass(frozen=True)
class Event:
    """Ground truth of one expression or blink, in the source's frame numbers (inclusive).

    ``emotion`` is one of DFME's seven classes, or "none" for blinks; in dicts it is the
    key "class".
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
        return {"camera": self.camera, "kind": self.kind, "onset_frame": self.onset_frame,
                "apex_frame": self.apex_frame, "offset_frame": self.offset_frame,
                "class": self.emotion, "aus": list(self.aus)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Event":
        aus = d["aus"]
        if isinstance(aus, str):  # the CSV form: "AU6+AU12"
            aus = [a for a in aus.split("+") if a]
        return cls(camera=str(d["camera"]), kind=str(d["kind"]), onset_frame=int(d["onset_frame"]),
                   apex_frame=int(d["apex_frame"]), offset_frame=int(d["offset_frame"]),
                   emotion=str(d["class"]), aus=tuple(str(a) for a in aus))


def dfme_is_micro(onset: int, apex: int, offset: int, fps: float) -> bool:
    """DFME's rule: micro when onset-to-offset is under 500 ms or onset-to-apex under 250 ms.

    In frames, as the paper writes it for 500 fps: ``offset - onset + 1 <= 250`` or
    ``apex - onset + 1 <= 125``.
    """
    return (offset - onset + 1) <= 0.5 * fps or (apex - onset + 1) <= 0.25 * fps


@dataclass(frozen=True)
class SceneConfig:
    """What the synthetic camera puts on screen besides the neutral face.

    Args:
        micro_per_min, macro_per_min, blink_per_min, turn_per_min: mean rates; a block
            that cannot fit what it drew drops events at random.
        min_gap_s: event-free time kept between any two events (and head turns).
        block_s: length of one planning block; an item longer than a block (a long
            macro-expression in short blocks) is never scheduled.
        micro_amplitude_px, macro_amplitude_px: peak displacement range, in pixels on a
            200 px tall face (`REFERENCE_FACE_PX`).
        emotions: the classes expressions are drawn from, uniformly.
        noise_sigma: sensor noise standard deviation in grey levels; 0 disables it.
        flicker: relative amplitude of the mains ripple in the lighting; 0 disables it.
        mains_hz: ripple frequency (twice the mains frequency); 0 picks 100 or 120 per seed.
        drift_px: amplitude of the slow head drift, in reference pixels; 0 disables it.
        turn_px: range of a head turn's largest shift (at the nose tip), reference pixels.
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
        for name in ("micro_per_min", "macro_per_min", "blink_per_min", "turn_per_min", "min_gap_s",
                     "noise_sigma", "flicker", "mains_hz", "drift_px"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"SceneConfig.{name} must be a finite number >= 0, got {value!r}")
        if not 2.0 <= self.block_s <= 600.0:
            raise ValueError(f"SceneConfig.block_s must be within 2-600 s, got {self.block_s!r}")
        if self.noise_sigma > 40 or self.flicker > 0.2:
            raise ValueError("SceneConfig: noise_sigma must be <= 40 grey levels and flicker <= 0.2")
        if not 0.0 < self.pose_step_px <= 1.0:
            raise ValueError(f"SceneConfig.pose_step_px must be in (0, 1], got {self.pose_step_px!r}")
        for name in ("micro_amplitude_px", "macro_amplitude_px", "turn_px"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi <= 50:
                raise ValueError(f"SceneConfig.{name} must be (low, high) with 0 <= low <= high <= 50, got {(lo, hi)!r}")
        unknown = [e for e in self.emotions if e not in EMOTIONS]
        if unknown or not self.emotions:
            raise ValueError(f"SceneConfig.emotions must be a non-empty subset of {EMOTIONS}, got {self.emotions!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SceneConfig":
        """Build from a config table; unknown keys are an error that names them."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown scene option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**kw)


@dataclass(frozen=True)
class Planned:
    """One scheduled item with what the renderer needs: the ground truth (`event`), its
    intensity ``profile`` (index 0 = onset frame) and its amplitude (pixels for
    expressions and turns, fraction of a full closure for blinks)."""

    event: Event
    profile: np.ndarray
    amplitude: float


@dataclass(frozen=True)
class Block:
    """One planning block: items in time order and per-frame arrays (index 0 = first frame)."""

    index: int
    first_frame: int
    items: tuple[Planned, ...]
    pose: np.ndarray  # (n, 4): tx, ty, yaw (px) and roll (rad)
    gain: np.ndarray  # (n,)
    noise: np.ndarray  # (n, 3): bank, row offset, column offset
    label: np.ndarray  # (n,) int8 codes of LABELS
    intensity: np.ndarray  # (n,) float32


def _sstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def intensity_profile(onset: int, apex: int, offset: int, hold: float = 0.0) -> np.ndarray:
    """Rise-apex-fall intensity for frames onset..offset: 0 at both ends, a unique 1 at apex.

    The rise is a smoothstep; the fall may first hold near the top for ``hold`` of its
    length (macro-expressions and blinks linger, micro-expressions do not).
    """
    rise = _sstep(np.arange(apex - onset + 1) / max(apex - onset, 1))
    s = np.arange(1, offset - apex + 1) / max(offset - apex, 1)
    fall = (1.0 - 0.08 * s) * (1.0 - _sstep((s - hold) / max(1.0 - hold, 1e-6)))
    return np.concatenate([rise, fall]).astype(np.float32)


class Planner:
    """Plans blocks lazily and keeps the last few; every block is a pure function of its index."""

    def __init__(self, *, seed: int, fps: float, scene: SceneConfig, camera: str, scale: float, cache: int = 8) -> None:
        self.seed, self.fps, self.scene, self.camera, self.scale = seed, fps, scene, camera, scale
        self.block_frames = max(1, int(round(scene.block_s * fps)))
        self._cache: OrderedDict[int, Block] = OrderedDict()
        self._cache_size = cache
        self._events: dict[int, tuple[Event, ...]] = {}
        g = np.random.default_rng([seed, _GLOBAL_STREAM])
        # Slow drift: three sinusoids per axis, periods 12-100 s (at most ~1 px/s at the
        # default amplitude); roll and yaw drift less.
        self._drift = [(g.uniform(0.01, 0.08, 3), g.uniform(0, 2 * np.pi, 3), g.dirichlet(np.ones(3))) for _ in range(4)]
        self._drift_amp = np.array([1.0, 0.6, 0.3, 0.004]) * scene.drift_px * np.array([scale, scale, scale, 1.0])
        self.mains_hz = scene.mains_hz or float(g.choice([100.0, 120.0]))
        self._flicker_phase = g.uniform(0, 2 * np.pi)

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

    # -- planning -------------------------------------------------------------------------

    def _draw_micro(self, rng: np.random.Generator) -> tuple:
        fps = self.fps
        longest = max(2, int(math.floor(0.5 * fps)) - 1)  # offset - onset, so that n <= fps / 2
        span = int(round((0.04 + 0.45 * rng.beta(2.2, 1.6)) * fps))
        span = min(max(span, int(math.ceil(0.04 * fps)), 2), longest)
        rise = min(max(1, int(round(rng.uniform(0.3, 0.6) * span))), span - 1)
        emotion = str(rng.choice(self.scene.emotions))
        amp = rng.uniform(*self.scene.micro_amplitude_px) * self.scale
        return ("micro", span, rise, 0.0, emotion, choose_aus(emotion, rng), amp)

    def _draw_macro(self, rng: np.random.Generator) -> tuple:
        fps = self.fps
        span = int(round(math.exp(rng.uniform(math.log(0.6), math.log(3.9))) * fps))
        span = max(span, int(math.ceil(0.55 * fps)))
        rise = max(int(round(rng.uniform(0.25, 0.45) * span)), int(math.ceil(0.27 * fps)))
        emotion = str(rng.choice(self.scene.emotions))
        amp = rng.uniform(*self.scene.macro_amplitude_px) * self.scale
        return ("macro", span, min(rise, span - 1), rng.uniform(0.2, 0.5), emotion, choose_aus(emotion, rng), amp)

    def _draw_blink(self, rng: np.random.Generator) -> tuple:
        fps = self.fps
        span = int(round((0.1 + 0.3 * rng.beta(1.6, 2.4)) * fps))
        span = max(min(span, int(math.floor(0.4 * fps))), int(math.ceil(0.1 * fps)), 3)
        rise = min(max(1, int(round(rng.uniform(0.25, 0.4) * span))), span - 1)
        return ("blink", span, rise, rng.uniform(0.1, 0.3), NO_EMOTION, BLINK_AUS, rng.uniform(0.75, 1.0))

    def _draw_turn(self, rng: np.random.Generator) -> tuple:
        span = max(3, int(round(rng.uniform(0.6, 2.0) * self.fps)))
        rise = min(max(1, int(round(rng.uniform(0.3, 0.45) * span))), span - 1)
        amp = rng.uniform(*self.scene.turn_px) * self.scale
        return (HEAD_TURN, span, rise, rng.uniform(0.2, 0.5), NO_EMOTION, (), amp)

    def _plan(self, index: int) -> Block:
        sc, fps, n = self.scene, self.fps, self.block_frames
        rng = np.random.default_rng([self.seed, _SCHEDULE_STREAM, index])
        minutes = n / fps / 60.0
        draws = []
        for rate, draw in ((sc.micro_per_min, self._draw_micro), (sc.macro_per_min, self._draw_macro),
                           (sc.blink_per_min, self._draw_blink), (sc.turn_per_min, self._draw_turn)):
            draws += [draw(rng) for _ in range(rng.poisson(rate * minutes))]
        gap = max(1, int(round(sc.min_gap_s * fps)))
        order = list(rng.permutation(len(draws)))
        while order and sum(draws[i][1] + 1 for i in order) + gap * len(order) > n:
            order.pop(int(rng.integers(len(order))))  # too much for one block: drop at random
        slack = n - sum(draws[i][1] + 1 for i in order) - gap * len(order)
        extra = np.floor(rng.dirichlet(np.ones(len(order) + 1)) * slack).astype(int) if slack > 0 else np.zeros(len(order) + 1, int)
        first = index * n
        cursor = first + gap // 2 + int(extra[0])
        items, turns = [], []
        label = np.zeros(n, np.int8)
        intensity = np.zeros(n, np.float32)
        for k, i in enumerate(order):
            kind, span, rise, hold, emotion, aus, amp = draws[i]
            onset, apex, offset = cursor, cursor + rise, cursor + span
            profile = intensity_profile(onset, apex, offset, hold)
            if kind == HEAD_TURN:
                sign = 1.0 if rng.random() < 0.5 else -1.0
                # Mostly yaw, some sideways and vertical travel, a degree or so of roll.
                roll_per_px = rng.uniform(-0.004, 0.004) / max(self.scale, 1e-6)
                pose_dir = (sign * rng.uniform(0.0, 0.3), rng.uniform(-0.3, 0.3), sign, roll_per_px)
                turns.append((onset, profile * amp, pose_dir))
            event = Event(self.camera, kind, onset, apex, offset, emotion, tuple(aus))
            items.append(Planned(event, profile, float(amp)))
            label[onset - first:offset - first + 1] = LABELS[kind]
            intensity[onset - first:offset - first + 1] = profile
            cursor = offset + 1 + gap + int(extra[k + 1])
        t = (first + np.arange(n)) / fps
        pose = np.zeros((n, 4), np.float64)
        for axis, (freq, phase, weight) in enumerate(self._drift):
            pose[:, axis] = self._drift_amp[axis] * (weight[:, None] * np.sin(2 * np.pi * freq[:, None] * t + phase[:, None])).sum(0)
        for onset, curve, pose_dir in turns:
            pose[onset - first:onset - first + len(curve)] += np.outer(curve, pose_dir)
        gain = 1.0 + sc.flicker * np.sin(2 * np.pi * self.mains_hz * t + self._flicker_phase)
        noise = np.stack([rng.integers(0, NOISE_BANKS, n), rng.integers(0, NOISE_MARGIN, n), rng.integers(0, NOISE_MARGIN, n)], 1)
        return Block(index=index, first_frame=first, items=tuple(items), pose=pose.astype(np.float32),
                     gain=gain.astype(np.float32), noise=noise.astype(np.int32), label=label, intensity=intensity)
