"""``ddm unlearn``: remove groups (relabelled fine-tuning, the synsets' step, or a retrain), save the unlearned
model, verify it by exact retraining."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from ddm.cli.common import (
    ensure_classes,
    listed,
    load_workspace,
    mostly_removed,
    near_chance,
    parse_indices,
    training_fit,
    user_retrainer,
)
from ddm.exceptions import ConfigError, DDMError
from ddm.text import seconds as secs

log = logging.getLogger("ddm.unlearning")


def cmd_unlearn(args: argparse.Namespace) -> int:
    import torch

    from ddm.train.loop import accuracy

    if args.method == "exact" and (args.verify or args.set):
        raise ConfigError("--method exact retrains without the groups and saves that model: it is what --verify "
                          "compares against, and it takes no emulate.unlearn_* setting; drop " +
                          ("--verify" if args.verify else "--set"))
    dm, data = load_workspace(args)
    fallback = args.method is None and dm.handed_in()
    explicit = args.method is not None  # an explicit --method relabel runs the epoch where the loose-fit rule would not
    if args.method is None:  # relabelled fine-tuning runs ddm's loop: not for a trajectory from another loop
        args.method = "step" if fallback else "relabel"
    if args.method == "relabel" and args.set:
        raise ConfigError("--set emulate.unlearn_* tunes the synsets' step: add --method step (relabelled "
                          "fine-tuning, the default, takes the training's own train.* settings)")
    if fallback and not args.json:
        print("this workspace's trajectory was handed in from your own training loop, which relabelled fine-tuning "
              "(the default) cannot repeat: unlearning with the synsets' step (--method step; --method exact "
              "--retrain MODULE:FUNCTION retrains in your loop)")
    retrainer = None
    if args.verify:  # a verification that cannot run is refused before the unlearning
        from ddm.evaluation.retrain import retrainer_for

        retrainer = retrainer_for(dm, user_retrainer(args), args.verify)
    bad = [o for o in args.set if not o.startswith("emulate.unlearn_")]
    if bad:
        raise ConfigError(f"ddm unlearn --set takes only emulate.unlearn_* settings, got {bad}; the others belong "
                          "to the workspace's stages (ddm run --set ... --overwrite)")
    if args.set:
        dm.config = dm.config.with_overrides(args.set)
    synset = "classes" if args.classes else "groups"
    if args.classes and args.method == "step":
        ensure_classes(dm, data)
    elif args.classes:  # relabel and exact read the data, not the class-level synset
        dm.fit_class_groups(data.train)
    groups = dm.class_groups if args.classes else dm.groups
    if groups is None:
        raise DDMError(f"the workspace has no {synset} synset; run `ddm run` first")
    idx = sorted(set(parse_indices(args.groups, groups.num_groups, "--groups")))  # a group named twice goes once
    before_test = accuracy(dm.model, data.test)
    chance = near_chance(before_test, int(getattr(data, "num_classes", 0) or 0)) if dm.task.is_default else None
    if chance:
        log.warning("%s. Exact retrains of such a model can disagree with one another (a digits AlexNet at 18.6%%: "
                    "9.7-24.7%% in three data orders, agreeing on under 1%% of the test predictions; BENCHMARKS.md, "
                    "\"A third draw from the wider space\"), so neither an unlearned model nor its check means much",
                    chance)
    rows = torch.cat([groups.members(k) for k in idx])
    removed = data.train[rows]
    before_removed = accuracy(dm.model, removed)
    before = {"test": before_test, "removed": before_removed, "data": data, "rows": removed}
    if args.method == "exact":
        return _exact(args, dm, idx, synset, before)
    fit = None if args.verify else _warn_loose_fit(dm, data)
    if args.method == "relabel":
        return _relabel(args, dm, idx, synset, before, retrainer, step_rules=not explicit, training_fit=fit)
    model = dm.unlearn(idx, name=args.name, synset=synset)
    out: dict[str, Any] = {"groups": idx, "synset": synset, "method": "step", "removed_samples": len(rows),
           **_scores(model, before),
           "saved": str(dm.unlearn_folder(idx, args.name, synset)), "check": dm.last_unlearning_check,
           "classes_without_data": dm.last_classes_without_data, "rewind": dm.last_rewind,
           "rewind_skipped": dm.last_rewind_skipped,
           "classes_mostly_removed": mostly_removed(groups, idx)}
    if fallback:
        out["method_note"] = "the default for a trajectory handed in from another loop (relabel runs ddm's loop)"
    if args.verify:
        from ddm.evaluation.check import verify_unlearning

        collapsed = [int(c["class"]) for c in (dm.last_unlearning_check or {}).get("collapsed_classes", [])]
        first_classes = ((dm.last_unlearning_check or {}).get("first_collapsed", [])
                         + ((dm.last_unlearning_check or {}).get("rewind_dropped") or {}).get("classes", []))
        out["verification"] = verify_unlearning(dm, data, idx, model, args.verify, synset, retrainer,
                                                first_step=dm.last_unlearned_first,
                                                classes=sorted(set(collapsed) | set(first_classes)))
        if out["verification"].get("first_step") is not None:
            out["verification"]["first_step"]["what"] = (
                "first" if (dm.last_unlearning_check or {}).get("damping_raised") else "rewound")
        if abs(out["verification"]["test_gap_points"]) > VERIFY_GAP and synset == "groups" and not dm.handed_in():
            # (the relabelled epoch runs ddm's loop, which did not train a handed-in trajectory)
            out["verification"]["relabel"] = _beside(dm, data, idx, args.verify, retrainer, "relabel")
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        how = ("a Newton step on the last layer (kept data's curvature)" if dm.emulation_method() == "newton"
               else "fine-tuning on their synsets")
        print(f"unlearned {synset} {listed(idx, where='')} ({len(rows)} training samples) by {how}")
        syn = dm.class_synset if args.classes else dm.synset
        if (dm.emulation_method() == "newton" and dm.config.emulate.unlearn_curvature == "images" and syn is not None
                and syn.curvature is not None and syn.curvature.kind == "subspace" and syn.ipc > dm.config.distill.ipc):
            print("  (a last layer above distill.exact_limit, with more synthetic images per group: there their "
                  "curvature made 4 of 47 four-group steps of the benchmarks too long, the groups' own curvature 2 "
                  "too short; if this one looks too long, compare --set emulate.unlearn_curvature=group: "
                  "BENCHMARKS.md, \"The groups' own curvature\")")
        _print_scores(out)
        if (out["removed_accuracy"]["after"] >= out["test_accuracy"]["after"] and not out["classes_without_data"]
                and dm.emulation_method() == "newton"):
            print("    (retraining without them usually leaves removed samples below test accuracy; this last-layer "
                  "step follows retraining's effect on the other data, not on the removed samples themselves: "
                  "README, \"What to expect\")")
        r = out["rewind"]
        if r and r.get("to") == "checkpoint" and r["epoch"] >= r["of_epochs"]:
            print(f"  kept at theta_tau: retraining without {100 * r['fraction_removed']:.1f}% of the data takes "
                  f"{r['scale'] * r['fraction_removed'] * r['of_epochs']:.2g} epochs fewer, nearer the last recorded "
                  "checkpoint than the one before (emulate.unlearn_rewind_to=checkpoint)")
        elif r:
            print(f"  moved back to epoch {r['epoch']:.3g} of {r['of_epochs']:g} of the recorded training: retraining "
                  f"without {100 * r['fraction_removed']:.1f}% of the data takes that many fewer steps "
                  "(emulate.unlearn_rewind=0 keeps theta_tau)")
        dropped = (out["check"] or {}).get("rewind_dropped")
        if dropped:
            print(f"  not moved back along the recorded training: the checkpoint the rewind lands on (epoch "
                  f"{dropped['epoch']:.3g} of {dropped['of_epochs']:g}) had itself lost class(es) "
                  f"{', '.join(str(c) for c in dropped['classes'])}, which theta_tau has and the kept data still "
                  "teaches (a fluctuation of training between checkpoints), so the step is taken from theta_tau "
                  "(emulate.unlearn_rewind_guard=false keeps the rewound model)")
        skipped = out["rewind_skipped"]
        if skipped:
            print(f"  not moved back along the recorded training: under its {skipped['schedule']} learning-rate "
                  f"schedule a retrain without {100 * skipped['fraction_removed']:.1f}% of the data anneals over its "
                  "own, that many fewer, steps and ends annealed as theta_tau does; what those fewer steps cost, "
                  "this step does not follow (--verify 1 checks)")
        if out["classes_without_data"]:
            print(f"  class(es) {out['classes_without_data']} have no training data left: the unlearned model no "
                  "longer predicts them (as retraining without them would not)")
        for t in out["classes_mostly_removed"]:
            print(f"  class {t['class']} keeps {t['kept']} of its {t['of']} training samples "
                  f"({100 * t['kept'] / t['of']:.0f}%): retraining without most of a class can lose much of its test "
                  "accuracy (35-80 points in the benchmarks' cases), a change of the features that this unlearning "
                  "does not follow; check such a removal against a retrain (--verify 1; README, \"What to expect\"), "
                  f"or take the retrain itself (--method exact{_training_time(dm)}), or relabelled fine-tuning "
                  "(the default, --method relabel), which follows such removals (BENCHMARKS.md, \"Relabelled "
                  "fine-tuning\")")
        if (out["classes_mostly_removed"] and dm.emulation_method() == "newton"
                and dm.config.emulate.unlearn_prior_shift == 0):
            print("  --set emulate.unlearn_prior_shift=1 follows such a loss part of the way (on the benchmarks' "
                  "draws that thin a class: the class 23 -> 17 points from exact retraining on average, test "
                  "accuracy 2.6 -> 1.9 points from it; not the default, one draw of 192 lost 3.6: BENCHMARKS.md, \"The "
                  "class-prior shift, asked again\")")
        c = out["check"] or {}
        if c and c["kept_accuracy_before"] is None:
            print("  no group is kept: no synthetic image to check the unlearned model on")
        elif c:
            flag = "   DAMAGED: see the warning above" if c["damaged"] else ""
            print(f"  kept groups' synthetic images: accuracy {100 * c['kept_accuracy_before']:.1f}% -> "
                  f"{100 * c['kept_accuracy_after']:.1f}%{flag}")
            if c.get("damping_raised"):
                print("  the first step cost a class that keeps data more than emulate.unlearn_class_drop of its "
                      f"kept synthetic images' accuracy: redone with emulate.unlearn_damping "
                      f"{c['damping_raised'][-1]:g}"
                      + ("" if args.verify else " (exact retraining sometimes loses such a class as well: --verify 1 "
                                                "scores both steps against it)"))
            for cc in c.get("collapsed_classes", []):
                thinned = cc.get("kept_share") is not None
                print(f"    class {cc['class']} (kept, {cc['kept_images']} synthetic images): "
                      f"{100 * cc['before']:.0f}% -> {100 * cc['after']:.0f}%   "
                      + (f"left with {100 * cc['kept_share']:.0f}% of its samples, as retraining may lose it too"
                         if thinned else "COLLAPSED: see the warning above"))
        if "verification" in out:
            _print_unlearning_verification(out["verification"])
            _print_beside(out["verification"], "relabel")
        _print_saved(out["saved"])
    return 0


def _warn_loose_fit(dm: Any, data: Any) -> dict[str, Any] | None:
    """A warning, before an unverified unlearning, where the model fits its training data loosely
    (``health.fit_to_training``): there a retrain without a few groups, which stops as early, can land far below the
    model; the synsets' step follows it where the removal thins a class (``ddm.unlearning.loose_and_thinned``), and
    elsewhere neither unlearner always does (BENCHMARKS.md, "Unlearning on loosely fitted models"). Returns the fit,
    which the default's rule reads too."""
    fit = training_fit(dm, data)
    if fit is not None and fit["loose"]:
        seconds = _recorded_training_seconds(dm)
        cost = f" (a retrain each, about {seconds:.0f} s here)" if seconds else ""
        log.warning("the model fits its training data loosely (training cross-entropy %.2f of a uniform guess's, "
                    "%.1f%% training accuracy): on such models a retrain without a few groups, which stops as early, "
                    "can land far below the model. Where the removal thins a class, ddm unlearn takes the synsets' "
                    "step, which followed exact retraining within 3 points on 31 of 43 such removals over three draws "
                    "(the relabelled epoch on 5; where it missed, it mostly forgot more than retraining did); "
                    "elsewhere the unlearned model was up to 21 points above exact retraining "
                    "on configurations drawn at random (BENCHMARKS.md, \"Unlearning on loosely fitted models\"). "
                    "--verify N measures it on this removal%s", fit["ratio"], 100 * fit["accuracy"], cost)
    return fit


