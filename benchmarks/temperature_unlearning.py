"""Unlearning with other synsets (tempered ones, ``distill.head_temperature``, or any ``--set``) against the default's,
on the matrix's unlearning draws (3 of 4 random groups, 2 whole classes) and exact retrains in the target's data order
(a diagnostic): test accuracy, and for a class draw also the removed class's test accuracy.

The variant's synsets are the ones ``benchmarks/grid.py`` stored beside the default's (``<root>/<config>/seed<S>/
grid-<settings>``; made here where missing).

    python benchmarks/temperature_unlearning.py --seed 0 --out benchmarks/results/temperature-unlearning
    python benchmarks/temperature_unlearning.py --set distill.match_at=checkpoints --configs ... --out ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

from ddm import devices, progress  # noqa: E402


def accs(logits: torch.Tensor, y: torch.Tensor, on: torch.Tensor | None) -> tuple[float, float | None]:
    """Test accuracy, and on the rows ``on`` (a removed class's) where given."""
    right = logits.argmax(1) == y
    return float(right.float().mean()), None if on is None else float(right[on].float().mean())


def cell(v: tuple[float, float | None]) -> str:
    return f"{100 * v[0]:.1f}" + ("" if v[1] is None else f" / {100 * v[1]:.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="runs/matrix-b")
    p.add_argument("--configs", default="digits-alexnet-K40-adam,digits-resnet-batchnorm-K40-momentum")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", default="2")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="the variant's settings (repeatable; replaces --temperature)")
    p.add_argument("--out", default="benchmarks/results/temperature-unlearning")
    args = p.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    sets = args.sets or [f"distill.head_temperature={args.temperature}"]
    label_v = ", ".join(sets) if args.sets else f"T = {args.temperature}"
    lines = ["# Unlearning with other synsets (diagnostic)", "",
             f"Command: `python benchmarks/temperature_unlearning.py {' '.join(sys.argv[1:])}`; test accuracy in %, "
             f"exact retraining (target's data order) / default synsets / {label_v}; a class draw also gives the "
             "removed class's test accuracy (after the slash).", "",
             f"| configuration | draw | exact | default | {label_v} |", "|---|---|---|---|---|"]
    results = {}
    for name in args.configs.split(","):
        cfg, data, folder, dm, cache = M.open_run(Path(args.root), name, args.seed)
        hot = M.fit_variant(folder, cfg, data, sets)
        rows = []
        for label, rem in M.unlearning_draws(dm, int(data.num_classes), 3):
            removed = None if label != "class" else data.test.y == int(dm.groups.labels[rem[0]])
            exact = accs(cache.get(rem), data.test.y, removed)
            a = accs(devices.predict(dm.unlearn(rem, name="temperature-default"), data.test.x), data.test.y, removed)
            b = accs(devices.predict(hot.unlearn(rem, name="temperature-hot"), data.test.x), data.test.y, removed)
            rows.append({"draw": label, "groups": rem, "exact": exact[0], "default": a[0], "tempered": b[0],
                         "removed_class": None if removed is None else {"exact": exact[1], "default": a[1],
                                                                         "tempered": b[1]}})
            lines.append(f"| {name} | {label} | {cell(exact)} | {cell(a)} | {cell(b)} |")
            print(lines[-1], flush=True)
        results[name] = rows
        gaps = {k: sum(abs(r[k] - r["exact"]) for r in rows) / len(rows) * 100 for k in ("default", "tempered")}
        lines.append(f"| {name} | mean gap to exact (points) | – | {gaps['default']:.2f} | {gaps['tempered']:.2f} |")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
