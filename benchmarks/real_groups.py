"""How much could better synsets gain? Each group's real samples in place of its synset (a diagnostic; no default)

DDM's default attribution with the groups' real training samples as their "synsets" (weight 1 each; the same loss,
curvature, damping, class balance, readout and regression, and the same checkpoints averaged as the synsets are
transferred to): the LDS a perfect matching would reach, beside the default's and the trivial same-class score's,
on a seed's validation targets against the matrix's exact retraining. The gap is what any matching (its norm, its
budget, its images per group) can still gain; where the real samples rank no better, the step itself misses.

    python benchmarks/real_groups.py --root runs/matrix-b --seed 0 --configs digits-mlp-K40-sgd,fmnist-mlp-K40-sgd \\
        --out benchmarks/results/real-groups-s0
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import binary_decompose as B  # noqa: E402
import matrix as M  # noqa: E402

from ddm import objectives  # noqa: E402


def run(name: str, seed: int, root: Path, args: Any) -> dict[str, Any]:
    cfg, data, folder, dm, cache = M.open_run(root, name, seed)
    v = M.ValidationTargets(dm, cache, data, seed)
    out: dict[str, Any] = v.baselines(dm, "real-groups")
    real = B.real_synset(dm, data.train)  # the same checkpoints averaged as the default (emulate.min_transfer)
    dm.model.eval()  # as the public attribute() runs it (a batch norm's running statistics)
    attr = dm._attribute_flat(v.targets, objectives.get("dist2"), real, "real-eval-" + dm.keys["synset"], dm.groups,
                              "groups")
    out["real samples"] = v.score(lambda k, sel: attr.predict(k)[:, sel, 0])
    print(name, seed, out, flush=True)
    return out


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/real-groups", "fmnist-mlp-K40-sgd")
    lines = ["# The groups' real samples in place of their synsets (diagnostic)", "",
             f"Command: `python benchmarks/real_groups.py {' '.join(sys.argv[1:])}`; seed {args.seed}, validation "
             "targets; LDS / other-class LDS against the exact retrains in the target's data order.", "",
             "| configuration | DDM (the default) | real samples | gap | trivial |", "|---|---|---|---|---|"]
    for n in names:
        r = results[n]
        d, g, t = r["DDM (the default)"], r["real samples"], r["same class (trivial)"]
        lines.append(f"| {n} | {d[0]:+.3f} / {d[1]:+.3f} | {g[0]:+.3f} / {g[1]:+.3f} | {g[0] - d[0]:+.3f} / "
                     f"{g[1] - d[1]:+.3f} | {t[0]:+.3f} |")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
