"""The bad-input suite: every failure a user can cause ends in one line ``ddm: error: ...`` and exit code 2.

Each case is (command, expected exit code, words the message must contain). ``{W}`` is a finished tiny
workspace (shared, never modified by a case), ``{T}`` a fresh temporary folder, ``{F}`` a plain file.
"""

import json
import shutil

import pytest
import torch

from ddm.cli.main import main

TINY = ["--preset", "tiny"]


def _run(tmp, *extra):
    return ["run", "-w", "{T}/ws", *TINY, "-q", *extra]


CASES = [
    # configuration values
    (_run(None, "--set", "train.epochs=zero"), 2, "expected a value of type int"),
    (_run(None, "--set", "train.lr=inf"), 2, "train.lr=inf is not a finite number"),
    (_run(None, "--set", "train.lr=nan"), 2, "not a finite number"),
    (_run(None, "--set", "train.lr=-1"), 2, "train.lr must be positive"),
    (_run(None, "--set", "train.batch_size=0"), 2, "train.batch_size must be positive"),
    (_run(None, "--set", "train.save_every=0"), 2, "train.save_every"),
    (_run(None, "--set", "train.momentum=1"), 2, "train.momentum"),
    (_run(None, "--set", "data.seed=-1"), 2, "data.seed=-1: seeds must lie in 0..4294967295"),
    (_run(None, "--set", "cluster.seed=-1"), 2, "cluster.seed=-1"),
    (_run(None, "--set", "train.seed=4294967296"), 2, "train.seed"),
    (_run(None, "--set", "train.optimizer=rmsprop"), 2, "train.optimizer"),
    (_run(None, "--set", "train.weight_decay=-1"), 2, "weight_decay"),
    (_run(None, "--set", "model.width=0"), 2, "model.width"),
    (_run(None, "--set", "model.norm=weightnorm"), 2, "model.norm"),
    (_run(None, "--set", "data.test_size=5"), 2, "data.test_size = 5 is smaller than the number of classes"),
    (_run(None, "--set", "model.name=vgg"), 2, "vgg"),
    (_run(None, "--set", "data.train_size=-5"), 2, "data.train_size"),
    (_run(None, "--set", "data.test_size=0"), 2, "data.test_size"),
    (_run(None, "--set", "cluster.method=random"), 2, "cluster.method"),
    (_run(None, "--set", "cluster.per_class=0"), 2, "cluster.per_class"),
    (_run(None, "--set", "distill.matching=nope"), 2, "distill.matching"),
    (_run(None, "--set", "distill.labels=free"), 2, "distill.labels=hard"),
    (_run(None, "--set", "distill.ipc=1000"), 2, "more than 64"),
    (_run(None, "--set", "distill.ipc=0"), 2, "distill.ipc"),
    (_run(None, "--set", "distill.iterations=-1"), 2, "distill.iterations"),
    (_run(None, "--set", "distill.lr_img=0"), 2, "distill.lr_img"),
    (_run(None, "--set", "distill.damping=0"), 2, "distill.damping"),
    (_run(None, "--set", "distill.damping=inf"), 2, "finite"),
    (_run(None, "--set", "distill.batch_real=0"), 2, "distill.batch_real"),
    (_run(None, "--set", "distill.step=0"), 2, "distill.step"),
    (_run(None, "--set", "distill.init=zeros"), 2, "distill.init"),
    (_run(None, "--set", "distill.optimizer=lbfgs"), 2, "distill.optimizer"),
    (_run(None, "--set", "distill.distance=l1"), 2, "distill.distance"),
    (_run(None, "--set", "distill.augment=warp"), 2, "warp"),
    (_run(None, "--set", "emulate.keep_prob=1.5"), 2, "emulate.keep_prob"),
    (_run(None, "--set", "emulate.num_perturbations=0"), 2, "emulate.num_perturbations"),
    (_run(None, "--set", "emulate.finetune_lr=inf"), 2, "finite"),
    (_run(None, "--set", "emulate.finetune_steps=-1"), 2, "emulate.finetune_steps"),
    (_run(None, "--set", "emulate.chunk_size=0"), 2, "emulate.chunk_size"),
    (_run(None, "--set", "emulate.ridge=-1"), 2, "emulate.ridge"),
    (_run(None, "--set", "emulate.top_classes=0"), 2, "emulate.top_classes"),
    (_run(None, "--set", "emulate.group_reduction=max"), 2, "emulate.group_reduction"),
    (_run(None, "--set", "emulate.weighting=random"), 2, "emulate.weighting"),
    (_run(None, "--set", "emulate.backend=gpu"), 2, "emulate.backend"),
    (_run(None, "--set", "emulate.method=exact"), 2, "emulate.method"),
    (_run(None, "--set", "hierarchical=maybe"), 2, "bool"),
    (_run(None, "--set", "nosuch.field=1"), 2, "unknown config section"),
    (_run(None, "--set", "train.nosuch=1"), 2, "unknown config field"),
    (_run(None, "--set", "train.epochs"), 2, "stage.field=value"),
    (_run(None, "--recipe", "nope"), 2, "unknown recipe"),
    (["run", "-w", "{T}/ws", "--preset", "nope"], 2, "nope"),
    (["run", "-w", "{T}/ws", "--config", "{T}/missing.json"], 2, "missing.json"),
    (["run", "-w", "{T}/ws", "--config", "{T}/bad.json"], 2, "not valid JSON"),
    (["run", "-w", "{T}/ws", "--config", "{T}/wrongtype.json"], 2, "train"),
    (["run", "-w", "{T}/ws", "--config", "{T}/good.json", "--preset", "tiny"], 2, "give one of them"),
    # data
    (_run(None, "--dataset", "imagenet"), 2, "imagenet"),
    (_run(None, "--dataset", "fashion-mnist", "--data-dir", "{T}/nodata"), 2, "not found"),
    (_run(None, "--dataset", "mnist", "--data-dir", "{T}/nodata"), 2, "nodata"),
    (_run(None, "--dataset", "cifar10", "--data-dir", "{T}/nodata"), 2, "nodata"),
    (_run(None, "--dataset", "mnist"), 2, "no --data-dir given"),
    # workspaces
    (["run", "-w", "{F}", *TINY], 2, "is a file"),
    (["info", "-w", "{F}"], 2, "is a file"),
    (["info", "-w", "{T}/missing"], 2, "does not exist"),
    (["attribute", "-w", "{T}/missing"], 2, "ddm run"),
    (["unlearn", "-w", "{T}/missing", "--groups", "0"], 2, "ddm run"),
    (["diagnose", "-w", "{T}/missing"], 2, "ddm run"),
    # targets, groups and names
    (["attribute", "-w", "{W}", "--targets", "5:2"], 2, "empty range"),
    (["attribute", "-w", "{W}", "--targets", "0:99999"], 2, "must lie in"),
    (["attribute", "-w", "{W}", "--targets", "abc"], 2, "START:STOP"),
    (["attribute", "-w", "{W}", "--targets", "-1"], 2, "must lie in"),
    (["attribute", "-w", "{W}", "--targets", "0:2", "--objective", "nope"], 2, "nope"),
    (["attribute", "-w", "{W}", "--targets", "0:2", "--name", "../escape"], 2, "leave the workspace"),
    (["attribute", "-w", "{W}", "--targets", "0:2", "--name", "/tmp/abs"], 2, "leave the workspace"),
    (["attribute", "-w", "{W}", "--targets", "0:2", "--set", "train.lr=1"], 2, "only takes emulate"),
    (["attribute", "-w", "{W}", "--targets", "0:2", "--set", "emulate.finetune_lr=inf"], 2, "finite"),
    (["attribute", "-w", "{W}", "--targets", "0:2", "--set", "emulate.num_perturbations=3"], 2, "below the number"),
    (["unlearn", "-w", "{W}", "--groups", "999"], 2, "must lie in"),
    (["unlearn", "-w", "{W}", "--groups", ""], 2, "names no index"),
    (["unlearn", "-w", "{W}", "--groups", "0", "--name", "../../x"], 2, "leave the workspace"),
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    ws = tmp_path_factory.mktemp("finished") / "ws"
    assert main(["run", "-w", str(ws), *TINY, "-q", "--json"]) == 0
    return ws


@pytest.fixture()
def paths(tmp_path, finished):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "wrongtype.json").write_text(json.dumps({"train": 5}))
    (tmp_path / "good.json").write_text(json.dumps({}))
    (tmp_path / "file").write_text("x")
    return {"W": str(finished), "T": str(tmp_path), "F": str(tmp_path / "file")}