def _recorded_training_seconds(dm: Any) -> float | None:
    """The seconds the workspace's training took; None for a trajectory handed in, whose stage timed only its
    storing, not the user's training."""
    if dm.handed_in():
        return None
    seconds = (dm.ws.stage_info("train") or {}).get("seconds")
    return float(seconds) if seconds else None


def _training_time(dm: Any) -> str:
    """``: one training, N s here`` from the workspace's recorded training time, where it has one."""
    seconds = _recorded_training_seconds(dm)
    return f": one training, {secs(seconds)} s here" if seconds else ": one training as long as the target's"


def _scores(model: Any, before: dict[str, Any]) -> dict[str, Any]:
    """Test accuracy and the removed samples' accuracy before (the trained model's, in ``before``) and after."""
    from ddm.train.loop import accuracy

    return {"test_accuracy": {"before": before["test"], "after": accuracy(model, before["data"].test)},
            "removed_accuracy": {"before": before["removed"], "after": accuracy(model, before["rows"])}}


def _print_scores(out: dict[str, Any]) -> None:
    t, r = out["test_accuracy"], out["removed_accuracy"]
    print(f"  test accuracy      {100 * t['before']:.1f}% -> {100 * t['after']:.1f}%")
    print(f"  removed-data acc.  {100 * r['before']:.1f}% -> {100 * r['after']:.1f}%")


