"""Relabelled fine-tuning that also forgets the removed samples it leaves out (an exploration, no default).

``ddm unlearn``'s default (``relabel``: one epoch of ``train.*`` from theta_tau over
``ddm.baselines.unlearners.relabelled_split``) leaves out the removed samples whose nearest kept samples do not agree
on another class; theta_tau's memory of their region survives the epoch, which is where its misses on fully
connected networks lie (BENCHMARKS.md, "Where the default's test gap lies": the removed groups' look-alikes). Two ways
to take that memory away, each from the same start and the same epoch:

* ``shrink A``: the epoch starts from theta_0 + A (theta_tau - theta_0), every weight pulled back toward the
  initialisation (what every retrain starts from), so the epoch relearns what the kept data supports;
* ``ascent B``: the epoch's steps descend the relabelled split's loss and ascend ``B`` x the loss of a batch of the
  left-out removed samples (NegGrad+ restricted to them; ``ddm.baselines.unlearners.neggrad_plus`` with
  alpha = 1 - B).

For each 4-group draw of the matrix's runs (``matrix.unlearning_draws``; stages and retrains reused, nothing
retrained): test accuracy minus the mean of exact retraining's cached orders.

    python benchmarks/unlearn_relabel_forget.py --seeds 3 \\
        --configs digits-convnet-K100-sgd,digits-mlp-K40-sgd,fmnist-mlp-K40-adam,fmnist-mlp-K40-sgd \\
        --out benchmarks/results/unlearn-relabel-forget-select
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from ddm.baselines.unlearners import (
    RELABEL_AGREE,
    RELABEL_NEIGHBOURS,
    knn_labels,
    neggrad_plus,
    relabelled_split,
    train_relabelled,
)
from ddm.data import Split

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402
from _draws import four_group_draws, over_runs, parser, test_gap, variants_report  # noqa: E402

#: (name, shrink factor A (1: theta_tau), ascent weight B (0: none))
VARIANTS = (("relabel", 1.0, 0.0), ("shrink 0.9", 0.9, 0.0), ("shrink 0.7", 0.7, 0.0), ("shrink 0.5", 0.5, 0.0),
            ("ascent 0.01", 1.0, 0.01), ("ascent 0.03", 1.0, 0.03))


def left_out(train: Split, keep: torch.Tensor) -> torch.Tensor:
    """The removed rows :func:`relabelled_split` leaves out (their neighbours name no other class)."""
    gone = torch.nonzero(~keep).flatten()
    labels = knn_labels(train.x[gone], train.x[keep], train.y[keep], RELABEL_NEIGHBOURS, agree=RELABEL_AGREE)
    moved = (labels != train.y[gone]) & (labels >= 0)
    return gone[~moved.to(gone.device)]


def run(name: str, seed: int, root: Path) -> list[dict[str, Any]]:
    cfg, data, _, dm, cache = M.open_run(root, name, seed)
    fit = dm.fitted()
    traj = fit.trajectory
    theta0, final = traj.checkpoint(0), traj.final
    rows = []
    for d in four_group_draws(dm, cache, data, seed):
        split, moved = relabelled_split(data.train, d.keep)
        rest = left_out(data.train, d.keep)
        both = Split(torch.cat([split.x, data.train.x[rest]]), torch.cat([split.y, data.train.y[rest]]),
                     torch.cat([split.index, data.train.index[rest]]))
        mask = torch.cat([torch.ones(len(split), dtype=torch.bool), torch.zeros(len(rest), dtype=torch.bool)])
        row: dict[str, Any] = {"config": name, "seed": seed, "groups": d.groups, "relabelled": moved,
                               "left_out": len(rest)}
        for label, shrink, ascent in VARIANTS:
            start = (final if shrink == 1 else
                     {k: theta0[k] + shrink * (v - theta0[k]) if k in theta0 else v for k, v in final.items()})
            if ascent and len(rest):
                model = neggrad_plus(fit.model, start, both, mask, cfg.train, 1.0, alpha=1 - ascent, anneal=True)
            else:
                model = train_relabelled(fit.model, start, split, cfg.train)
            row[label] = test_gap(model, data.test, d.gone, d.reference)
        rows.append(row)
        print(name, seed, d.groups, {v[0]: round(row[v[0]], 1) for v in VARIANTS}, flush=True)
    return rows


def report(rows: list[dict[str, Any]], command: str) -> str:
    return variants_report("Relabelled fine-tuning that forgets what it leaves out", [v[0] for v in VARIANTS], rows,
                           command)


def main() -> None:
    over_runs(parser(__doc__).parse_args(), run, "unlearn_relabel_forget.py", report)


if __name__ == "__main__":
    main()
