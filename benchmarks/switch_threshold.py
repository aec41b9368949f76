"""The step agreement below which the synset stage switches to tempered synsets (``STEP_AGREEMENT_WARN``): the
threshold's choice from ``grid.py`` reports (a diagnostic that only reads them).

Each report holds, per run, DDM's default (plain synsets, the class balance ``emulate.other_class_scale``) and DDM
with what a switch gives (``distill.head_temperature=2`` with the switched balance, ``emulate.other_class_scale=0.1``)
on the validation targets, and the plain synsets' step agreement. A threshold switches every run whose agreement is
below it; its score is the mean over the runs of the selection rule (the mean of LDS and other-class LDS), switched
or not. Runs already switched at the current threshold are left out (every candidate switches them).

    python benchmarks/grid.py --root runs/matrix-b --seed S --grid distill.head_temperature=2 \\
        --set emulate.other_class_scale=0.1 --configs ... --out benchmarks/results/switch-threshold-grid-...
    python benchmarks/switch_threshold.py benchmarks/results/switch-threshold-grid-*.json \\
        --out benchmarks/results/switch-threshold
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

SWITCHED = "emulate.other_class_scale=0.1, distill.head_temperature=2"
DEFAULT = "DDM (the default)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reports", nargs="+", help="grid.py JSON reports (one seed each; the seed is read from the name)")
    p.add_argument("--thresholds", default="0.7,0.75,0.8,0.85")
    p.add_argument("--current", type=float, default=0.7, help="the threshold before (runs below it are left out)")
    p.add_argument("--out", default="benchmarks/results/switch-threshold")
    args = p.parse_args()
    runs = []
    for path in args.reports:
        seed = Path(path).stem.rsplit("-s", 1)[-1][0]
        for name, r in json.loads(Path(path).read_text()).items():
            agreement = r["step agreement"][DEFAULT]
            if agreement is None or agreement < args.current or SWITCHED not in r:
                continue
            runs.append((agreement, f"{name} s{seed}", r[DEFAULT][:2], r[SWITCHED][:2], r["same class (trivial)"][0]))
    runs.sort()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    lines = ["# The step agreement's threshold for the switch to tempered synsets (diagnostic)", "",
             f"Command: `python benchmarks/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}`; validation targets; "
             "LDS / other-class LDS of DDM's default (plain synsets, class balance 0.5) and of a switch (T = 2, class "
             "balance 0.1), the change of the selection rule (mean of the two), by the plain synsets' agreement.", "",
             "| run | step agreement | default | switched | change of the rule | trivial LDS |",
             "|---|---|---|---|---|---|"]
    for a, name, d, s, t in runs:
        lines.append(f"| {name} | {a:.3f} | {d[0]:.3f} / {d[1]:+.3f} | {s[0]:.3f} / {s[1]:+.3f} | "
                     f"{(s[0] + s[1] - d[0] - d[1]) / 2:+.4f} | {t:.3f} |")
    lines += ["", "| threshold | runs switched (of these) | mean rule over the runs |", "|---|---|---|"]
    scores = {}
    for th in thresholds:
        rule = [((s[0] + s[1]) if a < th else (d[0] + d[1])) / 2 for a, _, d, s, _ in runs]
        scores[th] = sum(rule) / len(rule)
        lines.append(f"| {th:g} | {sum(a < th for a, *_ in runs)} | {scores[th]:.4f} |")
    best = max(scores, key=lambda t: scores[t])
    lines += ["", f"Best: {best:g} (of {len(runs)} runs with an agreement from {args.current:g} up)."]
    M.write_report(args.out, lines, {"runs": runs, "scores": scores})


if __name__ == "__main__":
    main()
