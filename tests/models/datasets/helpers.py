"""Tiny fixture trees: 8x8 PNG frames and spreadsheets written by the tests themselves."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np


def write_frames(folder: Path, names: Iterable[str], size: int = 8) -> list[Path]:
    """One grey PNG per name; its pixel value is the frame's trailing number mod 256, so order is
    checkable."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        stem = Path(name).stem
        tail = len(stem) - len(stem.rstrip("0123456789"))
        value = int(stem[-tail:]) % 256 if tail else 0
        path = folder / name
        if not cv2.imwrite(str(path), np.full((size, size), value, np.uint8)):
            raise OSError(f"could not write {path}")
        paths.append(path)
    return paths


def numbered(prefix: str, numbers: Iterable[int], width: int = 0, suffix: str = ".png") -> list[str]:
    return [f"{prefix}{n:0{width}d}{suffix}" for n in numbers]


def write_xlsx(path: Path, sheets: Mapping[str, Sequence[Sequence[Any]]]) -> Path:
    """A workbook with the given sheets (first = active), rows written from row 1."""
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(list(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return path


def write_csv(path: Path, rows: Sequence[Sequence[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["" if c is None else c for c in row] for row in rows])
    return path
