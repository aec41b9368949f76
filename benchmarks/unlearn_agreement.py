"""An unlearning setting's values scored by agreement with exact retraining as well as by test accuracy.

``unlearn_rewind.py`` compares values by the gap in test accuracy to exact retraining, the issue's measure. Two
models can have the same test accuracy and differ on many test predictions; this scores each value, on the matrix's
unlearning draws (3 draws of 4 groups, 2 whole classes; retrains cached in the run's folder, 3 data orders), by:
the gap in test accuracy (target order; how many within 3 points) and the share of test predictions equal to each
exact retrain's (mean over the 3 orders; the exact orders among themselves beside it).

    python benchmarks/unlearn_agreement.py --root runs/matrix-b --seeds 0 --grid emulate.unlearn_rewind=0,1 \\
        --out benchmarks/results/unlearn-agreement-rewind
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
from _results import write_report  # noqa: E402
from unlearn_rewind import unlearned  # noqa: E402


def run(name: str, seed: int, root: Path, key: str, values: list[str]) -> list[dict[str, Any]]:
    rows = []
    for kind, rem, data, logits, models in unlearned(name, seed, root, key, values):
        y, exact = data.test.y, [e.argmax(1) for e in logits]
        row: dict[str, Any] = {"kind": kind, "groups": rem,
                               "exact_acc": [100 * (e == y).float().mean().item() for e in exact],
                               "exact_between": float(np.mean([100 * (exact[i] == exact[j]).float().mean().item()
                                                               for i in range(3) for j in range(i + 1, 3)]))}
        for v, model in models.items():
            with torch.no_grad():
                pred = model(data.test.x).argmax(1)
            row[v] = {"acc": 100 * (pred == y).float().mean().item(),
                      "agreement": float(np.mean([100 * (pred == e).float().mean().item() for e in exact]))}
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="runs/matrix-b")
    p.add_argument("--configs", default="fmnist-mlp-K40-sgd,digits-mlp-K40-sgd,fmnist-mlp-K40-adam,"
                                        "digits-convnet-K100-sgd,digits-convnet-K40-momentum-wd")
    p.add_argument("--seeds", default="0")
    p.add_argument("--grid", default="emulate.unlearn_rewind=0,1", help="KEY=V1,V2,...: the values compared")
    p.add_argument("--out", default="benchmarks/results/unlearn-agreement-rewind")
    args = p.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    logging.getLogger("ddm").setLevel(logging.ERROR)
    key, _, vals = args.grid.partition("=")
    values = vals.split(",")
    results = {n: {int(s): run(n, int(s), Path(args.root), key, values) for s in args.seeds.split(",")}
               for n in args.configs.split(",")}
    lines = [f"# {key}: test accuracy and agreement with exact retraining", "",
             f"Command: `python benchmarks/unlearn_agreement.py {' '.join(sys.argv[1:])}`. The matrix's unlearning "
             "draws (3 of 4 groups, 2 whole classes) per run; exact retraining in 3 data orders.", "",
             "* **gap**: mean |test accuracy − exact's (target order)| in points over the 4-group draws, and how many "
             "are within 3;",
             "* **agreement**: share of test predictions equal to an exact retrain's (mean over the 3 orders), mean "
             "over all draws, in %; **exact**: the 3 orders' agreement among themselves.", "",
             "| configuration | seed | " + " | ".join(f"{key}={v}: gap / agreement" for v in values) + " | exact |",
             "|---|---|" + "---|" * (len(values) + 1)]
    pooled: dict[str, list[float]] = {v: [] for v in values}
    for name, by_seed in results.items():
        for seed, rows in by_seed.items():
            four = [r for r in rows if r["kind"] == "4 groups"]
            cells = []
            for v in values:
                gaps = [abs(r[v]["acc"] - r["exact_acc"][0]) for r in four]
                agr = float(np.mean([r[v]["agreement"] for r in rows]))
                pooled[v].append(agr)
                cells.append(f"{np.mean(gaps):.2f} ({sum(g <= 3 for g in gaps)}/{len(gaps)}) / {agr:.1f}")
            between = float(np.mean([r["exact_between"] for r in rows]))
            lines.append(f"| {name} | {seed} | " + " | ".join(cells) + f" | {between:.1f} |")
    lines += ["", "Mean agreement over the runs: " + ", ".join(f"{v}: {np.mean(a):.2f}" for v, a in pooled.items())]
    write_report(args.out, "\n".join(lines) + "\n", results)


if __name__ == "__main__":
    main()
