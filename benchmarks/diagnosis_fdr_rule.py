"""The false-discovery-rate cut against the default threshold, per family of configurations, from the JSON files of
``diagnosis_threshold.py --fdr`` (their reported runs), and the adoption rule of probes-028 applied to them.

    python benchmarks/diagnosis_fdr_rule.py --fdr 0.2 convnets=benchmarks/results/diagnosis-fdr.json \\
        mlps=benchmarks/results/diagnosis-fdr-mlp.json

Each FAMILY=FILE[,FILE...] pools the reported runs of its files (``--datasets NAME,...`` keeps only those).
Clean: the mean fraction of training data flagged; noisy (10 % flipped labels): recall pooled as the mean over runs,
precision as the mean over the runs that flag, as diagnosis_threshold.py reports them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def rows(runs: list[dict[str, Any]], key: str, objective: str = "loss") -> dict[str, float]:
    clean = [r[objective]["clean"][key] for r in runs]
    noisy = [r[objective]["noisy"][key] for r in runs]
    prec = [n["precision"] for n in noisy if n["groups"]]
    return {"runs": len(runs), "clean": float(np.mean([c["fraction"] for c in clean])),
            "clean_max": float(np.max([c["fraction"] for c in clean])),
            "clean_groups": float(np.mean([c["groups"] for c in clean])),
            "recall": float(np.mean([n["recall"] for n in noisy])),
            "precision": float(np.mean(prec)) if prec else float("nan"), "flagging": len(prec)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("families", nargs="+", metavar="FAMILY=FILE[,FILE...]")
    p.add_argument("--fdr", type=float, default=0.2)
    p.add_argument("--threshold", type=float, default=0.1)
    p.add_argument("--datasets", default="", help="comma list: keep only these datasets' runs")
    args = p.parse_args()
    keep = {d for d in args.datasets.split(",") if d}
    fam: dict[str, list[dict[str, Any]]] = {}
    for spec in args.families:
        name, _, files = spec.partition("=")
        for f in files.split(","):
            runs = json.loads(Path(f).read_text())["report"]
            fam.setdefault(name, []).extend(r for r in runs if not keep or r["dataset"] in keep)
    t, q = str(args.threshold), f"fdr{args.fdr:g}"
    print(f"| family | runs | clean flagged: threshold {args.threshold:g} / BH {args.fdr:g} (mean; max) "
          "| clean groups flagged | noisy recall | noisy precision (runs flagging) |")
    print("|---|---|---|---|---|---|")
    everything = [r for runs in fam.values() for r in runs]
    for name, runs in [*fam.items(), ("**pooled**", everything)]:
        a, b = rows(runs, t), rows(runs, q)
        print(f"| {name} | {a['runs']} | {100 * a['clean']:.1f}% / {100 * b['clean']:.1f}% "
              f"({100 * a['clean_max']:.1f}%; {100 * b['clean_max']:.1f}%) | {a['clean_groups']:.1f} / "
              f"{b['clean_groups']:.1f} | {100 * a['recall']:.1f}% / {100 * b['recall']:.1f}% | "
              f"{100 * a['precision']:.1f}% ({a['flagging']}) / {100 * b['precision']:.1f}% ({b['flagging']}) |")
    a, b = rows(everything, t), rows(everything, q)
    checks = {
        "(a) clean flagged under 5 % in every family": all(rows(r, q)["clean"] < 0.05 for r in fam.values()),
        "(b) pooled recall at least 60 % of the threshold's": b["recall"] >= 0.6 * a["recall"],
        "(b) something flagged on at least 90 % of noisy runs": b["flagging"] >= 0.9 * b["runs"],
        "(c) pooled precision at most 5 points below the threshold's": b["precision"] >= a["precision"] - 0.05,
        "(d) pooled clean flagged fraction below the threshold's": b["clean"] < a["clean"],
    }
    print()
    for k, v in checks.items():
        print(f"- {k}: {'holds' if v else 'FAILS'}")
    print(f"- the rule: {'holds' if all(checks.values()) else 'fails'}")


if __name__ == "__main__":
    main()