def _print_saved(saved: str) -> None:
    print(f"  checkpoint: {saved}/model.safetensors   (Python: DistilledDatamodel(WS).load()"
          f".unlearned({Path(saved).name!r}))")


def _relabel(args: argparse.Namespace, dm: Any, idx: list[int], synset: str, before: dict[str, Any],
             retrainer: Any, step_rules: bool = True, training_fit: dict[str, Any] | None = None) -> int:
    """``ddm unlearn`` (``--method relabel``): relabelled fine-tuning, saved as the unlearned model; ``step_rules``:
    the synsets' step where the model's fit ratio is above ``ddm.unlearning.STEP_FIT`` and the removal thins a class,
    or where the epoch raises the kept data's accuracy by more than ``ddm.unlearning.RELABEL_FIT_RISE`` (the
    default's rules, not an explicit ``--method relabel``'s)."""
    data = before["data"]
    model = dm.unlearn_relabel(idx, data.train, name=args.name, synset=synset, step_rules=step_rules,
                               training_fit=training_fit)
    r = dm.last_relabel
    out: dict[str, Any] = {"groups": idx, "synset": synset, "method": r["method"],
                           "removed_samples": len(before["rows"]),
                           **_scores(model, before), "saved": r["folder"], "seconds": r["seconds"],
                           "relabelled": r["relabelled"], "softened": r["softened"],
                           "classes_without_data": r["classes_without_data"], "kept_fit": r["kept_fit"],
                           "training_seconds": _recorded_training_seconds(dm)}
    if "fell_back" in r:
        out["fell_back"], out["fell_back_rule"] = r["fell_back"], r["fell_back_rule"]
    if r.get("still_learning"):  # the epoch raised the kept data's accuracy (ddm.unlearning.RELABEL_FIT_RISE)
        out["still_learning"] = True
        if "replayed_from_epoch" in r:  # the epoch asked for by name (--method relabel): replayed
            out["replayed_from_epoch"] = r["replayed_from_epoch"]
    if args.verify:
        from ddm.evaluation.check import verify_unlearning

        out["verification"] = verify_unlearning(dm, data, idx, model, args.verify, synset, retrainer)
        missed = abs(out["verification"]["test_gap_points"]) > VERIFY_GAP and synset == "groups"
        if missed and dm.synset is not None and "fell_back" not in r:
            out["verification"]["step"] = _beside(dm, data, idx, args.verify, retrainer, "step")
        elif missed and r.get("fell_back_rule") in ("loose_thinned", "still_learning"):  # the rule's step: the epoch
            # (replayed where the model was still learning) beside it
            out["verification"]["relabel"] = _beside(dm, data, idx, args.verify, retrainer, "relabel")
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    fit = r["kept_fit"]
    if "fell_back" in r:
        if fit is None:  # the rule for loose fits that thin a class: no epoch ran
            from ddm.unlearning import STEP_FIT

            print(f"unlearned {synset} {listed(idx, where='')} ({out['removed_samples']} training samples) by the "
                  "synsets' step, in place of a relabelled epoch: the model's training cross-entropy is above "
                  f"{STEP_FIT:g} of a uniform guess's (ddm.unlearning.STEP_FIT) and the "
                  "removal thins a class (the warning above; ddm.unlearning.THINNED_SHARE; BENCHMARKS.md, "
                  f"\"Unlearning on loosely fitted models\"); {secs(r['seconds'])} s")
        elif r["fell_back_rule"] == "still_learning":
            print(f"unlearned {synset} {listed(idx, where='')} ({out['removed_samples']} training samples) by the "
                  f"synsets' step, in place of a relabelled epoch that raised the kept training data's accuracy by "
                  f"{100 * (fit['after'] - fit['before']):.1f} points: the model was still learning, and a retrain "
                  "without the groups stops where its training did (the warning above; "
                  "ddm.unlearning.RELABEL_FIT_RISE; BENCHMARKS.md, \"The relabelled epoch replayed where the model was "
                  f"still learning\"); {secs(r['seconds'])} s")
        else:
            print(f"unlearned {synset} {listed(idx, where='')} ({out['removed_samples']} training samples) by the "
                  f"synsets' step, in place of a relabelled epoch that lost {100 * (fit['before'] - fit['after']):.1f} "
                  "points of accuracy on the kept training data (the warning above; ddm.unlearning.RELABEL_FIT_DROP; "
                  f"BENCHMARKS.md, \"Configurations drawn at random\"); {secs(r['seconds'])} s")
    else:
        print(f"unlearned {synset} {listed(idx, where='')} ({out['removed_samples']} training samples) by one epoch "
              + (f"(replayed from the checkpoint at epoch {r['replayed_from_epoch']:g}: the model was still learning) "
                 if r.get("still_learning") else "") +
              f"of fine-tuning on the training data with the removed samples relabelled by their {r['neighbours']} "
              f"nearest kept samples where {r['agree']} of them agree ({r['relabelled']} of {out['removed_samples']} "
              f"took another class, {r['softened']} more the label shares of their {r['soft_neighbours']} nearest kept "
              f"samples, which do not all carry their own; {secs(r['seconds'])} s; --method step: the synsets' step, "
              "which reads no data)")
    _print_scores(out)
    if fit is not None:
        if "replayed" in fit:
            print(f"  kept-data acc.     {100 * fit['before']:.1f}% -> {100 * fit['replayed']:.1f}% (replayed from "
                  f"epoch {r['replayed_from_epoch']:g}; the epoch from theta_tau reached {100 * fit['after']:.1f}%, "
                  "training a model still learning further than a retrain would: the warning above)")
        else:
            print(f"  kept-data acc.     {100 * fit['before']:.1f}% -> {100 * fit['after']:.1f}% (the relabelled "
                  "epoch" + (", not used)" if "fell_back" in r else ")"))
    if out["classes_without_data"]:
        print(f"  class(es) {out['classes_without_data']} have no training data left: the unlearned model no "
              "longer predicts them (as retraining without them would not)")
    if "verification" in out:
        _print_unlearning_verification(out["verification"])
        _print_beside(out["verification"], "step")
        _print_beside(out["verification"], "relabel")
    else:
        print(f"  not checked against exact retraining{_training_time(dm)} (--verify N scores this model against "
              "it in N data orders; --method exact saves the retrain itself)")
    _print_saved(out["saved"])
    return 0


