"""How closely the configuration matrix's models fit their training data (``ddm.health.fit_to_training``).

Why. ``ddm unlearn`` takes the synsets' step in place of the relabelled epoch where the model fits its training data
loosely and the removal thins a class (``ddm.unlearning.loose_and_thinned``). Before moving that rule's threshold,
this says which of the scorecard's matrix runs it would reach: each configuration's model is trained again with the
matrix's own settings and seeds (``matrix.make_config``; training only, the same schedule and seeds as the matrix's
runs) and its fit ratio (training cross-entropy over a uniform guess's ``ln C``) is read at theta_tau.

    python benchmarks/matrix_fit.py --seeds 0,1,2 --out benchmarks/results/matrix-fit
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_report  # noqa: E402
from matrix import CONFIGS, HELD_OUT, make_config  # noqa: E402

import ddm  # noqa: E402
from ddm import health, progress  # noqa: E402
from ddm.train.loop import accuracy, train_model  # noqa: E402


def measure(names: list[str], seeds: list[int]) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        for seed in seeds:
            cfg, data = make_config(CONFIGS[name][0], seed, [])
            model = ddm.models.build(cfg.model, data)
            trajectory = train_model(model, data.train, cfg.train)
            fit = health.fit_to_training(model, trajectory.final, data.train, data.num_classes) or {}
            row = {"config": name, "seed": seed, "ratio": fit.get("ratio"), "train_accuracy": fit.get("accuracy"),
                   "test_accuracy": accuracy(model, data.test)}
            print(row, flush=True)
            rows.append(row)
    return rows


def render(rows: list[dict[str, Any]], out: str, command: str) -> None:
    lines = ["| configuration | seed | fit ratio | training acc. % | test acc. % |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['seed']} | {r['ratio']:.3f} | {100 * r['train_accuracy']:.1f} | "
                     f"{100 * r['test_accuracy']:.1f} |")
    top = max(rows, key=lambda r: r["ratio"])
    text = "\n".join(["# The configuration matrix's fit to its training data", "", f"    {command}", "", *lines, "",
                      f"Highest fit ratio: {top['ratio']:.3f} ({top['config']}, seed {top['seed']}).", ""])
    write_report(out, text, {"rows": rows})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default=",".join(n for n in CONFIGS if n not in HELD_OUT))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="benchmarks/results/matrix-fit")
    a = ap.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    render(measure(a.configs.split(","), [int(s) for s in a.seeds.split(",")]), a.out, "python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
