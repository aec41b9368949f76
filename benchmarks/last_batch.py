"""The last, partial minibatch of every epoch as a source of retraining noise (a diagnostic).

Exact retraining without some groups changes ``n mod batch_size``, the size of every epoch's last minibatch. At a
high rate a tiny last batch is a large step on a few samples, taken last. This retrains the Fashion-MNIST MLP of
``matrix.py`` (3,000 images, batch 64, lr 0.05, 10 epochs) without a few random samples, chosen so that the last
batch has 48, 8, 64 or 16 samples, in 6 data orders each, with ``train.last_batch`` keep (the default) and
balanced.

    python benchmarks/last_batch.py --out benchmarks/results/last-batch
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import ddm
from ddm import progress
from ddm.config import TrainConfig
from ddm.models import with_params
from ddm.train.loop import train_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

CORRELATE = ("digits-convnet-K40-momentum-wd", "fmnist-mlp-K40-sgd", "digits-convnet-K100-sgd")
DROPS = (8, 48, 56, 112)  # n = 2992, 2952, 2944, 2888: last batches of 48, 8, 64 and 8 at batch size 64


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/results/last-batch")
    p.add_argument("--config", default="fmnist-mlp-sequential-K50-sgd")
    p.add_argument("--orders", type=int, default=6)
    p.add_argument("--root", default="runs/matrix", help="matrix.py's cached retrains, for the correlations")
    args = p.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    cfg, data = M.make_config(M.CONFIGS[args.config][0], 0, [])
    model = ddm.models.build(cfg.model, data)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    results: dict[str, dict[str, list[float]]] = {}
    for rule in ("keep", "balanced"):
        for drop in DROPS:
            accs = []
            for s in range(args.orders):
                keep = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(100 + s))
                keep = keep[: len(data.train) - drop].sort().values
                net = with_params(model, theta0)
                train_model(net, data.train[keep], TrainConfig(**{**cfg.train.__dict__, "seed": s, "last_batch": rule}))
                with torch.no_grad():
                    accs.append(100 * float((net(data.test.x).argmax(1) == data.test.y).float().mean()))
            results.setdefault(rule, {})[str(drop)] = accs
    bs = cfg.train.batch_size
    lines = ["# The last partial minibatch (diagnostic)", "",
             f"Command: `python benchmarks/last_batch.py {' '.join(sys.argv[1:])}`; {args.config} seed 0 (theta_0 "
             f"and data), {args.orders} data orders; test accuracy (%) mean ± sample std after retraining without a "
             "few random samples.", "",
             "| training samples | last minibatch (keep) | keep | balanced |", "|---|---|---|---|"]
    for drop in DROPS:
        n = len(data.train) - drop
        cells = [f"{np.mean(results[r][str(drop)]):.1f} ± {np.std(results[r][str(drop)], ddof=1):.1f}"
                 for r in ("keep", "balanced")]
        lines.append(f"| {n} | {n % bs or bs} | {cells[0]} | {cells[1]} |")
    lines += ["", "In the report matrix's cached retrains (seeds 0-1; the 40 half subsets and 100 other-class "
              "subsets of a seed): Spearman correlation of the mean test loss with the number of training samples "
              "kept and with the size of the last minibatch.", "",
              "| configuration | seed | retrains | loss vs samples | loss vs last minibatch |", "|---|---|---|---|---|"]
    for name in CORRELATE:
        for seed in (0, 1):
            row = correlate(name, seed, Path(args.root))
            if row is not None:
                results.setdefault("correlations", {})[f"{name} seed {seed}"] = row  # type: ignore[assignment]
                lines.append(f"| {name} | {seed} | {row[0]:.0f} | {row[1]:+.2f} | {row[2]:+.2f} |")
    M.write_report(args.out, lines, results)


def correlate(name: str, seed: int, root: Path) -> list[float] | None:
    """(retrains, Spearman of mean test loss with samples kept, with last minibatch size), from matrix.py's cache."""
    from scipy.stats import spearmanr

    from ddm.emulate.perturbations import sample_perturbations
    from ddm.evaluation.retrain import RetrainCache

    folder = root / name / f"seed{seed}"
    if not (folder / "retrain").exists():
        return None
    cfg, data = M.make_config(M.CONFIGS[name][0], seed, [])
    dm = ddm.DistilledDatamodel(folder / "ddm", cfg, overwrite=True).fit(ddm.models.build(cfg.model, data),
                                                                         data.train)
    K, bs, sizes = dm.groups.num_groups, cfg.train.batch_size, dm.groups.sizes().float()
    cache = RetrainCache(folder / "retrain", dm.model, dm.trajectory.checkpoint(0), data.train, dm.groups, cfg.train,
                         data.test.x)
    masks = [sample_perturbations(K, 40, 0.5, seed=10_000 + seed)]  # matrix.py's subsets
    for c in range(int(data.num_classes)):
        m = sample_perturbations(K, 10, 0.5, seed=20_000 + 100 * seed + c)
        m[:, dm.groups.labels == c] = True
        masks.append(m)
    keep = torch.cat(masks)
    rows = [(k, torch.nonzero(~k).flatten().tolist()) for k in keep]
    rows = [(k, r) for k, r in rows if cache.has(r)]
    if len(rows) < 10:
        return None
    loss = [float(torch.nn.functional.cross_entropy(cache.get(r), data.test.y)) for _, r in rows]
    n = np.array([int(k.float() @ sizes) for k, _ in rows])
    last = np.where(n % bs == 0, bs, n % bs)
    return [float(len(rows)), float(spearmanr(loss, n)[0]), float(spearmanr(loss, last)[0])]


if __name__ == "__main__":
    main()
