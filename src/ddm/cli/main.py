"""``ddm``'s entry point, its error handling, and the run, stage and attribute commands; ``unlearn``, ``check`` and
``evaluate``, ``diagnose`` and ``report``, and ``info`` have modules of their own, and :mod:`ddm.cli.parser` holds the
arguments every command takes."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ddm.cli.common import (
    CACHE_FOLDER,
    averaged_line,
    class_text,
    ensure_classes,
    grown,
    listed,
    load_workspace,
    make_config,
    model_for_data,
    near_chance,
    off_scale_line,
    parse_indices,
    training_fit,
)
from ddm.exceptions import DDMError
from ddm.text import beside, signed

log = logging.getLogger("ddm")


def _offline(args: argparse.Namespace, until: str) -> tuple[Any, Any, Any]:
    from ddm import data as data_mod
    from ddm import models
    from ddm.pipeline import DistilledDatamodel

    cfg = make_config(args)
    with data_mod.rows_cache(Path(args.workspace) / CACHE_FOLDER):
        data = data_mod.load(cfg.data)
    log.info("%s", data.summary())
    cfg = model_for_data(cfg, data, args)
    dm = DistilledDatamodel(args.workspace, cfg, overwrite=args.overwrite)
    if args.model:
        model = models.from_import(args.model, data.num_classes, data.image_shape)
    else:
        stored = Path(args.workspace, "train", "model.json")
        spec = json.loads(stored.read_text()) if stored.exists() else {}
        # a workspace built from an import path keeps using it; otherwise the configured registry model
        model = (models.from_import(spec["import"], data.num_classes, data.image_shape) if "import" in spec
                 else models.build(cfg.model, data))
    dm.fit(model, data.train, until=until)
    return cfg, data, dm


def _describe_offline(dm: Any, data: Any) -> dict[str, Any]:
    from ddm.train.loop import accuracy

    out: dict[str, Any] = {"dataset": data.summary(), "workspace": str(dm.ws.root)}
    info = dm.ws.stage_info("train") or {}
    out["model"] = {"spec": dm.model.ddm_spec if hasattr(dm.model, "ddm_spec") else None,
                    "test_accuracy": accuracy(dm.model, data.test), "train_seconds": info.get("seconds"),
                    "checkpoints": len(dm.trajectory)}
    head = getattr(dm.model, "ddm_head", None)
    if head is not None:  # found by the logits, not the last Linear the model registers
        out.setdefault("notes", []).append(
            f"the model's head is its nn.Linear {head!r}, the one its logits come from (not the last Linear it "
            "registers); recorded in train/model.json")
    warn = near_chance(out["model"]["test_accuracy"], int(getattr(data, "num_classes", 0) or 0))
    if warn:
        out["warnings"] = [warn]
    else:
        from ddm.health import training_progress

        progress = training_progress(dm.model, dm.trajectory, data.test, out["model"]["test_accuracy"])
        if progress is not None:
            out["model"]["progress"] = progress
            if progress["still_improving"]:
                out["warnings"] = [_still_improving(progress, dm.handed_in())]
            if progress["fell_back"]:
                momentum = 0.0 if dm.handed_in() else dm.config.train.momentum
                out.setdefault("warnings", []).append(_fell_back(progress, dm.handed_in(), momentum))
        fit = training_fit(dm, data)
        if fit is not None:
            out["model"]["training_fit"] = fit
            if fit["loose"]:
                out.setdefault("warnings", []).append(_loose_fit(fit))
    if dm.groups is not None:
        s = dm.groups.sizes()
        out["groups"] = {"method": dm.groups.method, "K": dm.groups.num_groups, "min_size": int(s.min()),
                         "max_size": int(s.max()),
                         "most_classes": max(dm.groups.num_classes_of(k) for k in range(dm.groups.num_groups))}
    for stage in ("synset", "synset-class"):
        i = dm.ws.stage_info(stage)
        syn = dm.synset if stage == "synset" else dm.class_synset
        if i and i.get("complete"):
            h = i.get("health") or {}
            out[stage] = {"matching": i["config"]["matching"], "steps": i.get("steps", i["config"]["iterations"]),
                          "first_loss": i.get("first_loss"), "last_loss": i.get("last_loss"),
                          "kept_loss": i.get("kept_loss"),
                          "groups": i.get("num_groups"), "seconds": i.get("seconds"),
                          "images_per_group": getattr(syn, "ipc", None), "grown": i.get("grown"),
                          "match_metric": i.get("match_metric"),
                          "match_metric_default": dm.config.distill.match_metric is None,
                          "step_gradients": dm.step_gradients(syn) if syn is not None else None,
                          "min_transfer": dm.config.emulate.min_transfer,
                          "health": {k: v for k, v in h.items()
                                     if not isinstance(v, list) or k in ("flagged", "checkpoints")}}
    note = _growth_note(dm, out.get("synset"))
    if note:
        out.setdefault("notes", []).append(note)
    if "synset" in out:
        from ddm.attribution.agreement import STEP_AGREEMENT_WARN

        st: dict[str, Any] = dm.ws.stage_info("synset") or {}
        # stored by the synset stage since distill.auto_temperature; computed here for workspaces made before
        agreement = st["step_agreement"] if "step_agreement" in st else dm.step_agreement(data.train)
        out["synset"]["step_agreement"] = agreement
        if "temperature" in st:
            out["synset"]["temperature"] = st["temperature"]
            out.setdefault("notes", []).append(
                f"the step at theta_tau and the steps at the earlier checkpoints ranked removals differently with the "
                f"plain cross-entropy (step agreement {beside(st['step_agreement_at_1'], STEP_AGREEMENT_WARN)} on 50 "
                f"training samples, below {STEP_AGREEMENT_WARN}), so the synsets were distilled again with the "
                f"cross-entropy at temperature {st['temperature']:g} (distill.auto_temperature; agreement now "
                + ("n/a" if agreement is None else f"{agreement:+.2f}")
                + "). On the benchmarks' models where this happened, the tempered synsets ranked far better "
                "(BENCHMARKS.md, \"A tempered synset where the step agreement is low\"); `ddm check` compares them "
                "with the plain ones on exact retrains")
        if agreement is not None and agreement < STEP_AGREEMENT_WARN:
            out.setdefault("warnings", []).append(
                f"the step at theta_tau and the steps at the earlier checkpoints rank removals differently (agreement "
                f"{beside(agreement, STEP_AGREEMENT_WARN)} on 50 training samples, below {STEP_AGREEMENT_WARN}"
                + (f", with synsets at temperature {st['temperature']:g}" if "temperature" in st else "")
                + "): on the benchmarks' models where this happened (AlexNet trained with Adam, a batch-norm ResNet) "
                "DDM with plain synsets ranked below the class labels alone; run `ddm check` before trusting the "
                "rankings (BENCHMARKS.md, \"A lead: a retrain-free sign of a broken step\")")
    return out


#: ``ddm run`` notes the 16-image matching (``distill.ipc_grow``) where it took this many seconds and half the stage
GROWTH_NOTE_SECONDS = 60.0


def _growth_note(dm: Any, synset: dict[str, Any] | None) -> str | None:
    """Where the synset stage spent most of its time matching more images per group (``distill.ipc_grow``), which
    neither the attribution (the groups' own gradients) nor ``ddm unlearn``'s default (the training data) reads: how
    to skip it, and what that costs."""
    synset = synset or {}
    g = synset.get("grown") or {}
    spent, total = g.get("seconds"), synset.get("seconds")
    if spent is None or not total or spent < GROWTH_NOTE_SECONDS or spent < total / 2:
        return None
    if synset.get("step_gradients") != "groups":
        return None
    ipc = dm.config.distill.ipc
    return (f"matching {g['to']} images per group instead of {g['from']} (distill.ipc_grow) took {spent:.0f} s of the "
            f"stage's {total:.0f} s. The attribution reads the groups' own gradients and `ddm unlearn` the training "
            f"data, so only `ddm unlearn --method step`, the report's images and released synsets use those images "
            f"(with {ipc}, the step unlearned worse where a removal thins a class). With many small groups "
            f"`--set distill.ipc_grow={ipc}` skips it: on a K = 1000 Fashion-MNIST MLP the stage took 109 s "
            "instead of 210 s, with the same attribution (BENCHMARKS.md, \"A thousand groups of about ten\")")


def _attribution_report(dm: Any, data: Any, idx: list[int] | None, args: argparse.Namespace,
                        targets: Any = None, source: str = "test") -> dict[str, Any]:
    """Attribute test rows ``idx``, or ``targets`` read from ``source`` (a file: ids are its rows)."""
    if targets is None:
        assert idx is not None
        targets = data.test[idx]
    if args.hierarchical:
        ensure_classes(dm, data)
    t0 = time.perf_counter()
    attr = dm.attribute(targets, args.objective, hierarchical=args.hierarchical, name=getattr(args, "name", None))
    seconds = time.perf_counter() - t0
    from ddm import devices

    pred = devices.predict(dm.model, targets.x).argmax(1).tolist()
    rows = []
    key = "test_index" if source == "test" else "file_row"
    for i, row in enumerate(attr.summary(args.top_k)):
        if attr.weights.shape[0] == len(targets):
            row.update({key: idx[i] if idx is not None else i, "label": int(targets.y[i]), "predicted": pred[i]})
        rows.append(row)
    meta = attr.meta or {}
    return {"objective": attr.objective, "score_meaning": attr.score_meaning, "seconds": seconds,
            "perturbations": meta.get("perturbations"), "hierarchical": args.hierarchical,
            "emulation": dm.emulation_method(), "backend": meta.get("backend"),
            "finetune": {"lr": dm.finetune_lr, "steps": dm.finetune_steps},
            "flagged_groups": meta.get("flagged_groups", []), "reused": meta.get("reused", []),
            "other_class_scale": meta.get("other_class_scale"),
            "class_balance_setting": meta.get("class_balance_setting"), "fit": meta.get("fit", "regression"),
            "schedule_weight": meta.get("schedule_weight", 0.0),
            "damping_scale": dm.config.emulate.damping_scale if dm.emulation_method() == "newton" else None,
            "gradients": dm.step_gradients(),  # whose the Newton step reads (None: no such step)
            "source": source, "targets": rows}


def _still_improving(p: dict[str, Any], external: bool) -> str:
    """The warning for a model still improving when its training stopped (``health.training_progress``)."""
    longer = ("record a longer training in your loop and hand its trajectory in again" if external else
              "raise train.epochs and run again with --overwrite")
    return (f"the model was still improving when its training stopped: test accuracy {100 * p['accuracy']:.1f}% at "
            f"epoch {p['epoch']:g}, {100 * p['final_accuracy']:.1f}% at epoch {p['final_epoch']:g} "
            f"(+{100 * p['rise']:.1f} points in the last quarter). Its attributions and unlearning describe this "
            f"model; a longer training would give another one, whose data matter differently. If you meant a "
            f"trained-out model, {longer} (BENCHMARKS.md, \"A model still improving when its training stopped\"; "
            "`ddm check` measures DDM on this model against exact retrains). `ddm unlearn`'s relabelled epoch trains "
            "such a model further, which a retrain without the groups does not: on the random draws it ended more "
            "than 3 points above exact retraining on 15 of 20 removals from models warned of so (37 of 80 from "
            "the others). Where it raises the kept data's accuracy by more than 5 points, `ddm unlearn` takes the "
            "synsets' step instead (--method relabel replays the epoch from the checkpoint an epoch earlier); "
            "--verify N checks the result")


def _loose_fit(f: dict[str, Any]) -> str:
    """The warning for a model far from fitting its training data (``health.fit_to_training``)."""
    from ddm.health import LOOSE_FIT

    return (f"the model fits its training data loosely: its training cross-entropy is {f['loss']:.3f}, "
            f"{f['ratio']:.2f} of a uniform guess's (above {LOOSE_FIT:g}), at {100 * f['accuracy']:.1f}% training "
            "accuracy. On such models DDM's Newton step at theta_tau ranked groups below last-layer influence (by "
            "0.04-0.11 LDS on three of four configurations drawn at random; a damping 100x the default ranked those "
            "three best and the fourth far worse), and exact retraining without a few groups moved far from the "
            "model (BENCHMARKS.md, "
            "\"Configurations drawn at random\"). `ddm run` calibrates such a model on exact retrains by itself where "
            "they are cheap (--calibrate), and `ddm check` measures it on this model and advises the damping "
            "(--apply keeps it); if you meant a trained-out model, train it longer or at another rate and run again "
            "with --overwrite")


def _calibration(dm: Any, data: Any, out: dict[str, Any], mode: str, stream: Any) -> dict[str, Any]:
    """``ddm run --calibrate``: run the check on targets and subsets of its own (``evaluation.check.calibrate``) and
    keep its advice, where ``mode`` asks for it (``auto``: retrains estimated under ``CALIBRATE_BUDGET`` seconds, or
    ``CALIBRATE_BUDGET_LOOSE`` for a model that fits its training data loosely, and no check or calibration of these
    synsets yet). Returns what was done (``ran``, ``reason``; the advice kept and the scores where it ran), and prints
    it on ``stream``."""
    from ddm.cli.parser import CALIBRATE_BUDGET, CALIBRATE_BUDGET_LOOSE

    if mode == "never":
        return {"ran": False, "reason": "--calibrate never"}
    from ddm.evaluation import check as C

    fit = out["model"].get("training_fit") or {}
    n, estimate = C.calibration_cost(float((dm.ws.stage_info("train") or {}).get("seconds") or 0.0),
                                     float((dm.ws.stage_info("synset") or {}).get("seconds") or 0.0),
                                     dm.groups is None or dm.groups.mixes_classes())
    why = None
    if C.stored_result(dm, "calibration.json") is not None:
        why = "calibrated before (check/calibration.json), its advice kept"
    elif C.stored_result(dm) is not None:
        why = "`ddm check` has measured these synsets (check/check.json)"
    elif dm.handed_in():
        why = ("the trajectory was handed in from your own loop: `ddm check -w WS --retrain MODULE:FUNCTION --apply` "
               "calibrates with it")
        if mode == "always":
            raise DDMError(f"--calibrate always retrains, and {why.replace('WS', str(dm.ws.root))}")
    elif mode == "auto" and near_chance(out["model"]["test_accuracy"], int(getattr(data, "num_classes", 0) or 0)):
        why = "the model is at or near chance (above): nothing it ranks is worth calibrating"
    elif mode == "auto" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        why = f"not under torchrun: `ddm check -w {dm.ws.root} --apply` calibrates in one process"
    elif mode == "auto" and estimate > (CALIBRATE_BUDGET_LOOSE if fit.get("loose") else CALIBRATE_BUDGET):
        budget = (f"the {CALIBRATE_BUDGET_LOOSE} s `--calibrate auto` spends on a model that fits its training data "
                  "loosely" if fit.get("loose") else f"the {CALIBRATE_BUDGET} s `--calibrate auto` spends on a model "
                  f"that fits its training data ({CALIBRATE_BUDGET_LOOSE} s where it fits loosely)")
        why = (f"up to {n} exact retrains, estimated at {estimate:.0f} s, above {budget}: `ddm check -w {dm.ws.root} "
               "--apply` (or `ddm run --calibrate always`) does it")
    if why is not None:
        return {"ran": False, "reason": why, "estimated_seconds": estimate, "loose": bool(fit.get("loose"))}
    reason = ("--calibrate always" if mode == "always" else "the model fits its training data loosely"
              if fit.get("loose") else f"the retrains are cheap: under {CALIBRATE_BUDGET} s")
    print(f"calibration ({reason}): up to {n} exact retrains of the target's schedule on test targets and random "
          f"subsets of its own (estimated {estimate:.0f} s; cached under {dm.ws.path('check')})", file=stream)
    res = {"ran": True, "reason": reason, "estimated_seconds": estimate, **C.calibrate_and_keep(dm, data)}
    res["advice"] = kept = res["kept"]
    before, after = res["lds_before"], res["lds_after"]
    print(f"calibration: DDM's LDS on its {res['targets']} targets {before['mean']:+.3f} ± {before['se']:.3f} with "
          "the settings it had" + (f", {after['mean']:+.3f} ± {after['se']:.3f} with " +
                                   ", ".join(f"{k}={v:g}" for k, v in kept.items()) + ", now kept in " +
                                   str(dm.ws.path("config.json"))
                                   if kept and after is not None else
                                   "; no setting ranked better beyond two standard errors, none changed")
          + f" ({res['seconds']:.0f} s). `ddm check -w {dm.ws.root}` scores it on targets and subsets the "
          "calibration did not choose on", file=stream)
    return res


def _fell_back(p: dict[str, Any], external: bool, momentum: float = 0.0) -> str:
    """The warning for a training whose test accuracy fell from its best checkpoint (``health.training_progress``)."""
    if external:
        fix = "check the learning rate of your loop, record its training again and hand the trajectory in again"
    else:
        fast = (f" (with momentum {momentum:g} a step moves about {1 / (1 - momentum):.3g}x train.lr)"
                if 0 < momentum < 1 else "")
        fix = f"lower train.lr{fast} (or train.epochs, where it over-fitted) and run again with --overwrite"
    return (f"the model's test accuracy fell during its training: {100 * p['best_accuracy']:.1f}% at epoch "
            f"{p['best_epoch']:g}, its best, and {100 * p['trend_final_accuracy']:.1f}% at epoch {p['final_epoch']:g} "
            f"(the first {p['trend_samples']:,} test samples at every checkpoint). The training diverged, ran too "
            f"fast or over-fitted, and its attributions and unlearning describe this degraded model; if that is not "
            f"the model you meant, {fix}")


def _print_offline(o: dict[str, Any]) -> None:
    m = o["model"]
    print(o["dataset"])
    print(f"target model: test accuracy {100 * m['test_accuracy']:.1f}% ({m['checkpoints']} checkpoints recorded"
          + (f", trained in {m['train_seconds']:.1f} s)" if m.get("train_seconds") else ")"))
    for w in o.get("warnings", []):
        print(f"  WARNING: {w}")
    for n in o.get("notes", []):
        print(f"  note: {n}")
    if "groups" in o:
        g = o["groups"]
        mixed = f"; up to {g['most_classes']} classes in a group" if g.get("most_classes", 1) > 1 else ""
        print(f"groups: {g['method']}, K = {g['K']} (sizes {g['min_size']}..{g['max_size']}{mixed})")
    for stage in ("synset", "synset-class"):
        if stage in o:
            s = o[stage]
            ipc = f" x {s['images_per_group']} images" if s.get("images_per_group") else ""
            if s.get("kept_loss") is not None:  # each group's best step kept: the last step's loss is not the result
                loss = (f"matching loss per group {s['first_loss']:.3f} at the first step, {s['last_loss']:.3f} at "
                        f"the last steps, {s['kept_loss']:.3f} in the images kept")
            else:
                loss = f"matching loss per group {s['first_loss']:.3f} -> {s['last_loss']:.3f}"
            print(f"{stage}: {s['matching']} matching, {s['steps']} steps, {s['groups']} groups{ipc}; "
                  f"{loss} ({s['seconds']:.1f} s)")
            if s.get("grown"):
                print(f"  {grown(s['grown'])}")
            if s.get("match_metric"):
                print(f"  {_metric_line(s['match_metric'], s['match_metric_default'])}")
            h = s.get("health") or {}
            if h.get("checked"):
                print(f"  health: cosine with each group's real removal step mean {h['cosine_mean']:.2f} "
                      f"(min {h['cosine_min']:.2f}, {100 * h['positive_fraction']:.0f}% positive); "
                      f"{len(h['flagged'])} group(s) flagged" + (f": {listed(h['flagged'])}" if h["flagged"] else ""))
                if h.get("off_scale"):
                    print(f"  {off_scale_line(h)}")
                if s.get("groups") and 2 * len(h["flagged"]) >= s["groups"]:
                    print(f"  WARNING: {len(h['flagged'])} of the {s['groups']} groups' synsets failed it"
                          + (" (most move the model away from their group's removal)"
                             if h["positive_fraction"] < 0.5 else "")
                          + ": rankings and unlearning made with them are no removal estimates on this model. "
                          "The default recipe (head) matches each group's removal step by construction; `ddm check` "
                          "scores either against exact retrains")
                if h.get("checkpoints"):
                    print(f"  {averaged_line(h['checkpoints'], s.get('step_gradients'), s['min_transfer'])}")


def _print_attribution(r: dict[str, Any]) -> None:
    how = ("one Newton step on the last layer each" if r.get("emulation") == "newton" else
           f"{r.get('emulation', 'finetune')}: lr {r['finetune']['lr']:g} x {r['finetune']['steps']} steps, "
           f"{r.get('backend') or '?'} backend")
    reused = r.get("reused") or []
    note = ("; reused the cached emulation" if "logits" in reused else
            "; reused the stored emulated models: forward passes only" if "models" in reused else "")
    fit = ("; W fitted linearised: the objective's mean Jacobian times each group's logit shift (emulate.fit)"
           if r.get("fit") == "linearised" else "")
    print(f"\nattribution ({r['objective']}{', hierarchical' if r['hierarchical'] else ''}): "
          f"{r['perturbations'] or '?'} perturbations ({how}), {r['seconds']:.1f} s{note}{fit}")
    if r.get("flagged_groups"):
        print(f"  groups marked * failed the synset health check: {listed(r['flagged_groups'])}")
    scale, setting = r.get("other_class_scale"), r.get("class_balance_setting") or "emulate.other_class_scale"
    if scale is not None and scale != 1.0:
        why = (", the balance where other classes' weights disagree between the steps, or where the synsets switched "
               "to a temperature on their own"
               if setting == "emulate.switched_class_scale" else
               ", the balance of a task with two classes" if setting == "emulate.binary_class_scale" else "")
        print(f"  groups of other classes than the target's weigh x{scale:g} ({setting}{why}; "
              "README, 'Class balance')")
    if r.get("damping_scale") not in (None, 1.0):
        print(f"  the Newton step's damping at {r['damping_scale']:g}x the synset's (emulate.damping_scale, as `ddm "
              "check` advises where it ranks its retrains better; README, 'The damping, refitted')")
    if r.get("gradients") == "synsets":
        print("  the Newton step taken from the synsets' last-layer gradients (emulate.gradients=synsets), not the "
              "groups' own (the default since 0.20, with higher LDS on 26 of the benchmark matrix's 27 runs: --set "
              "emulate.gradients=groups; README, 'The groups' own gradients')")
    if r.get("schedule_weight"):
        print(f"  with the schedule term at weight {r['schedule_weight']:g}: a retrain without part of the data takes "
              "fewer steps (emulate.schedule_weight; README, 'The schedule term')")
    print(f"score: {r['score_meaning']}")
    for row in r["targets"]:
        if "test_index" in row:
            print(f"  test #{row['test_index']} (label {row['label']}, predicted {row['predicted']}):")
        elif "file_row" in row:
            where = (f"{row['file']} (row {row['file_row']}, " if "file" in row
                     else f"{r['source']} row {row['file_row']} (")
            what = (f"no label: asked about its predicted class {row['predicted']}"
                    if row.get("label_from") == "predicted" else f"label {row['label']}, predicted {row['predicted']}")
            print(f"  {where}{what}):")
        else:
            print("  the target set as a whole:")
        if row.get("unmoved"):
            print(f"    no group moves it: the objective took the same value in all {r['perturbations'] or '?'} "
                  "emulated removals, so every score is 0 (a metric over a few targets changes only where one of "
                  "their predictions flips: ask about more targets, or a per-target objective such as dist2)")
            continue
        for g in row["top"]:
            mem = ", ".join(map(str, g["members"]))
            mark = "*" if g.get("flagged") else " "
            print(f"    group {g['group']:>4}{mark} {class_text(g)}  size {g['size']:>4}  "
                  f"score {signed(g['score'])}  samples {mem}{', ...' if g['size'] > len(g['members']) else ''}")


# ---- commands --------------------------------------------------------------------------------
def cmd_stage(args: argparse.Namespace) -> int:
    _, data, dm = _offline(args, args.until)
    out = _describe_offline(dm, data)
    print(json.dumps(out, indent=2, default=str)) if args.json else _print_offline(out)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ddm.unlearning import table4

    _, data, dm = _offline(args, "synset")
    out = _describe_offline(dm, data)
    idx = parse_indices(args.targets, len(data.test), "--targets")
    if not args.json:
        _print_offline(out)
    out["calibration"] = cal = _calibration(dm, data, out, getattr(args, "calibrate", "never"),
                                            sys.stderr if args.json else sys.stdout)
    if not args.json and not cal["ran"] and (cal["reason"].startswith(("calibrated before", "`ddm check` has",
                                                                         "the trajectory was handed in"))
                                             or cal.get("loose")):
        print(f"calibration: not run: {cal['reason']}")
    out["attribution"] = _attribution_report(dm, data, idx, args)
    t4 = table4(dm.model, dm.trajectory[0], dm.trajectory.final, dm.synset, data.test, dm.finetune_lr,
                dm.finetune_steps, dm.config.emulate.group_reduction)
    out["table4"] = t4
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    _print_attribution(out["attribution"])
    print("\nTable 4 check (unlearn every group with the synset; the paper sees accuracy fall near or "
          "below chance):")
    print(f"  acc(theta_0) {100 * t4['acc_theta0']:.1f}%   acc(theta_tau) {100 * t4['acc_theta_tau']:.1f}%   "
          f"after the whole synset {100 * t4['acc_after_whole_synset']:.1f}%   (chance {100 * t4['chance']:.1f}%)")
    if dm.synset is not None and dm.synset.kind == "head":
        print("  (the head recipe's Newton step with no data kept follows only theta_tau's small residual gradient, "
              "so this number varies from model to model and says little about the synsets; `ddm unlearn` of "
              "every group takes every class out of the head instead)")
    print(f"\nartifacts in {dm.ws.root}/ ; next: ddm attribute -w {dm.ws.root} --targets 0:20 --top-k 5")
    if not dm.ws.path("check", "check.json").exists():
        print(f"is DDM right on this model? ddm check -w {dm.ws.root} scores it against 32 exact retrains and "
              "refits the damping and class balance on them, and tries synsets with a tempered cross-entropy (--apply "
              "keeps its advice; README, 'Checking it against exact retraining')")
    return 0


def cmd_attribute(args: argparse.Namespace) -> int:
    bad = [s for s in args.sets if not s.strip().startswith("emulate.")]
    if bad:
        raise DDMError(f"attribute only takes emulate.* overrides (got {bad}); "
                       "change other stages with `ddm run --set`")
    dm, data = load_workspace(args, args.sets)
    if args.targets_file:
        from ddm.data.targets import as_split, read_targets_file, target_files

        x, y = read_targets_file(args.targets_file, data.image_shape, data.mean, data.std,
                                 getattr(data, "class_names", None), dm.num_classes)
        targets = as_split(x, y, dm.model, data.image_shape)
        r = _attribution_report(dm, data, None, args, targets, source=args.targets_file)
        if y is None:  # no labels: each target is asked about the class the model predicts for it
            for row in r["targets"]:
                if "file_row" in row:
                    row["label_from"] = "predicted"
        names = target_files(args.targets_file)
        if names is not None:  # each row's image file, by name
            for row in r["targets"]:
                if "file_row" in row:
                    row["file"] = names[row["file_row"]]
    else:
        idx = parse_indices(args.targets, len(data.test), "--targets")
        r = _attribution_report(dm, data, idx, args)
    print(json.dumps(r, indent=2, default=str)) if args.json else _print_attribution(r)
    _note_pending_advice(dm, args.sets)
    return 0


def _note_pending_advice(dm: Any, sets: list[str]) -> None:
    """A line on stderr where the workspace's last ``ddm check`` advised a setting this attribution did not use."""
    from ddm.evaluation.check import pending_advice

    given = {s.split("=", 1)[0].strip() for s in sets}
    pending = {k: v for k, v in pending_advice(dm).items() if k not in given}
    if "distill.head_temperature" in pending:
        print(f"note: `ddm check` advised synsets distilled at distill.head_temperature="
              f"{pending['distill.head_temperature']:g} for this workspace, not used here (`ddm check -w {dm.ws.root} "
              "--apply` puts in those it distilled)", file=sys.stderr)
        return
    if pending:
        settings = " ".join(f"--set {k}={v:g}" for k, v in pending.items())
        print(f"note: `ddm check` advised {settings} for this workspace, not used here (`ddm check -w {dm.ws.root} "
              "--apply` keeps it)", file=sys.stderr)


def _metric_line(metric: str, by_default: bool) -> str:
    """What the synset stage's ``match_metric`` record says, for ``ddm run``."""
    what = {"both": "the removal step's norm and the logit change it makes on the training inputs, side by side",
            "outputs": "the logit change the removal step makes on the training inputs"}.get(metric, metric)
    why = " (the default for a task with two classes)" if by_default else ""
    return f"matching error measured in {what}: distill.match_metric={metric}{why}"


def commands() -> dict[str, Any]:
    """Each command's function, by name (the commands beside run, stage and attribute have modules of their own)."""
    from ddm.cli import check, diagnose, info, unlearn

    return {"run": cmd_run, "stage": cmd_stage, "attribute": cmd_attribute, "unlearn": unlearn.cmd_unlearn,
            "check": check.cmd_check, "diagnose": diagnose.cmd_diagnose, "report": diagnose.cmd_report,
            "evaluate": check.cmd_evaluate, "info": info.cmd_info}


def build_parser() -> argparse.ArgumentParser:
    from ddm.cli import parser

    return parser.build_parser(commands())


#: OpenMP's wait policy for torch's CPU threads under the command line, unless ``OMP_WAIT_POLICY`` is set. With
#: torch's own default its threads spin while they wait for each other, and two ddm commands at once (or one beside
#: any other busy process) starve each other: two ``ddm run --preset demo`` at once on 2 CPU cores took 261 s each,
#: where one alone takes 12-17 s; waiting passively they took 21 s each, at a cost of 15-21 s for the demo alone,
#: 7.0-7.3 s against 5.4-6.0 s for an MLP's training and 74 s against 70 s for a ResNet run (README, "Reliability").
OMP_WAIT_POLICY = "PASSIVE"


def _passive_threads() -> None:
    """Let torch's CPU threads sleep while they wait (:data:`OMP_WAIT_POLICY`), where the user set no policy and
    torch is not loaded yet (OpenMP reads the setting once, when torch loads it)."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)


def main(argv: list[str] | None = None) -> int:
    _passive_threads()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from ddm import progress

    progress.set_enabled(not args.quiet and sys.stderr.isatty())
    if os.environ.get("RANK", "0") != "0" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # under torchrun every rank holds the same results: rank 0 prints them (errors still go to stderr)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of this process
        progress.set_enabled(False)
    terminated = _terminate_like_interrupt()
    try:
        import torch

        torch.set_num_threads(max(1, torch.get_num_threads()))
        return int(args.func(args) or 0)
    except DDMError as exc:
        return _fail(args, f"ddm: error: {exc}", 2)
    except json.JSONDecodeError as exc:
        return _fail(args, f"ddm: error: a JSON file is not valid JSON ({exc}); fix or delete it "
                           "(a damaged stage is recomputed with --overwrite)", 2)
    except (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
        return _fail(args, f"ddm: error: {exc.strerror or exc}: {exc.filename}; check the path and its permissions",
                     2)
    except BrokenPipeError:  # e.g. `ddm attribute ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except OSError as exc:
        return _fail(args, f"ddm: error: {exc}; check the file and the free disk space", 2)
    except KeyboardInterrupt:
        how = " (SIGTERM)" if terminated.get("signal") else ""
        print(f"ddm: interrupted{how}; finished work is saved in the workspace and a rerun resumes", file=sys.stderr)
        return 143 if terminated.get("signal") else 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, and where to report
        name = type(exc).__name__
        if "SafetensorError" in name:
            return _fail(args, f"ddm: error: a stored tensor file is damaged ({exc}); rerun with --overwrite", 2)
        return _fail(args, f"ddm: internal error: {name}: {exc}. This is a bug in ddm: please report it with the "
                           "command and the output of -v at https://github.com/ddm-project/ddm/issues", 1)
    finally:
        if "previous" in terminated:
            signal.signal(signal.SIGTERM, terminated["previous"] or signal.SIG_DFL)


def _terminate_like_interrupt() -> dict[str, Any]:
    """SIGTERM (a batch scheduler's stop, `kill`, `timeout`) ends a command as Ctrl-C does: the stages' own
    checkpoints stay, the message says a rerun resumes, and the exit status is 143 instead of a silent death.
    Returns the state :func:`main` reads and restores (the previous handler; whether the signal came)."""
    state: dict[str, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return state  # signal handlers can only be set from the main thread (e.g. main() called from a worker)

    def handler(signum: int, frame: Any) -> None:
        state["signal"] = signum
        raise KeyboardInterrupt

    state["previous"] = signal.signal(signal.SIGTERM, handler)
    return state


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    if getattr(args, "verbose", False):
        import traceback

        traceback.print_exc()
    print(message, file=sys.stderr)
    return code
