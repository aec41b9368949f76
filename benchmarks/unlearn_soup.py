"""Lower-noise relabelled epochs (an exploration; the rule: benchmarks/results/probes-033/soup-rule.md).

``ddm unlearn``'s default (relabelled fine-tuning with soft labels from 10 neighbours) is one epoch of SGD from
theta_tau, and where that epoch lands depends on its data order (BENCHMARKS.md, "The scorecard's draws against three
data orders each, and the epoch's own spread"). Variants, each from the same draw and the same relabelled split:

* ``soft 10``: the default (``relabelled_targets``, ``train_relabelled``);
* ``soup 3``: the parameters and floating-point buffers of 3 such epochs in 3 data orders (the default's,
  ``train.seed`` + 1 and + 2) averaged;
* ``2 epochs, half rate``: one run of 2 epochs at half ``train.lr``.

For each 4-group draw of the matrix's runs: test accuracy minus the mean of exact retraining's three data orders
(``--fill``: retrained where the cache lacks them); with ``--classes`` also the class removals.

    python benchmarks/unlearn_soup.py --seeds 3 \\
        --configs digits-convnet-K100-sgd,digits-mlp-K40-sgd,fmnist-mlp-K40-adam,fmnist-mlp-K40-sgd \\
        --out benchmarks/results/unlearn-soup-select
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from ddm.baselines.unlearners import RELABEL_SOFT_NEIGHBOURS, relabelled_targets, train_relabelled

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _draws import Run, draw_row, explore, scored_draws, test_gap  # noqa: E402
from unlearn_relabel_spread import soup  # noqa: E402

LABELS = ["soft 10", "soup 3", "2 epochs, half rate"]


def run(name: str, seed: int, root: Path, fill: bool = False, classes: bool = False) -> list[dict[str, Any]]:
    run_ = Run.open(root, name, seed)
    data, dm = run_.data, run_.dm
    C = int(data.num_classes)
    train, tcfg = data.train, run_.cfg.train
    rows = []
    for kind, d in scored_draws(dm, run_.cache, data, seed, fill, classes):
        row = draw_row(name, seed, kind, d)
        r = relabelled_targets(train, d.keep, C, soft=RELABEL_SOFT_NEIGHBOURS)
        epochs = [train_relabelled(run_.fit.model, run_.final, r.split, dataclasses.replace(tcfg, seed=tcfg.seed + i),
                                   targets=r.targets) for i in range(3)]
        slow = train_relabelled(run_.fit.model, run_.final, r.split, dataclasses.replace(tcfg, lr=tcfg.lr / 2),
                                epochs=2.0, targets=r.targets)
        for label, model in zip(LABELS, (epochs[0], soup(epochs), slow), strict=True):
            row[label] = test_gap(model, data.test, d.gone, d.reference)
        rows.append(row)
        print(name, seed, kind, d.groups, {k: round(row[k], 1) for k in LABELS}, flush=True)
    return rows


if __name__ == "__main__":
    explore(__doc__, run, "unlearn_soup.py", "Lower-noise relabelled epochs", LABELS)
