"""DFME reader on our documented layout: PART_X/<clip>/ frames + one annotation sheet."""

from __future__ import annotations

import pytest

from mestream.models.datasets import DatasetError, read_dataset
from mestream.models.datasets.dfme import read_dfme
from tests.models.datasets.helpers import numbered, write_csv, write_frames

HEADER = ["Subject", "Clip", "Part", "OnsetFrame", "ApexFrame", "OffsetFrame", "Emotion", "Action Units"]


def make_dfme(root, rows):
    write_frames(root / "PART_A" / "A001_01", numbered("", range(1, 11), 4))
    write_frames(root / "PART_C" / "C207_03", numbered("", range(1, 6), 4))
    return write_csv(root / "dfme_labels.csv", [HEADER, *rows])


def test_reads_clips_with_part_frame_rates(tmp_path):
    make_dfme(
        tmp_path,
        [
            ["A001", "A001_01", "PART_A", 2, 5, 9, "Contempt", "R14"],
            ["C207", "C207_03", "PART_C", 1, "", 5, "happiness", "6+12"],
        ],
    )
    a, c = read_dfme(tmp_path)
    assert (a.subject, a.clip, a.fps, a.frame_numbers[0], a.apex) == ("A001", "A001_01", 500.0, 2, 5)
    assert (c.fps, c.apex, c.aus) == (200.0, None, ("6", "12"))
    assert [x.label for x in read_dataset("dfme", tmp_path, class_map="dfme7")] == ["contempt", "happiness"]


def test_unknown_part_names_row_and_column(tmp_path):
    make_dfme(tmp_path, [["A001", "A001_01", "PART_D", 2, 5, 9, "fear", ""]])
    with pytest.raises(
        DatasetError, match=r"dfme_labels\.csv, row 2, column 'Part': part 'PART_D' has no frame rate"
    ):
        read_dfme(tmp_path)
    with pytest.raises(DatasetError, match=r"row 2: frame folder .*PART_D.A001_01 does not exist"):
        read_dfme(tmp_path, fps=250.0)  # a fixed rate skips the part table


def test_missing_frame_and_no_part_column(tmp_path):
    make_dfme(tmp_path, [["A001", "A001_01", "PART_A", 2, 5, 12, "fear", ""]])
    with pytest.raises(
        DatasetError, match=r"dfme_labels\.csv, row 2: frame\(s\) 11, 12 of 2\.\.12 not found"
    ):
        read_dfme(tmp_path)
    with pytest.raises(DatasetError, match="without a part column, pass fps="):
        read_dfme(tmp_path, columns={"part": ""})
