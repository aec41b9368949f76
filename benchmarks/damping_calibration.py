"""Can a few exact retrains of a workspace (what ``ddm check`` makes) choose the emulation's damping? (a diagnostic)

``distill.damping`` (1e-3 of the curvature's top eigenvalue, chosen on the two selection configurations) sets the
lambda of ``(H + lambda I)`` both in the matching and in the Newton step that emulates a removal. The held-out
configurations split on it (BENCHMARKS.md, "A smaller matching damping"): MLPs gain from 1e-3, Fashion-MNIST
ConvNets, AlexNet and the batch-norm ResNet lose. ``emulate.damping_scale`` multiplies the synset's dampings at
emulation time only (the synsets stay as matched), so another damping costs one emulation, no distillation.
Here it is chosen on a workspace's own *calibration* retrains (``ddm check``'s 16 random halves) by the check's rule
(``ddm.evaluation.check.damping_choice``: the best scale where its margin over the configured one is above two
bootstrap standard errors) and scored on the matrix's 40 halves and other-class subsets, which it never saw.

    python benchmarks/damping_calibration.py --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd --seed 3 \\
        --out benchmarks/results/damping-calibration-select
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

from ddm.evaluation import check as C  # noqa: E402


def options(p: argparse.ArgumentParser) -> None:
    M.halves_only_option(p)
    p.add_argument("--calibration-subsets", type=int, default=16,
                   help="random halves the rule chooses on (ddm check --subsets; 16 by default)")


def run(name: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    _, data, _, dm, cache = M.open_run(root, name, seed)
    v = M.ValidationTargets(dm, cache, data, seed, halves_only=args.halves_only)
    out: dict[str, Any] = v.baselines(dm, "damping-calibration")
    own = dm.config
    attrs = {}
    for s in C.DAMPING_SCALES:
        try:
            dm.config = own.with_overrides([f"emulate.damping_scale={s!r}"])
            attrs[s] = dm.attribute(v.targets, "dist2", name="damping-calibration")
        finally:
            dm.config = own

    def predictor(s: float) -> Any:
        return lambda keep, sel: attrs[s].predict(keep)[:, sel, 0]

    for s in C.DAMPING_SCALES:
        out[f"x{s:g}"] = v.score(predictor(s))
    # the check's rule on calibration retrains of the validation targets (ddm check's draws of random halves)
    every, halves, cal = v.calibration(dm.groups.num_groups, args.calibration_subsets)
    chosen = C.damping_choice(lambda s: (lambda k: predictor(s)(k, every)), own.emulate.damping_scale, halves, cal)
    out["chosen"] = {k: chosen[k] for k in ("scale", "by_scale", "margin", "recommended")}
    out["the check's rule on calibration retrains"] = v.score(predictor(chosen["scale"] if chosen["recommended"]
                                                                        else own.emulate.damping_scale))
    print(name, seed, out, flush=True)
    return out


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/damping-calibration-select",
                                            "digits-convnet-K100-sgd,fmnist-mlp-K40-sgd", options=options)
    rows = [r for r in next(iter(results.values())) if r != "chosen"]
    lines = M.diagnostic_head("The emulation's damping chosen on a workspace's own calibration retrains (diagnostic)",
                              args, "validation targets; LDS / other-class LDS against the matrix's retrains in the "
                              "target's data order. Columns xS: emulate.damping_scale = S.", rows)
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{results[n][r][0]:+.3f} / {results[n][r][1]:+.3f}" for r in rows)
                     + " |")
    lines += ["", f"The check's rule on {args.calibration_subsets} calibration halves (LDS by scale; the best, its "
              "margin over the configured one ± bootstrap SE, advised or not):", ""]
    for n in names:
        c = results[n]["chosen"]
        lines.append(f"* {n}: {c['by_scale']}; best {c['scale']:g}, margin {c['margin']['mean']:+.3f} ± "
                     f"{c['margin']['se']:.3f}, {'advised' if c['recommended'] else 'not advised'}")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
