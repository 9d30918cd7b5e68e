"""SAMM Long Videos (Yap et al. 2020): 147 long videos at 200 fps with micro and macro intervals.

Layout (``root`` holds these)::

    SAMM_longvideos/006_1/006_1_0001.jpg     one folder per video; trailing number = frame number
    SAMM_LongVideos_V1_Release.xlsx          (V2/V3 releases have the same columns) title rows, then
                                             a header row: Subject, Filename, Inducement Code, Onset,
                                             Apex, Offset, Duration, Type, Action Units, Notes

``Filename`` is ``<video>_<expression number>`` (``006_1_3`` belongs to video ``006_1``). ``Type``
is "Micro - 1/2" or "Macro" (anything starting with micro / macro). The sheet has no emotion
column. Apex -1 means none; offset 0 means none and, as for CAS(ME)², the interval then ends at
``2 * apex - onset`` (clamped to the last frame). Column names can be overridden with ``columns=``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mestream.images import natural_key
from mestream.models.datasets.base import (
    DatasetError,
    LabeledInterval,
    LongVideo,
    Row,
    cell_int,
    cell_str,
    check_keyframes,
    collect,
    columns_from,
    find_annotation,
    index_frames,
    parse_aus,
    read_table,
    require_dir,
)

NAME = "samm_long"
FPS = 200.0


@dataclass(frozen=True)
class LongVideoColumns:
    """Column names of the SAMM Long Videos sheet; ``emotion`` and ``aus`` "" = not in the sheet."""

    subject: str = "Subject"
    name: str = "Filename"
    onset: str = "Onset"
    apex: str = "Apex"
    offset: str = "Offset"
    type: str = "Type"
    aus: str = "Action Units"
    emotion: str = ""


def _kind(text: str) -> str | None:
    lowered = text.strip().lower()
    return next((k for k in ("micro", "macro") if lowered.startswith(k)), None)


def read_samm_long_videos(
    root: str | Path,
    *,
    annotations: str | Path | None = None,
    frames_dir: str | Path | None = None,
    columns: Mapping[str, Any] | LongVideoColumns | None = None,
    fps: float = FPS,
    errors: str = "raise",
    progress: bool = False,
) -> list[LongVideo]:
    """SAMM long videos with their intervals (every video folder, annotated or not).

    Args:
        root: the dataset folder.
        annotations: the release sheet (default: the one ``SAMM_LongVideos*.xlsx`` or ``.csv`` in root).
        frames_dir: the video folders' parent (default ``root/SAMM_longvideos``).
        columns: column names (see :class:`LongVideoColumns`).
        fps: 200 for SAMM.
        errors: "raise" stops at the first bad row or video; "skip" logs and drops it.
        progress: show a progress bar while the video folders are indexed.
    """
    root = require_dir(root, "SAMM Long Videos")
    cols = columns_from(LongVideoColumns, columns, "SAMM Long Videos")
    path = find_annotation(
        root, ("SAMM_LongVideos*.xlsx", "SAMM_LongVideos*.csv"), annotations, "SAMM Long Videos"
    )
    table = read_table(path, header_hint=(cols.subject, cols.name, cols.onset, cols.offset))
    table.require(cols.apex, cols.type, *(c for c in (cols.aus, cols.emotion) if c))
    base = Path(frames_dir) if frames_dir is not None else Path("SAMM_longvideos")
    base = base if base.is_absolute() else root / base
    if not base.is_dir():
        raise DatasetError(
            "SAMM Long Videos: video folder (SAMM_longvideos/) not found; pass frames_dir=", file=base
        )
    videos = {d.name: d for d in sorted(base.iterdir(), key=natural_key) if d.is_dir()}
    frames_of: dict[str, dict] = {}

    def interval(row: Row) -> tuple[str, LabeledInterval]:
        name = cell_str(table, row, cols.name)
        video = "_".join(name.split("_")[:2])
        if video not in videos:
            raise DatasetError(
                f"video folder {video!r} (from {name!r}) not found in {base}", file=path, row=row.number
            )
        if video not in frames_of:
            frames_of[video] = index_frames(videos[video], file=path, row=row.number)
        frames = frames_of[video]
        kind = _kind(cell_str(table, row, cols.type))
        if kind is None:
            raise DatasetError(
                f"type must start with Micro or Macro, got {cell_str(table, row, cols.type)!r}",
                file=path,
                row=row.number,
                column=table.column(cols.type),
            )
        onset = cell_int(table, row, cols.onset)
        apex = cell_int(table, row, cols.apex, missing=(None, "", "/", -1))
        offset = cell_int(table, row, cols.offset, missing=(None, "", 0))
        if offset is None:
            if apex is None:
                raise DatasetError("neither offset nor apex is given", file=path, row=row.number)
            offset = min(2 * apex - onset, max(frames)) if frames else 2 * apex - onset
        check_keyframes(onset, apex, offset, file=path, row=row.number)
        for n in (onset, apex, offset):
            if n is not None and n not in frames:
                raise DatasetError(f"frame {n} is not in {videos[video]}", file=path, row=row.number)
        return video, LabeledInterval(
            onset,
            apex,
            offset,
            kind,
            cell_str(table, row, cols.emotion, required=False) if cols.emotion else "",
            parse_aus(table.value(row, cols.aus)) if cols.aus else (),
            table.where(row),
        )

    by_video: dict[str, list[LabeledInterval]] = {}
    for video, item in collect(
        (lambda row=row: interval(row) for row in table.rows), errors, f"SAMM Long Videos ({path})"
    ):
        by_video.setdefault(video, []).append(item)

    def build(video: str, folder: Path) -> LongVideo:
        frames = frames_of.get(video) or index_frames(folder)
        numbers = tuple(sorted(frames))
        return LongVideo(
            dataset=NAME,
            subject=video.split("_")[0],
            video=video,
            frames_dir=folder,
            frame_names=tuple(frames[n].name for n in numbers),
            frame_numbers=numbers,
            fps=fps,
            intervals=tuple(sorted(by_video.get(video, []), key=lambda i: (i.onset, i.offset))),
        )

    return collect(
        (lambda v=v, f=f: build(v, f) for v, f in videos.items()),
        errors,
        f"SAMM Long Videos ({base})",
        progress=progress,
        total=len(videos),
    )
