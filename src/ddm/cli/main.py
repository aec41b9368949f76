"""``ddm``'s entry point and its commands (the arguments they take: :mod:`ddm.cli.parser`)."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ddm.exceptions import ConfigError, DDMError
from ddm.text import beside, signed

log = logging.getLogger("ddm")

def parse_indices(text: str, n: int, what: str) -> list[int]:
    text = text.strip()
    try:
        if ":" in text:
            a, b = text.split(":", 1)
            idx = list(range(int(a or 0), int(b) if b else n))
        else:
            idx = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise DDMError(f"{what} {text!r}: give START:STOP or a comma list of integers") from None
    if not idx:
        raise DDMError(f"{what} {text!r} is an empty range: give START:STOP with START < STOP")
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise DDMError(f"{what} {text!r}: indices must lie in [0, {n - 1}]" + (f" (bad: {bad[:5]})" if bad else ""))
    return idx


def make_config(args: argparse.Namespace) -> Any:
    from ddm import presets
    from ddm.config import RunConfig

    stored = Path(args.workspace, "config.json")
    if args.config and args.preset:
        raise DDMError("--config and --preset both name a whole configuration: give one of them "
                       "(add --set STAGE.FIELD=VALUE for changes)")
    if args.config:
        try:
            cfg = RunConfig.from_json(Path(args.config).read_text())
        except OSError as exc:
            raise DDMError(f"--config {args.config}: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise DDMError(f"--config {args.config} is not valid JSON ({exc})") from None
    elif args.preset is None and stored.exists():
        cfg = RunConfig.from_json(stored.read_text())
    else:
        cfg = presets.get(args.preset or "demo")
    sets = presets.recipe(args.recipe) if getattr(args, "recipe", None) else []
    if args.dataset:
        sets.append(f"data.name={args.dataset}")
    if args.data_dir:
        sets.append(f"data.data_dir={args.data_dir}")
    if getattr(args, "device", None):
        sets.append(f"device={args.device}")
    cfg = cfg.with_overrides(sets + list(args.sets))  # --set applies last
    if cfg.data.name == "npz" and cfg.data.data_dir and not Path(cfg.data.data_dir).is_absolute():
        # the workspace keeps the file's full path, so that later commands find it from any directory
        cfg = cfg.with_overrides([f"data.data_dir={Path(cfg.data.data_dir).resolve()}"])
    from ddm import devices

    devices.resolve(cfg.device)  # a device this machine lacks is an error now, not after the data is loaded
    return cfg


def _model_for_data(cfg: Any, data: Any, args: argparse.Namespace) -> Any:
    """``cfg`` with an MLP in place of the preset's ConvNet where ``data`` are feature vectors (1x1 "images", which
    the ConvNet's instance norm refuses: :func:`ddm.presets.model_for`), unless the model was named
    (``--set model.name=...`` or ``--model``)."""
    from ddm import presets

    model_cfg = presets.model_for(data, cfg.model)
    if (model_cfg == cfg.model or getattr(args, "model", None)
            or any(s.split("=", 1)[0].strip() == "model.name" for s in args.sets)):
        return cfg
    log.info("the data are feature vectors (%d per sample): an MLP (model.name=mlp, width %d, depth %d) in place of "
             "the preset's ConvNet", data.image_shape[0], model_cfg.width, model_cfg.depth)
    return cfg.with_overrides([f"model.name={model_cfg.name}", f"model.depth={model_cfg.depth}"])


def _offline(args: argparse.Namespace, until: str) -> tuple[Any, Any, Any]:
    from ddm import data as data_mod
    from ddm import models
    from ddm.pipeline import DistilledDatamodel

    cfg = make_config(args)
    data = data_mod.load(cfg.data)
    log.info("%s", data.summary())
    cfg = _model_for_data(cfg, data, args)
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


def _load_data(cfg: Any, workspace: str) -> Any:
    """The workspace's dataset, or an error that says how to open a workspace fitted on data from Python."""
    from ddm import data as data_mod

    if cfg.name not in data_mod.DATASETS:
        raise DDMError(f"{workspace} was fitted on data handed in from Python ({cfg.name!r}: ddm.data.from_arrays or "
                       "from_torch), which the command line cannot load (it knows "
                       f"{', '.join(data_mod.DATASETS.names())}): open it from Python with the same data, "
                       "`dm = ddm.DistilledDatamodel(WS).load()`, then dm.attribute(data.test[...]), dm.unlearn(...), "
                       "ddm.evaluation.check.check(dm, data) (README, 'Python quickstart'); `ddm info` reads it as is")
    return data_mod.load(cfg)


def _load(args: argparse.Namespace, overrides: list[str] | None = None) -> tuple[Any, Any]:
    """The workspace's datamodel (with this session's ``overrides`` of its settings) and its data."""
    from ddm.pipeline import DistilledDatamodel

    if getattr(args, "model", None):
        from ddm import models
        from ddm.config import RunConfig

        stored = Path(args.workspace, "config.json")
        if not stored.exists():
            raise DDMError(f"{args.workspace} holds no finished run (no config.json): run `ddm run` first")
        data = _load_data(RunConfig.from_json(stored.read_text()).data, args.workspace)
        model = models.from_import(args.model, data.num_classes, data.image_shape)
        dm = DistilledDatamodel(args.workspace, _session_config(args)).load(model=model)
    else:
        dm = DistilledDatamodel(args.workspace, _session_config(args)).load()
        data = _load_data(dm.config.data, args.workspace)
    if overrides:
        dm.config = dm.config.with_overrides(overrides)
    if dm.step_gradients() == "groups":  # a workspace distilled before the synset stage stored them, or asked to
        dm.store_group_gradients(data.train)
    return dm, data


