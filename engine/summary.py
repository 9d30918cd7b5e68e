"""The end-of-run summary: what a run did, printed when it ends and written by ``--summary``.

Kept apart from the pipeline that fills it so the report's wording and the file's fields can
change without touching how the run is assembled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mestream.engine.scoring import format_scores


def frames_dropped(drops: dict[str, int]) -> int:
    """Frames lost from the drop counters: camera gaps, and frames or crops overwritten before
    a stage read them (``spot_skip``, crops a lagging spotter read past, is counted apart)."""
    return sum(drops.get(k, 0) for k in ("camera", "ring_overrun", "spot_overrun"))


def events_dropped(drops: dict[str, int]) -> int:
    """Events lost from the drop counters: bus and sink drops, and recognition clips dropped
    from a full queue, lost, or abandoned at a stop."""
    return sum(
        v
        for k, v in drops.items()
        if k in ("bus", "invalid", "recog_backlog", "recog_lost", "recog_abandoned") or k.startswith("sink:")
    )


@dataclass
class Summary:
    """What a run did, printed when it ends and written by ``--summary`` as JSON."""

    camera: str
    source: str
    seconds: float
    frames_in: int
    frames_out: int
    fps: float
    drops: dict[str, int]
    events: dict[str, int]  # events published by topic (spots, recognitions, health), stats messages apart
    stats_messages: int = 0
    spots: int = 0
    recognitions: int = 0
    scores: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""
    interrupted: bool = False

    def format(self) -> str:
        lost = {k: v for k, v in self.drops.items() if v}
        lines = [
            "mestream run summary "
            f"({'interrupted' if self.interrupted else 'stopped by error' if self.error else 'finished'})",
            f"  cameras {self.camera}: {self.source}",
            f"  frames in {self.frames_in}, out {self.frames_out}, "
            f"in {self.seconds:.1f} s ({self.fps:.1f} fps)",
            f"  drops and skips: {', '.join(f'{k} {v}' for k, v in lost.items()) if lost else 'none'}",
            f"  events published: {self._events()}; {self.stats_messages} stats messages",
        ]
        lines += [f"  {line}" for line in (format_scores(self.scores) if self.scores else [])]
        scored = self.scores.get("cameras")
        unscored = [c for c in self.camera.split(", ") if scored is not None and c not in scored]
        if unscored:
            lines.append(f"  not scored: {', '.join(unscored)} (no ground truth: a real camera or a replay)")
        lines += [f"  {note}" for note in self.notes]
        lines += [f"  wrote {path}" for path in self.outputs]
        return "\n".join(lines)

    def _events(self) -> str:
        """``3 spot, 2 recog, 2 health``: the topic's last part, in the order the topics first appeared."""
        shown = {topic.rpartition(".")[2]: n for topic, n in self.events.items()}
        shown = {"spot": shown.pop("spot", 0), "recog": shown.pop("recog", 0), **shown}
        return ", ".join(f"{n} {name}" for name, n in shown.items())

    def as_json(self) -> dict[str, Any]:
        """The ``--summary`` file: the headline figures first, everything else after."""
        scores = self.scores or {}
        spot_lat, recog_lat = scores.get("spot_latency_ms", {}), scores.get("recog_latency_ms", {})
        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "frames_dropped": frames_dropped(self.drops),
            "skips": self.drops.get("spot_skip", 0),
            "events_dropped": events_dropped(self.drops),
            "spot_f1": scores.get("spot_f1"),
            "recog_uf1": scores.get("recog_uf1"),
            "spot_latency_ms": {k: spot_lat.get(k) if spot_lat.get("n") else None for k in ("p50", "p99")},
            "recog_latency_ms": {k: recog_lat.get(k) if recog_lat.get("n") else None for k in ("p50", "p99")},
            **{k: v for k, v in asdict(self).items() if k not in ("frames_in", "frames_out")},
        }
