"""Does DDM weigh the target's own class against the other classes as exact retraining does? (a diagnostic)

DDM's attribution of a target is one weight per group. The groups of the target's own class and those of the other
classes contribute to a removal's predicted loss on different scales, and LDS over random half subsets depends on
that balance as much as on the ranking within each part: other-class LDS (the target's class kept whole) does not
see it at all. This script splits the default's weights ``W [T, K]`` on the validation targets, as the emulation
gives them (``other_class_scale=1``: before the class balance the default now applies, which this diagnostic
measured), into their own-class and other-class parts and scores

* the own-class part alone, the other-class part alone, and the other-class part scaled by ``--scales``;
* the balance exact retraining implies: per target, the least-squares fit of the retrained losses over the LDS
  subsets on the two parts' predictions, ``loss ~ a + b_own (keep W_own) + b_other (keep W_other)``, and the
  medians over targets of ``b_own`` and ``b_other`` (the attribution's objective, ``dist2``, is the target's loss, so
  1 and 1 mean DDM predicts retraining's loss changes in scale too; above 1: it predicts too little) and of
  ``b_other / b_own`` (1: DDM's balance is retraining's; below 1: DDM predicts too much from the other classes
  relative to its own).

    python benchmarks/class_balance.py --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd \\
        --out benchmarks/results/class-balance-selection
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

#: rows that hold a number, not an (LDS, other-class LDS) pair
RATIOS = ("implied other/own ratio", "mean |W| own / other")


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scales", default="0.5,0.3,0.1", type=lambda v: [float(e) for e in v.split(",")],
                   help="comma-separated factors on the other-class weights")


def implied_coefficients(own: torch.Tensor, other: torch.Tensor, actual: torch.Tensor) -> tuple[float, float, float]:
    """Medians over targets of ``b_own``, ``b_other`` and ``b_other / b_own`` in the per-target least-squares fit
    ``actual ~ a + b_own own + b_other other`` (``[S, T]`` each; 1 and 1: DDM's predictions are retraining's, in
    scale too); the ratio leaves out targets whose own-class coefficient is not positive."""
    c = M.implied_slopes(actual, own, other)
    ratio = [float(b / a) for a, b in c if a > 0]
    return (float(c[:, 0].median()), float(c[:, 1].median()), float(np.median(ratio)) if ratio else float("nan"))


def run(name: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    _, data, _, dm, cache = M.open_run(root, name, seed)
    v = M.ValidationTargets(dm, cache, data, seed)
    out: dict[str, Any] = v.baselines(dm, "class-balance")
    # the weights as the emulation gives them, before the default's class balance (emulate.other_class_scale)
    W = dm.attribute(v.targets, "dist2", name="class-balance", other_class_scale=1.0).weights[..., 0]  # [T, K]
    same = M.same_class(dm.groups, v.targets.y)
    own, other = W * same, W * (1 - same)

    def part(m: torch.Tensor) -> Any:
        return lambda keep, sel: keep.float() @ m[sel].T

    out["unbalanced (other classes x1)"] = v.score(part(W))
    out["own class only"] = v.score(part(own))
    out["other classes only"] = v.score(part(other))
    for s in args.scales:
        out[f"other classes x{s:g}"] = v.score(part(own + s * other))
    every = torch.arange(len(v.rows))
    actual = v.retrained(v.keep, every)
    b_own, b_other, ratio = implied_coefficients(part(own)(v.keep, every), part(other)(v.keep, every), actual)
    out["implied b_own, b_other"] = (round(b_own, 3), round(b_other, 3))
    out["implied other/own ratio"] = (round(ratio, 3), float("nan"))
    out["mean |W| own / other"] = (round(float((own.abs().sum() / same.sum()) /
                                                 (other.abs().sum() / (1 - same).sum())), 2), float("nan"))
    print(name, seed, out, flush=True)
    return out


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/class-balance",
                                            "digits-convnet-K100-sgd,fmnist-mlp-K40-sgd", options=options)
    rows = list(next(iter(results.values())))
    lines = M.diagnostic_head("Own class against the other classes in DDM's weights (diagnostic)", args,
                              "validation targets; LDS / other-class LDS against the retrains in the target's data "
                              "order (the last two rows: a ratio).", rows)
    for n in names:
        lines.append(f"| {n} | " + " | ".join(
            f"{results[n][r][0]:.3g}" if r in RATIOS else f"{results[n][r][0]:+.3f} / {results[n][r][1]:+.3f}"
            for r in rows) + " |")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
