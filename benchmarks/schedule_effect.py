"""Why DDM's other-class LDS is negative on the weight-decayed momentum ConvNet: a diagnostic, not a default.

Exact retraining keeps the schedule in *epochs*, so a retrain without a fraction f of the data takes a fraction f
fewer optimizer steps. Where training was still improving at the end, that alone raises every target's loss in
proportion to the data removed, a change no last-layer step at theta_tau can express. This script measures, on
seed 3 with the validation targets of ``matrix.py`` (its retrains are reused, or made):

* ``removed size``: predicted loss = the number of training samples removed (the schedule effect alone);
* ``DDM + steps x s``: DDM's emulated logits with theta_tau's replaced by the recorded trajectory's logits at
  epoch tau (1 - s f), interpolated between checkpoints (the schedule effect, scaled by s);
* ``loss per unit removed``: the median over targets of the least-squares slope of a target's retrained loss
  against the fraction of training data removed, over its other-class subsets (its class kept whole), beside
  the same slope of DDM's predicted loss and the median of what the trajectory predicts for fewer steps (the
  loss's slope over the last epoch x the epochs);
* ``centered``: the removal step from g_k - n_k g_bar (g_bar the mean training gradient), the exact first-order
  step of a mean loss that is not at its minimum, e.g. under weight decay.

    python benchmarks/schedule_effect.py --out benchmarks/results/schedule-effect
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ddm import devices
from ddm.distill.head import Head, checkpoint_indices, head_gradients, head_statistics, synset_head_gradients
from ddm.emulate.newton import newton_logits
from ddm.evaluation.metrics import lds

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

#: probes of what sets the regime apart (the digits ConvNet of the matrix, one setting changed at a time): the
#: momentum-wd configuration without its decay, plain SGD at its effective rate lr / (1 - momentum) = 0.2 and at the
#: demo's 0.1, and the K = 100 selection configuration at 0.2
PROBES: dict[str, list[str]] = {
    "digits-convnet-K40-momentum": ["train.lr=0.02", "train.momentum=0.9", "cluster.per_class=4"],
    "digits-convnet-K40-sgd-lr0.2": ["train.lr=0.2", "cluster.per_class=4"],
    "digits-convnet-K40-sgd-lr0.1": ["cluster.per_class=4"],
    "digits-convnet-K100-sgd-lr0.2": ["train.lr=0.2"],
}
M.CONFIGS.update({k: (v, False) for k, v in PROBES.items()})
SCALES = (0.05, 0.1, 0.25, 0.5)
TREND_SCALES = (0.25, 0.5, 1.0)


def run(name: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, tuple[float, ...]]:
    cfg, data, _, dm, cache = M.open_run(root, name, seed)
    rows, targets = M.target_rows(data)  # the validation targets
    keep, oc_keep = M.lds_subsets(dm.groups, targets.y, seed)
    actual = M.losses(cache.many([torch.nonzero(~k).flatten().tolist() for k in keep], name)[:, rows], targets.y)
    oc_actual = {}
    for c, m in oc_keep.items():
        sel = targets.y == c
        oc_actual[c] = M.losses(cache.many([torch.nonzero(~k).flatten().tolist() for k in m], name)[:, rows[sel]],
                                targets.y[sel])

    def score(predict: object) -> tuple[float, float]:
        a = lds(predict(keep, torch.arange(len(rows))), actual)[0]  # type: ignore[operator]
        per: list[float] = []
        for c, m in oc_keep.items():
            sel = torch.nonzero(targets.y == c).flatten()
            per += lds(predict(m, sel), oc_actual[c])[1]  # type: ignore[operator]
        return round(a, 3), round(float(np.mean(per)), 3)

    res: dict[str, tuple[float, ...]] = {}
    attr = dm.attribute(targets, "dist2", name="schedule-effect")
    res["DDM (the default)"] = score(lambda k, sel: attr.predict(k)[:, sel, 0])
    same = M.same_class(dm.groups, targets.y)
    res["same class (trivial)"] = score(lambda k, sel: M.predicted_loss(same[sel], k))
    sz = dm.groups.sizes().float()
    res["removed size"] = score(lambda k, sel: ((~k).float() @ sz)[:, None].expand(-1, len(sel)) + 0.0)
    traj = dm.trajectory
    ep = torch.tensor(traj.epochs, dtype=torch.float64)
    with torch.no_grad():
        Z = torch.stack([devices.forward(dm.model, targets.x, p) for p in traj.params])  # [checkpoints, T, C]

    def at_fraction(f: torch.Tensor) -> torch.Tensor:  # logits at epoch tau (1 - f), interpolated
        e = (ep[-1] * (1 - f)).clamp(ep[0], ep[-1])
        i = torch.searchsorted(ep, e).clamp(1, len(ep) - 1)
        w = ((e - ep[i - 1]) / (ep[i] - ep[i - 1])).float()[:, None, None]
        return Z[i - 1] * (1 - w) + Z[i] * w

    def with_steps(k: torch.Tensor, sel: torch.Tensor, s: float) -> torch.Tensor:
        shift = newton_logits(dm.model, traj.final, dm.synset, ~k, targets.x[sel], trajectory=traj) - Z[-1][sel]
        base = at_fraction(s * ((~k).float() @ sz).double() / float(sz.sum()))[:, sel]
        return M.losses(base + shift, targets.y[sel])

    for s in SCALES:
        res[f"DDM + steps x{s}"] = score(lambda k, sel, s=s: with_steps(k, sel, s))
    late = ep >= ep[-1] / 2  # the trend of every target's logits over the second half of training
    e = (ep[late] - ep[late].mean()).float()
    slope = torch.einsum("e,etc->tc", e, Z[late] - Z[late].mean(0)) / (e * e).sum()  # logits per epoch

    def with_trend(k: torch.Tensor, sel: torch.Tensor, s: float) -> torch.Tensor:
        shift = newton_logits(dm.model, traj.final, dm.synset, ~k, targets.x[sel], trajectory=traj) - Z[-1][sel]
        lost = s * float(ep[-1]) * ((~k).float() @ sz) / float(sz.sum())  # epochs' worth of steps not taken
        base = Z[-1][sel][None] - lost[:, None, None] * slope[sel][None]
        return M.losses(base + shift, targets.y[sel])

    for s in TREND_SCALES:
        res[f"DDM + trend x{s}"] = score(lambda k, sel, s=s: with_trend(k, sel, s))
    # how much a target's loss rises per unit of data removed where its class stays whole (a least-squares slope over
    # its other-class subsets), against what the trajectory's end slope predicts (loss per epoch x the epochs)
    L_traj = M.losses(Z, targets.y)  # [checkpoints, T]
    end = (L_traj[-2] - L_traj[-1]) / float(ep[-1] - ep[-2]) * float(ep[-1])
    emp, own, pred = [], [], []
    for c, m in oc_keep.items():
        f = ((~m).float() @ sz) / float(sz.sum())
        A = torch.stack([torch.ones_like(f), f], 1)
        sel = torch.nonzero(targets.y == c).flatten()
        fit = torch.linalg.lstsq(A, torch.cat([oc_actual[c], attr.predict(m)[:, sel, 0].float()], 1)).solution[1]
        emp += fit[: len(sel)].tolist()
        own += fit[len(sel):].tolist()
        pred += end[sel].tolist()
    res["loss per unit removed: measured / DDM / end slope (medians)"] = tuple(
        round(float(np.median(v)), 3) for v in (emp, own, pred))
    head, C = Head.of(dm.model), data.num_classes
    for centered in (False, True):  # with the groups' real gradients, the step averaged over 5 checkpoints
        total = 0
        idx = checkpoint_indices(len(traj), 5)
        for i in idx:
            p = traj.params[i]
            st = head_statistics(head, data.train, dm.groups, C, params=p)
            g = synset_head_gradients(head, dm.synset, p).double()
            if centered:
                g = g - dm.groups.sizes().double()[:, None] * (st.group_grads.sum(0) / st.num_train)[None]
            U = st.curvature.solve(g, 1e-2 * st.top_eigenvalue + cfg.train.weight_decay) / st.num_train
            with torch.no_grad():
                h = head.features(targets.x, p)
                z = h @ head.matrix(p).T
                gt = head_gradients(h, z, F.one_hot(targets.y, C).to(z.dtype)).double()
            total = total + (gt @ U.T).float()
        s_lin = total / len(idx)
        res[f"linear step, {'centered' if centered else 'uncentered'}"] = score(
            lambda k, sel, s_lin=s_lin: (~k).float() @ s_lin[sel].T)
    return res


def main() -> None:
    args, names, results = M.run_diagnostic(
        __doc__, run, "benchmarks/results/schedule-effect",
        "digits-convnet-K100-sgd,fmnist-mlp-K40-sgd,digits-convnet-K40-momentum-wd", root="runs/matrix")
    rows = list(next(iter(results.values())))
    lines = ["# The schedule effect (diagnostic)", "", f"Command: `python benchmarks/schedule_effect.py "
             f"{' '.join(sys.argv[1:])}`; seed {args.seed}, validation targets; LDS / other-class LDS.", "",
             "| variant | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for r in rows:
        lines.append(f"| {r} | " + " | ".join(" / ".join(f"{v:+.3f}" for v in results[n][r]) for n in names) + " |")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
