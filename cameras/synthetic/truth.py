"""Ground-truth files: the JSON and CSV forms of a list of `Event`s, and reading them back.

Both forms carry exactly the keys camera, kind, onset_frame, apex_frame, offset_frame,
class and aus, so an evaluator can score a run without importing the camera. In CSV the
AU list is joined with "+" ("AU6+AU12"), the way FACS codes are usually written.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from mestream.cameras.synthetic.schedule import Event

FIELDS: tuple[str, ...] = ("camera", "kind", "onset_frame", "apex_frame", "offset_frame", "class", "aus")


@dataclass(frozen=True)
class FrameTruth:
    """Per-frame ground truth for frames [start, start + len): what a spotter is trained on.

    ``label`` holds `LABELS` codes (0 none, 1 micro, 2 macro, 3 blink, 4 head turn),
    ``intensity`` the active item's profile (0-1), ``pose`` the planned head pose
    (tx, ty, yaw in pixels, roll in radians) and ``gain`` the lighting gain (flicker).
    """

    start: int
    label: np.ndarray
    intensity: np.ndarray
    pose: np.ndarray
    gain: np.ndarray


def write_json(events: Iterable[Event], path: str | os.PathLike[str]) -> None:
    """Write events as a JSON list of objects with the keys in `FIELDS`."""
    rows = [e.as_dict() for e in events]
    text = json.dumps(rows, indent=1)  # serialise before opening: no half-written file on error
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")


def write_csv(events: Iterable[Event], path: str | os.PathLike[str]) -> None:
    """Write events as CSV with a header row of `FIELDS`."""
    rows = [{**e.as_dict(), "aus": "+".join(e.aus)} for e in events]
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def read_ground_truth(path: str | os.PathLike[str]) -> list[Event]:
    """Read a file written by `write_json` or `write_csv` (chosen by its extension).

    A malformed file raises ValueError naming the file, the event (counted from 0 in file
    order) and the field: ``"gt.json: event 3, field 'onset_frame': expected ..."``.
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8", newline="") as f:
        if path.lower().endswith(".csv"):
            rows = list(csv.DictReader(f))
        else:
            try:
                rows = json.load(f)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a list of events, got {type(rows).__name__}")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(
                f"{path}: event {i}: expected an object with the keys {', '.join(FIELDS)}, "
                f"got {type(row).__name__}"
            )
        missing = [k for k in FIELDS if k not in row]
        if missing:
            raise ValueError(f"{path}: event {i} lacks {', '.join(missing)}")
        try:
            out.append(Event.from_dict(row))
        except ValueError as exc:
            raise ValueError(f"{path}: event {i}, {exc}") from None
    return out
