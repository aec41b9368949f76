"""Unlearning with the kept data's Newton step averaged over the trajectory's checkpoints (a diagnostic).

``ddm unlearn`` moves the last layer by one Newton step at theta_tau, ``U_tau = (H_kept + lambda)^-1 g_removed``.
At theta_tau the removed samples are fitted, so their gradients, and the step, are small: a draw that removes half
of a class leaves the class's removed mode recognised where exact retraining loses it (BENCHMARKS.md, "The back-off
and the classes a removal thins": the thinned class 24 points from exact on average). At the earlier checkpoints
the synsets hold curvatures for (``distill.checkpoints``; attribution averages its step over them), the removed
samples are less well fitted. This measures, against exact retraining in the target's data order, the unlearned
model as ``ddm unlearn`` gives it and the same model with its head step replaced by the mean of the steps at
theta_tau and at those checkpoints (each at its own parameters, curvature and the synset's gradients there; the
checkpoint's damping is ``emulate.unlearn_damping`` of its own top eigenvalue), by their sum (the step at theta_tau
plus each checkpoint's, a trajectory-integrated removal), and by their mean in the rows of the head (the classes'
logits) of the classes the draw leaves with under half their samples only (``rows``). The matrix's three 4-group
draws and ``backoff_thinned.py``'s thinning draws (their exact retrains are cached there).

    python benchmarks/unlearn_checkpoints.py --root runs/matrix-b --seeds 3 \\
        --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd --out benchmarks/results/unlearn-checkpoints-select
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402
from backoff_thinned import shares, sweep, sweep_draws, sweep_parser  # noqa: E402
from temperature_unlearning import accs, cell  # noqa: E402

from ddm import devices  # noqa: E402
from ddm.distill.head import Head  # noqa: E402
from ddm.emulate.newton import newton_keep_params  # noqa: E402
from ddm.models import with_params  # noqa: E402
from ddm.unlearning import forget_classes  # noqa: E402


def head_steps(dm: Any, rem: list[int]) -> list[torch.Tensor]:
    """The kept data's Newton step ``[C, d+1]`` at theta_tau, then at each of the synset's checkpoints."""
    syn, model = dm.synset, dm.model
    head = Head.of(model)
    frac = dm.config.emulate.unlearn_damping
    decay = dm.decay(dm.groups)
    idx = torch.as_tensor(rem)
    members = [(dm.trajectory.final, syn, frac * syn.curvature.top_eigenvalue() + dm.weight_decay)]
    for c in syn.checkpoints or []:
        members.append((dm.trajectory.checkpoint(c.index), replace(syn, curvature=c.curvature, checkpoints=[]),
                        frac * c.curvature.top_eigenvalue() + dm.weight_decay))
    steps = []
    was = model.training
    model.eval()  # batch norm reads its running statistics and leaves them as they are (the pipeline does the same)
    try:
        for params, s, damping in members:
            after = newton_keep_params(model, params, s, idx, damping, decay=decay)
            steps.append(head.matrix(after).cpu() - head.matrix(params).cpu())
    finally:
        model.train(was)
    return steps


def variant(dm: Any, first: torch.nn.Module, steps: list[torch.Tensor], weights: list[float],
            gone: list[int], rows: torch.Tensor | None = None) -> torch.nn.Module:
    """``first`` (the unlearned model before any back-off) with its head step ``steps[0]`` replaced by
    ``sum_i weights[i] steps[i]`` (only in the head's ``rows``, the classes' logits, where given)."""
    head = Head.of(first)
    w_name, b_name = head.param_names
    params = {k: v.detach().clone() for k, v in first.named_parameters()}
    delta = sum(w * s for w, s in zip(weights, steps, strict=True)) - steps[0]
    if rows is not None:
        delta = delta * rows[:, None].to(delta.dtype)
    params[w_name] = params[w_name] + delta[:, :-1].reshape(params[w_name].shape).to(params[w_name].device)
    params[b_name] = params[b_name] + delta[:, -1].to(params[b_name].device)
    model = with_params(first, params)
    if gone:
        forget_classes(model, gone)
    return model


def run(name: str, seed: int, root: Path) -> list[dict[str, Any]]:
    cfg, data, folder, dm, cache = M.open_run(root, name, seed)
    y = data.test.y
    rows = []
    for label, rem, on in sweep_draws(dm, data, seed):
        model = dm.unlearn(rem, name="unlearn-checkpoints")
        first = dm.last_unlearned_first or model  # the step before any back-off, rewound as ddm unlearn does
        removed, kept = dm.groups.classes_left(torch.as_tensor(rem))
        gone = sorted(removed - kept)
        steps = head_steps(dm, rem)
        m = len(steps)
        row: dict[str, Any] = {"config": name, "seed": seed, "draw": label, "groups": rem,
                               "backoff": bool(dm.last_unlearning_check.get("damping_raised")),
                               "exact": accs(cache.get(rem), y, on),
                               "now": accs(devices.predict(model, data.test.x), y, on),
                               "first": accs(devices.predict(first, data.test.x), y, on),
                               "norms": [float(s.norm()) for s in steps]}
        for key, weights in (("mean", [1 / m] * m), ("sum", [1.0] * m)):
            row[key] = accs(devices.predict(variant(dm, first, steps, weights, gone), data.test.x), y, on)
        thinned = shares(dm, rem) < 0.5  # the classes the draw leaves with under half their samples
        row["thinned"] = torch.nonzero(thinned).flatten().tolist()
        row["rows"] = accs(devices.predict(variant(dm, first, steps, [1 / m] * m, gone, thinned), data.test.x), y,
                           on)
        rows.append(row)
        print(name, seed, label, "exact / now / first / mean / sum / rows",
              [cell(row[k]) for k in ("exact", "now", "first", "mean", "sum", "rows")], "thinned", row["thinned"],
              "step norms", [f"{v:.3g}" for v in row["norms"]], flush=True)
    return rows


def main() -> None:
    args = sweep_parser(__doc__, "benchmarks/results/unlearn-checkpoints-select").parse_args()
    lines = ["# Unlearning with the Newton step averaged over checkpoints (diagnostic)", "",
             f"Command: `python benchmarks/unlearn_checkpoints.py {' '.join(sys.argv[1:])}`; test accuracy in % (for "
             "a thinning draw, after the slash, the thinned class's): exact retraining (target's data order) / "
             "`ddm unlearn` / its first step (before any back-off) / that step with the head step averaged over "
             "theta_tau and the checkpoints / summed over them / averaged in the rows of the classes the draw leaves "
             "with under half their samples only.", "",
             "| configuration | seed | draw | exact | now | first | mean | sum | rows |",
             "|---|---|---|---|---|---|---|---|---|"]
    keys = ("now", "first", "mean", "sum", "rows")
    sweep(args, run, lines, lambda r: [cell(r[k]) for k in ("exact", *keys)], keys, thinned_class=True)


if __name__ == "__main__":
    main()
