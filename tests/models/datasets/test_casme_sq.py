"""CAS(ME)² reader: rawpic/ long videos, headerless code sheet and the two naming sheets."""

from __future__ import annotations

import pytest

from mestream.engine.metrics import Interval
from mestream.models.datasets import DatasetError, read_dataset
from mestream.models.datasets.casme_sq import read_casme_sq_clips, read_casme_sq_videos
from tests.models.datasets.helpers import numbered, write_csv, write_frames, write_xlsx

CODES = [
    [1, "disgust1_1", 3, 5, 8, "4+7", "negative", "micro-expression", "disgust"],  # row 1
    [1, "disgust1_2", 10, 12, 0, "", "others", "macro-expression", ""],  # row 2: no offset
    [2, "anger1_1", 2, 3, 4, 12, "positive", "micro-expression", ""],  # row 3
]
NAMING1 = [[15, "s15", 1], [16, "s16", 2]]
NAMING2 = [[101, "disgust1"], [401, "anger1"], [102, "disgust2"]]


def make_casme_sq(root, codes=CODES):
    write_frames(root / "rawpic" / "s15" / "15_0101disgustingteeth", numbered("img", range(1, 21)))
    write_frames(root / "rawpic" / "s16" / "16_0401girlcrashing", numbered("img", range(1, 7)))
    write_frames(root / "rawpic" / "s16" / "16_0102eatingworms", numbered("img", range(1, 6)))
    return write_xlsx(
        root / "CAS(ME)^2code_final.xlsx",
        {"CASFEcode_final": codes, "naming rule1": NAMING1, "naming rule2": NAMING2},
    )


def test_long_videos_with_micro_and_macro_intervals(tmp_path):
    sheet = make_casme_sq(tmp_path)
    videos = read_casme_sq_videos(tmp_path)
    assert [(v.subject, v.video, len(v)) for v in videos] == [
        ("s15", "15_0101disgustingteeth", 20),
        ("s16", "16_0102eatingworms", 5),
        ("s16", "16_0401girlcrashing", 6),
    ]
    teeth, worms, crash = videos
    micro, macro = teeth.intervals
    assert (micro.onset, micro.apex, micro.offset, micro.kind, micro.emotion, micro.aus) == (
        3,
        5,
        8,
        "micro",
        "negative",
        ("4", "7"),
    )
    assert (macro.onset, macro.apex, macro.offset, macro.kind) == (10, 12, 14, "macro")  # 2 * apex - onset
    assert macro.source == f"{sheet}, row 2"
    assert worms.intervals == ()  # unannotated videos are kept
    assert crash.intervals[0].aus == ("12",) and teeth.fps == 30.0
    assert teeth.path(3).name == "img3.png" and teeth.frame_numbers[:3] == (1, 2, 3)
    assert [p.name for p in teeth.paths_between(3, 5)] == ["img3.png", "img4.png", "img5.png"]
    with pytest.raises(DatasetError, match="has no frame 21"):
        teeth.path(21)
    assert teeth.to_intervals() == [
        Interval("15_0101disgustingteeth", 3, 8, kind="micro"),
        Interval("15_0101disgustingteeth", 10, 14, kind="macro"),
    ]
    assert teeth.to_intervals(kinds=("macro",)) == [Interval("15_0101disgustingteeth", 10, 14, kind="macro")]


def test_derived_offset_is_clamped_to_the_video(tmp_path):
    make_casme_sq(tmp_path, codes=[[1, "disgust1_2", 10, 18, 0, "", "others", "macro-expression", ""]])
    (macro,) = read_casme_sq_videos(tmp_path)[0].intervals
    assert (macro.onset, macro.offset) == (10, 20)


def test_clips_micro_by_default_or_both_kinds(tmp_path):
    make_casme_sq(tmp_path)
    micro = read_casme_sq_clips(tmp_path)
    assert [(c.subject, c.clip, c.frame_numbers, c.kind) for c in micro] == [
        ("s15", "disgust1_1", (3, 4, 5, 6, 7, 8), "micro"),
        ("s16", "anger1_1", (2, 3, 4), "micro"),
    ]
    both = read_dataset("casme_sq", tmp_path, kinds=("micro", "macro"), class_map="paper4")
    assert [(c.clip, c.kind, c.label) for c in both] == [
        ("disgust1_1", "micro", "negative"),
        ("disgust1_2", "macro", "others"),
        ("anger1_1", "micro", "positive"),
    ]
    with pytest.raises(DatasetError, match="kinds must be among"):
        read_casme_sq_clips(tmp_path, kinds=("blink",))


