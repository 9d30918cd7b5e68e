"""Emotion -> class maps."""

from __future__ import annotations

import pytest

from mestream.models.datasets import (
    DFME_7CLASS,
    PAPER_4CLASS,
    SMIC_3CLASS,
    ClassMap,
    ClassMapError,
    get_class_map,
)


@pytest.mark.parametrize(
    "emotion, expected",
    [
        ("happiness", "positive"),
        ("Happiness", "positive"),
        ("disgust", "negative"),
        ("sadness", "negative"),
        ("contempt", "negative"),
        ("Anger", "negative"),
        ("fear", "negative"),
        ("surprise", "surprise"),
        ("tense", "others"),
        ("repression", "others"),
        ("Other", "others"),
        ("others", "others"),
        ("  positive ", "positive"),  # already mapped labels (CAS(ME)²) pass through
    ],
)
def test_paper_map_follows_the_paper(emotion, expected):
    assert PAPER_4CLASS(emotion) == expected


def test_paper_map_class_order_and_index():
    assert PAPER_4CLASS.classes == ("positive", "negative", "surprise", "others")
    assert PAPER_4CLASS.index("fear") == 1


def test_unknown_emotion_is_an_error_unless_default():
    with pytest.raises(ClassMapError, match="emotion 'repressed happiness' is not in class map 'paper4'"):
        PAPER_4CLASS("repressed happiness")
    assert not SMIC_3CLASS.covers("others")
    lenient = ClassMap("lenient", ("a", "b"), {"x": "a"}, default="b")
    assert lenient("anything") == "b" and lenient.covers("anything")


def test_dfme_and_smic_maps():
    assert DFME_7CLASS("Contempt") == "contempt" and DFME_7CLASS("happy") == "happiness"
    assert len(DFME_7CLASS.classes) == 7
    assert SMIC_3CLASS("po") == "positive" and SMIC_3CLASS("Negative") == "negative"


def test_from_dict_is_strict():
    made = ClassMap.from_dict({"name": "two", "classes": ["pos", "neg"], "mapping": {"joy": "pos"}})
    assert made("JOY") == "pos"
    with pytest.raises(ClassMapError, match="unknown key\\(s\\) 'clases'"):
        ClassMap.from_dict({"name": "x", "clases": ["a"]})
    with pytest.raises(ClassMapError, match="maps to 'c', which is not one of the classes"):
        ClassMap("bad", ("a", "b"), {"x": "c"})
    with pytest.raises(ClassMapError, match="default 'z'"):
        ClassMap("bad", ("a",), default="z")


def test_get_class_map():
    assert get_class_map("paper4") is PAPER_4CLASS
    assert get_class_map({"name": "n", "classes": ["a"]}).classes == ("a",)
    with pytest.raises(ClassMapError, match="unknown class map 'nope'"):
        get_class_map("nope")
