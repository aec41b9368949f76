"""How close an unlearner could get to the 4-group unlearning target: the soft-label runs' draws read again.

The unlearning target asks the unlearned model's test accuracy, 4 random groups removed, to be within 3 points of
exact retraining in the target's data order. ``unlearn_soft.py`` stored, for each draw, that retrain and two in other
data orders. Here three predictors of the target order's retrain are held to the same bar:

* ``ddm unlearn``'s relabelled fine-tuning with soft labels (the default since 0.28);
* one exact retrain in another data order (each of the two: 2 per draw), what retraining reaches as an unlearner;
* the mean of the two other orders' retrains: a stand-in for the expected retrain, the best any unlearner that does
  not know the target's data order can aim at (its own noise is half a retrain's variance).

Reads stored results only (no training):

    python benchmarks/unlearn_oracle.py benchmarks/results/unlearn-soft-matrix.json \
        benchmarks/results/unlearn-soft-fresh.json --out benchmarks/results/unlearn-oracle
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from ddm.workspace import atomic_write_text  # noqa: E402

BAR = 3.0  # points
METHOD = "soft 10"


def gaps(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per 4-group draw, in points against the target order's retrain: the unlearner's gap, the other orders' own
    and the mean of the two other orders'."""
    out: dict[str, list[float]] = {"unlearner": [], "another order": [], "mean of the other two orders": []}
    for r in rows:
        if r["kind"] != "4 groups" or len(r.get("exact_orders", [])) != 3:
            continue
        target, *others = (100 * o for o in r["exact_orders"])
        mean = (target + sum(others)) / 3
        out["unlearner"].append(r[METHOD] + mean - target)  # stored against the mean of the three orders
        out["another order"] += [o - target for o in others]
        out["mean of the other two orders"].append(sum(others) / 2 - target)
    return out


def table(name: str, g: dict[str, list[float]]) -> list[str]:
    lines = [f"### {name}", "",
             "| predictor of the target order's retrain | within 3 points | mean abs gap | sd of gap |",
             "|---|---|---|---|"]
    for k, v in g.items():
        label = f"`ddm unlearn` ({METHOD})" if k == "unlearner" else k
        within = sum(abs(x) <= BAR for x in v)
        lines.append(f"| {label} | {within} of {len(v)} | {statistics.mean(abs(x) for x in v):.2f} | "
                     f"{statistics.pstdev(v):.2f} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", help="unlearn_soft.py result files (.json)")
    p.add_argument("--out", required=True, help="output stem (.md and .json are appended)")
    args = p.parse_args(argv)
    report: dict[str, Any] = {}
    lines = ["# How close an unlearner could get: the soft-label draws against three data orders", "",
             f"Command: `python benchmarks/unlearn_oracle.py {' '.join(args.results)} --out {args.out}`", ""]
    for path in args.results:
        g = gaps(json.loads(Path(path).read_text()))
        report[path] = g
        lines += table(Path(path).stem, g)
    atomic_write_text(Path(args.out + ".md"), "\n".join(lines))
    atomic_write_text(Path(args.out + ".json"), json.dumps(report, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
