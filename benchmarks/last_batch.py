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

DROPS = (8, 48, 56, 112)  # n = 2992, 2952, 2944, 2888: last batches of 48, 8, 64 and 8 at batch size 64


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/results/last-batch")
    p.add_argument("--config", default="fmnist-mlp-sequential-K50-sgd")
    p.add_argument("--orders", type=int, default=6)
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
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
