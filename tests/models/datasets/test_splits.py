"""Subject-independent splits: no subject on both sides, LOSO has one fold per subject."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mestream.models.datasets import DatasetError, kfold_splits, loso_splits


def records(subjects, per_subject=3, dataset="casme2"):
    return [
        SimpleNamespace(dataset=dataset, subject=s, clip=f"{s}_{i}")
        for s in subjects
        for i in range(per_subject)
    ]


def people(items):
    return {(r.dataset, r.subject) for r in items}


def test_loso_one_fold_per_subject_in_natural_order():
    data = records(["sub10", "sub2", "sub1"])
    folds = list(loso_splits(data))
    assert [name for name, _, _ in folds] == ["sub1", "sub2", "sub10"]
    for name, train, test in folds:
        assert people(test) == {("casme2", name)}
        assert not people(train) & people(test)
        assert len(train) + len(test) == len(data)


def test_loso_pooled_datasets_keep_subjects_apart():
    data = records(["sub01"]) + records(["sub01", "006"], dataset="samm")
    folds = list(loso_splits(data))
    assert [name for name, _, _ in folds] == ["casme2/sub01", "samm/006", "samm/sub01"]
    assert all(len(test) == 3 for _, _, test in folds)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_kfold_every_subject_tested_once(k):
    data = records([f"s{i}" for i in range(11)], per_subject=2)
    folds = list(kfold_splits(data, k, seed=4))
    assert len(folds) == k and folds[0][0] == f"fold1of{k}"
    tested = [p for _, _, test in folds for p in people(test)]
    assert sorted(tested) == sorted(people(data))  # each subject in exactly one test fold
    sizes = [len(people(test)) for _, _, test in folds]
    assert max(sizes) - min(sizes) <= 1
    for _, train, test in folds:
        assert not people(train) & people(test)
        assert len(train) + len(test) == len(data)


def test_kfold_is_seeded():
    data = records([f"s{i}" for i in range(10)], per_subject=1)
    again = [[r.subject for r in test] for _, _, test in kfold_splits(data, 5, seed=1)]
    assert again == [[r.subject for r in test] for _, _, test in kfold_splits(data, 5, seed=1)]
    assert again != [[r.subject for r in test] for _, _, test in kfold_splits(data, 5, seed=2)]


def test_split_errors():
    with pytest.raises(DatasetError, match="at least 2 subjects"):
        list(loso_splits(records(["only"])))
    with pytest.raises(DatasetError, match="k = 4 folds need at least 4 subjects, got 3"):
        list(kfold_splits(records(["a", "b", "c"]), 4))
    with pytest.raises(DatasetError, match="k must be an integer >= 2"):
        list(kfold_splits(records(["a", "b"]), 1))
    with pytest.raises(DatasetError, match="need .dataset and .subject"):
        list(loso_splits([object(), object()]))
