import argparse
import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

from mestream.models import checkpoint, training
from mestream.models.mesnet import PRESETS, evaluate, train
from mestream.models.mesnet.config import ConfigError
from mestream.models.mesnet.data import pretrain_clips, training_windows
from mestream.models.mesnet.network import MESNet
from mestream.models.synthetic import make_camera
from tests.models.datasets.helpers import write_xlsx

from .conftest import fake_video


def test_demo_preset_trains_a_few_steps(tmp_path):
    config = dataclasses.replace(PRESETS["demo"], pretrain_epochs=1, epochs=1, val_every=2)
    videos = [fake_video(config, steps=130, seed=s, macro=((22, 34),)) for s in range(3)]
    rng = np.random.default_rng(0)
    clips = pretrain_clips(videos[:2], config, rng)
    labels = [c[2] for c in clips]
    assert labels.count(1) == 4 and labels.count(0) == 4 + 2  # n_l, r_noL·n_l, r_MaE·n_l
    assert all(len(c[1]) == config.pretrain_steps for c in clips)
    # ME clips run onset → offset, unlabelled ones touch no expression, macro ones run onset → apex + k
    micro = [(v, e) for v in range(2) for e in videos[v].expressions if e.kind == "micro"]
    assert [(v, c[0], c[-1]) for v, c, _ in clips[:4]] == [(v, e.onset_step, e.offset_step) for v, e in micro]
    busy = [set().union(*(range(e.onset_step, e.offset_step + 1) for e in v.expressions)) for v in videos[:2]]
    assert all(not busy[v] & set(range(c[0], c[-1] + 1)) for v, c, _ in clips[4:8])
    assert all(
        (c[0], c[-1]) == (22, 28 + config.mae_apex_k) for _, c, _ in clips[8:]
    )  # macro [22, 34], apex 28
    windows = training_windows(videos[:2], config, rng)
    assert len(windows) == 4 * (10 + 4 + 2)
    # the r_tME windows hold their ME whole
    n = config.window_steps
    assert all(
        s <= e.onset_step and e.offset_step <= s + n - 1 and 0 <= s <= len(videos[v].flow) - n
        for (v, s), (_, e) in zip(windows, micro * 10)
    )
    torch.manual_seed(0)
    net = MESNet(config)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    history: dict = {}
    train.pretrain(net, videos[:2], videos[2:], config, rng, history, progress=False, max_steps=2)
    train.train_joint(net, videos[:2], videos[2:], config, rng, history, progress=False, max_steps=2)
    assert len(history["pretrain_loss"]) == 1 and len(history["val_micro_f1"]) == 1
    assert all(np.isfinite(v).all() for v in history.values())
    assert any(not torch.equal(before[k], v) for k, v in net.state_dict().items())


