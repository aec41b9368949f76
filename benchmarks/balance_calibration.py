"""Can a few exact retrains of a workspace (what ``ddm check`` makes) choose the class balance? (a diagnostic)

``emulate.other_class_scale`` (0.5, chosen on the two selection configurations) scales each group's weight for a
target by ``s + (1 - s) share`` (share: the fraction of the group's samples in the target's class), after the
emulation. The balance exact retraining implies varies tenfold between configurations (``class_balance.py``:
0.04-0.45 of the emulation's), and on AlexNet and the batch-norm ResNet the default stays below the trivial
same-class score, whose ordering a smaller scale approaches. The scale is applied after the emulation, so trying
another costs no emulation at all. Here it is chosen on a workspace's own *calibration* retrains (``ddm check``'s
16 random halves, the draws ``schedule_calibration.py`` uses), and scored on the matrix's 40 halves, which it never
saw (other-class LDS does not depend on the scale: the order within the other classes is the emulation's):

* ``best``: the scale in ``--scales`` with the highest LDS on the calibration halves;
* ``advised``: that scale where its per-target margin over the default's on the calibration halves is above two
  standard errors, the default's otherwise.

    python benchmarks/balance_calibration.py --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd --seed 3 \\
        --out benchmarks/results/balance-calibration-select
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

from ddm.attribution.fit import balance_classes  # noqa: E402
from ddm.emulate.perturbations import sample_perturbations  # noqa: E402
from ddm.evaluation.metrics import lds  # noqa: E402

CAL_SEED = 40_000  # ddm check's draws


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scales", default="0.05,0.1,0.2,0.3,0.5,0.7,1",
                   type=lambda v: [float(e) for e in v.split(",")], help="other_class_scale values tried")
    p.add_argument("--halves-only", action="store_true",
                   help="score the matrix's halves only (other-class LDS does not depend on the scale; its subsets "
                        "cost a retrain each where they are not cached)")


def run(name: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    _, data, _, dm, cache = M.open_run(root, name, seed)
    v = M.ValidationTargets(dm, cache, data, seed)
    if args.halves_only:
        v.oc_keep = {}
    out: dict[str, Any] = v.baselines(dm, "balance-calibration")
    default = dm.config.emulate.other_class_scale
    raw = dm.attribute(v.targets, "dist2", name="balance-calibration-raw", other_class_scale=1.0)
    W0, b0 = raw.weights, raw.bias  # [T, K, 1], [T, 1]

    def predictor(s: float) -> Any:
        W, b = balance_classes(W0, b0, dm.groups, v.targets.y, s)
        return lambda keep, sel: keep.float() @ W[sel, :, 0].T + b[sel, 0][None, :]

    every = torch.arange(len(v.rows))
    halves = sample_perturbations(dm.groups.num_groups, 16, 0.5, seed=CAL_SEED)
    cal = v.retrained(halves, every)
    per = {s: np.asarray(lds(predictor(s)(halves, every), cal)[1]) for s in args.scales}
    base = per[default] if default in per else np.asarray(lds(predictor(default)(halves, every), cal)[1])
    best = max(args.scales, key=lambda s: float(np.nanmean(per[s])))
    d = per[best] - base
    margin, se = float(np.nanmean(d)), float(np.nanstd(d, ddof=1) / np.sqrt(np.isfinite(d).sum()))
    advised = best if margin > 2 * se else default
    for s in args.scales:
        out[f"x{s:g}"] = v.score(predictor(s))
    out["calibration LDS by scale"] = {f"{s:g}": round(float(np.nanmean(per[s])), 3) for s in args.scales}
    out["chosen"] = {"best": best, "margin": round(margin, 4), "se": round(se, 4), "advised": advised}
    out["as advised"] = v.score(predictor(advised))
    out["best on calibration"] = v.score(predictor(best))
    print(name, seed, out, flush=True)
    return out


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/balance-calibration-select",
                                            "digits-convnet-K100-sgd,fmnist-mlp-K40-sgd", options=options)
    rows = [r for r in next(iter(results.values())) if r not in ("calibration LDS by scale", "chosen")]
    lines = ["# The class balance chosen on a workspace's own calibration retrains (diagnostic)", "",
             f"Command: `python benchmarks/balance_calibration.py {' '.join(sys.argv[1:])}`; seed {args.seed}, "
             "validation targets; LDS / other-class LDS against the matrix's retrains in the target's data order. "
             "Columns xS: emulate.other_class_scale = S.", "",
             "| configuration | " + " | ".join(rows) + " |", "|---|" + "---|" * len(rows)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{results[n][r][0]:+.3f} / {results[n][r][1]:+.3f}" for r in rows)
                     + " |")
    lines += ["", "On the calibration halves (LDS by scale; the best, its margin over the default ± SE, advised):", ""]
    for n in names:
        c = results[n]["chosen"]
        lines.append(f"* {n}: {results[n]['calibration LDS by scale']}; best {c['best']:g}, margin "
                     f"{c['margin']:+.3f} ± {c['se']:.3f}; advised {c['advised']:g}")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
