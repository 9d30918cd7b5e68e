"""CASME II (Yan et al. 2014): 247 clips of 26 subjects at 200 fps.

Layout (as distributed; ``root`` is the folder holding both)::

    CASME2_RAW_selected/            (or CASME2-RAW/, Cropped/; or pass frames_dir=)
        sub01/EP02_01f/img46.jpg    frame files numbered like the sheet (Cropped: reg_img46.jpg)
    CASME2-coding-20140508.xlsx     header row: Subject, Filename, OnsetFrame, ApexFrame,
                                    OffsetFrame, Action Units, Estimated Emotion

``Subject`` is the number (1 or "01"); the folder is ``sub`` + two digits. ApexFrame "/" means
"no apex" (None). Column names can be overridden with ``columns={"emotion": "Objective Class"}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mestream.models.datasets.annotated import ClipColumns, read_clip_table
from mestream.models.datasets.base import (
    Clip,
    DatasetError,
    columns_from,
    find_annotation,
    read_table,
    require_dir,
)

NAME = "casme2"
FPS = 200.0
FRAME_FOLDERS = ("CASME2_RAW_selected", "CASME2-RAW", "CASME2_RAW", "Cropped")


def subject_folder(subject: str) -> str:
    """1, "01" or "sub01" -> "sub01"."""
    text = subject.strip()
    if text.lower().startswith("sub"):
        text = text[3:]
    return f"sub{int(text):02d}" if text.isdigit() else subject


def _frames_root(root: Path, frames_dir: str | Path | None) -> Path:
    if frames_dir is not None:
        path = Path(frames_dir)
        return path if path.is_absolute() else root / path
    for name in FRAME_FOLDERS:
        if (root / name).is_dir():
            return root / name
    if any(p.is_dir() and p.name.lower().startswith("sub") for p in root.iterdir()):
        return root
    raise DatasetError(
        f"CASME II: no frame folder ({', '.join(FRAME_FOLDERS)} or sub*/) under {root}; pass frames_dir=",
        file=root,
    )


def read_casme2(
    root: str | Path,
    *,
    annotations: str | Path | None = None,
    frames_dir: str | Path | None = None,
    columns: Mapping[str, Any] | ClipColumns | None = None,
    fps: float = FPS,
    errors: str = "raise",
) -> list[Clip]:
    """CASME II clips, one per annotation row.

    Args:
        root: the dataset folder.
        annotations: the coding sheet (default: the one ``CASME2-coding-*.xlsx`` or ``.csv`` in root).
        frames_dir: the folder holding ``subXX/`` (default: the first of CASME2_RAW_selected,
            CASME2-RAW, Cropped found in root, else root itself).
        columns: spreadsheet column names (see :class:`ClipColumns`).
        fps: 200 for CASME II.
        errors: "raise" stops at the first bad row; "skip" logs and drops it.
    """
    root = require_dir(root, "CASME II")
    cols = columns_from(ClipColumns, columns, "CASME II")
    table = read_table(
        find_annotation(root, ("CASME2-coding*.xlsx", "CASME2-coding*.csv"), annotations, "CASME II"),
        header_hint=(cols.subject, cols.clip, cols.onset),
    )
    base = _frames_root(root, frames_dir)
    return read_clip_table(
        table,
        cols,
        dataset=NAME,
        subject_of=subject_folder,
        folder_of=lambda row, subject, clip: base / subject / clip,
        fps_of=lambda row: fps,
        errors=errors,
    )