def _retrainer(args: argparse.Namespace) -> Any:
    """The user's training loop for exact retrains (``--retrain MODULE:FUNCTION``), or None for ddm's own."""
    if not getattr(args, "retrain", None):
        return None
    from ddm.evaluation.retrain import Retrainer

    return Retrainer.from_import(args.retrain)


def _session_config(args: argparse.Namespace) -> Any:
    """The configuration a command opens a workspace with: only the device is this session's (``--device``)."""
    from ddm import devices
    from ddm.config import RunConfig

    cfg = RunConfig().with_overrides([f"device={getattr(args, 'device', None) or 'auto'}"])
    devices.resolve(cfg.device)
    return cfg


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
    warn = _near_chance(out["model"]["test_accuracy"], int(getattr(data, "num_classes", 0) or 0))
    if warn:
        out["warnings"] = [warn]
    else:
        from ddm.health import training_progress

        progress = training_progress(dm.model, dm.trajectory, data.test, out["model"]["test_accuracy"])
        if progress is not None:
            out["model"]["progress"] = progress
            if progress["still_improving"]:
                out["warnings"] = [_still_improving(progress, dm.handed_in())]
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
                          "groups": i.get("num_groups"), "seconds": i.get("seconds"),
                          "images_per_group": getattr(syn, "ipc", None), "grown": i.get("grown"),
                          "match_metric": i.get("match_metric"),
                          "match_metric_default": dm.config.distill.match_metric is None,
                          "step_gradients": dm.step_gradients(syn) if syn is not None else None,
                          "min_transfer": dm.config.emulate.min_transfer,
                          "health": {k: v for k, v in h.items()
                                     if not isinstance(v, list) or k in ("flagged", "checkpoints")}}
    if "synset" in out:
        from ddm.pipeline import STEP_AGREEMENT_WARN

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


def _ensure_classes(dm: Any, data: Any) -> None:
    """Build the class-level synset on first use (hierarchical attribution, class unlearning)."""
    if dm.class_synset is None:
        print("building the class-level synset (first hierarchical use; reused afterwards) ...", file=sys.stderr)
        dm.fit_classes(data.train)


def _attribution_report(dm: Any, data: Any, idx: list[int] | None, args: argparse.Namespace,
                        targets: Any = None, source: str = "test") -> dict[str, Any]:
    """Attribute test rows ``idx``, or ``targets`` read from ``source`` (a file: ids are its rows)."""
    if targets is None:
        assert idx is not None
        targets = data.test[idx]
    if args.hierarchical:
        _ensure_classes(dm, data)
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


#: a target model whose test accuracy is below chance + this share of the way from chance to 100% is warned about
NEAR_CHANCE = 0.1


def _near_chance(acc: float, num_classes: int) -> str | None:
    """A warning when a classifier's test accuracy ``acc`` is barely above chance (1 / ``num_classes``): every
    attribution and unlearning of such a model describes one that has not learned its task."""
    if num_classes < 2:
        return None
    chance = 1.0 / num_classes
    if acc >= chance + NEAR_CHANCE * (1 - chance):
        return None
    return (f"the target model's test accuracy {100 * acc:.1f}% is at or near chance ({100 * chance:.1f}% for "
            f"{num_classes} classes): it has not learned its task, so its attributions and unlearning say little "
            "about the data; train it longer or at another rate (train.epochs, train.lr) and run again with "
            "--overwrite")


def _still_improving(p: dict[str, Any], external: bool) -> str:
    """The warning for a model still improving when its training stopped (``health.training_progress``)."""
    longer = ("record a longer training in your loop and hand its trajectory in again" if external else
              "raise train.epochs and run again with --overwrite")
    return (f"the model was still improving when its training stopped: test accuracy {100 * p['accuracy']:.1f}% at "
            f"epoch {p['epoch']:g}, {100 * p['final_accuracy']:.1f}% at epoch {p['final_epoch']:g} "
            f"(+{100 * p['rise']:.1f} points in the last quarter). Its attributions and unlearning describe this "
            f"model; a longer training would give another one, whose data matter differently. If you meant a "
            f"trained-out model, {longer} (BENCHMARKS.md, \"A model still improving when its training stopped\"; "
            "`ddm check` measures DDM on this model against exact retrains)")


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
            print(f"{stage}: {s['matching']} matching, {s['steps']} steps, {s['groups']} groups{ipc}; "
                  f"matching loss per group {s['first_loss']:.3f} -> {s['last_loss']:.3f} ({s['seconds']:.1f} s)")
            if s.get("grown"):
                print(f"  {_grown(s['grown'])}")
            if s.get("match_metric"):
                print(f"  {_metric_line(s['match_metric'], s['match_metric_default'])}")
            h = s.get("health") or {}
            if h.get("checked"):
                print(f"  health: cosine with each group's real removal step mean {h['cosine_mean']:.2f} "
                      f"(min {h['cosine_min']:.2f}, {100 * h['positive_fraction']:.0f}% positive); "
                      f"{len(h['flagged'])} group(s) flagged" + (f": {_listed(h['flagged'])}" if h["flagged"] else ""))
                if h.get("checkpoints"):
                    print(f"  {_averaged_line(h['checkpoints'], s.get('step_gradients'), s['min_transfer'])}")


