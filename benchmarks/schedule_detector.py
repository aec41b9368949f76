"""Does removing other classes' data raise or lower a target's loss, and does DDM say the same? (diagnostic)

Where DDM's other-class LDS is negative (the weight-decayed momentum digits ConvNet, its cosine variant), removing
other classes' data *raises* a target's loss in proportion to how much is removed (fewer steps), while DDM predicts
that it lowers it (fewer competitors); where DDM is right the two slopes agree (``schedule_effect.py``). Here the
sign is read from a few retrains that remove no group's content in particular: for each of ``--classes`` classes c,
one retrain that keeps every sample of class c and a random half of every other group's samples (in the target's
data order). Per target of class c (test rows outside the reported and validation targets), the retrained loss
minus the full data's retrain, against DDM's predicted change for the same removal (each group's weight times the
share of its samples removed).

    python benchmarks/schedule_detector.py --seed 0 --configs digits-convnet-K40-momentum-wd \\
        --out benchmarks/results/schedule-detector-s0
"""

from __future__ import annotations

import sys
from argparse import ArgumentParser, Namespace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402


def half_of_others(assignment: torch.Tensor, group_labels: torch.Tensor, c: int, seed: int) -> torch.Tensor:
    """Training rows kept: every sample of the groups of class ``c``, a random half of every other group's."""
    g = torch.Generator().manual_seed(seed)
    keep = torch.zeros(len(assignment), dtype=torch.bool)
    for k in range(len(group_labels)):
        idx = torch.nonzero(assignment == k).flatten()
        if int(group_labels[k]) == c:
            keep[idx] = True
        else:
            keep[idx[torch.randperm(len(idx), generator=g)[: (len(idx) + 1) // 2]]] = True
    return torch.nonzero(keep).flatten()


def run(name: str, seed: int, root: Path, args: Namespace) -> dict[str, Any]:
    cfg, data, folder, dm, cache = M.open_run(root, name, seed)
    perm = torch.randperm(len(data.test), generator=torch.Generator().manual_seed(M.TARGET_SEED))
    C = data.num_classes
    classes = [int(c) for c in torch.linspace(0, C - 1, args.classes).round().long()]
    full = cache.get([])
    assignment, labels = dm.groups.assignment, dm.groups.labels
    sizes = dm.groups.sizes().double()
    out: dict[str, Any] = {}
    deltas, preds, terms = [], [], []
    for c in classes:
        rows = perm[100:][data.test.y[perm[100:]] == c]
        targets = data.test[rows]
        kept = half_of_others(assignment, labels, c, 777 + c)
        logits = M.extra_retrain(cache, folder / "schedule-detector" / f"class{c}.safetensors", kept)
        delta = M.losses(logits[None, rows], targets.y)[0] - M.losses(full[None, rows], targets.y)[0]
        attr = dm.attribute(targets, "dist2", name=f"schedule-detector-{c}")
        removed_share = 1 - torch.bincount(assignment[kept], minlength=len(labels)).double() / sizes  # [K]
        pred = (attr.weights[:, :, 0].double() * removed_share[None, :]).sum(1).float()
        f = 1 - len(kept) / len(assignment)
        term = M.rewound_losses(dm, targets)(0.5) / 0.5 * f
        deltas.append(delta)
        preds.append(pred)
        terms.append(term)
        out[f"class {c}"] = {"targets": len(rows), "f": round(f, 3), "measured median": float(delta.median()),
                             "DDM median": float(pred.median()),
                             "measured > 0": float((delta > 0).float().mean()),
                             "DDM > 0": float((pred > 0).float().mean())}
    d, p, t = torch.cat(deltas), torch.cat(preds), torch.cat(terms)
    # across targets, the measured change regressed on DDM's predicted change and on the term (an intercept beside):
    # a weight b / a for the term where both slopes are positive
    fit = torch.linalg.lstsq(torch.stack([torch.ones_like(d), p, t], 1).double(), d.double()[:, None]).solution
    a, b = float(fit[1]), float(fit[2])
    out["all"] = {"targets": len(d), "measured median": float(d.median()), "DDM median": float(p.median()),
                  "term median": float(t.median()), "measured > 0": float((d > 0).float().mean()),
                  "DDM > 0": float((p > 0).float().mean()), "slope on DDM": a, "slope on the term": b}
    print(name, seed, out, flush=True)
    return out


def options(p: ArgumentParser) -> None:
    p.add_argument("--classes", type=int, default=3, help="classes kept whole, one retrain each")


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/schedule-detector",
                                            "digits-convnet-K40-momentum-wd", options=options)
    lines = M.diagnostic_head("Removing half of other classes' samples: the loss change measured and predicted "
                              "(diagnostic)", args, "calibration targets of the classes kept whole.",
                              ["targets", "measured median", "DDM median", "measured > 0", "DDM > 0", "term median",
                               "slopes across targets: DDM, term"])
    for n in names:
        a = results[n]["all"]
        lines.append(f"| {n} | {a['targets']} | {a['measured median']:+.4f} | {a['DDM median']:+.5f} | "
                     f"{a['measured > 0']:.2f} | {a['DDM > 0']:.2f} | {a['term median']:+.4f} | "
                     f"{a['slope on DDM']:+.3g}, {a['slope on the term']:+.3g} |")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