#: a verified unlearning further than this many points of test accuracy from exact retraining is flagged, and the
#: other unlearner (the synsets' step or the relabelled epoch) is then scored beside it on the same (cached) retrains
VERIFY_GAP = 3.0


def _beside(dm: Any, data: Any, idx: list[int], orders: int, retrainer: Any, method: str) -> dict[str, Any]:
    """The other unlearner for the same groups (``method``: ``step``, the synsets' step, or ``relabel``, the relabelled
    epoch), saved as ``ddm unlearn --method METHOD`` saves it and scored against the retrains the first one's
    verification just made (cached: seconds). On a Fashion-MNIST ConvNet the relabelled epoch fell 4-6 points below
    retraining on a draw where the step was within 3 (BENCHMARKS.md, "A Fashion-MNIST ConvNet where the neighbours
    over-forget"); on MLPs where a removal thins a class it is the other way round."""
    import numpy as np

    from ddm.evaluation.check import verify_unlearning

    damaged, fell_back = False, None
    if method == "step":
        model, saved = dm.unlearn(idx), str(dm.unlearn_folder(idx, None, "groups"))
        damaged = bool((dm.last_unlearning_check or {}).get("damaged"))  # its check warned, above this command's lines
    else:
        model = dm.unlearn_relabel(idx, data.train, step_rules=False)  # the epoch itself, beside the step
        saved, fell_back = dm.last_relabel["folder"], dm.last_relabel.get("fell_back")
        if fell_back:  # the epoch was refused (RELABEL_FIT_DROP): nothing to score beside the step
            return {"fell_back": fell_back}
    v = verify_unlearning(dm, data, idx, model, orders, "groups", retrainer)
    return {"test_accuracy": v["unlearned"]["test_accuracy"], "test_gap_points": v["test_gap_points"],
            "removed_accuracy": v["unlearned"]["removed_accuracy"],
            "test_agreement": float(np.mean(v["unlearned"]["test_agreement"])), "saved": saved, "damaged": damaged}


