"""SAMM reader: header row below title rows, SAMM/006/006_1_2/006_05562.png frames."""

from __future__ import annotations

import pytest

from mestream.models.datasets import DatasetError, read_dataset
from mestream.models.datasets.samm import read_samm
from tests.models.datasets.helpers import numbered, write_frames, write_xlsx

HEADER = [
    "Subject",
    "Filename",
    "Inducement Code",
    "Onset Frame",
    "Apex Frame",
    "Offset Frame",
    "Duration",
    "Type",
    "Action Units",
    "Notes",
    "Estimated Emotion",
]
TITLE = [
    ["SAMM: spontaneous micro-facial movement dataset"],
    ["Manchester Metropolitan University"],
    [],
    ["Coders: three"],
    [],
]


def make_samm(root, rows):
    write_frames(root / "SAMM" / "006" / "006_1_2", numbered("006_", range(5562, 5570), width=5))
    write_frames(root / "SAMM" / "011" / "011_2_3", numbered("011_", range(100, 106), width=5))
    return write_xlsx(root / "SAMM_Micro_FACS_Codes_v2.xlsx", {"FACS": [*TITLE, HEADER, *rows]})


def test_reads_clips_below_title_rows(tmp_path):
    make_samm(
        tmp_path,
        [
            [6, "006_1_2", 1, 5562, 5565, 5569, 8, "Micro - 1/2", "R12+R14", "", "Contempt"],
            ["011", "011_2_3", 2, 101, -1, 104, 4, "Micro - 1/2", "4", "", "Anger"],
        ],
    )
    first, second = read_samm(tmp_path)
    assert (first.subject, first.clip, first.onset, first.apex, first.offset) == (
        "006",
        "006_1_2",
        5562,
        5565,
        5569,
    )
    assert first.frames[0].name == "006_05562.png" and len(first) == 8
    assert first.aus == ("R12", "R14") and first.emotion == "Contempt" and first.fps == 200.0
    assert first.source.endswith("row 7")  # 5 title rows + header = rows 1..6
    assert (second.subject, second.apex, second.frame_numbers) == ("011", None, (101, 102, 103, 104))
    labels = [c.label for c in read_dataset("samm", tmp_path, class_map="paper4")]
    assert labels == ["negative", "negative"]


def test_apex_outside_interval_names_row(tmp_path):
    sheet = make_samm(tmp_path, [[6, "006_1_2", 1, 5562, 5600, 5569, 8, "Micro", "12", "", "Happiness"]])
    with pytest.raises(
        DatasetError, match=r"row 7: apex frame 5600 is outside onset\.\.offset 5562\.\.5569"
    ) as info:
        read_samm(tmp_path)
    assert info.value.file == str(sheet)


def test_missing_frame_names_file_and_row(tmp_path):
    make_samm(
        tmp_path,
        [
            [6, "006_1_2", 1, 5562, 5565, 5569, 8, "Micro", "12", "", "Happiness"],
            [6, "006_1_2", 1, 5566, 5568, 5575, 8, "Micro", "12", "", "Happiness"],
        ],
    )
    with pytest.raises(DatasetError, match=r"SAMM_Micro_FACS_Codes_v2\.xlsx, row 8: frame\(s\) 5570, 5571"):
        read_samm(tmp_path)


def test_missing_column_names_column(tmp_path):
    header = [h for h in HEADER if h != "Apex Frame"]
    write_xlsx(
        tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx", {"FACS": [*TITLE, header, [6, "006_1_2", 1, 5562, 5569]]}
    )
    (tmp_path / "SAMM").mkdir()
    with pytest.raises(DatasetError, match=r"column 'Apex Frame': missing column") as info:
        read_samm(tmp_path)
    assert info.value.column == "Apex Frame"


def test_annotation_discovery_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"SAMM: no annotation file matching"):
        read_samm(tmp_path)
    write_xlsx(tmp_path / "SAMM_Micro_FACS_Codes_v1.xlsx", {"a": [HEADER]})
    write_xlsx(tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx", {"a": [HEADER]})
    with pytest.raises(DatasetError, match="several annotation files match"):
        read_samm(tmp_path)
    assert read_samm(tmp_path, annotations="SAMM_Micro_FACS_Codes_v2.xlsx") == []
