"""Readers for the licensed micro-expression datasets, class maps and subject-independent splits.

``read_dataset("casme2", "/data/CASME2", class_map="paper4")`` returns :class:`Clip` records;
the long-video readers (``casme_sq_long``, ``samm_long``) return :class:`LongVideo` records for
spotting. Each reader module's docstring gives the folder and spreadsheet layout it expects.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from mestream.models.datasets.base import (
    Clip,
    DatasetError,
    LabeledInterval,
    LongVideo,
    load_frames,
    log,
    read_table,
)
from mestream.models.datasets.casme2 import read_casme2
from mestream.models.datasets.casme_sq import read_casme_sq_clips, read_casme_sq_videos
from mestream.models.datasets.classmaps import (
    CLASS_MAPS,
    DFME_7CLASS,
    PAPER_4CLASS,
    SMIC_3CLASS,
    ClassMap,
    ClassMapError,
    get_class_map,
)
from mestream.models.datasets.dfme import read_dfme
from mestream.models.datasets.samm import read_samm
from mestream.models.datasets.samm_lv import read_samm_long_videos
from mestream.models.datasets.smic import read_smic
from mestream.models.datasets.splits import kfold_splits, loso_splits

READERS: dict[str, Callable[..., list[Any]]] = {
    "casme2": read_casme2,
    "samm": read_samm,
    "smic": read_smic,
    "casme_sq": read_casme_sq_clips,
    "dfme": read_dfme,
    "casme_sq_long": read_casme_sq_videos,
    "samm_long": read_samm_long_videos,
}

__all__ = [
    "CLASS_MAPS",
    "DFME_7CLASS",
    "PAPER_4CLASS",
    "READERS",
    "SMIC_3CLASS",
    "ClassMap",
    "ClassMapError",
    "Clip",
    "DatasetError",
    "LabeledInterval",
    "LongVideo",
    "apply_class_map",
    "get_class_map",
    "kfold_splits",
    "load_frames",
    "loso_splits",
    "read_dataset",
    "read_table",
]


def apply_class_map(
    clips: list[Clip], class_map: str | ClassMap | Mapping[str, Any], unmapped: str = "raise"
) -> list[Clip]:
    """The clips with ``label`` set by ``class_map``.

    ``unmapped="raise"`` stops at the first clip whose emotion the map does not cover, naming the
    annotation file and row; ``"skip"`` drops such clips (CASME II's "sadness" under a 3-class map)
    and logs how many went.
    """
    if unmapped not in ("raise", "skip"):
        raise DatasetError(f"unmapped must be 'raise' or 'skip', got {unmapped!r}")
    mapping = get_class_map(class_map)
    out, dropped = [], 0
    for clip in clips:
        if not mapping.covers(clip.emotion):
            if unmapped == "skip":
                dropped += 1
                continue
            raise ClassMapError(
                f"{clip.source or clip.name}: emotion {clip.emotion!r} is not in class map "
                f"{mapping.name!r} (known: {', '.join(sorted(mapping.mapping))}); "
                "pass unmapped='skip' to leave such clips out"
            )
        out.append(replace(clip, label=mapping(clip.emotion)))
    if dropped:
        log.info(
            "class map %s: %d clip(s) with unmapped emotions left out, %d kept",
            mapping.name,
            dropped,
            len(out),
        )
    return out


def read_dataset(
    name: str,
    root: str | Path,
    *,
    class_map: str | ClassMap | Mapping[str, Any] | None = None,
    unmapped: str = "raise",
    **options: Any,
) -> list[Any]:
    """Read dataset ``name`` (a key of :data:`READERS`) from ``root``.

    ``options`` go to the reader (annotations=, frames_dir=, columns=, fps=, errors=, ...); an
    option the reader does not take is an error listing the ones it does. ``class_map`` labels
    clips (see :func:`apply_class_map`); it does not apply to the long-video readers.
    """
    reader = READERS.get(name)
    if reader is None:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(READERS)}")
    params = [p for p in inspect.signature(reader).parameters if p != "root"]
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise DatasetError(
            f"dataset {name!r}: unknown option(s) {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(params)}"
        )
    records = reader(root, **options)
    if class_map is None:
        return records
    if records and not isinstance(records[0], Clip):
        raise DatasetError(f"dataset {name!r} gives long videos; class maps apply to clip datasets")
    return apply_class_map(records, class_map, unmapped)
