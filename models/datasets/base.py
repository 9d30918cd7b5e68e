"""Records, spreadsheet reading and frame indexing shared by the dataset readers.

The readers turn a licensed dataset's folders and annotation spreadsheet into plain records:
:class:`Clip` (one expression, for recognition) and :class:`LongVideo` (a whole recording with
its micro and macro intervals, for spotting). Frame numbers are the dataset's own (the numbers in
the spreadsheet and in the file names), never positions in a list, so a record can always be
checked against the annotation it came from.

Errors are :class:`DatasetError` and name the file, the spreadsheet row (1-based, as a
spreadsheet program shows it; for CSV the line number) and the column when there is one.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
from tqdm import tqdm

from mestream.engine.metrics import Interval
from mestream.images import IMAGE_SUFFIXES, natural_key

log = logging.getLogger("mestream.models.datasets")

KINDS = ("micro", "macro")
MAX_HEADER_SCAN = 50


class DatasetError(ValueError):
    """A dataset that does not match its documented layout; the message names file, row and column."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.file, self.row, self.column = (str(file) if file is not None else None), row, column
        where = [str(file)] if file is not None else []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Clip:
    """One annotated expression: the frames from onset to offset, both included.

    ``frames[i]`` holds frame number ``frame_numbers[i]``; ``apex`` is None where the dataset has
    none (SMIC). ``label`` is the class after a class map (None until one is applied). ``source``
    says where the record came from ("file, row N"), for error messages further down the line.
    """

    dataset: str
    subject: str
    clip: str
    frames: tuple[Path, ...]
    frame_numbers: tuple[int, ...]
    onset: int
    apex: int | None
    offset: int
    emotion: str
    aus: tuple[str, ...] = ()
    fps: float = 0.0
    kind: str = "micro"
    label: str | None = None
    source: str = ""

    @property
    def name(self) -> str:
        """``dataset/subject/clip``, unique across datasets."""
        return f"{self.dataset}/{self.subject}/{self.clip}"

    @property
    def apex_index(self) -> int | None:
        """Position of the apex frame in ``frames``."""
        return None if self.apex is None else self.frame_numbers.index(self.apex)

    def __len__(self) -> int:
        return len(self.frames)


@dataclass(frozen=True)
class LabeledInterval:
    """One annotated expression inside a long video (inclusive frame numbers)."""

    onset: int
    apex: int | None
    offset: int
    kind: str
    emotion: str = ""
    aus: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class LongVideo:
    """A whole recording (frame folder) with its micro- and macro-expression intervals.

    Frame file names are kept as strings relative to ``frames_dir`` (a SAMM long video has ~7000).
    Videos without any annotated interval are kept: they are where a spotter's false positives show.
    """

    dataset: str
    subject: str
    video: str
    frames_dir: Path
    frame_names: tuple[str, ...]
    frame_numbers: tuple[int, ...]
    fps: float
    intervals: tuple[LabeledInterval, ...] = ()

    def __len__(self) -> int:
        return len(self.frame_names)

    def _position(self, frame_number: int) -> int:
        guess = frame_number - self.frame_numbers[0] if self.frame_numbers else -1
        if 0 <= guess < len(self.frame_numbers) and self.frame_numbers[guess] == frame_number:
            return guess  # frames are normally numbered without gaps
        try:
            return self.frame_numbers.index(frame_number)
        except ValueError:
            raise DatasetError(
                f"video {self.video!r} has no frame {frame_number}", file=self.frames_dir
            ) from None

    def path(self, frame_number: int) -> Path:
        """The file holding ``frame_number``."""
        return self.frames_dir / self.frame_names[self._position(frame_number)]

    def paths_between(self, first: int, last: int) -> list[Path]:
        """The files of frames ``first``..``last`` (both included, as stored; gaps are not filled)."""
        start, stop = self._position(first), self._position(last)
        return [self.frames_dir / name for name in self.frame_names[start : stop + 1]]

    @property
    def paths(self) -> list[Path]:
        """Every frame file in order."""
        return [self.frames_dir / name for name in self.frame_names]

    def to_intervals(self, kinds: Sequence[str] = KINDS) -> list[Any]:
        """The ground truth as :class:`mestream.engine.metrics.Interval` (video = ``self.video``)."""
        return [
            Interval(self.video, i.onset, i.offset, kind=i.kind) for i in self.intervals if i.kind in kinds
        ]


