"""The relabelled epoch replayed from one epoch before theta_tau, read beside the stored unlearnings' exact retrains.

Why. ``ddm unlearn``'s relabelled epoch (the default) runs one more epoch of the training's optimizer from theta_tau
over the kept samples. On a model still learning when its training stopped that epoch trains it further than a
retrain without the groups, which stops where the training did: wide seed 5 #8, a batch-normalised ResNet at 81 %,
ended 16.2 points above exact retraining, and 14 of the 17 removals on the random draws where the epoch raised the
kept samples' accuracy by more than 5 points (``ddm.unlearning.RELABEL_FIT_RISE``) ended more than 3 points above.
A *replay* runs the same relabelled epoch from the checkpoint one epoch before theta_tau instead: the result has seen
as many epochs as the training and the retrain, the last one without the removed groups.

This script trains no model from scratch and retrains nothing: it reads every stored ``ddm unlearn --verify N``
document under the given roots whose method was the relabelled epoch (the random draws' ``NN.unlearn.json`` and the
loose-fit benchmarks' ``NN.<removal>-relabel.json``), runs the replay in that workspace (seconds), and scores it
against the document's exact retrains (their mean test accuracy, as ``--verify`` does), beside the epoch's and the
synsets' step's stored gaps. Each replay is kept as ``NN.<name>-replay.json`` so that a rerun resumes.

    python benchmarks/unlearn_replay.py runs/wide3 runs/wide4 runs/wide5 runs/loose runs/loose1 runs/loose2 \\
        --out benchmarks/results/unlearn-replay

Those workspaces are the selection: the replay was first read there (after 0.32). Where the 0.31 loose-fit rule is
silent (the removals the epoch runs on), the epoch was within 3 points on 41 of 53 and the replay on 43 (mean |gap|
2.39 and 1.94 points); on the 5 of them where the epoch raised the kept samples' accuracy by more than 5 points, 2
and 3 (5.49 and 2.43; wide seed 5 #8: +16.2 and +2.9).

**The rule, written before its test ran:** where the relabelled epoch raises the kept training samples' accuracy by
more than ``RELABEL_FIT_RISE`` (5 points), ``ddm unlearn`` replays it from the checkpoint one epoch before theta_tau
and keeps the replay. It passes if, on the fresh draw below, over the removals where it fires, the replay is within 3
points of exact retraining (the mean of 3 data orders) on at least as many as the epoch and its mean absolute gap is
lower. If it fires on fewer than 5 removals of the first 12 draws, 12 more (``--draw`` seed + 1) are added before
the result is read. Where it does not fire it changes nothing. The replay on every removal (not only where the epoch
raised the kept accuracy) is reported beside it and decides nothing: the scorecard's matrix, where the default
unlearns at retraining's own rate, is not among these workspaces.

The fresh draw (``--draw SEED``: ``random.Random(SEED)``, written to ``<root>/draws.json`` before anything runs),
configurations likely to stop while still learning and to fit their training data better than the loose-fit rule's
0.5 of a uniform guess's cross-entropy: digits (all 1,437 training images) or Fashion-MNIST (2,000 or 4,000 / 1,000);
a ConvNet (2 in 4; width 16 or 32; batch, group or instance norm), a ResNet (1 in 4; width 8 or 16, depth 1 or 2;
batch or group norm) or an MLP (1 in 4; width 64-256, 1-2 hidden layers); Adam at 3e-4 to 3e-3 (log-uniform) or SGD
with momentum 0.9 at 0.003-0.03; 2-5 epochs, a constant or cosine schedule, batch 64, 128 or 256; k-means with 3-6
groups per class. Each is run with ``ddm run --calibrate never``; those whose fit ratio is below 0.5 are unlearned
twice (4 random groups, and half of one random class's groups: ``unlearn_loose.removals``), each with ``ddm unlearn
--method relabel --verify 3`` and ``--method step --verify 3`` (``unlearn_loose.run``), then replayed here:

    python benchmarks/unlearn_replay.py --draw 0 -n 12 --root runs/replay0 --out benchmarks/results/unlearn-replay-test

**A second test, written after 0.33 made the replay the default on the first one, where it fired once** (committed
before this draw ran). ``--space steps`` draws models stopped after few optimizer steps, where the first space's mostly
reached a plateau: digits (2 in 3; all 1,437 images) or Fashion-MNIST (2,000 / 1,000); a ResNet (width 8 or 16, depth 1
or 2; batch or group norm), a ConvNet (width 16 or 32; batch, instance or group norm) or an MLP (width 64-256, 1-2
hidden layers), a third each; Adam at 5e-4 to 5e-3 or SGD with momentum 0.9 at 0.005-0.05 (log-uniform); 2-4 epochs
at batch 256, a constant rate; k-means with 10-20 groups per class, so that 4 random groups rarely thin a class.
Every model that learned is unlearned (the same two removals, both unlearners, 3 retrains), and since ``ddm unlearn
--method relabel`` replays by itself now, the epoch from theta_tau is run here in-process (``NN.<name>-epoch.json``)
and scored on the same retrains. **The replay stays if, over the removals where 0.33 replays** (its loose-fit rule,
``--rule-fit 0.3``, silent and the epoch raising the kept accuracy by more than 5 points), **it is within 3 points on
at least as many as the epoch, with a lower mean |gap|; if it fires on fewer than 5 of 16 draws' removals the test is
inconclusive and the replay stays, marked so; if it fails, 0.32's warning comes back in its place.**

    python benchmarks/unlearn_replay.py --space steps --draw 2 -n 16 --root runs/replay2 --rule-fit 0.3 \\
        --out benchmarks/results/unlearn-replay-test2

It passed (the replay within 3 points on 2 of the 5 removals where it fired, mean |gap| 6.27; the epoch on 1, 13.55),
but the synsets' step did better on the same five: 4 of 5 (3.30). Over the three readings above, on the 11 removals
where 0.33 replays, the epoch was within 3 points on 4, the replay on 6, the step on 7 of the 9 where it was scored.

**A third test, of the step in the replay's place, written after seeing that and committed before its draw ran.**
The candidate rule (0.34 if it passes): where the relabelled epoch raises the kept training samples' accuracy by more
than ``RELABEL_FIT_RISE`` and the loose-fit rule (``STEP_FIT`` 0.3) is silent, ``ddm unlearn`` takes the synsets'
step instead of the replay. The draw is the second test's space with a fresh seed and twice the configurations
(``--space steps --draw 3 -n 32``), each run, unlearned and scored exactly as in the second test. **The step takes
the replay's place if, over the removals where 0.33 replays, it is within 3 points of exact retraining (the mean of 3
data orders) on at least as many as the replay, with a lower mean |gap|; if the replay fires on fewer than 5
removals the test is inconclusive and the replay stays.** The epoch, the step and the replay on every other removal
are reported beside it and decide nothing.

    python benchmarks/unlearn_replay.py --space steps --draw 3 -n 32 --root runs/replay3 --rule-fit 0.3 \\
        --out benchmarks/results/unlearn-replay-test3

It passed: where 0.33 replays (10 removals) the step was within 3 points on 5 (mean |gap| 5.27), the replay on 2
(10.80), the epoch on 2 (6.09); the step takes those removals since 0.34.

**A fourth test, of the replay on every removal 0.34's rules leave to the epoch**, written with
``benchmarks/unlearn_replay_matrix.py`` (whose docstring holds the rule and its other half, on the matrix) and
committed before either ran: over the removals of a fresh draw of the same space where 0.34's rules are silent (the
report's "loose-fit rule silent, the others"), the replay within 3 points on at least as many as the epoch, with a
lower mean |gap|:

    python benchmarks/unlearn_replay.py --space steps --draw 4 -n 24 --root runs/replay4 --rule-fit 0.3 \\
        --out benchmarks/results/unlearn-replay-test4

It failed: the replay within 3 points on 6 of those 13 removals against the epoch's 4, but with a higher mean |gap|
(4.79 against 4.06); the matrix half passed (75 of 79 each, 1.09 against 1.13). The epoch stays.

**A fifth test, of the step on every removal from a model still improving when its training stopped**, written after
the fourth and committed before its draw ran. The candidate rule: where ``health.training_progress`` finds the model
still improving (its test accuracy up by more than ``health.STILL_IMPROVING`` over the last quarter of its training,
what ``ddm run`` warns of), ``ddm unlearn`` takes the synsets' step for every removal; elsewhere 0.34's rules as they
are. Read before it on draws already seen (the report's split by ``ddm run``'s flag): on such models' removals the
step was within 3 points on 16 of 19, 3 of 7, 17 of 32 and 12 of 33 (the stored unlearnings, the second, third and
fourth draws) where 0.34's defaults were on 17, 3, 12 and 10. **It passes if, on a fresh draw of the same space
(``--draw 5 -n 24``), over the removals from models ``ddm run`` finds still improving, the step is within 3 points on
at least as many as 0.34's defaults, with a lower mean |gap|, and if on the matrix's report runs (the fourth test's
``runs/replay-matrix``, seeds 0-2) the flag is raised on none** (where it is, the rule waits for the step's reading
there: those workspaces hold no synsets). Fewer than 8 such removals: inconclusive.

    python benchmarks/unlearn_replay.py --space steps --draw 5 -n 24 --root runs/replay5 --rule-fit 0.3 \\
        --out benchmarks/results/unlearn-replay-test5
    python benchmarks/unlearn_replay_matrix.py --progress --out benchmarks/results/unlearn-replay-matrix-progress

The flag was raised on one of the 27 (digits-convnet-K100-sgd, seed 1: 92.2 % at epoch 15, 97.5 % at 20), so the
step's reading there decides the matrix half, written down before it ran: over that run's removals the step within
3 points of exact retraining (5 for its class removals) on at least as many as the epoch (the fourth test's
``unlearn-replay-matrix`` rows). (0.27's step, in ``unlearn-steplabel-matrix.json``, was within 3 points on its three
4-group draws there, as was the epoch of that time; seen before this was written.)

    python benchmarks/unlearn_replay_matrix.py --step --configs digits-convnet-K100-sgd --seeds 1 \\
        --out benchmarks/results/unlearn-replay-matrix-step

The matrix half passed (the step within 3 points on that run's three draws, as the epoch; within 5 on its two class
removals). The fresh draw failed: over the 24 removals from still-improving models the step was within 3 points on 12,
0.34's defaults on 11, but the step's mean |gap| was higher (3.87 against 3.66). Nothing changed.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_report  # noqa: E402
from unlearn_loose import kept_shares, thins  # noqa: E402

from ddm.workspace import atomic_write_text  # noqa: E402

STILL_FIT = 0.5  # the draw's models are unlearned where their fit ratio is below this (ddm.health.LOOSE_FIT)
RISE = 0.05  # ddm.unlearning.RELABEL_FIT_RISE when this ran


def _optimizer(rng: random.Random, adam: tuple[float, float], sgd: tuple[float, float]) -> dict[str, Any]:
    """Adam (1 in 2) or SGD with momentum 0.9, at a rate log-uniform in its range."""
    if rng.random() < 0.5:
        return {"train.optimizer": "adam", "train.lr": round(math.exp(rng.uniform(*map(math.log, adam))), 6)}
    return {"train.optimizer": "sgd", "train.momentum": 0.9,
            "train.lr": round(math.exp(rng.uniform(*map(math.log, sgd))), 5)}


def draw(rng: random.Random) -> dict[str, Any]:
    """One configuration likely to stop while still learning (the module's docstring)."""
    dataset = rng.choice(["digits", "fashion-mnist"])
    s: dict[str, Any] = {}
    if dataset == "fashion-mnist":
        s |= {"data.train_size": rng.choice([2000, 4000]), "data.test_size": 1000}
    model = rng.choices(["convnet", "resnet", "mlp"], weights=[2, 1, 1])[0]
    if model == "convnet":
        s |= {"model.name": "convnet", "model.width": rng.choice([16, 32]),
              "model.norm": rng.choice(["batchnorm", "groupnorm", "instancenorm"])}
    elif model == "resnet":
        s |= {"model.name": "resnet", "model.width": rng.choice([8, 16]), "model.depth": rng.choice([1, 2]),
              "model.norm": rng.choice(["batchnorm", "groupnorm"])}
    else:
        s |= {"model.name": "mlp", "model.width": rng.choice([64, 128, 256]), "model.depth": rng.choice([1, 2])}
    s |= _optimizer(rng, (3e-4, 3e-3), (0.003, 0.03))
    s |= {"train.schedule": rng.choice(["constant", "cosine"]), "train.epochs": rng.randint(2, 5),
          "train.batch_size": rng.choice([64, 128, 256]), "cluster.per_class": rng.randint(3, 6)}
    s |= {f"{k}.seed": rng.randrange(1000) for k in ("data", "model", "train", "cluster")}
    return {"dataset": dataset, "set": s}


def draw_steps(rng: random.Random) -> dict[str, Any]:
    """One configuration stopped after few optimizer steps (``--space steps``; the module's docstring)."""
    dataset = rng.choices(["digits", "fashion-mnist"], weights=[2, 1])[0]
    s: dict[str, Any] = {}
    if dataset == "fashion-mnist":
        s |= {"data.train_size": 2000, "data.test_size": 1000}
    model = rng.choice(["resnet", "convnet", "mlp"])
    if model == "resnet":
        s |= {"model.name": "resnet", "model.width": rng.choice([8, 16]), "model.depth": rng.choice([1, 2]),
              "model.norm": rng.choice(["batchnorm", "groupnorm"])}
    elif model == "convnet":
        s |= {"model.name": "convnet", "model.width": rng.choice([16, 32]),
              "model.norm": rng.choice(["batchnorm", "instancenorm", "groupnorm"])}
    else:
        s |= {"model.name": "mlp", "model.width": rng.choice([64, 128, 256]), "model.depth": rng.choice([1, 2])}
    s |= _optimizer(rng, (5e-4, 5e-3), (0.005, 0.05))
    s |= {"train.schedule": "constant", "train.epochs": rng.randint(2, 4), "train.batch_size": 256,
          "cluster.per_class": rng.randint(10, 20)}
    s |= {f"{k}.seed": rng.randrange(1000) for k in ("data", "model", "train", "cluster")}
    return {"dataset": dataset, "set": s}


def documents(roots: list[Path]) -> list[tuple[Path, str, dict[str, Any]]]:
    """(workspace, removal name, stored document) of every verified relabelled unlearning of groups under ``roots``."""
    found = []
    for root in roots:
        for f in sorted(root.glob("[0-9][0-9].*.json")):
            name = f.name.split(".", 1)[1][: -len(".json")]
            if name in ("run", "check", "unlearn-class") or name.endswith("-replay") or "-step" in name:
                continue
            doc = json.loads(f.read_text())
            out = doc.get("out") or {}
            if out.get("method") != "relabel" or out.get("synset") != "groups" or "verification" not in out:
                continue
            if "step" not in out["verification"] and name.endswith("-relabel"):  # unlearn_loose.run's own step
                step = root / f.name.replace("-relabel.json", "-step.json")
                if step.exists():
                    got = (json.loads(step.read_text()).get("out") or {}).get("verification")
                    if got:
                        out["verification"]["step"] = {"test_gap_points": got["test_gap_points"]}
            found.append((root / f.name.split(".", 1)[0], name, out))
    return found


def replay(ws: Path, groups: list[int], from_tau: bool = False) -> dict[str, Any]:
    """The relabelled epoch of ``ddm unlearn`` run from the checkpoint one epoch before theta_tau; its accuracies.
    ``from_tau``: the epoch itself, from theta_tau (what ``ddm unlearn`` ran before 0.33's replay)."""
    import torch

    from ddm.baselines.unlearners import relabelled_targets
    from ddm.cli.common import load_data
    from ddm.models import with_params
    from ddm.pipeline import DistilledDatamodel
    from ddm.train.loop import accuracy
    from ddm.unlearning import relabelled_epoch, replay_start

    dm = DistilledDatamodel(ws).load()
    data = load_data(dm.config.data, str(ws))
    assert dm.groups is not None and dm.model is not None and dm.trajectory is not None
    grp, traj = dm.groups, dm.trajectory
    idx = torch.tensor(groups)
    keep = ~torch.isin(grp.assignment, idx)
    start, start_epoch, epochs = replay_start(traj)  # ddm unlearn's own start (since 0.33)
    if from_tau:
        start, start_epoch, epochs = traj.checkpoint(len(traj) - 1), traj.epochs[-1], 1.0
    r = relabelled_targets(data.train, keep, int(data.train.y.max()) + 1)
    removed_classes, kept_classes = grp.classes_left(idx)
    model = relabelled_epoch(dm.model, start, r, dm.config.train, sorted(removed_classes - kept_classes), epochs)
    kept = data.train[torch.nonzero(keep).flatten()]
    rows = torch.nonzero(~keep).flatten()
    return {"from_epoch": start_epoch, "test_accuracy": accuracy(model, data.test),
            "removed_accuracy": accuracy(model, data.train[rows]), "kept_accuracy": accuracy(model, kept),
            "theta_tau_kept": accuracy(with_params(dm.model, traj.final), kept)}


def cached(ws: Path, name: str, groups: list[int], from_tau: bool) -> dict[str, Any]:
    """:func:`replay` kept as ``NN.<name>-replay.json`` (``-epoch.json`` for the epoch from theta_tau)."""
    cache = ws.parent / f"{ws.name}.{name}-{'epoch' if from_tau else 'replay'}.json"
    if cache.exists():
        return dict(json.loads(cache.read_text()))
    got = replay(ws, groups, from_tau)
    atomic_write_text(cache, json.dumps(got, indent=1))
    return got


def measure(roots: list[Path], rule_fit: float = 0.5) -> list[dict[str, Any]]:
    rows = []
    for ws, name, out in documents(roots):
        v = out["verification"]
        got = cached(ws, name, out["groups"], False)
        exact = statistics.fmean(v["exact"]["test_accuracy"])
        epoch_gap = v["test_gap_points"]
        if "replayed_from_epoch" in out:  # ddm unlearn replayed by itself (0.33): the epoch from theta_tau run here
            epoch_gap = 100 * (cached(ws, name, out["groups"], True)["test_accuracy"] - exact)
        run = ws.parent / f"{ws.name}.run.json"
        model = json.loads(run.read_text())["out"]["model"] if run.exists() else {}
        fit = model.get("training_fit") or {}
        kf = out.get("kept_fit") or {}
        row = {"root": str(ws.parent), "ws": ws.name, "removal": name, "groups": out["groups"],
               "target": v["target"]["test_accuracy"], "exact": v["exact"]["test_accuracy"],
               "rise": (kf["after"] - kf["before"]) if kf else None,
               "epoch_gap": epoch_gap, "step_gap": (v.get("step") or {}).get("test_gap_points"),
               "replay_gap": 100 * (got["test_accuracy"] - exact), "replay": got,
               # the loose-fit rule (above rule_fit: 0.5 in 0.31, 0.3 since 0.33) takes the synsets' step here
               "rule_fires": (fit.get("ratio") or 0.0) > rule_fit and thins(kept_shares(ws, out["groups"])),
               # ddm run's still-improving warning on the model (health.training_progress; the fifth test's split)
               "still_improving": bool((model.get("progress") or {}).get("still_improving"))}
        # what 0.34's defaults keep: the step where the loose-fit rule fires or the kept accuracy rises, else the epoch
        row["default_gap"] = (row["step_gap"] if row["rule_fires"] or (row["rise"] or 0.0) > RISE
                              else row["epoch_gap"])
        step = "-" if row["step_gap"] is None else f"{row['step_gap']:+.1f}"
        print(f"{row['root']}/{row['ws']} {name}: rise {100 * (row['rise'] or 0):+.1f}, epoch "
              f"{row['epoch_gap']:+.1f}, step {step}, replay {row['replay_gap']:+.1f}", flush=True)
        rows.append(row)
    return rows


def _tally(rows: list[dict[str, Any]], key: str) -> str:
    gaps = [r[key] for r in rows if r[key] is not None]
    if not gaps:
        return "–"
    within = sum(abs(g) <= 3 for g in gaps)
    mean_abs, mean = statistics.fmean(map(abs, gaps)), statistics.fmean(gaps)
    return f"{within} of {len(gaps)} (mean |gap| {mean_abs:.2f}, mean {mean:+.2f})"


def render(rows: list[dict[str, Any]], out: str, command: str) -> None:
    lines = ["| workspace | removal | loose-fit rule | target test % | exact (mean) | kept acc. rise (epoch) | epoch | "
             "step | replay |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -(r["rise"] or 0)):
        step = "–" if r["step_gap"] is None else f"{r['step_gap']:+.1f}"
        rise = "–" if r["rise"] is None else f"{100 * r['rise']:+.1f}"
        rule = "fires" if r["rule_fires"] else "-"
        lines.append(f"| {r['root']}/{r['ws']} | {r['removal']} {r['groups']} | {rule} | {100 * r['target']:.1f} | "
                     f"{100 * statistics.fmean(r['exact']):.1f} | {rise} | {r['epoch_gap']:+.1f} | {step} | "
                     f"{r['replay_gap']:+.1f} |")
    silent = [r for r in rows if not r["rule_fires"]]
    rising = [r for r in silent if r["rise"] is not None and r["rise"] > RISE]
    summary = ["| removals | n | epoch within 3 points | step | replay |", "|---|---|---|---|---|"]
    for what, sel in ((f"**the rule's**: loose-fit rule silent, the epoch raised kept accuracy by more than "
                       f"{100 * RISE:g} points", rising),
                      ("loose-fit rule silent, the others", [r for r in silent if r not in rising]),
                      ("loose-fit rule silent, all", silent),
                      ("the loose-fit rule's (the step by default)", [r for r in rows if r["rule_fires"]]),
                      ("all", rows)):
        summary.append(f"| {what} | {len(sel)} | {_tally(sel, 'epoch_gap')} | {_tally(sel, 'step_gap')} | "
                       f"{_tally(sel, 'replay_gap')} |")
    split = ["| removals (the fifth test's split) | n | epoch | step | replay | 0.34's defaults |",
             "|---|---|---|---|---|---|"]
    for what, sel in (("**from models ddm run finds still improving**", [r for r in rows if r["still_improving"]]),
                      ("from the others", [r for r in rows if not r["still_improving"]])):
        split.append(f"| {what} | {len(sel)} | {_tally(sel, 'epoch_gap')} | {_tally(sel, 'step_gap')} | "
                     f"{_tally(sel, 'replay_gap')} | {_tally(sel, 'default_gap')} |")
    text = "\n".join(["# The relabelled epoch replayed from one epoch before theta_tau", "", f"    {command}", "",
                      *summary, "", *split, "", *lines, ""])
    write_report(out, text, {"rows": rows})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("roots", nargs="*", type=Path, help="workspaces' roots whose stored unlearnings to replay")
    ap.add_argument("--out", default="benchmarks/results/unlearn-replay")
    ap.add_argument("--draw", type=int, metavar="SEED", help="draw, run and unlearn fresh configurations first")
    ap.add_argument("-n", type=int, default=12, help="how many configurations --draw draws")
    ap.add_argument("--root", default="runs/replay", help="where --draw's workspaces go")
    ap.add_argument("--ddm", default=str(Path(sys.executable).parent / "ddm"))
    ap.add_argument("--space", choices=("plateau", "steps"), default="plateau",
                    help="--draw's configurations: the first test's (plateau) or the second's (steps)")
    ap.add_argument("--rule-fit", type=float, default=0.5,
                    help="the loose-fit rule's threshold the report splits by (0.5: 0.31's; 0.3: 0.33's)")
    a = ap.parse_args()
    roots = list(a.roots)
    if a.draw is not None:
        from unlearn_loose import draws, run

        root = Path(a.root)
        drawer, band = (draw, (0.0, STILL_FIT)) if a.space == "plateau" else (draw_steps, (0.0, math.inf))
        run(root, draws(root, a.n, a.draw, drawer), a.draw, a.ddm, band)
        roots.append(root)
    if not roots:
        ap.error("name workspaces' roots, or --draw SEED")
    render(measure(roots, a.rule_fit), a.out, "python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
