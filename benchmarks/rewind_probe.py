"""The unlearning's rewind point on a probe with 100 classes (a diagnostic; decides nothing by itself).

A 100-class tabular task (scikit-learn's ``make_classification``, 5,000 training and 1,000 test samples, 40
features) trained with the library's MLP, K = 300 k-means groups: a model at 47% test accuracy whose SGD iterates
are noisy. For random draws of 4 groups, ``ddm unlearn`` with the rewind on the straight line between two recorded
checkpoints (``emulate.unlearn_rewind_to=interpolate``, the default), on the nearest recorded checkpoint
(``checkpoint``) and without the rewind, each against exact retraining in ``--orders`` data orders (cached in the
workspace's ``check/``); and the test accuracy along the last epochs of the recorded trajectory.

    python benchmarks/rewind_probe.py --make-data runs/rewind-probe/c100.npz
    ddm run -q -w runs/rewind-probe/c100 --dataset npz --data-dir runs/rewind-probe/c100.npz \\
        --set model.name=mlp --set cluster.per_class=3
    python benchmarks/rewind_probe.py --workspace runs/rewind-probe/c100 --out benchmarks/results/rewind-to-probe-c100
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from pathlib import Path

import numpy as np
import torch

import ddm
from ddm import progress
from ddm.evaluation.check import verify_unlearning
from ddm.train.loop import accuracy

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

POINTS = {"interpolate": ["emulate.unlearn_rewind_to=interpolate"],
          "checkpoint": ["emulate.unlearn_rewind_to=checkpoint"], "none": ["emulate.unlearn_rewind=0"]}


def make_data(path: str) -> None:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=6000, n_features=40, n_informative=30, n_redundant=5, n_classes=100,
                               n_clusters_per_class=1, class_sep=2.0, random_state=0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, X=x[:5000].astype("float32"), y=y[:5000], X_test=x[5000:].astype("float32"), y_test=y[5000:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--make-data", help="write the probe's .npz here and stop")
    p.add_argument("--workspace", default="runs/rewind-probe/c100")
    p.add_argument("--draws", type=int, default=10)
    p.add_argument("--orders", type=int, default=2, help="exact retrains per draw (the target's order first)")
    p.add_argument("--out", default="benchmarks/results/rewind-to-probe-c100")
    args = p.parse_args()
    if args.make_data:
        make_data(args.make_data)
        return
    progress.set_enabled(False)
    logging.disable(logging.WARNING)
    dm = ddm.DistilledDatamodel(args.workspace)
    dm.load()
    data = ddm.data.load(dm.config.data)
    fitted = dm.fitted()
    traj, K, base = fitted.trajectory, fitted.groups.num_groups, dm.config
    last = float(traj.epochs[-1])
    along = []
    for e in (last - 2, last - 1.5, last - 1, last - 0.6, last - 0.4, last - 0.2, last):
        along.append((e, accuracy(ddm.models.with_params(fitted.model, traj.at_epoch(e)), data.test)))
    rng = random.Random(0)
    rows = []
    for _ in range(args.draws):
        groups = sorted(rng.sample(range(K), 4))
        row: dict[str, object] = {"groups": groups}
        for name, over in POINTS.items():
            dm.config = base.with_overrides(over)
            r = verify_unlearning(dm, data, groups, dm.unlearn(groups, name="rewind-probe"), orders=args.orders)
            row[name] = r["unlearned"]["test_accuracy"]
            row["exact"], row["target"] = r["exact"]["test_accuracy"], r["target"]["test_accuracy"]
            row["epoch_" + name] = (dm.last_rewind or {}).get("epoch", last)
        rows.append(row)
    dm.config = base
    lines = ["# The rewind's point on a 100-class probe (diagnostic)", "",
             f"Command: `python benchmarks/rewind_probe.py {' '.join(sys.argv[1:])}`; workspace built as the "
             f"script's doc says; {args.draws} draws of 4 random groups (seed 0), exact retraining in {args.orders} "
             "data orders (the target's first); gap = unlearned - mean exact test accuracy, in points.", "",
             "Test accuracy along the recorded trajectory (at_epoch: the straight line between checkpoints):", "",
             "| epoch | " + " | ".join(f"{e:g}" for e, _ in along) + " |", "|---|" + "---|" * len(along),
             "| test accuracy | " + " | ".join(f"{100 * a:.1f}" for _, a in along) + " |", "",
             "| groups | exact (orders) | target | " + " | ".join(POINTS) + " |",
             "|---|---|---|" + "---|" * len(POINTS)]
    for r in rows:
        ex = float(np.mean(r["exact"]))  # type: ignore[arg-type]
        lines.append(f"| {r['groups']} | {100 * ex:.1f} ({', '.join(f'{100 * v:.1f}' for v in r['exact'])}) | "  # type: ignore[attr-defined]
                     f"{100 * r['target']:.1f} | "  # type: ignore[operator]
                     + " | ".join(f"{100 * r[n]:.1f} ({100 * (r[n] - ex):+.2f})" for n in POINTS) + " |")  # type: ignore[operator]
    lines.append("")
    for n in POINTS:
        gaps = np.array([100 * (r[n] - np.mean(r["exact"])) for r in rows])  # type: ignore[operator, arg-type]
        lines.append(f"* {n}: mean |gap| {np.abs(gaps).mean():.2f} points (mean gap {gaps.mean():+.2f}), "
                     f"{int((np.abs(gaps) <= 3).sum())} of {len(gaps)} within 3")
    M.write_report(args.out, lines, {"along": along, "rows": rows})


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
