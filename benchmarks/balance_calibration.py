"""Can a few exact retrains of a workspace (what ``ddm check`` makes) choose the class balance? (a diagnostic)

``emulate.other_class_scale`` (0.5, chosen on the two selection configurations) scales each group's weight for a
target by ``s + (1 - s) share`` (share: the fraction of the group's samples in the target's class), after the
emulation. The balance exact retraining implies varies tenfold between configurations (``class_balance.py``:
0.04-0.45 of the emulation's), and on AlexNet and the batch-norm ResNet the default stays below the trivial
same-class score, whose ordering a smaller scale approaches. The scale is applied after the emulation, so trying
another costs no emulation at all. Here it is chosen on a workspace's own *calibration* retrains (``ddm check``'s
16 random halves, the draws ``schedule_calibration.py`` uses), and scored on the matrix's 40 halves, which it never
saw (other-class LDS does not depend on the scale: the order within the other classes is the emulation's):

* the check's rule (``ddm.evaluation.check.balance_choice``): the scale with the highest LDS on the calibration
  halves where its margin over the default's there is above two standard errors (bootstrap over subsets and
  targets), the default's otherwise;
* ``ddm check`` itself on the workspace (its own 50 targets, 16 halves and 15 other-class subsets), all its advice
  followed (the class balance and the schedule term, ``emulate.schedule_weight``).

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
from ddm.evaluation import check as C  # noqa: E402
from ddm.evaluation.metrics import lds  # noqa: E402


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scales", default="0.05,0.1,0.2,0.3,0.5,0.7,1",
                   type=lambda v: [float(e) for e in v.split(",")], help="other_class_scale values tried")
    p.add_argument("--shrink", action="store_true",
                   help="also shrink the own class's weights toward their mean, chosen with the scale on calibration")
    p.add_argument("--halves-only", action="store_true",
                   help="score the matrix's halves only (other-class LDS does not depend on the scale; its subsets "
                        "cost a retrain each where they are not cached)")


def run(name: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    _, data, _, dm, cache = M.open_run(root, name, seed)
    v = M.ValidationTargets(dm, cache, data, seed, halves_only=args.halves_only)
    out: dict[str, Any] = v.baselines(dm, "balance-calibration")
    default = dm.config.emulate.other_class_scale
    raw = dm.attribute(v.targets, "dist2", name="balance-calibration-raw", other_class_scale=1.0)
    W0, b0 = raw.weights, raw.bias  # [T, K, 1], [T, 1]
    sizes = dm.groups.sizes().double()
    half = M.rewound_losses(dm, v.targets)(0.5) / 0.5  # the schedule term at weight 1, per unit removed

    def predictor(s: float, weight: float = 0.0) -> Any:
        W, b = balance_classes(W0, b0, dm.groups, v.targets.y, s)

        def predict(keep: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
            removed = ((~keep).double() @ sizes / sizes.sum()).float()
            return keep.float() @ W[sel, :, 0].T + b[sel, 0][None, :] + weight * removed[:, None] * half[sel][None, :]

        return predict

    # the check's rule on calibration retrains of the validation targets (ddm check's draws of random halves)
    every, halves, cal = v.calibration(dm.groups.num_groups)
    chosen = C.balance_choice(lambda s: (lambda k: predictor(s)(k, every)), default, halves, cal)
    for s in args.scales:
        out[f"x{s:g}"] = v.score(predictor(s))
    out["chosen"] = {k: chosen[k] for k in ("scale", "by_scale", "margin", "recommended")}
    out["the check's rule on calibration retrains"] = v.score(predictor(chosen["scale"] if chosen["recommended"]
                                                                        else default))
    # what a user gets: `ddm check` on the workspace (its own targets and subsets), and all its advice followed
    r = C.check(dm, data, temperature=None)  # the tempered synset: check_temperature.py
    a = r["advice"]
    out["advice"] = a
    out["DDM as `ddm check` advises"] = v.score(predictor(a.get("emulate.other_class_scale", default),
                                                          a.get("emulate.schedule_weight", 0.0)))
    if args.shrink:
        # the own class's weights shrunk toward their mean (1: every own-class group alike, as the trivial score)
        same = M.same_class(dm.groups, v.targets.y)[..., None]

        def shrunk(sc: float, g: float) -> Any:
            W, b = balance_classes(W0, b0, dm.groups, v.targets.y, sc)
            mean = (W * same).sum(1, keepdim=True) / same.sum(1, keepdim=True).clamp(min=1)
            W2 = W - g * same * (W - mean)
            b2 = b + (W - W2).sum(1)
            return lambda keep, sel: keep.float() @ W2[sel, :, 0].T + b2[sel, 0][None, :]

        grid = [(sc, g) for sc in args.scales for g in (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)]
        cal_g = {p: float(np.nanmean(lds(shrunk(*p)(halves, every), cal)[1])) for p in grid}
        bg = max(grid, key=lambda p: cal_g[p])
        out["shrink: best on calibration"] = v.score(shrunk(*bg))
        out["shrink: chosen"] = {"scale": bg[0], "shrink": bg[1], "calibration": round(cal_g[bg], 3)}
    print(name, seed, out, flush=True)
    return out


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/balance-calibration-select",
                                            "digits-convnet-K100-sgd,fmnist-mlp-K40-sgd", options=options)
    rows = [r for r in next(iter(results.values())) if r not in ("chosen", "advice", "shrink: chosen")]
    lines = M.diagnostic_head("The class balance chosen on a workspace's own calibration retrains (diagnostic)", args,
                              "validation targets; LDS / other-class LDS against the matrix's retrains in the "
                              "target's data order. Columns xS: emulate.other_class_scale = S.", rows)
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{results[n][r][0]:+.3f} / {results[n][r][1]:+.3f}" for r in rows)
                     + " |")
    lines += ["", "The check's rule on the calibration halves (LDS by scale; the best, its margin over the default "
              "± bootstrap SE, advised or not), and what `ddm check` on the workspace advised:", ""]
    for n in names:
        c = results[n]["chosen"]
        lines.append(f"* {n}: {c['by_scale']}; best {c['scale']:g}, margin {c['margin']['mean']:+.3f} ± "
                     f"{c['margin']['se']:.3f}, {'advised' if c['recommended'] else 'not advised'}; the check: "
                     f"{results[n]['advice'] or 'no change'}"
                     + (f"; shrink chosen {results[n]['shrink: chosen']}" if "shrink: chosen" in results[n] else ""))
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
