"""The class balance where the synsets switched to a tempered cross-entropy (a diagnostic, and the choice of
``emulate.switched_class_scale``).

Where the synset stage switched to ``distill.auto_temperature`` (the Newton step at theta_tau ranked removals
unlike the steps at the earlier checkpoints), DDM's weights for other classes' groups are the weak part of its
ranking: ``ddm check`` advised a smaller class balance on those models (BENCHMARKS.md, "The class balance,
refitted by ``ddm check``"). Each run's validation targets are scored with the class balance
(``emulate.other_class_scale``, applied after the emulation) at each value of ``--scales``, beside the class-label
score. Other-class LDS does not depend on the balance (the order within the other classes is the emulation's);
it is reported once.

    python benchmarks/switched_balance.py --root runs/matrix-b --seed 0 \
        --configs digits-alexnet-K40-adam,digits-resnet-batchnorm-K40-momentum \
        --out benchmarks/results/switched-balance-select
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

import ddm  # noqa: E402
from ddm.attribution.fit import balance_classes  # noqa: E402

SCALES = "0.5,0.3,0.2,0.1,0.05"


def signed(x: float) -> str:
    """A score with its sign, or a dash where it was not measured (NaN: halves only)."""
    return "–" if math.isnan(x) else f"{x:+.3f}"


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scales", default=SCALES, help="class balances scored (the first: the balance before)")
    p.add_argument("--variant", default=None,
                   help="score this workspace under each run's folder instead of its own (e.g. the tempered synsets "
                        "grid.py made: grid-emulate_other_class_scale-0_1-distill_head_temperature-2)")
    M.halves_only_option(p)


def run(name: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    _, data, folder, dm, cache = M.open_run(root, name, seed)
    if args.variant:
        dm = ddm.DistilledDatamodel(folder / args.variant).load()
    v = M.ValidationTargets(dm, cache, data, seed, args.halves_only)
    # the step agreement over other classes' groups (the synset stage's reading, class_agreement.py): how far the
    # emulation's other-class weights can be trusted, without a retrain
    agreements = dm._agreements(data.train)
    out: dict[str, Any] = {"temperature": dm.synset_temperature,
                           "other_class_agreement": float("nan") if agreements is None or agreements[1] is None
                           else agreements[1]}
    # one fit, balanced at each scale after it, as the attribution applies the balance
    raw = dm.attribute(v.targets, "dist2", name="switched-balance", other_class_scale=1.0)
    for s in args.scales.split(","):
        W, b = balance_classes(raw.weights, raw.bias, dm.groups, v.targets.y, float(s))
        out[s] = v.score(lambda k, sel, W=W, b=b: k.float() @ W[sel, :, 0].T + b[sel, 0][None, :])
    same = M.same_class(dm.groups, v.targets.y)
    out["trivial"] = v.score(lambda k, sel: M.predicted_loss(same[sel], k))
    return out


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/switched-balance",
                                            "digits-alexnet-K40-adam,digits-resnet-batchnorm-K40-momentum",
                                            options=options)
    scales = args.scales.split(",")
    lines = M.diagnostic_head("The class balance on runs whose synsets switched to a temperature (diagnostic)", args,
                              "validation targets; LDS at each class balance (emulate.other_class_scale), "
                              "other-class LDS (the same at every balance), the synsets' temperature.",
                              [f"LDS at {s}" for s in scales] + ["other-class LDS", "trivial LDS", "temperature",
                                                                  "other-class step agreement"])
    for n in names:
        r = results[n]
        lines.append(f"| {n} | " + " | ".join(f"{r[s][0]:.3f}" for s in scales)
                     + f" | {signed(r[scales[0]][1])} | {r['trivial'][0]:.3f} | {r['temperature']:g} | "
                     f"{r['other_class_agreement']:.3f} |")
    means = {s: sum(results[n][s][0] for n in names) / len(names) for s in scales}
    lines += ["", "Mean LDS: " + ", ".join(f"{s}: {m:.4f}" for s, m in means.items())
              + f"; best {max(means, key=lambda s: means[s])}."]
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
