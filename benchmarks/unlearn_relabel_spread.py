"""How much relabelled fine-tuning's own data order moves its result, and whether averaging weights removes it.

``ddm unlearn``'s default trains one epoch from theta_tau (``ddm.baselines.unlearners.train_relabelled``) in the data
order of ``train.seed``. Each 4-group draw of the matrix's runs (``matrix.unlearning_draws``; stages and retrains
reused, nothing retrained) is unlearned in 5 data orders (the target's seed, then 1001-1004); reported against the
mean of exact retraining's cached orders: the first order alone (what ``ddm unlearn`` gives), the spread (standard
deviation) over the 5, and the weight average ("soup") of the first 3 and of all 5, a cheap way to remove that spread.
``--epochs`` and ``--lr-scale`` change the epoch (e.g. 2 epochs at half the rate). An exploration on the selection
seed (3), used for no default:

    python benchmarks/unlearn_relabel_spread.py --seeds 3 \\
        --configs digits-convnet-K100-sgd,digits-mlp-K40-sgd,fmnist-mlp-K40-adam,fmnist-mlp-K40-sgd \\
        --out benchmarks/results/unlearn-relabel-spread-select
    (the same with --epochs 2 --lr-scale 0.5 --out benchmarks/results/unlearn-relabel-spread-select-2ep-half)
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddm import progress
from ddm.baselines.unlearners import relabelled_split, train_relabelled
from ddm.unlearning import forget_classes

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402
from _results import write_report  # noqa: E402

ORDERS = 5
READINGS = ("first order", "soup of 3", "soup of 5")


def soup(models: list[torch.nn.Module]) -> torch.nn.Module:
    """The models' floating-point weights averaged (integer buffers from the first)."""
    out = copy.deepcopy(models[0])
    states = [m.state_dict() for m in models]
    out.load_state_dict({k: (sum(s[k] for s in states) / len(states) if v.is_floating_point() else v)
                         for k, v in states[0].items()})
    return out


def run(name: str, seed: int, root: Path, epochs: float = 1.0, lr_scale: float = 1.0) -> list[dict[str, Any]]:
    cfg, data, _, dm, cache = M.open_run(root, name, seed)
    fit = dm.fitted()
    y = data.test.y
    rows = []
    for kind, rem in M.unlearning_draws(dm, int(data.num_classes)):
        if kind != "4 groups":
            continue
        exact = [cache.get(rem)] + [cache.get(rem, seed=s) for s in M.other_orders(seed) if cache.has(rem, seed=s)]
        ref = float(np.mean([float((e.argmax(1) == y).float().mean()) for e in exact]))
        keep = ~torch.isin(fit.groups.assignment, torch.as_tensor(rem))
        gone = sorted(set(range(int(data.num_classes))) - set(data.train.y[keep].tolist()))
        split, _ = relabelled_split(data.train, keep)
        models = [train_relabelled(fit.model, fit.trajectory.final, split,
                                   replace(cfg.train, lr=cfg.train.lr * lr_scale,
                                           seed=cfg.train.seed if i == 0 else 1000 + i), epochs)
                  for i in range(ORDERS)]

        def gap(m: torch.nn.Module, gone: list[int] = gone, ref: float = ref) -> float:
            if gone:
                forget_classes(m, gone)
            m.eval()
            with torch.no_grad():
                return 100 * (float((m(data.test.x).argmax(1) == y).float().mean()) - ref)

        singles = [gap(m) for m in models]
        row = {"config": name, "seed": seed, "groups": rem, "exact_orders": len(exact), "singles": singles,
               "spread": float(np.std(singles)), "first order": singles[0], "soup of 3": gap(soup(models[:3])),
               "soup of 5": gap(soup(models))}
        rows.append(row)
        print(name, seed, rem, {k: round(row[k], 1) for k in ("spread", *READINGS)}, flush=True)
    return rows


def report(rows: list[dict[str, Any]], command: str) -> str:
    lines = [f"# Relabelled fine-tuning: its own data order's spread, and weight averages\n\n`{command}`\n",
             f"{len(rows)} draws of 4 groups; gap = test accuracy minus the mean of exact retraining's cached orders "
             f"(points). Spread: standard deviation over {ORDERS} data orders of the epoch, mean over draws "
             f"{np.mean([r['spread'] for r in rows]):.2f}, largest {max(r['spread'] for r in rows):.2f}; range "
             f"within a draw up to {max(max(r['singles']) - min(r['singles']) for r in rows):.1f}.\n",
             "| reading | within 3 | mean abs gap | mean gap |", "|---|---|---|---|"]
    for k in READINGS:
        g = np.array([r[k] for r in rows])
        lines.append(f"| {k} | {int((np.abs(g) <= 3).sum())} of {len(g)} | {np.abs(g).mean():.2f} | {g.mean():+.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default="runs/matrix-b")
    ap.add_argument("--configs", required=True)
    ap.add_argument("--seeds", default="3")
    ap.add_argument("--epochs", type=float, default=1.0, help="epochs of the relabelled fine-tuning (default 1)")
    ap.add_argument("--lr-scale", type=float, default=1.0, help="its learning rate as a multiple of train.lr")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(2)
    progress.set_enabled(False)
    rows = [r for name in args.configs.split(",") for s in args.seeds.split(",")
            for r in run(name, int(s), Path(args.root), args.epochs, args.lr_scale)]
    write_report(args.out, report(rows, "python benchmarks/unlearn_relabel_spread.py " + " ".join(sys.argv[1:])), rows)


if __name__ == "__main__":
    main()
