"""Unlearning with tempered synsets (``distill.head_temperature``) against the default's, on the matrix's unlearning
draws (3 of 4 random groups, 2 whole classes) and exact retrains in the target's data order (a diagnostic).

The tempered synsets are the ones ``benchmarks/grid.py --grid distill.head_temperature=T`` stored beside the
default's (``<root>/<config>/seed<S>/grid-distill_head_temperature-T``); run that first.

    python benchmarks/temperature_unlearning.py --seed 0 --out benchmarks/results/temperature-unlearning
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

from ddm import progress  # noqa: E402
from ddm.train.loop import accuracy  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="runs/matrix-b")
    p.add_argument("--configs", default="digits-alexnet-K40-adam,digits-resnet-batchnorm-K40-momentum")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", default="2")
    p.add_argument("--out", default="benchmarks/results/temperature-unlearning")
    args = p.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    lines = ["# Unlearning with tempered synsets (diagnostic)", "",
             f"Command: `python benchmarks/temperature_unlearning.py {' '.join(sys.argv[1:])}`; test accuracy in %, "
             "exact retraining (target's data order) / default synsets / tempered synsets; class draws also give the "
             "removed class's test accuracy.", "",
             "| configuration | draw | exact | default | T = " + args.temperature + " |", "|---|---|---|---|---|"]
    results = {}
    for name in args.configs.split(","):
        cfg, data, folder, dm, cache = M.open_run(Path(args.root), name, args.seed)
        hot = M.fit_variant(folder, cfg, data, [f"distill.head_temperature={args.temperature}"])
        rows = []
        for label, rem in M.unlearning_draws(dm, int(data.num_classes), 3):
            exact = float((cache.get(rem).argmax(1) == data.test.y).float().mean())
            a = accuracy(dm.unlearn(rem, name="temperature-default"), data.test)
            b = accuracy(hot.unlearn(rem, name="temperature-hot"), data.test)
            rows.append({"draw": label, "exact": exact, "default": a, "tempered": b})
            lines.append(f"| {name} | {label} | {100 * exact:.1f} | {100 * a:.1f} | {100 * b:.1f} |")
            print(lines[-1], flush=True)
        results[name] = rows
        gaps = {k: sum(abs(r[k] - r["exact"]) for r in rows) / len(rows) * 100 for k in ("default", "tempered")}
        lines.append(f"| {name} | mean gap to exact (points) | – | {gaps['default']:.2f} | {gaps['tempered']:.2f} |")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
