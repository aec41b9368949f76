"""How much head distillation the attribution needs: LDS and other-class LDS against the matrix's exact
retrains for several ``distill.tolerance`` / ``distill.iterations`` settings, with the distillation time
in units of one training run (T).

Run after ``make bench-matrix`` (it reuses that run's cached retrains under ``--root``). Chosen on the
selection configurations and seed 3 (validation targets) only; ``--report`` adds the other configurations
on seed 0.

    python benchmarks/distill_budget.py --out benchmarks/results/distill-budget
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import matrix as M  # noqa: E402

import ddm  # noqa: E402
from ddm import progress  # noqa: E402
from ddm.emulate.perturbations import sample_perturbations  # noqa: E402
from ddm.evaluation.metrics import lds  # noqa: E402
from ddm.evaluation.retrain import RetrainCache  # noqa: E402

SETTINGS = {"default": [], "tol 3e-4": ["distill.tolerance=3e-4"],
            "tol 1e-3": ["distill.tolerance=1e-3"], "tol 3e-3": ["distill.tolerance=3e-3"],
            "200 its": ["distill.iterations=200"],
            "lr_img 0.03, 200 its": ["distill.lr_img=0.03", "distill.iterations=200"],
            "lr_img 0.03, 300 its, tol 1e-3": ["distill.lr_img=0.03", "distill.iterations=300",
                                               "distill.tolerance=1e-3"],
            "lr_img 0.1, 200 its": ["distill.lr_img=0.1", "distill.iterations=200"]}


def one(root: Path, name: str, seed: int, select: bool, targets_n: int = 50, subsets: int = 40,
        other: int = 10) -> dict:
    cfg, data = M.make_config(M.CONFIGS[name][0], seed, [])
    rows, targets = M.target_rows(data, targets_n, select)
    folder = root / name / f"seed{seed}"
    base = ddm.DistilledDatamodel(folder / "ddm", cfg).fit(ddm.models.build(cfg.model, data), data.train)
    K = base.groups.num_groups
    cache = RetrainCache(folder / "retrain", base.model, base.trajectory.checkpoint(0),
                         data.train, base.groups, cfg.train,
                         data.test.x)
    keep = sample_perturbations(K, subsets, 0.5, seed=10_000 + seed)
    actual = M.losses(cache.many([torch.nonzero(~k).flatten().tolist() for k in keep], name)[:, rows], targets.y)
    oc = {}
    for c in targets.y.unique().tolist():
        m = sample_perturbations(K, other, 0.5, seed=20_000 + 100 * seed + c)
        m[:, base.groups.labels == c] = True
        sel = targets.y == c
        oc[c] = (m, M.losses(cache.many([torch.nonzero(~k).flatten().tolist() for k in m], name)[:, rows[sel]],
                             targets.y[sel]))
    t_train = float(base.ws.require("train").get("seconds", 0.0))
    out = {"config": name, "seed": seed, "train_s": t_train, "settings": {}}
    for tag, extra in SETTINGS.items():
        dm = base if not extra else ddm.DistilledDatamodel(
            folder / ("budget-" + "-".join(e.split(".", 1)[1].replace("=", "") for e in extra)),
            cfg.with_overrides(extra)).fit(
            ddm.models.build(cfg.model, data), data.train)
        info = dm.ws.require("synset")
        a = dm.attribute(targets, "dist2", name="budget")
        per = []
        for c, (m, act) in oc.items():
            sel = torch.nonzero(targets.y == c).flatten()
            per += lds(a.predict(m)[:, sel, 0], act)[1]
        out["settings"][tag] = {"lds": lds(a.predict(keep)[:, :, 0], actual)[0], "other_class_lds": float(np.mean(per)),
                                "distill_T": float(info.get("seconds", 0.0)) / t_train, "steps": info.get("steps"),
                                "cosine_min": info["health"]["cosine_min"]}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="runs/matrix")
    p.add_argument("--out", default="benchmarks/results/distill-budget")
    p.add_argument("--report", default="", help="comma list of configurations reported on seed 0")
    args = p.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    results = [one(Path(args.root), n, 3, True) for n, (_, sel) in M.CONFIGS.items() if sel]
    results += [one(Path(args.root), n, 0, False) for n in args.report.split(",") if n]
    lines = ["# Head distillation budget", "",
             f"Command: `python benchmarks/distill_budget.py{' --report ' + args.report if args.report else ''}`; "
             "retrains and targets of `benchmarks/matrix.py` (selection configurations: seed 3, validation "
             "targets; others: seed 0, reported targets). T = the recorded training time of that run "
             "(one process, one thread).", "",
             "| configuration | seed | setting | steps | distill (T) | LDS | other-class LDS | min cosine |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for tag, v in r["settings"].items():
            lines.append(f"| {r['config']} | {r['seed']} | {tag} | {v['steps']} | {v['distill_T']:.1f} | "
                         f"{v['lds']:+.3f} | {v['other_class_lds']:+.3f} | {v['cosine_min']:.3f} |")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
