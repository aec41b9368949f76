"""Where relabelled fine-tuning's test gap to exact retraining lies, and whether a retrain-free memory check sees it.

A check that needs no retrain, common in the unlearning literature: does the unlearned model still get its removed
samples right more often than unseen data like them? Here "unseen data like them" are the removed groups'
*look-alikes*: the test samples whose nearest training sample (raw inputs, as the relabelling's neighbours) lies in a
removed group. For each 4-group draw of the matrix's runs (``matrix.unlearning_draws``; stages and retrains reused,
nothing retrained) and ``ddm unlearn``'s default (``relabel_knn``, 4 of 5 neighbours), it records:

* the memory gap: the unlearned model's accuracy on the removed samples minus its accuracy on the look-alikes;
* the look-alikes' share of the test gap: (unlearned minus exact retraining's accuracy on the look-alikes, mean of
  the cached data orders) times their share of the test split, in points;
* the test gap (against the mean of exact retraining's orders), as the scorecard reads it.

It reports how well each of the first two follows the test gap (Pearson correlation over the draws) and the misses.
A diagnostic after 0.24, used for no default:

    python benchmarks/unlearn_memory.py --seeds 0,1,2 --out benchmarks/results/unlearn-memory
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddm.baselines.unlearners import relabel_knn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402
from _draws import four_group_draws, over_runs, parser, test_gap  # noqa: E402

#: the scorecard's nine configurations (matrix.py's default)
NINE = ",".join(n for n in M.CONFIGS if n not in M.HELD_OUT)


def _predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[s : s + 1024]).argmax(1) for s in range(0, len(x), 1024)])


def run(name: str, seed: int, root: Path) -> list[dict[str, Any]]:
    cfg, data, _, dm, cache = M.open_run(root, name, seed)
    fit = dm.fitted()
    y = data.test.y
    nearest = torch.cat([torch.cdist(data.test.x[s : s + 512].flatten(1), data.train.x.flatten(1)).argmin(1)
                         for s in range(0, len(y), 512)])
    target = _predict(fit.model, data.test.x)
    rows = []
    for d in four_group_draws(dm, cache, data, seed):
        look = torch.isin(fit.groups.assignment[nearest], torch.as_tensor(d.groups))
        model = relabel_knn(fit.model, fit.trajectory.final, data.train, d.keep, cfg.train)
        gap = test_gap(model, data.test, d.gone, d.reference)  # takes classes without data out of the head first
        pred = _predict(model, data.test.x)
        removed = ~d.keep

        def acc(p: torch.Tensor, m: torch.Tensor = look) -> float:
            return float((p[m] == y[m]).float().mean()) if m.any() else float("nan")

        row = {"config": name, "seed": seed, "groups": d.groups, "gap": gap, "look_alikes": int(look.sum()),
               "test_size": len(y), "removed": int(removed.sum()),
               "unlearned_removed": float((_predict(model, data.train.x[removed]) == data.train.y[removed])
                                          .float().mean()),
               "unlearned_look": acc(pred), "target_look": acc(target),
               "exact_look": float(np.mean([acc(e.argmax(1)) for e in d.logits]))}
        row["memory_gap"] = 100 * (row["unlearned_removed"] - row["unlearned_look"])
        row["look_share"] = 100 * (row["unlearned_look"] - row["exact_look"]) * row["look_alikes"] / len(y)
        rows.append(row)
        print(name, seed, d.groups, f"gap {gap:+.2f}, memory {row['memory_gap']:+.1f}, look-alikes' share "
              f"{row['look_share']:+.2f}", flush=True)
    return rows


def report(rows: list[dict[str, Any]], command: str) -> str:
    g = np.array([r["gap"] for r in rows])
    mem = np.array([r["memory_gap"] for r in rows])
    share = np.array([r["look_share"] for r in rows])
    lines = [f"# Where relabelled fine-tuning's test gap lies, and a memory check\n\n`{command}`\n",
             f"{len(rows)} draws; test gap against the mean of exact retraining's orders: within 3 points on "
             f"{int((np.abs(g) <= 3).sum())}, mean |gap| {np.abs(g).mean():.2f}.\n",
             "| reading | mean | correlation with the test gap |", "|---|---|---|",
             f"| memory gap: accuracy on the removed samples minus on their look-alikes (points) | {mem.mean():+.2f} "
             f"| {np.corrcoef(g, mem)[0, 1]:+.2f} |",
             f"| the look-alikes' share of the test gap (points) | {share.mean():+.2f} | "
             f"{np.corrcoef(g, share)[0, 1]:+.2f} |",
             f"| the rest of the test split's share (points) | {(g - share).mean():+.2f} | "
             f"{np.corrcoef(g, g - share)[0, 1]:+.2f} |",
             "\nAccuracy on the look-alikes, mean over draws: the target "
             f"{100 * np.nanmean([r['target_look'] for r in rows]):.1f}%, the unlearned model "
             f"{100 * np.nanmean([r['unlearned_look'] for r in rows]):.1f}%, exact retraining "
             f"{100 * np.nanmean([r['exact_look'] for r in rows]):.1f}%; on the removed samples the unlearned model "
             f"{100 * np.mean([r['unlearned_removed'] for r in rows]):.1f}%.\n",
             "Draws more than 3 points from exact retraining:\n",
             "| configuration | seed | groups | test gap | memory gap | look-alikes (share of test) | look-alikes: "
             "target / unlearned / exact | look-alikes' share of the gap |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if abs(r["gap"]) > 3:
            lines.append(f"| {r['config']} | {r['seed']} | {r['groups']} | {r['gap']:+.2f} | {r['memory_gap']:+.1f} | "
                         f"{r['look_alikes']} ({100 * r['look_alikes'] / r['test_size']:.1f}%) | "
                         f"{100 * r['target_look']:.1f} / {100 * r['unlearned_look']:.1f} / "
                         f"{100 * r['exact_look']:.1f} | {r['look_share']:+.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parser(__doc__, configs=NINE, seeds="0").parse_args()
    over_runs(args, run, "unlearn_memory.py", report, threads=1)


if __name__ == "__main__":
    main()
