import json

import pytest

from ddm import presets
from ddm.config import RunConfig, fingerprint
from ddm.exceptions import ConfigError


def test_json_round_trip_keeps_every_field():
    cfg = presets.demo()
    again = RunConfig.from_json(cfg.to_json())
    assert again == cfg


def test_overrides_are_parsed_against_field_types():
    cfg = RunConfig().with_overrides(["train.epochs=7", "train.lr=0.5", "data.train_size=none",
                                      "hierarchical=false", "distill.matching=match", "emulate.num_perturbations=12"])
    assert cfg.train.epochs == 7 and isinstance(cfg.train.epochs, int)
    assert cfg.train.lr == 0.5
    assert cfg.data.train_size is None
    assert cfg.hierarchical is False
    assert cfg.distill.matching == "match"
    assert cfg.emulate.num_perturbations == 12


@pytest.mark.parametrize("bad, fragment", [
    ("train.epochs=abc", "expected a value of type int"),
    ("train.nope=1", "unknown config field"),
    ("nosection.x=1", "unknown config section"),
    ("train.epochs", "stage.field=value"),
    ("train.epochs=0", "must be positive"),
    ("distill.matching=sideways", "choose one of"),
    ("emulate.keep_prob=1.5", "keep_prob"),
    ("distill.augment=crop_blur", "unknown augmentation"),
])
def test_bad_overrides_say_what_is_wrong(bad, fragment):
    with pytest.raises(ConfigError, match=fragment):
        RunConfig().with_overrides([bad])


def test_unknown_json_field_is_rejected():
    d = RunConfig().to_dict()
    d["train"]["epochz"] = 3
    with pytest.raises(ConfigError, match="epochz"):
        RunConfig.from_dict(d)


def test_fingerprint_is_stable_and_sensitive():
    a = RunConfig().to_dict()
    assert fingerprint(a) == fingerprint(json.loads(json.dumps(a)))
    b = RunConfig().with_overrides(["train.epochs=21"]).to_dict()
    assert fingerprint(a) != fingerprint(b)


def test_options_added_later_keep_earlier_cache_keys():
    from ddm.config import DistillConfig, RunConfig, keyed

    d = DistillConfig()
    assert "optimizer" not in keyed(d) and "lr_img" in keyed(d)  # at its default: as before it existed
    assert keyed(DistillConfig(optimizer="adam"))["optimizer"] == "adam"
    cfg = RunConfig()
    assert "optimizer" not in cfg.key_dict()["distill"] and "optimizer" in cfg.to_dict()["distill"]
    assert fingerprint(cfg.key_dict()) != fingerprint(cfg.with_overrides(["distill.optimizer=adam"]).key_dict())
