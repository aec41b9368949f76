"""Probes of kinds of data the configuration matrix never had, scored like it (``matrix.run_one``: DDM, the trivial
same-class score, last-layer influence and TracIn against exact retrains of 40 half subsets and 10 other-class
subsets per class). Measured once, after the defaults were final; never used for a choice.

* ``fmnist-convnet-longtail-K40``: class imbalance. Fashion-MNIST, class c keeps 600 x 0.72^c training images
  (600 down to 31); the test split stays balanced (100 per class).
* ``fmnist-mlp-binary-K40``: a hard binary task, T-shirt (0) against shirt (1), 1,000 training and 500 test images
  per class, 20 k-means groups per class.
* ``digits-convnet-K300-sgd``: many tiny groups (30 per class, about 5 images each).
* ``fmnist-mlp-K40-overfit``: trained far past fitting its 2,000 training images (60 epochs, momentum 0.9).

    python benchmarks/probe_kinds.py --seeds 0,1,2 --out benchmarks/results/probe-kinds
    # a diagnostic on one probe: DDM with each value of a setting (each in its own workspace)
    python benchmarks/probe_kinds.py --configs fmnist-mlp-K40-overfit --grid distill.checkpoints=1,3,10,30
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import matrix  # noqa: E402  (benchmarks/ is the script's folder)
import torch

import ddm
from ddm.data.dataset import Dataset, Split
from ddm.workspace import atomic_write_text

FM = ["--dataset=fashion-mnist"]
PROBES: dict[str, list[str]] = {
    "fmnist-convnet-longtail-K40": [*FM, "model.width=16", "train.epochs=5", "train.lr=0.05", "cluster.per_class=4"],
    "fmnist-mlp-binary-K40": [*FM, "model.name=mlp", "model.width=64", "model.depth=2", "train.epochs=10",
                              "train.lr=0.05", "cluster.per_class=20"],
    "digits-convnet-K300-sgd": ["cluster.per_class=30"],
    "fmnist-mlp-K40-overfit": [*FM, "data.train_size=2000", "data.test_size=1000", "model.name=mlp", "model.width=128",
                               "model.depth=2", "train.epochs=60", "train.lr=0.02", "train.momentum=0.9",
                               "cluster.per_class=4"],
}
_matrix_config = matrix.make_config


def make_config(overrides: list[str], seed: int, extra: list[str]) -> tuple[Any, Dataset]:
    """The matrix's configuration; the long-tail and binary probes also reshape the data (fixed, seed-independent)."""
    cfg, data = _matrix_config(overrides, seed, extra)
    name = next((n for n, o in PROBES.items() if o == overrides), None)
    tr, te = data.train, data.test
    if name == "fmnist-convnet-longtail-K40":
        g = torch.Generator().manual_seed(0)
        keep = torch.cat([torch.nonzero(tr.y == c).flatten()[torch.randperm(int((tr.y == c).sum()), generator=g)]
                          [: int(600 * 0.72 ** c)] for c in range(data.num_classes)]).sort().values
        test = torch.cat([torch.nonzero(te.y == c).flatten()[:100] for c in range(data.num_classes)]).sort().values
        return cfg, Dataset(name, Split(tr.x[keep].clone(), tr.y[keep].clone()),
                            Split(te.x[test].clone(), te.y[test].clone()), data.num_classes, data.mean, data.std,
                            data.class_names)
    if name == "fmnist-mlp-binary-K40":
        def pick(s: Split, n: int) -> Split:
            idx = torch.cat([torch.nonzero(s.y == c).flatten()[:n] for c in (0, 6)]).sort().values
            return Split(s.x[idx].clone(), (s.y[idx] == 6).long())

        return cfg, Dataset(name, pick(tr, 1000), pick(te, 500), 2, data.mean, data.std, ["T-shirt", "shirt"])
    return cfg, data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=",".join(PROBES))
    p.add_argument("--seeds", default="0")
    p.add_argument("--root", default="runs/probe-kinds")
    p.add_argument("--out", default="benchmarks/results/probe-kinds")
    p.add_argument("--grid", default=None, metavar="KEY=V1,V2,...",
                   help="a diagnostic: DDM with each value of a setting, each in its own workspace (no peers)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting applied to every run before --grid (repeatable)")
    a = p.parse_args()
    matrix.make_config = make_config
    for n, o in PROBES.items():
        matrix.CONFIGS[n] = (o, False)
    grid = ("", ["default"]) if a.grid is None else (a.grid.split("=", 1)[0], a.grid.split("=", 1)[1].split(","))
    argv = [f"--configs {a.configs}", f"--seeds {a.seeds}", f"--root {a.root}", f"--out {a.out}",
            *[f"--set {v}" for v in a.set], *([f"--grid {a.grid}"] if a.grid else [])]
    args = argparse.Namespace(targets=50, select=False, set=a.set, subsets=40, other_subsets=10, orders=1,
                              redistill=False, no_variants=True,
                              peers=["if-explicit", "tracin"] if a.grid is None else [], unlearn_dampings="",
                              argv=argv)
    torch.set_num_threads(1)
    ddm.progress.set_enabled(False)
    results = []
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in a.configs.split(","):
        for seed in [int(s) for s in a.seeds.split(",")]:
            t0 = time.perf_counter()
            results.append(matrix.run_one(Path(a.root), name, seed, args, grid))
            print(f"{name} seed {seed}: {time.perf_counter() - t0:.0f} s  LDS {json.dumps(results[-1]['lds'])}",
                  flush=True)
            atomic_write_text(out.with_suffix(".json"), json.dumps(results, indent=1))
            text = matrix.markdown(results, args).replace("benchmarks/matrix.py", "benchmarks/probe_kinds.py", 1)
            atomic_write_text(out.with_suffix(".md"), text.replace("# Configuration matrix", "# Probes", 1))


if __name__ == "__main__":
    main()
