"""Does ``ddm check`` choose the emulation's damping better with more targets? (a diagnostic)

``ddm check`` refits ``emulate.damping_scale`` on its 16 random halves and advises the best scale only where its
paired margin over the configured one is above two bootstrap standard errors (subsets and targets redrawn). On the
matrix (``damping_calibration.py``) that rule advised nothing with 16 halves and 50 targets, though the scale best
on those halves was also best on the matrix's 40 halves in 15 of 17 runs. More targets cost the check no retrain
(a retrain's logits cover the whole test split), only an emulation per scale. This applies the check's rule on the
same 16 calibration halves with the validation targets (50, what the check has by default) and with ``--targets``
other test samples (rows 100 onwards of the fixed permutation: disjoint from the validation rows 50-99 and the
reported rows 0-49), and scores what each advises on the validation targets against the matrix's 40 halves
(and its other-class subsets, where cached).

    python benchmarks/check_targets.py --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd --seed 3 \\
        --out benchmarks/results/check-targets-select
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

from ddm.emulate.perturbations import sample_perturbations  # noqa: E402
from ddm.evaluation import check as C  # noqa: E402


def options(p: argparse.ArgumentParser) -> None:
    M.halves_only_option(p)
    p.add_argument("--targets", type=int, default=200, help="calibration targets beside the validation ones")


def run(name: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    _, data, _, dm, cache = M.open_run(root, name, seed)
    v = M.ValidationTargets(dm, cache, data, seed, halves_only=args.halves_only)
    out: dict[str, Any] = v.baselines(dm, "check-targets")
    perm = torch.randperm(len(data.test), generator=torch.Generator().manual_seed(M.TARGET_SEED))
    extra_rows = perm[100:100 + args.targets]
    extra = data.test[extra_rows]
    own = dm.config
    attrs: dict[float, Any] = {}
    extra_attrs: dict[float, Any] = {}
    for s in C.DAMPING_SCALES:
        try:
            dm.config = own.with_overrides([f"emulate.damping_scale={s!r}"])
            attrs[s] = dm.attribute(v.targets, "dist2", name="check-targets")
            extra_attrs[s] = dm.attribute(extra, "dist2", name="check-targets-extra")
        finally:
            dm.config = own
    for s in C.DAMPING_SCALES:
        out[f"x{s:g}"] = v.score(lambda keep, sel, s=s: attrs[s].predict(keep)[:, sel, 0])
    halves = sample_perturbations(dm.groups.num_groups, 16, 0.5, seed=M.CHECK_SEED)
    every = torch.arange(len(v.rows))
    validation = v.retrained(halves, every)
    logits = torch.stack([cache.get(torch.nonzero(~k).flatten().tolist()) for k in halves])
    extra_actual = M.losses(logits[:, extra_rows], extra.y)
    configured = own.emulate.damping_scale
    for label, table, actual in (("50 validation targets", attrs, validation),
                                 (f"{len(extra_rows)} other targets", extra_attrs, extra_actual)):
        chosen = C.damping_choice(lambda s, table=table: (lambda k: table[s].predict(k)[..., 0]), configured,
                                  halves, actual)
        scale = chosen["scale"] if chosen["recommended"] else configured
        out[f"rule on {label}"] = {"best": chosen["scale"], "margin": chosen["margin"],
                                   "advised": chosen["recommended"], "score": out[f"x{scale:g}"]}
    print(name, seed, out, flush=True)
    return out


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/check-targets",
                                            "digits-convnet-K100-sgd,fmnist-mlp-K40-sgd", options=options)
    scales = [f"x{s:g}" for s in C.DAMPING_SCALES]
    rules = [r for r in next(iter(results.values())) if r.startswith("rule on")]
    rows = ["DDM (the default)", "same class (trivial)", *scales, *rules]
    lines = M.diagnostic_head("The check's damping rule with more targets (diagnostic)", args,
                              "validation targets; LDS / other-class LDS against the matrix's retrains. Rule columns: "
                              "the best scale on the check's 16 halves, its margin over the configured one ± SE, "
                              "whether advised (*), and the score of what is then used", rows)
    for n in names:
        cells = [f"{results[n][r][0]:+.3f} / {results[n][r][1]:+.3f}" for r in rows[:2 + len(scales)]]
        for r in rules:
            c = results[n][r]
            cells.append(f"x{c['best']:g}{'*' if c['advised'] else ''}, {c['margin']['mean']:+.3f} ± "
                         f"{c['margin']['se']:.3f}: {c['score'][0]:+.3f} / {c['score'][1]:+.3f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
