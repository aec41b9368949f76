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

import copy
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddm.baselines.unlearners import relabelled_split, train_relabelled

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402
from _draws import Draw, four_group_draws, gap_row, over_runs, parser, test_gap  # noqa: E402

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
    rows = []
    for d in four_group_draws(dm, cache, data, seed):
        split, _ = relabelled_split(data.train, d.keep)
        models = [train_relabelled(fit.model, fit.trajectory.final, split,
                                   replace(cfg.train, lr=cfg.train.lr * lr_scale,
                                           seed=cfg.train.seed if i == 0 else 1000 + i), epochs)
                  for i in range(ORDERS)]

        def gap(m: torch.nn.Module, d: Draw = d) -> float:
            return test_gap(m, data.test, d.gone, d.reference)

        singles = [gap(m) for m in models]
        row = {"config": name, "seed": seed, "groups": d.groups, "exact_orders": len(d.exact), "singles": singles,
               "spread": float(np.std(singles)), "first order": singles[0], "soup of 3": gap(soup(models[:3])),
               "soup of 5": gap(soup(models))}
        rows.append(row)
        print(name, seed, d.groups, {k: round(row[k], 1) for k in ("spread", *READINGS)}, flush=True)
    return rows


def report(rows: list[dict[str, Any]], command: str) -> str:
    lines = [f"# Relabelled fine-tuning: its own data order's spread, and weight averages\n\n`{command}`\n",
             f"{len(rows)} draws of 4 groups; gap = test accuracy minus the mean of exact retraining's cached orders "
             f"(points). Spread: standard deviation over {ORDERS} data orders of the epoch, mean over draws "
             f"{np.mean([r['spread'] for r in rows]):.2f}, largest {max(r['spread'] for r in rows):.2f}; range "
             f"within a draw up to {max(max(r['singles']) - min(r['singles']) for r in rows):.1f}.\n",
             "| reading | within 3 | mean abs gap | mean gap |", "|---|---|---|---|"]
    lines += [gap_row(k, [r[k] for r in rows]) for k in READINGS]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--epochs", type=float, default=1.0, help="epochs of the relabelled fine-tuning (default 1)")
    ap.add_argument("--lr-scale", type=float, default=1.0, help="its learning rate as a multiple of train.lr")
    args = ap.parse_args()
    over_runs(args, run, "unlearn_relabel_spread.py", report, args.epochs, args.lr_scale)


if __name__ == "__main__":
    main()
