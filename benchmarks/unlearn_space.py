"""Where relabelling finds a removed sample's neighbours: the raw inputs or the network's features (an exploration).

``ddm unlearn``'s default takes each removed sample's nearest kept samples on the raw inputs. On a Fashion-MNIST
ConvNet where a draw takes half of the T-shirts and a third of the shirts, exact retraining predicts their own class for
52 % of the removed samples that 4 of their 5 pixel neighbours assign to another class, and the relabelled epoch falls
4-6 points below retraining in test accuracy on that draw with either optimizer tried (AdamW or momentum SGD, cosine
schedule): the pixels' neighbourhoods are not the network's. Variants, each from the same draw (the library's
``relabelled_targets`` with ``space``, hard and soft neighbours alike, then ``train_relabelled``):

* ``pixels``: the default;
* ``features tau``: the trained network's penultimate features (the head's inputs) at theta_tau;
* ``features first``: the same at the first recorded checkpoint after theta_0 (features learned before the removed
  samples were fitted one by one);
* ``features mid``: at the recorded checkpoint nearest tau / 2.

For each 4-group draw of the matrix's runs: test accuracy minus the mean of exact retraining's three data orders
(``--fill``: retrained where the cache lacks them); with ``--classes`` also the class removals.

    python benchmarks/unlearn_space.py --seeds 3 \\
        --configs digits-convnet-K100-sgd,digits-mlp-K40-sgd,fmnist-mlp-K40-adam,fmnist-mlp-K40-sgd \\
        --out benchmarks/results/unlearn-space-select
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from ddm.baselines.unlearners import relabelled_targets
from ddm.distill.head import Head

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _draws import Run, draw_row, explore, scored_draws, test_gap  # noqa: E402

LABELS = ["pixels", "features tau", "features first", "features mid"]


def spaces(fit: Any, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
    """Each variant's rows of the training split to find neighbours in (None: the raw inputs)."""
    head, traj = Head.of(fit.model), fit.trajectory
    mid = min(range(1, len(traj.epochs)), key=lambda i: abs(traj.epochs[i] - traj.epochs[-1] / 2))
    with torch.no_grad():
        return {"pixels": None, "features tau": head.features(x)[:, :-1],
                "features first": head.features(x, traj.checkpoint(1))[:, :-1],
                "features mid": head.features(x, traj.checkpoint(mid))[:, :-1]}


def run(name: str, seed: int, root: Path, fill: bool = False, classes: bool = False) -> list[dict[str, Any]]:
    run_ = Run.open(root, name, seed)
    data, dm = run_.data, run_.dm
    C = int(data.num_classes)
    train = data.train
    where = spaces(run_.fit, train.x)
    rows = []
    for kind, d in scored_draws(dm, run_.cache, data, seed, fill, classes):
        row = draw_row(name, seed, kind, d)
        for label, space in where.items():
            r = relabelled_targets(train, d.keep, C, space=space)
            model = run_.epoch(r.split, r.targets)
            row[label] = test_gap(model, data.test, d.gone, d.reference)
            row[f"{label} moved"], row[f"{label} taught"] = r.relabelled, r.softened
        rows.append(row)
        print(name, seed, kind, d.groups, {k: round(row[k], 1) for k in LABELS}, flush=True)
    return rows


if __name__ == "__main__":
    explore(__doc__, run, "unlearn_space.py", "Where relabelling finds the removed samples' neighbours", LABELS)
