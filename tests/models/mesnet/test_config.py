import dataclasses

import pytest

from mestream.models.mesnet import PRESETS, ConfigError, MESNetConfig, build


def test_paper_defaults_are_the_papers_values():
    c = PRESETS["paper"]
    assert c.conv_channels == (8, 16, 32, 64) and c.conv_padding == 2
    assert (c.temporal_channels, c.temporal_kernel, c.temporal_padding) == (128, 3, 2)
    assert (c.fc_units, c.dropout, c.l2, c.cpn_iou, c.t_nms, c.lr, c.batch_size) == (
        300,
        0.5,
        0.01,
        0.7,
        0.5,
        1e-4,
        2,
    )
    assert (c.r_nol, c.r_mae, c.l_nol, c.r_tme, c.r_tmae, c.r_tnl) == (1.0, 0.5, 16, 10.0, 4.0, 2.0)
    assert (c.window_steps, c.overlap_steps) == (100, 20)
    assert c.receptive_fields == (7, 9, 11, 13, 15)


def test_feature_size_is_table_one_output():
    for size, side in ((32, 3), (64, 5), (128, 9)):
        assert dataclasses.replace(PRESETS["paper"], input_size=size).feature_size == side * side * 64


def test_from_dict_round_trip_and_strictness():
    c = PRESETS["demo"]
    assert MESNetConfig.from_dict(dataclasses.asdict(c)) == c
    with pytest.raises(ConfigError, match="window_stepz"):
        MESNetConfig.from_dict({"window_stepz": 50})
    with pytest.raises(ConfigError, match="input_size"):
        MESNetConfig.from_dict({"input_size": "64"})
    with pytest.raises(ConfigError, match="overlap_steps"):
        MESNetConfig(window_steps=40, overlap_steps=40)


def test_registry_builds_every_preset():
    from mestream.models.registry import create_model, list_models

    assert {"mesnet.paper", "mesnet.demo"} <= set(list_models())
    net = create_model("mesnet.demo", input_size=16)
    assert net.config.input_size == 16 and type(net) is type(build(PRESETS["demo"]))


COUNTS = (
    "epochs",
    "pretrain_epochs",
    "batch_size",
    "max_proposals",
    "train_subjects",
    "val_subjects",
    "window_steps",
    "crn_steps",
    "pretrain_steps",
    "patience",
    "fc_units",
    "l_nol",
    "flow_gap",
    "in_channels",
)


@pytest.mark.parametrize("name", COUNTS)
@pytest.mark.parametrize("value", [0, -1])
def test_counts_must_be_positive_and_the_error_names_the_field(name, value):
    with pytest.raises(ConfigError, match=f"MESNetConfig.{name} must be a positive int, got {value}"):
        dataclasses.replace(PRESETS["demo"], **{name: value})


def test_other_bounds_name_the_field():
    demo = PRESETS["demo"]
    for name, value in (("val_every", -1), ("mae_apex_k", -2), ("conv_padding", -1)):
        with pytest.raises(ConfigError, match=f"MESNetConfig.{name} must be an int >= 0"):
            dataclasses.replace(demo, **{name: value})
    for name in ("lr", "duration_s"):
        with pytest.raises(ConfigError, match=f"MESNetConfig.{name} must be > 0"):
            dataclasses.replace(demo, **{name: 0.0})
    with pytest.raises(ConfigError, match="MESNetConfig.conv_channels"):
        dataclasses.replace(demo, conv_channels=(8, 0, 32, 64))
    with pytest.raises(ConfigError, match="MESNetConfig.epochs"):
        MESNetConfig.from_dict({**dataclasses.asdict(demo), "epochs": 0})
