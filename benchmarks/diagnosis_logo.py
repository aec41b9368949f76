"""Does `ddm diagnose` predict what removing one group does to the validation loss? (leave-one-group-out retrains)

For each workspace: every group removed alone and the model retrained from theta_0 with the target's schedule in
``--orders`` data orders (the target's, then others; each paired with the full data's retrain in the same order:
``ddm.diagnosis.verify``, so the retrains are cached in the workspace and shared with `ddm diagnose --verify`). The
measured quality of a group is the mean increase of the summed validation loss (the first half of the test split,
the CLI's default) when it is removed. Scored against it: DDM's diagnosis at each class balance of its attribution
(``--scales``; `ddm diagnose` uses ``ddm.diagnosis.DIAGNOSIS_CLASS_BALANCE``) and peers' diagnoses (``--peers``,
dattri): Spearman over the groups, the share of groups whose sign is right, and what the flags at the default
threshold are (how many, and how many of them retraining says help when removed).

    python benchmarks/diagnosis_logo.py runs/u12 runs/u14 --out benchmarks/results/diagnosis-logo
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

import numpy as np
from _results import write_report
from scipy.stats import spearmanr

import ddm
from ddm import progress
from ddm.diagnosis import DIAGNOSIS_CLASS_BALANCE, Diagnosis, diagnose, from_group_scores, verify

THRESHOLDS = (0.1, 0.5)


def scored(quality: np.ndarray, measured: np.ndarray, diag: Diagnosis) -> dict[str, Any]:
    out: dict[str, Any] = {"spearman": float(spearmanr(quality, measured)[0]),
                           "sign": float(np.mean(np.sign(quality) == np.sign(measured))),
                           "predicted_negative": int((quality < 0).sum())}
    for t in THRESHOLDS:
        flagged = diag.issues(t)
        out[str(t)] = {"flagged": flagged, "helped": int(sum(measured[g] < 0 for g in flagged)),
                       "measured_sum": float(measured[flagged].sum()) if flagged else 0.0}
    return out


def one(path: str, orders: int, scales: list[float], peers: list[str]) -> dict[str, Any]:
    dm = ddm.DistilledDatamodel(path).load()
    data = ddm.data.load(dm.config.data)
    rows = list(range(max(1, len(data.test) // 2)))
    val = data.test[rows]
    K = dm.groups.num_groups
    runs = []
    bar = progress.bar(K, f"{path}: one group removed, {orders} orders")
    for g in range(K):
        runs.append(verify(dm, data.train, data.test, rows, [g], "loss", orders))
        bar.update(1)
    bar.close()
    measured = np.array([r["measured_mean"] for r in runs])
    noise = np.array([r["measured_std"] for r in runs]) / np.sqrt(orders)
    out: dict[str, Any] = {"workspace": path, "groups": K, "orders": orders, "measured": measured.tolist(),
                           "standard_error": noise.tolist(), "truly_negative": int((measured < 0).sum()),
                           "negative_beyond_2se": int((measured + 2 * noise < 0).sum()), "methods": {}}
    for s in scales:
        diag = diagnose(dm, val, "loss", other_class_scale=s)
        out["methods"][f"DDM x{s:g}"] = scored(diag.quality.numpy(), measured, diag)
        if s == DIAGNOSIS_CLASS_BALANCE:  # the same qualities flagged by the score before 0.22
            out["methods"][f"DDM x{s:g}, robust z"] = scored(diag.quality.numpy(), measured,
                                                             replace(diag, standard_error=None))
    for p in peers:
        from ddm.baselines.peers import group_scores, sample_scores

        diag = from_group_scores(group_scores(sample_scores(p, dm.model, dm.trajectory, data.train, val), dm.groups),
                                 dm.groups, p)
        out["methods"][p] = scored(diag.quality.numpy(), measured, diag)
        out["methods"][f"{p}, robust z"] = scored(diag.quality.numpy(), measured, replace(diag, standard_error=None))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workspaces", nargs="+")
    p.add_argument("--orders", type=int, default=3)
    p.add_argument("--scales", default=f"1,{DIAGNOSIS_CLASS_BALANCE:g},0.3,0.2,0.1")
    p.add_argument("--peers", default="if-explicit,tracin")
    p.add_argument("--out", default="benchmarks/results/diagnosis-logo")
    args = p.parse_args()
    progress.set_enabled(False)
    scales = [float(s) for s in args.scales.split(",")]
    peers = [s for s in args.peers.split(",") if s]
    results = [one(w, args.orders, scales, peers) for w in args.workspaces]
    lines = ["# Diagnosis against leave-one-group-out retraining", "",
             f"Command: `python benchmarks/diagnosis_logo.py {' '.join(sys.argv[1:])}`", "",
             "Validation: the first half of each test split (the CLI's default). Measured quality: the mean increase "
             "of the summed validation loss over the data orders when the group alone is removed (paired with the full "
             "data's retrain in the same order). `DDM xS`: the diagnosis with class balance S (`ddm diagnose` uses "
             f"{DIAGNOSIS_CLASS_BALANCE:g}). Flags: quality < 0 and bounded score below the threshold: the quality "
             "over its standard error across the validation samples (0.22), or, in the rows marked `robust z`, the "
             "group's "
             "robust z-score among the groups (before 0.22).", ""]
    for r in results:
        lines += [f"## {r['workspace']} ({r['groups']} groups, {r['orders']} orders)", "",
                  f"Groups whose removal lowered the validation loss: {r['truly_negative']} "
                  f"({r['negative_beyond_2se']} beyond two standard errors); measured mean "
                  f"{np.mean(r['measured']):+.2f}, median standard error {np.median(r['standard_error']):.2f}.", "",
                  "| method | Spearman with retraining | sign right | predicted negative | "
                  + " | ".join(f"flagged at {t:g}: n / retraining says help / measured sum" for t in THRESHOLDS)
                  + " |", "|---|---|---|---|" + "---|" * len(THRESHOLDS)]
        for name, m in r["methods"].items():
            lines.append(f"| {name} | {m['spearman']:+.3f} | {100 * m['sign']:.0f}% | {m['predicted_negative']} | "
                         + " | ".join(f"{len(m[str(t)]['flagged'])} / {m[str(t)]['helped']} / "
                                      f"{m[str(t)]['measured_sum']:+.1f}" for t in THRESHOLDS) + " |")
        lines.append("")
    write_report(args.out, "\n".join(lines), results)


if __name__ == "__main__":
    main()
