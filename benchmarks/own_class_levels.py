"""Where DDM ranks random halves below the class labels, is it the own class's weights or the other classes'?
(a diagnostic on workspaces ``ddm check`` has retrained; nothing is retrained here, no default changes)

With two groups per class a random half keeps both, one or none of the target's class's groups, and the retrained
loss mostly says which: the trivial same-class score has exactly those three levels (tied within each). Per
workspace, on the check's 200 targets and 16 random halves (its cached retrains), LDS of: DDM as configured; its
own-class weights alone (other classes' groups at 0: three or four levels); the own-class weights with other
classes' weights, as attributed (after the configured class balance), times a share (the tie-breaking of those
levels by other classes' weights; a share of 1 is DDM); the own-class weights
alone with the emulated removal of the whole class in place of the linear sum where a half removes the whole class;
the trivial score.

    python benchmarks/own_class_levels.py runs/u1 runs/u9 runs/u4 runs/u7 runs/u10 runs/u14 \\
        --out benchmarks/results/own-class-levels
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

from ddm import progress  # noqa: E402
from ddm.evaluation.check import _spearman_columns  # noqa: E402
from ddm.objectives import get  # noqa: E402

SHARES = (0.0, 0.03, 0.1, 0.5)


def run(ws: str) -> dict[str, Any]:
    dm, data, targets, _, _, keep, actual = M.check_halves(ws)
    F = dm.fitted()
    attr = dm.attribute(targets, "dist2", name="check")
    labels, y = F.groups.labels, targets.y
    same = (labels[None, :] == y[:, None]).float()  # [T, K]
    W = attr.weights[..., 0]
    own, other = keep.float() @ (W * same).T, keep.float() @ (W * (1 - same)).T  # [S, T]

    def lds(pred: torch.Tensor) -> float:
        return round(float(_spearman_columns(pred.double().numpy(), actual.double().numpy()).mean()), 3)

    out: dict[str, Any] = {"groups per class": round(F.groups.num_groups / data.num_classes, 1),
                           "DDM": lds(attr.predict(keep)[..., 0]), "trivial": lds((~keep).float() @ same.T)}
    for s in SHARES:
        out[f"own + {s:g} x other"] = lds(own + s * other)
    # the emulated removal of the target's whole class, where a half removes it, in place of the linear sum
    e = dm.config.emulate
    deleted = torch.stack([labels == c for c in range(data.num_classes)])
    averaged = dm.synset.transferring(e.min_transfer).damped(e.damping_scale)
    emulated = get("dist2").outputs(dm._emulate(averaged, dm.keys["synset"], deleted, targets, "groups", F.groups),
                                    targets.y)[..., 0]  # [C, T]
    whole = ~(keep[:, None, :] & same.bool()[None]).any(-1)  # [S, T]: the half removes the target's class
    at = torch.arange(len(y))
    jump = emulated[y, at] - attr.predict(~deleted)[..., 0][y, at]  # the emulation beyond the linear model there
    out["own alone, whole class emulated"] = lds(own + jump.clamp_min(0)[None] * whole)
    out["halves removing the whole class"] = round(float(whole.float().mean()), 3)
    print(ws, out, flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workspaces", nargs="+")
    p.add_argument("--out", default="benchmarks/results/own-class-levels")
    args = p.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    results = {ws: run(ws) for ws in args.workspaces}
    cols = list(next(iter(results.values())))
    lines = ["# Own-class levels and other classes' tie-breaking (diagnostic)", "",
             f"Command: `python benchmarks/own_class_levels.py {' '.join(args.workspaces)} --out {args.out}`; "
             "LDS on each workspace's `ddm check` retrains (200 targets, 16 random halves).", "",
             "| workspace | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    lines += [f"| {ws} | " + " | ".join(f"{r[c]:g}" for c in cols) + " |" for ws, r in results.items()]
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
