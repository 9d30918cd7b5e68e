"""SMIC reader: HS|VIS|NIR/<subject>/micro/<emotion>/<clip>/ folders, no sheet, no apex."""

from __future__ import annotations

import pytest

from mestream.models.datasets import DatasetError, read_dataset
from mestream.models.datasets.smic import read_smic
from tests.models.datasets.helpers import numbered, write_frames


def make_smic(root):
    write_frames(
        root / "HS" / "s2" / "micro" / "positive" / "s2_po_01", numbered("image", range(46540, 46545), 6)
    )
    write_frames(root / "HS" / "s2" / "micro" / "negative" / "s2_ne_02", numbered("image", range(7, 10), 6))
    write_frames(root / "HS" / "s10" / "micro" / "surprise" / "s10_sur_01", numbered("image", range(1, 4), 6))
    write_frames(root / "HS" / "s10" / "non_micro" / "x" / "s10_x", numbered("image", range(1, 3), 6))
    write_frames(root / "VIS" / "s1" / "micro" / "negative" / "s1_ne_01", numbered("image", range(20, 24), 6))


def test_reads_hs_clips(tmp_path):
    make_smic(tmp_path)
    clips = read_smic(tmp_path)
    assert [(c.subject, c.emotion, c.clip) for c in clips] == [
        ("s2", "negative", "s2_ne_02"),
        ("s2", "positive", "s2_po_01"),
        ("s10", "surprise", "s10_sur_01"),
    ]
    positive = clips[1]
    assert (positive.onset, positive.apex, positive.offset, positive.fps) == (46540, None, 46544, 100.0)
    assert positive.frames[0].name == "image046540.png" and positive.aus == ()
    assert positive.apex_index is None


def test_part_selection_and_part_folder_as_root(tmp_path):
    make_smic(tmp_path)
    vis = read_smic(tmp_path, part="vis")
    assert [(c.subject, c.fps, c.frame_numbers) for c in vis] == [("s1", 25.0, (20, 21, 22, 23))]
    assert len(read_smic(tmp_path / "HS")) == 3
    with pytest.raises(DatasetError, match="no NIR/ folder"):
        read_smic(tmp_path, part="NIR")
    with pytest.raises(DatasetError, match="part must be one of HS, VIS, NIR"):
        read_smic(tmp_path, part="IR")
    labels = [c.label for c in read_dataset("smic", tmp_path, class_map="smic3")]
    assert labels == ["negative", "positive", "surprise"]


def test_gap_in_frames_names_the_folder(tmp_path):
    make_smic(tmp_path)
    (tmp_path / "HS" / "s2" / "micro" / "negative" / "s2_ne_02" / "image000008.png").unlink()
    with pytest.raises(DatasetError, match=r"s2_ne_02: frame numbers are not consecutive: missing \[8\]"):
        read_smic(tmp_path)
    assert len(read_smic(tmp_path, errors="skip")) == 2
