"""``ddm check`` (is DDM right on this workspace's model? a few exact retrains) and ``ddm evaluate`` (the protocol)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from ddm.cli.common import load_workspace, make_config, model_for_data, user_retrainer
from ddm.exceptions import DDMError


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

        config = model_for_data(config, data_mod.load(config.data), args)
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
    from ddm.text import seconds as secs

    peers = tuple(p.strip() for p in args.peers.split(",") if p.strip())
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise DDMError(f"--peers: unknown method(s) {unknown}; choose from: {', '.join(PEERS)}")
    if not (args.try_temperature >= 0 and math.isfinite(args.try_temperature)):
        raise DDMError(f"--try-temperature {args.try_temperature:g}: give a positive number, or 0 to try none")
    dm, data = load_workspace(args)
    n = args.subsets + (args.other_class_subsets if not dm.groups.mixes_classes() else 0) + 1
    retrainer = retrainer_for(dm, user_retrainer(args))  # a handed-in trajectory without --retrain: refused here
    seconds = float(dm.ws.require("train")["seconds"])
    each = (f"in your loop ({retrainer.name}), most on about half the data" if retrainer is not None
            else f"of about {secs(seconds * 0.5)}-{secs(seconds)} s each (the target trained in {secs(seconds)} s)")
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
    from ddm.evaluation.check import apply_advice

    out = out or sys.stdout
    if not advice:
        print("--apply: the check advises no change; the workspace's settings stay as they are", file=out)
        return False
    if apply_advice(dm, advice, data.train):
        t = advice["distill.head_temperature"]
        print(f"applied: distill.head_temperature={t:g}: the synsets the check distilled at that temperature are now "
              f"this workspace's ({dm.ws.path('synset')}; the setting is in {dm.ws.path('config.json')})", file=out)
        return True
    print(f"applied: {', '.join(f'{k}={v:g}' for k, v in advice.items())} is now this workspace's setting "
          f"({dm.ws.path('config.json')}): every later ddm attribute and report on it uses it (ddm diagnose too, "
          "with its own class balance); `ddm run` on this workspace keeps it only with the same --set", file=out)
    return False
