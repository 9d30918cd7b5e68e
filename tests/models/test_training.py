"""The options both train commands share: --set parsing, the dataset split, one-line errors."""

import argparse

import pytest

from mestream.models.akmnet.config import PRESETS as AKMNET_PRESETS
from mestream.models.akmnet.config import ConfigError as AKMNetConfigError
from mestream.models.checkpoint import CheckpointError, git_sha
from mestream.models.datasets import DatasetError
from mestream.models.mesnet.config import PRESETS as MESNET_PRESETS
from mestream.models.mesnet.config import ConfigError as MESNetConfigError
from mestream.models.training import (
    EvalError,
    OptionError,
    OverrideError,
    check_data_options,
    check_eval_seed,
    config_with_overrides,
    dataset_split,
    eval_provenance,
    parse_overrides,
    positive_float,
    positive_int,
    report_errors,
)
from tests.models.datasets.test_casme_sq import make_casme_sq


def test_set_values_are_json_or_bare_strings():
    assert parse_overrides(["lr=1e-3", "widths=[8, 16]", "flag=true", "mode=motion", "name = x=y"]) == {
        "lr": 1e-3,
        "widths": [8, 16],
        "flag": True,
        "mode": "motion",
        "name": " x=y",
    }
    for bad in ("lr", "=3"):
        with pytest.raises(OverrideError, match="--set takes FIELD=VALUE"):
            parse_overrides([bad])
    with pytest.raises(OverrideError, match="--dataset-option takes KEY=VALUE, got 'errors'"):
        parse_overrides(["errors"], "--dataset-option", "KEY")


@pytest.mark.parametrize(
    "presets, error", [(MESNET_PRESETS, MESNetConfigError), (AKMNET_PRESETS, AKMNetConfigError)]
)
def test_overrides_go_through_the_strict_from_dict(presets, error):
    demo = presets["demo"]
    assert config_with_overrides(demo) == demo and config_with_overrides(demo, [], epochs=None) == demo
    changed = config_with_overrides(demo, ["epochs=7", "batch_size=3"], batch_size=5)
    assert (changed.epochs, changed.batch_size, changed.lr) == (7, 5, demo.lr)  # explicit options win
    with pytest.raises(error, match="epoks"):
        config_with_overrides(demo, ["epoks=7"])
    with pytest.raises(error, match="epochs"):
        config_with_overrides(demo, ["epochs=many"])


def test_dataset_split_is_subject_independent_and_described(tmp_path):
    make_casme_sq(tmp_path)
    train, val, data = dataset_split("casme_sq_long", str(tmp_path), 2, seed=0)
    assert {v.subject for v in train} == set(data["train_subjects"])
    assert {v.subject for v in val} == set(data["val_subjects"])
    assert sorted(data["train_subjects"] + data["val_subjects"]) == ["s15", "s16"]
    assert (data["dataset"], data["root"], data["fold"]) == ("casme_sq_long", str(tmp_path), "fold1of2")
    with pytest.raises(DatasetError, match="--root"):
        dataset_split("casme_sq_long", None, 2, seed=0)
    assert "options" not in data


def test_dataset_split_passes_the_reader_options_and_records_them(tmp_path):
    sheet = make_casme_sq(tmp_path)
    moved = sheet.rename(tmp_path / "codes.xlsx")  # no longer found by its usual name
    with pytest.raises(DatasetError, match="no annotation file"):
        dataset_split("casme_sq_long", str(tmp_path), 2, seed=0)
    _, _, data = dataset_split("casme_sq_long", str(tmp_path), 2, seed=0, annotations=moved.name)
    assert data["options"] == {"annotations": "codes.xlsx"}
    with pytest.raises(DatasetError, match="unknown option\\(s\\) 'bogus'"):
        dataset_split("casme_sq_long", str(tmp_path), 2, seed=0, bogus=1)


