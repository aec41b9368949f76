"""One setting's values on any configuration and seed, scored on the validation targets (a probe, not a report).

``matrix.py --select`` compares a setting's values on the selection configurations and seed 3 only. This script
runs the same comparison on any configuration of the matrix (held-out ones included) and any seed whose retrains
exist (``matrix.py`` made them): every value gets its own workspace beside the default's (``grid-<key>-<value>``,
stages shared where their config is the same), is attributed on the validation targets (test rows 50-99 of the
matrix's permutation, disjoint from the reported ones) and scored against the exact retrains in the target's data
order, beside the default and the trivial same-class score. A configuration probed this way has informed a choice:
name it as such wherever the choice is reported.

    python benchmarks/grid.py --configs digits-alexnet-K40-adam --seed 1 --grid distill.checkpoints=1,3,10 \\
        --out runs/probe/alexnet-checkpoints
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", required=True, metavar="KEY=V1,V2,...", help="the setting and the values compared")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting applied to every value's workspace (repeatable)")


def run(name: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    cfg, data, folder, dm, cache = M.open_run(root, name, seed)
    v = M.ValidationTargets(dm, cache, data, seed)
    out: dict[str, Any] = v.baselines(dm, "grid")
    agreement = {"DDM (the default)": dm.step_agreement(data.train)}  # no retrain: ddm run's warning
    key, values = args.grid.split("=", 1)
    for value in values.split(","):
        sets = [*args.set, f"{key}={value}"]
        tag = ", ".join(sets)
        dml = M.fit_variant(folder, cfg, data, sets)
        attr = dml.attribute(v.targets, "dist2", name="grid")
        h = M.health_summary(dml)
        out[tag] = (*v.score(lambda k, sel, a=attr: a.predict(k)[:, sel, 0]), h["cosine_mean"], h["positive"],
                    h["flagged"])
        agreement[tag] = dml.step_agreement(data.train)
        print(name, seed, tag, out[tag], flush=True)
    out["step agreement"] = agreement
    return out


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "runs/probe/grid", "digits-alexnet-K40-adam",
                                            options=options)
    lines = ["# A setting's values on the validation targets (probe)", "",
             f"Command: `python benchmarks/grid.py {' '.join(sys.argv[1:])}`; seed {args.seed}, validation targets; "
             "LDS / other-class LDS against the retrains in the target's data order; synset health (cosine mean, "
             "fraction positive, flagged groups); the step agreement `ddm run` warns on "
             "(`DistilledDatamodel.step_agreement`, 50 training samples, no retrain).", "",
             "| configuration | variant | LDS | other-class LDS | health | step agreement |",
             "|---|---|---|---|---|---|"]
    for n in names:
        agreement = results[n].get("step agreement", {})
        for tag, r in results[n].items():
            if tag == "step agreement":
                continue
            health = f"{r[2]:.3f}, {100 * r[3]:.0f}%, {r[4]}" if len(r) > 2 else "–"
            a = agreement.get(tag)
            lines.append(f"| {n} | {tag} | {r[0]:+.3f} | {r[1]:+.3f} | {health} | {'–' if a is None else f'{a:.3f}'} |")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
