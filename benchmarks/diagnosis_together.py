"""Do `ddm diagnose`'s flags help when removed together? (exact retraining; a diagnostic, no default changed)

For each workspace: the default flags (``Diagnosis.issues()``, validation = the first half of the test split, as the
CLI) removed together, and the same flags capped per class (a group is kept out of the set where adding it would
leave its class half or less of its training samples), each retrained from theta_0 with and without them in
``--orders`` data orders (``ddm.diagnosis.verify``; retrains cached in the workspace, shared with `ddm diagnose
--verify`). Printed: the measured change of the summed validation loss beside the prediction.

    python benchmarks/diagnosis_together.py runs/diagnosis-d2/digits-mlp/seed0/clean runs/u12 --out runs/together
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from _results import write_report

import ddm
from ddm import progress
from ddm.diagnosis import diagnose, verify


def capped(flagged: list[int], sizes: Any, labels: Any) -> list[int]:
    """``flagged`` without the groups that would leave their class half or less of its training samples."""
    whole = {int(c): int(sizes[labels == c].sum()) for c in labels.unique()}
    left, out = dict(whole), []
    for g in flagged:
        c = int(labels[g])
        if left[c] - int(sizes[g]) > whole[c] / 2:
            out.append(g)
            left[c] -= int(sizes[g])
    return out


def one(path: str, orders: int) -> dict[str, Any]:
    dm = ddm.DistilledDatamodel(path).load()
    data = ddm.data.load(dm.config.data)
    rows = list(range(max(1, len(data.test) // 2)))
    diag = diagnose(dm, data.test[rows], "loss")
    flagged = diag.issues()
    sizes, labels = dm.groups.sizes(), dm.groups.labels
    out: dict[str, Any] = {"workspace": path, "groups": dm.groups.num_groups}
    for name, removed in (("flags", flagged), ("flags capped per class", capped(flagged, sizes, labels))):
        v = verify(dm, data.train, data.test, rows, removed, "loss", orders, diag.quality) if removed else None
        out[name] = {"groups": removed, "samples": int(sizes[removed].sum()) if removed else 0, "verification": v}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workspaces", nargs="+")
    p.add_argument("--orders", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/diagnosis-together")
    args = p.parse_args()
    progress.set_enabled(False)
    results = [one(w, args.orders) for w in args.workspaces]
    lines = ["# `ddm diagnose`'s flags removed together, against exact retraining", "",
             f"Command: `python benchmarks/diagnosis_together.py {' '.join(sys.argv[1:])}`", "",
             "| workspace | set | groups | samples | measured change of the summed validation loss (per order) | "
             "predicted |", "|---|---|---|---|---|---|"]
    for r in results:
        for name in ("flags", "flags capped per class"):
            s, v = r[name], r[name]["verification"]
            measured = ("nothing to remove" if v is None else f"{v['measured_mean']:+.1f} ("
                        + ", ".join(f"{m:+.1f}" for m in v["measured"]) + ")")
            lines.append(f"| {r['workspace']} | {name} | {len(s['groups'])} of {r['groups']} | {s['samples']} | "
                         f"{measured} | {'–' if v is None else format(v['predicted'], '+.1f')} |")
    write_report(args.out, "\n".join(lines) + "\n", results)


if __name__ == "__main__":
    main()
