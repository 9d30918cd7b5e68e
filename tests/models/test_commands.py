import subprocess
import sys

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
    # other tests of this session may have imported torch already: check in a fresh interpreter
    probe = (
        "import sys\nfrom mestream import cli\n"
        "try:\n    cli.main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('mestream.models.mesnet', "
        "'mestream.models.akmnet'))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_missing_torch_names_the_extra(monkeypatch, capsys):
    def missing(what):
        raise MissingExtra(f"{what} needs PyTorch, from the 'train' extra")

    monkeypatch.setattr(commands, "require_torch", missing)
    assert cli.main(["eval", "mesnet", "--seed", "3"]) == 2
    out, err = capsys.readouterr()
    assert not out and err.startswith("mestream eval: ") and "'train' extra" in err and err.count("\n") == 1


@pytest.mark.parametrize("name, message", [("resnet.demo", "family one of"), ("mesnet", "family one of")])
def test_unknown_model_names_are_refused(name, message):
    with pytest.raises(ValueError, match=message):
        create_model(name)
