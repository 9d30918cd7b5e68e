"""The options both train commands share: --set parsing, the dataset split, one-line errors."""

import pytest

from mestream.models.akmnet.config import PRESETS as AKMNET_PRESETS
from mestream.models.akmnet.config import ConfigError as AKMNetConfigError
from mestream.models.datasets import DatasetError
from mestream.models.mesnet.config import PRESETS as MESNET_PRESETS
from mestream.models.mesnet.config import ConfigError as MESNetConfigError
from mestream.models.training import (
    OverrideError, config_with_overrides, dataset_split, parse_overrides, report_errors)
from mestream.tests.models.datasets.test_casme_sq import make_casme_sq


def test_set_values_are_json_or_bare_strings():
    assert parse_overrides(["lr=1e-3", "widths=[8, 16]", "flag=true", "mode=motion", "name = x=y"]) == \
        {"lr": 1e-3, "widths": [8, 16], "flag": True, "mode": "motion", "name": " x=y"}
    for bad in ("lr", "=3"):
        with pytest.raises(OverrideError, match="FIELD=VALUE"):
            parse_overrides([bad])


@pytest.mark.parametrize("presets, error", [(MESNET_PRESETS, MESNetConfigError), (AKMNET_PRESETS, AKMNetConfigError)])
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


def test_user_errors_are_one_line_and_exit_code_2(capsys):
    def fail(exc):
        def body():
            raise exc
        return body

    assert report_errors("mestream train x", lambda: 0, ()) == 0
    for exc in (OverrideError("--set takes FIELD=VALUE"), DatasetError("no rows", file="a.xlsx", row=3),
                MESNetConfigError("MESNetConfig: unknown key(s) foo")):
        assert report_errors("mestream train x", fail(exc), (MESNetConfigError,)) == 2
        assert capsys.readouterr().out == f"mestream train x: {exc}\n"
    with pytest.raises(KeyError):  # a bug stays a traceback
        report_errors("mestream train x", fail(KeyError("bug")), (MESNetConfigError,))
