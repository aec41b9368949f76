"""Where does the step at theta_tau agree with the earlier checkpoints' steps: within the target's class or across? (a
diagnostic, no retrain)

The synset stage's step agreement (``DistilledDatamodel.step_agreement``) compares the attribution made with the
Newton step at theta_tau alone with the one averaged over the earlier checkpoints, on 50 training samples as targets,
over random halves of the groups. Here the two attributions' weights are compared group by group, per target
(unbalanced: ``emulate.other_class_scale`` 1), split into the target's own class's groups and the other classes':
the Spearman correlation of the two steps' weights over each part, averaged over targets, and the other classes'
share of the weights' spread. The question: does the agreement over other classes' groups say how much the
attribution should weigh them (the class balance, which on the switched runs ranged from wanting 0.05 to 0.7)?

    python benchmarks/class_agreement.py runs/matrix-b/digits-alexnet-K40-adam/seed0/ddm runs/u12 \\
        --out benchmarks/results/class-agreement
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

import ddm
from ddm import progress
from ddm.attribution.fit import fit_attribution
from ddm.emulate.newton import member_shifts
from ddm.emulate.perturbations import sample_perturbations
from ddm.objectives import get
from ddm.workspace import atomic_write_text


def one(path: str, num_targets: int = 50) -> dict[str, Any]:
    dm = ddm.DistilledDatamodel(path).load()
    data = ddm.data.load(dm.config.data)
    F = dm.fitted()
    synset, groups, e = F.synset, F.groups, dm.config.emulate
    averaged = synset.transferring(e.min_transfer)
    if not averaged.checkpoints:
        averaged = synset
    averaged = averaged.damped(e.damping_scale)
    K = synset.num_groups
    train = data.train
    targets = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:num_targets]]
    keep = sample_perturbations(K, dm._num_perturbations(K, synset), e.keep_prob, e.seed)
    z, s_tau, s_each = member_shifts(F.model, F.trajectory.final, averaged, ~keep, targets.x, F.trajectory,
                                     dm.decay(groups))
    s_ck = sum(s_each) / len(s_each)
    obj = get("dist2")
    w = [fit_attribution(keep, obj.outputs((z + s).float(), targets.y), obj, groups, targets.index.tolist(),
                         synset.num_classes, e.weighting, e.ridge, None, targets.y, 1.0).weights[:, :, 0].numpy()
         for s in (s_tau, s_ck)]
    labels = groups.labels.numpy()
    own, other, share = [], [], []
    for t, y in enumerate(targets.y.tolist()):
        mine = labels == y
        if mine.sum() > 2:
            own.append(spearmanr(w[0][t, mine], w[1][t, mine])[0])
        other.append(spearmanr(w[0][t, ~mine], w[1][t, ~mine])[0])
        share.append(float(np.abs(w[1][t, ~mine]).sum() / max(np.abs(w[1][t]).sum(), 1e-30)))
    record = dm.ws.require("synset")
    meta = record.get("meta", record)
    return {"workspace": path, "groups": K, "temperature": meta.get("temperature"),
            "step_agreement": meta.get("step_agreement"),
            "own_class_agreement": float(np.nanmean(own)) if own else None,
            "other_class_agreement": float(np.nanmean(other)), "other_class_share": float(np.mean(share))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workspaces", nargs="+")
    p.add_argument("--out", default="benchmarks/results/class-agreement")
    args = p.parse_args()
    progress.set_enabled(False)
    results = []
    for w in args.workspaces:
        results.append(one(w))
        print(results[-1], flush=True)
    lines = ["# The step agreement within and across classes (diagnostic)", "",
             f"Command: `python benchmarks/class_agreement.py {' '.join(sys.argv[1:])}`", "",
             "Per target (50 training samples), the Spearman correlation between the attribution weights of the step "
             "at theta_tau and of the step averaged over the transferring checkpoints, over the target's own class's "
             "groups and over the other classes' groups (no class balance); the other classes' share of the averaged "
             "step's absolute weights.", "",
             "| workspace | temperature | step agreement | own-class agreement | other-class agreement | other-class "
             "share |", "|---|---|---|---|---|---|"]
    for r in results:
        own = "–" if r["own_class_agreement"] is None else f"{r['own_class_agreement']:.3f}"
        lines.append(f"| {r['workspace']} | {r['temperature'] or 1} | {r['step_agreement']} | {own} | "
                     f"{r['other_class_agreement']:.3f} | {r['other_class_share']:.3f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.out + ".md"), "\n".join(lines) + "\n")
    atomic_write_text(Path(args.out + ".json"), json.dumps(results, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