def _print_beside(v: dict[str, Any], method: str) -> None:
    """The line for :func:`_beside`'s result in the verification ``v``, where there is one."""
    other = v.get(method)
    if other is None:
        return
    what = "the synsets' step (--method step)" if method == "step" else "relabelled fine-tuning (--method relabel)"
    if "fell_back" in other:
        print(f"    {what} not scored beside it: {other['fell_back']}")
        return
    nearer = abs(other["test_gap_points"]) < abs(v["test_gap_points"])
    print(f"    {what} against the same retrains: test accuracy {100 * other['test_accuracy']:.1f}% "
          f"({other['test_gap_points']:+.1f} points), removed-data acc. {100 * other['removed_accuracy']:.1f}%; "
          + (f"nearer exact retraining here, saved as {other['saved']}" if nearer else
             "no nearer exact retraining here")
          + (" (the unlearning warning above is this step's check)" if other.get("damaged") else ""))


def _exact(args: argparse.Namespace, dm: Any, idx: list[int], synset: str, before: dict[str, Any]) -> int:
    """``ddm unlearn --method exact``: the retrain without the groups, saved as the unlearned model."""
    model = dm.unlearn_exact(idx, before["data"].train, name=args.name, synset=synset, retrain=user_retrainer(args))
    e = dm.last_exact
    out: dict[str, Any] = {"groups": idx, "synset": synset, "method": "exact", "removed_samples": len(before["rows"]),
                           **_scores(model, before), "saved": e["folder"], "seconds": e["seconds"],
                           "training_seconds": e["training_seconds"]}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    loop = f"your loop {args.retrain}" if getattr(args, "retrain", None) else "ddm's loop, train.*"
    took = f" (the target's training took {secs(out['training_seconds'])} s)" if out["training_seconds"] else ""
    print(f"retrained without {synset} {listed(idx, where='')} ({out['removed_samples']} training samples) from "
          f"theta_0 in the target's data order ({loop}): {secs(out['seconds'])} s{took}")
    _print_scores(out)
    _print_saved(out["saved"])
    return 0


