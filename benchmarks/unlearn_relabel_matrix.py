"""Relabelled fine-tuning on the matrix's unlearning draws, beside DDM's unlearning (the scorecard's reading).

For each configuration and seed of ``--root`` (matrix.py's runs, stages and retrains reused; nothing retrained but
with ``--fill-orders``): its 3 draws of 4 random groups and its 2 whole classes (``matrix.unlearning_draws``); DDM's
unlearning (``dm.unlearn``) and relabelled fine-tuning (``ddm.baselines.unlearners.relabel_knn``, one epoch; a class
without data taken out of the head as ``ddm unlearn`` does); test accuracy against exact retraining in the target's
data order (the scorecard's) and against the mean of the orders cached (3 on seed 0; ``--fill-orders`` retrains the
4-group draws in the other two orders where they are missing), the removed class's test accuracy, and how often a
retrain in another order is within 3 points of the target order's (retraining against its own bar).

    python benchmarks/unlearn_relabel_matrix.py --root runs/matrix-b --seeds 0,1,2 --out OUT
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddm.baselines.unlearners import RELABEL_AGREE, relabel_knn
from ddm.unlearning import forget_classes

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402
from _draws import over_runs, parser  # noqa: E402

#: the scorecard's nine configurations (matrix.py's default)
NINE = ",".join(n for n in M.CONFIGS if n not in M.HELD_OUT)


def run(name: str, seed: int, root: Path, agree: int = RELABEL_AGREE, fill: bool = False) -> list[dict[str, Any]]:
    cfg, data, _, dm, cache = M.open_run(root, name, seed)
    fit = dm.fitted()
    y = data.test.y
    rows = []
    for kind, rem in M.unlearning_draws(dm, int(data.num_classes)):
        exact = [cache.get(rem)] + [cache.get(rem, seed=s) for s in M.other_orders(seed)
                                    if cache.has(rem, seed=s) or (fill and kind == "4 groups")]
        ex = [float((e.argmax(1) == y).float().mean()) for e in exact]
        row: dict[str, Any] = {"config": name, "seed": seed, "kind": kind, "groups": rem, "exact": ex}
        keep = ~torch.isin(fit.groups.assignment, torch.as_tensor(rem))
        gone = sorted(set(range(int(data.num_classes))) - set(data.train.y[keep].tolist()))
        t0 = time.perf_counter()
        models = {"DDM": dm.unlearn(rem, name="relabel-matrix")}
        seconds = {"DDM": time.perf_counter() - t0}
        t0 = time.perf_counter()
        relabelled = relabel_knn(fit.model, fit.trajectory.final, data.train, keep, cfg.train, agree=agree)
        if gone:
            forget_classes(relabelled, gone)
        models["relabelled"], seconds["relabelled"] = relabelled, time.perf_counter() - t0
        for what, model in models.items():
            pred = torch.cat([model(data.test.x[s : s + 1024]).argmax(1) for s in range(0, len(y), 1024)])
            acc = float((pred == y).float().mean())
            row[what] = {"test": acc, "gap": 100 * (acc - ex[0]), "gap_mean": 100 * (acc - float(np.mean(ex))),
                         "seconds": seconds[what]}
            if kind == "class":
                m = torch.isin(y, torch.as_tensor(gone))
                row[what]["class"] = float((pred[m] == y[m]).float().mean())
        if kind == "class":
            m = torch.isin(y, torch.as_tensor(gone))
            row["exact_class"] = float((exact[0].argmax(1)[m] == y[m]).float().mean())
        rows.append(row)
        print(name, seed, kind, rem, {w: round(row[w]["gap"], 1) for w in models}, flush=True)
    return rows


def report(rows: list[dict[str, Any]], command: str) -> str:
    lines = [f"# Relabelled fine-tuning on the matrix's unlearning draws\n\n`{command}`\n",
             "4-group draws: within 3 points of exact retraining's test accuracy (target order / mean of the cached "
             "orders), mean |gap|, mean gap; class removals: test accuracy within 5 points, the removed class's "
             "accuracy.\n",
             "| configuration | DDM: within 3 (target / mean) / mean abs / mean gap | relabelled: within 3 (target / "
             "mean) / mean abs / mean gap | class removals within 5: DDM / relabelled | removed class: exact / DDM / "
             "relabelled | exact, another order within 3 of the target order's |", "|---|---|---|---|---|---|"]
    for name in [*dict.fromkeys(r["config"] for r in rows), "all"]:
        sel = [r for r in rows if name in ("all", r["config"])]
        four = [r for r in sel if r["kind"] == "4 groups"]
        cls = [r for r in sel if r["kind"] == "class"]
        cells = []
        for w in ("DDM", "relabelled"):
            g = np.array([r[w]["gap"] for r in four])
            gm = np.array([r[w]["gap_mean"] for r in four])
            cells.append(f"{int((np.abs(g) <= 3).sum())} / {int((np.abs(gm) <= 3).sum())} of {len(g)} / "
                         f"{np.abs(g).mean():.2f} / {g.mean():+.2f}")
        c5 = " / ".join(f"{sum(abs(r[w]['gap']) <= 5 for r in cls)} of {len(cls)}" for w in ("DDM", "relabelled"))
        rc = (f"{100 * np.mean([r['exact_class'] for r in cls]):.1f} / "
              + " / ".join(f"{100 * np.mean([r[w]['class'] for r in cls]):.1f}" for w in ("DDM", "relabelled"))
              if cls else "–")
        other = [abs(o - r["exact"][0]) <= 0.03 for r in four for o in r["exact"][1:]]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {c5} | {rc} | {sum(other)} of {len(other)} |")
    lines.append("\nSeconds per unlearning, mean: DDM "
                 f"{np.mean([r['DDM']['seconds'] for r in rows]):.2f}, relabelled "
                 f"{np.mean([r['relabelled']['seconds'] for r in rows]):.2f}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = parser(__doc__, configs=NINE, seeds="0")
    ap.add_argument("--agree", type=int, default=RELABEL_AGREE,
                    help="how many of the 5 neighbours must name the other class (1: a bare majority)")
    ap.add_argument("--fill-orders", action="store_true",
                    help="retrain the 4-group draws in the other two data orders where the cache lacks them")
    args = ap.parse_args()
    over_runs(args, run, "unlearn_relabel_matrix.py", report, args.agree, args.fill_orders, threads=1)


if __name__ == "__main__":
    main()
