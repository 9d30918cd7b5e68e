import pytest

from mestream import cli
from mestream.models import commands
from mestream.models.registry import create_model
from mestream.models.training import MissingExtra


def test_help_lists_train_and_eval_without_importing_the_models(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    assert "mesnet" in out and "akmnet" in out


def test_missing_torch_names_the_extra(monkeypatch, capsys):
    def missing(what):
        raise MissingExtra(f"{what} needs PyTorch, from the 'train' extra")
    monkeypatch.setattr(commands, "require_torch", missing)
    assert cli.main(["eval", "mesnet", "--seed", "3"]) == 2
    assert "'train' extra" in capsys.readouterr().out


@pytest.mark.parametrize("name, message", [("resnet.demo", "family one of"), ("mesnet", "family one of")])
def test_unknown_model_names_are_refused(name, message):
    with pytest.raises(ValueError, match=message):
        create_model(name)
