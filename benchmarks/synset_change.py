"""How much a distillation setting changes the default's synsets, without retraining anything (a diagnostic).

A setting that only changes the synsets where they were poor (e.g. ``distill.keep_best``) leaves a configuration's
LDS as it was wherever it leaves the synsets as they were. This script measures that directly on any configuration
and seed, training the target (cached) but never retraining: for the default and for the setting, the synset health
(step cosine with the real removal step at theta_tau, fraction positive, flagged groups), and per group the relative
change of the emulated removal displacement at theta_tau, ``|U_set - U_default| / |U_default|`` (median and maximum
over groups, and how many groups change by more than 1%). A configuration where nothing changes needs no new
retrains to report the setting; the others do.

    python benchmarks/synset_change.py --configs digits-mlp-K40-sgd,digits-resnet-K40-momentum --seeds 0 \\
        --set distill.keep_best=true --out benchmarks/results/synset-change-keep-best
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from ddm import progress
from ddm.emulate.newton import removal_displacements

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402


def run(name: str, seed: int, root: Path, sets: list[str]) -> dict[str, Any]:
    cfg, data = M.make_config(M.CONFIGS[name][0], seed, [])
    folder = root / name / f"seed{seed}"
    base = M.fitted(folder / "ddm", cfg, data)
    other = M.fit_variant(folder, cfg, data, sets)
    final = base.trajectory.final
    u0 = removal_displacements(base.model, final, base.synset).double()
    u1 = removal_displacements(other.model, final, other.synset).double()
    rel = (u1 - u0).norm(dim=1) / u0.norm(dim=1).clamp(min=1e-30)
    out = {"config": name, "seed": seed, "default": M.health_summary(base), "set": M.health_summary(other),
           "change median": float(rel.median()), "change max": float(rel.max()),
           "groups changed > 1%": int((rel > 0.01).sum()), "K": int(len(rel))}
    print(out, flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/results/synset-change")
    p.add_argument("--root", default="runs/matrix-b")
    p.add_argument("--configs", default=",".join(n for n in M.CONFIGS if n not in M.HELD_OUT))
    p.add_argument("--seeds", default="0")
    p.add_argument("--set", action="append", required=True, metavar="KEY=VALUE",
                   help="the setting compared with the default (repeatable)")
    args = p.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    results = [run(n, int(s), Path(args.root), args.set) for n in args.configs.split(",")
               for s in args.seeds.split(",")]
    lines = ["# How much a setting changes the default's synsets (diagnostic, no retraining)", "",
             f"Command: `python benchmarks/synset_change.py {' '.join(sys.argv[1:])}`. Health: step cosine with the "
             "real removal step at theta_tau (mean), fraction positive, flagged groups. Change: per group, "
             "|U_set - U_default| / |U_default| of the emulated removal displacement at theta_tau.", "",
             "| configuration | seed | K | health, default | health, with the setting | change: median | max | "
             "groups > 1% |", "|---|---|---|---|---|---|---|---|"]

    def h(d: dict[str, Any]) -> str:
        return f"{d['cosine_mean']:.3f}, {100 * d['positive']:.0f}%, {d['flagged']}"

    for r in results:
        lines.append(f"| {r['config']} | {r['seed']} | {r['K']} | {h(r['default'])} | {h(r['set'])} | "
                     f"{r['change median']:.2g} | {r['change max']:.2g} | {r['groups changed > 1%']} |")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
