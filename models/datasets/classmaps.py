"""Emotion label -> class maps, so one recogniser can be trained across datasets that label differently.

CASME II writes "happiness" and "others", SAMM "Happiness" and "Other", CAS(ME)² already uses
"positive"/"negative", SMIC folders say "po"/"ne"/"sur" in clip names. A :class:`ClassMap` maps the
emotion text (case- and whitespace-insensitively) to one of its classes and fails loudly on an
emotion it does not know, unless it was given a ``default`` class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mestream.models.datasets.base import DatasetError


class ClassMapError(DatasetError):
    """An emotion the class map does not cover, or a malformed class map."""


def _key(emotion: Any) -> str:
    return " ".join(str(emotion).split()).casefold()


@dataclass(frozen=True)
class ClassMap:
    """Maps dataset emotion labels to an ordered set of classes.

    Args:
        name: short name, recorded in model cards.
        classes: the classes in output order (index = network output).
        mapping: emotion text -> class. Each class name also maps to itself, so an already mapped
            label passes through unchanged.
        default: class for emotions not in ``mapping``; None makes them an error.
    """

    name: str
    classes: tuple[str, ...]
    mapping: Mapping[str, str] = field(default_factory=dict)
    default: str | None = None

    def __post_init__(self) -> None:
        classes = tuple(str(c) for c in self.classes)
        if not classes or len(set(classes)) != len(classes):
            raise ClassMapError(
                f"class map {self.name!r}: classes must be distinct and non-empty, got {classes}"
            )
        table = {_key(c): c for c in classes}
        for emotion, target in dict(self.mapping).items():
            if target not in classes:
                raise ClassMapError(
                    f"class map {self.name!r}: emotion {emotion!r} maps to {target!r}, "
                    f"which is not one of the classes {list(classes)}"
                )
            table[_key(emotion)] = target
        if self.default is not None and self.default not in classes:
            raise ClassMapError(
                f"class map {self.name!r}: default {self.default!r} is not one of {list(classes)}"
            )
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "mapping", table)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassMap:
        """Build from a config table: keys ``name``, ``classes``, ``mapping``, ``default``; others are
        errors."""
        known = {"name", "classes", "mapping", "default"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ClassMapError(
                f"class map: unknown key(s) {', '.join(map(repr, unknown))}; known: {sorted(known)}"
            )
        for key in ("name", "classes"):
            if key not in data:
                raise ClassMapError(f"class map: missing key {key!r}")
        if not isinstance(data.get("mapping", {}), Mapping):
            raise ClassMapError(f"class map {data['name']!r}: 'mapping' must be a table of emotion = class")
        return cls(
            str(data["name"]), tuple(data["classes"]), dict(data.get("mapping", {})), data.get("default")
        )

    def covers(self, emotion: str) -> bool:
        """True when :meth:`__call__` would not raise."""
        return self.default is not None or _key(emotion) in self.mapping

    def __call__(self, emotion: str) -> str:
        """The class of ``emotion``; an unknown emotion is an error unless a default was given."""
        found = self.mapping.get(_key(emotion), self.default)
        if found is None:
            raise ClassMapError(
                f"emotion {emotion!r} is not in class map {self.name!r} (known: "
                f"{', '.join(sorted(self.mapping))}); give the map a default or skip such clips"
            )
        return found

    def index(self, emotion: str) -> int:
        """Position of the class of ``emotion`` in ``classes``."""
        return self.classes.index(self(emotion))


PAPER_4CLASS = ClassMap(
    "paper4",
    ("positive", "negative", "surprise", "others"),
    {
        # AKMNet / MECIA merge: positive = happiness; negative = disgust, sadness, contempt, anger,
        # fear; surprise; others = tense, repression. CASME II's "others" and SAMM's "Other" are
        # the others class by name.
        "happiness": "positive",
        "happy": "positive",
        "disgust": "negative",
        "sadness": "negative",
        "contempt": "negative",
        "anger": "negative",
        "fear": "negative",
        "surprise": "surprise",
        "tense": "others",
        "repression": "others",
        "other": "others",
    },
)

DFME_7CLASS = ClassMap(
    "dfme7",
    ("happiness", "anger", "contempt", "disgust", "fear", "sadness", "surprise"),
    {
        "happy": "happiness",
        "angry": "anger",
        "disgusted": "disgust",
        "fearful": "fear",
        "sad": "sadness",
        "surprised": "surprise",
    },
)

SMIC_3CLASS = ClassMap(
    "smic3",
    ("positive", "negative", "surprise"),
    {"po": "positive", "ne": "negative", "sur": "surprise", "su": "surprise"},
)

CLASS_MAPS: dict[str, ClassMap] = {m.name: m for m in (PAPER_4CLASS, DFME_7CLASS, SMIC_3CLASS)}


def get_class_map(name_or_map: str | ClassMap | Mapping[str, Any]) -> ClassMap:
    """A built-in map by name ("paper4", "dfme7", "smic3"), a ClassMap, or a config table."""
    if isinstance(name_or_map, ClassMap):
        return name_or_map
    if isinstance(name_or_map, Mapping):
        return ClassMap.from_dict(name_or_map)
    try:
        return CLASS_MAPS[str(name_or_map)]
    except KeyError:
        raise ClassMapError(f"unknown class map {name_or_map!r}; built-in: {', '.join(CLASS_MAPS)}") from None
