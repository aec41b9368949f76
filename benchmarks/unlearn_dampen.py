"""Selective dampening before relabelled fine-tuning (an exploration on the selection seed, no default).

``ddm unlearn``'s default (one epoch of ``train.*`` from theta_tau over ``relabelled_split``) misses on fully connected
networks by under-forgetting: theta_tau's features keep the removed groups' modes, and their test look-alikes stay
right where a retrain gets many of them wrong (BENCHMARKS.md, "Where the default's test gap lies"). A shrink toward
theta_0 lowered every draw alike. Selective synaptic dampening (Foster et al., 2023) shrinks only the weights the
removed samples rely on far more than the training data as a whole: with the diagonal Fisher importances
``I_f = E_removed[g^2]`` and ``I_D = E_train[g^2]`` at theta_tau (per-sample gradients of the cross-entropy), every
weight with ``I_f > alpha I_D`` is multiplied by ``min(lambda I_D / I_f, 1)`` (lambda = 1 here). Variants, each from
the same draw:

* ``relabel``: the default;
* ``dampen A + relabel``: dampening at alpha = A, then the default's epoch from there;
* ``dampen 10``: dampening alone (no epoch; a class left without data taken out of the head);
* ``outputs A + relabel``: the same with the importances of the logits' squared norm (label-free, as Memory Aware
  Synapses measure them), which do not vanish for the samples theta_tau fits.

For each 4-group draw of the matrix's runs (``matrix.unlearning_draws``): test accuracy minus the mean of exact
retraining's three data orders (retrained where the cache lacks them).

    python benchmarks/unlearn_dampen.py --seeds 3 \\
        --configs digits-convnet-K100-sgd,digits-mlp-K40-sgd,fmnist-mlp-K40-adam,fmnist-mlp-K40-sgd \\
        --out benchmarks/results/unlearn-dampen-select
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from ddm.baselines.unlearners import relabelled_split, train_relabelled

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402
from _draws import over_runs, parser, test_gap, variants_report  # noqa: E402

ALPHAS = (3.0, 10.0)
OUTPUT_ALPHAS = (1.5, 2.0, 3.0)
LABELS = ["relabel", *(f"dampen {a:g} + relabel" for a in ALPHAS), "dampen 10",
          *(f"outputs {a:g} + relabel" for a in OUTPUT_ALPHAS)]


def importances(model: torch.nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                chunk: int = 256, kind: str = "fisher") -> dict[str, torch.Tensor]:
    """Mean squared per-sample gradient at ``params`` of the cross-entropy (``fisher``: the diagonal empirical
    Fisher, which vanishes for the samples the model fits) or of the logits' squared norm (``outputs``: how much each
    sample's output depends on the weight, label-free, as Memory Aware Synapses measure it)."""
    model.eval()

    def loss(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        z = functional_call(model, p, (xi[None],))
        return F.cross_entropy(z, yi[None]) if kind == "fisher" else (z ** 2).sum()

    total = {k: torch.zeros_like(v) for k, v in params.items()}
    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    for s in range(0, len(x), chunk):
        g = per_sample(params, x[s : s + chunk], y[s : s + chunk])
        for k in total:
            total[k] += (g[k] ** 2).sum(0)
    return {k: v / len(x) for k, v in total.items()}


def dampened(params: dict[str, torch.Tensor], whole: dict[str, torch.Tensor], removed: dict[str, torch.Tensor],
             alpha: float, lam: float = 1.0) -> tuple[dict[str, torch.Tensor], float]:
    """``params`` with every weight whose removed-sample importance exceeds ``alpha`` x the whole data's scaled by
    ``min(lam I_D / I_f, 1)``; and the share of weights touched."""
    out, touched, count = {}, 0, 0
    for k, v in params.items():
        hit = removed[k] > alpha * whole[k]
        scale = torch.where(hit, (lam * whole[k] / removed[k].clamp(min=1e-30)).clamp(max=1.0), torch.ones_like(v))
        out[k] = v * scale
        touched += int(hit.sum())
        count += v.numel()
    return out, touched / max(count, 1)


def run(name: str, seed: int, root: Path) -> list[dict[str, Any]]:
    cfg, data, _, dm, cache = M.open_run(root, name, seed)
    fit = dm.fitted()
    final = {k: v.detach() for k, v in fit.trajectory.final.items()}
    y = data.test.y
    whole = importances(fit.model, final, data.train.x, data.train.y)
    whole_out = importances(fit.model, final, data.train.x, data.train.y, kind="outputs")
    rows = []
    for kind, rem in M.unlearning_draws(dm, int(data.num_classes)):
        if kind != "4 groups":
            continue
        exact = [cache.get(rem)] + [cache.get(rem, seed=s) for s in M.other_orders(seed)]
        reference = float(torch.tensor([float((e.argmax(1) == y).float().mean()) for e in exact]).mean())
        keep = ~torch.isin(fit.groups.assignment, torch.as_tensor(rem))
        gone = sorted(set(range(int(data.num_classes))) - set(data.train.y[keep].tolist()))
        out = torch.nonzero(~keep).flatten()
        removed = importances(fit.model, final, data.train.x[out], data.train.y[out])
        split, _ = relabelled_split(data.train, keep)
        row: dict[str, Any] = {"config": name, "seed": seed, "groups": rem, "exact": reference}
        row["relabel"] = test_gap(train_relabelled(fit.model, final, split, cfg.train), data.test, gone, reference)
        for a in ALPHAS:
            start, share = dampened(final, whole, removed, a)
            row[f"touched {a:g}"] = share
            row[f"dampen {a:g} + relabel"] = test_gap(train_relabelled(fit.model, start, split, cfg.train),
                                                      data.test, gone, reference)
        removed_out = importances(fit.model, final, data.train.x[out], data.train.y[out], kind="outputs")
        for a in OUTPUT_ALPHAS:
            start, share = dampened(final, whole_out, removed_out, a)
            row[f"touched outputs {a:g}"] = share
            row[f"outputs {a:g} + relabel"] = test_gap(train_relabelled(fit.model, start, split, cfg.train),
                                                       data.test, gone, reference)
        start, _ = dampened(final, whole, removed, 10.0)
        alone = copy.deepcopy(fit.model)
        alone.load_state_dict({**alone.state_dict(), **start})
        row["dampen 10"] = test_gap(alone, data.test, gone, reference)
        rows.append(row)
        print(name, seed, rem, {k: round(row[k], 1) for k in LABELS},
              {k: round(v, 4) for k, v in row.items() if k.startswith("touched")}, flush=True)
    return rows


def report(rows: list[dict[str, Any]], command: str) -> str:
    return variants_report("Selective dampening before relabelled fine-tuning", LABELS, rows, command)


def main() -> None:
    over_runs(parser(__doc__).parse_args(), run, "unlearn_dampen.py", report, threads=1)


if __name__ == "__main__":
    main()
