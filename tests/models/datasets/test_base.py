"""Spreadsheet reading, cell parsing and frame loading shared by every reader."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mestream.models.datasets.base import (
    DatasetError,
    cell_int,
    cell_str,
    clip_frames,
    index_frames,
    load_frames,
    parse_aus,
    read_table,
)
from tests.models.datasets.helpers import numbered, write_csv, write_frames, write_xlsx


def test_xlsx_header_below_title_rows_and_row_numbers(tmp_path):
    path = write_xlsx(
        tmp_path / "codes.xlsx",
        {
            "Sheet": [
                ["SAMM micro-movement codes"],
                [],
                ["released 2018"],
                ["Subject", "Filename", "Onset  Frame"],  # row 4: the header (odd spacing on purpose)
                [6, "006_1_2", 5562],  # row 5
                [],  # row 6 blank
                [7, "007_3_1", 10],  # row 7
            ]
        },
    )
    table = read_table(path, header_hint=("subject", "onset frame"))
    assert table.header_row == 4 and table.sheet == "Sheet"
    assert [row.number for row in table.rows] == [5, 7]
    assert table.column("ONSET FRAME") == "Onset Frame"
    assert [table.value(row, "filename") for row in table.rows] == ["006_1_2", "007_3_1"]


def test_xlsx_with_a_stale_stored_size_keeps_every_row(tmp_path):
    import zipfile

    path = write_xlsx(tmp_path / "codes.xlsx", {"Sheet": [["Subject", "Onset"], [1, 10], [2, 20], [3, 30]]})
    with zipfile.ZipFile(path) as book:  # some writers store a wrong <dimension>
        parts = {name: book.read(name) for name in book.namelist()}
    sheet = "xl/worksheets/sheet1.xml"
    assert b'<dimension ref="A1:B4" />' in parts[sheet]
    parts[sheet] = parts[sheet].replace(b'<dimension ref="A1:B4" />', b'<dimension ref="A1:A2" />')
    with zipfile.ZipFile(path, "w") as book:
        for name, data in parts.items():
            book.writestr(name, data)
    table = read_table(path, header_hint=("Subject",))
    assert [(table.value(r, "Subject"), table.value(r, "Onset")) for r in table.rows] == [
        (1, 10),
        (2, 20),
        (3, 30),
    ]


def test_missing_column_names_file_and_column(tmp_path):
    path = write_xlsx(tmp_path / "codes.xlsx", {"Sheet": [["Subject", "Filename"], [1, "EP01"]]})
    table = read_table(path, header_hint=("Subject",))
    with pytest.raises(DatasetError, match=r"codes\.xlsx.*column 'ApexFrame'.*missing column") as info:
        table.require("Subject", "ApexFrame")
    assert info.value.column == "ApexFrame" and info.value.file == str(path)


def test_header_hint_not_found(tmp_path):
    path = write_csv(tmp_path / "a.csv", [["x", "y"], [1, 2]])
    with pytest.raises(DatasetError, match=r"a\.csv: no header row with the columns \['Subject'\]"):
        read_table(path, header_hint=("Subject",))


def test_csv_line_numbers_and_positional_names(tmp_path):
    path = write_csv(tmp_path / "a.csv", [["1", "disgust1_1", "3"], ["", "", ""], ["2", "anger1_1", "7"]])
    table = read_table(path, names=["p", "e", "onset"])
    assert [(row.number, row.cells["e"]) for row in table.rows] == [(1, "disgust1_1"), (3, "anger1_1")]


def test_sheet_selection_and_errors(tmp_path):
    path = write_xlsx(tmp_path / "b.xlsx", {"first": [["A"], [1]], "naming rule1": [["B"], [2]]})
    assert read_table(path, sheet="Naming  Rule1").columns == ("B",)
    assert read_table(path, sheet=1).columns == ("B",)
    with pytest.raises(DatasetError, match="no sheet 'other'"):
        read_table(path, sheet="other")
    with pytest.raises(DatasetError, match="annotation file not found"):
        read_table(tmp_path / "none.xlsx")
    (tmp_path / "old.xls").write_bytes(b"\x00")
    with pytest.raises(DatasetError, match="unsupported annotation format '.xls'"):
        read_table(tmp_path / "old.xls")


def test_openpyxl_missing_names_the_train_extra(tmp_path, monkeypatch):
    path = write_xlsx(tmp_path / "c.xlsx", {"S": [["A"], [1]]})
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # makes `import openpyxl` raise ImportError
    with pytest.raises(DatasetError, match=r"openpyxl.*mestream\[train\]"):
        read_table(path)


def test_cells_name_row_and_column(tmp_path):
    path = write_csv(tmp_path / "d.csv", [["Onset", "Apex", "Name"], ["12", "/", "6.0"], ["x", "-1", ""]])
    table = read_table(path, header_hint=("Onset",))
    first, second = table.rows
    assert cell_int(table, first, "onset") == 12
    assert cell_int(table, first, "Apex", missing=("/",)) is None
    assert cell_int(table, second, "Apex", missing=(-1,)) is None
    assert cell_str(table, first, "Name") == "6.0"
    with pytest.raises(
        DatasetError, match=r"d\.csv, row 3, column 'Onset': expected a frame number, got 'x'"
    ):
        cell_int(table, second, "Onset")
    with pytest.raises(DatasetError, match=r"row 3, column 'Name': empty cell"):
        cell_str(table, second, "Name")


def test_parse_aus():
    assert parse_aus("4+L10") == ("4", "L10")
    assert parse_aus("R12, 14; 25") == ("R12", "14", "25")
    assert parse_aus(4.0) == ("4",)
    assert parse_aus(None) == () and parse_aus("/") == ()


def test_index_frames_natural_order_and_clip_frames(tmp_path):
    write_frames(tmp_path / "clip", numbered("img", [1, 2, 10, 9]))
    (tmp_path / "clip" / "notes.txt").write_text("not a frame")
    frames = index_frames(tmp_path / "clip")
    assert list(frames) == [1, 2, 9, 10]
    with pytest.raises(
        DatasetError, match=r"sheet\.xlsx, row 4: frame\(s\) 3, 4, 5, 6, 7 and 1 more of 1\.\.9"
    ):
        clip_frames(frames, 1, 2, 9, folder=tmp_path / "clip", file="sheet.xlsx", row=4)
    with pytest.raises(DatasetError, match="apex frame 12 is outside"):
        clip_frames(frames, 9, 12, 10, folder=tmp_path / "clip", file="sheet.xlsx", row=4)
    with pytest.raises(DatasetError, match=r"sheet\.xlsx, row 5: frame folder .*missing does not exist"):
        index_frames(tmp_path / "missing", file="sheet.xlsx", row=5)


def test_load_frames_grey_resize_and_errors(tmp_path):
    paths = write_frames(tmp_path / "f", numbered("img", [3, 4, 5]))
    frames = load_frames(paths)
    assert frames.shape == (3, 8, 8) and frames.dtype == np.uint8
    assert frames[:, 0, 0].tolist() == [3, 4, 5]
    assert load_frames(paths, size=(4, 6)).shape == (3, 6, 4)
    write_frames(tmp_path / "g", ["big7.png"], size=16)
    with pytest.raises(DatasetError, match=r"big7\.png: frame is 16x16 but the first is 8x8"):
        load_frames([paths[0], tmp_path / "g" / "big7.png"])
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=r"broken\.png: not a readable image"):
        load_frames([paths[0], tmp_path / "broken.png"])
