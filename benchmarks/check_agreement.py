"""Does ``ddm check`` tell the truth? Its verdict on a workspace beside the matrix's numbers for the same run.

``ddm check`` retrains a finished workspace's model on a few random group subsets (16 halves and 15 subsets that keep
3 classes whole by default, against the matrix's 40 halves and 10 per class) and says whether DDM beats
the class-label floor and ranks other classes' groups. This runs it, with the command line's defaults, on one
seed's DDM workspace of each configuration (their own subsets and targets, none of the matrix's) and sets its
answer beside the matrix's LDS and other-class LDS of the same workspace (read from ``--matrix`` JSON files), so a
reader sees whether the cheap check agrees with the full measurement.

    python benchmarks/check_agreement.py --root runs/matrix-b --seed 0 --configs ... \\
        --matrix benchmarks/results/matrix-damp-a.json,... --out benchmarks/results/check-agreement
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import ddm
from ddm import progress
from ddm.config import RunConfig
from ddm.evaluation.check import TRIVIAL, check
from ddm.pipeline import DistilledDatamodel
from ddm.workspace import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402


def matrix_rows(files: list[str], seed: int) -> dict[str, dict[str, Any]]:
    out = {}
    for f in files:
        for r in json.loads(Path(f).read_text()):
            if r["seed"] == seed:
                out[r["config"]] = r
    return out


def side(margin: dict[str, float]) -> str:
    """above / below / tie (within two standard errors) of a bootstrap estimate."""
    if margin["mean"] - 2 * margin["se"] > 0:
        return "above"
    if margin["mean"] + 2 * margin["se"] < 0:
        return "below"
    return "tie"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="runs/matrix-b")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--configs", required=True)
    p.add_argument("--matrix", required=True, help="comma list of matrix.py JSON results holding the seed")
    p.add_argument("--out", default="benchmarks/results/check-agreement")
    args = p.parse_args()
    progress.set_enabled(False)
    rows = matrix_rows(args.matrix.split(","), args.seed)
    out_json = Path(args.out + ".json")
    done = {r["config"]: r for r in json.loads(out_json.read_text())} if out_json.exists() else {}
    for name in args.configs.split(","):
        if name in done:
            continue
        folder = Path(args.root) / name / f"seed{args.seed}" / "ddm"
        dm = DistilledDatamodel(folder, RunConfig().with_overrides(["device=cpu"])).load()
        data = ddm.data.load(dm.config.data)
        t0 = time.perf_counter()
        r = check(dm, data, temperature=None)  # the tempered synset: check_temperature.py
        done[name] = {"config": name, "check": r, "seconds": time.perf_counter() - t0}
        print(name, json.dumps({k: v for k, v in r.items() if k in ("lds", "other_class_lds", "verdict")}),
              flush=True)
        atomic_write_text(out_json, json.dumps(list(done.values()), indent=1))
    lines = ["# `ddm check` against the matrix", "", f"Command: `python benchmarks/check_agreement.py "
             f"{' '.join(sys.argv[1:])}`", "",
             f"Seed {args.seed}'s DDM workspace of each configuration. `ddm check` with its defaults (50 targets, 16 "
             "random halves, 15 subsets that keep the 3 classes with most targets whole, one reproduction retrain: 32 "
             "retrains); "
             "the matrix: 50 other targets, 40 halves, 10 class-keeping subsets per class. Check cells: mean ± "
             "bootstrap standard error; its side of the floor: above / below / tie (within two errors).", "",
             "| configuration | check: DDM − trivial | side | matrix: DDM − trivial | check: other-class | side | "
             "matrix: other-class | retrains, s |", "|---|---|---|---|---|---|---|---|"]
    for r in done.values():  # the matrix's numbers are read at each rendering, never stored with the check's
        r["matrix"] = {k: rows[r["config"]][k] for k in ("lds", "other_class_lds") if k in rows.get(r["config"], {})}
        c, m = r["check"], r["matrix"]
        mo, oc = m.get("lds", {}), c.get("other_class_lds", {}).get("DDM")
        mm = f"{mo['DDM'] - mo[TRIVIAL]:+.3f}" if mo else "–"
        moc = f"{m['other_class_lds']['DDM']:+.3f}" if "DDM" in m.get("other_class_lds", {}) else "–"
        lines.append(f"| {r['config']} | {c['margin_over_trivial']['mean']:+.3f} ± {c['margin_over_trivial']['se']:.3f}"
                     f" | {side(c['margin_over_trivial'])} | {mm} | "
                     + (f"{oc['mean']:+.3f} ± {oc['se']:.3f} | {side(oc)}" if oc else "– | –")
                     + f" | {moc} | {r['seconds']:.0f} |")
    M.write_report(args.out, lines, list(done.values()))


if __name__ == "__main__":
    main()
