"""Selection of an unlearning option (``emulate.unlearn_rewind`` unless ``--grid`` names another) on the selection
configurations (seed 3 unless ``--seeds`` says more; retrains of matrix.py reused).

Exact retraining keeps the number of epochs, so a retrain without a fraction f of the data takes f fewer optimizer
steps. The unlearned model is the Newton step added to the recorded trajectory's parameters at epoch tau (1 - s f);
this compares s = 0 (theta_tau), 0.5 and 1 by the gap in test accuracy to exact retraining (the target's data order,
and the mean over three orders), over 3 draws of 4 random groups and 2 whole classes.

    python benchmarks/unlearn_rewind.py --out benchmarks/results/unlearn-rewind-select
    python benchmarks/unlearn_rewind.py --root runs/matrix-b --seeds 3,4 --grid emulate.unlearn_damping=1e-4,3e-4,1e-3 \
        --out benchmarks/results/unlearn-damping-select
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddm import progress
from ddm.train.loop import accuracy

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402


def unlearned(name: str, seed: int, root: Path, key: str, values: list[str], groups4: int = 3
              ) -> Iterator[tuple[str, list[int], Any, list[torch.Tensor], dict[str, torch.nn.Module]]]:
    """For each of a run's unlearning draws: its kind and groups, the run's data, the exact retrains' test logits in
    the 3 data orders (the target's first) and the model ``dm.unlearn`` gives at each value of ``key``."""
    cfg, data, _, dm, cache = M.open_run(root, name, seed)
    for kind, rem in M.unlearning_draws(dm, int(data.num_classes), groups4):
        exact = [cache.get(rem)] + [cache.get(rem, seed=s) for s in M.other_orders(seed)]
        models = {}
        for v in values:
            dm.config = cfg.with_overrides([f"{key}={v}"])
            models[v] = dm.unlearn(rem, name="unlearn-select")
        dm.config = cfg
        yield kind, rem, data, exact, models


def run(name: str, seed: int, root: Path, key: str, values: list[str], groups4: int = 3) -> list[dict[str, float]]:
    rows = []
    for _, _, data, exact, models in unlearned(name, seed, root, key, values, groups4):
        accs = [(e.argmax(1) == data.test.y).float().mean().item() for e in exact]
        row = {"exact": accs[0], "exact_mean3": float(np.mean(accs))}
        for v, model in models.items():
            row[v] = accuracy(model, data.test)
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/results/unlearn-rewind-select")
    p.add_argument("--root", default="runs/matrix")
    p.add_argument("--configs", default=",".join(n for n, (_, sel) in M.CONFIGS.items() if sel))
    p.add_argument("--seeds", default="3", help="comma-separated seeds (never the report seeds 0-2)")
    p.add_argument("--grid", default="emulate.unlearn_rewind=0,0.5,1", help="KEY=V1,V2,...: the values compared")
    p.add_argument("--draws", type=int, default=3, help="draws of 4 random groups per seed (the first 3 are the "
                                                        "matrix's)")
    args = p.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    key, _, vals = args.grid.partition("=")
    keys = vals.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {n: [r for s in seeds for r in run(n, s, Path(args.root), key, keys, args.draws)]
               for n in args.configs.split(",")}
    kind = "selection" if min(seeds) >= 3 else "report seeds"
    lines = [f"# {key} ({kind})", "", f"Command: `python benchmarks/unlearn_rewind.py "
             f"{' '.join(sys.argv[1:])}`; seeds {args.seeds}; mean |DDM - exact| test accuracy in points over "
             f"{args.draws} draws of 4 groups and the whole classes 0 and C / 2 per seed (none where groups mix "
             "classes), and how many are within 3 points.", "",
             "| configuration | reference | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    mean = {k: [] for k in keys}
    for name, rows in results.items():
        for ref in ("exact", "exact_mean3"):
            cells, n = [], len(rows)
            for k in keys:
                gaps = [100 * abs(r[k] - r[ref]) for r in rows]
                if ref == "exact":
                    mean[k].append(float(np.mean(gaps)))
                cells.append(f"{np.mean(gaps):.2f} ({sum(v <= 3 for v in gaps)}/{n})")
            lines.append(f"| {name} | {'target order' if ref == 'exact' else 'mean of 3 orders'} | "
                         + " | ".join(cells) + " |")
    lines += ["", "Mean gap over the configurations (target order): "
              + ", ".join(f"{k}: {np.mean(v):.2f}" for k, v in mean.items())]
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
