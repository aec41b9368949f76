"""On what scale would the schedule effect have to be added to DDM? (a diagnostic)

Exact retraining without a fraction f of the training samples keeps the number of epochs, so it takes f fewer
optimizer steps. ``schedule_effect.py`` found that this decides the sign of other-class LDS on the weight-decayed
momentum ConvNet, and that adding it to DDM (the trajectory moved back by the steps a retrain skips) fixes that
configuration and costs others, with no detector of the regime in sight. This script asks whether the missing
piece is a detector or DDM's scale: DDM's predicted loss changes are far smaller than retraining's, so anything
added on retraining's own scale drowns them. It scores, on the validation targets of a run (loss space: each
subset's rewound loss is the target's loss at epoch tau (1 - f), the rule ``emulate.unlearn_rewind`` applies to
unlearning):

* ``count effect only``: each subset's predicted loss is the target's loss at the rewound checkpoint (a function of
  the removed fraction alone, the same for every subset of that size);
* ``DDM + count effect``: DDM's predicted loss (``other_class_scale=1``, as the emulation gives it) plus that;
* the slopes exact retraining implies: per target, the least-squares fit
  ``loss ~ a + b_DDM DDM + b_count count``, medians over targets (1 and 1: both on retraining's scale);
* ``b_DDM DDM + count effect``: DDM put on retraining's scale with that median slope. It is fitted on the same
  retrains it is scored on (in-sample): an upper bound of what a calibrated scale could give, not a method;
* a head-only TracIn over the recorded checkpoints (per epoch, lr / batch / (1 - momentum) times the product of
  the target's and the group's last-layer gradients) as a candidate calibrator: its implied slope, and the median
  ratio of its weights' norm to DDM's. If its slope were the same everywhere, ratio x slope would estimate b_DDM.

    python benchmarks/count_effect.py --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd \\
        --out benchmarks/results/count-effect-selection
"""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

from ddm.distill.head import Head  # noqa: E402

#: rows that hold numbers, not an (LDS, other-class LDS) pair
NUMBERS = ("implied b_DDM, b_count", "head-TracIn: implied slope, norm ratio to DDM")


def head_tracin(dm: Any, cfg: Any, data: Any, targets: Any) -> torch.Tensor:
    """``[T, K]``: the first-order loss increase of each target when a group's last-layer gradient steps are taken
    out of the recorded training, summed over the checkpoints (SGD's displacement per epoch, momentum's
    1 / (1 - m) included; Adam's preconditioning is not)."""
    tr, head, groups = dm.trajectory, Head.of(dm.model), dm.groups
    C, K = int(data.num_classes), groups.num_groups
    rate = cfg.train.lr / cfg.train.batch_size / (1 - cfg.train.momentum)
    out = torch.zeros(len(targets), K, dtype=torch.float64)
    with torch.no_grad():
        for t in range(1, len(tr)):
            p = tr[t]
            w = head.matrix(p).double()
            hx = head.features(data.train.x, p).double()
            dx = (hx @ w.T).softmax(-1) - F.one_hot(data.train.y, C).double()
            per_group = torch.zeros(K, C, hx.shape[1], dtype=torch.float64)
            per_group.index_add_(0, groups.assignment, torch.einsum("nc,nd->ncd", dx, hx))
            ht = head.features(targets.x, p).double()
            dt = (ht @ w.T).softmax(-1) - F.one_hot(targets.y, C).double()
            out += (tr.epochs[t] - tr.epochs[t - 1]) * rate * torch.einsum("tc,td,kcd->tk", dt, ht, per_group)
    return out


def run(name: str, seed: int, root: Path, args: Namespace) -> dict[str, Any]:
    cfg, data, _, dm, cache = M.open_run(root, name, seed)
    v = M.ValidationTargets(dm, cache, data, seed)
    out: dict[str, Any] = v.baselines(dm, "count-effect")
    attr = dm.attribute(v.targets, "dist2", name="count-effect", other_class_scale=1.0)
    sizes = dm.groups.sizes().double()
    effect_at = M.rewound_losses(dm, v.targets)

    def count(keep: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
        # each subset's loss at tau (1 - f), f the removed fraction, minus at theta_tau
        return torch.stack([effect_at(1 - float(sizes[k].sum() / sizes.sum()))[sel] for k in keep])

    def ddm_pred(keep: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
        return attr.predict(keep)[:, sel, 0]

    out["DDM, other classes x1"] = v.score(ddm_pred)
    out["count effect only"] = v.score(count)
    out["DDM + count effect"] = v.score(lambda k, s: ddm_pred(k, s) + count(k, s))
    every = torch.arange(len(v.rows))
    actual = v.retrained(v.keep, every)
    slopes = M.implied_slopes(actual, ddm_pred(v.keep, every), count(v.keep, every)).median(0).values
    b = float(slopes[0])
    out["implied b_DDM, b_count"] = (round(b, 3), round(float(slopes[1]), 3))
    out["b_DDM x DDM + count effect (in-sample)"] = v.score(lambda k, s: b * ddm_pred(k, s) + count(k, s))
    tracin = -head_tracin(dm, cfg, data, v.targets).float()  # keep-weights: keeping a helpful group lowers the loss
    out["head-TracIn"] = v.score(lambda k, s: k.float() @ tracin[s].T)
    slope_t = float(M.implied_slopes(actual, v.keep.float() @ tracin.T).median())
    ratio = float((tracin.norm(dim=1) / attr.weights[..., 0].norm(dim=1)).median())
    out["head-TracIn: implied slope, norm ratio to DDM"] = (round(slope_t, 3), round(ratio, 1))
    print(name, seed, out, flush=True)
    return out


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/count-effect-selection",
                                            "digits-convnet-K100-sgd,fmnist-mlp-K40-sgd")
    rows = list(next(iter(results.values())))
    lines = M.diagnostic_head("The data-count effect: retraining with fewer samples takes fewer steps (diagnostic)",
                              args, "validation targets; LDS / other-class LDS against the retrains in the target's "
                              "data order (rows " + ", ".join(f"'{r}'" for r in NUMBERS) + ": two numbers).", rows)
    for n in names:
        lines.append(f"| {n} | " + " | ".join(
            f"{results[n][r][0]:.3g}, {results[n][r][1]:.3g}" if r in NUMBERS
            else f"{results[n][r][0]:+.3f} / {results[n][r][1]:+.3f}" for r in rows) + " |")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
