"""Binary probes for the class balance of a task with two classes (BENCHMARKS.md, "Two classes: no class balance").

``make``: the three ``.npz`` files the probes read (``ddm run --dataset npz --data-dir FILE``): Fashion-MNIST
pullover (class 2) against coat (class 4), 2,000 training and 500 test images drawn from the official splits;
scikit-learn's 8x8 digits 3 against 8; ``make_classification`` with 2,000 samples of 20 features, two classes.
``score``: on workspaces ``ddm check`` has retrained, LDS over the check's 16 random halves (its 200 targets, the
default damping) with other classes' groups at 0.5 and at 1 (no balance), and the balance the workspace uses.

    python benchmarks/binary_probes.py make --out runs/p5
    python benchmarks/binary_probes.py score runs/u23 runs/u24 runs/u25 runs/u26
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import ddm
from ddm import progress


def make(out: Path) -> None:
    from sklearn.datasets import load_digits, make_classification

    out.mkdir(parents=True, exist_ok=True)
    fm = ddm.data.load("fashion-mnist")

    def pick(split: ddm.data.Split, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        y = split.y.numpy()
        idx = np.random.default_rng(seed).permutation(np.nonzero((y == 2) | (y == 4))[0])[:n]
        return split.x[idx].numpy()[:, 0], (y[idx] == 4).astype(int)

    (x, y), (xt, yt) = pick(fm.train, 2000, 0), pick(fm.test, 500, 1)
    np.savez(out / "fm-pullover-coat.npz", X=x, y=y, X_test=xt, y_test=yt, class_names=np.array(["pullover", "coat"]))
    d = load_digits()
    m = (d.target == 3) | (d.target == 8)
    np.savez(out / "digits-3-8.npz", X=d.images[m], y=(d.target[m] == 8).astype(int), class_names=np.array(["3", "8"]))
    X, Y = make_classification(n_samples=2000, n_features=20, n_informative=8, n_redundant=4, n_classes=2,
                               n_clusters_per_class=3, flip_y=0.03, random_state=91)
    np.savez(out / "tab-binary.npz", X=X, y=Y)
    print(f"wrote fm-pullover-coat.npz, digits-3-8.npz, tab-binary.npz in {out}")


def score(workspaces: list[str]) -> None:
    from ddm.evaluation.check import SUBSET_SEED, _spearman_columns, check_targets
    from ddm.evaluation.protocol import _Truth, subset_losses

    for ws in workspaces:
        dm = ddm.DistilledDatamodel(ws).load()
        data = ddm.data.load(dm.config.data)
        F = dm.fitted()
        rows = check_targets(len(data.test), 200)
        targets = data.test[rows]
        keep, actual = subset_losses(_Truth(dm.ws.path("check"), dm, data, None), F.groups.num_groups, 16, 0.5,
                                     SUBSET_SEED, rows, targets.y, "retrains")
        lds = {}
        for s in (0.5, 1.0):
            pred = dm.attribute(targets, "dist2", name=f"binary-balance-{s:g}", other_class_scale=s).predict(keep)
            lds[s] = float(_spearman_columns(pred[..., 0].double().numpy(), actual.double().numpy()).mean())
        print(f"{ws}: in use {dm.class_balance}; LDS at 0.5 {lds[0.5]:.4f}, at 1 (no balance) {lds[1.0]:.4f}",
              flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    sub.add_parser("make").add_argument("--out", type=Path, default=Path("runs/p5"))
    sub.add_parser("score").add_argument("workspaces", nargs="+")
    args = p.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    make(args.out) if args.what == "make" else score(args.workspaces)


if __name__ == "__main__":
    main()