def _parse(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def test_train_cli_checkpoint_and_eval(tmp_path, capsys):
    cache, out = str(tmp_path / "cache"), tmp_path / "run"
    args = _parse(
        train,
        [
            "--preset",
            "demo",
            "--train-subjects",
            "1",
            "--val-subjects",
            "1",
            "--duration",
            "6",
            "--pretrain-epochs",
            "1",
            "--epochs",
            "1",
            "--max-steps",
            "1",
            "--workers",
            "1",
            "--cache",
            cache,
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert train.run(args) == 0
    assert "wrote" in capsys.readouterr().out
    ckpt = out / "mesnet-demo.pt"
    card = json.loads(ckpt.with_suffix(".json").read_text())
    assert card["data"]["seed"] == 0 and card["config"]["input_size"] == PRESETS["demo"].input_size
    assert card["training"]["max_steps"] == 1  # a shortened run says so
    assert {"validation", "baseline", "thresholds"} <= set(card["metrics"]) and (out / "curves.png").is_file()
    # round trip: the loaded network is the one described by the card, deterministic in eval mode
    net, loaded_card = evaluate.load(ckpt)
    assert loaded_card == card and net.config.t_cpn == card["metrics"]["thresholds"]["t_cpn"]
    x = torch.randn(1, net.config.window_steps, 2, net.config.input_size, net.config.input_size)
    again, _ = evaluate.load(ckpt)
    assert torch.equal(net(x)[0][2], again(x)[0][2])
    # the training seed is refused, another seed is evaluated and written
    eval_out = tmp_path / "eval"
    common = [
        "--checkpoint",
        str(ckpt),
        "--out",
        str(eval_out),
        "--subjects",
        "1",
        "--duration",
        "6",
        "--workers",
        "1",
        "--cache",
        cache,
        "--no-progress",
    ]
    assert evaluate.run(_parse(evaluate, ["--seed", "0", *common])) == 2
    out, err = capsys.readouterr()
    assert (
        not out
        and err
        == f"mestream eval mesnet: checkpoint {ckpt}: seed 0 is the seed this model was trained on "
        "(model card data.seed); evaluate on held-out subjects from another seed\n"
    )
    assert not eval_out.exists()
    assert evaluate.run(_parse(evaluate, ["--seed", "1", "--record", *common])) == 0
    recorded = json.loads(ckpt.with_suffix(".json").read_text())["metrics"]["test_seed1"]
    assert (recorded["subjects"], recorded["duration_s"]) == (1, 6.0)
    assert evaluate.load(ckpt)[1]["metrics"]["test_seed1"] == recorded
    metrics = json.loads((eval_out / "metrics.json").read_text())
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
        "seed": 1,
        "subjects": 1,
        "subject_ids": [1000],
        "duration_s": 6.0,
        "checkpoint": str(ckpt),
        "trained_git_sha": card["git_sha"],
        "eval_git_sha": checkpoint.git_sha(),
    }
    assert (
        set(metrics["mesnet"]["megc"]) == {"micro", "macro", "overall"}
        and "f1" in metrics["baseline"]["megc"]["micro"]
    )
    truth = json.loads((eval_out / "ground_truth.json").read_text())
    preds = json.loads((eval_out / "predictions.json").read_text())
    assert truth and preds  # the schema checks below must see rows
    assert all({"video", "onset_frame", "offset_frame", "kind"} <= set(t) for t in truth)
    assert all({"video", "onset_frame", "offset_frame", "score"} <= set(p) for p in preds)
    out = capsys.readouterr().out
    assert "MEGC" in out and f"recorded in the model card of {ckpt}" in out


def test_options_and_set_override_the_preset(capsys):
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    assert (
        train._config(parser.parse_args([])) == PRESETS["paper"]
    )  # the issue: defaults are the paper's values
    args = parser.parse_args(
        [
            "--preset",
            "demo",
            "--set",
            "optimizer=sgd",
            "--set",
            "conv_channels=[4,8,16,32]",
            "--set",
            "epochs=5",
            "--epochs",
            "2",
            "--duration",
            "6",
        ]
    )
    config = train._config(args)
    assert (config.optimizer, config.conv_channels, config.epochs, config.duration_s, config.lr) == (
        "sgd",
        (4, 8, 16, 32),
        2,
        6.0,
        PRESETS["demo"].lr,
    )  # the explicit option wins over --set
    with pytest.raises(ConfigError, match="input_sise"):
        train._config(parser.parse_args(["--set", "input_sise=16"]))
    for bad, named in (
        (["--set", "input_sise=16"], "input_sise"),
        (["--set", "window_steps=big"], "window_steps"),
        (["--set", "window_steps"], "FIELD=VALUE"),
    ):
        assert train.run(parser.parse_args(bad)) == 2
        out, err = capsys.readouterr()
        assert not out and err.startswith("mestream train mesnet: ") and named in err and err.count("\n") == 1


CODES = [
    [1, "disgust1_1", 10, 14, 20, "4", "negative", "micro-expression", ""],
    [2, "anger1_1", 12, 15, 19, "12", "positive", "micro-expression", ""],
]


def _casme_sq(root):
    """A CAS(ME)² tree: two subjects, one long video each, frames from the synthetic camera (a face
    the engine's detector finds), and the code workbook with its two naming sheets."""
    for subject, folder in ((15, "15_0101disgustingteeth"), (16, "16_0401girlcrashing")):
        frames = root / "rawpic" / f"s{subject}" / folder
        frames.mkdir(parents=True)
        with make_camera(subject, fps=30.0, duration_s=1.4, resolution=(320, 240)) as camera:
            for frame in camera:
                cv2.imwrite(str(frames / f"img{frame.frame_id + 1}.png"), frame.pixels)
    write_xlsx(
        root / "CAS(ME)^2code_final.xlsx",
        {
            "CASFEcode_final": CODES,
            "naming rule1": [[15, "s15", 1], [16, "s16", 2]],
            "naming rule2": [[101, "disgust1"], [401, "anger1"]],
        },
    )
    return root


TINY = [
    "--set",
    "input_size=16",
    "--set",
    "flow_crop=64",
    "--set",
    "window_steps=24",
    "--set",
    "overlap_steps=6",
    "--set",
    "crn_steps=8",
    "--set",
    "pretrain_steps=8",
    "--set",
    "l_nol=8",
]


def test_train_on_a_long_video_dataset_and_ship(tmp_path, monkeypatch, capsys):
    root = _casme_sq(tmp_path / "casme_sq")
    shipped = tmp_path / "weights" / "mesnet-demo.pt"
    shipped.parent.mkdir()
    monkeypatch.setattr(training, "shipped_weights", lambda model, preset="demo": shipped)  # where it is used
    out = tmp_path / "run"
    args = _parse(
        train,
        [
            "--dataset",
            "casme_sq_long",
            "--root",
            str(root),
            "--folds",
            "2",
            "--preset",
            "demo",
            *TINY,
            "--pretrain-epochs",
            "1",
            "--epochs",
            "1",
            "--out",
            str(out),
            "--no-progress",
            "--ship",
        ],
    )
    assert train.run(args) == 0
    card = json.loads((out / "mesnet-demo.pt").with_suffix(".json").read_text())
    assert card["training"]["max_steps"] is None  # the whole (here tiny) schedule ran
    data = card["data"]
    assert (data["dataset"], data["root"], data["folds"]) == ("casme_sq_long", str(root), 2)
    assert (
        sorted(data["train_subjects"] + data["val_subjects"]) == ["s15", "s16"]
        and len(data["val_subjects"]) == 1
    )
    assert data["train"]["videos"] == data["val"]["videos"] == 1 and data["train"]["n_micro"] == 1
    assert "seed" not in data  # no synthetic subject trained it: `mestream eval` may use any seed
    assert card["config"]["window_steps"] == 24 and "validation" in card["metrics"]
    assert (
        json.loads(shipped.with_suffix(".json").read_text()) == card
        and shipped.read_bytes() == (out / "mesnet-demo.pt").read_bytes()
    )
    assert f"shipped {shipped}" in capsys.readouterr().out


def test_dataset_errors_are_one_line(tmp_path, capsys):
    root = _casme_sq(tmp_path / "casme_sq")
    blank = root / "rawpic" / "s16" / "16_0401girlcrashing" / "img1.png"
    cv2.imwrite(str(blank), np.zeros((240, 320), np.uint8))  # no face to crop on
    common = ["--preset", "demo", *TINY, "--folds", "2", "--no-progress", "--out", str(tmp_path / "run")]
    for argv, named in (
        (["--dataset", "casme_sq_long"], "--root"),
        (["--dataset", "samm_long", "--root", str(tmp_path / "missing")], "missing"),
        (["--dataset", "casme_sq_long", "--root", str(root), "--folds", "3"], "3 folds"),
        (["--dataset", "casme_sq_long", "--root", str(root)], "no face in frame file img1.png"),
    ):
        assert train.run(_parse(train, [*common, *argv])) == 2, argv
        out, err = capsys.readouterr()
        assert (
            not out and err.startswith("mestream train mesnet: ") and named in err and err.count("\n") == 1
        ), err
    assert not (tmp_path / "run").exists()


def _no_data(*args, **kwargs):
    raise AssertionError("the run went on to make its data: the options should have been refused first")


def _refused(argv, capsys):
    """The one stderr line of a refused `mestream train mesnet` (exit code 2)."""
    assert train.run(_parse(train, argv)) == 2, argv
    out, err = capsys.readouterr()
    assert not out and err.count("\n") == 1 and err.startswith("mestream train mesnet: "), err
    return err


def test_dataset_options_reach_the_reader(tmp_path, monkeypatch, capsys):
    root = _casme_sq(tmp_path / "casme_sq")
    monkeypatch.setattr(train, "fit", _no_data)  # an option that regressed to ignored must not start training
    common = [
        "--dataset",
        "casme_sq_long",
        "--root",
        str(root),
        "--folds",
        "2",
        "--preset",
        "demo",
        *TINY,
        "--no-progress",
        "--out",
        str(tmp_path / "run"),
    ]
    assert "annotation file not found" in _refused(
        [*common, "--dataset-option", "annotations=nope.xlsx"], capsys
    )
    assert "unknown option(s) 'bogus'" in _refused([*common, "--dataset-option", "bogus=1"], capsys)
    assert "--dataset-option takes KEY=VALUE" in _refused([*common, "--dataset-option", "errors"], capsys)
    assert not (tmp_path / "run").exists()


def test_options_that_would_be_ignored_and_shipping_a_short_run_are_refused(tmp_path, monkeypatch, capsys):
    shipped = tmp_path / "weights" / "mesnet-demo.pt"
    monkeypatch.setattr(training, "shipped_weights", lambda model, preset="demo": shipped)  # where it is used
    monkeypatch.setattr(train, "_synthetic", _no_data)  # a refusal that regressed must not start a real run
    monkeypatch.setattr(train, "_dataset", _no_data)
    out = ["--preset", "demo", "--no-progress", "--out", str(tmp_path / "run")]
    err = _refused([*out, "--max-steps", "1", "--ship"], capsys)
    assert "--ship" in err and "--max-steps" in err
    for argv, flag in (
        (["--root", "x"], "--root"),
        (["--folds", "3"], "--folds"),
        (["--dataset-option", "errors=skip"], "--dataset-option"),
    ):
        assert f"{flag} only applies with --dataset" in _refused([*out, *argv], capsys)
    for argv, flag in (
        (["--train-subjects", "2"], "--train-subjects"),
        (["--val-subjects", "2"], "--val-subjects"),
        (["--duration", "6"], "--duration"),
    ):
        err = _refused([*out, "--dataset", "samm_long", "--root", str(tmp_path), *argv], capsys)
        assert f"{flag} only applies to synthetic subjects" in err
    assert not (tmp_path / "run").exists() and not shipped.parent.exists()


@pytest.mark.parametrize(
    "option",
    [
        "--train-subjects",
        "--val-subjects",
        "--epochs",
        "--pretrain-epochs",
        "--max-steps",
        "--workers",
        "--threads",
    ],
)
def test_counts_must_be_positive_on_the_command_line(option, capsys):
    with pytest.raises(SystemExit) as caught:
        _parse(train, [option, "0"])
    assert caught.value.code == 2 and f"{option}: expected a positive int, got '0'" in capsys.readouterr().err
