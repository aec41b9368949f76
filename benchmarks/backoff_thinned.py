"""The unlearning back-off on classes the removal thins (a diagnostic).

``ddm unlearn`` redoes its Newton step with a tenfold damping (``emulate.unlearn_backoff``) when a class that keeps
training data loses more than ``emulate.unlearn_class_drop`` of its kept synthetic images' accuracy: retraining
mostly keeps such a class. A class left with under half of its training samples is the exception: retraining loses
accuracy there too (``health.unlearning_check`` reports it as thinned). This measures, against exact retraining in
the target's data order, the unlearned model as it is and with the back-off ignoring thinned classes (its first
step wherever every class that set it off was thinned), on the matrix's three 4-group draws and on "thinning" draws
that remove ``ceil(0.6 n_c)`` of one class's ``n_c`` groups (three classes drawn per run), which leave it under half.

    python benchmarks/backoff_thinned.py --root runs/matrix-b --seeds 3 \\
        --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd --out benchmarks/results/backoff-thinned-select
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402
from temperature_unlearning import accs, cell  # noqa: E402

from ddm import devices, progress  # noqa: E402


def thinning_draws(dm: Any, num_classes: int, seed: int, count: int = 3) -> list[tuple[str, list[int]]]:
    """``count`` draws, each ``ceil(0.6 n_c)`` of one class's ``n_c`` groups (the class and the groups at random)."""
    g = torch.Generator().manual_seed(4040 + seed)
    labels = dm.groups.labels
    classes = [c for c in torch.randperm(num_classes, generator=g).tolist() if int((labels == c).sum()) >= 2][:count]
    draws = []
    for c in classes:
        mine = torch.nonzero(labels == c).flatten()
        n = min(len(mine) - 1, math.ceil(0.6 * len(mine)))
        draws.append((f"thin class {c}", sorted(mine[torch.randperm(len(mine), generator=g)[:n]].tolist())))
    return draws


def sweep_draws(dm: Any, data: Any, seed: int) -> list[tuple[str, list[int], torch.Tensor | None]]:
    """The draws every thinning diagnostic measures: the matrix's three 4-group draws, then :func:`thinning_draws`;
    each as (label, groups, the test rows of its thinned class or None for a 4-group draw)."""
    draws = [d for d in M.unlearning_draws(dm, int(data.num_classes), 3) if d[0] == "4 groups"]
    return [(label, rem, data.test.y == int(label.split()[-1]) if label.startswith("thin") else None)
            for label, rem in draws + thinning_draws(dm, int(data.num_classes), seed)]


def shares(dm: Any, rem: list[int]) -> torch.Tensor:
    """Each class's share of its training samples that the draw keeps."""
    counts = dm.groups.class_count_matrix().double()
    kept = torch.ones(len(counts), dtype=torch.bool)
    kept[rem] = False
    return counts[kept].sum(0) / counts.sum(0).clamp(min=1e-30)


def run(name: str, seed: int, root: Path) -> list[dict[str, Any]]:
    cfg, data, folder, dm, cache = M.open_run(root, name, seed)
    y = data.test.y
    rows = []
    for label, rem, on in sweep_draws(dm, data, seed):
        share = shares(dm, rem)
        model = dm.unlearn(rem, name="backoff-thinned")
        check = dm.last_unlearning_check
        first = dm.last_unlearned_first
        raised = bool(check.get("damping_raised"))
        set_off = check.get("first_collapsed", [])
        thinned_only = raised and all(float(share[c]) < 0.5 for c in set_off)
        rule = first if thinned_only and first is not None else model
        row = {"config": name, "seed": seed, "draw": label, "groups": rem, "backoff": raised, "set_off_by": set_off,
               "set_off_shares": [float(share[c_]) for c_ in set_off], "thinned_only": thinned_only,
               "exact": accs(cache.get(rem), y, on), "now": accs(devices.predict(model, data.test.x), y, on),
               "rule": accs(devices.predict(rule, data.test.x), y, on)}
        rows.append(row)
        print(name, seed, label, rem, "backoff" if raised else "-", set_off, row["set_off_shares"],
              "exact / now / rule", [row[k] for k in ("exact", "now", "rule")], flush=True)
    return rows


