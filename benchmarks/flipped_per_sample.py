"""Does DDM find flipped labels when each training sample is its own group? (a probe; no default depends on it)

`ddm evaluate --diagnose` scores each sample by its k-means group's quality (ROC AUC 0.88 on digits, below
last-layer self-influence's 1.00 and cleanlab's 0.99), and the README sends users who look for flipped labels to
those. With one group per sample (``cluster.method=sample``) DDM scores samples too. This flips the same 10% of the
digits training labels as ``ddm evaluate`` does (its seeds: ``flip_labels(seed=40_000 + seed)``, validation = the
same half of the test split), fits DDM on the noisy data with the default k-means groups and with one group per
sample, and measures each diagnosis' detection of the flipped samples beside last-layer self-influence, TRAK's
self-influence and cleanlab (3 folds, out of sample):

    python benchmarks/flipped_per_sample.py --seeds 0,1,2 --out benchmarks/results/flipped-per-sample
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import ddm
from ddm import models
from ddm.baselines.peers import self_influence
from ddm.diagnosis import cleanlab_suspicion, detection_metrics, diagnose, flip_labels, out_of_sample_probs
from ddm.evaluation.protocol import DIAG_SEED

SPLITS = {"DDM, k-means groups (default)": [], "DDM, one group per sample": ["cluster.method=sample"]}


def run_seed(root: Path, seed: int, fraction: float) -> dict[str, dict[str, float]]:
    data = ddm.data.load("digits")
    perm = torch.randperm(len(data.test), generator=torch.Generator().manual_seed(DIAG_SEED))
    val = data.test[perm[: len(perm) // 2]]
    noisy_train, flipped = flip_labels(data.train, fraction, data.num_classes, seed=40_000 + seed)
    out: dict[str, dict[str, float]] = {}
    dm = None
    for name, sets in SPLITS.items():
        cfg = ddm.presets.demo(data).with_overrides(
            ["model.depth=3", *(f"{st}.seed={seed}" for st in ("model", "train", "cluster", "distill", "emulate")),
             *sets])  # the depth its results were measured with (the demo's before the depth rule)
        dm = ddm.DistilledDatamodel(root / f"seed{seed}" / name.split(",")[1].strip().replace(" ", "-"), cfg)
        dm.fit(ddm.models.build(cfg.model, data), noisy_train)
        t0 = time.perf_counter()
        d = diagnose(dm, val)
        out[name] = {**detection_metrics(-d.sample_quality(), flipped), "seconds": time.perf_counter() - t0}
    assert dm is not None
    F = dm.fitted()
    for m in ("if-explicit", "trak"):
        t0 = time.perf_counter()
        s = self_influence(m, F.model, F.trajectory, noisy_train)
        out[f"{m} self-influence"] = {**detection_metrics(s, flipped), "seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    probs = out_of_sample_probs(models.with_params(F.model, F.trajectory.checkpoint(0)), noisy_train, dm.config.train,
                                seed=seed)
    susp, _ = cleanlab_suspicion(probs, noisy_train.y)
    out["cleanlab (3-fold)"] = {**detection_metrics(susp, flipped), "seconds": time.perf_counter() - t0}
    return out


def render(results: dict[int, dict[str, dict[str, float]]], command: str) -> str:
    seeds = sorted(results)
    methods = list(results[seeds[0]])
    keys = [k for k in results[seeds[0]][methods[0]] if k != "seconds"]
    lines = ["# Flipped labels found with one group per sample", "", f"Command: `{command}`", "",
             f"Digits, 10% of the training labels flipped (`ddm evaluate`'s flips), seeds {seeds}; mean ± sample std.",
             "", "| method | " + " | ".join(keys) + " | seconds |", "|---|" + "---|" * (len(keys) + 1)]
    for m in methods:
        cells = []
        for k in [*keys, "seconds"]:
            v = [results[s][m][k] for s in seeds]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{statistics.mean(v):.3f} ± {sd:.3f}" if k != "seconds" else f"{statistics.mean(v):.1f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="runs/flipped-per-sample")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--out", default="benchmarks/results/flipped-per-sample")
    args = p.parse_args(argv)
    results: dict[int, Any] = {}
    for s in (int(v) for v in args.seeds.split(",")):
        results[s] = run_seed(Path(args.root), s, args.fraction)
        print(f"seed {s}:", json.dumps({m: round(r["auc"], 3) for m, r in results[s].items()}), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/flipped_per_sample.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    out.with_suffix(".md").write_text(render(results, command.strip()))


if __name__ == "__main__":
    main()
