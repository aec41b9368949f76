import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ddm.attribution.agreement import STEP_AGREEMENT_WARN
from ddm.cli.main import main
from ddm.config import RunConfig

#: ``ddm unlearn`` with the synsets' step (the step's tests; relabelled fine-tuning is the default)
STEP = ("unlearn", "--method", "step")


def test_help_answers(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("run", "train", "cluster", "distill", "attribute", "unlearn", "info"):
        assert cmd in out
    for cmd in ("run", "attribute", "unlearn"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert "--workspace" in capsys.readouterr().out


@pytest.mark.parametrize("preset, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_command_line_lets_torchs_threads_wait_passively_unless_told(preset, expected):
    # two commands at once on 2 cores starved each other with spinning threads (261 s each instead of 21 s)
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = ("import os, sys; from ddm.cli.main import main; main(['info', '--config-help']); "
            "print('policy', os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip().splitlines()[-1] == f"policy {expected} True"  # set before torch was loaded


@pytest.mark.parametrize("argv, says", [
    (["attribute", "--top-k", "0"], "--top-k: must be at least 1, got 0"),
    (["diagnose", "--verify", "-1"], "--verify: must be at least 0, got -1"),
    (["evaluate", "--num-targets", "ten"], "--num-targets: expected a whole number, got 'ten'"),
])
def test_counts_out_of_range_are_refused_before_any_work(argv, says, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and says in capsys.readouterr().err


def test_run_attribute_unlearn_info(tmp_path, capsys, caplog, monkeypatch):
    ws = str(tmp_path / "ws")
    assert main(["run", "-w", ws, "--preset", "tiny", "--targets", "0:3", "--json", "-q"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["attribution"]["targets"]) == 3
    assert len(out["attribution"]["targets"][0]["top"]) == 3
    assert set(out["table4"]) >= {"acc_theta0", "acc_theta_tau", "acc_after_whole_synset"}
    assert out["synset"]["matching"] == "head"  # the default recipe
    near = out["model"]["test_accuracy"] < 0.1 + 0.1 * 0.9  # the tiny preset's model may not learn digits
    assert ("chance" in " ".join(out.get("warnings", []))) == near
    agreement = out["synset"]["step_agreement"]  # theta_tau's step against the earlier checkpoints', no retrain
    assert agreement is not None and -1 <= agreement <= 1
    assert ("rank removals differently" in " ".join(out.get("warnings", []))) == (agreement < STEP_AGREEMENT_WARN)

    assert main(["attribute", "-w", ws, "--targets", "1,2", "--objective", "dist2", "--top-k", "2"]) == 0
    text = capsys.readouterr().out
    assert "test #1" in text and "test #2" in text and "increase of the test loss" in text
    assert "weigh x0.5 (emulate.other_class_scale" in text  # the class balance is said, not hidden
    assert out["attribution"]["other_class_scale"] == 0.5
    assert out["attribution"]["fit"] == "regression" and "fitted linearised" not in text
    assert main(["attribute", "-w", ws, "--targets", "1", "--set", "emulate.fit=linearised"]) == 0
    assert "W fitted linearised" in capsys.readouterr().out  # the fit is said too
    assert "schedule term" not in text  # off by default, and said when it is on
    assert "emulate.damping_scale" not in text  # the same for the damping's scale
    assert main(["attribute", "-w", ws, "--targets", "1", "--set", "emulate.damping_scale=30"]) == 0
    assert "the Newton step's damping at 30x the synset's" in capsys.readouterr().out
    assert main(["attribute", "-w", ws, "--targets", "1", "--set", "emulate.schedule_weight=0.1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["schedule_weight"] == 0.1
    assert main(["attribute", "-w", ws, "--targets", "1", "--set", "emulate.schedule_weight=0.1"]) == 0
    assert "with the schedule term at weight 0.1" in capsys.readouterr().out
    # the step reads the groups' own gradients by default, and says so where it reads the synsets' instead
    assert out["attribution"]["gradients"] == "groups" and "synsets' last-layer gradients" not in text
    assert main(["attribute", "-w", ws, "--targets", "1", "--set", "emulate.gradients=synsets"]) == 0
    assert "the Newton step taken from the synsets' last-layer gradients" in capsys.readouterr().out
    grads = Path(ws) / "synset" / "gradients.safetensors"
    grads.unlink()  # a workspace distilled before they were stored: the command computes them, no new distillation
    assert main(["attribute", "-w", ws, "--targets", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["gradients"] == "groups" and grads.exists()

    with caplog.at_level("WARNING", logger="ddm.unlearning"):
        assert main([*STEP, "-w", ws, "--groups", "0,1", "--json"]) == 0
    un = json.loads(capsys.readouterr().out)
    assert un["groups"] == [0, 1] and un["removed_samples"] > 0
    assert ("Exact retrains of such a model can disagree" in caplog.text) == near  # ddm unlearn warns too
    with monkeypatch.context() as m:
        m.setattr("ddm.cli.common.NEAR_CHANCE", 1.0)  # every model below 100% counts as near chance
        caplog.clear()
        with caplog.at_level("WARNING", logger="ddm.unlearning"):
            assert main([*STEP, "-w", ws, "--groups", "0,1", "--json"]) == 0
        capsys.readouterr()
        assert "is at or near chance" in caplog.text and "Exact retrains of such a model can disagree" in caplog.text
    assert "synset-class" not in out  # not built until asked for
    # unlearning settings for one call: a damped step moves the model less; other settings are refused
    assert main([*STEP, "-w", ws, "--groups", "0,2", "--json", "--name", "damped",  # classes 0 and 1 keep data
                 "--set", "emulate.unlearn_damping=10", "--set", "emulate.unlearn_rewind=0"]) == 0
    damped = json.loads(capsys.readouterr().out)
    assert damped["rewind"] is None and damped["test_accuracy"]["after"] == pytest.approx(
        damped["test_accuracy"]["before"], abs=0.02)
    assert main([*STEP, "-w", ws, "--groups", "0", "--set", "train.lr=1"]) == 2
    assert "only emulate.unlearn_" in capsys.readouterr().err
    assert main(["unlearn", "-w", ws, "--groups", "0", "--set", "emulate.unlearn_damping=10"]) == 2  # the default
    assert "add --method step" in capsys.readouterr().err and not Path(ws, "unlearned", "relabel-groups-0").exists()
    # the groups' own curvature (stored by distill.unlearn_rank) in place of their synthetic images'
    assert main([*STEP, "-w", ws, "--groups", "0,2", "--set", "emulate.unlearn_curvature=group", "--json"]) == 0
    own = json.loads(capsys.readouterr().out)
    assert 0.5 < own["test_accuracy"]["after"] <= 1
    assert main([*STEP, "-w", ws, "--groups", "0,2", "--json"]) == 0  # the workspace's settings again
    got = json.loads(capsys.readouterr().out)
    assert got["rewind"] is not None
    # the readable output says when the removed samples stay above test accuracy (retraining's rarely do)
    assert main([*STEP, "-w", ws, "--groups", "0,2"]) == 0
    high = got["removed_accuracy"]["after"] >= got["test_accuracy"]["after"]
    assert ("not on the removed samples themselves" in capsys.readouterr().out) == high

    # a removal that takes half or more of a class's samples but not all is said: retraining can lose the class
    import ddm

    grp = ddm.DistilledDatamodel(ws).load().groups
    pair = torch.nonzero(grp.labels == 0).flatten().tolist()  # the tiny preset's two groups of class 0
    sizes = grp.sizes()
    big, small = sorted(pair, key=lambda k: (-int(sizes[k]), k))
    assert main([*STEP, "-w", ws, "--groups", str(big), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["classes_mostly_removed"] == [
        {"class": 0, "kept": int(sizes[small]), "of": int(sizes[pair].sum())}]
    assert main([*STEP, "-w", ws, "--groups", str(big)]) == 0
    text = capsys.readouterr().out
    assert f"class 0 keeps {int(sizes[small])} of its" in text
    assert "--set emulate.unlearn_prior_shift=1 follows such a loss part of the way" in text  # the measured option
    assert main([*STEP, "-w", ws, "--groups", str(big), "--set", "emulate.unlearn_prior_shift=1"]) == 0
    assert "follows such a loss part of the way" not in capsys.readouterr().out  # not offered once it is set
    assert main([*STEP, "-w", ws, "--groups", ",".join(map(str, pair)), "--json"]) == 0  # all of it: forgotten
    whole = json.loads(capsys.readouterr().out)
    assert whole["classes_mostly_removed"] == [] and whole["classes_without_data"] == [0]
    # class unlearning and hierarchical attribution build the class-level synset on first use
    assert main([*STEP, "-w", ws, "--groups", "3", "--classes", "--json"]) == 0
    un = json.loads(capsys.readouterr().out)
    assert un["synset"] == "classes" and un["removed_samples"] > 0
    assert main(["attribute", "-w", ws, "--targets", "0:2", "--hierarchical", "--json"]) == 0
    hier = json.loads(capsys.readouterr().out)
    assert hier["hierarchical"] and hier["other_class_scale"] == 0.5  # its group level's balance is said too
    assert hier["class_balance_setting"] == "emulate.other_class_scale"

    assert main(["info", "-w", ws]) == 0
    text = capsys.readouterr().out
    assert "synset" in text and "averaged with theta_tau and the checkpoints at epochs" in text
    assert "left out" not in text
    assert re.search(r"last-layer curvature: exact, [\d,]+ parameters", text)
    stored = Path(ws, "config.json")
    kept = stored.read_text()
    try:  # a threshold above every checkpoint's cosine leaves them all out where the step reads the synsets ...
        stored.write_text(RunConfig.from_json(kept).with_overrides(
            ["emulate.min_transfer=0.999", "emulate.gradients=synsets"]).to_json())
        assert main(["info", "-w", ws]) == 0
        assert ("attribution at theta_tau only; left out, the synsets' steps do not transfer there (below "
                "emulate.min_transfer 0.999): epochs") in capsys.readouterr().out
        # ... and none where it reads the groups' own gradients, exact at every checkpoint (the default)
        stored.write_text(RunConfig.from_json(kept).with_overrides(["emulate.min_transfer=0.999"]).to_json())
        assert main(["info", "-w", ws]) == 0
        text = capsys.readouterr().out
        assert "averaged with theta_tau and the checkpoints at epochs" in text and "left out" not in text
        assert "the step reads the groups' own gradients there (emulate.gradients=groups)" in text
    finally:
        stored.write_text(kept)

    # a rerun with the stored config reuses every stage
    assert main(["run", "-w", ws, "--targets", "0:3", "-q"]) == 0
    assert "Table 4 check" in capsys.readouterr().out


def test_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert main(["run", "-w", str(tmp_path), "--preset", "tiny", "--set", "train.epochs=zero"]) == 2
    assert "expected a value of type int" in capsys.readouterr().err
    assert main(["attribute", "-w", str(tmp_path / "missing")]) == 2
    assert "ddm run" in capsys.readouterr().err
    assert main(["info", "--config-help"]) == 0
    listed = capsys.readouterr().out
    assert "distill.lr_img" in listed and "\n  device " in listed and "\n  hierarchical " in listed  # top-level too
    assert main(["run", "-w", str(tmp_path), "--preset", "tiny", "--recipe", "nope"]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err


def test_the_command_line_fits_the_convnets_depth_to_small_images_unless_asked(digits, tmp_path):
    import argparse

    from ddm.cli.common import make_config, model_for_data

    def depth(*sets):
        args = argparse.Namespace(workspace=str(tmp_path), config=None, preset="demo", dataset=None, data_dir=None,
                                  sets=list(sets), recipe=None, model=None)
        return model_for_data(make_config(args), digits, args).model.depth

    assert depth() == 2  # the demo's depth 3 would instance-normalise 2x2 maps on the 8x8 digits
    assert depth("model.depth=3") == 3 and depth("model.depth=1") == 1  # asked for: kept
    assert depth("model.norm=groupnorm") == 3
    # naming the ConvNet names no depth (a random configuration's `--set model.name=convnet` got depth 3 on digits)
    assert depth("model.name=convnet") == 2 and depth("model.name=convnet", "model.depth=3") == 3
    # a configuration read back from its workspace is what was run: `ddm run -w WS` resumes it as it is
    (tmp_path / "config.json").write_text(make_config(argparse.Namespace(
        workspace=str(tmp_path), config=None, preset="demo", dataset=None, data_dir=None, sets=["model.depth=3"],
        recipe=None, model=None)).to_json())
    args = argparse.Namespace(workspace=str(tmp_path), config=None, preset=None, dataset=None, data_dir=None, sets=[],
                              recipe=None, model=None)
    assert model_for_data(make_config(args), digits, args).model.depth == 3


def test_recipe_applies_its_overrides_before_the_explicit_sets(tmp_path, capsys):
    import argparse

    from ddm.cli.common import make_config
    from ddm.presets import RECIPES, recipe

    def config(*extra):
        args = argparse.Namespace(workspace=str(tmp_path), config=None, preset="tiny", dataset=None, data_dir=None,
                                  sets=[], recipe=None)
        for k, v in zip(extra[::2], extra[1::2], strict=True):
            setattr(args, k, v)
        return make_config(args)

    default, head = config(), config("recipe", "head")
    free, paper = config("recipe", "local-free"), config("recipe", "paper")
    assert (paper.distill.matching, paper.distill.labels, paper.distill.optimizer) == ("reverse", "hard", "sgd")
    assert (paper.distill.distance, paper.distill.lr_img) == ("layerwise_cosine", 10.0)
    assert (free.distill.matching, free.distill.labels, free.distill.optimizer) == ("local", "free", "adam")
    assert free.distill.distance == "relative_mse" and free.distill.iterations == 500
    assert head.distill.matching == "head" and head.distill.ipc == 4
    assert default.distill == head.distill.__class__(**{**head.distill.__dict__, "iterations": 6})  # tiny's budget
    assert free.train == paper.train and free.model == paper.model  # a recipe touches distillation only
    assert config("recipe", "local-free", "sets", ["distill.iterations=7"]).distill.iterations == 7  # --set wins
    # a recipe sets every option that tells the methods apart: the same method whatever came before it
    for name in RECIPES:
        once = config("recipe", name)
        assert once.with_overrides(recipe("paper") + recipe(name)) == once
    assert all(o.startswith("distill.") for overrides, _ in RECIPES.values() for o in overrides)
    from ddm.cli.main import build_parser
    from ddm.evaluation.ablation import VARIANTS

    evaluate = build_parser()._subparsers._group_actions[0].choices["evaluate"]  # type: ignore[attr-defined]
    help_text = next(a.help for a in evaluate._actions if "--ablation" in a.option_strings)
    assert all(name in help_text for name in VARIANTS)  # `--help` names every ablation variant
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "default: head" in out and "head: the default" in out


def test_a_closed_pipe_is_not_an_error():
    import subprocess
    import sys

    p = subprocess.run(f"{sys.executable} -m ddm info --config-help | head -1", shell=True, capture_output=True,
                       text=True, timeout=120)
    assert p.stdout.startswith("config fields") and "Traceback" not in p.stderr and "error" not in p.stderr


USER_MODELS = '''
import math
from torch import nn

def small(num_classes, image_shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(image_shape), 24), nn.ReLU(), nn.Linear(24, num_classes))

def not_a_model():
    return 3

class Pair(nn.Module):  # (logits, features), as some codebases return
    def __init__(self, num_classes, image_shape):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(image_shape), 24), nn.ReLU())
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x):
        h = self.body(x)
        return self.fc(h), h

def twelve(image_shape):  # more outputs than the data's classes
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(image_shape), 12))

def extra_axis(num_classes, image_shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(image_shape), num_classes), nn.Unflatten(1, (1, -1)))

class AuxInTraining(nn.Module):  # (logits, auxiliary logits) in train mode only, as GoogLeNet and Inception do
    def __init__(self, num_classes, image_shape):
        super().__init__()
        self.net = small(num_classes, image_shape)

    def forward(self, x):
        out = self.net(x)
        return (out, out) if self.training else out

class HeadFirst(nn.Module):  # its output layer registered before its body, and a projection it does not output
    def __init__(self, num_classes, image_shape):
        super().__init__()
        self.classifier = nn.Linear(24, num_classes)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(image_shape), 24), nn.ReLU())
        self.projection = nn.Linear(24, 8)

    def forward(self, x):
        h = self.body(x)
        self.projection(h)
        return self.classifier(h)

def for_mnist(num_classes):  # built for 28x28 images
    return nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes))

def in_float64(num_classes, image_shape):
    return small(num_classes, image_shape).double()

def needs_width(width, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, num_classes))

def raises(num_classes):
    raise ValueError("no such backbone")

def tied(num_classes, image_shape):  # one layer applied twice: its weight appears twice in the state_dict
    shared = nn.Linear(24, 24)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(image_shape), 24), nn.ReLU(), shared, nn.ReLU(), shared,
                         nn.ReLU(), nn.Linear(24, num_classes))
'''


def test_a_user_model_by_import_path(tmp_path, capsys, monkeypatch):
    (tmp_path / "user_models_cli.py").write_text(USER_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    ws = str(tmp_path / "ws")
    assert main(["run", "-w", ws, "--preset", "tiny", "--model", "user_models_cli:small", "--targets", "0:2",
                 "--json", "-q"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["spec"]["import"] == "user_models_cli:small"
    # later commands rebuild the model from the stored import path: no flag needed
    assert main(["attribute", "-w", ws, "--targets", "0:2", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["targets"]) == 2
    assert main([*STEP, "-w", ws, "--groups", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed_samples"] > 0
    assert main(["run", "-w", ws, "--targets", "0:1", "-q"]) == 0  # a rerun reuses every stage
    # the head is the Linear the logits come from, recorded in the workspace so that a reopened one finds it again
    first = tmp_path / "head-first"
    assert main(["run", "-w", str(first), "--preset", "tiny", "--model", "user_models_cli:HeadFirst", "--targets",
                 "0:1", "-q"]) == 0
    assert "the model's head is its nn.Linear 'classifier'" in capsys.readouterr().out
    assert json.loads((first / "train" / "model.json").read_text())["head"] == "classifier"
    assert main([*STEP, "-w", str(first), "--groups", "0", "-q"]) == 0
    assert main(["check", "-w", str(first), "-q", "--subsets", "4", "--other-class-subsets", "0", "--num-targets",
                 "4", "--peers", "if-explicit", "--try-temperature", "0"]) == 0
    # tied weights (one module used twice) train, resume and unlearn: safetensors refuses tensors sharing memory
    tied = str(tmp_path / "tied")
    assert main(["run", "-w", tied, "--preset", "tiny", "--model", "user_models_cli:tied", "--targets", "0:1",
                 "-q"]) == 0
    assert main([*STEP, "-w", tied, "--groups", "0", "-q"]) == 0
    capsys.readouterr()
    for bad, msg in (("user_models_cli", "MODULE:FACTORY"), ("no_such_module_xyz:f", "cannot import"),
                     ("user_models_cli:missing", "no attribute"), ("user_models_cli:not_a_model", "nn.Module"),
                     # models whose outputs are not [N, classes] logits: refused before training, saying what they gave
                     ("user_models_cli:Pair", "returns a tuple, not a tensor"),
                     ("user_models_cli:twelve", "logits of shape [2, 12] for 2 image(s), where ddm needs [2, 10]"),
                     ("user_models_cli:extra_axis", "shape [2, 1, 10]"),
                     ("user_models_cli:for_mnist", "fails on the first training images (shape (1, 8, 8))"),
                     ("user_models_cli:in_float64", "parameters are float64"),
                     ("user_models_cli:needs_width", "requires width, which ddm cannot give"),
                     ("user_models_cli:raises", "raised ValueError: no such backbone"),
                     ("user_models_cli:AuxInTraining", "returns a tuple in train mode")):
        assert main(["run", "-w", str(tmp_path / "ws2"), "--preset", "tiny", "--model", bad, "-q"]) == 2
        assert msg in capsys.readouterr().err


def test_evaluate_measures_a_user_model_by_import_path(tmp_path, capsys, monkeypatch):
    """What README says to do on a network where DDM may lose: check it against exact retraining, with that network."""
    (tmp_path / "user_models_eval.py").write_text(USER_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    ws = tmp_path / "ev"
    args = ["evaluate", "-q", "-w", str(ws), "--preset", "tiny", "--model", "user_models_eval:small", "--seeds", "0",
            "--num-targets", "4", "--lds-subsets", "5", "--noise-seeds", "0", "--other-class-subsets", "0", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert "DDM-full" in out["summary"]["lds"] and "same class (trivial)" in out["summary"]["lds"]
    spec = json.loads((ws / "seed0" / "DDM-full" / "train" / "model.json").read_text())
    assert spec["import"] == "user_models_eval:small"  # the user's network was trained and retrained, not convnet
    from ddm.evaluation.protocol import build_model

    cfg = RunConfig().with_overrides(["model.seed=4"])
    data = __import__("ddm").data.load("digits", train_size=100, test_size=20)
    a, b = build_model(cfg, data, "user_models_eval:small"), build_model(cfg, data, "user_models_eval:small")
    c = build_model(cfg.with_overrides(["model.seed=5"]), data, "user_models_eval:small")
    assert all(x.equal(y) for x, y in zip(a.parameters(), b.parameters(), strict=True))  # model.seed fixes theta_0
    assert not next(a.parameters()).equal(next(c.parameters()))
    for extra, msg in ((["--model", "user_models_eval:missing"], "no attribute"),
                       (["--model", "user_models_eval:small", "--scaling", "100:2"], "--scaling and --ablation")):
        assert main(["evaluate", "-q", "-w", str(tmp_path / "ev2"), "--preset", "tiny", *extra]) == 2
        assert msg in capsys.readouterr().err


def test_a_folder_of_class_subfolders_labels_its_images_by_class_name_or_index(tmp_path):
    import numpy as np
    from PIL import Image

    from ddm.data.targets import read_targets_file, target_files
    from ddm.exceptions import DataError

    names = ["T-shirt/top", "Trouser", "Bag"]
    for sub, n in (("t-shirt_top", 2), ("2", 1), ("Trouser", 1)):
        (tmp_path / "f" / sub).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((6, 6), 40 * i, dtype=np.uint8)).save(tmp_path / "f" / sub / f"{i}.png")
    x, y = read_targets_file(tmp_path / "f", (1, 4, 4), (0.5,), (0.5,), names, 3)
    # sorted subfolders: "2" (index 2), "Trouser" (1), "t-shirt_top" (0, alike in letters to the name no folder has)
    assert x.shape == (4, 1, 4, 4) and y.tolist() == [2, 1, 0, 0]
    assert target_files(tmp_path / "f") == ["2/0.png", "Trouser/0.png", "t-shirt_top/0.png", "t-shirt_top/1.png"]
    (tmp_path / "f" / "cat").mkdir()
    Image.fromarray(np.zeros((6, 6), dtype=np.uint8)).save(tmp_path / "f" / "cat" / "0.png")
    with pytest.raises(DataError, match="cat name no class of the model.*Trouser.*0..2"):
        read_targets_file(tmp_path / "f", (1, 4, 4), (0.5,), (0.5,), names, 3)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DataError, match="neither directly nor in class subfolders"):
        read_targets_file(tmp_path / "empty", (1, 4, 4), (0.5,), (0.5,), names, 3)


def test_targets_from_files_and_a_folder_of_images(tmp_path, capsys, caplog):
    import numpy as np
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    import ddm

    ws = str(tmp_path / "ws")
    assert main(["run", "-w", ws, "--preset", "tiny", "--targets", "0:1", "-q"]) == 0
    capsys.readouterr()
    data = ddm.data.load(ddm.presets.tiny().data)
    np.save(tmp_path / "t.npy", data.test.x[:3].numpy())
    assert main(["attribute", "-w", ws, "--targets-file", str(tmp_path / "t.npy"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["file_row"] for r in out["targets"]] == [0, 1, 2]
    assert all(r["label"] == r["predicted"] for r in out["targets"])  # no labels: the predicted class
    # the same inputs with labels, as safetensors, score like the same test rows
    save_file({"x": data.test.x[:3].contiguous(), "y": data.test.y[:3].contiguous()}, str(tmp_path / "t.safetensors"))
    assert main(["attribute", "-w", ws, "--targets-file", str(tmp_path / "t.safetensors"), "--json"]) == 0
    f = json.loads(capsys.readouterr().out)
    assert main(["attribute", "-w", ws, "--targets", "0:3", "--json"]) == 0
    t = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in f["targets"]] == data.test.y[:3].tolist()
    for a, b in zip(f["targets"], t["targets"], strict=True):
        assert [g["group"] for g in a["top"]] == [g["group"] for g in b["top"]]
    # a folder of raw-pixel images, converted to the model's input
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray((np.random.default_rng(i).random((20, 20)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    assert main(["attribute", "-w", ws, "--targets-file", str(folder)]) == 0
    cap = capsys.readouterr()
    assert "0.png (row 0, no label: asked about its predicted class " in cap.out and "1.png (row 1, " in cap.out
    assert "1 file(s) skipped, not images" in caplog.text and "notes.txt" in caplog.text
    assert "2 of 2 image(s) resized to 8x8" in caplog.text  # 20 x 20 files, the model's 8 x 8 input
    assert main(["attribute", "-w", ws, "--targets-file", str(folder), "--json", "-q"]) == 0
    assert [r["file"] for r in json.loads(capsys.readouterr().out)["targets"]] == ["0.png", "1.png"]
    # wrong inputs are messages
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 5, 5), dtype=np.float32))
    assert main(["attribute", "-w", ws, "--targets-file", str(tmp_path / "bad.npy")]) == 2
    assert "the model takes" in capsys.readouterr().err
    assert main(["attribute", "-w", ws, "--targets-file", str(tmp_path / "missing.npy")]) == 2
    assert "no such file" in capsys.readouterr().err
    # .npz with labels, and a single image file
    np.savez(tmp_path / "t.npz", x=data.test.x[:2].numpy(), y=data.test.y[:2].numpy())
    assert main(["attribute", "-w", ws, "--targets-file", str(tmp_path / "t.npz"), "--json"]) == 0
    assert [r["label"] for r in json.loads(capsys.readouterr().out)["targets"]] == data.test.y[:2].tolist()
    assert main(["attribute", "-w", ws, "--targets-file", str(folder / "0.png"), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["targets"]) == 1
    # Python: any tensor, numpy array or (x, y) pair
    dm = ddm.DistilledDatamodel(ws).load()
    attr = dm.attribute(torch.as_tensor(data.test.x[:2]), "dist2", name="x")
    assert attr.weights.shape[0] == 2 and attr.target_ids == [0, 1]
    pair = dm.attribute((data.test.x[:2].numpy(), data.test.y[:2].numpy()), "dist2", name="pair")
    same = dm.attribute(data.test[:2], "dist2", name="split")
    assert torch.allclose(pair.weights, same.weights)


def test_info_names_the_groups_matched_again(tmp_path, capsys, caplog):
    ws = str(tmp_path / "ws")
    # no matching steps and a retry threshold every group is above: every group is matched again, and a stage where
    # that many groups needed it warns (the overfitted probe's sign)
    assert main(["distill", "-w", ws, "--preset", "tiny", "-q", "--set", "distill.iterations=0",
                 "--set", "distill.retry=1e-9", "--set", "distill.ipc_grow=0"]) == 0
    capsys.readouterr()
    assert "had to be matched a second time" in caplog.text
    assert f"(ddm check -w {ws})" in caplog.text  # what to run next, on this workspace
    assert "images cannot carry groups this large" in caplog.text  # the other cause: a softmax regression's groups
    caplog.clear()
    assert main(["distill", "-w", str(tmp_path / "default"), "--preset", "tiny", "-q"]) == 0
    assert "had to be matched a second time" not in caplog.text
    capsys.readouterr()
    stage = json.loads(Path(ws, "synset", "stage.json").read_text())
    assert sorted(int(k) for k in stage["retried"]) == list(range(stage["num_groups"]))
    assert main(["info", "-w", ws]) == 0
    text = capsys.readouterr().out
    assert "matched again from their highest-loss members" in text and "group 0 " in text
    assert "images per group:" not in text
    # no steps stop short of the tolerance: matched again with more images (distill.ipc_grow), and info says so
    grown = str(tmp_path / "grown")
    assert main(["distill", "-w", grown, "--preset", "tiny", "-q", "--set", "distill.iterations=0"]) == 0
    stage = json.loads(Path(grown, "synset", "stage.json").read_text())
    assert stage["grown"]["from"] == 4 and stage["grown"]["to"] == 16 and stage["grown"]["kept"] in (4, 16)
    assert stage["grown"]["seconds"] >= 0  # the growth's own time, which `ddm run` notes where it dominates
    assert not list(Path(grown, "synset").glob("checkpoint*"))  # both matchings' checkpoints are cleaned up
    capsys.readouterr()
    assert main(["info", "-w", grown]) == 0
    assert f"images per group: {stage['grown']['kept']} (the matching with 4 stopped" in capsys.readouterr().out


def test_long_lists_of_groups_are_cut_saying_how_many_more():
    """Per-sample groups (K = N) can make a thousand groups outsized; a terminal line names 20 and counts the rest."""
    from ddm.cli.common import listed as _listed

    assert _listed([3, 17]) == "[3, 17]"
    long = _listed(list(range(1088)))
    assert long.startswith("[0, 1, 2") and "19]" in long and " 20," not in long
    assert "and 1,068 more (`ddm info --json` lists them all)" in long


def test_unlearning_a_grown_large_head_points_to_the_groups_own_curvature(tmp_path, capsys):
    ws = str(tmp_path / "ws")
    # a limit below the head's parameters (subspace curvature) and too few steps to converge (grown to 16 images)
    assert main(["run", "-w", ws, "--preset", "tiny", "-q", "--targets", "0:1", "--set", "distill.exact_limit=40",
                 "--set", "distill.iterations=3"]) == 0
    capsys.readouterr()
    stage = json.loads(Path(ws, "synset", "stage.json").read_text())
    assert stage["curvature"]["kind"] == "subspace" and stage["grown"]["kept"] == 16
    assert main([*STEP, "-w", ws, "--groups", "0,1"]) == 0
    assert "compare --set emulate.unlearn_curvature=group" in capsys.readouterr().out
    assert main([*STEP, "-w", ws, "--groups", "0,1", "--set", "emulate.unlearn_curvature=group"]) == 0
    assert "compare --set emulate.unlearn_curvature=group" not in capsys.readouterr().out


def test_scores_keep_their_digits_however_small():  # the CLI's rankings and the HTML report print them so
    """A model that fits its data almost exactly moves its losses by 1e-7 when a group goes: the printed ranking must
    not read +0.0000 for every group."""
    from ddm.text import signed as _signed

    assert _signed(0.01319) == "+0.0132" and _signed(-2.5) == "-2.5000" and _signed(0.0) == "+0.0000"
    assert _signed(4.277e-07) == "+4.277e-07" and _signed(-3e-5) == "-3.000e-05" and _signed(2e6) == "+2.000e+06"


def test_a_value_below_its_threshold_never_reads_as_the_threshold():
    """"step agreement +0.80, below 0.8" was printed for 0.7996: a value compared with a threshold keeps the digits
    that tell them apart."""
    from ddm.text import beside

    assert beside(0.7996, 0.8) == "+0.7996" and beside(0.61, 0.8) == "+0.61" and beside(-0.3, 0.8) == "-0.30"
    assert beside(0.79996, 0.8) == "+0.79996" and beside(0.85, 0.8) == "+0.85"


def test_durations_read_in_seconds_without_rounding_to_nothing():
    """``ddm check`` announced retrains "of about 1-1 s each" for a 1.3 s training: short durations keep two figures."""
    from ddm.text import seconds

    assert seconds(1.3) == "1.3" and seconds(0.65) == "0.65" and seconds(24.7) == "25" and seconds(250.2) == "250"


@pytest.mark.parametrize("exact,says", [
    ([0.80], "do not take it for a retrain; one data order cannot show retraining's own spread: --verify 3"),
    ([0.736, 0.972, 0.967], "inside the range its data orders span (73.6-97.2%)"),
    ([0.736, 0.90, 0.91], "(whose 3 data orders themselves span 73.6-91.0%): do not take it for a retrain"),
    ([0.95, 0.955], None),
    ([0.80], "here exact retraining is nearer the first step than the step with the raised damping"),
    ([0.945], None)])
def test_an_unlearning_verification_reads_a_gap_against_retrainings_own_spread(capsys, exact, says):
    from ddm.cli.unlearn import _print_unlearning_verification

    gap = 100 * (0.95 - sum(exact) / len(exact))
    v = {"orders": len(exact), "test_gap_points": gap,
         "exact": {"test_accuracy": exact, "removed_accuracy": [0.5] * len(exact)},
         "unlearned": {"test_accuracy": 0.95, "removed_accuracy": 1.0, "test_agreement": [0.9] * len(exact)},
         "target": {"test_accuracy": 0.96, "removed_accuracy": 1.0, "test_agreement": [0.9] * len(exact)}}
    if says is not None and "first step" in says or exact == [0.945]:  # a back-off's first step, scored beside
        v["first_step"] = {"test_accuracy": 0.81, "removed_accuracy": 0.4, "test_agreement": [0.97],
                           "test_gap_points": 100 * (0.81 - exact[0])}
    _print_unlearning_verification(v)
    out = capsys.readouterr().out
    if says is None:
        assert "points above" not in out and "nearer the first step" not in out
    else:
        assert says in out


def test_a_synset_that_fails_on_most_groups_is_warned_about_in_the_summary(capsys):
    from ddm.cli.main import _print_offline

    def summary(flagged: list[int], positive: float) -> str:
        health = {"checked": True, "cosine_mean": 0.1, "cosine_min": -0.2, "positive_fraction": positive,
                  "flagged": flagged}
        _print_offline({"dataset": "d", "model": {"test_accuracy": 0.9, "checkpoints": 3},
                        "synset": {"matching": "reverse", "steps": 10, "groups": 10, "first_loss": 2.0,
                                   "last_loss": 1.0, "seconds": 1.0, "health": health}})
        return capsys.readouterr().out

    assert "WARNING: 10 of the 10 groups' synsets failed it (most move the model away" in summary(list(range(10)), 0.0)
    assert "WARNING: 5 of the 10 groups' synsets failed it: rankings" in summary(list(range(5)), 0.9)
    assert "WARNING" not in summary([1, 2], 0.9)


def test_the_summary_names_the_loss_of_the_images_kept_not_only_the_last_step(capsys):
    from ddm.cli.main import _print_offline

    def summary(**extra: object) -> str:
        _print_offline({"dataset": "d", "model": {"test_accuracy": 0.9, "checkpoints": 3},
                        "synset": {"matching": "head", "steps": 10, "groups": 10, "first_loss": 0.033,
                                   "last_loss": 0.805, "seconds": 1.0, **extra}})
        return capsys.readouterr().out

    # keep_best kept each group's best step: a last step worse than the first is not what the synsets hold
    assert "0.033 at the first step, 0.805 at the last steps, 0.030 in the images kept" in summary(kept_loss=0.03)
    # a stage recorded before the kept loss was (or by another matcher)
    assert "matching loss per group 0.033 -> 0.805 (1.0 s)" in summary()


def test_a_model_near_chance_is_warned_about():
    from ddm.cli.common import near_chance as _near_chance

    assert "near chance (10.0% for 10 classes)" in _near_chance(0.05, 10)
    assert _near_chance(0.18, 10) is not None and _near_chance(0.20, 10) is None
    assert _near_chance(0.54, 2) is not None and _near_chance(0.70, 2) is None
    assert _near_chance(0.0, 1) is None  # no classes to be at chance among


def test_a_model_still_improving_when_training_stopped_is_warned_about():
    from torch import nn

    from ddm.cli.main import _fell_back, _still_improving
    from ddm.data.dataset import Split
    from ddm.health import training_progress
    from ddm.train.trajectory import Trajectory

    # a linear classifier on two features: class = which feature is larger
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat(50, 1).reshape(100, 1, 1, 2)
    test = Split(x, torch.tensor([0, 1]).repeat(50))
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
    right = {"1.weight": torch.eye(2), "1.bias": torch.zeros(2)}
    wrong = {"1.weight": torch.tensor([[0.0, 1.0], [1.0, 0.0]]), "1.bias": torch.zeros(2)}
    # checkpoints at epochs 0..8: wrong until epoch 6 (three quarters), right at the end
    late = Trajectory([wrong] * 8 + [right], list(range(9)))
    p = training_progress(model, late, test)
    assert p is not None and p["epoch"] == 6 and p["accuracy"] == 0.0 and p["final_accuracy"] == 1.0
    assert p["still_improving"] and "0.0% at epoch 6, 100.0% at epoch 8 (+100.0 points" in _still_improving(p, False)
    assert "train.epochs" in _still_improving(p, False) and "your loop" in _still_improving(p, True)
    assert "`ddm unlearn`'s relabelled epoch trains such a model further" in _still_improving(p, False)
    assert "takes the synsets' step instead (--method relabel replays" in _still_improving(p, False)
    # right since half-way: a trained-out model
    done = Trajectory([wrong] * 3 + [right] * 6, list(range(9)))
    q = training_progress(model, done, test)
    assert q is not None and not q["still_improving"] and q["rise"] == 0.0
    # the accuracy at theta_tau the caller measured is used as given
    r = training_progress(model, done, test, final_accuracy=0.5)
    assert r is not None and r["final_accuracy"] == 0.5
    assert not p["fell_back"] and not q["fell_back"] and q["best_accuracy"] == 1.0 and q["best_epoch"] == 3
    # right after one epoch, wrong from then on: a training that went backwards
    back = training_progress(model, Trajectory([wrong, right] + [wrong] * 7, list(range(9))), test)
    assert back is not None and back["fell_back"] and not back["still_improving"]
    assert (back["best_epoch"], back["best_accuracy"], back["trend_final_accuracy"]) == (1, 1.0, 0.0)
    said = _fell_back(back, False, momentum=0.9)
    assert "100.0% at epoch 1, its best, and 0.0% at epoch 8 (the first 100 test samples" in said
    assert "lower train.lr (with momentum 0.9 a step moves about 10x train.lr) (or train.epochs" in said
    assert "momentum" not in _fell_back(back, False) and "your loop" in _fell_back(back, True)
    # nothing recorded in the second half before the end, or no test data: nothing to say
    assert training_progress(model, Trajectory([wrong, right], [0, 8]), test) is None
    assert training_progress(model, Trajectory([wrong, wrong, right], [0, 2, 8]), test) is None
    assert training_progress(model, late, Split(x[:0], torch.tensor([], dtype=torch.long))) is None


def test_a_model_that_fits_its_training_data_loosely_is_warned_about(tmp_path, capsys):
    import math

    from torch import nn

    from ddm.cli.main import _loose_fit
    from ddm.data.dataset import Split
    from ddm.health import LOOSE_FIT, fit_to_training

    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat(50, 1).reshape(100, 1, 1, 2)
    train = Split(x, torch.tensor([0, 1]).repeat(50))
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
    uniform = {"1.weight": torch.zeros(2, 2), "1.bias": torch.zeros(2)}  # a uniform guess: ln 2 on every sample
    sure = {"1.weight": 20 * torch.eye(2), "1.bias": torch.zeros(2)}  # right, and confident
    loose, tight = fit_to_training(model, uniform, train, 2), fit_to_training(model, sure, train, 2)
    assert loose is not None and tight is not None
    assert loose["loss"] == pytest.approx(math.log(2)) and loose["ratio"] == pytest.approx(1.0) and loose["loose"]
    assert tight["ratio"] < 1e-6 and tight["accuracy"] == 1.0 and not tight["loose"]
    said = _loose_fit(loose)
    assert f"0.693, 1.00 of a uniform guess's (above {LOOSE_FIT:g})" in said and "ddm check" in said
    assert fit_to_training(model, uniform, Split(x[:0], torch.tensor([], dtype=torch.long)), 2) is None
    assert fit_to_training(model, uniform, train, 1) is None
    # ddm run reports it with the model, and warns only where the fit is loose
    ws = str(tmp_path / "ws")
    assert main(["train", "-w", ws, "--preset", "tiny", "--json", "-q"]) == 0
    out = json.loads(capsys.readouterr().out)
    fit = out["model"]["training_fit"]
    assert 0 < fit["loss"] and fit["ratio"] == pytest.approx(fit["loss"] / math.log(10)) and fit["samples"] > 0
    assert any("fits its training data loosely" in w for w in out.get("warnings", [])) == fit["loose"]


def test_a_step_at_theta_tau_unlike_the_checkpoints_is_warned_about(tmp_path, capsys, monkeypatch):
    import ddm.attribution.agreement

    ws = str(tmp_path / "ws")
    assert main(["distill", "-w", ws, "--preset", "tiny", "--json", "-q"]) == 0
    quiet = json.loads(capsys.readouterr().out)
    monkeypatch.setattr(ddm.attribution.agreement, "STEP_AGREEMENT_WARN", 1.01)  # every agreement is below it now
    assert main(["distill", "-w", ws, "--json", "-q"]) == 0
    loud = json.loads(capsys.readouterr().out)
    assert loud["synset"]["step_agreement"] == quiet["synset"]["step_agreement"]  # a fixed draw: the same number
    assert any("ddm check" in w and "rank removals differently" in w for w in loud["warnings"])
    assert main(["distill", "-w", ws, "-q"]) == 0
    assert "WARNING: the step at theta_tau" in capsys.readouterr().out


def test_the_step_agreement_asks_every_checkpoint_where_the_synsets_transfer_to_none(tmp_path, capsys):
    import ddm.data
    from ddm.pipeline import DistilledDatamodel

    ws = str(tmp_path / "ws")
    assert main(["distill", "-w", ws, "--preset", "tiny", "-q", "--set", "distill.auto_temperature=0"]) == 0
    capsys.readouterr()
    dm = DistilledDatamodel(ws).load()
    train = ddm.data.load(dm.config.data).train
    assert dm.synset.checkpoints and all(c.cosine_mean < 1 for c in dm.synset.checkpoints)
    every = dm.config.with_overrides(["emulate.min_transfer=0"])
    dm.config = every
    asked = dm.step_agreement(train)
    # no checkpoint transfers at min_transfer 1: the attribution uses theta_tau's step alone, and the agreement
    # compares it with every recorded checkpoint's, as at min_transfer 0 (before, it said nothing: None)
    dm.config = every.with_overrides(["emulate.min_transfer=1"])
    assert not dm.synset.transferring(1.0).checkpoints
    assert asked is not None and dm.step_agreement(train) == asked


def test_the_step_agreement_reads_its_outputs_a_chunk_of_perturbations_at_a_time(tmp_path, capsys, monkeypatch):
    """step_attributions' objective outputs, taken a few perturbations at a time (the [P, N, C] temporaries were the
    2,000-group probe's peak), give the same attributions to float rounding (the reductions' order follows the
    tensor's shape); below OUTPUT_CHUNK_ENTRIES, as on every benchmark configuration, they are read at once."""
    import ddm.attribution.agreement as agreement
    import ddm.data
    from ddm.pipeline import DistilledDatamodel

    ws = str(tmp_path / "ws")
    assert main(["distill", "-w", ws, "--preset", "tiny", "-q", "--set", "distill.auto_temperature=0"]) == 0
    capsys.readouterr()
    dm = DistilledDatamodel(ws).load()
    train = ddm.data.load(dm.config.data).train
    whole = agreement.step_attributions(dm, train)
    assert whole is not None
    assert len(whole[0]) * dm.num_classes * 2000 < agreement.OUTPUT_CHUNK_ENTRIES  # the tiny preset's: one chunk
    monkeypatch.setattr(agreement, "OUTPUT_CHUNK_ENTRIES", 7 * len(whole[0]) * dm.num_classes)  # 7 at a time
    chunked = agreement.step_attributions(dm, train)
    assert chunked is not None
    for a, b in zip(whole[1:], chunked[1:], strict=True):
        torch.testing.assert_close(a.weights, b.weights, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.bias, b.bias, rtol=1e-5, atol=1e-6)


def test_synsets_switched_by_a_redone_stage_do_not_meet_the_plain_ones_emulations(tmp_path, capsys, monkeypatch):
    import shutil

    import ddm.attribution.agreement
    import ddm.data
    from ddm.pipeline import DistilledDatamodel

    ws = tmp_path / "ws"
    assert main(["distill", "-w", str(ws), "--preset", "tiny", "-q"]) == 0
    capsys.readouterr()
    dm = DistilledDatamodel(ws).load()
    targets = ddm.data.load(dm.config.data).test[torch.arange(3)]
    plain = dm.attribute(targets, "dist2", other_class_scale=1.0)
    before = set((ws / "emulation").iterdir())
    # the synset stage redone under a threshold that switches (as after an upgrade, the stage's folder removed): the
    # same configuration, so the same stage key, but tempered synsets
    key = json.loads((ws / "synset" / "stage.json").read_text())["key"]
    shutil.rmtree(ws / "synset")
    monkeypatch.setattr(ddm.attribution.agreement, "STEP_AGREEMENT_WARN", 1.01)
    assert main(["distill", "-w", str(ws), "-q"]) == 0
    capsys.readouterr()
    assert json.loads((ws / "synset" / "stage.json").read_text())["key"] == key
    dm = DistilledDatamodel(ws).load()
    assert dm.synset_temperature == 2.0
    tempered = dm.attribute(targets, "dist2", other_class_scale=1.0)
    assert set((ws / "emulation").iterdir()) > before  # emulated anew, not read from the plain synsets' cache
    assert not torch.allclose(tempered.weights, plain.weights)


def test_a_low_step_agreement_distils_the_synsets_again_at_the_auto_temperature(tmp_path, capsys, monkeypatch):
    import ddm.attribution.agreement
    from ddm.evaluation import check as C
    from ddm.pipeline import DistilledDatamodel
    from ddm.task import TemperedCrossEntropy

    monkeypatch.setattr(ddm.attribution.agreement, "STEP_AGREEMENT_WARN", 1.01)  # every agreement is below it now
    ws = tmp_path / "ws"
    # switched_class_agreement=1: the switched balance applies whatever the other classes' agreement (its two
    # branches are asked below)
    assert main(["distill", "-w", str(ws), "--preset", "tiny", "--set", "hierarchical=true", "--set",
                 "emulate.switched_class_agreement=1", "--json", "-q"]) == 0
    out = json.loads(capsys.readouterr().out)
    stage = json.loads((ws / "synset" / "stage.json").read_text())
    assert -1 <= stage["other_class_agreement"] < 1  # recorded for the synsets in use, the tempered ones
    # the class-level synset follows the groups' switch (the agreement is the model's), and says so
    classes = json.loads((ws / "synset-class" / "stage.json").read_text())
    assert classes["temperature"] == 2.0 and classes["temperature_from"] == "synset"
    assert stage["temperature"] == 2.0 and stage["step_agreement_at_1"] < 1.01
    assert out["synset"]["temperature"] == 2.0 and out["synset"]["step_agreement"] == stage["step_agreement"]
    assert any("distilled again with the cross-entropy at temperature 2" in n for n in out["notes"])
    assert not (ws / "synset" / "tempered").exists()  # the second matching's checkpoints are gone
    dm = DistilledDatamodel(ws).load()
    assert isinstance(dm.synset.task, TemperedCrossEntropy) and dm.synset_temperature == 2.0
    # the groups' own curvature (unlearning's) is computed once, for the synsets kept: the tempered ones'
    import ddm.data
    from ddm.distill.head import Head, group_curvatures

    dm.model.eval()
    want = group_curvatures(Head.of(dm.model), ddm.data.load(dm.config.data).train, dm.groups, dm.synset.curvature,
                            dm.config.distill.unlearn_rank, dm.synset.task)
    assert want is not None and dm.synset.group_curvature is not None
    torch.testing.assert_close(dm.synset.group_curvature[0], want[0])
    assert isinstance(dm.class_synset.task, TemperedCrossEntropy) and dm.class_synset.task.temperature == 2.0
    # the check measures the switch: it tries the plain synsets beside them
    assert C.tried_temperature(dm, 2.0) == 1.0 and C.tried_temperature(dm, 3.0) == 3.0
    assert main(["info", "-w", str(ws)]) == 0
    assert "switched to on their own: step agreement" in (info := capsys.readouterr().out)
    assert "below 1.01 (distill.auto_temperature)" in info  # the threshold it switched under, as recorded
    assert stage["step_agreement_threshold"] == 1.01
    assert "the class-level synset follows" in info
    assert "other classes' groups x0.1 (emulate.switched_class_scale" in info
    # group attributions weigh other classes' groups at the switched class balance, and say so
    assert dm.class_balance == (0.1, "emulate.switched_class_scale")
    assert main(["attribute", "-w", str(ws), "--targets", "0:3", "--objective", "dist2"]) == 0
    assert "weigh x0.1 (emulate.switched_class_scale, the balance where other classes' weights disagree" in (
        capsys.readouterr().out)
    assert main(["attribute", "-w", str(ws), "--targets", "0:2", "--hierarchical"]) == 0
    assert "weigh x0.1 (emulate.switched_class_scale" in capsys.readouterr().out
    import ddm.data

    test = DistilledDatamodel(ws).load()
    targets = ddm.data.load(test.config.data).test[torch.arange(4)]
    switched = test.attribute(targets, "dist2", name="switched")
    assert switched.meta["other_class_scale"] == 0.1
    unswitched = test.attribute(targets, "dist2", name="unswitched", other_class_scale=0.5)
    from ddm.attribution.fit import balance_classes

    # the same emulation, balanced at 0.1 instead of 0.5: only the weights of other classes' groups differ
    raw = test.attribute(targets, "dist2", name="raw", other_class_scale=1.0)
    for attr, s in ((switched, 0.1), (unswitched, 0.5)):
        w, _ = balance_classes(raw.weights, raw.bias, test.groups, targets.y, s)
        assert torch.allclose(attr.weights, w, atol=1e-6)
    test.config = test.config.with_overrides(["emulate.switched_class_scale=none"])
    assert test.class_balance == (0.5, "emulate.other_class_scale")
    # the switched balance only where the tempered synsets' other-class weights disagree between the steps
    agreement = stage["other_class_agreement"]
    assert test.other_class_agreement == agreement
    for below, balance in ((agreement + 0.01, 0.1), (agreement - 0.01, 0.5), ("none", 0.1)):
        test.config = test.config.with_overrides(["emulate.switched_class_scale=0.1",
                                                  f"emulate.switched_class_agreement={below}"])
        assert test.class_balance[0] == balance
    config = json.loads((ws / "config.json").read_text())
    config["emulate"]["switched_class_agreement"] = agreement - 0.01
    (ws / "config.json").write_text(json.dumps(config))
    assert main(["info", "-w", str(ws)]) == 0
    assert "keep other classes' groups at x0.5 (emulate.other_class_scale)" in capsys.readouterr().out
    assert DistilledDatamodel(ws).load().class_balance == (0.5, "emulate.other_class_scale")
    info_path = ws / "synset" / "stage.json"
    del stage["other_class_agreement"]  # a stage switched before the agreement was recorded keeps the switched balance
    info_path.write_text(json.dumps(stage))
    assert DistilledDatamodel(ws).load().class_balance == (0.1, "emulate.switched_class_scale")
    config["emulate"]["switched_class_agreement"] = 1
    (ws / "config.json").write_text(json.dumps(config))
    # the check refits that balance, and would advise it under its own name
    assert main(["check", "-w", str(ws), "-q", "--subsets", "4", "--other-class-subsets", "0", "--num-targets", "5",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["class_balance"]["configured"] == 0.1 and r["class_balance"]["setting"] == "emulate.switched_class_scale"
    t = r["temperature"]
    assert t["temperature"] == 1.0 and t["configured"] == 2.0 and np.isfinite(t["lds"]["mean"])
    plain = json.loads((ws / "check" / "synset-temperature-1" / "stage.json").read_text())
    assert "temperature" not in plain and "auto_temperature" not in plain["config"]  # plain, and keyed as before 0.19
    # the same synsets as distilled at temperature 2 outright (which never switches and keeps its old key)
    hot = tmp_path / "hot"
    assert main(["distill", "-w", str(hot), "--preset", "tiny", "--set", "distill.head_temperature=2", "--set",
                 "hierarchical=true", "-q"]) == 0
    capsys.readouterr()
    assert "temperature" not in json.loads((hot / "synset" / "stage.json").read_text())
    assert "temperature" not in json.loads((hot / "synset-class" / "stage.json").read_text())
    loaded = DistilledDatamodel(hot).load()
    assert loaded.class_balance == (0.5, "emulate.other_class_scale")  # a configured temperature keeps the balance
    assert torch.equal(loaded.synset.images, dm.synset.images)
    assert torch.equal(loaded.class_synset.images, dm.class_synset.images)
    # off: the plain synsets stay, and the warning says to check them
    off = tmp_path / "off"
    assert main(["distill", "-w", str(off), "--preset", "tiny", "--set", "distill.auto_temperature=0", "--set",
                 "hierarchical=true", "--json", "-q"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "temperature" not in out["synset"] and DistilledDatamodel(off).load().synset_temperature == 1.0
    assert DistilledDatamodel(off).load().class_balance == (0.5, "emulate.other_class_scale")
    assert DistilledDatamodel(off).load().class_synset.task is None
    assert any("rank removals differently" in w for w in out["warnings"])


def test_the_small_class_balance_where_other_classes_weights_disagree_between_the_steps(tmp_path, capsys):
    """Synsets that did not switch take emulate.switched_class_scale too where their other-class step agreement
    (recorded by the synset stage) is below emulate.switched_class_agreement, and keep other_class_scale above it."""
    from ddm.pipeline import DistilledDatamodel, switched_balance_applies

    ws = tmp_path / "ws"
    assert main(["distill", "-w", str(ws), "--preset", "tiny", "-q", "--set", "distill.auto_temperature=0"]) == 0
    capsys.readouterr()
    stage = json.loads((ws / "synset" / "stage.json").read_text())
    agreement = stage["other_class_agreement"]
    assert -1 <= agreement <= 1 and "temperature" not in stage  # recorded, not switched
    dm = DistilledDatamodel(ws).load()
    assert dm.other_class_agreement == agreement and dm.synset_temperature == 1.0
    for below, balance in ((agreement + 0.01, (0.1, "emulate.switched_class_scale")),
                           (agreement - 0.01, (0.5, "emulate.other_class_scale")),
                           ("none", (0.5, "emulate.other_class_scale"))):  # none: only where the synsets switched
        dm.config = dm.config.with_overrides([f"emulate.switched_class_agreement={below}"])
        assert dm.class_balance == balance
    dm.config = dm.config.with_overrides([f"emulate.switched_class_agreement={agreement + 0.01}",
                                          "emulate.switched_class_scale=none"])
    assert dm.class_balance == (0.5, "emulate.other_class_scale")
    # unknown agreement or threshold: the switch decides, as before the agreement was read
    assert switched_balance_applies(None, 0.35, True) and not switched_balance_applies(None, 0.35, False)
    assert switched_balance_applies(0.9, None, True) and not switched_balance_applies(0.9, None, False)
    assert switched_balance_applies(0.2, 0.35, False) and not switched_balance_applies(0.5, 0.35, True)
    config = json.loads((ws / "config.json").read_text())
    config["emulate"]["switched_class_agreement"] = agreement + 0.01
    (ws / "config.json").write_text(json.dumps(config))
    assert main(["info", "-w", str(ws)]) == 0
    assert f"other-class step agreement {agreement:+.2f}, below" in capsys.readouterr().out
    assert main(["attribute", "-w", str(ws), "--targets", "0:2", "--objective", "dist2"]) == 0
    assert "weigh x0.1 (emulate.switched_class_scale" in capsys.readouterr().out
    config["emulate"]["switched_class_agreement"] = agreement - 0.01
    (ws / "config.json").write_text(json.dumps(config))
    assert main(["info", "-w", str(ws)]) == 0
    assert "switched_class_scale" not in capsys.readouterr().out  # the default balance, nothing to say


def test_a_workspace_fitted_on_python_data_says_how_to_open_it(tmp_path, capsys):
    """The command line loads named datasets only; a workspace fitted on from_arrays data gets a message that says
    to open it from Python, not "unknown dataset 'arrays'"."""
    import ddm

    rng = np.random.default_rng(0)
    data = ddm.data.from_arrays(rng.normal(size=(80, 6)), np.arange(80) % 2)
    cfg = ddm.presets.tiny(data).with_overrides(["hierarchical=false"])
    ddm.DistilledDatamodel(tmp_path, cfg).fit(ddm.models.build(cfg.model, data), data.train)
    for argv in (["attribute", "--targets", "0:2"], ["unlearn", "--groups", "0"], ["check"]):
        assert main([argv[0], "-w", str(tmp_path), *argv[1:]]) != 0
        err = capsys.readouterr().err
        assert "fitted on data handed in from Python ('arrays'" in err and "ddm.DistilledDatamodel(WS).load()" in err
    assert main(["info", "-w", str(tmp_path)]) == 0


def test_your_own_arrays_in_an_npz_file_run_through_the_command_line(tmp_path, capsys, monkeypatch):
    """``--dataset npz --data-dir FILE.npz``: feature vectors (and their class names) from a file; the preset's
    ConvNet gives way to an MLP, and every later command reopens the data from the path the workspace keeps; a
    targets file of raw features is standardised as the data were."""
    from ddm import data as ddm_data

    rng = np.random.default_rng(0)
    y = np.arange(150) % 3
    X = rng.normal(size=(150, 7)) + 3 * y[:, None]
    np.savez(tmp_path / "mine.npz", X=X, y=y, class_names=np.array(["low", "mid", "high"]))
    ws = str(tmp_path / "ws")
    assert main(["run", "-w", ws, "--preset", "tiny", "--dataset", "npz", "--data-dir", str(tmp_path / "mine.npz"),
                 "--set", "hierarchical=false", "--set", "train.epochs=30", "--json", "-q"]) == 0
    out = json.loads(capsys.readouterr().out)
    cfg = RunConfig.from_json(Path(ws, "config.json").read_text())
    assert cfg.model.name == "mlp" and cfg.data.name == "npz" and out["model"]["test_accuracy"] > 0.8
    assert "120 train / 30 test samples of 7 features, 3 classes" in out["dataset"]
    assert main(["attribute", "-w", ws, "--targets", "0:2", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["targets"]) == 2
    # a targets file of raw features, as the data file holds them, is standardised as the training split was
    from ddm.data.targets import read_targets_file

    data = ddm_data.load(cfg.data)
    np.save(tmp_path / "raw.npy", X[:3])
    x, _ = read_targets_file(tmp_path / "raw.npy", data.image_shape, data.mean, data.std)
    standardised = (X[:3] - np.asarray(data.mean)) / np.asarray(data.std)
    assert x.shape == (3, 7, 1, 1) and np.allclose(x[:, :, 0, 0].numpy(), standardised, atol=1e-5)
    assert main(["attribute", "-w", ws, "--targets-file", str(tmp_path / "raw.npy"), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["targets"]) == 3
    np.savez(tmp_path / "bad.npz", features=X, y=y)
    assert main(["run", "-w", str(tmp_path / "b"), "--preset", "tiny", "--dataset", "npz", "--data-dir",
                 str(tmp_path / "bad.npz")]) != 0
    assert "holds no X" in capsys.readouterr().err
    np.savez(tmp_path / "obj.npz", X=X, y=np.array([{"a": 1}] * 150, dtype=object))
    assert main(["run", "-w", str(tmp_path / "c"), "--preset", "tiny", "--dataset", "npz", "--data-dir",
                 str(tmp_path / "obj.npz")]) != 0
    assert "needs unpickling, which ddm never does" in capsys.readouterr().err
    assert main(["run", "-w", str(tmp_path / "d"), "--preset", "tiny", "--dataset", "npz"]) != 0
    assert "--data-dir FILE.npz" in capsys.readouterr().err
    assert main(["run", "-w", str(tmp_path / "e"), "--preset", "tiny", "--dataset", "npz", "--data-dir",
                 "nowhere/mine.npz"]) != 0
    assert "no .npz file at" in capsys.readouterr().err
    # a relative path is kept as the file's full path: later commands find it from any directory
    monkeypatch.chdir(tmp_path)
    rel = str(tmp_path / "rel")
    assert main(["run", "-w", rel, "--preset", "tiny", "--dataset", "npz", "--data-dir", "mine.npz",
                 "--set", "hierarchical=false", "-q"]) == 0
    assert RunConfig.from_json(Path(rel, "config.json").read_text()).data.data_dir == str(tmp_path / "mine.npz")
    monkeypatch.chdir(tmp_path / "ws")
    assert main(["attribute", "-w", rel, "--targets", "0:2"]) == 0
    capsys.readouterr()
    # ddm evaluate takes the MLP for feature vectors as ddm run does
    seen = []  # (what follows the protocol does not matter here)
    monkeypatch.setattr("ddm.evaluation.protocol.evaluate", lambda root, cfg, ecfg: seen.append(cfg) or {})
    main(["evaluate", "-w", str(tmp_path / "ev"), "--preset", "tiny", "--dataset", "npz", "--data-dir",
          str(tmp_path / "mine.npz"), "--seeds", "0"])
    assert seen and seen[0].model.name == "mlp"


def test_a_task_with_two_classes_matches_both_norms_by_default(tmp_path, capsys):
    """distill.match_metric (none by default): both where the task has two classes, step otherwise; a setting that
    resolves to the same norm keeps the same synset stage (the same key), another does not."""
    from ddm.config import DistillConfig
    from ddm.distill.head import match_metric
    from ddm.pipeline import DistilledDatamodel

    assert match_metric(DistillConfig(), 2) == "both" and match_metric(DistillConfig(), 10) == "step"
    assert match_metric(DistillConfig(match_metric="step"), 2) == "step"
    assert match_metric(DistillConfig(match_metric="outputs"), 10) == "outputs"

    rng = np.random.default_rng(1)
    y = np.arange(120) % 2
    np.savez(tmp_path / "two.npz", X=rng.normal(size=(120, 6)) + 2 * y[:, None], y=y)

    def run(name: str, *sets: str) -> dict:
        ws = str(tmp_path / name)
        argv = ["run", "-w", ws, "--preset", "tiny", "--dataset", "npz", "--data-dir", str(tmp_path / "two.npz"),
                "--set", "hierarchical=false"]
        assert main([*argv, *(a for s in sets for a in ("--set", s))]) == 0
        return DistilledDatamodel(ws).ws.stage_info("synset")

    default = run("default")
    assert default["match_metric"] == "both"
    assert "distill.match_metric=both (the default for a task with two classes)" in capsys.readouterr().out
    assert run("both", "distill.match_metric=both")["key"] == default["key"]
    capsys.readouterr()
    step = run("step", "distill.match_metric=step")
    assert step["key"] != default["key"] and "match_metric" not in step
    assert "distill.match_metric" not in capsys.readouterr().out
    assert main(["info", "-w", str(tmp_path / "default")]) == 0
    assert "match_metric=both" in capsys.readouterr().out


def test_a_task_with_two_classes_can_take_its_own_class_balance(tmp_path, capsys):
    """emulate.binary_class_scale (off by default: a wash on held-out binary probes) replaces other_class_scale and
    switched_class_scale where the task has two classes, and only there."""
    from types import SimpleNamespace

    from ddm import data as ddm_data
    from ddm import exceptions as ddm_errors
    from ddm.config import EmulateConfig
    from ddm.pipeline import DistilledDatamodel, balance_rule

    e = EmulateConfig()
    assert e.binary_class_scale is None and balance_rule(e, 2, 0.9, False) == (0.5, "emulate.other_class_scale")
    assert balance_rule(e, 2, 0.1, False) == (0.1, "emulate.switched_class_scale")
    on = EmulateConfig(binary_class_scale=1.0)
    assert balance_rule(on, 2, 0.9, False) == (1.0, "emulate.binary_class_scale")
    assert balance_rule(on, 2, 0.1, True) == (1.0, "emulate.binary_class_scale")  # the switched balance too
    assert balance_rule(on, 10, 0.9, False) == (0.5, "emulate.other_class_scale")
    assert balance_rule(on, 10, 0.1, False) == (0.1, "emulate.switched_class_scale")
    assert balance_rule(on, None, 0.9, False) == (0.5, "emulate.other_class_scale")  # unknown: as before
    assert balance_rule(SimpleNamespace(**{**e.__dict__, "binary_class_scale": 0.7}), 2, 0.9, False)[0] == 0.7
    with pytest.raises(ddm_errors.ConfigError, match="binary_class_scale"):
        EmulateConfig(binary_class_scale=0)

    rng = np.random.default_rng(0)
    y = np.arange(120) % 2
    np.savez(tmp_path / "two.npz", X=rng.normal(size=(120, 6)) + 2 * y[:, None], y=y)
    ws = str(tmp_path / "ws")
    assert main(["run", "-w", ws, "--preset", "tiny", "--dataset", "npz", "--data-dir", str(tmp_path / "two.npz"),
                 "--set", "hierarchical=false", "--set", "emulate.binary_class_scale=1", "-q"]) == 0
    capsys.readouterr()
    dm = DistilledDatamodel(ws).load()
    assert dm.class_balance == (1.0, "emulate.binary_class_scale")
    attr = dm.attribute(ddm_data.load(dm.config.data).test[:3], "dist2")
    assert attr.meta["other_class_scale"] == 1.0 and attr.meta["class_balance_setting"] == "emulate.binary_class_scale"
    assert main(["info", "-w", ws]) == 0
    assert "weigh the other class's groups x1 (emulate.binary_class_scale" in capsys.readouterr().out


def test_sigterm_ends_a_command_as_ctrl_c_does(tmp_path, capsys, monkeypatch):
    """A batch scheduler's stop (SIGTERM) used to kill ddm without a word; now it ends the command as Ctrl-C does,
    with exit status 143, and the process's own SIGTERM handler is given back afterwards."""
    import os
    import signal
    import time

    def stopped(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at the next bytecode; never reached
        raise AssertionError("SIGTERM did not interrupt")

    from ddm.pipeline import DistilledDatamodel

    monkeypatch.setattr(DistilledDatamodel, "fit", stopped)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["train", "-w", str(tmp_path / "ws"), "--preset", "tiny", "-q"]) == 143
    assert "ddm: interrupted (SIGTERM); finished work is saved in the workspace" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before


def test_unlearning_under_an_annealed_schedule_says_it_is_not_moved_back(tmp_path, capsys):
    ws = str(tmp_path / "ws")
    assert main(["run", "-w", ws, "--preset", "tiny", "--set", "train.schedule=cosine", "-q", "--json"]) == 0
    capsys.readouterr()
    assert main([*STEP, "-w", ws, "--groups", "0,1"]) == 0
    text = capsys.readouterr().out
    assert "not moved back along the recorded training: under its cosine learning-rate schedule" in text
    assert "moved back to epoch" not in text
    assert main([*STEP, "-w", ws, "--groups", "0,1", "--json"]) == 0
    skipped = json.loads(capsys.readouterr().out)["rewind_skipped"]
    assert skipped["schedule"] == "cosine" and 0 < skipped["fraction_removed"] < 1


def test_unlearning_says_when_the_rewind_landed_on_a_checkpoint_that_lost_a_class(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    ws = tmp_path / "ws"
    assert main(["run", "-w", str(ws), "--preset", "tiny", "-q", "--json"]) == 0
    capsys.readouterr()
    thetas = sorted((ws / "train" / "trajectory").glob("theta_*.safetensors"))
    for f in thetas[1:-1]:  # every checkpoint between theta_0 and theta_tau never predicts class 0
        t = load_file(str(f))
        t["classifier.bias"][0] = -1e4
        save_file(t, str(f))
    # a heavily damped step, which costs theta_tau no class: only the rewound start point lost one
    assert main([*STEP, "-w", str(ws), "--groups", "0", "--verify", "1", "-q",
                 "--set", "emulate.unlearn_damping=100"]) == 0
    text = capsys.readouterr().out
    assert "not moved back along the recorded training: the checkpoint the rewind lands on" in text
    assert "had itself lost class(es) 0" in text and "moved back to epoch" not in text
    assert "the step from the rewound checkpoint, which the guard replaced" in text
    assert "raised the damping" not in text
    assert "the rewound step 0%" in text  # class 0's test accuracy there, beside exact retraining's and the kept one's


def test_run_notes_a_growth_matching_that_took_most_of_the_synset_stage():
    """With many small groups the 16-image matching (distill.ipc_grow) can be most of `ddm run`, though neither the
    attribution nor `ddm unlearn`'s default reads the images: the summary says so, and how to skip it."""
    import types

    from ddm.cli.main import _growth_note
    from ddm.config import RunConfig

    dm = types.SimpleNamespace(config=RunConfig())
    slow = {"seconds": 210.3, "step_gradients": "groups",
            "grown": {"from": 4, "to": 16, "kept": 16, "errors": [0.07, 0.02], "seconds": 110.0}}
    note = _growth_note(dm, slow)
    assert note is not None and "took 110 s of the stage's 210 s" in note
    assert f"--set distill.ipc_grow={dm.config.distill.ipc}" in note and "--method step" in note
    assert _growth_note(dm, {**slow, "grown": {**slow["grown"], "seconds": 30.0}}) is None  # short
    assert _growth_note(dm, {**slow, "seconds": 3000.0}) is None  # not most of the stage
    assert _growth_note(dm, {**slow, "step_gradients": "synsets"}) is None  # the attribution reads the images
    assert _growth_note(dm, {**slow, "grown": None}) is None and _growth_note(dm, None) is None
    assert _growth_note(dm, {**slow, "grown": {k: v for k, v in slow["grown"].items() if k != "seconds"}}) is None


def test_an_attribution_no_removal_moves_is_said_instead_of_a_ranking_of_zeros(capsys):
    from ddm.cli.main import _print_attribution

    group = {"group": 7, "label": 0, "size": 17, "score": 0.0, "members": [1, 2], "flagged": False, "classes": 1}
    r = {"objective": "recall", "hierarchical": False, "perturbations": 2000, "emulation": "newton", "seconds": 0.1,
         "score_meaning": "drop of the metric", "targets": [{"target": None, "top": [group], "unmoved": True}]}
    _print_attribution(r)
    out = capsys.readouterr().out
    assert "no group moves it" in out and "all 2000 emulated removals" in out and "group    7" not in out
    r["targets"][0]["unmoved"] = False
    _print_attribution(r)
    assert "no group moves it" not in (out := capsys.readouterr().out) and "group    7" in out
