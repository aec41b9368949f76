"""The report matrix read with the library's current digits ConvNet (a reading made after the results; no training).

The nine report configurations' stored runs (seeds 0-2, the current default; ``matrix-gradients-groups-*.json``)
with the three digits ConvNet configurations replaced by the same configurations at depth 2, the network the presets
give on 8x8 images since 0.21's depth rule (held-out configurations ``digits-convnet-d2-*``, run with the same code).
The matrix as defined keeps depth 3; this is a second reading of it, chosen after its results were known. Prints
the scorecard's attribution targets both ways.

    python benchmarks/matrix_current_networks.py --out benchmarks/results/matrix-current-networks
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from _results import write_report

RESULTS = Path("benchmarks/results")
REPORT = ["matrix-gradients-groups-a.json", "matrix-gradients-groups-b.json", "matrix-gradients-groups-a-s12.json",
          "matrix-gradients-groups-b-s12.json"]
DEPTH2 = ["matrix-held-out-norm2x2-b.json", "matrix-held-out-norm2x2-s12.json", "matrix-held-out-norm2x2-more.json",
          "matrix-held-out-norm2x2-sgd-s12.json", "matrix-held-out-d2-groupnorm.json"]
SWAP = {"digits-convnet-K100-sgd": "digits-convnet-d2-K100-sgd",
        "digits-convnet-K40-momentum-wd": "digits-convnet-d2-K40-momentum-wd",
        "digits-convnet-groupnorm-K100-momentum": "digits-convnet-d2-groupnorm-K100-momentum"}


def runs(files: list[str]) -> dict[tuple[str, int], dict[str, Any]]:
    out = {}
    for f in files:
        for r in json.loads((RESULTS / f).read_text()):
            out[(r["config"], int(r["seed"]))] = r
    return out


def mean(v: Any) -> float:
    return float(v["mean"] if isinstance(v, dict) else v)


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    lds = np.array([mean(r["lds"]["DDM"]) for r in rows])
    inf = np.array([mean(r["lds"]["if-explicit"]) for r in rows])
    triv = np.array([mean(r["lds"]["same class (trivial)"]) for r in rows])
    oc = np.array([mean(r["other_class_lds"]["DDM"]) for r in rows])
    oc_inf = np.array([mean(r["other_class_lds"]["if-explicit"]) for r in rows])
    return {"runs": len(rows), "lds": lds.mean(), "influence": inf.mean(), "trivial": triv.mean(),
            "other_class": oc.mean(), "other_class_influence": oc_inf.mean(),
            "within_005_of_influence": int((lds >= inf - 0.05).sum()), "closest_to_influence": float((lds - inf).min()),
            "above_trivial": int((lds > triv).sum()), "closest_to_trivial": float((lds - triv).min()),
            "other_class_positive": int((oc > 0).sum()), "other_class_min": float(oc.min()),
            "ahead_lds": int((lds > inf).sum()), "ahead_other_class": int((oc > oc_inf).sum())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/results/matrix-current-networks")
    args = p.parse_args()
    report, depth2 = runs(REPORT), runs(DEPTH2)
    missing = [(SWAP[c], s) for c, s in report if c in SWAP and (SWAP[c], s) not in depth2]
    if missing:
        raise SystemExit(f"depth-2 runs missing: {missing}")
    both = {"as defined (depth 3 on digits)": summary(list(report.values())),
            "current networks (depth 2 on digits; read after the results)":
                summary([depth2[(SWAP[c], s)] if c in SWAP else r for (c, s), r in sorted(report.items())])}
    lines = ["# The report matrix read with the library's current digits ConvNet", "",
             f"Command: `python benchmarks/matrix_current_networks.py {' '.join(sys.argv[1:])}` (no training: the "
             f"stored runs of {', '.join(REPORT)} and, for the three digits ConvNet configurations, "
             f"{', '.join(DEPTH2)})",
             "", "| reading | runs | DDM LDS | influence | trivial | DDM other-class | influence other-class | "
             "LDS >= influence - 0.05 (closest) | above trivial (closest) | other-class > 0 (lowest) | "
             "DDM ahead: LDS / other-class |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in both.items():
        lines.append(f"| {name} | {s['runs']} | {s['lds']:.3f} | {s['influence']:.3f} | {s['trivial']:.3f} | "
                     f"{s['other_class']:+.3f} | {s['other_class_influence']:+.3f} | {s['within_005_of_influence']} "
                     f"({s['closest_to_influence']:+.3f}) | {s['above_trivial']} ({s['closest_to_trivial']:+.3f}) | "
                     f"{s['other_class_positive']} ({s['other_class_min']:+.3f}) | {s['ahead_lds']} / "
                     f"{s['ahead_other_class']} |")
    write_report(args.out, "\n".join(lines) + "\n", both)


if __name__ == "__main__":
    main()
