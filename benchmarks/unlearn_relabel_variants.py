"""Variants of relabelled fine-tuning against exact retraining (an exploration on the selection seed, no default).

For each 4-group draw of the matrix's runs (``matrix.unlearning_draws``; stages and retrains reused, nothing
retrained), test accuracy minus the mean of exact retraining's cached orders, for:

* ``relabel``: ``ddm unlearn``'s default, one epoch of ``train.*`` from theta_tau over
  ``ddm.baselines.unlearners.relabelled_split``;
* ``relabel + prior S``: the same, then ``S * log(kept / all)`` added to each class's bias
  (``ddm.unlearning.shift_priors``), the class prior a thinned class loses;
* ``kept from tau-K``: K epochs over the kept samples only, from the recorded checkpoint K epochs before theta_tau (a
  partial retrain: K / E of retraining's cost), and ``relabel from tau-K`` the same over the relabelled split.

    python benchmarks/unlearn_relabel_variants.py --seeds 3 \\
        --configs digits-convnet-K100-sgd,digits-mlp-K40-sgd,fmnist-mlp-K40-adam,fmnist-mlp-K40-sgd \\
        --out benchmarks/results/unlearn-relabel-variants-select
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import torch

from ddm.baselines.unlearners import relabelled_split, train_relabelled
from ddm.data import Split
from ddm.unlearning import shift_priors

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402
from _draws import four_group_draws, over_runs, parser, test_gap, variants_report  # noqa: E402

#: (name, epochs back from theta_tau (0: theta_tau, one epoch), relabelled split?, prior shift)
VARIANTS = (("relabel", 0, True, 0.0), ("relabel + prior 0.5", 0, True, 0.5), ("relabel + prior 1", 0, True, 1.0),
            ("kept from tau-1", 1, False, 0.0), ("kept from tau-2", 2, False, 0.0), ("kept from tau-3", 3, False, 0.0),
            ("relabel from tau-2", 2, True, 0.0))


def run(name: str, seed: int, root: Path) -> list[dict[str, Any]]:
    cfg, data, _, dm, cache = M.open_run(root, name, seed)
    fit = dm.fitted()
    traj = fit.trajectory
    rows = []
    for d in four_group_draws(dm, cache, data, seed):
        relabelled, _ = relabelled_split(data.train, d.keep)
        kept_rows = torch.nonzero(d.keep).flatten()
        kept = Split(data.train.x[kept_rows], data.train.y[kept_rows], data.train.index[kept_rows])
        row: dict[str, Any] = {"config": name, "seed": seed, "groups": d.groups, "epochs": float(traj.epochs[-1])}
        trained: dict[tuple[int, bool], torch.nn.Module] = {}
        for label, back, relabel, prior in VARIANTS:
            if (back, relabel) not in trained:
                start = traj.final if back == 0 else traj.checkpoint(len(traj) - 1 - back)
                trained[back, relabel] = train_relabelled(fit.model, start, relabelled if relabel else kept, cfg.train,
                                                          epochs=max(back, 1))
            model = copy.deepcopy(trained[back, relabel])
            if prior:  # a class left without data gets no bias shift (shift_priors), so the order does not matter
                shift_priors(model, fit.groups, torch.as_tensor(d.groups), prior)
            row[label] = test_gap(model, data.test, d.gone, d.reference)
        rows.append(row)
        print(name, seed, d.groups, {v[0]: round(row[v[0]], 1) for v in VARIANTS}, flush=True)
    return rows


def report(rows: list[dict[str, Any]], command: str) -> str:
    return variants_report("Variants of relabelled fine-tuning", [v[0] for v in VARIANTS], rows, command)


def main() -> None:
    over_runs(parser(__doc__).parse_args(), run, "unlearn_relabel_variants.py", report)


if __name__ == "__main__":
    main()
