"""Can a few exact retrains of a workspace (what ``ddm check`` makes) decide how much of the schedule effect to add?

``count_effect.py`` found that exact retraining without a fraction f of the data ends where the recorded training
was at epoch tau (1 - f) more than DDM predicts (it takes f fewer steps), that this decides the sign of other-class
LDS on the weight-decayed momentum ConvNet, and that DDM plus that schedule effect, weighted by the slopes fitted on
the very retrains it is scored on, fixes that configuration without a large cost elsewhere. The weight is the open
part: it varies 10x between configurations. Here it is fitted on a workspace's own *calibration* retrains, subsets
drawn like ``ddm check``'s (16 random halves and 15 subsets keeping the 3 classes with most targets whole, disjoint
draws from the matrix's), and scored on the matrix's subsets (40 halves, 10 other-class subsets per class), which
it never saw; and as ``ddm check`` fits it (the same way, on its own targets and draws) and advises it (only where
it helps on the check's other-class subsets). Each subset's schedule effect is the target's loss at the recorded
epoch tau (1 - f) minus its loss at theta_tau (``exact``), or that effect at f = 1/2 scaled linearly in f
(``linear``: what a per-group weight proportional to the group's size can carry; ``emulate.schedule_weight``).
Weights:

* ``regression``: per target, the least-squares slopes of the calibration retrains' losses on DDM's prediction and
  on the schedule effect; the ratio of their medians over targets;
* ``grid``: the weight among r x (0, 1/8, 1/4, ..., 8) (r: the median ratio of the two predictions' spread over the
  calibration subsets) with the best mean of LDS and other-class LDS on the calibration retrains (0 where none beats
  it).

    python benchmarks/schedule_calibration.py --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd --seed 3 \\
        --out benchmarks/results/schedule-calibration-select
"""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

from ddm.attribution.schedule import schedule_slope  # noqa: E402
from ddm.emulate.perturbations import sample_perturbations  # noqa: E402
from ddm.evaluation.check import check  # noqa: E402
from ddm.evaluation.metrics import lds  # noqa: E402
from ddm.objectives import get  # noqa: E402

GRID = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
NUMBERS = ("weights: regression, grid (x r)",)


