"""The default's automatic temperature (``distill.auto_temperature``) on the matrix's runs: where it switches, what
it gives (a report of the default, not a choice).

Each run is opened with the current default (its synset stage distilled again where its key changed: the stage now
computes the step agreement and, below ``ddm.pipeline.STEP_AGREEMENT_WARN``, distils again at the auto temperature).
The stage's record says whether it switched. Where it did, the default is scored beside the plain synsets
(``distill.auto_temperature=0``, the default before) and the trivial same-class score on the validation targets
against the matrix's retrains; where it did not, the synsets are the plain ones by construction and only the
agreement is reported (``--score-all`` scores those too).

    python benchmarks/auto_temperature.py --configs digits-alexnet-K40-adam,fmnist-mlp-K40-sgd --seed 0 \\
        --out benchmarks/results/auto-temperature-s0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

PLAIN = "distill.auto_temperature=0"


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--score-all", action="store_true",
                   help="score the runs where the default did not switch as well (their synsets are the plain ones)")
    M.halves_only_option(p)


def run(name: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    cfg, data, folder, dm, cache = M.open_run(root, name, seed)
    st = dm.ws.require("synset")
    out: dict[str, Any] = {"agreement": st.get("step_agreement"), "agreement_at_1": st.get("step_agreement_at_1"),
                           "temperature": st.get("temperature")}
    if st.get("temperature") is None and not args.score_all:
        print(name, seed, out, flush=True)
        return out
    v = M.ValidationTargets(dm, cache, data, seed, args.halves_only)
    out.update(v.baselines(dm, "auto-temperature"))
    plain = M.fit_variant(folder, cfg, data, [PLAIN])
    attr = plain.attribute(v.targets, "dist2", name="auto-temperature")
    out["plain"] = v.score(lambda k, sel: attr.predict(k)[:, sel, 0])
    print(name, seed, out, flush=True)
    return out


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "runs/probe/auto-temperature", "digits-alexnet-K40-adam",
                                            options=options)
    lines = M.diagnostic_head(
        "The default's automatic temperature on the matrix's runs", args,
        "validation targets; LDS / other-class LDS against the retrains in the target's data order; the step agreement "
        "the synset stage computed (50 training samples, no retrain) with the plain synsets and, where it switched, "
        "with the tempered ones",
        ["step agreement (plain → as used)", "switched", "plain synsets (before)", "default (now)", "trivial"])
    for n in names:
        r = results[n]
        a1 = r["agreement_at_1"] if r["temperature"] is not None else r["agreement"]
        agreement = f"{a1:.3f}" + (f" → {r['agreement']:.3f}" if r["temperature"] is not None else "")
        cells = [f"{s[0]:.3f} / {s[1]:+.3f}" if s else "–" for s in (r.get("plain"), r.get("DDM (the default)"),
                                                                    r.get("same class (trivial)"))]
        switched = f"T = {r['temperature']:g}" if r["temperature"] is not None else "no"
        lines.append(f"| {n} | {agreement} | {switched} | " + " | ".join(cells) + " |")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