def sweep_parser(doc: str, out: str) -> argparse.ArgumentParser:
    """The options every thinning diagnostic takes: --root, --configs (the selection configurations), --seeds (3),
    --out (``out``)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="runs/matrix-b")
    p.add_argument("--configs", default="digits-convnet-K100-sgd,fmnist-mlp-K40-sgd")
    p.add_argument("--seeds", default="3")
    p.add_argument("--out", default=out)
    return p


def sweep(args: argparse.Namespace, run_one: Callable[[str, int, Path], list[dict[str, Any]]], lines: list[str],
          cells: Callable[[dict[str, Any]], list[str]], keys: tuple[str, ...], thinned_class: bool = False) -> None:
    """``run_one(name, seed, root)`` over --configs x --seeds on one thread, a table row per draw (configuration,
    seed, draw, then ``cells(row)``) under ``lines``, the report written after every run (an interrupted sweep keeps
    what it measured), then :func:`gap_summary` of ``keys``."""
    torch.set_num_threads(1)
    progress.set_enabled(False)
    results: list[dict[str, Any]] = []
    for name in args.configs.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            for r in run_one(name, seed, Path(args.root)):
                results.append(r)
                lines.append(f"| {name} | {seed} | {r['draw']} | " + " | ".join(cells(r)) + " |")
            M.write_report(args.out, lines, results)
    lines += gap_summary(results, keys, thinned_class)
    M.write_report(args.out, lines, results)


def main() -> None:
    args = sweep_parser(__doc__, "benchmarks/results/backoff-thinned-select").parse_args()
    lines = ["# The unlearning back-off on thinned classes (diagnostic)", "",
             f"Command: `python benchmarks/backoff_thinned.py {' '.join(sys.argv[1:])}`; test accuracy in % (for a "
             "thinning draw, after the slash, the thinned class's), exact retraining (target's data order) / "
             "`ddm unlearn` as it is / with the back-off ignoring classes left under half their samples.", "",
             "| configuration | seed | draw | back-off set off by (kept share) | exact | now | rule |",
             "|---|---|---|---|---|---|---|"]

    def cells(r: dict[str, Any]) -> list[str]:
        off = ", ".join(f"{c} ({100 * s:.0f}%)" for c, s in zip(r["set_off_by"], r["set_off_shares"], strict=True))
        return [off or "–", cell(r["exact"]), cell(r["now"]), cell(r["rule"])]

    sweep(args, run, lines, cells, ("now", "rule"))


def gap_summary(results: list[dict[str, Any]], keys: tuple[str, ...], thinned_class: bool = False) -> list[str]:
    """Per kind of draw and per column in ``keys``: the mean gap to exact test accuracy and how many are within the
    issue's bar (3 points for 4 groups, 5 for thinning draws); with ``thinned_class``, also the thinned class's own
    accuracy's mean distance from exact retraining's."""
    lines = []
    for kind, bar in (("4 groups", 3), ("thin", 5)):
        sel = [r for r in results if r["draw"].startswith(kind)]
        for k in keys if sel else ():
            gap = [abs(r[k][0] - r["exact"][0]) * 100 for r in sel]
            line = (f"\n{kind} draws, {k}: mean test-accuracy gap {sum(gap) / len(gap):.2f} points, "
                    f"{sum(g <= bar for g in gap)}/{len(sel)} within {bar}")
            if thinned_class and kind == "thin":
                cls = [abs(r[k][1] - r["exact"][1]) * 100 for r in sel]
                line += f"; the thinned class's accuracy {sum(cls) / len(cls):.1f} points from exact on average"
            lines.append(line)
    return lines


if __name__ == "__main__":
    main()