def _averaged_line(checkpoints: list[dict[str, Any]], gradients: str | None, min_transfer: float) -> str:
    """Which recorded checkpoints the attribution's step averages over (:func:`ddm.health.averaged_checkpoints`),
    with the synsets' step cosine at each, for ``ddm run`` and ``ddm info``."""
    from ddm.health import averaged_checkpoints

    used, left_out = averaged_checkpoints(checkpoints, gradients, min_transfer)

    def listed(cs: list[dict[str, Any]]) -> str:
        return ", ".join(f"{c['epoch']:g} (synsets' step cosine {c['cosine_mean']:.2f})" for c in cs)

    line = (f"attribution averaged with theta_tau and the checkpoints at epochs {listed(used)}" if used
            else "attribution at theta_tau only")
    if gradients == "groups":
        line += ": the step reads the groups' own gradients there (emulate.gradients=groups)"
    if left_out:
        line += (f"; left out, the synsets' steps do not transfer there (below emulate.min_transfer "
                 f"{min_transfer:g}): epochs {listed(left_out)}")
    return line


def _listed(ids: list[Any], limit: int = 20) -> str:
    """``ids`` for a terminal: all of them up to ``limit``, else the first ``limit`` and how many more."""
    if len(ids) <= limit:
        return str(list(ids))
    return f"{list(ids[:limit])} and {len(ids) - limit:,} more (`ddm info --json` lists them all)"


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
        print(f"  groups marked * failed the synset health check: {_listed(r['flagged_groups'])}")
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
            print(f"  {r['source']} row {row['file_row']} (label {row['label']}, predicted {row['predicted']}):")
        else:
            print("  the target set as a whole:")
        for g in row["top"]:
            mem = ", ".join(map(str, g["members"]))
            mark = "*" if g.get("flagged") else " "
            print(f"    group {g['group']:>4}{mark} {_class_text(g)}  size {g['size']:>4}  "
                  f"score {signed(g['score'])}  samples {mem}{', ...' if g['size'] > len(g['members']) else ''}")


def _class_text(row: dict[str, Any]) -> str:
    """``class   3``, or for a group that mixes classes ``mixed(10) 3`` (how many, and the most frequent)."""
    n = row.get("classes", 1)
    return f"class {row['label']:>3}" if n <= 1 else f"mixed({n}) {row['label']}"


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
    out["attribution"] = _attribution_report(dm, data, idx, args)
    t4 = table4(dm.model, dm.trajectory[0], dm.trajectory.final, dm.synset, data.test, dm.finetune_lr,
                dm.finetune_steps, dm.config.emulate.group_reduction)
    out["table4"] = t4
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    _print_offline(out)
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
    dm, data = _load(args, args.sets)
    if args.targets_file:
        from ddm.data.targets import as_split, read_targets_file

        x, y = read_targets_file(args.targets_file, data.image_shape, data.mean, data.std)
        targets = as_split(x, y, dm.model, data.image_shape)
        r = _attribution_report(dm, data, None, args, targets, source=args.targets_file)
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


def _grown(grown: dict[str, Any]) -> str:
    """What the synset stage's ``grown`` record (``distill.ipc_grow``) says, for ``ddm run`` and ``ddm info``."""
    return (f"images per group: {grown['kept']} (the matching with {grown['from']} stopped at mean relative error "
            f"{grown['errors'][0]:.2g} above distill.tolerance; with {grown['to']}: {grown['errors'][1]:.2g}; "
            "distill.ipc_grow)")


def _mostly_removed(groups: Any, idx: list[int], whole: bool = False) -> list[dict[str, int]]:
    """The classes that ``idx`` (group indices) take half or more of the training samples from but not all (with
    ``whole``: or all): where exact retraining's accuracy on the class can fall far and the last-layer unlearning
    does not follow, and where groups' removals no longer add up as the per-group scores assume."""
    total, kept = groups.class_sizes(idx)
    return [{"class": c, "kept": int(kept[c]), "of": int(total[c])} for c in range(len(total))
            if total[c] > 0 and (whole or 0 < kept[c]) and 2 * kept[c] <= total[c]]


