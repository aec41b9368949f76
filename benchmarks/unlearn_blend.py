"""The relabelled epoch and the synsets' step, their parameters averaged (an exploration).

On the Fashion-MNIST ConvNet probes (BENCHMARKS.md, "A Fashion-MNIST ConvNet where the neighbours over-forget") the
default relabelled epoch errs below exact retraining where the synsets' step errs above it. Both start from the
recorded trajectory near theta_tau (the epoch from theta_tau, the step from the checkpoint the removal rewinds to plus a
last-layer Newton step), so the mean of their parameters and buffers is a checkpoint too. Variants, each from the same
draw:

* ``relabel``: the default (``relabelled_targets``, ``train_relabelled``);
* ``step``: the synsets' step (``dm.unlearn``, ``ddm unlearn --method step``);
* ``blend``: the two models' parameters and buffers averaged, half each.

For each 4-group draw of the matrix's runs: test accuracy minus the mean of exact retraining's three data orders
(``--fill``: retrained where the cache lacks them); with ``--classes`` also the class removals.

    python benchmarks/unlearn_blend.py --seeds 3 \\
        --configs digits-convnet-K100-sgd,digits-mlp-K40-sgd,fmnist-mlp-K40-adam,fmnist-mlp-K40-sgd \\
        --out benchmarks/results/unlearn-blend-select
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import torch

from ddm.baselines.unlearners import relabelled_targets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _draws import Run, draw_row, explore, scored_draws, test_gap  # noqa: E402

LABELS = ["relabel", "step", "blend"]


def blend(a: torch.nn.Module, b: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``a`` with the mean of ``a``'s and ``b``'s floating-point parameters and buffers."""
    out = copy.deepcopy(a)
    sb = b.state_dict()
    out.load_state_dict({k: (v + sb[k]) / 2 if v.is_floating_point() else v for k, v in a.state_dict().items()})
    return out.eval()


def run(name: str, seed: int, root: Path, fill: bool = False, classes: bool = False) -> list[dict[str, Any]]:
    run_ = Run.open(root, name, seed)
    data, dm = run_.data, run_.dm
    C = int(data.num_classes)
    rows = []
    for kind, d in scored_draws(dm, run_.cache, data, seed, fill, classes):
        row = draw_row(name, seed, kind, d)
        r = relabelled_targets(data.train, d.keep, C)
        relabel = run_.epoch(r.split, r.targets)
        step = dm.unlearn(d.groups, name="blend-benchmark")
        for label, model in (("relabel", relabel), ("step", step), ("blend", blend(relabel, step))):
            row[label] = test_gap(model, data.test, d.gone, d.reference)
        rows.append(row)
        print(name, seed, kind, d.groups, {k: round(row[k], 1) for k in LABELS}, flush=True)
    return rows


if __name__ == "__main__":
    explore(__doc__, run, "unlearn_blend.py", "The relabelled epoch and the synsets' step, averaged", LABELS)
