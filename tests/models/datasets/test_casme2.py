"""CASME II reader on a fixture tree: CASME2_RAW_selected/subXX/EPxx/imgN.png + coding sheet."""

from __future__ import annotations

import pytest

from mestream.models.datasets import ClassMap, ClassMapError, DatasetError, load_frames, read_dataset
from mestream.models.datasets.casme2 import read_casme2
from tests.models.datasets.helpers import numbered, write_csv, write_frames, write_xlsx

HEADER = [
    "Subject",
    "Filename",
    "Unnamed: 2",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Unnamed: 6",
    "Action Units",
    "Estimated Emotion",
]


def make_casme2(root, rows=None, header=HEADER, csv=False):
    write_frames(root / "CASME2_RAW_selected" / "sub01" / "EP02_01f", numbered("img", range(1, 7)))
    write_frames(root / "CASME2_RAW_selected" / "sub02" / "EP03_02", numbered("img", range(10, 15)))
    rows = (
        rows
        if rows is not None
        else [
            [1, "EP02_01f", "x", 2, 3, 5, None, "4+L10", "happiness"],
            ["02", "EP03_02", "x", 10, "/", 13, None, 12, "disgust"],
        ]
    )
    if csv:
        return write_csv(root / "CASME2-coding-20140508.csv", [header, *rows])
    return write_xlsx(root / "CASME2-coding-20140508.xlsx", {"Sheet1": [header, *rows]})


def test_reads_clips(tmp_path):
    sheet = make_casme2(tmp_path)
    first, second = read_casme2(tmp_path)
    assert (first.dataset, first.subject, first.clip) == ("casme2", "sub01", "EP02_01f")
    assert (first.onset, first.apex, first.offset, first.fps) == (2, 3, 5, 200.0)
    assert first.frame_numbers == (2, 3, 4, 5) and first.apex_index == 1
    assert [p.name for p in first.frames] == ["img2.png", "img3.png", "img4.png", "img5.png"]
    assert first.aus == ("4", "L10") and first.emotion == "happiness"
    assert first.source == f"{sheet}, row 2"
    assert (second.subject, second.apex, second.aus, second.frame_numbers) == (
        "sub02",
        None,
        ("12",),
        (10, 11, 12, 13),
    )
    assert load_frames(first.frames)[:, 0, 0].tolist() == [2, 3, 4, 5]


def test_csv_annotations_work_too(tmp_path):
    make_casme2(tmp_path, csv=True)
    assert [c.clip for c in read_casme2(tmp_path)] == ["EP02_01f", "EP03_02"]


def test_missing_frame_names_file_and_row(tmp_path):
    sheet = make_casme2(
        tmp_path,
        rows=[
            [1, "EP02_01f", "x", 2, 3, 5, None, "4", "happiness"],
            [1, "EP02_01f", "x", 4, 5, 9, None, "4", "happiness"],
        ],
    )
    with pytest.raises(DatasetError, match=r"frame\(s\) 7, 8, 9 of 4\.\.9 not found") as info:
        read_casme2(tmp_path)
    assert info.value.file == str(sheet) and info.value.row == 3
    kept = read_casme2(tmp_path, errors="skip")
    assert [c.source.endswith("row 2") for c in kept] == [True]


def test_missing_clip_folder_names_row(tmp_path):
    make_casme2(tmp_path, rows=[[3, "EP09_09", "x", 1, 2, 3, None, "4", "fear"]])
    with pytest.raises(DatasetError, match=r"row 2: frame folder .*sub03.EP09_09 does not exist"):
        read_casme2(tmp_path)


def test_missing_column_names_file_and_column(tmp_path):
    header = [("Onset" if h == "OnsetFrame" else h) for h in HEADER]
    make_casme2(tmp_path, header=header)
    with pytest.raises(
        DatasetError, match=r"no header row with the columns \['Subject', 'Filename', 'OnsetFrame'\]"
    ):
        read_casme2(tmp_path)
    header = [h for h in HEADER if h != "Estimated Emotion"]
    make_casme2(tmp_path, header=header, rows=[[1, "EP02_01f", "x", 2, 3, 5, None, "4"]])
    message = r"CASME2-coding-20140508\.xlsx, column 'Estimated Emotion': missing column"
    with pytest.raises(DatasetError, match=message) as info:
        read_casme2(tmp_path)
    assert info.value.column == "Estimated Emotion"


def test_column_overrides_and_unknown_option(tmp_path):
    header = [("Objective Class" if h == "Estimated Emotion" else h) for h in HEADER]
    make_casme2(tmp_path, header=header)
    clips = read_casme2(tmp_path, columns={"emotion": "Objective Class"})
    assert [c.emotion for c in clips] == ["happiness", "disgust"]
    with pytest.raises(DatasetError, match="unknown column option\\(s\\) 'emotions'"):
        read_casme2(tmp_path, columns={"emotions": "Objective Class"})


def test_read_dataset_with_class_map(tmp_path):
    make_casme2(tmp_path)
    clips = read_dataset("casme2", tmp_path, class_map="paper4")
    assert [c.label for c in clips] == ["positive", "negative"]
    joy = ClassMap("joy", ("positive",), {"happiness": "positive"})
    with pytest.raises(ClassMapError, match=r"\.xlsx, row 3: emotion 'disgust' is not in class map 'joy'"):
        read_dataset("casme2", tmp_path, class_map=joy)
    kept = read_dataset("casme2", tmp_path, class_map=joy, unmapped="skip")
    assert [(c.clip, c.label) for c in kept] == [("EP02_01f", "positive")]
    with pytest.raises(DatasetError, match="unknown option\\(s\\) 'part'; it takes: annotations"):
        read_dataset("casme2", tmp_path, part="HS")
    with pytest.raises(DatasetError, match="unknown dataset 'casme3'"):
        read_dataset("casme3", tmp_path)


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DatasetError, match="CASME II: dataset folder not found"):
        read_casme2(tmp_path / "nowhere")


def test_a_root_that_is_no_folder_is_named(tmp_path):
    for root in (None, ""):
        with pytest.raises(DatasetError, match="CASME II: root must be the dataset folder"):
            read_dataset("casme2", root)
    sheet = make_casme2(tmp_path)
    with pytest.raises(DatasetError, match=f"{sheet.name}: CASME II: root is a file, not the dataset folder"):
        read_dataset("casme2", sheet)
