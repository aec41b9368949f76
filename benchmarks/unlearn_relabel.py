"""Relabelled fine-tuning beside DDM's unlearning, against exact retraining in 3 data orders.

For each workspace and draw of groups: DDM's unlearning (the synsets' Newton step, ``dm.unlearn``), relabelled
fine-tuning (``ddm.baselines.unlearners.relabel_knn``: one epoch of the training optimizer over the training set with
the removed samples relabelled by their 5 nearest kept samples on the raw inputs) and, as its ablation, fine-tuning on
the rest for the same epoch (no relabelling); each scored by ``ddm.evaluation.check.verify_unlearning`` (the retrains
``ddm unlearn --verify`` caches in the workspace): test accuracy minus the mean of exact retraining's in 3 orders,
agreement with exact retraining, accuracy on the removed samples. Draws: ``WS@a,b,c,d;e,f,g,h;...`` names a
workspace's draws, else 6 random draws of 4 groups (``random.Random(--draw-seed)``).

    python benchmarks/unlearn_relabel.py 'runs/p24/mlp20@15,5,9,6;13,8,17,7' runs/p24/dmlp20 --out OUT
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_report  # noqa: E402

from ddm.baselines.unlearners import (  # noqa: E402
    RELABEL_AGREE,
    RELABEL_SOFT_NEIGHBOURS,
    finetune_rest,
    relabel_knn,
)
from ddm.cli.common import load_data  # noqa: E402
from ddm.evaluation.check import verify_unlearning  # noqa: E402
from ddm.pipeline import DistilledDatamodel  # noqa: E402
from ddm.unlearning import forget_classes  # noqa: E402

METHODS = ("DDM", "relabelled fine-tuning", "fine-tune on the rest")


def unlearned(dm: DistilledDatamodel, data: Any, draw: list[int], method: str, agree: int, epochs: float = 1.0,
              lr_scale: float = 1.0, soft: int = RELABEL_SOFT_NEIGHBOURS) -> torch.nn.Module:
    if method == "DDM":
        return dm.unlearn(draw, name="relabel-benchmark")
    fit = dm.fitted()
    keep = ~torch.isin(fit.groups.assignment, torch.as_tensor(draw))
    if method == "relabelled fine-tuning":
        cfg = replace(dm.config.train, lr=dm.config.train.lr * lr_scale)
        model = relabel_knn(fit.model, fit.trajectory.final, data.train, keep, cfg, epochs=epochs, agree=agree,
                            soft=soft)
    else:
        model = finetune_rest(fit.model, fit.trajectory.final, data.train, keep, dm.config.train)
    gone = sorted(set(range(int(data.num_classes))) - set(data.train.y[keep].tolist()))
    if gone:  # as ddm unlearn does: a class without training data leaves the head
        forget_classes(model, gone)
    return model


def run(ws: str, draws: list[list[int]], orders: int, agree: int = RELABEL_AGREE, epochs: float = 1.0,
        lr_scale: float = 1.0, soft: int = RELABEL_SOFT_NEIGHBOURS) -> list[dict[str, Any]]:
    dm = DistilledDatamodel(ws).load()
    data = load_data(dm.config.data, ws)
    rows = []
    for draw in draws:
        row: dict[str, Any] = {"workspace": ws, "groups": draw}
        for method in METHODS:
            t0 = time.perf_counter()
            model = unlearned(dm, data, draw, method, agree, epochs, lr_scale, soft)
            seconds = time.perf_counter() - t0
            v = verify_unlearning(dm, data, draw, model, orders)
            row[method] = {"gap": v["test_gap_points"], "test": v["unlearned"]["test_accuracy"],
                           "agreement": float(np.mean(v["unlearned"]["test_agreement"])),
                           "removed": v["unlearned"]["removed_accuracy"], "seconds": seconds}
            row["exact"] = {"test": v["exact"]["test_accuracy"], "removed": v["exact"]["removed_accuracy"]}
        rows.append(row)
        print(ws, draw, {m: round(row[m]["gap"], 1) for m in METHODS}, flush=True)
    return rows


def report(rows: list[dict[str, Any]], command: str) -> str:
    lines = [f"# Relabelled fine-tuning beside DDM's unlearning\n\n`{command}`\n",
             "Test accuracy minus exact retraining's (mean of 3 data orders), points; agreement with exact; removed "
             "samples' accuracy.\n",
             "| workspace | groups | exact test (orders) | "
             + " | ".join(f"{m}: gap / agree / removed" for m in METHODS) + " |",
             "|---|---|---|" + "---|" * len(METHODS)]
    for r in rows:
        ex = ", ".join(f"{100 * t:.1f}" for t in r["exact"]["test"])
        cells = [f"{r[m]['gap']:+.1f} / {100 * r[m]['agreement']:.1f} / {100 * r[m]['removed']:.1f}" for m in METHODS]
        lines.append(f"| {r['workspace']} | {','.join(map(str, r['groups']))} | {ex} | " + " | ".join(cells) + " |")
    heads = [f"{m}: within 3 / mean abs gap / mean gap / agreement" for m in METHODS]
    lines.append("\n| workspace | " + " | ".join(heads) + " |")
    lines.append("|---|" + "---|" * len(METHODS))
    for ws in [*dict.fromkeys(r["workspace"] for r in rows), "all"]:
        sel = [r for r in rows if ws in ("all", r["workspace"])]
        cells = []
        for m in METHODS:
            g = np.array([r[m]["gap"] for r in sel])
            a = np.mean([r[m]["agreement"] for r in sel])
            cells.append(f"{int((np.abs(g) <= 3).sum())} of {len(g)} / {np.abs(g).mean():.2f} / {g.mean():+.2f} / "
                         f"{100 * a:.1f}")
        lines.append(f"| {ws} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workspaces", nargs="+", help="WS or WS@a,b,c,d;e,f,g,h (its draws)")
    ap.add_argument("--draw-seed", type=int, default=2025)
    ap.add_argument("--orders", type=int, default=3)
    ap.add_argument("--agree", type=int, default=RELABEL_AGREE,
                    help="how many of the 5 neighbours must name the other class (1: a bare majority, the first "
                         "version's; the default: the library's)")
    ap.add_argument("--epochs", type=float, default=1.0, help="epochs of the relabelled fine-tuning (the library's 1)")
    ap.add_argument("--lr-scale", type=float, default=1.0, help="its learning rate as a multiple of train.lr")
    ap.add_argument("--soft", type=int, default=RELABEL_SOFT_NEIGHBOURS,
                    help="the neighbours whose label shares the removed samples with a split neighbourhood are taught "
                         "(0: hard labels alone, the default of 0.24-0.27; the default: the library's)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows = []
    for spec in args.workspaces:
        ws, _, given = spec.partition("@")
        if given:
            draws = [[int(g) for g in d.split(",")] for d in given.split(";")]
        else:
            k = DistilledDatamodel(ws).load().fitted().groups.num_groups
            rng = random.Random(args.draw_seed)
            draws = [rng.sample(range(k), 4) for _ in range(6)]
        rows += run(ws, draws, args.orders, args.agree, args.epochs, args.lr_scale, args.soft)
    write_report(args.out, report(rows, "python benchmarks/unlearn_relabel.py " + " ".join(sys.argv[1:])), rows)


if __name__ == "__main__":
    main()