def cmd_unlearn(args: argparse.Namespace) -> int:
    import torch

    from ddm.train.loop import accuracy

    dm, data = _load(args)
    retrainer = None
    if args.verify:  # a verification that cannot run is refused before the unlearning
        from ddm.evaluation.retrain import retrainer_for

        retrainer = retrainer_for(dm, _retrainer(args), args.verify)
    bad = [o for o in args.set if not o.startswith("emulate.unlearn_")]
    if bad:
        raise ConfigError(f"ddm unlearn --set takes only emulate.unlearn_* settings, got {bad}; the others belong "
                          "to the workspace's stages (ddm run --set ... --overwrite)")
    if args.set:
        dm.config = dm.config.with_overrides(args.set)
    synset = "classes" if args.classes else "groups"
    if args.classes:
        _ensure_classes(dm, data)
    groups = dm.class_groups if args.classes else dm.groups
    if groups is None:
        raise DDMError(f"the workspace has no {synset} synset; run `ddm run` first")
    idx = sorted(set(parse_indices(args.groups, groups.num_groups, "--groups")))  # a group named twice goes once
    before_test = accuracy(dm.model, data.test)
    rows = torch.cat([groups.members(k) for k in idx])
    removed = data.train[rows]
    before_removed = accuracy(dm.model, removed)
    model = dm.unlearn(idx, name=args.name, synset=synset)
    out: dict[str, Any] = {"groups": idx, "synset": synset, "removed_samples": len(rows),
           "test_accuracy": {"before": before_test, "after": accuracy(model, data.test)},
           "removed_accuracy": {"before": before_removed, "after": accuracy(model, removed)},
           "saved": str(dm.unlearn_folder(idx, args.name, synset)), "check": dm.last_unlearning_check,
           "classes_without_data": dm.last_classes_without_data, "rewind": dm.last_rewind,
           "rewind_skipped": dm.last_rewind_skipped,
           "classes_mostly_removed": _mostly_removed(groups, idx)}
    if args.verify:
        from ddm.evaluation.check import verify_unlearning

        collapsed = [int(c["class"]) for c in (dm.last_unlearning_check or {}).get("collapsed_classes", [])]
        first_classes = (dm.last_unlearning_check or {}).get("first_collapsed", [])
        out["verification"] = verify_unlearning(dm, data, idx, model, args.verify, synset, retrainer,
                                                first_step=dm.last_unlearned_first,
                                                classes=sorted(set(collapsed) | set(first_classes)))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        how = ("a Newton step on the last layer (kept data's curvature)" if dm.emulation_method() == "newton"
               else "fine-tuning on their synsets")
        print(f"unlearned {synset} {idx} ({len(rows)} training samples) by {how}")
        syn = dm.class_synset if args.classes else dm.synset
        if (dm.emulation_method() == "newton" and dm.config.emulate.unlearn_curvature == "images" and syn is not None
                and syn.curvature is not None and syn.curvature.kind == "subspace" and syn.ipc > dm.config.distill.ipc):
            print("  (a last layer above distill.exact_limit, with more synthetic images per group: there their "
                  "curvature made 4 of 47 four-group steps of the benchmarks too long, the groups' own curvature 2 "
                  "too short; if this one looks too long, compare --set emulate.unlearn_curvature=group: "
                  "BENCHMARKS.md, \"The groups' own curvature\")")
        t = out["test_accuracy"]
        print(f"  test accuracy      {100 * t['before']:.1f}% -> {100 * t['after']:.1f}%")
        print(f"  removed-data acc.  {100 * out['removed_accuracy']['before']:.1f}% -> "
              f"{100 * out['removed_accuracy']['after']:.1f}%")
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
                  "does not follow; check such a removal against a retrain (--verify 1; README, \"What to expect\")")
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
        print(f"  checkpoint: {out['saved']}/model.safetensors   (Python: DistilledDatamodel(WS).load()"
              f".unlearned({Path(out['saved']).name!r}))")
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
        print(f"    class {c} (flagged by the unlearning check), test accuracy: exact {pct(exact_c)}; unlearned "
              f"{100 * per:.0f}%" + ("" if first_c is None else f"; the first step {100 * first_c:.0f}%"))
    f = v.get("first_step")
    if f is not None:
        print(f"    the first step, before the unlearning check raised the damping: test accuracy "
              f"{100 * f['test_accuracy']:.1f}% ({f['test_gap_points']:+.1f} points), removed-data acc. "
              f"{100 * f['removed_accuracy']:.1f}%, agreement with exact {pct(f['test_agreement'])}")
        if abs(f["test_gap_points"]) + 1 < abs(v["test_gap_points"]):
            print("    here exact retraining is nearer the first step than the step with the raised damping: "
                  "`ddm unlearn ... --set emulate.unlearn_backoff=0` keeps the first step")
    if abs(v["test_gap_points"]) > 3:
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
                  f"retraining's{spread}: do not take it for a retrain{more}")


