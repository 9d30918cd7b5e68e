import json
from dataclasses import dataclass

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mestream.models.checkpoint import (  # noqa: E402
    CheckpointError,
    load_checkpoint,
    model_card,
    record_metrics,
    save_checkpoint,
)
from mestream.models.training import EarlyStopping, plot_curves  # noqa: E402


@dataclass(frozen=True)
class _Config:
    width: int = 4
    sizes: tuple[int, ...] = (1, 2)


def test_round_trip_keeps_weights_config_and_card(tmp_path):
    net = torch.nn.Linear(3, 2)
    card = model_card(
        model="toy",
        preset="demo",
        config=_Config(),
        data={"seed": 0, "subjects": [0, 1]},
        seed=7,
        metrics={"f1": torch.tensor(0.5)},
    )
    path = save_checkpoint(
        tmp_path / "w" / "toy.pt",
        model="toy",
        preset="demo",
        config=_Config(),
        state_dict=net.state_dict(),
        card=card,
    )
    ck = load_checkpoint(path, model="toy")
    assert ck.preset == "demo" and ck.config == {"width": 4, "sizes": [1, 2]}
    assert torch.equal(ck.state_dict["weight"], net.weight)
    on_disk = json.loads(path.with_suffix(".json").read_text())
    assert on_disk["metrics"] == {"f1": 0.5} and on_disk["seed"] == 7 and on_disk["data"]["seed"] == 0
    assert "torch" in on_disk and "git_sha" in on_disk


def test_card_with_paths_and_arrays_is_saved_and_loaded(tmp_path):
    import numpy as np

    card = {"data": {"root": tmp_path / "CASME2"}, "metrics": {"confusion": np.eye(2, dtype=np.int64)}}
    path = save_checkpoint(
        tmp_path / "c.pt", model="toy", preset="demo", config=_Config(), state_dict={}, card=card
    )
    ck = load_checkpoint(path, model="toy")
    assert ck.card["data"]["root"] == str(tmp_path / "CASME2")
    assert json.loads(path.with_suffix(".json").read_text())["metrics"]["confusion"] == [[1, 0], [0, 1]]


def test_bad_checkpoints_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "none.pt", model="toy")
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file"):
        load_checkpoint(tmp_path, model="toy")
    for name, blob in (("bad.pt", b"not a torch file"), ("noise.pt", np.random.default_rng(0).bytes(4096))):
        bad = tmp_path / name
        bad.write_bytes(blob)
        with pytest.raises(
            CheckpointError,
            match=f"{name}: cannot be read: the file is damaged or not a mestream checkpoint \\(\\w+\\)$",
        ) as caught:
            load_checkpoint(bad, model="toy")
        # torch's own text advises weights_only=False, i.e. running whatever the file holds: not for a user
        assert "weights_only" not in str(caught.value) and "arbitrary code" not in str(caught.value)
    card = {"data": {}}
    path = save_checkpoint(
        tmp_path / "a.pt", model="akmnet", preset="demo", config=_Config(), state_dict={}, card=card
    )
    with pytest.raises(CheckpointError, match="holds a 'akmnet' model, expected 'mesnet'"):
        load_checkpoint(path, model="mesnet")


def test_recorded_figures_go_into_both_cards_and_keep_the_weights(tmp_path):
    net = torch.nn.Linear(3, 2)
    path = save_checkpoint(
        tmp_path / "r.pt",
        model="toy",
        preset="demo",
        config=_Config(),
        state_dict=net.state_dict(),
        card={"metrics": {"validation": {"f1": 0.4}}},
    )
    record_metrics(path, model="toy", key="test_seed1", figures={"f1": 0.3, "subjects": 2, "duration_s": 6.0})
    ck = load_checkpoint(path, model="toy")
    expected = {"validation": {"f1": 0.4}, "test_seed1": {"f1": 0.3, "subjects": 2, "duration_s": 6.0}}
    assert ck.card["metrics"] == expected == json.loads(path.with_suffix(".json").read_text())["metrics"]
    assert torch.equal(ck.state_dict["weight"], net.weight) and ck.config == {"width": 4, "sizes": [1, 2]}
    with pytest.raises(CheckpointError, match="expected 'other'"):
        record_metrics(path, model="other", key="test_seed1", figures={})


def test_early_stopping_counts_checks_without_improvement():
    stop = EarlyStopping(patience=2, mode="max")
    assert [stop.step(v) for v in (0.1, 0.3, 0.2)] == [True, True, False]
    assert not stop.should_stop
    stop.step(0.3)
    assert stop.should_stop and stop.best == 0.3
    low = EarlyStopping(patience=1, mode="min")
    assert low.step(2.0) and low.step(1.0) and not low.step(1.5)


def test_curves_come_out_as_png(tmp_path):
    path = plot_curves({"loss": [3.0, 2.0, 1.0], "val_f1": [0.1, 0.4]}, tmp_path / "curves.png", title="toy")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_git_sha_marks_code_edits_but_not_weights(tmp_path):
    import subprocess

    from mestream.models.checkpoint import git_sha

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "models" / "weights").mkdir(parents=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "models" / "weights" / "w.pt").write_bytes(b"1")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    clean = git_sha(tmp_path / "models")
    assert clean and not clean.endswith("-dirty")
    (tmp_path / "models" / "weights" / "w.pt").write_bytes(b"2")
    assert git_sha(tmp_path / "models") == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_sha(tmp_path / "models") == clean + "-dirty"
