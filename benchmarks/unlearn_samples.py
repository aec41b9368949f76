"""Unlearning individual samples (one group per sample) against exact retraining (a probe; no default depends on it).

The matrix's unlearning draws remove 4 groups, which with one group per sample (``cluster.method=sample``) is 4
samples: nothing retraining notices. The right-to-be-forgotten question is larger removals of samples. On the
per-sample configurations of ``matrix.py`` (their cached workspaces), per seed: 3 draws of 1% and 3 draws of 10% of
the training samples at random, and half of class 0's samples; for DDM (``ddm unlearn``), fine-tune on the rest (one
epoch over the kept data with the training optimizer), the trained model itself, and exact retraining: test
accuracy, accuracy on the removed samples, and agreement of the test predictions with the exact retrain's.

    python benchmarks/unlearn_samples.py --root runs/matrix-b --configs digits-convnet-per-sample \\
        --seeds 0,1,2 --out benchmarks/results/unlearn-samples
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddm.baselines.unlearners import finetune_rest
from ddm.evaluation.retrain import RetrainCache

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402
from unlearn_references import measure  # noqa: E402


def draws(num_groups: int, labels: torch.Tensor) -> list[tuple[str, list[int]]]:
    g = torch.Generator().manual_seed(779)
    out = []
    for frac in (0.01, 0.1):
        n = max(1, round(frac * num_groups))
        out += [(f"{frac:.0%} of the samples", torch.randperm(num_groups, generator=g)[:n].tolist()) for _ in range(3)]
    of0 = torch.nonzero(labels == 0).flatten()
    out.append(("half of class 0", of0[torch.randperm(len(of0), generator=g)[: len(of0) // 2]].tolist()))
    return out


def run(name: str, seed: int, root: Path, sets: list[str]) -> dict[str, Any]:
    cfg, data, folder, dm, test = M.open_run(root, name, seed)
    dm.config = dm.config.with_overrides(sets)  # --set: DDM's unlearning settings (a diagnostic)
    train = RetrainCache(folder / "retrain-train", dm.model, dm.trajectory.checkpoint(0), data.train, dm.groups,
                         cfg.train, data.train.x)
    yt, ytr = data.test.y, data.train.y
    rows = []
    for kind, rem in draws(dm.groups.num_groups, dm.groups.labels):
        gone = torch.isin(dm.groups.assignment, torch.as_tensor(rem))
        ex_test, ex_train = test.get(rem).argmax(1), train.get(rem).argmax(1)
        row: dict[str, Any] = {"kind": kind, "removed": len(rem), "exact": {
            "test_acc": (ex_test == yt).float().mean().item(),
            "removed_acc": (ex_train[gone] == ytr[gone]).float().mean().item(), "agreement": 1.0}}
        makers = {"no unlearning": lambda: dm.model,
                  "DDM": lambda rem=rem: dm.unlearn(rem, name="samples"),
                  "fine-tune on the rest": lambda keep=~gone: finetune_rest(dm.model, dm.trajectory.final, data.train,
                                                                            keep, cfg.train, 1.0)}
        for tag, make in makers.items():
            row[tag] = measure(make, data, gone, ex_test)
        rows.append(row)
        print(f"{name} seed {seed} {kind}: exact {row['exact']['test_acc']:.3f} DDM {row['DDM'].get('test_acc')}",
              flush=True)
    return {"config": name, "seed": seed, "draws": rows}


def markdown(results: list[dict[str, Any]], argv: list[str]) -> str:
    lines = ["# Unlearning individual samples against exact retraining", "",
             f"Command: `python benchmarks/unlearn_samples.py {' '.join(argv)}`", "",
             "Per kind of draw, over its draws and seeds: test accuracy (%), its mean |gap| to exact retraining's in "
             "points and how many draws are within 3 points, accuracy on the removed samples (%), and agreement of "
             "the test predictions with the exact retrain's (%).", "",
             "| configuration | draw | method | test acc | gap to exact (within 3) | removed acc | agreement |",
             "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["config"] for r in results):
        rs = [d for r in results if r["config"] == name for d in r["draws"]]
        for kind in dict.fromkeys(d["kind"] for d in rs):
            ds = [d for d in rs if d["kind"] == kind]
            for m in ("exact", "DDM", "fine-tune on the rest", "no unlearning"):
                ok = [d for d in ds if not d[m].get("diverged")]
                gaps = [100 * abs(d[m]["test_acc"] - d["exact"]["test_acc"]) for d in ok]
                gap = "–" if m == "exact" else f"{np.mean(gaps):.1f} ({sum(g <= 3 for g in gaps)}/{len(ds)})"
                lines.append(f"| {name} | {kind} (n = {ds[0]['removed']}) | {m} | "
                             f"{100 * np.mean([d[m]['test_acc'] for d in ok]):.1f} | {gap} | "
                             f"{100 * np.mean([d[m]['removed_acc'] for d in ok]):.1f} | "
                             f"{100 * np.mean([d[m]['agreement'] for d in ok]):.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="runs/matrix-b")
    p.add_argument("--configs", default="digits-convnet-per-sample")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", default="benchmarks/results/unlearn-samples")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting of DDM's unlearning")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    results = [run(c, int(s), Path(args.root), args.set) for c in args.configs.split(",")
               for s in args.seeds.split(",")]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    out.with_suffix(".md").write_text(markdown(results, argv))


if __name__ == "__main__":
    main()