def cmd_diagnose(args: argparse.Namespace) -> int:
    from ddm.diagnosis import diagnose, from_group_scores
    from ddm.workspace import save_json

    dm, data = _load(args)
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
    if args.threshold is None:
        args.threshold = diag.default_threshold
    flagged = diag.issues(args.threshold)
    path = dm.ws.path("diagnosis", f"{args.method}-{args.objective}.json")
    diag.save(path)
    checked = None
    if args.verify and flagged:
        from ddm.diagnosis import verify

        checked = verify(dm, data.train, data.test, idx, flagged, args.objective, args.verify, diag.quality,
                         _retrainer(args))
    # flags that take half or more of a class: each group's quality is its removal alone, and removals of most of a
    # class do not add up (a clean Fashion-MNIST probe's flags, all four from one confusable class, raised the
    # validation loss when removed: BENCHMARKS.md, "`ddm diagnose`'s default threshold")
    taken = _mostly_removed(diag.groups, flagged, whole=True)
    save_json(path.with_name(path.stem + "-issues.json"), {"threshold": args.threshold, "issues": flagged,
                                                           "mostly_removed_classes": taken, "verification": checked})
    rows = diag.table(args.top_k, threshold=args.threshold)
    if args.json:
        print(json.dumps({"method": args.method, "objective": args.objective, "validation": idx,
                          "threshold": args.threshold, "issues": flagged, "mostly_removed_classes": taken,
                          "lowest_quality": rows, "verification": checked, "saved": str(path)}, indent=2))
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
          "negative = removing it is predicted to help; score = bounded 0..1 (0.5 typical, near 0 an outlier)")
    print(f"{len(flagged)} of {diag.groups.num_groups} groups flagged: quality < 0 and score < {args.threshold:g} "
          f"({int(diag.groups.sizes()[flagged].sum()) if flagged else 0} training samples)")
    for r in rows:
        mark = "ISSUE" if r["group"] in flagged else "     "
        mem = ", ".join(map(str, r["members"]))
        print(f"  {mark} group {r['group']:>4}  {_class_text(r)}  size {r['size']:>4}  "
              f"quality {signed(r['quality'])}  score {r['score']:.4f}  "
              f"samples {mem}{', ...' if r['size'] > len(r['members']) else ''}")
    if checked is not None:
        unit = "summed validation loss" if args.objective == "loss" else "validation accuracy"
        sign = 1.0 if args.objective == "loss" else -100.0  # printed as the change of the objective itself
        per = ", ".join(f"{sign * w:+.3g}" for w in checked["measured"])
        print(f"verification by exact retraining, the {len(flagged)} flagged groups removed together, "
              f"{checked['orders']} data order(s): {unit} changed by {sign * checked['measured_mean']:+.3g}"
              + (f" ± {abs(sign) * checked['measured_std']:.2g}" if checked["orders"] > 1 else "")
              + f" (per order {per}; predicted {sign * checked['predicted']:+.3g}): removing them helped in "
              f"{checked['helped_in']} of {checked['orders']}" + ("" if args.objective == "loss" else " (points)"))
    elif args.verify:
        print("verification: nothing flagged, nothing to retrain")
    print(f"saved: {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ddm.reporting.report import build_report

    dm, data = _load(args)
    idx = parse_indices(args.targets, len(data.test), "--targets")
    path = build_report(dm, data, idx, args.objective, args.top_k, args.out)
    if args.json:
        print(json.dumps({"report": str(path), "targets": idx}))
    else:
        print(f"report: {path}  (open it in a browser; figures are embedded)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ddm import distributed

    if not distributed.is_main():  # under torchrun every rank computes the same result; rank 0 prints it
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of this process
    from ddm.evaluation.protocol import EvalConfig, evaluate

    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise DDMError(f"--seeds {args.seeds!r}: give a comma list of integers") from None
    if args.model and (args.scaling or args.ablation):
        raise DDMError("--model is measured by the protocol itself; --scaling and --ablation use the "
                       "configured registered model (model.name)")
    config = make_config(args)
    if config.data.name == "npz":  # the command line's one source of feature vectors
        from ddm import data as data_mod

        config = _model_for_data(config, data_mod.load(config.data), args)
    if args.scaling:
        from ddm.evaluation.scaling import measure_scaling, scaling_markdown

        try:
            sizes_text, cs_text = args.scaling.split(":")
            sizes = [None if s.strip() == "all" else int(s) for s in sizes_text.split(",") if s.strip()]
            cs = [int(c) for c in cs_text.split(",") if c.strip()]
        except ValueError:
            raise DDMError(f"--scaling {args.scaling!r}: give SIZES:C_LIST, e.g. 400,800,all:2,5,10") from None
        res = measure_scaling(args.workspace, config, sizes, cs, args.num_targets)
        print(json.dumps(res, indent=2, default=str) if args.json else scaling_markdown(res))
        return 0
    try:
        tune = tuple(float(t) for t in args.tune.split(",") if t.strip())
    except ValueError:
        raise DDMError(f"--tune {args.tune!r}: give a comma list of numbers") from None
    from ddm.baselines.peers import PEERS

    peers = PEERS if args.peers.strip() == "all" else tuple(p.strip() for p in args.peers.split(",") if p.strip())
    ecfg = EvalConfig(seeds, args.num_targets, args.lds_subsets, 0.5, args.logo, args.noise_seeds, tune,
                      plots=args.plots, peers=peers, diagnose=args.diagnose,
                      other_class_subsets=args.other_class_subsets, model=args.model)
    if args.ablation:
        from ddm.evaluation.ablation import VARIANTS, ablate, ablation_markdown

        names = list(VARIANTS) if args.ablation.strip() == "all" else [
            v.strip() for v in args.ablation.split(",") if v.strip()]
        res = ablate(args.workspace, config, ecfg, names)
        print(json.dumps(res, indent=2, default=str) if args.json else ablation_markdown(res))
        return 0
    if args.overwrite:
        raise DDMError("evaluate keeps its cached retrains; use a new workspace instead of --overwrite")
    result = evaluate(args.workspace, config, ecfg)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        from ddm.evaluation.protocol import markdown

        print(markdown(result))
        print(f"written: {Path(args.workspace) / 'evaluation.json'} and evaluation.md")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from ddm.baselines.peers import PEERS
    from ddm.evaluation.check import check, tries_temperature
    from ddm.evaluation.retrain import retrainer_for

    peers = tuple(p.strip() for p in args.peers.split(",") if p.strip())
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise DDMError(f"--peers: unknown method(s) {unknown}; choose from: {', '.join(PEERS)}")
    if not (args.try_temperature >= 0 and math.isfinite(args.try_temperature)):
        raise DDMError(f"--try-temperature {args.try_temperature:g}: give a positive number, or 0 to try none")
    dm, data = _load(args)
    n = args.subsets + (args.other_class_subsets if not dm.groups.mixes_classes() else 0) + 1
    retrainer = retrainer_for(dm, _retrainer(args))  # a handed-in trajectory without --retrain: refused here
    seconds = float(dm.ws.require("train")["seconds"])
    each = (f"in your loop ({retrainer.name}), most on about half the data" if retrainer is not None
            else f"of about {seconds * 0.5:.0f}-{seconds:.0f} s each (the target trained in {seconds:.0f} s)")
    t = args.try_temperature or None
    tried = (f", and synsets distilled at temperature {t:g} (--try-temperature 0 skips them)"
             if tries_temperature(dm, t) else "")
    print(f"check: up to {n} exact retrains {each}{tried}, cached under {dm.ws.path('check')}", file=sys.stderr)

    def run() -> dict[str, Any]:
        return check(dm, data, args.num_targets, args.subsets, args.other_class_subsets, args.other_classes, peers,
                     retrainer, temperature=t)

    r = run()
    if not args.json:
        _print_check(r, dm)
    if args.apply and _apply_advice(dm, r["advice"], data, sys.stderr if args.json else sys.stdout):
        # new synsets: the damping, balance and schedule term are refitted on them (every retrain reused)
        print("--apply: checking the new synsets on the same retrains (no retrain) to refit the rest of the advice "
              "on them", file=sys.stderr)
        first, r = r, run()
        r["before_apply"] = first
        if not args.json:
            print()
            _print_check(r, dm)
        _apply_advice(dm, r["advice"], data, sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(r, indent=2))
    return 0


def _print_check(r: dict[str, Any], dm: Any) -> None:
    """A check's result as ``ddm check`` prints it: the table of scores, then the verdict."""
    print(f"{len(r['targets'])} test targets, {r['subsets']} random halves of the {r['groups']} groups "
          f"(retrains of {r['retrain_seconds']:.1f} s on average); LDS: mean over targets ± standard error "
          "(bootstrap over subsets and targets)")
    oc = r.get("other_class_lds", {})
    for name, v in r["lds"].items():
        o = oc.get(name)
        print(f"  {name:<22} LDS {v['mean']:+.3f} ± {v['se']:.3f}"
              + (f"   other-class LDS {o['mean']:+.3f} ± {o['se']:.3f}" if o else ""))
    d = r.get("damping")
    if d is not None and (d["recommended"] or d.get("withdrawn")):
        o = d.get("other_class_lds")
        print(f"  {'DDM, damping x' + format(d['scale'], 'g'):<22} LDS {d['lds']['mean']:+.3f} ± "
              f"{d['lds']['se']:.3f}" + (f"   other-class LDS {o['mean']:+.3f} ± {o['se']:.3f}" if o else "")
              + "   (damping chosen on the random halves)")
    b = r.get("class_balance")
    if b is not None and b["recommended"]:
        o = b.get("other_class_lds")
        print(f"  {'DDM, other classes x' + format(b['scale'], 'g'):<22} LDS {b['lds']['mean']:+.3f} ± "
              f"{b['lds']['se']:.3f}" + (f"   other-class LDS {o['mean']:+.3f} ± {o['se']:.3f}" if o else "")
              + "   (class balance chosen on the random halves)")
    st = r.get("schedule_term")
    if st is not None and st["weight"] > 0:
        o = st.get("other_class_lds")
        print(f"  {'DDM + schedule term':<22} LDS {st['lds']['mean']:+.3f} ± {st['lds']['se']:.3f}"
              + (f"   other-class LDS {o['mean']:+.3f} ± {o['se']:.3f}" if o else "")
              + f"   (weight {st['weight']:.3g}, fitted on the random halves"
              + (", on the refitted " + ("damping" if st["over"] == "DDM, damping refitted" else "balance") + ")"
                 if st.get("over", "DDM") != "DDM" else ")"))
    t = r.get("temperature")
    if t is not None:
        o = t.get("other_class_lds")
        print(f"  {'DDM, temperature ' + format(t['temperature'], 'g'):<22} LDS {t['lds']['mean']:+.3f} ± "
              f"{t['lds']['se']:.3f}" + (f"   other-class LDS {o['mean']:+.3f} ± {o['se']:.3f}" if o else "")
              + ("   (synsets distilled with the tempered cross-entropy)" if t["temperature"] != 1 else
                 "   (synsets distilled with the plain cross-entropy: the ones the automatic switch replaced)"))
    if oc:
        print(f"  (other-class LDS on the targets of classes {r['other_classes']}, over subsets that keep their groups "
              "whole)")
    for line in r["verdict"]:
        print(f"* {line}")
    print(f"saved: {dm.ws.path('check', 'check.json')}")


def _apply_advice(dm: Any, advice: dict[str, float], data: Any, out: Any = None) -> bool:
    """``ddm check --apply``: keep the check's advice as the workspace's settings, and say what changed (on ``out``,
    stdout by default). True where the workspace's synsets were replaced (a tempered synset the check distilled)."""
    from ddm.evaluation.check import temperature_overrides, temperature_stage

    out = out or sys.stdout
    if not advice:
        print("--apply: the check advises no change; the workspace's settings stay as they are", file=out)
        return False
    t = advice.get("distill.head_temperature")
    if t is not None:
        dm.adopt_variant(data.train, temperature_overrides(t), temperature_stage(t))
        print(f"applied: distill.head_temperature={t:g}: the synsets the check distilled at that temperature are now "
              f"this workspace's ({dm.ws.path('synset')}; the setting is in {dm.ws.path('config.json')})", file=out)
        return True
    dm.keep_settings([f"{k}={v:g}" for k, v in advice.items()])
    print(f"applied: {', '.join(f'{k}={v:g}' for k, v in advice.items())} is now this workspace's setting "
          f"({dm.ws.path('config.json')}): every later ddm attribute and report on it uses it (ddm diagnose too, "
          "with its own class balance); `ddm run` on this workspace keeps it only with the same --set", file=out)
    return False


def cmd_info(args: argparse.Namespace) -> int:
    from ddm import presets
    from ddm.config import (
        ClusterConfig,
        DataConfig,
        DistillConfig,
        EmulateConfig,
        ModelConfig,
        RunConfig,
        TrainConfig,
        describe,
    )
    from ddm.pipeline import balance_rule
    from ddm.workspace import Workspace

    if args.config_help or not args.workspace:
        sections = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "cluster": ClusterConfig,
                    "distill": DistillConfig, "emulate": EmulateConfig}
        top = [(n, h, d) for n, h, d in describe(RunConfig) if d != "(section)"]  # e.g. device, hierarchical
        if args.json:
            out: dict[str, Any] = {s: {n: {"default": d, "help": h} for n, h, d in describe(c)}
                                   for s, c in sections.items()}
            out.update({n: {"default": d, "help": h} for n, h, d in top})
            print(json.dumps(out, indent=2, default=str))
            return 0
        print("config fields (override with --set STAGE.FIELD=VALUE, or FIELD=VALUE for the top-level ones):")
        rows = [(f"{s}.{n}", h, d) for s, c in sections.items() for n, h, d in describe(c)] + list(top)
        width = max(len(n) for n, _, _ in rows)
        for n, h, d in rows:
            print(f"  {n:<{width}} {str(d):<18} {h}")
        print("\npresets: " + ", ".join(f"{n}" for n in presets.PRESETS.names()))
        for n in presets.PRESETS.names():
            print(f"  {n}: {(presets.PRESETS.get(n).__doc__ or '').split(chr(10))[0]}")
        print(f"\nrecipes (--recipe NAME, applied on top of the preset; default: {presets.DEFAULT_RECIPE}):")
        for n, (overrides, what) in presets.RECIPES.items():
            print(f"  {n}: {what}\n      = {' '.join('--set ' + o for o in overrides)}")
        return 0
    ws = Workspace(args.workspace)
    if not ws.root.exists():
        raise DDMError(f"workspace {ws.root} does not exist; create it with `ddm run -w {ws.root}`")
    if not ws.root.is_dir():
        raise DDMError(f"{ws.root} is a file, not a workspace folder; pass the folder `ddm run` wrote")
    stages = ws.stages()
    if args.json:
        print(json.dumps(stages, indent=2, default=str))
        return 0
    from ddm.config import RunConfig

    stored = ws.root / "config.json"
    emulate = (RunConfig.from_json(stored.read_text()) if stored.exists() else RunConfig()).emulate
    min_transfer = emulate.min_transfer
    print(f"workspace {ws.root}:")
    for st in stages:
        extra = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in st.items()
                          if k not in ("stage", "key", "config", "complete", "health", "retried", "curvature", "grown"))
        print(f"  {st['stage']:<34} {'done' if st.get('complete') else 'partial':<8} {extra}")
        hh = st.get("health") or {}
        if hh.get("checked"):
            rel = f", relative error median {hh['relative_error_median']:.2g}" if "relative_error_median" in hh else ""
            prev = (f", at the previous checkpoint {hh['previous_checkpoint_cosine_mean']:.2f}"
                    if "previous_checkpoint_cosine_mean" in hh else "")
            print(f"  {'':<34} {'':<8} health: step cosine mean {hh['cosine_mean']:.2f} (min {hh['cosine_min']:.2f}, "
                  f"{100 * hh['positive_fraction']:.0f}% positive){rel}{prev}; "
                  f"flagged groups: {_listed(hh['flagged']) if hh['flagged'] else 'none'}")
            curv = st.get("curvature")
            if curv:
                what = {"exact": "exact", "kfac": "K-FAC (Kronecker factors)",
                        "ekfac": "EK-FAC (K-FAC's eigenbasis, exact eigenvalues)"}.get(curv["kind"], curv["kind"])
                if curv["kind"] == "subspace":
                    what = (f"exact over the top {curv['exact_directions']:,} of {curv['features']:,} feature "
                            f"directions, EK-FAC on the rest (distill.exact_limit)")
                print(f"  {'':<34} {'':<8} last-layer curvature: {what}, {curv.get('parameters', 0):,} parameters")
            if st.get("grown"):
                print(f"  {'':<34} {'':<8} {_grown(st['grown'])}")
            if st.get("retried"):
                items = list(st["retried"].items())
                again = ", ".join(f"group {k} {b:.2g} -> {min(a, b):.2g}" for k, (b, a) in items[:20])
                again += f" and {len(items) - 20:,} more" if len(items) > 20 else ""
                print(f"  {'':<34} {'':<8} matched again from their highest-loss members (relative error still "
                      f">= distill.retry): {again}")
            if hh.get("outsized"):
                print(f"  {'':<34} {'':<8} outsized groups (their real removal step is 10x the median's; not a "
                      f"synset failure, often mislabeled or atypical data): {_listed(hh['outsized'])}")
            grads = ws.path(st["stage"], "gradients.safetensors")
            if emulate.gradients == "groups" and curv and grads.exists():
                print(f"  {'':<34} {'':<8} the attribution's step reads the groups' own last-layer gradients "
                      f"(emulate.gradients=groups; {grads.stat().st_size / 2 ** 20:.1f} MB in {grads.name}, not to be "
                      "released), at theta_tau and every checkpoint below; the synsets carry unlearning")
            if hh.get("checkpoints"):
                reads = "groups" if emulate.gradients == "groups" and curv and grads.exists() else "synsets"
                print(f"  {'':<34} {'':<8} {_averaged_line(hh['checkpoints'], reads, min_transfer)}")
    checked = ws.path("check", "check.json")
    if checked.exists():
        from ddm.workspace import load_json

        r = load_json(checked)
        synset = next((st.get("key") for st in stages if st["stage"] == "synset"), None)
        stale = "" if r.get("synset_key") == synset else " (made with an earlier synset: run `ddm check` again)"
        print(f"  against exact retraining (ddm check, {r['subsets']} subsets){stale}:")
        for line in r["verdict"]:
            print(f"    * {line}")
    config = RunConfig.from_json(stored.read_text()) if stored.exists() else None
    if config is not None:
        from dataclasses import asdict

        kept, default = asdict(config.emulate), asdict(RunConfig().emulate)
        changed = {k: v for k, v in kept.items() if v != default[k]}
        if changed:
            print("  emulation settings other than the defaults: "
                  + ", ".join(f"emulate.{k}={v}" for k, v in changed.items()))
        temperature = config.distill.head_temperature
        if temperature != RunConfig().distill.head_temperature:
            print(f"  synsets matched with the cross-entropy at temperature {temperature:g} "
                  f"(distill.head_temperature={temperature:g})")
    auto = next((st for st in stages if st["stage"] == "synset" and "temperature" in st), None)
    if auto is not None:
        # the threshold the stage switched under (stages that switched before it was recorded: 0.7)
        threshold = auto.get("step_agreement_threshold", 0.7)
        print(f"  synsets matched with the cross-entropy at temperature {auto['temperature']:g}, switched to on their "
              f"own: step agreement {beside(auto['step_agreement_at_1'], threshold)} with the plain cross-entropy, "
              f"below {threshold:g} (distill.auto_temperature)"
              + ("; the class-level synset follows" if any(st["stage"] == "synset-class" and "temperature_from" in st
                                                           for st in stages) else ""))
    synset_stage = next((st for st in stages if st["stage"] == "synset"), None)
    train_stage = next((st for st in stages if st["stage"] == "train"), None)
    emulate = (config or RunConfig()).emulate
    agreement = None if synset_stage is None else synset_stage.get("other_class_agreement")
    below = emulate.switched_class_agreement
    classes = None if train_stage is None else train_stage.get("num_classes")
    scale, setting = balance_rule(emulate, classes, agreement, auto is not None)
    if setting == "emulate.binary_class_scale" and synset_stage is not None:
        print(f"  group attributions weigh the other class's groups x{scale:g} (emulate.binary_class_scale, in place "
              "of the other class balances: with two classes the other class is every target's only competitor; "
              "README, 'Class balance')")
    elif emulate.switched_class_scale is not None and (auto is not None or agreement is not None):
        known = below is not None and agreement is not None
        read = beside(agreement, below) if agreement is not None and below is not None else ""
        if setting == "emulate.switched_class_scale":
            why = (f"other-class step agreement {read}, below {below:g}: "
                   "emulate.switched_class_agreement"
                   if known else "the synsets switched to a temperature on their own")
            print(f"  group attributions weigh other classes' groups x{emulate.switched_class_scale:g} "
                  f"(emulate.switched_class_scale, in place of emulate.other_class_scale; {why}; README, "
                  "'Class balance')")
        elif known and auto is not None:
            print(f"  group attributions keep other classes' groups at x{emulate.other_class_scale:g} "
                  f"(emulate.other_class_scale): the tempered synsets rank other classes' groups alike at "
                  f"theta_tau and the earlier checkpoints (other-class step agreement {read}, "
                  f"not below {below:g}: emulate.switched_class_agreement; README, 'Class balance')")
    return 0


COMMANDS = {"run": cmd_run, "stage": cmd_stage, "attribute": cmd_attribute, "unlearn": cmd_unlearn, "check": cmd_check,
            "diagnose": cmd_diagnose, "report": cmd_report, "evaluate": cmd_evaluate, "info": cmd_info}


def build_parser() -> argparse.ArgumentParser:
    from ddm.cli import parser

    return parser.build_parser(COMMANDS)


def main(argv: list[str] | None = None) -> int:
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
