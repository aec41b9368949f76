"""The loose-fit unlearning rule's threshold at 0.3, asked on a well-trained model whose fit ratio is about 0.3.

Why. ``ddm unlearn`` takes the synsets' step in place of the relabelled epoch where the model's fit ratio (training
cross-entropy over a uniform guess's, ``ddm.health.fit_to_training``) is above 0.5 and the removal thins a class
(``ddm.unlearning.loose_and_thinned``). ``benchmarks/unlearn_loose.py --fit-band`` wrote down when the threshold
would come down to 0.3: the step at least as often within 3 points of exact retraining as the epoch on thinning
removals at fits of 0.3-0.5, with a lower mean absolute gap, on the selection draws and then on a fresh draw. The
selection passed (seed 0: 4 of 6 each, mean |gap| 1.81 against 3.01); the fresh draw of ``unlearn_replay.py``
(seeds 0 and 1, drawn for another question, its 8 thinning removals at fits of 0.3-0.5) agreed: the step 6 of 8
(2.30), the epoch 4 of 8 (3.30). But ``benchmarks/matrix_fit.py`` then found that the ratio does not only measure
fitting: the matrix's digits ConvNet trained with plain SGD (the demo's network and schedule) fits 98.7-99.2 % of
its training data at a ratio of 0.29-0.33, an under-confident model and no under-fitted one, which a threshold of
0.3 would reach.

**Written before this ran:** the threshold moves to 0.3 only if, on that configuration (the digits preset, which is
``make demo``'s and ``matrix.py``'s ``digits-convnet-K100-sgd``, seeds 0-4 for every stage, each run as ``ddm run
--calibrate never`` with the command line's other defaults), over the removals that thin a
class (``unlearn_loose.removals``: 4 random groups and half of one random class's groups; those that leave some
class more than none and less than 80 % of its samples), the step is within 3 points of exact retraining (the mean of
3 data orders) on at least as many as the relabelled epoch, and its mean absolute gap is at most 0.5 points above
the epoch's. Otherwise the threshold stays 0.5.

    python benchmarks/unlearn_fit_threshold.py --seeds 0,1,2,3,4 --root runs/fit-threshold-d3 \\
        --set model.depth=3 --out benchmarks/results/unlearn-fit-threshold

**A first run missed the configuration** (``--root runs/fit-threshold``, without ``--set``; its report kept as
``unlearn-fit-threshold-d2``): ``ddm run --dataset digits`` gives the ConvNet depth 2 on 8x8 images (0.21's depth
rule), which fits its training data at a ratio of 0.003, so it asked nothing of the threshold (the step 5 of 5 within
3 points on its thinning removals, the epoch 5 of 5). ``matrix.py``'s ``make_config`` builds the preset without that
rule, at depth 3: the network whose ratio is 0.29-0.33, which ``--set model.depth=3`` runs here, under the same rule.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_report  # noqa: E402
from unlearn_loose import run  # noqa: E402


def render(rows: list[dict[str, Any]], out: str, command: str) -> bool:
    lines = ["| seed | test acc. % | fit | removal | thins | relabelled epoch | the step | exact (3 orders) |",
             "|---|---|---|---|---|---|---|---|"]
    gaps: dict[str, list[float]] = {"relabel": [], "step": []}
    for r in rows:
        for name, m in r.get("removals", {}).items():
            if "relabel" not in m or "step" not in m:
                continue
            if m["fires"]:
                gaps["relabel"].append(m["relabel"]["gap"])
                gaps["step"].append(m["step"]["gap"])
            ex = " / ".join(f"{100 * e:.1f}" for e in m["exact"])
            lines.append(f"| {r['config']['set']['train.seed']} | {100 * r['test_accuracy']:.1f} | {r['fit']:.3f} | "
                         f"{name} {m['groups']} | {'yes' if m['fires'] else 'no'} | {m['relabel']['gap']:+.1f} | "
                         f"{m['step']['gap']:+.1f} | {ex} |")
    within = {k: sum(abs(g) <= 3 for g in v) for k, v in gaps.items()}
    mean = {k: statistics.fmean(map(abs, v)) if v else float("nan") for k, v in gaps.items()}
    n = len(gaps["step"])
    passed = n > 0 and within["step"] >= within["relabel"] and mean["step"] <= mean["relabel"] + 0.5
    summary = [f"On the {n} removals that thin a class: the step within 3 points on {within['step']} (mean |gap| "
               f"{mean['step']:.2f}), the relabelled epoch on {within['relabel']} ({mean['relabel']:.2f}). "
               f"The rule written before the run: **{'passed' if passed else 'failed'}**."]
    text = "\n".join(["# The loose-fit rule's threshold at 0.3 on the digits ConvNet with plain SGD", "",
                      f"    {command}", "", *lines, "", *summary, ""])
    write_report(out, text, {"rows": rows, "gaps": gaps, "passed": passed})
    return passed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--root", default="runs/fit-threshold")
    ap.add_argument("--out", default="benchmarks/results/unlearn-fit-threshold")
    ap.add_argument("--ddm", default=str(Path(sys.executable).parent / "ddm"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting for every run")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    extra = dict(o.split("=", 1) for o in a.set)
    # the digits preset with every stage seeded alike, as matrix.py's make_config seeds digits-convnet-K100-sgd
    cfgs = [{"dataset": "digits", "set": {**extra, **{f"{k}.seed": s for k in ("model", "train", "cluster", "distill",
                                                                                "emulate")}}} for s in seeds]
    rows = run(Path(a.root), cfgs, 0, a.ddm, (0.0, 1.0))  # every model unlearned, whatever its fit
    render(rows, a.out, "python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