# --------------------------------------------------------------------------- column options

C = TypeVar("C")


def columns_from(
    cls: type[C], overrides: Mapping[str, Any] | C | None, where: str, defaults: C | None = None
) -> C:
    """``defaults`` (or ``cls()``) with ``overrides`` applied; an unknown key is an error naming it."""
    start = defaults if defaults is not None else cls()
    if overrides is None:
        return start
    if isinstance(overrides, cls):
        return overrides
    if not isinstance(overrides, Mapping):
        raise DatasetError(
            f"{where}: columns must be a mapping or {cls.__name__}, got {type(overrides).__name__}"
        )
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise DatasetError(
            f"{where}: unknown column option(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )
    return dataclasses.replace(start, **dict(overrides))  # type: ignore[type-var]


# --------------------------------------------------------------------------- tables


def _norm(name: Any) -> str:
    """Header cells compared without case or repeated whitespace ("Onset  frame" == "onset frame")."""
    return " ".join(str(name).split()).casefold() if name is not None else ""


@dataclass(frozen=True)
class Row:
    """One data row: its 1-based row number in the file and its cells by column name."""

    number: int
    cells: Mapping[str, Any]


@dataclass(frozen=True)
class Table:
    """A spreadsheet or CSV sheet: column names (as written in the header) and the data rows."""

    path: Path
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    sheet: str | None = None
    header_row: int | None = None
    _lookup: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._lookup.update({_norm(c): c for c in self.columns})

    def column(self, name: str) -> str:
        """The header spelling of ``name`` (case- and whitespace-insensitive); error naming the file."""
        found = self._lookup.get(_norm(name))
        if found is None:
            where = (
                f" (sheet {self.sheet!r}, header row {self.header_row})"
                if self.sheet or self.header_row
                else ""
            )
            raise DatasetError(
                f"missing column{where}; the columns are: {', '.join(repr(c) for c in self.columns if c)}",
                file=self.path,
                column=name,
            )
        return found

    def has(self, name: str) -> bool:
        return _norm(name) in self._lookup

    def require(self, *names: str) -> None:
        """Fail before reading any row when a needed column is missing."""
        for name in names:
            self.column(name)

    def value(self, row: Row, name: str) -> Any:
        return row.cells.get(self.column(name))

    def where(self, row: Row) -> str:
        return f"{self.path}, row {row.number}"


def _open_xlsx(path: Path, sheet: str | int | None) -> tuple[str, Iterable[Sequence[Any]]]:
    try:
        import openpyxl  # lazy: openpyxl is in the train extra
    except ImportError:
        raise DatasetError(
            "reading .xlsx annotations needs openpyxl, which comes with the train extra: "
            "pip install 'mestream[train]' (or save the sheet as CSV)",
            file=path,
        ) from None
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a broken or non-xlsx file
        raise DatasetError(f"not a readable .xlsx workbook: {exc}", file=path) from exc
    names = book.sheetnames
    if sheet is None:
        sheet = 0
    if isinstance(sheet, int):
        if not 0 <= sheet < len(names):
            raise DatasetError(f"has {len(names)} sheet(s) {names}, no sheet number {sheet}", file=path)
        sheet = names[sheet]
    match = {_norm(n): n for n in names}.get(_norm(sheet))
    if match is None:
        raise DatasetError(f"has no sheet {sheet!r}; the sheets are {names}", file=path)
    worksheet = book[match]
    worksheet.reset_dimensions()  # read-only mode trusts the file's stored size, which some writers get wrong
    rows = [tuple(r) for r in worksheet.iter_rows(min_row=1, values_only=True)]
    book.close()
    return match, rows


def _open_csv(path: Path) -> list[list[str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return [
                [None if cell.strip() == "" else cell.strip() for cell in row] for row in csv.reader(handle)
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read CSV: {exc}", file=path) from exc


def read_table(
    path: str | Path,
    *,
    header_hint: Sequence[str] = (),
    names: Sequence[str] | None = None,
    sheet: str | int | None = None,
) -> Table:
    """Read an .xlsx sheet (openpyxl, read-only) or a .csv file into a :class:`Table`.

    Args:
        path: the annotation file.
        header_hint: column names the header row must contain. The first row holding all of them is
            the header (SAMM's sheets put title rows above it); without hints the first non-empty
            row is.
        names: the sheet has no header row: name the columns by position instead (CAS(ME)²).
        sheet: sheet name or 0-based number for .xlsx (default: the first sheet).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError("annotation file not found", file=path)
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        sheet_name, raw = _open_xlsx(path, sheet)
    elif suffix == ".csv":
        sheet_name, raw = None, _open_csv(path)
    else:
        raise DatasetError(
            f"unsupported annotation format {suffix!r}: use .xlsx or .csv (save an old .xls as one of these)",
            file=path,
        )
    numbered = [(i + 1, row) for i, row in enumerate(raw) if any(c not in (None, "") for c in row)]
    if not numbered:
        raise DatasetError("the sheet is empty", file=path)
    if names is not None:
        columns, header_row, data = tuple(names), None, numbered
    else:
        hints = {_norm(h) for h in header_hint}
        found = next(
            (k for k, (_, row) in enumerate(numbered[:MAX_HEADER_SCAN]) if hints <= {_norm(c) for c in row}),
            None,
        )
        if found is None:
            raise DatasetError(
                f"no header row with the columns {list(header_hint)} in the first {MAX_HEADER_SCAN} rows",
                file=path,
            )
        header_row, header = numbered[found]
        columns = tuple("" if c is None else " ".join(str(c).split()) for c in header)
        data = numbered[found + 1 :]
    rows = tuple(
        Row(n, {c: (r[i] if i < len(r) else None) for i, c in enumerate(columns) if c}) for n, r in data
    )
    return Table(path, columns, rows, sheet=sheet_name, header_row=header_row)


def require_dir(root: str | Path, dataset: str) -> Path:
    """``root`` as a Path, or an error when it is not a directory."""
    if root is None or not isinstance(root, (str, Path)) or not str(root).strip():
        raise DatasetError(f"{dataset}: root must be the dataset folder (a path), got {root!r}")
    path = Path(root)
    if path.is_file():
        raise DatasetError(f"{dataset}: root is a file, not the dataset folder", file=path)
    if not path.is_dir():
        raise DatasetError(f"{dataset}: dataset folder not found", file=path)
    return path


def find_annotation(root: Path, patterns: Sequence[str], given: str | Path | None, dataset: str) -> Path:
    """``given`` (relative to ``root`` unless absolute) or the one file under ``root`` matching
    ``patterns``."""
    if given is not None:
        path = Path(given)
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise DatasetError(f"{dataset}: annotation file not found", file=path)
        return path
    # "~$name.xlsx" is the lock file Excel leaves beside a workbook it has open
    found = sorted(
        {p for pattern in patterns for p in root.glob(pattern) if p.is_file() and not p.name.startswith("~$")}
    )
    if len(found) == 1:
        return found[0]
    if not found:
        raise DatasetError(
            f"{dataset}: no annotation file matching {list(patterns)}; pass annotations=PATH", file=root
        )
    raise DatasetError(
        f"{dataset}: several annotation files match: {[p.name for p in found]}; pass annotations=PATH",
        file=root,
    )


# --------------------------------------------------------------------------- cells


def cell_int(table: Table, row: Row, column: str, *, missing: tuple[Any, ...] = ()) -> int | None:
    """An integer cell; values in ``missing`` (e.g. "/", -1, None) give None, anything else
    non-integer is an error."""
    value = table.value(row, column)
    if isinstance(value, str):
        value = value.strip()
    if value in missing or (value in (None, "") and None in missing):
        return None
    try:
        number = float(value)  # xlsx numbers arrive as float, CSV as text
    except (TypeError, ValueError):
        raise DatasetError(
            f"expected a frame number, got {value!r}",
            file=table.path,
            row=row.number,
            column=table.column(column),
        ) from None
    if not number.is_integer():
        raise DatasetError(
            f"expected a whole frame number, got {value!r}",
            file=table.path,
            row=row.number,
            column=table.column(column),
        )
    if int(number) in missing:
        return None
    return int(number)


def cell_str(table: Table, row: Row, column: str, *, required: bool = True) -> str:
    """A text cell (numbers become their integer text, 6.0 -> "6"); empty is an error when required."""
    value = table.value(row, column)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = "" if value is None else str(value).strip()
    if required and not text:
        raise DatasetError("empty cell", file=table.path, row=row.number, column=table.column(column))
    return text


def parse_aus(value: Any) -> tuple[str, ...]:
    """Action units as written ("4+L10", "R12, 14"): split on + , ; and whitespace, kept verbatim."""
    if value is None:
        return ()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return tuple(t for t in re.split(r"[+,;\s]+", str(value).strip()) if t and t not in ("/", "-"))


# --------------------------------------------------------------------------- frames


def frame_number(path: Path) -> int | None:
    """The trailing number of a frame file's stem (img46.jpg -> 46, 006_05562.jpg -> 5562)."""
    match = re.search(r"(\d+)$", path.stem)
    return int(match.group(1)) if match else None


def index_frames(folder: Path, *, file: str | Path | None = None, row: int | None = None) -> dict[int, Path]:
    """Frame number -> image file for one clip or video folder; ``file``/``row`` name the
    annotation asking."""
    if not folder.is_dir():
        raise DatasetError(f"frame folder {folder} does not exist", file=file or folder, row=row)
    frames: dict[int, Path] = {}
    for path in sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key):
        number = frame_number(path)
        if number is None:
            continue
        if number in frames:
            raise DatasetError(
                f"frames {frames[number].name} and {path.name} both carry number {number}", file=folder
            )
        frames[number] = path
    return frames


def check_keyframes(onset: int, apex: int | None, offset: int, *, file: str | Path, row: int | None) -> None:
    """onset <= apex <= offset, or an error naming the annotation row."""
    if offset < onset:
        raise DatasetError(f"offset frame {offset} is before onset frame {onset}", file=file, row=row)
    if apex is not None and not onset <= apex <= offset:
        raise DatasetError(
            f"apex frame {apex} is outside onset..offset {onset}..{offset}", file=file, row=row
        )


def clip_frames(
    frames: Mapping[int, Path],
    onset: int,
    apex: int | None,
    offset: int,
    *,
    folder: Path,
    file: str | Path,
    row: int | None,
) -> tuple[tuple[Path, ...], tuple[int, ...]]:
    """The files of frames onset..offset; every one must exist (a gap would shift the time axis)."""
    check_keyframes(onset, apex, offset, file=file, row=row)
    numbers = tuple(range(onset, offset + 1))
    missing = [n for n in numbers if n not in frames]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise DatasetError(f"frame(s) {shown} of {onset}..{offset} not found in {folder}", file=file, row=row)
    return tuple(frames[n] for n in numbers), numbers


def collect(
    items: Iterable[Callable[[], Any]],
    errors: str,
    what: str,
    *,
    progress: bool = False,
    total: int | None = None,
) -> list[Any]:
    """Run each record builder; with ``errors="skip"`` a bad record is logged and dropped instead
    of raised."""
    if errors not in ("raise", "skip"):
        raise DatasetError(f"errors must be 'raise' or 'skip', got {errors!r}")
    if progress:
        items = tqdm(items, desc=what, total=total, unit="item")
    out, skipped = [], 0
    for build in items:
        try:
            record = build()
        except DatasetError as exc:
            if errors == "raise":
                raise
            skipped += 1
            log.warning("%s: skipped: %s", what, exc)
            continue
        if record is not None:
            out.append(record)
    if skipped:
        log.warning("%s: %d record(s) skipped, %d read", what, skipped, len(out))
    return out


def load_frames(
    paths: Sequence[str | Path], size: int | tuple[int, int] | None = None, *, progress: bool = False
) -> np.ndarray:
    """Grey uint8 frames, shape (N, H, W); ``size`` resizes to ``size`` x ``size`` or (width, height).

    Without ``size`` all frames must share one shape. An unreadable file is an error naming it.
    """
    if isinstance(size, int):
        size = (size, size)
    items: Iterable[str | Path] = paths
    if progress:
        items = tqdm(paths, desc="frames", unit="frame")
    out: np.ndarray | None = None
    for i, path in enumerate(items):
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise DatasetError("not a readable image", file=path)
        if size is not None and (image.shape[1], image.shape[0]) != tuple(size):
            image = cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA)
        if out is None:
            out = np.empty((len(paths), *image.shape), np.uint8)
        elif image.shape != out.shape[1:]:
            raise DatasetError(
                f"frame is {image.shape[1]}x{image.shape[0]} but the first is "
                f"{out.shape[2]}x{out.shape[1]}; pass size=",
                file=path,
            )
        out[i] = image
    return out if out is not None else np.empty((0, 0, 0), np.uint8)
