"""How far exact retraining agrees with itself: the LDS ceiling of each configuration (a diagnostic).

Every LDS in BENCHMARKS.md scores a prediction against retrains in the target's data order. Here the prediction
is another exact retrain of the same subsets in another data order (``matrix.other_orders(seed)[0]``): no attribution
can be expected to beat it, and where its other-class LDS is near zero the within-class ranking the ground truth
holds is mostly the data order's noise. Same subsets and validation targets as ``matrix.py --select`` (seed 3 by
default), so the retrains in the target's order are reused.

    python benchmarks/ceiling.py --root runs/matrix-b --out benchmarks/results/ceiling
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402


def run(name: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    _, data, _, dm, cache = M.open_run(root, name, seed)
    v = M.ValidationTargets(dm, cache, data, seed)
    other = M.other_orders(seed)[0]
    return {"exact retraining, another data order (ceiling)": v.score(lambda k, sel: v.retrained(k, sel, other)),
            **v.baselines(dm, "ceiling")}


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/ceiling",
                                            ",".join(n for n in M.CONFIGS if n not in M.HELD_OUT))
    rows = list(next(iter(results.values())))
    lines = M.diagnostic_head("The LDS ceiling: exact retraining against itself (diagnostic)", args,
                              "validation targets; LDS / other-class LDS.", rows)
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{results[n][r][0]:+.3f} / {results[n][r][1]:+.3f}" for r in rows)
                     + " |")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