def _print_unlearning_verification(v: dict[str, Any]) -> None:
    import numpy as np

    def pct(values: list[float]) -> str:
        text = f"{100 * np.mean(values):.1f}%"
        return text + (f" (orders {', '.join(f'{100 * x:.1f}' for x in values)})" if len(values) > 1 else "")

    e, u, t = v["exact"], v["unlearned"], v["target"]
    print(f"  verification: exact retraining without them from theta_0, {v['orders']} data order(s):")
    print(f"    test accuracy      exact {pct(e['test_accuracy'])}; unlearned {100 * u['test_accuracy']:.1f}% "
          f"({v['test_gap_points']:+.1f} points); target {100 * t['test_accuracy']:.1f}%")
    print(f"    removed-data acc.  exact {pct(e['removed_accuracy'])}; unlearned {100 * u['removed_accuracy']:.1f}%; "
          f"target {100 * t['removed_accuracy']:.1f}%")
    spread = (f"; the exact retrain in the target's order agrees with the other orders' "
              f"{pct(e['test_agreement_between_orders'])}"
              if "test_agreement_between_orders" in e else "")
    print(f"    agreement with exact on the test split: unlearned {pct(u['test_agreement'])}, target (nothing "
          f"unlearned) {pct(t['test_agreement'])}{spread}")
    if np.mean(u["test_agreement"]) <= np.mean(t["test_agreement"]):
        print("    on agreement the unlearned model is no closer to exact retraining than the target itself (nothing "
              "unlearned) is")
    for c, per in sorted((v.get("classes") or {}).get("unlearned", {}).items(), key=lambda kv: int(kv[0])):
        exact_c = [o[c] for o in v["classes"]["exact"] if c in o]
        first_c = (v["classes"].get("first_step") or {}).get(c)
        which = "the rewound step" if (v.get("first_step") or {}).get("what") == "rewound" else "the first step"
        print(f"    class {c} (flagged by the unlearning check), test accuracy: exact {pct(exact_c)}; unlearned "
              f"{100 * per:.0f}%" + ("" if first_c is None else f"; {which} {100 * first_c:.0f}%"))
    f = v.get("first_step")
    if f is not None and f.get("what") == "rewound":
        print(f"    the step from the rewound checkpoint, which the guard replaced: test accuracy "
              f"{100 * f['test_accuracy']:.1f}% ({f['test_gap_points']:+.1f} points), removed-data acc. "
              f"{100 * f['removed_accuracy']:.1f}%, agreement with exact {pct(f['test_agreement'])}")
        if abs(f["test_gap_points"]) + 1 < abs(v["test_gap_points"]):
            print("    here exact retraining is nearer the rewound step: `ddm unlearn ... --set "
                  "emulate.unlearn_rewind_guard=false` keeps it")
    elif f is not None:
        print(f"    the first step, before the unlearning check raised the damping: test accuracy "
              f"{100 * f['test_accuracy']:.1f}% ({f['test_gap_points']:+.1f} points), removed-data acc. "
              f"{100 * f['removed_accuracy']:.1f}%, agreement with exact {pct(f['test_agreement'])}")
        if abs(f["test_gap_points"]) + 1 < abs(v["test_gap_points"]):
            print("    here exact retraining is nearer the first step than the step with the raised damping: "
                  "`ddm unlearn ... --set emulate.unlearn_backoff=0` keeps the first step")
    if abs(v["test_gap_points"]) > VERIFY_GAP:
        side = "above" if v["test_gap_points"] > 0 else "below"
        lo, hi = min(e["test_accuracy"]), max(e["test_accuracy"])
        if len(e["test_accuracy"]) > 1 and lo <= u["test_accuracy"] <= hi:
            print(f"    the unlearned model's test accuracy is {abs(v['test_gap_points']):.1f} points {side} exact "
                  f"retraining's mean, but inside the range its data orders span ({100 * lo:.1f}-{100 * hi:.1f}%): "
                  "retraining itself varies that much here, so the gap says little about the unlearning")
        else:
            more = ("; one data order cannot show retraining's own spread: --verify 3 retrains two more"
                    if len(e["test_accuracy"]) == 1 else "")
            spread = (f" (whose {len(e['test_accuracy'])} data orders themselves span {100 * lo:.1f}-{100 * hi:.1f}%)"
                      if hi - lo > 0.03 else "")
            print(f"    the unlearned model's test accuracy is {abs(v['test_gap_points']):.1f} points {side} exact "
                  f"retraining's{spread}: do not take it for a retrain{more} (--method exact saves the retrain itself)")
