"""Do the synsets' steps move the targets as their groups' do? (a diagnostic; no default depends on it)

The matching's health numbers (cosine, relative error of each synset's removal step against its group's) measure
each group's last-layer step in parameter space. Attribution reads what the step does to the targets' losses. This
compares the two at theta_tau, with no retrain, for the synsets' step ``U_syn`` and the groups' real samples' step
``U_real`` (:func:`binary_decompose.real_synset`):

* ``rel.err``: the median relative error (``|a - b|^2 / |b|^2``) of ``U_syn`` against ``U_real`` (the health check's);
* ``distinct``: the median share of a group's real step that is not its class's mean step (``|U_k - mean_c U|^2 /
  |U_k|^2``): whether groups of a class are alike (they are not, on any run read so far);
* ``test r`` / ``train r``: per target, the Pearson correlation over groups of the first-order loss changes the two
  steps predict (``(softmax - e_y) . h U_k``), averaged over the check's 200 test targets / over 1,000 training
  samples (the latter needs no test data: a retrain-free reading);
* ``size``: the median over groups of ``|T_syn| / |T_real|``, the norms of those loss changes over the test targets;
* ``spearman`` / ``other``: the Spearman correlation over groups (over the other classes' groups), averaged over
  the test targets.

``--rescale`` (workspaces ``ddm check`` has retrained) also scores, on the check's halves, the synsets with each
group's weights scaled to fit its real step's loss changes, on the training samples outside the group and (an
oracle) on the test targets.

    python benchmarks/synset_resolution.py runs/noisy/img-s1-step runs/noisy/img-s2-step runs/matrix-b/*/seed0/ddm
    python benchmarks/synset_resolution.py --rescale runs/noisy/img-s1-step runs/noisy/img-s2-step
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402
from binary_decompose import real_synset  # noqa: E402

import ddm  # noqa: E402
from ddm import objectives, progress  # noqa: E402
from ddm.distill.head import Head  # noqa: E402
from ddm.emulate.newton import head_shifts, removal_displacements  # noqa: E402


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(a.shape[1])]))


def _effects(dm: ddm.DistilledDatamodel, U: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[K, N]``: the first-order change of each sample's loss under each group's head step ``U [K, D]``."""
    head = Head.of(dm.model)
    params = {k: v.detach() for k, v in dm.model.named_parameters()}
    h = head.features(x).double()
    W = head.matrix(params).double()
    p = torch.softmax(h @ W.T, 1)
    r = p - torch.nn.functional.one_hot(y, p.shape[1]).double()
    return (head_shifts(h, U, W.shape) * r[None]).sum(-1)


def _steps(dm: ddm.DistilledDatamodel, train: ddm.data.Split) -> tuple[torch.Tensor, torch.Tensor]:
    """The synsets' and the groups' real samples' head steps at theta_tau, ``[K, D]`` each."""
    assert dm.synset is not None
    params = {k: v.detach() for k, v in dm.model.named_parameters()}
    with torch.no_grad():
        return tuple(removal_displacements(dm.model, params, replace(s, checkpoints=[])).double()  # type: ignore
                     for s in (dm.synset, real_synset(dm, train)))


def resolution(ws: str) -> dict[str, float]:
    from ddm.evaluation.check import check_targets

    dm = ddm.DistilledDatamodel(ws).load()
    data = ddm.data.load(dm.config.data)
    dm.model.eval()
    groups = dm.groups
    assert groups is not None
    U_syn, U_real = _steps(dm, data.train)
    targets = data.test[check_targets(len(data.test), 200)]
    sample = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:1000]
    with torch.no_grad():
        T_syn, T_real = (_effects(dm, U, targets.x, targets.y) for U in (U_syn, U_real))
        R_syn, R_real = (_effects(dm, U, data.train.x[sample], data.train.y[sample]) for U in (U_syn, U_real))
    cls = groups.labels
    err = ((U_syn - U_real) ** 2).sum(1) / (U_real ** 2).sum(1)
    mean_c = torch.stack([U_real[cls == c].mean(0) for c in cls.tolist()])
    distinct = ((U_real - mean_c) ** 2).sum(1) / (U_real ** 2).sum(1)
    a, b = T_syn.numpy(), T_real.numpy()
    rank = float(np.nanmean([spearmanr(a[:, j], b[:, j])[0] for j in range(a.shape[1])]))
    other = [spearmanr(a[m, j], b[m, j])[0] for j in range(a.shape[1])
             for m in [(cls != int(targets.y[j])).numpy()]]
    return {"K": groups.num_groups, "rel.err": float(err.median()), "distinct": float(distinct.median()),
            "test r": _pearson(a, b), "train r": _pearson(R_syn.numpy(), R_real.numpy()),
            "size": float((T_syn.norm(dim=1) / T_real.norm(dim=1)).median()), "spearman": rank,
            "other": float(np.nanmean(other))}


def rescaled(ws: str) -> None:
    """LDS on the check's halves of the synsets as they are, and with each group's weights scaled by the least-squares
    fit of its step's loss changes to its real step's: on the training samples outside the group, and on the test
    targets (an oracle)."""
    from ddm.evaluation.check import _spearman_columns

    dm, data, targets, rows, truth, keep, actual = M.check_halves(ws)
    dm.model.eval()
    syn, groups = dm.synset, dm.groups
    assert syn is not None and groups is not None
    U_syn, U_real = _steps(dm, data.train)
    sample = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:1000]
    with torch.no_grad():
        R_syn, R_real = (_effects(dm, U, data.train.x[sample], data.train.y[sample]) for U in (U_syn, U_real))
        T_syn, T_real = (_effects(dm, U, targets.x, targets.y) for U in (U_syn, U_real))
    outside = torch.stack([groups.assignment[sample] != k for k in range(groups.num_groups)]).double()
    fits = {"as distilled": torch.ones(groups.num_groups),
            "rescaled on training samples": ((R_syn * R_real * outside).sum(1)
                                             / (R_syn ** 2 * outside).sum(1)).clamp(0.25, 4.0),
            "rescaled on the test targets (oracle)": (T_syn * T_real).sum(1) / (T_syn ** 2).sum(1)}
    config = dm.config.with_overrides(["emulate.gradients=synsets"])
    dm.config = config
    for name, alpha in fits.items():
        s = replace(syn, weights=syn.image_weights() * alpha[:, None].float())
        attr = dm._attribute_flat(targets, objectives.get("dist2"), s, f"{dm.keys['synset']}-{name}", groups, "groups")
        pred = attr.predict(keep)[..., 0]
        lds = _spearman_columns(pred.double().numpy(), actual.double().numpy()).mean()
        print(f"  {ws} {name:40s} LDS {lds:.4f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workspaces", nargs="+")
    p.add_argument("--rescale", action="store_true", help="score rescaled synsets on the check's halves")
    args = p.parse_args()
    torch.set_num_threads(2)
    progress.set_enabled(False)
    if args.rescale:
        for ws in args.workspaces:
            rescaled(ws)
        return
    cols = ("K", "rel.err", "distinct", "test r", "train r", "size", "spearman", "other")
    print("| workspace | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for ws in args.workspaces:
        r = resolution(ws)
        print(f"| {ws} | " + " | ".join(f"{r[c]:.3f}" if c != "K" else str(r[c]) for c in cols) + " |", flush=True)


if __name__ == "__main__":
    main()
