"""Probes on tabular data: a user's own feature vectors through ``ddm.data.from_arrays`` (no images), checked as the
README says (measured once, used for no choice).

The data is scikit-learn's ``make_classification`` (no download); ddm holds out a stratified 20 % as the test split.
Each probe fits the workspace from Python, runs ``check`` (200 targets, 16 random halves, 15 other-class subsets,
with last-layer influence and TracIn beside DDM) and verifies two unlearnings against exact retraining (4 groups,
and every group of one class).

    python benchmarks/probe_tabular.py --probe five-classes --workspace runs/u21
    python benchmarks/probe_tabular.py --probe ten-classes-adam --workspace runs/u22
    python benchmarks/probe_tabular.py --probe thirty-classes --workspace runs/u48
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from sklearn.datasets import make_classification

import ddm
from ddm.evaluation.check import check, verify_unlearning

PROBES = {
    # data: make_classification's arguments; sets: the configuration's overrides; groups: a 4-group draw; a class
    "five-classes": {"data": {"n_samples": 3000, "n_features": 20, "n_informative": 10, "n_redundant": 4,
                              "n_classes": 5, "random_state": 85},
                     "sets": ["model.name=mlp", "model.width=64", "model.depth=2", "cluster.per_class=8",
                              "model.seed=85", "train.seed=85"],
                     "groups": [3, 11, 22, 37], "class": 2},
    "ten-classes-adam": {"data": {"n_samples": 5000, "n_features": 40, "n_informative": 16, "n_redundant": 8,
                                  "n_classes": 10, "random_state": 87},
                         "sets": ["model.name=mlp", "model.width=128", "model.depth=3", "train.optimizer=adam",
                                  "train.lr=0.001", "cluster.per_class=5", "model.seed=87", "train.seed=87"],
                         "groups": [2, 17, 29, 44], "class": 6},
    # added later (a new axis: many classes, as CIFAR-100 has; measured once)
    "thirty-classes": {"data": {"n_samples": 9000, "n_features": 40, "n_informative": 20, "n_redundant": 6,
                                "n_classes": 30, "random_state": 103},
                       "sets": ["model.name=mlp", "model.width=128", "model.depth=2", "cluster.per_class=4",
                                "model.seed=103", "train.seed=103"],
                       "groups": [5, 38, 71, 110], "class": 12},
}


def probe_data(name: str) -> ddm.data.Dataset:
    """The probe's data as its run made it (same arguments, same stratified split)."""
    X, y = make_classification(**PROBES[name]["data"], n_clusters_per_class=2, flip_y=0.02, class_sep=1.0)
    return ddm.data.from_arrays(X.astype("float32"), y)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--probe", choices=sorted(PROBES), required=True)
    p.add_argument("--workspace", required=True)
    args = p.parse_args()
    ddm.progress.set_enabled(False)
    probe = PROBES[args.probe]
    data = probe_data(args.probe)
    cfg = ddm.presets.demo(data).with_overrides(probe["sets"])
    dm = ddm.DistilledDatamodel(args.workspace, cfg)
    dm.fit(ddm.models.build(cfg.model, data), data.train)
    print("test accuracy", ddm.train.accuracy(dm.model, data.test))
    r = check(dm, data, peers=("if-explicit", "tracin"))
    print(json.dumps({k: r[k] for k in ("lds", "other_class_lds") if k in r}, indent=1))
    print("\n".join(r["verdict"]))
    whole = [int(g) for g in np.nonzero(dm.groups.labels.numpy() == probe["class"])[0]]
    for groups in (probe["groups"], whole):
        v = verify_unlearning(dm, data, groups, dm.unlearn(groups), 1)
        print(groups, json.dumps({k: v[k] for k in ("exact", "unlearned", "target", "test_gap_points")}))


if __name__ == "__main__":
    main()
