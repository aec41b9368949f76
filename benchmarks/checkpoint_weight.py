"""How much of the Newton step should come from theta_tau? (a diagnostic, not a default)

The default averages the head's Newton step over theta_tau and the earlier checkpoints the synsets transfer to, each
with the same weight (``ddm.emulate.newton.newton_logits``). On a from-scratch AlexNet run the step at theta_tau alone
ranked at chance while the earlier checkpoints carried the default's score. The step's logit shifts are linear in
each checkpoint's shift, so this computes each member's shifts once (the emulation with theta_tau alone, and with
theta_tau and one checkpoint, on the default's own perturbations) and scores the attribution with theta_tau's share
set to each ``--tau-shares`` value (the rest shared equally by the checkpoints): the readout, the regression and the
class balance exactly as ``DistilledDatamodel.attribute`` does them. The default's share (1 / members) is included
and must reproduce the default's score (``--set``: a variant's, e.g. tempered synsets, and its own attribution);
validation targets, the matrix's retrains. It also reports, with no retrain, how alike theta_tau's step alone and the
checkpoints' alone rank the LDS halves (a candidate detector of a broken step at theta_tau).

    python benchmarks/checkpoint_weight.py --configs fmnist-mlp-K40-sgd,digits-convnet-K100-sgd --seed 3 \\
        --out benchmarks/results/checkpoint-weight-select
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from ddm import objectives
from ddm.attribution.fit import fit_attribution
from ddm.emulate.newton import member_shifts
from ddm.emulate.perturbations import sample_perturbations
from ddm.evaluation.metrics import lds

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tau-shares", default="0,0.15,0.5,1", help="theta_tau's shares of the step compared (the "
                   "default's, 1 / members, is always added)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="recombine the steps of a variant's workspace (grid.py's, e.g. distill.head_temperature=2) "
                        "instead of the default's; the baseline rows stay the default's")
    p.add_argument("--train-targets", action="store_true",
                   help="with --agreement-only: 50 training samples as the targets (what a workspace has without a "
                        "test split), a fixed random draw (seed 0)")
    p.add_argument("--agreement-only", action="store_true",
                   help="only the retrain-free agreement of theta_tau's step and the checkpoints' (no retrain, "
                        "no score)")


def run(name: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    cfg, data, folder, dm, cache = M.open_run(root, name, seed)
    v = M.ValidationTargets(dm, cache, data, seed)
    out: dict[str, Any] = {} if args.agreement_only else v.baselines(dm, "checkpoint-weight")
    if args.set:
        dm = M.fit_variant(folder, cfg, data, args.set)
        variant = dm.attribute(v.targets, "dist2", name="checkpoint-weight")
        out[f"{', '.join(args.set)} (as attributed)"] = v.score(lambda k, sel: variant.predict(k)[:, sel, 0])
    e, groups, syn, targets = dm.config.emulate, dm.groups, dm.synset, v.targets
    if args.train_targets:
        if not args.agreement_only:
            raise SystemExit("--train-targets scores nothing: use it with --agreement-only")
        targets = data.train[torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:50]]
    averaged = syn.transferring(e.min_transfer).damped(e.damping_scale)
    K, m = syn.num_groups, len(averaged.checkpoints)
    keep = sample_perturbations(K, dm._num_perturbations(K, syn), e.keep_prob, e.seed)
    dm.model.eval()  # as attribute() reads it: a batch norm's running statistics, not the targets' batch
    z, s_tau, s_ck = member_shifts(dm.model, dm.trajectory.final, averaged, ~keep, targets.x, dm.trajectory,
                                   dm.decay(groups))
    obj = objectives.get("dist2")
    shares = [0.0, 1.0] if args.agreement_only else sorted(
        {*(float(x) for x in args.tau_shares.split(",")), 1 / (m + 1), 0.0, 1.0})
    fitted: dict[float, Any] = {}
    for w in shares:
        if m == 0 and w != 1:
            continue
        shift = w * s_tau + ((1 - w) / m * sum(s_ck) if m else 0)
        outputs = obj.outputs((z + shift).float(), targets.y)
        attr = fit_attribution(keep, outputs, obj, groups, targets.index.tolist(), syn.num_classes, e.weighting,
                               e.ridge, None, targets.y, e.other_class_scale)
        tag = (f"{', '.join(args.set)}: " if args.set else "") + f"theta_tau share {w:.3g}" + (
            " (the default's)" if abs(w - 1 / (m + 1)) < 1e-9 else "")
        fitted[w] = attr
        if not args.agreement_only:
            out[tag] = v.score(lambda k, sel, a=attr: a.predict(k)[:, sel, 0])
            print(name, seed, tag, out[tag], flush=True)
    if m:  # retrain-free: do theta_tau's step and the checkpoints' rank the same halves alike?
        out["agreement"] = round(lds(fitted[0.0].predict(v.keep)[:, :, 0], fitted[1.0].predict(v.keep)[:, :, 0])[0], 3)
    out["checkpoints"] = [f"{c.epoch:g} (cosine {c.cosine_mean:.2f})" for c in averaged.checkpoints]
    return out


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "runs/probe/checkpoint-weight", "digits-alexnet-K40-adam",
                                            options=options)
    lines = ["# theta_tau's share of the Newton step (diagnostic)", "",
             f"Command: `python benchmarks/checkpoint_weight.py {' '.join(sys.argv[1:])}`; seed {args.seed}, "
             + ("50 training samples as the targets (no score)" if args.train_targets else
                "validation targets; LDS / other-class LDS against the retrains in the target's data order") + ".", "",
             "| configuration | checkpoints averaged | variant | LDS | other-class LDS |", "|---|---|---|---|---|"]
    for n in names:
        r = results[n]
        for tag, val in r.items():
            if tag not in ("checkpoints", "agreement"):
                lines.append(f"| {n} | {', '.join(r['checkpoints'])} | {tag} | {val[0]:+.3f} | {val[1]:+.3f} |")
    lines += ["", "Agreement (no retrain): Spearman over the LDS halves between the predictions of theta_tau's step "
              "alone and of the checkpoints' alone, mean over the targets: "
              + ", ".join(f"{n} {results[n]['agreement']:+.3f}" for n in names if "agreement" in results[n])]
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
