"""CAS(ME)² (Qu et al. 2017): 98 long videos of 22 subjects at 30 fps, 57 micro + 300 macro expressions.

Layout (``root`` holds these)::

    rawpic/s15/15_0101disgustingteeth/img1.jpg    long videos: subject folder /
                                                  "<subject>_<video code><title>"
    selectedpic/s15/disgust1_1/img557.jpg         optional: one folder per expression, same frame numbers
    CAS(ME)^2code_final.xlsx                      (or "...(Updated).xlsx")

The workbook's first sheet has no header row; its columns are, by position: participant number,
expression name (``disgust1_1`` = video name + "_" + expression number), onset, apex, offset,
AUs, estimated emotion (positive / negative / surprise / others), type (``micro-expression`` /
``macro-expression``), self-reported emotion. Sheet "naming rule1" maps the participant number
(3rd column) to the subject number (1st column, 15 or "s15" -> folder ``s15``); sheet "naming rule2" maps
a video code (1st column, 101 -> "0101") to its video name (2nd column, ``disgust1``). Positions
and sheet names can be changed with ``columns=`` and ``subjects_sheet=`` / ``videos_sheet=``; for
a CSV export pass the two naming tables as CSV paths there. A first row whose onset is text is
taken for a header and skipped.

Offset 0 means the coders marked no offset; like the MEGC baseline (MDMD) we then end the
interval at ``2 * apex - onset`` (clamped to the video's last frame). SoftNet ends it at the apex.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mestream.images import natural_key
from mestream.models.datasets.base import (
    KINDS,
    Clip,
    DatasetError,
    LabeledInterval,
    LongVideo,
    Row,
    Table,
    cell_int,
    cell_str,
    check_keyframes,
    clip_frames,
    collect,
    columns_from,
    find_annotation,
    index_frames,
    parse_aus,
    read_table,
    require_dir,
)

NAME = "casme_sq"
FPS = 30.0
ANNOTATION_PATTERNS = ("*code_final*.xlsx", "*code_final*.csv")
TYPES = {"micro-expression": "micro", "macro-expression": "macro"}


@dataclass(frozen=True)
class CodeColumns:
    """0-based column positions of the code sheet and of the two naming sheets."""

    participant: int = 0
    expression: int = 1
    onset: int = 2
    apex: int = 3
    offset: int = 4
    aus: int = 5
    emotion: int = 6
    type: int = 7
    naming_subject: int = 0
    naming_participant: int = 2
    naming_code: int = 0
    naming_video: int = 1


@dataclass(frozen=True)
class _Entry:
    subject: str
    video_dir: Path
    expression: str
    onset: int
    apex: int | None
    offset: int
    kind: str
    emotion: str
    aus: tuple[str, ...]
    file: Path
    row: int
    derived_offset: bool = False


def _positional(path: Path, sheet: str | int | None, width: int) -> Table:
    return read_table(path, names=[str(i) for i in range(width)], sheet=sheet)


def _naming(
    root: Path, annotations: Path, sheet: str | Path, key: int, value: int, what: str
) -> dict[str, str]:
    if annotations.suffix.lower() == ".csv":
        path = Path(sheet) if Path(sheet).is_absolute() else root / sheet
        if path.suffix.lower() != ".csv":
            raise DatasetError(
                f"CAS(ME)²: with CSV annotations, {what} must be a CSV path, got {sheet!r}", file=annotations
            )
        table = _positional(path, None, max(key, value) + 1)
    else:
        table = _positional(annotations, str(sheet), max(key, value) + 1)
    out = {}
    for row in table.rows:
        k, v = row.cells.get(str(key)), row.cells.get(str(value))
        if k is None or v is None:
            continue
        k = int(k) if isinstance(k, float) and k.is_integer() else k
        v = int(v) if isinstance(v, float) and v.is_integer() else v
        out[str(k).strip()] = str(v).strip()
    if not out:
        raise DatasetError(f"CAS(ME)²: the {what} table is empty", file=table.path)
    return out


def _by_number(folders: Sequence[Path]) -> dict[int, Path]:
    out = {}
    for folder in folders:
        match = re.search(r"(\d+)$", folder.name)
        if match:
            out[int(match.group(1))] = folder
    return out


def _video_code(folder: Path) -> str | None:
    match = re.match(r"\d+_(\d{4})", folder.name)
    return match.group(1) if match else None


def _read_entries(
    root: Path,
    annotations: str | Path | None,
    rawpic: Path,
    cols: CodeColumns,
    subjects_sheet: str | Path,
    videos_sheet: str | Path,
    errors: str,
) -> list[_Entry]:
    path = find_annotation(root, ANNOTATION_PATTERNS, annotations, "CAS(ME)²")
    width = (
        max(
            cols.participant,
            cols.expression,
            cols.onset,
            cols.apex,
            cols.offset,
            cols.aus,
            cols.emotion,
            cols.type,
        )
        + 1
    )
    table = _positional(path, 0 if path.suffix.lower() != ".csv" else None, width)
    participants = _naming(
        root, path, subjects_sheet, cols.naming_participant, cols.naming_subject, "subjects (naming rule1)"
    )
    codes = {
        v: f"{int(k):04d}" if k.isdigit() else k
        for k, v in _naming(
            root, path, videos_sheet, cols.naming_code, cols.naming_video, "videos (naming rule2)"
        ).items()
    }
    subject_dirs = _by_number(sorted((p for p in rawpic.iterdir() if p.is_dir()), key=natural_key))
    rows = list(table.rows)
    if (
        rows
        and isinstance(rows[0].cells.get(str(cols.onset)), str)
        and not rows[0].cells[str(cols.onset)].strip().isdigit()
    ):
        rows = rows[1:]
    c = {
        name: str(getattr(cols, name))
        for name in ("participant", "expression", "onset", "apex", "offset", "aus", "emotion", "type")
    }

    def entry(row: Row) -> _Entry:
        participant = cell_str(table, row, c["participant"])
        if participant not in participants:
            raise DatasetError(
                f"participant {participant!r} is not in the subjects naming table", file=path, row=row.number
            )
        number = re.search(r"(\d+)(?:\.0)?$", participants[participant])  # 15, 15.0, "s15" or "casme_015"
        if number is None:
            raise DatasetError(
                f"participant {participant!r}: the subjects naming table gives "
                f"{participants[participant]!r}, which holds no subject number",
                file=path,
                row=row.number,
            )
        subject_number = int(number.group(1))
        subject_dir = subject_dirs.get(subject_number)
        if subject_dir is None:
            raise DatasetError(
                f"no folder for subject {subject_number} (e.g. s{subject_number}) in {rawpic}",
                file=path,
                row=row.number,
            )
        expression = cell_str(table, row, c["expression"])
        video_name = expression.split("_")[0]
        if video_name not in codes:
            raise DatasetError(
                f"video {video_name!r} (from {expression!r}) is not in the videos naming table",
                file=path,
                row=row.number,
            )
        video_dirs = [d for d in subject_dir.iterdir() if d.is_dir() and _video_code(d) == codes[video_name]]
        if len(video_dirs) != 1:
            raise DatasetError(
                f"expected one folder {subject_number}_{codes[video_name]}* in {subject_dir}, "
                f"found {len(video_dirs)}",
                file=path,
                row=row.number,
            )
        kind = TYPES.get(cell_str(table, row, c["type"]).lower())
        if kind is None:
            raise DatasetError(
                f"type must be one of {', '.join(TYPES)}, got {cell_str(table, row, c['type'])!r}",
                file=path,
                row=row.number,
                column=c["type"],
            )
        onset = cell_int(table, row, c["onset"])
        apex = cell_int(table, row, c["apex"], missing=(None, "", "/", -1, 0))
        offset = cell_int(table, row, c["offset"], missing=(None, "", 0))
        derived = offset is None
        if derived:
            if apex is None:
                raise DatasetError("neither offset nor apex is given", file=path, row=row.number)
            offset = 2 * apex - onset
        return _Entry(
            subject_dir.name,
            video_dirs[0],
            expression,
            onset,
            apex,
            offset,
            kind,
            cell_str(table, row, c["emotion"], required=False),
            parse_aus(row.cells.get(c["aus"])),
            path,
            row.number,
            derived,
        )

    return collect((lambda row=row: entry(row) for row in rows), errors, f"CAS(ME)² ({path})")


def _rawpic(root: Path, frames_dir: str | Path | None) -> Path:
    path = Path(frames_dir) if frames_dir is not None else Path("rawpic")
    path = path if path.is_absolute() else root / path
    if not path.is_dir():
        raise DatasetError(
            "CAS(ME)²: long-video frame folder (rawpic/) not found; pass frames_dir=", file=path
        )
    return path


def read_casme_sq_videos(
    root: str | Path,
    *,
    annotations: str | Path | None = None,
    frames_dir: str | Path | None = None,
    columns: Mapping[str, Any] | CodeColumns | None = None,
    subjects_sheet: str | Path = "naming rule1",
    videos_sheet: str | Path = "naming rule2",
    fps: float = FPS,
    errors: str = "raise",
    progress: bool = False,
) -> list[LongVideo]:
    """CAS(ME)² long videos with their micro and macro intervals (every video folder, annotated or not).

    Args:
        root: the dataset folder.
        annotations: the code workbook (default: the one ``*code_final*.xlsx`` in root).
        frames_dir: the long-video frame folder (default ``root/rawpic``).
        columns: 0-based positions (see :class:`CodeColumns`).
        subjects_sheet, videos_sheet: the naming sheets (or CSV paths for CSV annotations).
        fps: 30 for CAS(ME)².
        errors: "raise" stops at the first bad row; "skip" logs and drops it.
        progress: show a progress bar while the video folders are indexed.
    """
    root = require_dir(root, "CAS(ME)²")
    cols = columns_from(CodeColumns, columns, "CAS(ME)²")
    rawpic = _rawpic(root, frames_dir)
    entries = _read_entries(root, annotations, rawpic, cols, subjects_sheet, videos_sheet, errors)
    by_video: dict[Path, list[_Entry]] = {}
    for e in entries:
        by_video.setdefault(e.video_dir, []).append(e)
    folders = [
        (s, v)
        for s in sorted(rawpic.iterdir(), key=natural_key)
        if s.is_dir()
        for v in sorted(s.iterdir(), key=natural_key)
        if v.is_dir()
    ]

    def build(subject: Path, folder: Path) -> LongVideo:
        frames = index_frames(folder)
        numbers = tuple(sorted(frames))
        intervals = []
        for e in by_video.get(folder, []):
            offset = min(e.offset, numbers[-1]) if e.derived_offset and numbers else e.offset
            check_keyframes(e.onset, e.apex, offset, file=e.file, row=e.row)
            for n in (e.onset, e.apex, offset):
                if n is not None and n not in frames:
                    raise DatasetError(f"frame {n} is not in {folder}", file=e.file, row=e.row)
            intervals.append(
                LabeledInterval(e.onset, e.apex, offset, e.kind, e.emotion, e.aus, f"{e.file}, row {e.row}")
            )
        return LongVideo(
            dataset=NAME,
            subject=subject.name,
            video=folder.name,
            frames_dir=folder,
            frame_names=tuple(frames[n].name for n in numbers),
            frame_numbers=numbers,
            fps=fps,
            intervals=tuple(sorted(intervals, key=lambda i: (i.onset, i.offset))),
        )

    return collect(
        (lambda s=s, v=v: build(s, v) for s, v in folders),
        errors,
        f"CAS(ME)² ({rawpic})",
        progress=progress,
        total=len(folders),
    )


def read_casme_sq_clips(
    root: str | Path,
    *,
    annotations: str | Path | None = None,
    frames_dir: str | Path | None = None,
    clips_dir: str | Path | None = None,
    kinds: Sequence[str] = ("micro",),
    columns: Mapping[str, Any] | CodeColumns | None = None,
    subjects_sheet: str | Path = "naming rule1",
    videos_sheet: str | Path = "naming rule2",
    fps: float = FPS,
    errors: str = "raise",
) -> list[Clip]:
    """CAS(ME)² expressions as recognition clips (the 57 micro-expressions by default).

    Frames come from the long videos (``rawpic/``, cut at onset..offset) unless ``clips_dir`` names
    a per-expression folder tree such as ``selectedpic`` (``<clips_dir>/s15/disgust1_1/``).
    ``kinds`` picks micro and/or macro expressions; the emotion is the "estimated emotion" column.
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise DatasetError(f"CAS(ME)²: kinds must be among {KINDS}, got {unknown}")
    root = require_dir(root, "CAS(ME)²")
    cols = columns_from(CodeColumns, columns, "CAS(ME)²")
    rawpic = _rawpic(root, frames_dir)
    entries = [
        e
        for e in _read_entries(root, annotations, rawpic, cols, subjects_sheet, videos_sheet, errors)
        if e.kind in kinds
    ]
    clips_root = (
        None
        if clips_dir is None
        else (Path(clips_dir) if Path(clips_dir).is_absolute() else root / clips_dir)
    )
    cache: dict[Path, dict] = {}

    def build(e: _Entry) -> Clip:
        folder = e.video_dir if clips_root is None else clips_root / e.subject / e.expression
        if folder not in cache:
            cache[folder] = index_frames(folder, file=e.file, row=e.row)
        offset = min(e.offset, max(cache[folder])) if e.derived_offset and cache[folder] else e.offset
        paths, numbers = clip_frames(
            cache[folder], e.onset, e.apex, offset, folder=folder, file=e.file, row=e.row
        )
        return Clip(
            dataset=NAME,
            subject=e.subject,
            clip=e.expression,
            frames=paths,
            frame_numbers=numbers,
            onset=e.onset,
            apex=e.apex,
            offset=offset,
            emotion=e.emotion,
            aus=e.aus,
            fps=fps,
            kind=e.kind,
            source=f"{e.file}, row {e.row}",
        )

    return collect((lambda e=e: build(e) for e in entries), errors, f"CAS(ME)² clips ({root})")
