"""SAMM Long Videos reader: SAMM_longvideos/006_1/006_1_0001.png + release sheet below title rows."""

from __future__ import annotations

import pytest

from mestream.models.datasets import DatasetError, read_dataset
from mestream.models.datasets.samm_lv import read_samm_long_videos
from tests.models.datasets.helpers import numbered, write_frames, write_xlsx

HEADER = [
    "Subject",
    "Filename",
    "Inducement Code",
    "Onset",
    "Apex",
    "Offset",
    "Duration",
    "Type",
    "Action Units",
    "Notes",
]
TITLE = [["SAMM Long Videos"], ["Version 1"], [], ["Micro: < 500 ms"]]


def make_samm_lv(root, rows):
    write_frames(root / "SAMM_longvideos" / "006_1", numbered("006_1_", range(1, 41), 4))
    write_frames(root / "SAMM_longvideos" / "007_2", numbered("007_2_", range(1, 11), 4))
    return write_xlsx(
        root / "SAMM_LongVideos_V1_Release.xlsx", {"FACS_Movement_Only": [*TITLE, HEADER, *rows]}
    )


ROWS = [
    [6, "006_1_1", 1, 5, 7, 10, 6, "Micro - 1/2", "R12", ""],  # row 6
    [6, "006_1_2", 1, 15, -1, 35, 21, "Macro", "4+7", ""],  # row 7
    [6, "006_1_3", 1, 20, 22, 0, 0, "Macro", "", "no offset"],  # row 8
]


def test_long_videos_and_intervals(tmp_path):
    make_samm_lv(tmp_path, ROWS)
    first, second = read_samm_long_videos(tmp_path)
    assert (first.dataset, first.subject, first.video, len(first)) == ("samm_long", "006", "006_1", 40)
    assert first.fps == 200.0
    assert [(i.onset, i.apex, i.offset, i.kind) for i in first.intervals] == [
        (5, 7, 10, "micro"),
        (15, None, 35, "macro"),
        (20, 22, 24, "macro"),
    ]
    assert first.intervals[0].aus == ("R12",) and first.intervals[0].source.endswith("row 6")
    assert first.paths[0].name == "006_1_0001.png"
    assert (second.video, second.intervals) == ("007_2", ())
    assert len(read_dataset("samm_long", tmp_path, progress=True)) == 2


def test_type_and_missing_frame_errors_name_row(tmp_path):
    sheet = make_samm_lv(tmp_path, [[6, "006_1_1", 1, 5, 7, 10, 6, "Blink", "", ""]])
    with pytest.raises(DatasetError, match=r"row 6, column 'Type': type must start with Micro or Macro"):
        read_samm_long_videos(tmp_path)
    make_samm_lv(tmp_path, [ROWS[0], [6, "006_1_9", 1, 30, 35, 45, 15, "Macro", "", ""]])
    with pytest.raises(DatasetError, match=r"row 7: frame 45 is not in .*006_1") as info:
        read_samm_long_videos(tmp_path)
    assert info.value.file == str(sheet)
    kept = read_samm_long_videos(tmp_path, errors="skip")
    assert [len(v.intervals) for v in kept] == [1, 0]
    make_samm_lv(tmp_path, [[8, "008_3_1", 1, 5, 7, 10, 6, "Micro", "", ""]])
    with pytest.raises(DatasetError, match=r"row 6: video folder '008_3' \(from '008_3_1'\) not found"):
        read_samm_long_videos(tmp_path)


def test_missing_column_and_class_map_refused(tmp_path):
    header = [h for h in HEADER if h != "Type"]
    write_xlsx(tmp_path / "SAMM_LongVideos_V1_Release.xlsx", {"s": [header]})
    (tmp_path / "SAMM_longvideos").mkdir()
    with pytest.raises(
        DatasetError, match=r"SAMM_LongVideos_V1_Release\.xlsx, column 'Type': missing column"
    ):
        read_samm_long_videos(tmp_path)
    make_samm_lv(tmp_path, ROWS)
    with pytest.raises(DatasetError, match="class maps apply to clip datasets"):
        read_dataset("samm_long", tmp_path, class_map="paper4")
