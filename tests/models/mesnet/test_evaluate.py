import argparse

from mestream.models.mesnet import evaluate


def test_record_refuses_hand_picked_thresholds(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    for option in ("--t-cpn", "--t-crn"):
        args = parser.parse_args(
            [
                "--record",
                option,
                "0.3",
                "--checkpoint",
                str(tmp_path / "none.pt"),
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        assert evaluate.run(args) == 2
        out, err = capsys.readouterr()
        assert (
            not out
            and err.startswith("mestream eval mesnet: --record")
            and option in err
            and err.count("\n") == 1
        )
    assert not (tmp_path / "eval").exists()
    # without --record the override is fine: the run gets as far as the (missing) checkpoint
    assert evaluate.run(parser.parse_args(["--t-cpn", "0.3", "--checkpoint", str(tmp_path / "none.pt")])) == 2
    assert "none.pt" in capsys.readouterr().err
