"""Synsets of groups that mix classes (the sequential split): the design variants on the held-out sequential
configurations of ``matrix.py`` (their cached retrains reused; the same reported targets and half subsets).

* ``DDM`` (the default): at least one image of every class a group holds, weighted by its count;
* ``majority class only``: the previous synsets, ``ipc`` images of the group's majority class;
* ``theta_tau only``: ``distill.checkpoints=1`` (no average over the trajectory);
* ``matched at the checkpoints``: ``distill.match_at=checkpoints``.

These configurations were added after a probe found the previous synsets failing on them; the variants below
were measured after their first matrix run, so they are diagnostics, not a selection.

    python benchmarks/mixed_groups.py --out benchmarks/results/mixed-groups
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import ddm
import ddm.distill.head as head_mod
from ddm import progress
from ddm.emulate.perturbations import sample_perturbations
from ddm.evaluation.metrics import lds
from ddm.evaluation.retrain import RetrainCache

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

VARIANTS: dict[str, list[str]] = {"DDM (the default)": [], "majority class only": [],
                                  "theta_tau only": ["distill.checkpoints=1"],
                                  "matched at the checkpoints": ["distill.match_at=checkpoints"]}


def majority_slots(train, groups, ipc):  # the synsets before mixed groups were handled
    return (groups.labels[:, None].expand(-1, ipc).clone(), groups.sizes()[:, None].expand(-1, ipc).float() / ipc)


def run(name: str, seed: int, root: Path, targets_n: int, subsets: int) -> dict[str, dict[str, float]]:
    cfg, data = M.make_config(M.CONFIGS[name][0], seed, [])
    rows, targets = M.target_rows(data, targets_n, select=False)  # matrix.py's reported targets
    folder = root / name / f"seed{seed}"
    dm = ddm.DistilledDatamodel(folder / "ddm", cfg, overwrite=True).fit(ddm.models.build(cfg.model, data),
                                                                         data.train)
    K = dm.groups.num_groups
    cache = RetrainCache(folder / "retrain", dm.model, dm.trajectory.checkpoint(0), data.train, dm.groups, cfg.train,
                         data.test.x)
    keep = sample_perturbations(K, subsets, 0.5, seed=10_000 + seed)  # matrix.py's half subsets
    actual = M.losses(cache.many([torch.nonzero(~k).flatten().tolist() for k in keep], name)[:, rows], targets.y)
    out: dict[str, dict[str, float]] = {}
    for tag, extra in VARIANTS.items():
        real = head_mod.slot_labels
        if tag == "majority class only":
            head_mod.slot_labels = majority_slots
        try:
            sub = "ddm" if tag == "DDM (the default)" else "mixed-" + tag.split()[0]
            v = ddm.DistilledDatamodel(folder / sub, cfg.with_overrides(extra), overwrite=True).fit(
                ddm.models.build(cfg.model, data), data.train)
        finally:
            head_mod.slot_labels = real
        attr = v.attribute(targets, "dist2", name="mixed-groups")
        health = v.ws.require("synset")["health"]
        out[tag] = {"lds": lds(attr.predict(keep)[:, :, 0], actual)[0], "cosine": float(health["cosine_mean"]),
                    "flagged": len(health.get("flagged", [])),
                    "transfer": [c["cosine_mean"] for c in health.get("checkpoints", [])]}
    return out


def render(results: dict[str, list[dict[str, Any]]], command: str, seeds: str) -> list[str]:
    names = list(results)
    lines = ["# Synsets of groups that mix classes (diagnostic)", "",
             f"Command: `{command}`; seeds {seeds}, the "
             "reported targets and half subsets of `matrix.py`; LDS mean ± sample std over seeds, and the mean step "
             "cosine of the synsets with their groups' real removal steps at theta_tau and at the averaged "
             "checkpoints (earliest first), and the groups flagged in all seeds.", "",
             "| variant | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for tag in VARIANTS:
        cells = []
        for n in names:
            v = np.array([r[tag]["lds"] for r in results[n]])
            cos = np.mean([r[tag]["cosine"] for r in results[n]])
            fl = sum(r[tag]["flagged"] for r in results[n])
            tr = [np.mean([r[tag]["transfer"][i] for r in results[n]])
                  for i in range(len(results[n][0][tag]["transfer"]))]
            at = f"; at the checkpoints {' / '.join(f'{t:.2f}' for t in tr)}" if tr else ""
            cells.append(f"{v.mean():+.3f} ± {v.std(ddof=1):.3f} (cosine {cos:.2f}{at}; {fl} flagged)")
        lines.append(f"| {tag} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/results/mixed-groups")
    p.add_argument("--root", default="runs/matrix")
    p.add_argument("--configs", default="digits-convnet-sequential-K40,fmnist-mlp-sequential-K50-sgd")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--render", default=None, metavar="A.json,B.json",
                   help="only merge earlier runs' JSON files (e.g. one process per configuration) into --out")
    args = p.parse_args()
    command = f"python benchmarks/mixed_groups.py {' '.join(sys.argv[1:])}"
    if args.render:
        results = {}
        for f in args.render.split(","):
            results.update(json.loads(Path(f).read_text()))
        M.write_report(args.out, render(results, command, args.seeds), results)
        return
    torch.set_num_threads(1)
    progress.set_enabled(False)
    names, seeds = args.configs.split(","), [int(s) for s in args.seeds.split(",")]
    results = {n: [run(n, s, Path(args.root), 50, 40) for s in seeds] for n in names}
    M.write_report(args.out, render(results, command, args.seeds), results)


if __name__ == "__main__":
    main()
