"""One spreadsheet row per clip, one frame folder per clip: the layout CASME II, SAMM and DFME share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mestream.models.datasets.base import (
    Clip,
    Row,
    Table,
    cell_int,
    cell_str,
    clip_frames,
    collect,
    index_frames,
    parse_aus,
)

# How the datasets write "no apex": CASME II "/", SAMM -1, others leave the cell empty.
MISSING_APEX = (None, "", "/", "-", -1)


@dataclass(frozen=True)
class ClipColumns:
    """Spreadsheet column names for a clip table; ``aus`` "" means the sheet has no AU column."""

    subject: str = "Subject"
    clip: str = "Filename"
    onset: str = "OnsetFrame"
    apex: str = "ApexFrame"
    offset: str = "OffsetFrame"
    emotion: str = "Estimated Emotion"
    aus: str = "Action Units"


def read_clip_table(
    table: Table,
    columns: ClipColumns,
    *,
    dataset: str,
    subject_of: Callable[[str], str],
    folder_of: Callable[[Row, str, str], Path],
    fps_of: Callable[[Row], float],
    errors: str = "raise",
) -> list[Clip]:
    """Clips from ``table``: one per row, frames onset..offset taken from ``folder_of(row, subject, clip)``.

    Every needed column is checked before the first row, so a renamed header fails at once and
    names the file and the column.
    """
    needed = [columns.subject, columns.clip, columns.onset, columns.apex, columns.offset, columns.emotion]
    table.require(*needed, *([columns.aus] if columns.aus else []))
    cache: dict[Path, dict] = {}

    def build(row: Row) -> Clip:
        subject = subject_of(cell_str(table, row, columns.subject))
        clip = cell_str(table, row, columns.clip)
        onset = cell_int(table, row, columns.onset)
        apex = cell_int(table, row, columns.apex, missing=MISSING_APEX)
        offset = cell_int(table, row, columns.offset)
        fps = fps_of(row)
        folder = folder_of(row, subject, clip)
        if folder not in cache:
            cache[folder] = index_frames(folder, file=table.path, row=row.number)
        paths, numbers = clip_frames(
            cache[folder], onset, apex, offset, folder=folder, file=table.path, row=row.number
        )
        return Clip(
            dataset=dataset,
            subject=subject,
            clip=clip,
            frames=paths,
            frame_numbers=numbers,
            onset=onset,
            apex=apex,
            offset=offset,
            emotion=cell_str(table, row, columns.emotion),
            aus=parse_aus(table.value(row, columns.aus)) if columns.aus else (),
            fps=fps,
            source=table.where(row),
        )

    return collect((lambda row=row: build(row) for row in table.rows), errors, f"{dataset} ({table.path})")