def test_the_suite_is_large_enough():
    assert len(CASES) >= 60


@pytest.mark.parametrize("argv,code,words", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_gets_one_clear_line(argv, code, words, paths, capsys):
    argv = [a.format(**paths) for a in argv]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("ddm: error:") and words.format(**paths) in err, err


def _copy(finished, tmp_path):
    ws = tmp_path / "copy"
    shutil.copytree(finished, ws)
    return ws


@pytest.mark.parametrize("damage,words", [
    (lambda ws: (ws / "synset" / "synset.safetensors").write_bytes(b"\x00garbage"), "synset.safetensors"),
    (lambda ws: (ws / "synset" / "synset.safetensors").write_bytes(
        (ws / "synset" / "synset.safetensors").read_bytes()[:100]), "damaged"),
    (lambda ws: (ws / "config.json").write_text("{oops"), "config.json"),
    (lambda ws: (ws / "train" / "stage.json").write_text("[1,"), "stage.json"),
])
def test_damaged_artifacts_are_named(finished, tmp_path, capsys, damage, words):
    ws = _copy(finished, tmp_path)
    damage(ws)
    assert main(["attribute", "-w", str(ws), "--targets", "0:2"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and words in err, err


def test_symlinks_inside_a_workspace_are_refused(finished, tmp_path, capsys):
    ws = _copy(finished, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (ws / "attributions").mkdir(exist_ok=True)
    (ws / "attributions" / "linked").symlink_to(outside)
    assert main(["attribute", "-w", str(ws), "--targets", "0:2", "--name", "linked"]) == 2
    assert "symbolic link" in capsys.readouterr().err
    assert not list(outside.iterdir())


def test_a_rejected_run_leaves_the_workspace_as_it_was(finished, tmp_path, capsys):
    ws = _copy(finished, tmp_path)
    before = (ws / "config.json").read_text()
    assert main(["run", "-w", str(ws), *TINY, "-q", "--set", "train.epochs=5"]) == 2
    assert "another configuration" in capsys.readouterr().err
    assert (ws / "config.json").read_text() == before  # not rewritten with the rejected settings
    assert main(["run", "-w", str(ws), *TINY, "-q"]) == 0  # a plain rerun still works


def test_training_that_diverges_is_an_error_not_a_nan(tmp_path, capsys):
    assert main(["run", "-w", str(tmp_path / "ws"), *TINY, "-q", "--set", "train.lr=1e6"]) == 2
    assert "diverged" in capsys.readouterr().err


def test_a_nan_objective_or_nan_weights_are_errors_and_save_nothing(finished, tmp_path, capsys):
    import ddm
    from ddm.exceptions import NumericalError
    from ddm.objectives.custom import CallableObjective
    from ddm.workspace import load_tensors, save_tensors

    ws = _copy(finished, tmp_path)
    dm = ddm.DistilledDatamodel(ws).load()
    data = ddm.data.load(dm.config.data)
    with pytest.raises(NumericalError, match="not finite"):
        dm.attribute(data.test[:3], CallableObjective(lambda logits, labels: logits.sum(-1) * float("nan"),
                                                      name="nanobj"), name="nanobj")
    assert not (ws / "attributions" / "nanobj").exists()
    assert main(["attribute", "-w", str(ws), "--targets", "0:2", "--name", "good"]) == 0
    good = load_tensors(ws / "attributions" / "good" / "attribution.safetensors")
    trajectory = ws / "train" / "trajectory"
    last = sorted(trajectory.glob("theta_*.safetensors"))[-1]
    weights = load_tensors(last)
    save_tensors(last, {k: v * float("nan") for k, v in weights.items()})
    capsys.readouterr()
    assert main(["attribute", "-w", str(ws), "--targets", "0:2", "--name", "good", "--top-k", "2"]) == 2
    assert "non-finite" in capsys.readouterr().err
    kept = load_tensors(ws / "attributions" / "good" / "attribution.safetensors")
    assert all(torch.equal(kept[k], good[k]) for k in good)  # the good attribution was not overwritten
