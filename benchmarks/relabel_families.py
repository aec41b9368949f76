"""Relabelling by a plurality of the 5 nearest kept samples against 4 of 5 agreeing, split by network family.

Reads the stored results of every earlier comparison of the two (``--agree 1`` and the default 4, on the same draws;
no training) and counts the 4-group draws within 3 points of exact retraining for fully connected networks (MLPs)
and the others (ConvNets, the ResNet):

    python benchmarks/relabel_families.py --out benchmarks/results/probes-025/families
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_report  # noqa: E402

#: (plurality's results, 4 of 5's results): the same draws measured both ways
PAIRS = (("unlearn-relabel-matrix", "unlearn-relabel-strong-matrix"),
         ("unlearn-relabel-held-out", "unlearn-relabel-strong-held-out"),
         ("unlearn-relabel-matrix-held-out", "unlearn-relabel-strong-matrix-held-out"),
         ("unlearn-relabel-fresh", "unlearn-relabel-strong-fresh"),
         ("unlearn-relabel-fresh2", "unlearn-relabel-strong-fresh2"))


def family(row: dict[str, Any]) -> str:
    if "config" in row:  # matrix.py's configurations name their network
        return "MLP" if "-mlp-" in row["config"] else "other"
    cfg = json.loads((Path(row["workspace"]) / "config.json").read_text())
    return "MLP" if cfg["model"]["name"] == "mlp" else "other"


def gap(row: dict[str, Any]) -> float:
    return float((row.get("relabelled") or row["relabelled fine-tuning"])["gap"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="benchmarks/results")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows = []
    for plural, agree4 in PAIRS:
        a = json.loads((Path(args.results) / f"{plural}.json").read_text())
        b = json.loads((Path(args.results) / f"{agree4}.json").read_text())
        for ra, rb in zip(a, b, strict=True):
            if ra.get("kind", "4 groups") != "4 groups":
                continue
            if ra["groups"] != rb["groups"]:
                raise SystemExit(f"{plural} and {agree4} hold different draws")
            rows.append({"set": agree4, "family": family(ra), "plurality": gap(ra), "agree4": gap(rb)})
    lines = ["# Plurality against 4 of 5 agreeing, by network family\n",
             "`python benchmarks/relabel_families.py " + " ".join(sys.argv[1:]) + "`\n",
             "4-group draws within 3 points of exact retraining (each file's own reference), mean |gap|.\n",
             "| results | family | draws | plurality: within 3 / mean abs gap | 4 of 5: within 3 / mean abs gap |",
             "|---|---|---|---|---|"]
    for s in [*dict.fromkeys(r["set"] for r in rows), "all"]:
        for fam in ("MLP", "other"):
            sel = [r for r in rows if r["family"] == fam and s in ("all", r["set"])]
            if not sel:
                continue
            cells = []
            for k in ("plurality", "agree4"):
                g = np.abs([r[k] for r in sel])
                cells.append(f"{int((g <= 3).sum())} / {g.mean():.2f}")
            lines.append(f"| {s} | {fam} | {len(sel)} | " + " | ".join(cells) + " |")
    write_report(args.out, "\n".join(lines) + "\n", rows)


if __name__ == "__main__":
    main()