def test_clips_from_selectedpic_folders(tmp_path):
    make_casme_sq(tmp_path)
    write_frames(tmp_path / "selectedpic" / "s15" / "disgust1_1", numbered("img", range(3, 9)))
    with pytest.raises(DatasetError, match=r"row 3: frame folder .*selectedpic.s16.anger1_1 does not exist"):
        read_casme_sq_clips(tmp_path, clips_dir="selectedpic")
    (clip,) = read_casme_sq_clips(tmp_path, clips_dir="selectedpic", errors="skip")
    assert clip.frames[0].parent.name == "disgust1_1" and clip.frame_numbers == (3, 4, 5, 6, 7, 8)


def test_frame_named_but_not_on_disk(tmp_path):
    codes = [CODES[0], [2, "anger1_1", 2, 3, 9, "", "positive", "micro-expression", ""]]
    sheet = make_casme_sq(tmp_path, codes=codes)
    with pytest.raises(DatasetError, match=r"row 2: frame 9 is not in .*16_0401girlcrashing") as info:
        read_casme_sq_videos(tmp_path)
    assert info.value.file == str(sheet)
    with pytest.raises(DatasetError, match=r"row 2: frame\(s\) 7, 8, 9 of 2\.\.9 not found"):
        read_casme_sq_clips(tmp_path)


def test_bad_rows_name_file_and_row(tmp_path):
    make_casme_sq(tmp_path, codes=[[9, "disgust1_1", 3, 5, 8, "", "negative", "micro-expression", ""]])
    with pytest.raises(
        DatasetError, match=r"code_final\.xlsx, row 1: participant '9' is not in the subjects"
    ):
        read_casme_sq_videos(tmp_path)
    make_casme_sq(tmp_path, codes=[[1, "happy9_1", 3, 5, 8, "", "positive", "micro-expression", ""]])
    with pytest.raises(DatasetError, match=r"row 1: video 'happy9' \(from 'happy9_1'\) is not in the videos"):
        read_casme_sq_videos(tmp_path)
    make_casme_sq(tmp_path, codes=[[1, "disgust1_1", 3, 5, 8, "", "negative", "blink", ""]])
    with pytest.raises(DatasetError, match=r"row 1, column '7': type must be one of micro-expression"):
        read_casme_sq_videos(tmp_path)


def test_subject_named_by_folder_text_in_the_naming_table(tmp_path):
    make_casme_sq(tmp_path)
    videos = read_casme_sq_videos(tmp_path, columns={"naming_subject": 1})  # "s15" instead of 15
    assert [len(v.intervals) for v in videos] == [2, 0, 1]
    write_xlsx(
        tmp_path / "CAS(ME)^2code_final.xlsx",
        {"CASFEcode_final": CODES, "naming rule1": [[15, "sub", 1]], "naming rule2": NAMING2},
    )
    with pytest.raises(DatasetError, match=r"row 1: participant '1': the subjects naming table gives 'sub'"):
        read_casme_sq_videos(tmp_path, columns={"naming_subject": 1})


def test_header_row_is_skipped_and_csv_naming_tables(tmp_path):
    make_casme_sq(tmp_path)
    (tmp_path / "CAS(ME)^2code_final.xlsx").unlink()
    header = ["participant", "expression", "onset", "apex", "offset", "AUs", "emotion", "type", "self-report"]
    write_csv(tmp_path / "CAS(ME)^2code_final.csv", [header, *CODES])
    write_csv(tmp_path / "naming1.csv", NAMING1)
    write_csv(tmp_path / "naming2.csv", NAMING2)
    with pytest.raises(
        DatasetError, match="with CSV annotations, subjects \\(naming rule1\\) must be a CSV path"
    ):
        read_casme_sq_videos(tmp_path)
    videos = read_casme_sq_videos(tmp_path, subjects_sheet="naming1.csv", videos_sheet="naming2.csv")
    assert [len(v.intervals) for v in videos] == [2, 0, 1]
    assert videos[0].intervals[0].source.endswith("row 2")
