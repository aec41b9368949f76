"""Do the synsets tell a class's groups apart? (a diagnostic; no default depends on it)

The matching's health numbers (cosine, relative error of each synset's removal step against its group's) measure
each group's step on its own. Attribution ranks groups by their *differences*: within a class, the groups' steps
share a common part (the class's) and LDS over random halves turns on what is left. Where the groups of a class are
alike (a class of noise around one colour, "Noisy images" in BENCHMARKS.md) a relative error that is small against
the whole step can be large against what sets one group apart. This reads, at theta_tau and with no retrain:

* ``rel.err``: the median relative error (``|a - b|^2 / |b|^2``) of the synsets' removal steps ``U`` against the
  groups' real samples' (the health check's number);
* ``distinct``: the median share of a group's real step that is not its class's mean step (``|U_k - mean_c U|^2 /
  |U_k|^2``, the groups of the same class);
* ``err/distinct``: the median of their ratio per group: above 1, the matching error is larger than what sets the
  group apart from its class;
* ``agree``: for each of the check's targets, the Spearman correlation over groups between the first-order test
  loss changes the two steps predict (``(softmax - e_y) . h U_k``), averaged over targets; ``agree other``: the
  same over the other classes' groups only (what other-class LDS ranks).

    python benchmarks/synset_resolution.py runs/noisy/img-s1-step runs/matrix-b/fmnist-mlp-K40-sgd/seed0/ddm ...
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
from binary_decompose import real_synset  # noqa: E402

import ddm  # noqa: E402
from ddm import progress  # noqa: E402
from ddm.distill.head import Head  # noqa: E402
from ddm.emulate.newton import head_shifts, removal_displacements  # noqa: E402


def _rank_mean(a: np.ndarray, b: np.ndarray) -> float:
    out = [spearmanr(a[:, j], b[:, j])[0] for j in range(a.shape[1])]
    return float(np.nanmean(out))


def resolution(ws: str) -> dict[str, float]:
    from ddm.evaluation.check import check_targets

    dm = ddm.DistilledDatamodel(ws).load()
    data = ddm.data.load(dm.config.data)
    syn, groups = dm.synset, dm.groups
    assert syn is not None and groups is not None
    dm.model.eval()
    params = {k: v.detach() for k, v in dm.model.named_parameters()}
    tau_only = replace(syn, checkpoints=[])
    real = replace(real_synset(dm, data.train), checkpoints=[])
    with torch.no_grad():
        U_syn = removal_displacements(dm.model, params, tau_only).double()
        U_real = removal_displacements(dm.model, params, real).double()
        rows = check_targets(len(data.test), 200)
        targets = data.test[rows]
        head = Head.of(dm.model)
        h = head.features(targets.x).double()
        W = head.matrix(params).double()
        p = torch.softmax(h @ W.T, 1)
        r = p - torch.nn.functional.one_hot(targets.y, p.shape[1]).double()
        shape = W.shape
        T_syn = (head_shifts(h, U_syn, shape) * r[None]).sum(-1).numpy()  # [K, N]
        T_real = (head_shifts(h, U_real, shape) * r[None]).sum(-1).numpy()
    cls = groups.labels
    err = ((U_syn - U_real) ** 2).sum(1) / (U_real ** 2).sum(1)
    mean_c = torch.stack([U_real[cls == c].mean(0) for c in cls.tolist()])
    distinct = ((U_real - mean_c) ** 2).sum(1) / (U_real ** 2).sum(1)
    agree = _rank_mean(T_syn, T_real)
    other = []
    for j in range(len(rows)):
        m = (cls != int(targets.y[j])).numpy()
        other.append(spearmanr(T_syn[m, j], T_real[m, j])[0])
    return {"rel.err": float(err.median()), "distinct": float(distinct.median()),
            "err/distinct": float((err / distinct.clamp(min=1e-12)).median()),
            "agree": agree, "agree other": float(np.nanmean(other)), "K": groups.num_groups}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workspaces", nargs="+")
    args = p.parse_args()
    torch.set_num_threads(2)
    progress.set_enabled(False)
    print("| workspace | K | rel.err | distinct | err/distinct | agree | agree other |")
    print("|---|---|---|---|---|---|---|")
    for ws in args.workspaces:
        r = resolution(ws)
        print(f"| {ws} | {r['K']} | {r['rel.err']:.3f} | {r['distinct']:.3f} | {r['err/distinct']:.3f} | "
              f"{r['agree']:.3f} | {r['agree other']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
