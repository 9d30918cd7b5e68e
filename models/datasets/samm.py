"""SAMM (Davison et al. 2018): 159 micro-movements of 32 subjects at 200 fps.

Layout (``root`` holds both)::

    SAMM/006/006_1_2/006_05562.jpg     subject folder (3 digits) / clip (= Filename) / frames;
                                       the trailing number of a file is its frame number
    SAMM_Micro_FACS_Codes_v2.xlsx      title rows, then a header row: Subject, Filename,
                                       Inducement Code, Onset Frame, Apex Frame, Offset Frame,
                                       Duration, Type, Action Units, Notes, Estimated Emotion

The header row is found by its column names, so the number of title rows does not matter. Apex
-1 means "no apex" (None). Column names can be overridden with ``columns={...}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mestream.models.datasets.annotated import ClipColumns, read_clip_table
from mestream.models.datasets.base import Clip, columns_from, find_annotation, read_table, require_dir

NAME = "samm"
FPS = 200.0
SAMM_COLUMNS = ClipColumns(
    subject="Subject",
    clip="Filename",
    onset="Onset Frame",
    apex="Apex Frame",
    offset="Offset Frame",
    emotion="Estimated Emotion",
    aus="Action Units",
)


def subject_folder(subject: str) -> str:
    """6 or "006" -> "006"."""
    return f"{int(subject):03d}" if subject.strip().isdigit() else subject.strip()


def read_samm(
    root: str | Path,
    *,
    annotations: str | Path | None = None,
    frames_dir: str | Path | None = None,
    columns: Mapping[str, Any] | ClipColumns | None = None,
    fps: float = FPS,
    errors: str = "raise",
) -> list[Clip]:
    """SAMM clips, one per annotation row.

    Args:
        root: the dataset folder.
        annotations: the FACS sheet (default: the one ``SAMM_Micro_FACS_Codes*.xlsx`` or ``.csv`` in root).
        frames_dir: the folder holding the subject folders (default: ``root/SAMM`` if it exists, else root).
        columns: overrides of the SAMM column names (fields of :class:`ClipColumns`).
        fps: 200 for SAMM.
        errors: "raise" stops at the first bad row; "skip" logs and drops it.
    """
    root = require_dir(root, "SAMM")
    cols = columns_from(ClipColumns, columns, "SAMM", SAMM_COLUMNS)
    path = find_annotation(
        root, ("SAMM_Micro_FACS_Codes*.xlsx", "SAMM_Micro_FACS_Codes*.csv"), annotations, "SAMM"
    )
    table = read_table(path, header_hint=(cols.subject, cols.clip, cols.onset))
    if frames_dir is not None:
        base = Path(frames_dir) if Path(frames_dir).is_absolute() else root / frames_dir
    else:
        base = root / "SAMM" if (root / "SAMM").is_dir() else root
    return read_clip_table(
        table,
        cols,
        dataset=NAME,
        subject_of=subject_folder,
        folder_of=lambda row, subject, clip: base / subject / clip,
        fps_of=lambda row: fps,
        errors=errors,
    )
