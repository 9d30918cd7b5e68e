"""Clip preparation, a few training steps of the demo recipe, checkpoints and the eval command."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mestream.engine.clips import bins  # noqa: E402
from mestream.models.akmnet import build, evaluate, train  # noqa: E402
from mestream.models.akmnet.config import PRESETS  # noqa: E402
from mestream.models.akmnet.data import (  # noqa: E402
    SyntheticData,
    balanced_order,
    collate,
    prepare_clip,
    subject_clips,
)
from mestream.models.checkpoint import git_sha, model_card, save_checkpoint  # noqa: E402
from tests.models.datasets.test_casme2 import make_casme2  # noqa: E402

# The demo recipe on a smaller network and input, so that a few steps take a second.
SMALL = dataclasses.replace(
    PRESETS["demo"],
    widths=(8, 8, 16, 16),
    gru_hidden=8,
    image_size=64,
    train_resize=72,
    epochs=1,
    batch_size=4,
)
SHORT = SyntheticData(seed=0, train_subjects=1, val_subjects=1, duration_s=4.0, micro_per_min=60.0)


def test_bins_cover_every_frame_once() -> None:
    runs = bins(30, 12)
    assert len(runs) == 12 and np.array_equal(np.concatenate(runs), np.arange(30))
    assert len(bins(5, 12)) == 5


def test_prepare_clip_magnifies_the_change_and_removes_flicker() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(60, 190, (16, 16)).astype(np.float32)
    crops = np.stack([base] * 4)
    crops[2, 4:8, 4:8] += 2.0  # a small change on one frame
    crops[3] *= 1.02  # a global flicker on another
    cfg = dataclasses.replace(SMALL, max_frames=8, magnify_alpha=10.0, magnify_sigma=0.0, input_mode="motion")
    frames, runs = prepare_clip(np.clip(np.rint(crops), 0, 255).astype(np.uint8), cfg)
    assert frames.shape == (4, 16, 16) and len(runs) == 4
    assert np.all(frames[0] == 128)
    assert frames[2, 5, 5] >= 128 + 15  # 2 grey levels × 10
    assert np.abs(frames[3].astype(int) - 128).mean() < 6  # flicker scaled away (×10 it would be ~25)
    magnified = prepare_clip(
        np.clip(np.rint(crops), 0, 255).astype(np.uint8), dataclasses.replace(cfg, input_mode="magnified")
    )[0]
    assert np.abs(magnified[0].astype(int) - np.rint(base)).max() <= 1


def test_balanced_order_equalises_classes() -> None:
    order = balanced_order([0, 0, 0, 0, 1, 2, 2], np.random.default_rng(0))
    labels = np.array([0, 0, 0, 0, 1, 2, 2])[order]
    assert [int((labels == c).sum()) for c in range(3)] == [4, 4, 4]
    assert set(order[labels == 0].tolist()) == {0, 1, 2, 3}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list:
    cache = tmp_path_factory.mktemp("akmnet-cache")
    out = subject_clips(7, SHORT, SMALL, cache=cache)
    again = subject_clips(7, SHORT, SMALL, cache=cache)  # from the cache
    assert len(out) == len(again) and all(np.array_equal(a.frames, b.frames) for a, b in zip(out, again))
    return out


def test_synthetic_clips_are_micro_expressions_with_labels(clips: list) -> None:
    assert clips, "a 4 s video at 60 micro-expressions per minute should hold some"
    for c in clips:
        assert c.onset < c.apex < c.offset
        assert 1 <= len(c.frames) <= SMALL.max_frames and c.frames.shape[1:] == (SMALL.train_resize,) * 2
        assert c.source_frames[0] >= c.onset and c.source_frames[-1] <= c.offset
        assert SMALL.class_names[c.label] in ("positive", "negative", "surprise")
    frames, mask, labels = collate(clips, SMALL.image_size, train=True, rng=np.random.default_rng(0))
    assert frames.shape[2:] == (1, SMALL.image_size, SMALL.image_size) and mask.sum() == sum(
        len(c.frames) for c in clips
    )


def test_a_few_training_steps_and_checkpoint_round_trip(clips: list, tmp_path: Path) -> None:
    model, history, best = train.train_model(SMALL, clips, clips, seed=0, progress=False, log=lambda *_: None)
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"][0])
    assert 0.0 <= best["uf1"] <= 1.0
    card = model_card(
        model="akmnet", preset="demo", config=SMALL, data=dataclasses.asdict(SHORT), seed=0, metrics={}
    )
    path = save_checkpoint(
        tmp_path / "m.pt",
        model="akmnet",
        preset="demo",
        config=SMALL,
        state_dict=model.state_dict(),
        card=card,
    )
    loaded, config, card2 = evaluate.load_model(path)
    assert config == SMALL and card2["data"]["seed"] == 0
    frames, mask, _ = collate(clips[:3], SMALL.image_size, train=False)
    with torch.no_grad():
        a, b = (
            model(torch.from_numpy(frames), torch.from_numpy(mask)),
            loaded(torch.from_numpy(frames), torch.from_numpy(mask)),
        )
    torch.testing.assert_close(a.logits, b.logits)


def test_training_without_class_balancing(clips: list) -> None:
    config = dataclasses.replace(SMALL, balance_classes=False)
    _, history, _ = train.train_model(config, clips, clips, seed=0, progress=False, log=lambda *_: None)
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"][0])


def _eval_args(tmp_path: Path, checkpoint: Path, seed: int, record: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    return parser.parse_args(
        [
            "--seed",
            str(seed),
            "--out",
            str(tmp_path / "eval"),
            "--checkpoint",
            str(checkpoint),
            "--subjects",
            "1",
            "--cache",
            str(tmp_path / "cache"),
            "--no-progress",
        ]
        + (["--record"] if record else [])
    )


def test_eval_refuses_the_training_seed_and_writes_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    torch.manual_seed(0)
    model = build(SMALL)
    card = model_card(
        model="akmnet", preset="demo", config=SMALL, data=dataclasses.asdict(SHORT), seed=0, metrics={}
    )
    path = save_checkpoint(
        tmp_path / "m.pt",
        model="akmnet",
        preset="demo",
        config=SMALL,
        state_dict=model.state_dict(),
        card=card,
    )
    assert evaluate.run(_eval_args(tmp_path, path, seed=0)) == 2
    out, err = capsys.readouterr()
    # the same line as `mestream eval mesnet` gives
    assert (
        not out
        and err
        == f"mestream eval akmnet: checkpoint {path}: seed 0 is the seed this model was trained on "
        "(model card data.seed); evaluate on held-out subjects from another seed\n"
    )
    assert not (tmp_path / "eval").exists()
    assert evaluate.run(_eval_args(tmp_path, path, seed=3, record=True)) == 0
    assert f"recorded in the model card of {path}" in capsys.readouterr().out
    recorded = json.loads(path.with_suffix(".json").read_text())["metrics"]["test_seed3"]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    predictions = json.loads((tmp_path / "eval" / "predictions.json").read_text())
    assert {"acc", "uf1", "uar", "confusion", "apex_within_10pct", "apex_error"} <= set(metrics)
    assert recorded["uf1"] == metrics["uf1"] and recorded["n"] == metrics["clips"]
    assert (recorded["subjects"], recorded["duration_s"]) == (1, SHORT.duration_s)
    assert {
        k: metrics[k]
        for k in (
            "seed",
            "subjects",
            "subject_ids",
            "duration_s",
            "checkpoint",
            "trained_git_sha",
            "eval_git_sha",
        )
    } == {
        "seed": 3,
        "subjects": 1,
        "subject_ids": [3000],
        "duration_s": SHORT.duration_s,
        "checkpoint": str(path),
        "trained_git_sha": card["git_sha"],
        "eval_git_sha": git_sha(),
    }
    assert len(predictions) == metrics["clips"] > 0
    p = predictions[0]
    assert p["onset"] <= p["max_key_frame"] <= p["offset"] and p["max_key_frame"] in p["key_frames"]
    assert p["true_class"] in SMALL.class_names and abs(sum(p["probabilities"].values()) - 1) < 1e-5
    assert p["onset"] < p["true_apex"] < p["offset"]


def test_dataset_records_become_clips(tmp_path: Path) -> None:
    import cv2

    from mestream.models.akmnet.data import DataError, dataset_clips
    from mestream.models.datasets import Clip

    paths = []
    for i in range(5):
        p = tmp_path / f"img{i:03d}.jpg"
        cv2.imwrite(str(p), np.full((90, 80), 100 + i, np.uint8))
        paths.append(p)
    rec = Clip(
        dataset="casme2",
        subject="sub01",
        clip="EP01",
        frames=tuple(paths),
        frame_numbers=tuple(range(10, 15)),
        onset=10,
        apex=None,
        offset=14,
        emotion="happiness",
        label="positive",
        source="fixture row 2",
    )
    (clip,) = dataset_clips([rec], SMALL)
    assert clip.label == SMALL.class_names.index("positive") and clip.apex == 12
    assert clip.frames.shape == (5, SMALL.train_resize, SMALL.train_resize)
    assert clip.source_frames.tolist() == [10, 11, 12, 13, 14]
    with pytest.raises(DataError, match="fixture row 2"):
        dataset_clips([dataclasses.replace(rec, label="tense")], SMALL)
    with pytest.raises(DataError, match="fixture row 2.*5 frames but 4 frame numbers"):
        dataset_clips([dataclasses.replace(rec, frame_numbers=tuple(range(10, 14)))], SMALL)


def test_a_checkpoint_whose_weights_do_not_fit_its_config_is_an_error_naming_it(tmp_path: Path) -> None:
    from mestream.models.checkpoint import CheckpointError

    torch.manual_seed(0)
    model = build(dataclasses.replace(SMALL, widths=(8, 8, 16, 32)))
    card = model_card(model="akmnet", preset="demo", config=SMALL, data={}, seed=0, metrics={})
    path = save_checkpoint(
        tmp_path / "odd.pt",
        model="akmnet",
        preset="demo",
        config=SMALL,
        state_dict=model.state_dict(),
        card=card,
    )
    with pytest.raises(CheckpointError, match="odd.pt"):
        evaluate.load_model(path)


def test_train_options_override_the_preset() -> None:
    from mestream.models.akmnet.config import ConfigError

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(
        ["--preset", "demo", "--set", "input_mode=magnified", "--set", "widths=[8,16,32,64]", "--epochs", "2"]
    )
    config = train._config(args)
    assert (config.input_mode, config.widths, config.epochs, config.lr) == (
        "magnified",
        (8, 16, 32, 64),
        2,
        PRESETS["demo"].lr,
    )
    assert train._config(parser.parse_args([])) == PRESETS["paper"]
    with pytest.raises(ConfigError, match="max_frame"):
        train._config(parser.parse_args(["--set", "max_frame=3"]))


def test_train_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    common = ["--preset", "demo", "--out", str(tmp_path / "run"), "--no-progress"]
    for argv, named in (
        (["--set", "max_frame=3"], "max_frame"),
        (["--set", "max_frames"], "FIELD=VALUE"),
        (["--dataset", "casme2"], "--root"),
        (["--dataset", "casme2", "--root", str(tmp_path / "missing")], "missing"),
    ):
        assert train.run(parser.parse_args([*common, *argv])) == 2, argv
        out, err = capsys.readouterr()
        assert (
            not out and err.startswith("mestream train akmnet: ") and named in err and err.count("\n") == 1
        ), err
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit):  # the long-video readers are MESNet's
        parser.parse_args(["--dataset", "casme_sq_long"])


def _eval_refusal(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    assert evaluate.run(parser.parse_args([*argv, "--no-progress"])) == 2, argv
    out, err = capsys.readouterr()
    assert not out and err.count("\n") == 1 and err.startswith("mestream eval akmnet: checkpoint "), err
    return err


def test_eval_of_an_unusable_checkpoint_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = ["--out", str(tmp_path / "eval")]
    assert "no such file" in _eval_refusal([*out, "--checkpoint", str(tmp_path / "none.pt")], capsys)
    assert "is a folder" in _eval_refusal([*out, "--checkpoint", str(tmp_path)], capsys)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(np.random.default_rng(0).bytes(2048))
    assert "damaged or not a mestream checkpoint" in _eval_refusal(
        [*out, "--checkpoint", str(corrupt)], capsys
    )
    other = save_checkpoint(
        tmp_path / "mesnet.pt", model="mesnet", preset="demo", config={}, state_dict={}, card={"data": {}}
    )
    assert "holds a 'mesnet' model, expected 'akmnet'" in _eval_refusal(
        [*out, "--checkpoint", str(other)], capsys
    )
    assert not (tmp_path / "eval").exists()


def _no_training(*args: object, **kwargs: object) -> None:
    raise AssertionError("the run went on to train: the options should have been refused first")


def _train_refusal(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture) -> str:
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    assert (
        train.run(
            parser.parse_args(["--preset", "demo", "--out", str(tmp_path / "run"), "--no-progress", *argv])
        )
        == 2
    )
    out, err = capsys.readouterr()
    assert not out and err.count("\n") == 1 and err.startswith("mestream train akmnet: "), err
    assert not (tmp_path / "run").exists()
    return err


def test_options_that_would_be_ignored_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(train, "_clips", _no_training)  # a refusal that regressed must not start a real run
    for argv, flag in (
        (["--class-map", "smic3"], "--class-map"),
        (["--root", "x"], "--root"),
        (["--folds", "3"], "--folds"),
        (["--dataset-option", "errors=skip"], "--dataset-option"),
    ):
        assert f"{flag} only applies with --dataset" in _train_refusal(argv, tmp_path, capsys)
    for flag in ("--train-subjects", "--val-subjects"):
        err = _train_refusal(["--dataset", "casme2", "--root", str(tmp_path), flag, "2"], tmp_path, capsys)
        assert f"{flag} only applies to synthetic subjects, not to --dataset casme2" in err


def test_dataset_options_reach_the_reader(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(train, "train_model", _no_training)
    root = tmp_path / "casme2"
    make_casme2(root)
    common = ["--dataset", "casme2", "--root", str(root), "--folds", "2"]
    err = _train_refusal([*common, "--dataset-option", "part=HS"], tmp_path, capsys)
    assert "unknown option(s) 'part'; it takes: annotations" in err
    err = _train_refusal([*common, "--dataset-option", "annotations=other.xlsx"], tmp_path, capsys)
    assert "other.xlsx: CASME II: annotation file not found" in err
    assert "--class-map" in _train_refusal([*common, "--dataset-option", "class_map=smic3"], tmp_path, capsys)


@pytest.mark.parametrize(
    "module, option",
    [
        (train, "--train-subjects"),
        (train, "--val-subjects"),
        (train, "--epochs"),
        (train, "--batch-size"),
        (evaluate, "--subjects"),
    ],
)
def test_counts_must_be_positive_on_the_command_line(
    module, option: str, capsys: pytest.CaptureFixture
) -> None:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    with pytest.raises(SystemExit) as caught:
        parser.parse_args([option, "0"])
    assert caught.value.code == 2 and f"{option}: expected a positive int, got '0'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "field, value", [("train_subjects", 0), ("val_subjects", -1), ("duration_s", 0.0), ("fps", "200")]
)
def test_synthetic_data_refuses_empty_or_bad_sizes(field, value):
    from mestream.models.akmnet.data import DataError

    with pytest.raises(DataError, match=f"SyntheticData.{field}"):
        SyntheticData(**{field: value})
