"""Would the attribution emulation gain from the kept data's curvature? (a diagnostic, not a default)

DDM's attribution emulates removing a perturbation's groups by the step ``(H + lambda I)^-1 g_R / N`` with the
*full* data's curvature H (the influence-function form: each group's effect adds up), while unlearning takes the
Newton step of the kept data's loss, ``(H - H_R + lambda I)^-1 g_R / N``, whose curvature loses what the removed
groups held. The second is the exact one-step optimum of the quadratic model of what retraining minimises, and it
is not additive: removing most of a class removes most of its curvature, so the class's step grows faster than the
count of its groups, as retraining's effect does. This asks whether it ranks subsets better, with no synsets in
the way: each group's *real* summed gradient and Gauss-Newton matrix over the last layer at theta_tau (exact,
``C D' x C D'``; heads up to a few thousand parameters), lambda = ``--dampings`` times H's top eigenvalue, the
targets' logits read out after the step, LDS and other-class LDS on the matrix's subsets and validation targets.

    python benchmarks/kept_curvature.py --configs fmnist-mlp-K40-sgd,digits-mlp-K40-sgd --seed 3 \
        --out benchmarks/results/kept-curvature-seed3
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ddm.distill.head import Head

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402


def group_terms(h: torch.Tensor, p: torch.Tensor, y: torch.Tensor, groups: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Each group's summed last-layer gradient ``[K, C D']`` and Gauss-Newton matrix ``[K, C D', C D']`` (the
    ``(diag p - p p^T) kron h h^T`` of its samples, summed), from features ``h [N, D']`` and probabilities ``p``."""
    C, D = p.shape[1], h.shape[1]
    r = p - F.one_hot(y, C).to(p.dtype)
    g = torch.zeros(groups.num_groups, C * D, dtype=h.dtype)
    H = torch.zeros(groups.num_groups, C * D, C * D, dtype=h.dtype)
    for k in range(groups.num_groups):
        m = groups.members(k)
        g[k] = (r[m].T @ h[m]).reshape(-1)
        block = -torch.einsum("ic,ie,id,if->cdef", p[m], p[m], h[m], h[m])
        diag = torch.einsum("ic,id,ie->cde", p[m], h[m], h[m])
        for c in range(C):
            block[c, :, c, :] += diag[c]
        H[k] = block.reshape(C * D, C * D)
    return g, H


def run(name: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    cfg, data, _, dm, cache = M.open_run(root, name, seed)
    vt = M.ValidationTargets(dm, cache, data, seed)
    head, params = Head.of(dm.model), dm.trajectory.final
    with torch.no_grad():
        h = head.features(data.train.x, params).double()
        W = head.matrix(params).double()
        ht = head.features(vt.targets.x, params).double()
        p = torch.softmax(h @ W.T, 1)
    n = len(h)
    g, Hk = group_terms(h, p, data.train.y, dm.groups)
    H = Hk.sum(0) / n
    top = float(torch.linalg.eigvalsh(H)[-1])
    eye = torch.eye(len(H), dtype=H.dtype)

    def emulation(kept: bool, damping: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        def predict(masks: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
            out = []
            for keep in masks:
                removed = ~keep
                A = H + damping * top * eye - (Hk[removed].sum(0) / n if kept else 0)
                U = torch.linalg.solve(A, g[removed].sum(0) / n).reshape(W.shape)
                logits = (ht[cols] @ (W + U).T).float()
                out.append(F.cross_entropy(logits, vt.targets.y[cols], reduction="none"))
            return torch.stack(out)
        return predict

    res = {k: list(v) for k, v in vt.baselines(dm, "kept-curvature").items()}
    for damping in [float(d) for d in args.dampings.split(",")]:
        for kept in (False, True):
            res[f"real, {'kept' if kept else 'full'} H, {damping:g}"] = list(vt.score(emulation(kept, damping)))
    print(name, res, flush=True)
    return res


def main() -> None:
    def options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dampings", default="1e-3,1e-2", help="lambda as fractions of H's top eigenvalue")

    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/kept-curvature-seed3",
                                            "fmnist-mlp-K40-sgd,digits-mlp-K40-sgd", options=options)
    lines = ["# The kept data's curvature in the attribution emulation", "",
             f"Command: `python benchmarks/kept_curvature.py {' '.join(sys.argv[1:])}`", "",
             f"Seed {args.seed}, its validation targets; each cell LDS / other-class LDS. `real, full H` is the "
             "influence-function form DDM's attribution takes (with real gradients, at theta_tau only), `real, kept "
             "H` the kept data's Newton step that unlearning takes.", "",
             *M.score_table(results)]
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