def test_user_errors_are_one_line_and_exit_code_2(capsys):
    def fail(exc):
        def body():
            raise exc

        return body

    assert report_errors("mestream train x", lambda: 0, ()) == 0
    for exc in (
        OverrideError("--set takes FIELD=VALUE"),
        DatasetError("no rows", file="a.xlsx", row=3),
        MESNetConfigError("MESNetConfig: unknown key(s) foo"),
    ):
        assert report_errors("mestream train x", fail(exc), (MESNetConfigError,)) == 2
        assert capsys.readouterr() == ("", f"mestream train x: {exc}\n")  # on stderr, like `mestream run`
    for exc in (
        OptionError("--root only applies with --dataset"),
        EvalError("seed 0"),
        CheckpointError("checkpoint x.pt: no such file"),
    ):
        assert report_errors("mestream eval x", fail(exc), ()) == 2
        assert capsys.readouterr() == ("", f"mestream eval x: {exc}\n")
    with pytest.raises(KeyError):  # a bug stays a traceback
        report_errors("mestream train x", fail(KeyError("bug")), (MESNetConfigError,))


@pytest.mark.parametrize(
    "kind, good, bad",
    [
        (positive_int, ("1", "12"), ("0", "-3", "2.5", "x")),
        (positive_float, ("0.5", "6"), ("0", "-1", "nan", "inf", "x")),
    ],
)
def test_counts_and_durations_must_be_positive(kind, good, bad):
    assert [kind(g) for g in good] == [float(g) if kind is positive_float else int(g) for g in good]
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=f"got '{text}'"):
            kind(text)


def _options(**given):
    base = {
        "dataset": None,
        "root": None,
        "folds": None,
        "dataset_option": [],
        "class_map": None,
        "train_subjects": None,
        "val_subjects": None,
        "duration": None,
    }
    return argparse.Namespace(**{**base, **given})


def test_options_the_chosen_data_would_ignore_are_refused():
    check_data_options(_options())
    check_data_options(
        _options(dataset="casme2", root="r", folds=3, dataset_option=["errors=skip"], class_map="smic3")
    )
    check_data_options(_options(train_subjects=2, val_subjects=1, duration=6.0))
    for given, flag in (
        ({"root": "r"}, "--root"),
        ({"folds": 5}, "--folds"),
        ({"class_map": "paper4"}, "--class-map"),
        ({"dataset_option": ["errors=skip"]}, "--dataset-option"),
    ):
        with pytest.raises(OptionError, match=f"^{flag} only applies with --dataset \\(without it"):
            check_data_options(_options(**given))
    for given, flag in (
        ({"train_subjects": 2}, "--train-subjects"),
        ({"val_subjects": 1}, "--val-subjects"),
        ({"duration": 6.0}, "--duration"),
    ):
        with pytest.raises(
            OptionError, match=f"^{flag} only applies to synthetic subjects, not to --dataset casme2$"
        ):
            check_data_options(_options(dataset="casme2", **given))
    with pytest.raises(OptionError, match="^--root, --folds only apply with --dataset"):
        check_data_options(_options(root="r", folds=2))
    # a command without some of the options (AKMNet has no --duration) is checked on the ones it has
    check_data_options(argparse.Namespace(dataset="casme2", train_subjects=None))


def test_eval_provenance_and_seed_refusal_name_what_was_evaluated(tmp_path):
    card = {"git_sha": "abc123", "data": {"seed": 0}}
    got = eval_provenance(
        seed=1, subjects=[1000, 1001], duration_s=6, checkpoint=tmp_path / "m.pt", card=card
    )
    assert got == {
        "seed": 1,
        "subjects": 2,
        "subject_ids": [1000, 1001],
        "duration_s": 6.0,
        "checkpoint": str(tmp_path / "m.pt"),
        "trained_git_sha": "abc123",
        "eval_git_sha": git_sha(),
    }
    assert (
        eval_provenance(seed=1, subjects=[], duration_s=1, checkpoint="x", card={})["trained_git_sha"] is None
    )
    check_eval_seed(1, card, "m.pt")
    with pytest.raises(EvalError, match="^checkpoint m.pt: seed 0 is the seed this model was trained on"):
        check_eval_seed(0, card, "m.pt")
