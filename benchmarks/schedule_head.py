"""The schedule effect read on the last layer only, at weight 1: a retrain-free schedule term? (diagnostic)

``ddm check`` fits the schedule term's weight (``emulate.schedule_weight``) on a workspace's own retrains because
DDM's predicted changes and the trajectory's output change between epoch tau / 2 and theta_tau are on scales that
differ 10-30x, by a factor that varies between models (BENCHMARKS.md, "The schedule term, fitted and advised by
`ddm check`"). DDM's changes come from a step on the last layer at theta_tau's features. This script asks whether the
same change measured on the last layer alone, theta_tau's network with the head it had at epoch tau (1 - f) ("head
swap"), or that change to first order in the head ("head linear"), is on DDM's scale, so that adding it at weight 1
(no retrain, no fit) fixes the schedule regime without a cost elsewhere. Rows (validation targets, the matrix's
retrains): DDM, DDM + the whole network's change x 1, DDM + each head change x 1, and the weight the check's
regression would fit for the head swap on the check's calibration halves (its ratio to 1 says how far the scales
are apart).

    python benchmarks/schedule_head.py --root runs/matrix-b --seed 0 \\
        --configs digits-convnet-K40-momentum-wd,digits-convnet-K100-sgd,fmnist-mlp-K40-sgd --out ...
"""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

from ddm import devices  # noqa: E402
from ddm.distill.head import Head  # noqa: E402
from ddm.objectives import get  # noqa: E402


def head_changes(dm: Any, x: torch.Tensor, y: torch.Tensor, removed: float) -> dict[str, torch.Tensor]:
    """``{"whole", "head swap", "head linear"}``: each target's loss at the recorded epoch tau (1 - ``removed``) minus
    at theta_tau, for the whole network, for theta_tau with the head of that epoch, and that head change to first
    order (the loss's head gradient at theta_tau times the head's displacement)."""
    tr, model, objective = dm.trajectory, dm.model, get("dist2")
    rewound = tr.at_epoch(float(tr.epochs[-1]) * (1 - removed))
    final = tr.final
    head = Head.of(model)
    names = head.param_names
    swapped = {**final, **{n: rewound[n] for n in names}}

    def loss(params: dict[str, torch.Tensor]) -> torch.Tensor:
        return objective.outputs(devices.predict(model, x, params=params)[None], y)[0][:, 0].double()

    base = loss(final)
    h = head.features(x, final).double()  # [T, d+1]
    w_final, w_rew = head.matrix(final).double(), head.matrix(rewound).double()
    p = torch.softmax(h @ w_final.T, 1)
    g = p - torch.nn.functional.one_hot(y, p.shape[1]).double()  # dloss/dlogits at theta_tau
    linear = ((h @ (w_rew - w_final).T) * g).sum(1)
    return {"whole": (loss(rewound) - base).float(), "head swap": (loss(swapped) - base).float(),
            "head linear": linear.float()}


def run(name: str, seed: int, root: Path, args: Namespace) -> dict[str, Any]:
    cfg, data, _, dm, cache = M.open_run(root, name, seed)
    dm.model.eval()
    v = M.ValidationTargets(dm, cache, data, seed)
    out: dict[str, Any] = v.baselines(dm, "schedule-head")
    attr = dm.attribute(v.targets, "dist2", name="schedule-head")
    sizes = dm.groups.sizes().double()
    slope = {k: c / 0.5 for k, c in head_changes(dm, v.targets.x, v.targets.y, 0.5).items()}

    def removed(keep: torch.Tensor) -> torch.Tensor:
        return ((~keep).double() @ sizes / sizes.sum()).float()

    def pred(keep: torch.Tensor, sel: torch.Tensor, kind: str | None, w: float = 1.0) -> torch.Tensor:
        p = attr.predict(keep)[:, sel, 0]
        return p if kind is None else p + w * removed(keep)[:, None] * slope[kind][sel][None, :]

    for kind in slope:
        out[f"DDM + {kind} x 1"] = v.score(lambda k, s, kind=kind: pred(k, s, kind))
    every, halves, cal = v.calibration(dm.groups.num_groups)
    fitted: dict[str, float] = {}
    for kind in slope:
        d = pred(halves, every, None)
        e = removed(halves)[:, None] * slope[kind][every][None, :]
        b = M.implied_slopes(cal, d, e).median(0).values
        fitted[kind] = max(float(b[1]), 0.0) / float(b[0]) if float(b[0]) > 0 else 0.0
    out["regression weight (check's halves)"] = fitted
    out["median |slope| / median spread of DDM over halves"] = {
        k: round(float(s.abs().median() / attr.predict(halves)[:, :, 0].std(0).median()), 3) for k, s in slope.items()}
    print(name, seed, out, flush=True)
    return out


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/schedule-head",
                                            "digits-convnet-K40-momentum-wd,digits-convnet-K100-sgd")
    rows = [r for r in next(iter(results.values())) if not r.startswith(("regression", "median"))]
    lines = M.diagnostic_head("The schedule effect read on the last layer, at weight 1 (diagnostic)", args,
                              "validation targets; LDS / other-class LDS against the matrix's retrains in the "
                              "target's data order.", rows)
    lines += M.score_table({n: {r: results[n][r] for r in rows} for n in names})[2:]  # its rows under that head
    lines += ["", "The weight the check's regression fits for each change on its 16 calibration halves (1 would "
              "mean the change is on DDM's scale), and each change's median size over DDM's median spread:", ""]
    for n in names:
        w = results[n]["regression weight (check's halves)"]
        r = results[n]["median |slope| / median spread of DDM over halves"]
        lines.append(f"* {n}: " + "; ".join(f"{k}: weight {w[k]:.3g}, size {r[k]}" for k in w))
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