def run(name: str, seed: int, root: Path, args: Namespace) -> dict[str, Any]:
    cfg, data, _, dm, cache = M.open_run(root, name, seed)
    v = M.ValidationTargets(dm, cache, data, seed)
    out: dict[str, Any] = v.baselines(dm, "schedule-calibration")
    attr = dm.attribute(v.targets, "dist2", name="schedule-calibration")
    tr, sizes = dm.trajectory, dm.groups.sizes().double()
    effect_at = M.rewound_losses(dm, v.targets)

    half = effect_at(0.5) / 0.5

    def removed(keep: torch.Tensor) -> torch.Tensor:
        return ((~keep).double() @ sizes / sizes.sum()).float()  # [S]

    def exact(keep: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
        return torch.stack([effect_at(float(f))[sel] for f in removed(keep)])

    def linear(keep: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
        return removed(keep)[:, None] * half[sel][None, :]

    def ddm_pred(keep: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
        return attr.predict(keep)[:, sel, 0]

    # the calibration subsets, drawn as ddm check draws its own
    every, halves, cal_half = v.calibration(dm.groups.num_groups)
    counts = torch.bincount(v.targets.y, minlength=data.num_classes)
    chosen = sorted(torch.argsort(-counts, stable=True)[:3].tolist())
    oc = sample_perturbations(dm.groups.num_groups, 15, 0.5, seed=M.CHECK_SEED + 1_000)
    oc[:, torch.isin(dm.groups.labels, torch.as_tensor(chosen))] = True
    oc_sel = torch.nonzero(torch.isin(v.targets.y, torch.as_tensor(chosen))).flatten()
    cal_oc = v.retrained(oc, oc_sel)

    def cal_score(effect: Any, g: float) -> float:
        a = lds(ddm_pred(halves, every) + g * effect(halves, every), cal_half)[0]
        b = lds(ddm_pred(oc, oc_sel) + g * effect(oc, oc_sel), cal_oc)[0]
        return (a + b) / 2

    weights: dict[str, float] = {}
    for kind, effect in (("exact", exact), ("linear", linear)):
        d, e = ddm_pred(halves, every), effect(halves, every)
        slopes = M.implied_slopes(cal_half, d, e).median(0).values
        b_d, b_e = float(slopes[0]), float(slopes[1])
        weights[f"{kind} regression"] = max(b_e, 0.0) / b_d if b_d > 0 else 0.0
        r = float((d.std(0) / e.std(0).clamp_min(1e-12)).median())
        scores = [cal_score(effect, g * r) for g in GRID]
        best = int(np.argmax(scores))
        weights[f"{kind} grid"] = GRID[best] * r if scores[best] > scores[0] else 0.0
        weights[f"{kind} r"] = r
        out[f"DDM + {kind} effect x regression weight"] = v.score(
            lambda k, s, f=effect, g=weights[f"{kind} regression"]: ddm_pred(k, s) + g * f(k, s))
        out[f"DDM + {kind} effect x grid weight"] = v.score(
            lambda k, s, f=effect, g=weights[f"{kind} grid"]: ddm_pred(k, s) + g * f(k, s))
        out[f"calibration: DDM / DDM + {kind} x grid"] = (round(scores[0], 3), round(scores[best], 3))
    # what a user gets: `ddm check` on the workspace (its own targets and subsets), and its advice followed
    r = check(dm, data, temperature=None)  # the tempered synset: check_temperature.py
    st = r["schedule_term"]
    advised = st["weight"] if st["recommended"] else 0.0
    out["DDM as `ddm check` advises"] = v.score(lambda k, s: ddm_pred(k, s) + advised * linear(k, s))
    weights["check fitted"], weights["check advised"] = st["weight"], advised
    out["check"] = {"lds": r["lds"]["DDM"], "other_class_lds": r.get("other_class_lds", {}).get("DDM"),
                    "margin": st["margin"], "other_class_margin": st.get("other_class_margin"),
                    "recommended": st["recommended"], "advice": r.get("advice", {})}
    if "emulate.other_class_scale" in r.get("advice", {}):
        print(f"{name} {seed}: the check also advises a class balance, which this script leaves out (the schedule "
              "term alone); balance_calibration.py scores all of the check's advice", flush=True)
    # the same on the matrix's reported targets (rows 0-49, the check's own targets) and their subsets
    rep = M.ValidationTargets(dm, cache, data, seed)
    rep.rows, rep.targets = M.target_rows(data, select=False)
    rep.keep, rep.oc_keep = M.lds_subsets(dm.groups, rep.targets.y, seed)
    attr_rep = dm.attribute(rep.targets, "dist2", name="schedule-calibration-reported")
    slope_rep = schedule_slope(dm.model, tr, rep.targets.x, rep.targets.y, get("dist2"))[:, 0]

    def rep_pred(keep: torch.Tensor, sel: torch.Tensor, g: float) -> torch.Tensor:
        return attr_rep.predict(keep)[:, sel, 0] + g * removed(keep)[:, None] * slope_rep[sel][None, :]

    out["reported targets: DDM (the default)"] = rep.score(lambda k, s: rep_pred(k, s, 0.0))
    out["reported targets: as `ddm check` advises"] = rep.score(lambda k, s: rep_pred(k, s, advised))
    out["weights"] = {k: round(w, 5) for k, w in weights.items()}
    print(name, seed, out, flush=True)
    return out


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/schedule-calibration-select",
                                            "digits-convnet-K100-sgd,fmnist-mlp-K40-sgd")
    rows = [r for r in next(iter(results.values())) if r not in ("weights", "check")]
    lines = M.diagnostic_head("The schedule effect weighted on a workspace's own calibration retrains (diagnostic)",
                              args, "validation targets; LDS / other-class LDS against the matrix's retrains in the "
                              "target's data order (the calibration rows: the mean of the two on the calibration "
                              "retrains, without and with the effect).", rows)
    for n in names:
        lines.append(f"| {n} | " + " | ".join(
            f"{results[n][r][0]:.3f} → {results[n][r][1]:.3f}" if r.startswith("calibration")
            else f"{results[n][r][0]:+.3f} / {results[n][r][1]:+.3f}" for r in rows) + " |")
    lines += ["", "Weights: " + "; ".join(f"{n}: {results[n]['weights']}" for n in names), "",
              "`ddm check` on each workspace (its own 50 targets, 16 halves, 15 other-class subsets): DDM's LDS and "
              "other-class LDS, the schedule term's margins over DDM at the fitted weight (± standard error), "
              "advised or not:", ""]
    for n in names:
        c = results[n]["check"]

        def pm(d: Any) -> str:
            return "–" if d is None else f"{d['mean']:+.3f} ± {d['se']:.3f}"

        lines.append(f"* {n}: DDM {pm(c['lds'])} / {pm(c['other_class_lds'])}; margins {pm(c['margin'])} / "
                     f"{pm(c['other_class_margin'])}; {'advised' if c['recommended'] else 'not advised'}")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
