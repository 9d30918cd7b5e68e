"""DFME (Zhao et al. 2023): 7,526 clips of 656 subjects in three parts (A 500 fps, B 300 fps, C 200 fps).

The DFME paper describes the data (parts, frame rates, seven emotions, AUs, onset / apex /
offset) but not the folder and sheet layout of the release, which is handed out under licence.
This reader therefore expects the following layout, chosen to match the other datasets; every
column name and the part -> frame-rate table can be changed::

    PART_A/<clip>/<frames numbered like the sheet>     (PART_B/, PART_C/ alike)
    <one annotation file *.xlsx or *.csv in root>      header row: Subject, Clip, Part,
                                                       OnsetFrame, ApexFrame, OffsetFrame,
                                                       Emotion, Action Units

``Part`` names the folder the clip is in and decides its frame rate; with ``columns={"part": ""}``
clips sit directly under ``frames_dir`` and all share ``fps``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mestream.models.datasets.annotated import ClipColumns, read_clip_table
from mestream.models.datasets.base import (
    Clip,
    DatasetError,
    Row,
    cell_str,
    columns_from,
    find_annotation,
    read_table,
    require_dir,
)

NAME = "dfme"
PART_FPS = {"PART_A": 500.0, "PART_B": 300.0, "PART_C": 200.0}


@dataclass(frozen=True)
class DFMEColumns(ClipColumns):
    """Column names of the DFME sheet (see the module docstring); ``part`` "" = no part column."""

    clip: str = "Clip"
    emotion: str = "Emotion"
    part: str = "Part"


def read_dfme(
    root: str | Path,
    *,
    annotations: str | Path | None = None,
    frames_dir: str | Path | None = None,
    columns: Mapping[str, Any] | DFMEColumns | None = None,
    part_fps: Mapping[str, float] | None = None,
    fps: float | None = None,
    errors: str = "raise",
) -> list[Clip]:
    """DFME clips, one per annotation row (layout chosen by us; see the module docstring).

    Args:
        root: the dataset folder.
        annotations: the annotation sheet (default: the one .xlsx / .csv file in root).
        frames_dir: the folder holding the part folders (default root).
        columns: column names (see :class:`DFMEColumns`).
        part_fps: part folder -> frame rate (default PART_A 500, PART_B 300, PART_C 200).
        fps: frame rate for every clip; required when there is no part column.
        errors: "raise" stops at the first bad row; "skip" logs and drops it.
    """
    root = require_dir(root, "DFME")
    cols = columns_from(DFMEColumns, columns, "DFME")
    rates = dict(PART_FPS if part_fps is None else part_fps)
    if not cols.part and fps is None:
        raise DatasetError("DFME: without a part column, pass fps=", file=root)
    path = find_annotation(root, ("*.xlsx", "*.csv"), annotations, "DFME")
    table = read_table(path, header_hint=(cols.subject, cols.clip, cols.onset))
    if cols.part:
        table.require(cols.part)
    base = (
        root
        if frames_dir is None
        else (Path(frames_dir) if Path(frames_dir).is_absolute() else root / frames_dir)
    )

    def part_of(row: Row) -> str:
        return cell_str(table, row, cols.part) if cols.part else ""

    def fps_of(row: Row) -> float:
        if fps is not None:
            return float(fps)
        part = part_of(row)
        if part not in rates:
            raise DatasetError(
                f"part {part!r} has no frame rate (known: {', '.join(rates)}); pass part_fps= or fps=",
                file=path,
                row=row.number,
                column=table.column(cols.part),
            )
        return float(rates[part])

    return read_clip_table(
        table,
        cols,
        dataset=NAME,
        subject_of=str.strip,
        folder_of=lambda row, subject, clip: base / part_of(row) / clip,
        fps_of=fps_of,
        errors=errors,
    )
