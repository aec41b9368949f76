"""``ddm diagnose`` (low-quality groups first) and ``ddm report`` (one HTML page of a workspace)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ddm.cli.common import class_text, load_workspace, mostly_removed, parse_indices, user_retrainer
from ddm.exceptions import DDMError
from ddm.text import signed


def cmd_diagnose(args: argparse.Namespace) -> int:
    from ddm.diagnosis import diagnose, from_group_scores
    from ddm.workspace import save_json

    if args.fdr is not None and args.threshold is not None:
        raise DDMError("give --threshold or --fdr, not both")
    for name, v in (("--threshold", args.threshold), ("--fdr", args.fdr)):
        if v is not None and not 0 < v < 1:
            raise DDMError(f"{name} {v:g} is on the bounded score's scale: give a value in (0, 1), e.g. 0.1")
    dm, data = load_workspace(args)
    n = len(data.test)
    idx = parse_indices(args.validation or f"0:{max(1, n // 2)}", n, "--validation")
    val = data.test[idx]
    if args.method == "ddm":
        diag = diagnose(dm, val, args.objective)
    else:
        from ddm.baselines.peers import group_scores, sample_scores

        if args.objective != "loss":
            raise DDMError("peer methods diagnose the validation loss only: use --objective loss")
        diag = from_group_scores(group_scores(sample_scores(args.method, dm.model, dm.trajectory, data.train, val),
                                              dm.groups), dm.groups, args.method)
    if args.fdr is None and args.threshold is None:  # the default rule: a false discovery rate for the loss
        args.fdr = diag.default_fdr
        args.threshold = diag.default_threshold if args.fdr is None else None
    flagged = diag.issues(args.threshold, fdr=args.fdr)
    cut = None if args.fdr is None else diag.fdr_threshold(args.fdr)
    path = dm.ws.path("diagnosis", f"{args.method}-{args.objective}.json")
    diag.save(path)
    checked = None
    if args.verify and flagged:
        from ddm.diagnosis import verify

        checked = verify(dm, data.train, data.test, idx, flagged, args.objective, args.verify, diag.quality,
                         user_retrainer(args))
    # flags that take half or more of a class: each group's quality is its removal alone, and removals of most of a
    # class do not add up (a clean Fashion-MNIST probe's flags, all four from one confusable class, raised the
    # validation loss when removed: BENCHMARKS.md, "`ddm diagnose`'s default threshold")
    taken = mostly_removed(diag.groups, flagged, whole=True)
    rule = {"threshold": args.threshold, "fdr": args.fdr, "fdr_cut": cut}
    save_json(path.with_name(path.stem + "-issues.json"), {**rule, "issues": flagged,
                                                           "mostly_removed_classes": taken, "verification": checked})
    rows = diag.table(args.top_k, threshold=args.threshold, fdr=args.fdr, flagged_too=True)
    if args.json:
        print(json.dumps({"method": args.method, "objective": args.objective, "validation": idx,
                          **rule, "issues": flagged, "mostly_removed_classes": taken,
                          "lowest_quality": rows[:args.top_k], "flagged_beyond_top_k": rows[args.top_k:],
                          "verification": checked, "saved": str(path)}, indent=2))
        return 0
    if taken:
        which = ", ".join(f"class {t['class']} ({t['of'] - t['kept']} of {t['of']})" for t in taken)
        print(f"warning: the flagged groups hold half or more of the training samples of {which}. Each group's "
              "quality predicts its removal alone; removing most of a class together is beyond what they add up "
              "to (the class's own validation samples then lose far more), and on a clean Fashion-MNIST probe such "
              "flags raised the validation loss when removed. "
              + ("See the verification below." if checked is not None else
                 "Check with --verify 3 before removing them."), file=sys.stderr)
        gone = [t["class"] for t in taken if t["kept"] == 0]
        if gone:  # no prediction to make: a class without training data is one the retrained model never predicts
            seen = ", ".join(f"{int((val.y == c).sum())} of class {c}" for c in gone)
            print(f"warning: they are every training sample of class(es) {', '.join(map(str, gone))}: removing them "
                  "together removes the class, which a model retrained without it never predicts, so the validation "
                  f"samples of that class ({seen} among the {len(idx)}) would all be misclassified. Do not remove "
                  "them all; the flags say only that each group alone looks harmful (on a clean RGB probe such "
                  "flags, every group of one class among them, raised the summed validation loss by 758 when "
                  "removed together: BENCHMARKS.md, \"RGB images through the CIFAR-10 reader\")", file=sys.stderr)
    what = "summed validation loss increase" if args.objective == "loss" else "validation accuracy drop"
    if args.objective == "accuracy" and args.method == "ddm":
        print("note: removing one group barely moves validation accuracy, so these qualities are small and noisy; "
              "on the benchmarks their flags found flipped labels at chance level. Prefer --objective loss.",
              file=sys.stderr)
    print(f"{args.method}: quality = predicted {what} if the group is removed ({len(idx)} validation samples); "
          f"negative = removing it is predicted to help; {diag.score_meaning}")
    if args.fdr is None:
        rule_text = f"score < {args.threshold:g}"
    elif cut:
        rule_text = f"score <= {cut:.3g}, the Benjamini-Hochberg cut at false discovery rate {args.fdr:g}"
    else:
        rule_text = (f"a score under the Benjamini-Hochberg cut at false discovery rate {args.fdr:g}: none is, the "
                     f"lowest being {float(diag.score().min()):.3g}")
    held = f" ({int(diag.groups.sizes()[flagged].sum())} training samples)" if flagged else ""
    print(f"{len(flagged)} of {diag.groups.num_groups} groups flagged{held}: quality < 0 and {rule_text}")
    if args.fdr is not None and diag.standard_error is None:
        print("  note: without a standard error (accuracy, or under 10 validation samples) the score is a rank among "
              "the groups, not a p-value, and the cut controls no false discovery rate", file=sys.stderr)
    elif args.fdr is not None and flagged:
        print(f"  about {args.fdr:g} of the flags (about {args.fdr * len(flagged):.1f} of {len(flagged)}) would be "
              "false if the scores were exact p-values; --verify 3 tells on test samples that chose no flag")
    chance = 0.0 if args.threshold is None else args.threshold * diag.groups.num_groups
    if diag.standard_error is not None and chance >= 1:
        # a score is the normal CDF of quality / standard error: about uniform for a group whose removal changes
        # nothing, so the threshold flags that share of such groups whatever the data (K = 1000 on a clean MLP: 171,
        # whose removal raised the held-out test loss; BENCHMARKS.md, "A thousand groups of about ten")
        print(f"  by chance alone: if removing a group changed nothing, its score would be about uniform, so this "
              f"threshold would flag about {chance:.0f} of the {diag.groups.num_groups} groups; "
              + ("more than twice that many flags say more than chance, " if len(flagged) > 2 * chance else
                 "up to about twice that many say little on their own, ")
              + "and --verify 3 tells on test samples that chose no flag")
    if flagged and args.objective == "loss" and args.method == "ddm" and checked is None:
        from ddm import devices
        from ddm.objectives.influence import true_label_loss

        now = float(true_label_loss(devices.predict(dm.model, val.x), val.y).sum())
        together = float(diag.quality[flagged].sum())
        print(f"  together they are predicted to lower the summed validation loss by {-together:.3g} (it is {now:.3g} "
              f"now, {100 * -together / max(now, 1e-12):.0f}%); --verify 3 retrains without them to see whether it "
              "does. Single removals need not add up: on two clean MLPs of the benchmarks most flags helped alone "
              "and together raised the loss by +100 and +140; on the demo three data orders moved it by +0.62, "
              "-0.45 and +1.18 against a predicted -0.06")
    for i, r in enumerate(rows):
        if i == args.top_k:
            print(f"  flagged beyond the {args.top_k} lowest qualities (a flag follows the score):")
        if i == 2 * args.top_k:  # as many again at most; the issues file holds every flag
            print(f"  ... and {len(rows) - i} more flagged groups: {path.with_name(path.stem + '-issues.json')} "
                  "lists every flag")
            break
        mark = "ISSUE" if r["group"] in flagged else "     "
        mem = ", ".join(map(str, r["members"]))
        print(f"  {mark} group {r['group']:>4}  {class_text(r)}  size {r['size']:>4}  "
              f"quality {signed(r['quality'])}  score {r['score']:.4f}  "
              f"samples {mem}{', ...' if r['size'] > len(r['members']) else ''}")
    if checked is not None:
        loss = args.objective == "loss"
        sign = 1.0 if loss else -100.0  # printed as the change of the objective itself

        def changed(m: dict[str, Any], predicted: str = "") -> str:
            per = ", ".join(f"{sign * w:+.3g}" for w in m["measured"])
            return (f"changed by {sign * m['measured_mean']:+.3g}"
                    + (f" ± {abs(sign) * m['measured_std']:.2g}" if checked["orders"] > 1 else "")
                    + f" (per order {per}{predicted}): removing them helped in {m['helped_in']} of "
                    f"{checked['orders']}" + ("" if loss else " (points)"))

        unit = "summed validation loss" if loss else "validation accuracy"
        print(f"verification by exact retraining, the {len(flagged)} flagged groups removed together, "
              f"{checked['orders']} data order(s): {unit} "
              + changed(checked, f"; predicted {sign * checked['predicted']:+.3g}"))
        h = checked.get("held_out")
        if h is not None:
            print(f"  on the other {h['samples']} test samples, which chose no flag: "
                  f"{'summed loss' if loss else 'accuracy'} {changed(h)}. The validation samples chose the flags, "
                  "so their change leans toward helping; this one does not")
    elif args.verify:
        print("verification: nothing flagged, nothing to retrain")
    print(f"saved: {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ddm.reporting.report import build_report

    dm, data = load_workspace(args)
    idx = parse_indices(args.targets, len(data.test), "--targets")
    path = build_report(dm, data, idx, args.objective, args.top_k, args.out)
    if args.json:
        print(json.dumps({"report": str(path), "targets": idx}))
    else:
        print(f"report: {path}  (open it in a browser; figures are embedded)")
    return 0
