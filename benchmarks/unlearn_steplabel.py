"""Relabelling the removed samples by the synsets' step instead of (or beside) their pixels' neighbours (an
exploration on the selection seed, no default).

``ddm unlearn``'s default relabels a removed sample where 4 of its 5 nearest kept samples (raw inputs) name another
class, and leaves the rest out of its epoch. On fully connected networks it under-forgets: exact retraining gets
fewer removed samples and their test look-alikes right than the relabelled epoch leaves (BENCHMARKS.md, "Where the
default's test gap lies"). The synsets' Newton step (``ddm unlearn --method step``, ``dm.unlearn``) predicts the
removed samples from the kept data's curvature and the rewound trajectory instead of the pixels. Variants, each from
the same draw:

* ``relabel``: the default;
* ``step``: the synsets' step alone;
* ``step labels``: the epoch with each removed sample taught the class the step's model predicts for it, where that
  is not its own (left out where it is);
* ``union``: the default's relabelled samples, plus the removed samples it leaves out that the step's model assigns
  to another class, taught that class.

For each 4-group draw of the matrix's runs: test accuracy minus the mean of exact retraining's three data orders
(``--fill``: retrained where the cache lacks them; else the cached ones); with ``--classes`` also each class removal
of the matrix (every group of class 0 and of class C / 2) against exact retraining in the target's order, whose
target is 5 points.

    python benchmarks/unlearn_steplabel.py --seeds 3 \\
        --configs digits-convnet-K100-sgd,digits-mlp-K40-sgd,fmnist-mlp-K40-adam,fmnist-mlp-K40-sgd \\
        --out benchmarks/results/unlearn-steplabel-select
    python benchmarks/unlearn_steplabel.py --seeds 0,1,2 --configs <the nine report configurations> --fill \\
        --classes --out benchmarks/results/unlearn-steplabel-matrix
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from ddm.baselines.unlearners import RELABEL_AGREE, RELABEL_NEIGHBOURS, knn_labels
from ddm.data.dataset import Split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _draws import Run, draw_row, explore, scored_draws, test_gap  # noqa: E402

LABELS = ["relabel", "step", "step labels", "union"]


def split_with(train: Split, keep: torch.Tensor, labels: torch.Tensor) -> Split:
    """Every kept sample, and each removed one whose ``labels`` entry (``-1``: none) names another class than its
    own, with that class; in the training split's order."""
    gone = torch.nonzero(~keep).flatten()
    other = (labels >= 0) & (labels != train.y[gone])
    y, use = train.y.clone(), keep.clone()
    y[gone[other]], use[gone[other]] = labels[other], True
    rows = torch.nonzero(use).flatten()
    return Split(train.x[rows], y[rows], train.index[rows])


def run(name: str, seed: int, root: Path, fill: bool = False, classes: bool = False) -> list[dict[str, Any]]:
    run_ = Run.open(root, name, seed)
    data, dm = run_.data, run_.dm
    rows = []
    for kind, d in scored_draws(dm, run_.cache, data, seed, fill, classes):
        gone = torch.nonzero(~d.keep).flatten()
        knn = knn_labels(data.train.x[gone], data.train.x[d.keep], data.train.y[d.keep], RELABEL_NEIGHBOURS,
                         agree=RELABEL_AGREE).to(data.train.y)
        stepped = dm.unlearn(d.groups, name="steplabel")
        stepped.eval()
        with torch.no_grad():
            by_step = stepped(data.train.x[gone]).argmax(1)
        knn_other = (knn >= 0) & (knn != data.train.y[gone])
        union = torch.where(knn_other, knn, by_step)
        row = {**draw_row(name, seed, kind, d), "moved knn": int(knn_other.sum()),
               "moved step": int((by_step != data.train.y[gone]).sum())}
        row["step"] = test_gap(stepped, data.test, d.gone, d.reference)
        for label, labels in (("relabel", knn), ("step labels", by_step), ("union", union)):
            model = run_.epoch(split_with(data.train, d.keep, labels))
            row[label] = test_gap(model, data.test, d.gone, d.reference)
        rows.append(row)
        print(name, seed, kind, d.groups, {k: round(row[k], 1) for k in LABELS},
              {k: row[k] for k in ("moved knn", "moved step", "removed")}, flush=True)
    return rows


if __name__ == "__main__":
    explore(__doc__, run, "unlearn_steplabel.py", "Relabelling the removed samples by the synsets' step", LABELS)
