"""``ddm info``: what a workspace holds, the configuration's fields and the presets."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ddm.cli.common import averaged_line, grown, listed, off_scale_line
from ddm.exceptions import DDMError
from ddm.text import beside


def cmd_info(args: argparse.Namespace) -> int:
    from ddm import presets
    from ddm.config import RunConfig, describe
    from ddm.pipeline import balance_rule
    from ddm.workspace import Workspace

    if args.config_help or not args.workspace:
        defaults = RunConfig()
        sections = {name: type(getattr(defaults, name))  # each stage's config class
                    for name in ("data", "model", "train", "cluster", "distill", "emulate")}
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
        if st["stage"] == "train":
            line = optimizer_line(ws)
            if line:
                print(f"  {'':<34} {'':<8} {line}")
        hh = st.get("health") or {}
        if hh.get("checked"):
            rel = f", relative error median {hh['relative_error_median']:.2g}" if "relative_error_median" in hh else ""
            prev = (f", at the previous checkpoint {hh['previous_checkpoint_cosine_mean']:.2f}"
                    if "previous_checkpoint_cosine_mean" in hh else "")
            print(f"  {'':<34} {'':<8} health: step cosine mean {hh['cosine_mean']:.2f} (min {hh['cosine_min']:.2f}, "
                  f"{100 * hh['positive_fraction']:.0f}% positive){rel}{prev}; "
                  f"flagged groups: {listed(hh['flagged']) if hh['flagged'] else 'none'}")
            if hh.get("off_scale"):
                print(f"  {'':<34} {'':<8} {off_scale_line(hh)}")
            curv = st.get("curvature")
            if curv:
                what = {"exact": "exact", "kfac": "K-FAC (Kronecker factors)",
                        "ekfac": "EK-FAC (K-FAC's eigenbasis, exact eigenvalues)"}.get(curv["kind"], curv["kind"])
                if curv["kind"] == "subspace":
                    what = (f"exact over the top {curv['exact_directions']:,} of {curv['features']:,} feature "
                            f"directions, EK-FAC on the rest (distill.exact_limit)")
                if curv.get("feature_directions"):
                    what += (f"; held on the features' top {curv['feature_directions']:,} of {curv['features']:,} "
                             "directions (distill FEATURE_LIMIT)")
                print(f"  {'':<34} {'':<8} last-layer curvature: {what}, {curv.get('parameters', 0):,} parameters")
            if st.get("grown"):
                print(f"  {'':<34} {'':<8} {grown(st['grown'])}")
            if st.get("retried"):
                items = list(st["retried"].items())
                again = ", ".join(f"group {k} {b:.2g} -> {min(a, b):.2g}" for k, (b, a) in items[:20])
                again += f" and {len(items) - 20:,} more" if len(items) > 20 else ""
                print(f"  {'':<34} {'':<8} matched again from their highest-loss members (relative error still "
                      f">= distill.retry): {again}")
            if hh.get("outsized"):
                print(f"  {'':<34} {'':<8} outsized groups (their real removal step is 10x the median's; not a "
                      f"synset failure, often mislabeled or atypical data): {listed(hh['outsized'])}")
            grads = ws.path(st["stage"], "gradients.safetensors")
            if emulate.gradients == "groups" and curv and grads.exists():
                print(f"  {'':<34} {'':<8} the attribution's step reads the groups' own last-layer gradients "
                      f"(emulate.gradients=groups; {grads.stat().st_size / 2 ** 20:.1f} MB in {grads.name}, not to be "
                      "released), at theta_tau and every checkpoint below; the synsets carry unlearning")
            if hh.get("checkpoints"):
                reads = "groups" if emulate.gradients == "groups" and curv and grads.exists() else "synsets"
                print(f"  {'':<34} {'':<8} {averaged_line(hh['checkpoints'], reads, min_transfer)}")
    from ddm.workspace import load_json

    synset = next((st.get("key") for st in stages if st["stage"] == "synset"), None)
    checked = ws.path("check", "check.json")
    if checked.exists():
        r = load_json(checked)
        stale = "" if r.get("synset_key") == synset else " (made with an earlier synset: run `ddm check` again)"
        print(f"  against exact retraining (ddm check, {r['subsets']} subsets){stale}:")
        for line in r["verdict"]:
            print(f"    * {line}")
    calibrated = ws.path("check", "calibration.json")
    if calibrated.exists():
        c = load_json(calibrated)
        stale = "" if c.get("synset_key") == synset else ", with an earlier synset"
        settings = ", ".join(f"{k}={v:g}" for k, v in (c.get("kept", c.get("advice")) or {}).items()) or "nothing"
        scores = (f"; LDS there {c['lds_before']['mean']:+.3f} -> {c['lds_after']['mean']:+.3f}"
                  if c.get("lds_before") and c.get("lds_after") else "")
        print(f"  calibrated by `ddm run` on {len(c['targets'])} test targets and {c['subsets']} random halves of its "
              f"own{stale}: kept {settings}{scores} (check/calibration.json)")
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


def optimizer_line(ws: Any) -> str | None:
    """What the workspace's trajectory records of the optimizer that trained it, and the weight decay the head
    recipe reads of it (``ddm.train.trajectory.recorded_weight_decay``); None without a stored trajectory."""
    from ddm import models as model_registry
    from ddm.distill.scope import head_name
    from ddm.train.trajectory import decoupled, recorded_weight_decay
    from ddm.workspace import load_json

    path = ws.path("train", "trajectory", "trajectory.json")
    if not path.exists():
        return None
    rec = load_json(path).get("optimizer")
    handed = bool((ws.stage_info("train") or {}).get("config", {}).get("external_trajectory"))
    who = "your own loop (trajectory handed in)" if handed else "ddm's loop"
    if not rec:
        return (f"trained by {who}; its optimizer was not recorded: ddm reads train.weight_decay "
                "(TrajectoryRecorder.attach(optimizer) records it)")
    parts = [str(rec.get("type", "?"))] + [f"{k} {rec[k]:g}" for k in ("lr", "momentum") if
                                            isinstance(rec.get(k), (int, float)) and (k == "lr" or rec[k])]
    if rec.get("schedule"):
        parts.append("the rate scheduled (" + (rec["schedule"] if rec["schedule"] != "varying" else
                     "from {:g} to {:g}".format(*rec.get("lr_range", [0, 0]))) + ")")
    head = None
    spec_path = ws.path("train", "model.json")
    if rec.get("param_groups") and spec_path.exists():
        spec = load_json(spec_path)
        if spec.get("head"):
            head = spec["head"]
        elif "config" in spec or "import" in spec:
            try:
                head = head_name(model_registry.from_spec(spec))
            except Exception:  # a model that cannot be rebuilt here: the optimizer's default decay is shown
                head = None
    wd = recorded_weight_decay(rec, None if head is None else f"{head}.weight")
    if decoupled(rec):
        decay = f"weight decay {rec.get('weight_decay', 0):g} decoupled (no L2 term: left out of the Newton step)"
    elif wd is None:
        decay = "weight decay not recorded"
    else:
        decay = f"weight decay {wd:g}" + (" (taken for an L2 term: attach(optimizer, decoupled_decay=...) did not "
                                          "say)" if rec.get("decay") == "unknown" and wd else "")
        if rec.get("param_groups"):
            decay += (f", of the head's among {len(rec['param_groups'])} parameter groups" if head is not None else
                      f", the optimizer's default among {len(rec['param_groups'])} parameter groups")
    return f"trained by {who}: " + ", ".join(parts) + "; " + decay
