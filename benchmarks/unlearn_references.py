"""DDM's unlearning beside reference unlearners that need the training data, all against exact retraining.

On matrix.py's unlearning draws (3 draws of 4 random groups and 2 whole classes; seed 0 unless ``--seeds``), for
DDM (``ddm unlearn``: synsets only), fine-tune on the rest and NegGrad+ (``ddm.baselines.unlearners``: the kept
and removed training data, the training optimizer, one epoch over the kept data), the last layer retrained on the
kept data with the rest of theta_tau frozen (the bound of a last-layer unlearner such as DDM's; the whole training
schedule, on features) and the trained model itself (no unlearning): test accuracy, accuracy on the removed
training samples, agreement of the test predictions with the exact retrain's, and seconds. Exact retraining's
accuracy on the removed samples comes from a second retrain cache that records logits on the training set
(``retrain-train``; same seed, so the same models).

    python benchmarks/unlearn_references.py --select --out benchmarks/results/unlearn-references-select
    python benchmarks/unlearn_references.py --root runs/matrix-b --out benchmarks/results/unlearn-references
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import ddm
from ddm import devices, progress
from ddm.baselines.unlearners import finetune_rest, neggrad_plus, retrain_head
from ddm.evaluation.retrain import RetrainCache

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

ALPHAS = (0.99,)  # NegGrad+'s kept-loss weight, chosen from 0.9, 0.99, 0.999 on the selection configurations (--select)


def run(name: str, seed: int, root: Path, alphas: list[float], epochs: float,
        ddm_grid: list[str] | None = None) -> dict[str, Any]:
    cfg, data, folder, dm, test = M.open_run(root, name, seed)
    train = RetrainCache(folder / "retrain-train", dm.model, dm.trajectory.checkpoint(0), data.train, dm.groups,
                         cfg.train, data.train.x)
    draws = M.unlearning_draws(dm, int(data.num_classes))
    yt, ytr = data.test.y, data.train.y
    rows = []
    for kind, rem in draws:
        gone = torch.isin(dm.groups.assignment, torch.as_tensor(rem))
        ex_test, ex_train = test.get(rem).argmax(1), train.get(rem).argmax(1)
        other = [test.get(rem, seed=s).argmax(1) for s in M.other_orders(seed)]
        row: dict[str, Any] = {"kind": kind, "groups": rem, "exact": {
            "test_acc": (ex_test == yt).float().mean().item(),
            "removed_acc": (ex_train[gone] == ytr[gone]).float().mean().item(),
            "agreement": float(np.mean([(o == ex_test).float().mean().item() for o in other])),
            "seconds": test.seconds(rem)}}

        makers: dict[str, Any] = {
            "no unlearning": lambda: dm.model,
            "DDM": lambda rem=rem: dm.unlearn(rem, name="references"),
            "fine-tune on the rest": lambda keep=~gone: finetune_rest(dm.model, dm.trajectory.final, data.train,
                                                                      keep, cfg.train, epochs),
            "last layer retrained on the rest": lambda keep=~gone: retrain_head(dm.model, dm.trajectory.final,
                                                                                data.train, keep, cfg.train,
                                                                                head_init=dm.trajectory[0])}
        for ov in ddm_grid or []:  # DDM variants: each setting's unlearning, in the same workspace
            key, value = ov.split("=", 1)
            makers[f"DDM {key.split('.')[-1]}={value}"] = lambda rem=rem, ov=ov: _unlearn_with(dm, cfg, ov, rem)
        for a in alphas:
            makers[f"NegGrad+ {a:g}"] = lambda a=a, keep=~gone: neggrad_plus(dm.model, dm.trajectory.final,
                                                                             data.train, keep, cfg.train, epochs,
                                                                             alpha=a)
        for tag, make in makers.items():
            row[tag] = measure(make, data, gone, ex_test)
        rows.append(row)
    return {"config": name, "seed": seed, "target_test_acc": float(
        (devices.predict(dm.model, data.test.x).argmax(1) == yt).float().mean()), "draws": rows}


def _unlearn_with(dm: ddm.DistilledDatamodel, cfg: Any, override: str, rem: list[int]) -> Any:
    dm.config = cfg.with_overrides([override])
    try:
        return dm.unlearn(rem, name="references")
    finally:
        dm.config = cfg


def measure(make: Any, data: Any, gone: torch.Tensor, exact: torch.Tensor) -> dict[str, Any]:
    """Test accuracy, accuracy on the removed training samples (``gone``), agreement with the exact retrain's test
    predictions (``exact``) and seconds of the unlearner ``make``; a diverged one is reported as such."""
    t0 = time.perf_counter()
    try:
        net = make()
    except ddm.exceptions.NumericalError:
        return {"diverged": True}
    sec = time.perf_counter() - t0
    net.eval()
    with torch.no_grad():
        pt, ptr = net(data.test.x).argmax(1), net(data.train.x[gone]).argmax(1)
    return {"test_acc": (pt == data.test.y).float().mean().item(),
            "removed_acc": (ptr == data.train.y[gone]).float().mean().item(),
            "agreement": (pt == exact).float().mean().item(), "seconds": sec}


def _within(d: dict[str, Any], m: str, tol: float) -> bool:
    return not d[m].get("diverged") and 100 * abs(d[m]["test_acc"] - d["exact"]["test_acc"]) <= tol


def markdown(results: list[dict[str, Any]], argv: list[str], epochs: float) -> list[str]:
    methods = list(dict.fromkeys(k for r in results for d in r["draws"] for k in d if k not in ("kind", "groups")))
    lines = ["# Unlearning: DDM and reference unlearners against exact retraining", "",
             f"Command: `python benchmarks/unlearn_references.py {' '.join(argv)}`. Reference unlearners: "
             f"{epochs:g} epoch(s) over the kept data with the training optimizer. Per configuration and seed: "
             "3 draws of 4 random groups, 2 whole classes (none where groups mix classes).", "",
             "* **4 groups, gap**: mean |test acc - exact's| in points, and how many draws are within 3 points;",
             "* **removed acc**: accuracy on the removed training samples (4-group draws), mean, in %; exact "
             "retraining's is what a model that never saw them reaches;",
             "* **class acc**: accuracy on the removed class's test images after a class removal, mean, in %;",
             "* **class, test gap**: mean |test acc - exact's| after a class removal, in points;",
             "* **agreement**: share of test predictions equal to the exact retrain's, mean over all draws, in % "
             "(the `exact` row: retrains of the same data in two other data orders, retraining's own spread);",
             "* **seconds**: mean time per draw (exact: one retrain).", "",
             "| configuration | seed | method | 4 groups, gap | removed acc | class acc | class, test gap | agreement "
             "| seconds |", "|---|---|---|---|---|---|---|---|---|"]
    def mean(values: list[float], scale: float = 100.0, fmt: str = ".1f") -> str:
        return f"{scale * np.mean(values):{fmt}}" if values else "–"

    for r in results:
        for m in methods:
            ok = [d for d in r["draws"] if m in d and not d[m].get("diverged")]
            div = sum(1 for d in r["draws"] if d.get(m, {}).get("diverged"))
            g4 = [d for d in ok if d["kind"] == "4 groups"]
            cl = [d for d in ok if d["kind"] == "class"]
            gaps = [100 * abs(d[m]["test_acc"] - d["exact"]["test_acc"]) for d in g4]
            n4 = sum(d["kind"] == "4 groups" for d in r["draws"])
            gap = "–" if m == "exact" or not gaps else f"{np.mean(gaps):.1f} ({sum(v <= 3 for v in gaps)}/{n4})"
            ctest = "–" if m == "exact" else mean([abs(d[m]["test_acc"] - d["exact"]["test_acc"]) for d in cl])
            cells = [gap + (f", {div} diverged" if div else ""), mean([d[m]["removed_acc"] for d in g4]),
                     mean([d[m]["removed_acc"] for d in cl]), ctest, mean([d[m]["agreement"] for d in ok]),
                     mean([d[m]["seconds"] for d in ok], 1.0, ".2f")]
            lines.append(f"| {r['config']} | {r['seed']} | {m} | " + " | ".join(cells) + " |")
    lines += ["", "Totals over every configuration and seed above (4-group draws within 3 points; class removals "
              "with the test accuracy within 5 points of exact's; mean agreement):", ""]
    for m in methods:
        if m == "exact":
            continue
        every = [d for r in results for d in r["draws"] if m in d]
        g4 = [d for d in every if d["kind"] == "4 groups"]
        cl = [d for d in every if d["kind"] == "class"]

        div = sum(1 for d in every if d[m].get("diverged"))
        agr = mean([d[m]["agreement"] for d in every if not d[m].get("diverged")])
        lines.append(f"* {m}: 4 groups {sum(_within(d, m, 3) for d in g4)}/{len(g4)}, class "
                     f"{sum(_within(d, m, 5) for d in cl)}/{len(cl)}, agreement {agr}%"
                     + (f", diverged in {div} of {len(every)} draws" if div else ""))
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/results/unlearn-references")
    p.add_argument("--root", default="runs/matrix")
    p.add_argument("--configs", default=None, help="comma-separated (default: the report configurations; with "
                                                   "--select the selection ones)")
    p.add_argument("--seeds", default=None, help="comma-separated (default 0; with --select 3,4)")
    p.add_argument("--select", action="store_true", help="compare NegGrad+'s alpha over --alphas on the selection "
                                                         "configurations")
    p.add_argument("--alphas", default=",".join(map(str, ALPHAS)))
    p.add_argument("--ddm-grid", default="", metavar="KEY=V1,V2,...",
                   help="also DDM's unlearning with each of these values of one setting")
    p.add_argument("--epochs", type=float, default=1.0, help="the reference unlearners' budget over the kept data")
    args = p.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    default = [n for n, (_, sel) in M.CONFIGS.items() if (sel if args.select else n not in M.HELD_OUT)]
    names = args.configs.split(",") if args.configs else default
    seeds = [int(s) for s in (args.seeds or ("3,4" if args.select else "0")).split(",")]
    alphas = [float(a) for a in args.alphas.split(",")]
    results = []
    for name in names:
        for seed in seeds:
            key, _, vals = args.ddm_grid.partition("=")
            grid = [f"{key}={v}" for v in vals.split(",")] if vals else []
            results.append(run(name, seed, Path(args.root), alphas, args.epochs, grid))
            M.write_report(args.out, markdown(results, sys.argv[1:], args.epochs), results)


if __name__ == "__main__":
    main()
