"""A probe run as a user would: the demo ConvNet on digits trained with Adam, where exact retraining is fragile.

Found while trying optimizers the benchmarks never used in a user's own loop (RMSprop with a step schedule and
gradient clipping, then Adam): unlearning 4 of 40 groups took the model from 97% to 67-89% test accuracy, and so did
exact retraining without them. This script measures it with ddm's own loop, so exact retraining can follow: the demo
configuration's depth-3 ConvNet (the demo's until the depth rule this probe led to; pinned here) at K = 40
(``cluster.per_class=4``), 15 epochs in minibatches of 64, weight decay 1e-4, trained with
Adam (lr 1e-3) and, for contrast, with momentum SGD (0.9, lr 0.02); the matrix's three 4-group draws
(``matrix.unlearning_draws``), each unlearned as ``ddm unlearn`` does and verified against exact retraining in three
data orders (``ddm unlearn --verify 3``), with the unlearning's first step where its check redid it. Then the same
removals retrained (data order 0, no DDM) with the last block's instance norm off 2x2 maps: ``model.depth=2`` (the last
convolution at 4x4) and ``model.norm=groupnorm``, beside the depth-3 instance-norm ConvNet (``--architectures``).

    python benchmarks/probe_fragile_retrain.py --root runs/fragile --architectures --user-loop \
        --out benchmarks/results/probe-fragile-retrain
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

import ddm  # noqa: E402
from ddm import progress  # noqa: E402
from ddm.evaluation.check import verify_unlearning  # noqa: E402
from ddm.train.loop import accuracy  # noqa: E402
from ddm.workspace import atomic_write_text  # noqa: E402

BASE = ["model.depth=3", "cluster.per_class=4", "train.epochs=15", "train.batch_size=64", "train.weight_decay=1e-4"]
CONFIGS = {"adam": [*BASE, "train.optimizer=adam", "train.lr=1e-3"],
           "momentum": [*BASE, "train.optimizer=sgd", "train.momentum=0.9", "train.lr=0.02"]}


def run(name: str, root: Path) -> dict[str, Any]:
    data = ddm.data.load("digits")
    cfg = ddm.presets.demo(data).with_overrides(CONFIGS[name])
    dm = ddm.DistilledDatamodel(root / name, cfg)
    dm.fit(ddm.models.build(cfg.model, data), data.train)
    out: dict[str, Any] = {"config": name, "overrides": CONFIGS[name], "target": accuracy(dm.model, data.test),
                           "draws": []}
    for _, groups in [d for d in M.unlearning_draws(dm, int(data.num_classes)) if d[0] == "4 groups"]:
        model = dm.unlearn(groups, name="probe")
        check = dm.last_unlearning_check or {}
        v = verify_unlearning(dm, data, groups, model, 3, first_step=dm.last_unlearned_first)
        classes = sorted({int(dm.groups.labels[k]) for k in groups})
        out["draws"].append({"groups": groups, "classes": classes, "exact": v["exact"]["test_accuracy"],
                             "ddm": v["unlearned"]["test_accuracy"],
                             "first_step": (v.get("first_step") or {}).get("test_accuracy"),
                             "damping_raised": check.get("damping_raised", []),
                             "exact_agreement": v["unlearned"]["test_agreement"]})
    return out


ARCHITECTURES = {"depth 3, instance norm (the demo's)": [], "depth 2, instance norm": ["model.depth=2"],
                 "depth 3, GroupNorm": ["model.norm=groupnorm"]}


def architectures(root: Path) -> dict[str, Any]:
    """Test accuracy of exact retrains without each of the adam run's draws, for each of :data:`ARCHITECTURES`."""
    from ddm.train.loop import train_model

    data = ddm.data.load("digits")
    ref = ddm.DistilledDatamodel(root / "adam", ddm.presets.demo(data).with_overrides(CONFIGS["adam"]))
    ref.fit(ddm.models.build(ref.config.model, data), data.train)
    draws = [g for kind, g in M.unlearning_draws(ref, int(data.num_classes)) if kind == "4 groups"]
    out: dict[str, Any] = {"draws": draws, "by": {}}
    for name, extra in ARCHITECTURES.items():
        for opt in CONFIGS:
            cfg = ddm.presets.demo(data).with_overrides(CONFIGS[opt] + extra)
            accs = []
            for removed in ([], *draws):
                keep = torch.ones(len(data.train.y), dtype=torch.bool)
                for k in removed:
                    keep[ref.groups.members(k)] = False
                model = ddm.models.build(cfg.model, data)
                model.train()
                train_model(model, data.train[keep.nonzero().flatten()], cfg.train)
                model.eval()
                accs.append(accuracy(model, data.test))
            out["by"][f"{name}, {opt}"] = accs
    # the depth-3 Adam network without as many random samples as the first draw removes, and, without that draw,
    # its accuracy on the kept training samples of each class (does the retrain still fit them?)
    cfg = ddm.presets.demo(data).with_overrides(CONFIGS["adam"])
    n = sum(len(ref.groups.members(k)) for k in draws[0])
    gen = torch.Generator().manual_seed(1)
    out["random_removals"] = []
    for _ in range(3):
        keep = torch.ones(len(data.train.y), dtype=torch.bool)
        keep[torch.randperm(len(keep), generator=gen)[:n]] = False
        model = ddm.models.build(cfg.model, data)
        model.train()
        train_model(model, data.train[keep.nonzero().flatten()], cfg.train)
        model.eval()
        out["random_removals"].append(accuracy(model, data.test))
    keep = torch.ones(len(data.train.y), dtype=torch.bool)
    for k in draws[0]:
        keep[ref.groups.members(k)] = False
    kept = data.train[keep.nonzero().flatten()]
    model = ddm.models.build(cfg.model, data)
    model.train()
    train_model(model, kept, cfg.train)
    model.eval()
    with torch.no_grad():
        pred = model(kept.x).argmax(1)
    out["kept_train_accuracy_by_class"] = [(pred[kept.y == c] == c).float().mean().item()
                                           for c in range(int(data.num_classes))]
    out["random_removed_samples"] = n
    return out


