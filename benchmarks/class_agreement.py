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

import ddm
from ddm import progress
from ddm.evaluation.metrics import spearman
from ddm.workspace import atomic_write_text


def one(path: str, num_targets: int = 50) -> dict[str, Any]:
    dm = ddm.DistilledDatamodel(path).load()
    data = ddm.data.load(dm.config.data)
    targets, tau, averaged = dm._step_attributions(data.train, num_targets)
    w = [a.weights[:, :, 0] for a in (tau, averaged)]
    labels = dm.groups.labels
    own, other, share = [], [], []
    for t, y in enumerate(targets.y.tolist()):
        mine = labels == y
        if mine.sum() > 2:
            own.append(spearman(w[0][t, mine], w[1][t, mine]))
        other.append(spearman(w[0][t, ~mine], w[1][t, ~mine]))
        share.append(float(w[1][t, ~mine].abs().sum() / w[1][t].abs().sum().clamp_min(1e-30)))
    meta = dm.ws.require("synset")  # the stage's record: its agreements and temperature
    return {"workspace": path, "groups": dm.groups.num_groups, "temperature": meta.get("temperature"),
            "step_agreement": meta.get("step_agreement"),
            "own_class_agreement": float(np.mean(own)) if own else None,
            "other_class_agreement": float(np.mean(other)), "other_class_share": float(np.mean(share))}


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
