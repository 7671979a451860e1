"""The baselines' JSON configs: unknown keys and values of the wrong kind are errors naming the key."""

import pytest

from deqa.baselines.branch_train import BranchTrainConfig
from deqa.baselines.degradation_train import DegradationTrainConfig as TrainConfig
from deqa.baselines.encoder_head import HeadTrainConfig


@pytest.mark.parametrize(
    "cls, d, match",
    [
        (TrainConfig, {"lr": "fast"}, r"degradation training config: lr must be a number, got 'fast'"),
        (TrainConfig, {"epochs": "3"}, r"epochs must be an integer, got '3'"),
        (TrainConfig, {"epochs": True}, r"epochs must be an integer, got True"),
        (HeadTrainConfig, {"lr": "x"}, r"head training config: lr must be a number, got 'x'"),
        (TrainConfig, {"lrr": 1e-3}, r"unknown key\(s\) \['lrr'\]"),
    ],
)
def test_wrong_kinds_of_values_name_the_key(cls, d, match):
    with pytest.raises(ValueError, match=match):
        cls.from_dict(d)


def test_right_kinds_pass_an_int_is_a_number_and_optional_fields_take_null():
    assert TrainConfig.from_dict({"train_data": "t", "val_data": "v", "out_dir": "o", "lr": 1, "epochs": 2}).lr == 1
    cfg = BranchTrainConfig.from_dict({"cnn": "c", "train_data": ["t"], "val_data": "v", "out_dir": "o", "num_threads": None})
    assert cfg.num_threads is None
    with pytest.raises(ValueError, match=r"branch training config: epochs must be an integer, got 'x'"):
        BranchTrainConfig.from_dict({"cnn": "c", "train_data": ["t"], "val_data": "v", "out_dir": "o", "epochs": "x"})