def _rmsprop_loop(model: torch.nn.Module, train: Any, seed: int | None = None, rec: Any = None) -> torch.nn.Module:
    """The user's loop the probe started from: RMSprop (lr 1e-3, weight decay 1e-4), a step schedule (x0.5 every 5
    epochs), gradient clipping at norm 1, 15 epochs in minibatches of 64; ``seed`` None is the target's data order."""
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.StepLR(opt, 5, 0.5)
    if rec is not None:
        rec.attach(opt)
        rec.record(0)
    g = torch.Generator().manual_seed(0 if seed is None else 1000 + seed)
    model.train()
    for epoch in range(1, 16):
        perm = torch.randperm(len(train.y), generator=g)
        for i in range(0, len(perm), 64):
            b = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(model(train.x[b]), train.y[b])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        sched.step()
        if rec is not None:
            rec.record(epoch)
    return model


def user_loop(root: Path) -> list[dict[str, Any]]:
    """The user's RMSprop loop at depth 3 and 2: the trajectory handed in, two 4-group removals unlearned and
    verified against that loop's exact retrains in two data orders."""
    data = ddm.data.load("digits")
    out = []
    for depth in (3, 2):
        cfg = ddm.presets.demo(data).with_overrides({"cluster.per_class": 4, "model.depth": depth})
        model = ddm.models.build(cfg.model, data)
        rec = ddm.TrajectoryRecorder(model)
        _rmsprop_loop(model, data.train, None, rec)
        dm = ddm.DistilledDatamodel(root / f"rmsprop-depth{depth}", cfg)
        dm.fit(model, data.train, trajectory=rec.trajectory())
        for groups in ([0, 5, 9, 13], [1, 6, 22, 30]):
            unlearned = dm.unlearn(groups, name="probe")
            v = verify_unlearning(dm, data, groups, unlearned, 2, retrain=_rmsprop_loop)
            out.append({"depth": depth, "groups": groups, "target": accuracy(dm.model, data.test),
                        "exact": v["exact"]["test_accuracy"], "ddm": v["unlearned"]["test_accuracy"]})
    return out


def render(results: list[dict[str, Any]], argv: list[str], arch: dict[str, Any] | None = None,
           loop: list[dict[str, Any]] | None = None) -> str:
    lines = ["# The demo ConvNet trained with Adam: exact retraining is fragile (a probe)", "",
             "`python benchmarks/probe_fragile_retrain.py " + " ".join(argv) + "`", "",
             "| optimizer | target | groups (classes) | exact, 3 data orders | DDM | DDM's first step (before the "
             "back-off) |", "|---|---|---|---|---|---|"]
    for r in results:
        for d in r["draws"]:
            first = "–" if d["first_step"] is None else f"{100 * d['first_step']:.1f}"
            lines.append(f"| {r['config']} | {100 * r['target']:.1f} | {d['groups']} ({d['classes']}) | "
                         + ", ".join(f"{100 * a:.1f}" for a in d["exact"])
                         + f" | {100 * d['ddm']:.1f} | {first} |")
    if arch:
        lines += ["", "Exact retraining (data order 0) by architecture, test accuracy %: all data, then without each "
                  f"draw ({', '.join(map(str, arch['draws']))}):", "", "| architecture, optimizer | all data | "
                  "draw 1 | draw 2 | draw 3 |", "|---|---|---|---|---|"]
        lines += [f"| {k} | " + " | ".join(f"{100 * a:.1f}" for a in v) + " |" for k, v in arch["by"].items()]
        lines += ["", f"Depth 3, Adam, without {arch['random_removed_samples']} random samples (as many as draw 1 "
                  "removes), three draws: " + ", ".join(f"{100 * a:.1f}" for a in arch["random_removals"]) + "%.",
                  "Without draw 1, the exact retrain's accuracy on the kept training samples of each class: "
                  + ", ".join(f"{c}: {100 * a:.0f}%" for c, a in enumerate(arch["kept_train_accuracy_by_class"]))
                  + "."]
    if loop:
        lines += ["", "The user's loop (RMSprop, a step schedule, gradient clipping; the trajectory handed in, exact "
                  "retraining with that loop in two data orders), test accuracy %:", "",
                  "| depth | target | groups | exact, 2 data orders | DDM |", "|---|---|---|---|---|"]
        lines += [f"| {r['depth']} | {100 * r['target']:.1f} | {r['groups']} | "
                  + ", ".join(f"{100 * a:.1f}" for a in r["exact"]) + f" | {100 * r['ddm']:.1f} |" for r in loop]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="runs/fragile")
    p.add_argument("--out", default="benchmarks/results/probe-fragile-retrain")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--architectures", action="store_true", help="also retrain the draws with depth 2 and GroupNorm")
    p.add_argument("--user-loop", action="store_true", help="also the user's RMSprop loop at depth 3 and 2")
    args = p.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    results = [run(n, Path(args.root)) for n in args.configs.split(",") if n]
    arch = architectures(Path(args.root)) if args.architectures else None
    loop = user_loop(Path(args.root)) if args.user_loop else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps({"runs": results, "architectures": arch, "user_loop": loop},
                                                               indent=1))
    text = render(results, sys.argv[1:], arch, loop)
    atomic_write_text(out.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    main()
