"""A model with dropout, trained in a user's own loop (a probe run as a user would; measured once, used for no choice).

The network is the user's own ``nn.Module`` (an MLP with dropout after each hidden layer), trained with AdamW and a
cosine schedule; the trajectory is handed in through ``ddm.TrajectoryRecorder`` and every exact retrain repeats the
user's loop (``ddm.evaluation.check.check(..., retrain=loop)``, ``verify_unlearning``), its data order and dropout
masks seeded so that retraining on all the data gives the target back bit for bit. Measured: the check (LDS and
other-class LDS of DDM, the trivial same-class score and last-layer influence) and three 4-group unlearnings against
exact retraining in two data orders.

    python benchmarks/probe_dropout.py --root runs/probe-dropout --out benchmarks/results/probe-dropout
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from _results import write_report
from torch import nn

import ddm
from ddm import progress
from ddm.evaluation.check import check, verify_unlearning
from ddm.train.loop import accuracy

DATASETS = {
    "fashion-mnist": ["data.name=fashion-mnist", "data.train_size=3000", "data.test_size=1000",
                      "cluster.per_class=4"],
    "digits": ["cluster.per_class=4"],
}
EPOCHS, BATCH, LR, DROPOUT = 20, 64, 2e-3, 0.3


class DropoutMLP(nn.Module):
    def __init__(self, inputs: int, classes: int, width: int = 256) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(inputs, width), nn.ReLU(), nn.Dropout(DROPOUT),
                                  nn.Linear(width, width), nn.ReLU(), nn.Dropout(DROPOUT))
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def loop(model: nn.Module, train: Any, seed: int | None = None, rec: Any = None) -> nn.Module:
    """The user's loop: AdamW (weight decay 0.01), a cosine schedule over every step, dropout 0.3; ``seed`` None is
    the target's data order and dropout masks, an int another."""
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    steps = EPOCHS * -(-len(train.y) // BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    if rec is not None:
        rec.attach(opt)
        rec.record(0)
    g = torch.Generator().manual_seed(0 if seed is None else 1000 + seed)
    torch.manual_seed(7 if seed is None else 2000 + seed)  # the dropout masks
    model.train()
    for epoch in range(1, EPOCHS + 1):
        perm = torch.randperm(len(train.y), generator=g)
        for i in range(0, len(perm), BATCH):
            b = perm[i:i + BATCH]
            loss = nn.functional.cross_entropy(model(train.x[b]), train.y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if rec is not None:
            rec.record(epoch)
    model.eval()
    return model


def run(name: str, root: Path) -> dict[str, Any]:
    cfg = ddm.presets.demo().with_overrides(DATASETS[name])
    data = ddm.data.load(cfg.data)
    torch.manual_seed(3)
    model = DropoutMLP(int(data.train.x[0].numel()), int(data.num_classes))
    rec = ddm.TrajectoryRecorder(model)
    loop(model, data.train, None, rec)
    dm = ddm.DistilledDatamodel(root / name, cfg)
    dm.fit(model, data.train, trajectory=rec.trajectory())
    out: dict[str, Any] = {"dataset": name, "test_accuracy": accuracy(dm.model, data.test)}
    r = check(dm, data, peers=("if-explicit",), retrain=loop)
    out["check"] = {k: r[k] for k in ("lds", "other_class_lds", "verdict") if k in r}
    g = torch.Generator().manual_seed(11)
    out["unlearning"] = []
    for _ in range(3):
        groups = sorted(torch.randperm(dm.groups.num_groups, generator=g)[:4].tolist())
        unlearned = dm.unlearn(groups, name="probe")
        v = verify_unlearning(dm, data, groups, unlearned, 2, retrain=loop)
        out["unlearning"].append({"groups": groups, "classes": [int(dm.groups.labels[k]) for k in groups],
                                  "exact": v["exact"]["test_accuracy"], "ddm": v["unlearned"]["test_accuracy"]})
    return out


def render(results: list[dict[str, Any]], argv: list[str]) -> str:
    lines = ["# A model with dropout in a user's own loop (a probe)", "",
             "`python benchmarks/probe_dropout.py " + " ".join(argv) + "`", ""]
    for r in results:
        lines += [f"## {r['dataset']} (test accuracy {100 * r['test_accuracy']:.1f}%)", "", "```",
                  *r["check"]["verdict"], "```", "", "| groups (classes) | exact, 2 data orders | DDM |",
                  "|---|---|---|"]
        lines += [f"| {u['groups']} ({u['classes']}) | " + ", ".join(f"{100 * a:.1f}" for a in u["exact"])
                  + f" | {100 * u['ddm']:.1f} |" for u in r["unlearning"]]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="runs/probe-dropout")
    p.add_argument("--out", default="benchmarks/results/probe-dropout")
    p.add_argument("--datasets", default=",".join(DATASETS))
    args = p.parse_args()
    progress.set_enabled(False)
    results = [run(n, Path(args.root)) for n in args.datasets.split(",") if n]
    write_report(args.out, render(results, sys.argv[1:]), results)


if __name__ == "__main__":
    main()
