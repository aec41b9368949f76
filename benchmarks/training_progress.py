"""Where does the still-improving warning fire? ``ddm.health.training_progress`` on existing workspaces (no training).

``ddm run`` warns where the test accuracy rose by more than ``health.STILL_IMPROVING`` (5 points) between the
recorded checkpoint nearest three quarters of the training and theta_tau. This reads that rise off workspaces the
benchmarks already built (the matrix's, the held-out configurations', the probes'), so the threshold's reach is on
record: which models it calls still improving, and which it leaves alone.

    python benchmarks/training_progress.py runs/demo runs/matrix-b/*/seed0/ddm runs/ho/*/seed0/ddm \\
        --out benchmarks/results/training-progress
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ddm import data as data_mod
from ddm.health import STILL_IMPROVING, training_progress
from ddm.pipeline import DistilledDatamodel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspaces", nargs="+")
    ap.add_argument("--out", required=True, help="path stem of the .md and .json reports")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for ws in args.workspaces:
        dm = DistilledDatamodel(ws).load()
        data = data_mod.load(dm.config.data)
        p = training_progress(dm.model, dm.trajectory, data.test)
        rows.append({"workspace": ws, **(p or {"still_improving": None})})
        print(ws, p, flush=True)
    lines = ["# The still-improving warning on existing workspaces", "",
             f"Threshold: test accuracy up more than {100 * STILL_IMPROVING:g} points between the recorded checkpoint "
             "nearest three quarters of the training and theta_tau (`ddm.health.training_progress`).", "",
             "| workspace | epoch | accuracy then | final epoch | accuracy at theta_tau | rise (points) | warned |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["still_improving"] is None:
            lines.append(f"| {r['workspace']} | | | | | | no checkpoint in the second half |")
            continue
        lines.append(f"| {r['workspace']} | {r['epoch']:g} | {100 * r['accuracy']:.1f}% | {r['final_epoch']:g} | "
                     f"{100 * r['final_accuracy']:.1f}% | {100 * r['rise']:+.1f} | "
                     f"{'**yes**' if r['still_improving'] else 'no'} |")
    warned = sum(1 for r in rows if r["still_improving"])
    lines += ["", f"Warned on {warned} of {len(rows)} workspaces."]
    out = Path(args.out)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
