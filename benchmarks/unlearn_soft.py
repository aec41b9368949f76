"""Soft labels for the removed samples whose neighbours disagree (an exploration on the selection seed, no default).

``ddm unlearn``'s default relabels a removed sample where 4 of its 5 nearest kept samples (raw inputs) name another
class and leaves every other removed sample out of its epoch. On fully connected networks it under-forgets where a
removal thins a class: the removed samples whose neighbours are split between their own class and others stay in
theta_tau's memory, and so do their test look-alikes, which a retrain without them gets wrong far more often
(BENCHMARKS.md, "Where the default's test gap lies"). Here those split samples are taught their neighbours' vote as a
soft label in the same epoch. Variants, each from the same draw:

* ``relabel``: the default;
* ``soft k``: the default's split, plus every removed sample it leaves out of which at least one of its ``k``
  nearest kept samples carries another class, taught the ``k`` neighbours' label distribution (its own class's share
  included; left out where all ``k`` carry its own class, so it is never taught its own label alone).

For each 4-group draw of the matrix's runs: test accuracy minus the mean of exact retraining's three data orders
(``--fill``: retrained where the cache lacks them); with ``--classes`` also the matrix's class removals.

    python benchmarks/unlearn_soft.py --seeds 3 \\
        --configs digits-convnet-K100-sgd,digits-mlp-K40-sgd,fmnist-mlp-K40-adam,fmnist-mlp-K40-sgd \\
        --out benchmarks/results/unlearn-soft-select
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ddm import devices
from ddm.baselines.unlearners import RELABEL_AGREE, RELABEL_NEIGHBOURS, _batches, knn_labels
from ddm.config import TrainConfig
from ddm.models import with_params
from ddm.train.loop import make_optimizer, set_rate

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402
from _draws import over_runs, parser, test_gap, variants_report  # noqa: E402
from unlearn_steplabel import draws  # noqa: E402

KS = (5, 10)
LABELS = ["relabel", *(f"soft {k}" for k in KS)]


def votes(x: torch.Tensor, ref_x: torch.Tensor, ref_y: torch.Tensor, k: int, classes: int) -> torch.Tensor:
    """``[N, classes]``: the label distribution of each row's ``k`` nearest rows of ``ref_x`` (raw inputs)."""
    out = []
    flat = ref_x.flatten(1)
    for s in range(0, len(x), 512):
        d = torch.cdist(x[s : s + 512].flatten(1), flat)
        idx = d.topk(k, largest=False).indices
        out.append(F.one_hot(ref_y[idx], classes).float().mean(1))
    return torch.cat(out)


def soft_epoch(model: torch.nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, targets: torch.Tensor,
               cfg: TrainConfig) -> torch.nn.Module:
    """One epoch of ``cfg``'s optimizer from ``params`` over ``x`` with probability ``targets`` (the default's
    epoch, :func:`ddm.baselines.unlearners.neggrad_plus` at alpha 1 with its schedule, on soft labels)."""
    net = with_params(model, params)
    net.train()
    dev = devices.of(net)
    opt = make_optimizer(net, cfg)
    total = math.ceil(len(x) / cfg.batch_size)
    for step, idx in enumerate(_batches(len(x), cfg, 0)):
        set_rate(opt, cfg, step, total)
        loss = F.cross_entropy(net(x[idx].to(dev)), targets[idx].to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    return net


def run(name: str, seed: int, root: Path, fill: bool = False, classes: bool = False) -> list[dict[str, Any]]:
    cfg, data, _, dm, cache = M.open_run(root, name, seed)
    fit = dm.fitted()
    final = {k: v.detach() for k, v in fit.trajectory.final.items()}
    C = int(data.num_classes)
    train = data.train
    rows = []
    for kind, d in draws(dm, cache, data, seed, fill, classes):
        gone = torch.nonzero(~d.keep).flatten()
        hard = knn_labels(train.x[gone], train.x[d.keep], train.y[d.keep], RELABEL_NEIGHBOURS,
                          agree=RELABEL_AGREE).to(train.y)
        moved = (hard >= 0) & (hard != train.y[gone])
        row: dict[str, Any] = {"config": name, "seed": seed, "kind": kind, "groups": d.groups, "exact": d.reference,
                               "exact_orders": d.exact, "moved": int(moved.sum()), "removed": len(gone)}
        for k in (0, *KS):
            targets = F.one_hot(train.y, C).float()
            use = d.keep.clone()
            targets[gone[moved]] = F.one_hot(hard[moved], C).float()
            use[gone[moved]] = True
            if k:
                v = votes(train.x[gone], train.x[d.keep], train.y[d.keep], k, C)
                split = ~moved & (v.gather(1, train.y[gone][:, None])[:, 0] < 1)
                targets[gone[split]] = v[split]
                use[gone[split]] = True
                row[f"soft {k} taught"] = int(split.sum())
            rows_used = torch.nonzero(use).flatten()
            model = soft_epoch(fit.model, final, train.x[rows_used], targets[rows_used], cfg.train)
            row[f"soft {k}" if k else "relabel"] = test_gap(model, data.test, d.gone, d.reference)
        rows.append(row)
        print(name, seed, kind, d.groups, {k: round(row[k], 1) for k in LABELS},
              {k: v for k, v in row.items() if k.endswith("taught") or k in ("moved", "removed")}, flush=True)
    return rows


def report(rows: list[dict[str, Any]], command: str) -> str:
    four = [r for r in rows if r["kind"] == "4 groups"]
    text = variants_report("Soft labels for the removed samples whose neighbours disagree", LABELS, four, command)
    if all(len(r["exact_orders"]) > 1 for r in four):
        text += ("\nAgainst exact retraining in the target's order alone: within 3 points "
                 + ", ".join(f"{v} {sum(abs(r[v] + 100 * (r['exact'] - r['exact_orders'][0])) <= 3 for r in four)}"
                             for v in LABELS) + f" of {len(four)}.\n")
    by_config: dict[str, list[dict[str, Any]]] = {}
    for r in four:
        by_config.setdefault(r["config"], []).append(r)
    text += "\n| configuration | " + " | ".join(f"{v}: within 3 / mean abs gap" for v in LABELS) + " |\n"
    text += "|---" * (len(LABELS) + 1) + "|\n"
    for name, rs in by_config.items():
        text += f"| {name} | " + " | ".join(
            f"{sum(abs(r[v]) <= 3 for r in rs)} of {len(rs)} / {sum(abs(r[v]) for r in rs) / len(rs):.2f}"
            for v in LABELS) + " |\n"
    cls = [r for r in rows if r["kind"] == "class"]
    if cls:
        text += (f"\nClass removals ({len(cls)}; against exact retraining in the target's order): within 5 points "
                 + ", ".join(f"{v} {sum(abs(r[v]) <= 5 for r in cls)}" for v in LABELS) + "\n")
    return text


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--fill", action="store_true", help="retrain the other two data orders where the cache lacks them")
    ap.add_argument("--classes", action="store_true", help="also the matrix's class removals")
    args = ap.parse_args()
    over_runs(args, run, "unlearn_soft.py", report, args.fill, args.classes, threads=2)


if __name__ == "__main__":
    main()
