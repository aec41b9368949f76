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


def test_overrides_as_one_string_or_a_mapping():
    as_list = RunConfig().with_overrides(["train.epochs=7", "data.train_size=none", "hierarchical=false"])
    mapping = RunConfig().with_overrides({"train.epochs": 7, "data.train_size": None, "hierarchical": False})
    assert mapping == as_list
    assert RunConfig().with_overrides("train.epochs=7").train.epochs == 7  # not read letter by letter
    assert RunConfig().with_overrides({"train.lr": 0.25}).train.lr == 0.25
    with pytest.raises(ConfigError, match="expected a value of type int"):
        RunConfig().with_overrides({"train.epochs": 2.5})
    with pytest.raises(ConfigError, match="must be strings like"):
        RunConfig().with_overrides([("train.epochs", 7)])


@pytest.mark.parametrize("bad, fragment", [
    ("train.epochs=abc", "expected a value of type int"),
    ("train.nope=1", "unknown config field"),
    ("nosection.x=1", "unknown config section"),
    ("train.epochs", "stage.field=value"),
    ("train.epochs=0", "must be positive"),
    ("distill.matching=sideways", "choose one of"),
    ("distill.damping_reference=median", "choose one of top, mean"),
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
    from ddm.config import DistillConfig, EmulateConfig, RunConfig, keyed

    sgd = DistillConfig(optimizer="sgd")
    assert "optimizer" not in keyed(sgd) and "lr_img" in keyed(sgd)  # as before the option existed
    assert keyed(DistillConfig())["optimizer"] == "adam"  # the new default differs from that: it counts
    cfg = RunConfig().with_overrides(["distill.optimizer=sgd"])
    assert "optimizer" not in cfg.key_dict()["distill"] and "optimizer" in cfg.to_dict()["distill"]
    assert fingerprint(cfg.key_dict()) != fingerprint(cfg.with_overrides(["distill.optimizer=adam"]).key_dict())
    # a config file written before an option existed loads with the behaviour of that time
    old = cfg.to_dict()
    del old["distill"]["optimizer"], old["emulate"]["finetune_scale"]
    loaded = RunConfig.from_dict(old)
    assert (loaded.distill.optimizer, loaded.emulate.finetune_scale) == ("sgd", 1.0)
    assert RunConfig().distill.optimizer == "adam" and RunConfig().emulate.finetune_scale == 0.1
    # finetune_scale has no effect (and no say in keys) once finetune_lr is given
    assert "finetune_scale" in keyed(EmulateConfig()) and "finetune_scale" not in keyed(EmulateConfig(finetune_lr=0.1))
    assert "finetune_scale" not in keyed(EmulateConfig(finetune_scale=1.0))
    # the switched class balance acts after every cached stage: no key has it, whatever its value
    assert keyed(EmulateConfig(switched_class_scale=0.3)) == keyed(EmulateConfig()) == keyed(
        EmulateConfig(switched_class_scale=None))
    assert keyed(EmulateConfig(switched_class_agreement=0.9)) == keyed(EmulateConfig()) == keyed(
        EmulateConfig(switched_class_agreement=None))
    del old["emulate"]["switched_class_scale"], old["emulate"]["switched_class_agreement"]
    assert RunConfig.from_dict(old).emulate.switched_class_scale is None  # a workspace of 0.19 keeps its balance
    assert RunConfig.from_dict(old).emulate.switched_class_agreement is None  # ... and one of 0.20 its rule
    with pytest.raises(ConfigError, match="switched_class_agreement is a rank correlation"):
        EmulateConfig(switched_class_agreement=1.5)
    with pytest.raises(ConfigError, match="switched_class_scale must be in"):
        EmulateConfig(switched_class_scale=0.0)


@pytest.mark.parametrize("override", ["train.lr=inf", "train.lr=nan", "emulate.finetune_lr=inf",
                                      "distill.damping=inf", "emulate.keep_prob=nan"])
def test_non_finite_numbers_are_refused_with_the_field_named(override):
    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        RunConfig().with_overrides([override])
