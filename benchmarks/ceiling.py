"""How far exact retraining agrees with itself: the LDS ceiling of each configuration (a diagnostic).

Every LDS in BENCHMARKS.md scores a prediction against retrains in the target's data order. Here the prediction
is another exact retrain of the same subsets in another data order (``matrix.ORDER_SEEDS[0]``): no attribution
can be expected to beat it, and where its other-class LDS is near zero the within-class ranking the ground truth
holds is mostly the data order's noise. Same subsets and validation targets as ``matrix.py --select`` (seed 3 by
default), so the retrains in the target's order are reused.

    python benchmarks/ceiling.py --root runs/matrix-b --out benchmarks/results/ceiling
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from ddm.evaluation.metrics import lds

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402


def run(name: str, seed: int, root: Path) -> dict[str, tuple[float, float]]:
    _, data, _, dm, cache = M.open_run(root, name, seed)
    rows, targets = M.target_rows(data)  # the validation targets
    keep, oc_keep = M.lds_subsets(dm.groups, targets.y, seed)
    other = M.ORDER_SEEDS[0]

    def retrained(masks: torch.Tensor, cols: torch.Tensor, order: int | None) -> torch.Tensor:
        logits = torch.stack([cache.get(torch.nonzero(~k).flatten().tolist(), seed=order) for k in masks])
        return M.losses(logits[:, rows[cols]], targets.y[cols])

    def score(predict: object) -> tuple[float, float]:
        every = torch.arange(len(rows))
        a = lds(predict(keep, every), retrained(keep, every, None))[0]  # type: ignore[operator]
        per: list[float] = []
        for c, m in oc_keep.items():
            sel = torch.nonzero(targets.y == c).flatten()
            per += lds(predict(m, sel), retrained(m, sel, None))[1]  # type: ignore[operator]
        return round(a, 3), round(float(np.mean(per)) if per else float("nan"), 3)

    attr = dm.attribute(targets, "dist2", name="ceiling")
    same = (dm.groups.labels[None, :] == targets.y[:, None]).float()
    return {"exact retraining, another data order (ceiling)": score(lambda k, sel: retrained(k, sel, other)),
            "DDM (the default)": score(lambda k, sel: attr.predict(k)[:, sel, 0]),
            "same class (trivial)": score(lambda k, sel: M.predicted_loss(same[sel], k))}


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/ceiling",
                                            ",".join(n for n in M.CONFIGS if n not in M.HELD_OUT))
    rows = list(next(iter(results.values())))
    lines = ["# The LDS ceiling: exact retraining against itself (diagnostic)", "",
             f"Command: `python benchmarks/ceiling.py {' '.join(sys.argv[1:])}`; seed {args.seed}, validation "
             "targets; LDS / other-class LDS.", "",
             "| configuration | " + " | ".join(rows) + " |", "|---|" + "---|" * len(rows)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{results[n][r][0]:+.3f} / {results[n][r][1]:+.3f}" for r in rows)
                     + " |")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
