"""Subject-independent evaluation splits: leave-one-subject-out and k-fold over subjects.

A subject is ``(record.dataset, record.subject)``, so "sub01" of CASME II and "006" of SAMM stay
different people when datasets are pooled (composite evaluation, MEGC 2019 style). No subject ever
appears on both sides of a split: ME data sets are small and per-person expressions are similar
enough that a shared subject inflates every figure.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mestream.images import natural_key
from mestream.models.datasets.base import DatasetError

R = TypeVar("R")


def subject_key(record: Any) -> tuple[str, str]:
    """The person a record belongs to: (dataset, subject)."""
    try:
        return str(record.dataset), str(record.subject)
    except AttributeError:
        raise DatasetError(f"split records need .dataset and .subject, got {type(record).__name__}") from None


def subjects(records: Sequence[Any]) -> list[tuple[str, str]]:
    """The distinct subjects in natural order (sub2 before sub10)."""
    return sorted({subject_key(r) for r in records}, key=lambda k: (k[0], natural_key(Path(k[1]))))


def _name(key: tuple[str, str], pooled: bool) -> str:
    return f"{key[0]}/{key[1]}" if pooled else key[1]


def loso_splits(records: Sequence[R]) -> Iterator[tuple[str, list[R], list[R]]]:
    """One fold per subject: (subject name, train = everyone else, test = that subject).

    The name is the subject ("sub01"), or "dataset/subject" when the records mix datasets.
    """
    keys = subjects(records)
    if len(keys) < 2:
        raise DatasetError(f"leave-one-subject-out needs at least 2 subjects, got {len(keys)}")
    pooled = len({k[0] for k in keys}) > 1
    for key in keys:
        test = [r for r in records if subject_key(r) == key]
        train = [r for r in records if subject_key(r) != key]
        yield _name(key, pooled), train, test


def kfold_splits(records: Sequence[R], k: int, seed: int = 0) -> Iterator[tuple[str, list[R], list[R]]]:
    """k folds over shuffled subjects (DFME's protocol: 10 % of the subjects test in each of 10 folds).

    Subjects are shuffled with ``numpy.random.default_rng(seed)`` and cut into k groups whose sizes
    differ by at most one; fold names are "fold1of10" ... . The same seed gives the same folds.
    """
    keys = subjects(records)
    if not isinstance(k, int) or isinstance(k, bool) or k < 2:
        raise DatasetError(f"k must be an integer >= 2, got {k!r}")
    if k > len(keys):
        raise DatasetError(f"k = {k} folds need at least {k} subjects, got {len(keys)}")
    order = np.random.default_rng(seed).permutation(len(keys))
    for i, group in enumerate(np.array_split(order, k)):
        held = {keys[j] for j in group}
        test = [r for r in records if subject_key(r) in held]
        train = [r for r in records if subject_key(r) not in held]
        yield f"fold{i + 1}of{k}", train, test
