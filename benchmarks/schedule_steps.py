"""Can two retrains decide the schedule term's weight (``emulate.schedule_weight``) without ``ddm check``'s 32?

The schedule term (``ddm.attribution.schedule``) adds ``weight x slope x f`` to DDM's prediction for a perturbation
removing the fraction f of the samples: a retrain without part of the data also takes fewer steps. ``ddm check``
fits the weight on its 16 random halves, per target, across subsets, where the term is nearly a constant (f varies
little between halves). Here the two parts the weight is a ratio of are measured apart, each across targets:

* the **step effect**: one retrain on *all* the data that takes, each epoch, only the first half of its order (the
  steps and rate schedule of a half-data retrain, no sample removed: ``train_model(..., subsample=0.5)``), minus the
  full data's retrain; per target, against the term's ``slope x 1/2`` (the recorded epoch tau / 2's loss minus
  theta_tau's): ``b``, the step effect on the term's scale;
* **DDM's scale**: ``h`` random halves of the groups retrained (``ddm check``'s first draws), minus the step-effect
  retrain (same steps, so what is left is the removed data's content), against DDM's predicted change: ``a``.

The weight is ``b / a``; scored on the matrix's subsets (validation targets), which neither retrain saw. The
calibration targets are the test rows that are neither the validation nor the reported targets.

    python benchmarks/schedule_steps.py --seed 0 --configs digits-convnet-K40-momentum-wd \\
        --out benchmarks/results/schedule-steps-s0
"""

from __future__ import annotations

import sys
from argparse import ArgumentParser, Namespace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

from ddm.emulate.perturbations import sample_perturbations  # noqa: E402


def ols(x: torch.Tensor, y: torch.Tensor, intercept: bool = True) -> float:
    X = torch.stack([torch.ones_like(x), x], 1).double() if intercept else x[:, None].double()
    return float(torch.linalg.lstsq(X, y.double()[:, None]).solution.flatten()[-1])


def run(name: str, seed: int, root: Path, args: Namespace) -> dict[str, Any]:
    cfg, data, folder, dm, cache = M.open_run(root, name, seed)
    v = M.ValidationTargets(dm, cache, data, seed)
    out: dict[str, Any] = v.baselines(dm, "schedule-calibration")
    attr = dm.attribute(v.targets, "dist2", name="schedule-calibration")
    sizes = dm.groups.sizes().double()
    half = M.rewound_losses(dm, v.targets)(0.5) / 0.5

    def removed(keep: torch.Tensor) -> torch.Tensor:
        return ((~keep).double() @ sizes / sizes.sum()).float()

    def with_term(w: float) -> Any:
        return lambda k, s: attr.predict(k)[:, s, 0] + w * removed(k)[:, None] * half[s][None, :]

    # calibration targets: every test row but the validation (50-99) and reported (0-49) ones
    perm = torch.randperm(len(data.test), generator=torch.Generator().manual_seed(M.TARGET_SEED))
    rows = perm[100:]
    cal = data.test[rows]
    y = cal.y
    change = M.rewound_losses(dm, cal)(0.5)  # the term at f = 1/2, weight 1: slope x 1/2
    attr_cal = dm.attribute(cal, "dist2", name="schedule-steps-calibration")
    full = M.losses(cache.get([])[None, rows], y)[0]
    steps = M.losses(M.extra_retrain(cache, folder / "schedule-steps" / "steps-0.5.safetensors",
                                     subsample=0.5)[None, rows], y)[0]
    step_effect = steps - full
    b = ols(change, step_effect, intercept=False)
    b_med = float(step_effect.median() / change.median()) if float(change.median()) > 0 else 0.0
    halves = sample_perturbations(dm.groups.num_groups, max(args.halves), 0.5, seed=M.CHECK_SEED)
    weights: dict[str, float] = {"b (through 0)": b, "b (medians)": b_med,
                                 "step effect median": float(step_effect.median()),
                                 "term median": float(change.median())}
    base = attr_cal.predict(torch.ones(1, dm.groups.num_groups, dtype=torch.bool))[0, :, 0]
    for h in args.halves:
        xs, ys = [], []
        for k in halves[:h]:
            got = M.losses(cache.get(torch.nonzero(~k).flatten().tolist())[None, rows], y)[0]
            xs.append(attr_cal.predict(k[None])[0, :, 0] - base)
            ys.append(got - steps)
        a = ols(torch.cat(xs), torch.cat(ys))
        weights[f"a ({h} halves)"] = a
        for kind in ("through 0", "medians"):
            w = max(weights[f"b ({kind})"], 0.0) / a if a > 0 else 0.0
            weights[f"w ({kind}, {h} halves)"] = w
            out[f"DDM + term, b {kind}, {h} halves"] = v.score(with_term(w))
    out["weights"] = {k: round(x, 5) for k, x in weights.items()}
    print(name, seed, out, flush=True)
    return out


def options(p: ArgumentParser) -> None:
    p.add_argument("--halves", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 16],
                   help="numbers of ddm check's random halves to fit DDM's scale on")


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/schedule-steps",
                                            "digits-convnet-K40-momentum-wd", options=options)
    rows = [r for r in next(iter(results.values())) if r != "weights"]
    lines = M.diagnostic_head("The schedule term's weight from two retrains (diagnostic)", args,
                              "validation targets; LDS / other-class LDS against the matrix's retrains in the "
                              "target's data order.", rows)
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{results[n][r][0]:+.3f} / {results[n][r][1]:+.3f}"
                                             for r in rows) + " |")
    lines += ["", "Weights: " + "; ".join(f"{n}: {results[n]['weights']}" for n in names)]
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
