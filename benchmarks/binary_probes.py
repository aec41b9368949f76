"""Binary probes for the class balance of a task with two classes (BENCHMARKS.md, "Two classes: no class balance").

``make``: the ``.npz`` files the probes read (``ddm run --dataset npz --data-dir FILE``): scikit-learn's breast
cancer data (the probe u23 of "Five probes on new axes"); Fashion-MNIST
pullover (class 2) against coat (class 4), 2,000 training and 500 test images drawn from the official splits;
scikit-learn's 8x8 digits 3 against 8; ``make_classification`` with 2,000 samples of 20 features, two classes; and
a second set made after the first was scored: Fashion-MNIST sandal (5) against sneaker (7), digits 1 against 7 as
64 features, ``make_classification`` with 3,000 samples of 30 features; a third made after the damping lead was read
off the first six: Fashion-MNIST bag (8) against ankle boot (9), digits 4 against 9, ``make_classification`` with
4,000 samples of 15 features.
``score``: on workspaces ``ddm check`` has retrained, LDS over the check's 16 random halves (its 200 targets, the
default damping) with other classes' groups at 0.5 and at 1 (no balance), and the balance the workspace uses; then
LDS and other-class LDS (the check's 15 subsets keeping the class with more targets whole) at each of
``--dampings`` (``emulate.damping_scale``, with the default class balance).

    python benchmarks/binary_probes.py make --out runs/p5
    python benchmarks/binary_probes.py score runs/u23 runs/u24 runs/u25 runs/u26 runs/u27 runs/u28 runs/u29
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

import ddm  # noqa: E402
from ddm import progress  # noqa: E402


def make(out: Path) -> None:
    from sklearn.datasets import load_breast_cancer, load_digits, make_classification

    out.mkdir(parents=True, exist_ok=True)
    bc = load_breast_cancer()  # the probe before these (u23): real tabular data, two classes
    np.savez(out / "cancer.npz", X=bc.data, y=bc.target, class_names=np.array([str(n) for n in bc.target_names]))
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
    # the second set, made after the first was scored (the damping's held-out probes)
    def pair(split: ddm.data.Split, a: int, b: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        y = split.y.numpy()
        idx = np.random.default_rng(seed).permutation(np.nonzero((y == a) | (y == b))[0])[:n]
        return split.x[idx].numpy()[:, 0], (y[idx] == b).astype(int)

    (x, y), (xt, yt) = pair(fm.train, 5, 7, 2000, 2), pair(fm.test, 5, 7, 500, 3)
    np.savez(out / "fm-sandal-sneaker.npz", X=x, y=y, X_test=xt, y_test=yt, class_names=np.array(["sandal", "sneaker"]))
    m = (d.target == 1) | (d.target == 7)
    np.savez(out / "digits-1-7.npz", X=d.images[m].reshape(int(m.sum()), -1), y=(d.target[m] == 7).astype(int),
             class_names=np.array(["1", "7"]))
    X, Y = make_classification(n_samples=3000, n_features=30, n_informative=10, n_redundant=5, n_classes=2,
                               n_clusters_per_class=4, flip_y=0.02, class_sep=0.8, random_state=97)
    np.savez(out / "tab-binary-2.npz", X=X, y=Y)
    # the third set, made after the damping lead was read off the first two (its held-out probes)
    (x, y), (xt, yt) = pair(fm.train, 8, 9, 2000, 4), pair(fm.test, 8, 9, 500, 5)
    np.savez(out / "fm-bag-boot.npz", X=x, y=y, X_test=xt, y_test=yt, class_names=np.array(["bag", "ankle boot"]))
    m = (d.target == 4) | (d.target == 9)
    np.savez(out / "digits-4-9.npz", X=d.images[m], y=(d.target[m] == 9).astype(int), class_names=np.array(["4", "9"]))
    X, Y = make_classification(n_samples=4000, n_features=15, n_informative=6, n_redundant=3, n_classes=2,
                               n_clusters_per_class=2, flip_y=0.05, class_sep=1.0, random_state=103)
    np.savez(out / "tab-binary-3.npz", X=X, y=Y)
    # the fourth set, made after distill.match_metric=both was read off the ten probes above (its held-out probes)
    (x, y), (xt, yt) = pair(fm.train, 1, 3, 2000, 6), pair(fm.test, 1, 3, 500, 7)
    np.savez(out / "fm-trouser-dress.npz", X=x, y=y, X_test=xt, y_test=yt, class_names=np.array(["trouser", "dress"]))
    (x, y), (xt, yt) = pair(fm.train, 0, 6, 2000, 8), pair(fm.test, 0, 6, 500, 9)
    np.savez(out / "fm-tshirt-shirt.npz", X=x.reshape(len(x), -1), y=y, X_test=xt.reshape(len(xt), -1), y_test=yt,
             class_names=np.array(["t-shirt", "shirt"]))
    m = (d.target == 5) | (d.target == 6)
    np.savez(out / "digits-5-6.npz", X=d.images[m], y=(d.target[m] == 6).astype(int), class_names=np.array(["5", "6"]))
    X, Y = make_classification(n_samples=2500, n_features=12, n_informative=5, n_redundant=2, n_classes=2,
                               n_clusters_per_class=3, flip_y=0.04, class_sep=0.9, random_state=111)
    np.savez(out / "tab-binary-4.npz", X=X, y=Y)
    print(f"wrote cancer, fm-pullover-coat, digits-3-8, tab-binary, fm-sandal-sneaker, digits-1-7, tab-binary-2, "
          f"fm-bag-boot, digits-4-9, tab-binary-3, fm-trouser-dress, fm-tshirt-shirt, digits-5-6, tab-binary-4 (.npz) "
          f"in {out}")


def score(workspaces: list[str], dampings: list[float]) -> None:
    from ddm.evaluation.check import _spearman_columns

    def lds(pred: torch.Tensor, actual: torch.Tensor) -> float:
        return float(_spearman_columns(pred.double().numpy(), actual.double().numpy()).mean())

    for ws in workspaces:
        dm, data, targets, rows, truth, keep, actual = M.check_halves(ws)
        balance = {}
        for s in (0.5, 1.0):
            pred = dm.attribute(targets, "dist2", name=f"binary-balance-{s:g}", other_class_scale=s).predict(keep)
            balance[s] = lds(pred[..., 0], actual)
        print(f"{ws}: balance in use {dm.class_balance}; LDS at 0.5 {balance[0.5]:.4f}, at 1 (no balance) "
              f"{balance[1.0]:.4f}", flush=True)
        # the check's other-class subsets (binary: the class with more targets kept whole, half of the other's groups)
        oc = M.check_other_class(dm, data, targets, rows, truth)
        assert oc is not None
        masks, sel, oc_actual = oc
        base = dm.config
        for d in dampings:  # with the default class balance, whatever the stored workspace had
            dm.config = base.with_overrides([f"emulate.damping_scale={d:g}", "emulate.binary_class_scale=none"])
            attr = dm.attribute(targets, "dist2", name=f"binary-damping-{d:g}")
            print(f"  damping x{d:g}: LDS {lds(attr.predict(keep)[..., 0], actual):.4f}, other-class LDS "
                  f"{lds(attr.predict(masks)[:, sel, 0], oc_actual):+.4f}", flush=True)
        dm.config = base


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    sub.add_parser("make").add_argument("--out", type=Path, default=Path("runs/p5"))
    sc = sub.add_parser("score")
    sc.add_argument("workspaces", nargs="+")
    sc.add_argument("--dampings", default="1,3,10,30", help="emulate.damping_scale values scored as well")
    args = p.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    if args.what == "make":
        make(args.out)
    else:
        score(args.workspaces, [float(d) for d in args.dampings.split(",")])


if __name__ == "__main__":
    main()
