"""The rewind's guard (``emulate.unlearn_rewind_guard``): where the recorded checkpoint the unlearning's rewind lands
on has itself lost a class that theta_tau has (and the removal does not thin), the step is taken from theta_tau.

Only the draws where the guard fires differ from the rewound unlearning, so only they are scored: for every draw of
each run (the matrix's 3 draws of 4 groups and 2 whole classes, then ``--draws`` more draws of 4 random groups), the
unlearning with the guard (the default) and without it, against exact retraining in 3 data orders (the target's and
two others; retrains cached in the run's folder): test accuracy, agreement of the test predictions with each exact
retrain (mean over the orders), and the test accuracy of the classes the rewound checkpoint had lost.

    python benchmarks/unlearn_rewind_guard.py --root runs/matrix-b --configs fmnist-mlp-K40-sgd --seeds 3 \\
        --out benchmarks/results/unlearn-rewind-guard-select
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddm import progress

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402
from _results import write_report  # noqa: E402


def draws(dm: Any, num_classes: int, extra: int) -> list[tuple[str, list[int]]]:
    """The matrix's unlearning draws, then ``extra`` draws of 4 random groups (another generator than the matrix's)."""
    g = torch.Generator().manual_seed(778)
    more = [("4 groups", torch.randperm(dm.groups.num_groups, generator=g)[:4].tolist()) for _ in range(extra)]
    return M.unlearning_draws(dm, num_classes) + more


def run(name: str, seed: int, root: Path, extra: int) -> dict[str, Any]:
    cfg, data, _, dm, cache = M.open_run(root, name, seed)
    y = data.test.y

    def predict(model: torch.nn.Module) -> torch.Tensor:
        with torch.no_grad():
            return model(data.test.x).argmax(1)

    def scores(pred: torch.Tensor, exact: list[torch.Tensor], classes: list[int]) -> dict[str, Any]:
        return {"test_acc": 100 * (pred == y).float().mean().item(),
                "agreement": float(np.mean([100 * (pred == e).float().mean().item() for e in exact])),
                "classes": {c: 100 * (pred[y == c] == c).float().mean().item() for c in classes}}

    rows, n = [], 0
    for kind, rem in draws(dm, int(data.num_classes), extra):
        n += 1
        dm.config = cfg
        guarded = predict(dm.unlearn(rem, name="guard-bench"))
        dropped = (dm.last_unlearning_check or {}).get("rewind_dropped")
        if not dropped:
            continue
        dm.config = cfg.with_overrides(["emulate.unlearn_rewind_guard=false"])
        rewound = predict(dm.unlearn(rem, name="guard-bench"))
        dm.config = cfg
        exact = [cache.get(rem).argmax(1)] + [cache.get(rem, seed=s).argmax(1) for s in M.other_orders(seed)]
        classes = list(dropped["classes"])
        rows.append({"kind": kind, "groups": rem, "epoch": dropped["epoch"], "of_epochs": dropped["of_epochs"],
                     "lost_classes": classes,
                     "exact": [scores(e, exact, classes) for e in exact],
                     "guard": scores(guarded, exact, classes), "rewound": scores(rewound, exact, classes)})
    return {"draws": n, "fired": rows}


def report(results: dict[str, dict[int, dict[str, Any]]], argv: list[str], extra: int) -> str:
    lines = ["# The rewind's guard (`emulate.unlearn_rewind_guard`)", "",
             f"Command: `python benchmarks/unlearn_rewind_guard.py {' '.join(argv)}`. Per run: the matrix's 3 draws "
             f"of 4 groups and 2 whole classes, then {extra} more draws of 4 random groups; only the draws where "
             "the guard fires differ, and only they are scored, against exact retraining in 3 data orders.", "",
             "* **gap**: |test accuracy − exact's| in points (target order / mean of the 3 orders), mean over the "
             "draws where the guard fired, and how many are within 3 points of the target order's;",
             "* **agreement**: share of test predictions equal to an exact retrain's, mean over the 3 orders, in %;",
             "* **lost classes**: test accuracy of the classes the rewound checkpoint had lost (exact: mean of the "
             "3 orders).", "",
             "| configuration | seed | draws | fired | gap: rewound | gap: guard | agreement: rewound / guard "
             "(exact orders among themselves) | lost classes: exact / rewound / guard |",
             "|---|---|---|---|---|---|---|---|"]
    for name, by_seed in results.items():
        for seed, r in by_seed.items():
            f = r["fired"]
            if not f:
                lines.append(f"| {name} | {seed} | {r['draws']} | 0 | – | – | – | – |")
                continue

            def gap(key: str, f: list[dict[str, Any]] = f) -> str:
                t = [abs(d[key]["test_acc"] - d["exact"][0]["test_acc"]) for d in f]
                m = [abs(d[key]["test_acc"] - np.mean([e["test_acc"] for e in d["exact"]])) for d in f]
                return f"{np.mean(t):.2f} / {np.mean(m):.2f} ({sum(v <= 3 for v in t)}/{len(f)})"

            def agr(key: str, f: list[dict[str, Any]] = f) -> float:
                return float(np.mean([d[key]["agreement"] for d in f]))

            between = np.mean([np.mean([e["agreement"] for e in d["exact"][1:]]) for d in f])
            lost = {k: np.mean([np.mean(list(d[k]["classes"].values())) for d in f]) for k in ("guard", "rewound")}
            lost_exact = np.mean([np.mean([np.mean(list(e["classes"].values())) for e in d["exact"]]) for d in f])
            lines.append(f"| {name} | {seed} | {r['draws']} | {len(f)} | {gap('rewound')} | {gap('guard')} | "
                         f"{agr('rewound'):.1f} / {agr('guard'):.1f} ({between:.1f}) | "
                         f"{lost_exact:.0f} / {lost['rewound']:.0f} / {lost['guard']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="runs/matrix-b", help="the matrix's runs (trained where missing)")
    p.add_argument("--configs", default="fmnist-mlp-K40-sgd", help="comma-separated configuration names (matrix.py)")
    p.add_argument("--seeds", default="3", help="comma-separated seeds (3 selects; 0-2 report)")
    p.add_argument("--draws", type=int, default=20, help="draws of 4 random groups beyond the matrix's")
    p.add_argument("--out", default="benchmarks/results/unlearn-rewind-guard-select")
    args = p.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    logging.getLogger("ddm").setLevel(logging.ERROR)  # the unlearning check's warnings, once per draw
    results = {n: {int(s): run(n, int(s), Path(args.root), args.draws) for s in args.seeds.split(",")}
               for n in args.configs.split(",")}
    write_report(args.out, report(results, sys.argv[1:], args.draws), results)


if __name__ == "__main__":
    main()
