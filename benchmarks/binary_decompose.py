"""Where does DDM lose to last-layer influence on binary tasks? (a diagnostic; no default depends on it)

On four binary probes (BENCHMARKS.md, "Two classes: the class balance asked") DDM ranks the ``ddm check`` halves
0.03-0.09 below last-layer influence. Both act on the last layer at theta_tau; DDM differs in (1) synthetic images
in place of each group's real samples, (2) the step averaged over earlier checkpoints, (3) the damping (a share of
the curvature's top eigenvalue, 1e-3 by default; influence: 0.01 absolute), (4) the class balance and (5) the
objective read out through the logits and fitted by regression over random perturbations. This scores DDM's own
attribution (``DistilledDatamodel._attribute_flat``, everything else as the workspace has it) with each piece
swapped for influence's, on the check's 16 halves and 200 targets:

* ``synsets``: the workspace's attribution (reproduces the check's DDM row);
* ``real``: each group's real training samples in place of its synset (weight 1 each, the same loss, curvature,
  damping and checkpoints): what perfect synsets would give;
* ``... tau``: the step at theta_tau alone (no checkpoint average);
* ``... x10`` / ``x100``: the damping times 10 / 100 (``emulate.damping_scale``);
* ``... no balance``: other classes' groups at full weight.

``influence``: the peer's stored scores (``check/peers``), for reference.

    python benchmarks/binary_decompose.py runs/u23 runs/u24 runs/u25 runs/u32
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

import ddm  # noqa: E402
from ddm import progress  # noqa: E402
from ddm.distill.synset import Synset  # noqa: E402


def real_synset(dm: ddm.DistilledDatamodel, train: ddm.data.Split) -> Synset:
    """The workspace's synset with each group's real training samples (padded, padding at weight 0) as its images."""
    syn, groups = dm.synset, dm.groups
    assert syn is not None and groups is not None
    members = [groups.members(k) for k in range(groups.num_groups)]
    ipc = max(len(m) for m in members)
    K = groups.num_groups
    images = torch.zeros(K, ipc, *train.x.shape[1:], dtype=train.x.dtype)
    labels = torch.zeros(K, ipc, dtype=torch.long)
    weights = torch.zeros(K, ipc)
    for k, m in enumerate(members):
        images[k, : len(m)], labels[k, : len(m)], weights[k, : len(m)] = train.x[m], train.y[m], 1.0
    return replace(syn, images=images, labels=labels, weights=weights, label_logits=None, free_targets=None)


def decompose(ws: str) -> None:
    from ddm import objectives
    from ddm.evaluation.check import _spearman_columns

    dm, data, targets, rows, truth, keep, actual = M.check_halves(ws)
    obj = objectives.get("dist2")
    assert dm.synset is not None and dm.groups is not None
    real = real_synset(dm, data.train)
    base = dm.config

    def lds(name: str, syn: Synset, key: str, overrides: list[str], scale: float | None = None) -> None:
        dm.config = base.with_overrides(overrides) if overrides else base
        dm.model.eval()  # as the public attribute() runs it (a batch norm's running statistics)
        try:
            attr = dm._attribute_flat(targets, obj, syn, key, dm.groups, "groups", scale=scale)
        finally:
            dm.config = base
        pred = attr.predict(keep)[..., 0]
        rho = _spearman_columns(pred.double().numpy(), actual.double().numpy()).mean()
        print(f"  {name:28s} LDS {rho:.4f}", flush=True)

    print(f"{ws}: K = {dm.groups.num_groups}, balance {dm.class_balance[0]:g}, "
          f"{len(dm.synset.checkpoints)} checkpoints, temperature {dm.synset_temperature:g}", flush=True)
    key = dm.keys["synset"]
    for label, syn, k in (("synsets", dm.synset, key), ("real", real, "real-" + key)):
        lds(label, syn, k, [])
        lds(label + " tau", replace(syn, checkpoints=[]), k + "-tau", [])
        for d in (10, 100):
            lds(f"{label} x{d}", syn, k, [f"emulate.damping_scale={d}"])
        lds(label + " no balance", syn, k, [], scale=1.0)
        lds(label + " tau x10 no balance", replace(syn, checkpoints=[]), k + "-tau",
            ["emulate.damping_scale=10"], scale=1.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workspaces", nargs="+")
    args = p.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    for ws in args.workspaces:
        decompose(ws)


if __name__ == "__main__":
    main()
