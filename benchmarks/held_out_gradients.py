"""The held-out configurations' seed-0 runs with the attribution's step reading the groups' own gradients and the
synsets', side by side (a table from ``matrix.py``'s JSON, nothing computed).

    python benchmarks/held_out_gradients.py --groups A.json,B.json --synsets C.json,D.json \\
        --out benchmarks/results/held-out-gradients
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--groups", required=True, help="matrix.py JSON files run with emulate.gradients=groups")
    p.add_argument("--synsets", required=True, help="the same runs with emulate.gradients=synsets")
    p.add_argument("--out", default="benchmarks/results/held-out-gradients")
    args = p.parse_args()

    def load(files: str) -> dict[tuple[str, int], dict]:
        return {(r["config"], r["seed"]): r for f in files.split(",") for r in json.loads(Path(f).read_text())}

    groups, synsets = load(args.groups), load(args.synsets)

    def cell(r: dict, m: str) -> str:
        oc = r["other_class_lds"].get(m)
        return f"{r['lds'][m]:.3f}" + ("" if oc is None or np.isnan(oc) else f" / {oc:+.3f}")

    lines = ["# Held-out configurations: the groups' own gradients against the synsets' (seed 0)", "",
             f"Command: `python benchmarks/held_out_gradients.py {' '.join(sys.argv[1:])}`; reported targets, the "
             "matrix's 40 halves and other-class subsets; LDS / other-class LDS (none where groups mix classes).", "",
             "| configuration | synsets | groups (the default) | gain | last-layer influence | trivial | "
             "groups - influence |", "|---|---|---|---|---|---|---|"]
    gains, margins, rows = [], [], []
    for key, g in groups.items():
        s = synsets.get(key)
        if s is None:
            continue
        gain = g["lds"]["DDM"] - s["lds"]["DDM"]
        margin = g["lds"]["DDM"] - g["lds"]["if-explicit"]
        gains.append(gain)
        margins.append(margin)
        rows.append(key)
        lines.append(f"| {key[0]} | {cell(s, 'DDM')} | {cell(g, 'DDM')} | {gain:+.3f} | {cell(g, 'if-explicit')} | "
                     f"{g['lds']['same class (trivial)']:.3f} | {margin:+.3f} |")
    lines += ["", f"{len(rows)} runs: mean gain {np.mean(gains):+.3f} LDS (rises on {sum(x > 0 for x in gains)}, falls "
              f"on {sum(x < 0 for x in gains)}); the groups' gradients against last-layer influence "
              f"{np.mean(margins):+.3f} on average, behind it on {sum(x < 0 for x in margins)}, by more than 0.05 on "
              f"{sum(x < -0.05 for x in margins)}."]
    M.write_report(args.out, lines, {"groups": args.groups, "synsets": args.synsets})


if __name__ == "__main__":
    main()
