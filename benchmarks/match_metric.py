"""The head matching's norm: the removal step's or its logit change on the training inputs (distill.match_metric)

The head matching compares each synset's removal step ``(H + lambda I)^-1 g~`` with its group's in the step's own
norm, which the directions of least curvature dominate (the damping lets them grow up to 1 / lambda) although the
data's features barely reach them. On the binary probes the synsets matched that norm to 0.3% relative error (median)
while the logit changes their steps make on the test targets were 3.5-4% off (up to 82% for one group), and the
groups' real samples in their place ranked the check's halves 0.04-0.07 better (``binary_decompose.py``).
``distill.match_metric=outputs`` matches the root-mean-square logit change on the training inputs instead.

This scores workspaces ``ddm check`` has retrained: the synsets in use and synsets distilled again with
``--set`` (default ``distill.match_metric=outputs``) in a workspace beside it (``<workspace>-<--name>``: the same
trained model and groups, the synset stage's own temperature switch and class balance), each with its own default
attribution, LDS over the check's 16 halves and 200 targets and
other-class LDS over its other-class subsets, and the logit changes' relative error against the groups' real
samples on the targets (median, max over groups; step at theta_tau, each synset's own loss and curvature).

    python benchmarks/match_metric.py runs/u23 runs/u24 runs/u25 runs/u32

Several variants side by side, each ``NAME:SETTING[+SETTING...]`` in its own workspace ``<workspace>-<NAME>`` (an
existing one is reused stage by stage where its settings match):

    python benchmarks/match_metric.py runs/u5 --variant default: --variant mac:distill.match_at=checkpoints
    python benchmarks/match_metric.py runs/u23 --variant both:distill.match_metric=both \\
        --variant both-mac:distill.match_metric=both+distill.match_at=checkpoints
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import binary_decompose as B  # noqa: E402
import matrix as M  # noqa: E402
import probe_tabular  # noqa: E402

import ddm  # noqa: E402
from ddm import progress  # noqa: E402
from ddm.workspace import atomic_write_text  # noqa: E402


def shift_errors(dm: ddm.DistilledDatamodel, real: Any, x: torch.Tensor) -> tuple[float, float]:
    """Median and max over groups of the relative error of the synsets' logit changes on ``x`` (step at theta_tau)
    against the groups' real samples'."""
    from ddm.distill.head import Head
    from ddm.emulate.newton import head_shifts, removal_displacements

    p = dm.trajectory.final
    head = Head.of(dm.model)
    with torch.no_grad():
        h = head.features(x, p).double()
        shape = head.matrix(p).shape
        s = head_shifts(h, removal_displacements(dm.model, p, dm.synset).double(), shape)
        r = head_shifts(h, removal_displacements(dm.model, p, real).double(), shape)
    rel = ((s - r) ** 2).sum((1, 2)) / (r ** 2).sum((1, 2)).clamp(min=1e-300)
    return float(rel.median()), float(rel.max())


def sibling(dm: ddm.DistilledDatamodel, data: Any, overrides: list[str], name: str) -> ddm.DistilledDatamodel:
    """The workspace ``<ws>-<name>`` beside ``dm``'s: its trained model and groups (copied, so the stages are reused),
    synsets distilled with ``overrides`` by the synset stage itself (``distill.auto_temperature``'s decision and the
    agreement the class balance reads made on them, as a workspace with these settings would)."""
    import shutil

    src = Path(dm.ws.root)
    dst = src.parent / f"{src.name}-{name}"
    for stage in ("train", "groups"):
        if not (dst / stage).exists():
            shutil.copytree(src / stage, dst / stage)
    return ddm.DistilledDatamodel(dst, dm.config.with_overrides(overrides)).fit(
        ddm.models.build(dm.config.model, data), data.train)


def score(ws: str, variants: dict[str, list[str]], shifts: bool = True, tabular: str | None = None) -> dict[str, Any]:
    from ddm.evaluation.check import _spearman_columns

    dm, data, targets, rows, truth, keep, actual = M.check_halves(
        ws, None if tabular is None else probe_tabular.probe_data(tabular))
    oc = M.check_other_class(dm, data, targets, rows, truth)
    out: dict[str, Any] = {}
    for label, overrides in (("in use", None), *variants.items()):
        model = dm if overrides is None else sibling(dm, data, overrides, label)
        attr = model.attribute(targets, "dist2", name=f"match-metric-{label.replace(' ', '-')}")
        lds = float(_spearman_columns(attr.predict(keep)[..., 0].double().numpy(), actual.double().numpy()).mean())
        oc_lds = None
        if oc is not None:
            masks, sel, oc_actual = oc
            pred = attr.predict(masks)[:, sel, 0]
            oc_lds = float(_spearman_columns(pred.double().numpy(), oc_actual.double().numpy()).mean())
        med, mx = shift_errors(model, B.real_synset(model, data.train), targets.x) if shifts else (float("nan"),) * 2
        out[label] = {"lds": lds, "other_class_lds": oc_lds, "shift_error_median": med, "shift_error_max": mx,
                      "temperature": model.synset_temperature, "ipc": model.synset.ipc, **M.health_summary(model),
                      "distill_seconds": model.ws.require("synset").get("seconds")}
        print(f"{ws} {label:8s}: LDS {lds:.4f}, other-class {oc_lds if oc_lds is None else f'{oc_lds:+.4f}'}, "
              f"logit-change error median {med:.4f} max {mx:.4f}, T {model.synset_temperature:g}, "
              f"ipc {model.synset.ipc}, health {out[label]['positive']:.3f} positive / {out[label]['flagged']} flagged",
              flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workspaces", nargs="+")
    p.add_argument("--set", dest="overrides", action="append", default=None,
                   help="distill.* settings of the synsets scored beside the ones in use "
                        "(default: distill.match_metric=outputs)")
    p.add_argument("--name", default="outputs", help="the variant's name (its workspace: WORKSPACE-NAME)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:SETTING[+SETTING...]",
                   help="a variant scored beside the synsets in use, in WORKSPACE-NAME (repeatable; replaces "
                        "--set / --name)")
    p.add_argument("--tabular", action="append", default=[], metavar="WORKSPACE=PROBE",
                   help="a workspace of probe_tabular.py (its data made again by that probe)")
    p.add_argument("--no-shifts", action="store_true", help="skip the logit changes' errors against the real samples")
    p.add_argument("--json", type=Path, help="write the scores here as well")
    args = p.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    variants = {args.name: args.overrides or ["distill.match_metric=outputs"]}
    if args.variant:
        if args.overrides:
            p.error("give the variants with --variant or with --set / --name, not both")
        variants = {}
        for v in args.variant:
            name, sep, sets = v.partition(":")
            if not sep or not name:
                p.error(f"--variant {v!r}: write NAME:KEY=VALUE[+KEY=VALUE...] (NAME: alone: today's defaults)")
            variants[name] = sets.split("+") if sets else []
    tabular = dict(t.split("=", 1) for t in args.tabular)
    results = {}
    for ws in args.workspaces:  # one by one, so an interrupted run keeps what it finished
        results[ws] = score(ws, variants, shifts=not args.no_shifts, tabular=tabular.get(ws))
        if args.json:
            atomic_write_text(args.json, json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
