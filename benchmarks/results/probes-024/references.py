"""The two-groups-per-class probe's draws (probe.sh) with the reference unlearners beside DDM, against exact
retraining in the target's data order (the retrains `ddm unlearn --verify` cached): test accuracy, accuracy on the
removed training samples and agreement with the exact retrain, for DDM, fine-tune on the rest and NegGrad+ (one epoch
over the kept data, the training optimizer) and the last layer retrained on the kept data (the bound of a last-layer
unlearner). Measured once, used for no choice.

    .venv/bin/python benchmarks/results/probes-024/references.py runs/p24/mlp20 \
        > benchmarks/results/probes-024/mlp20-references.md
"""

from __future__ import annotations

import sys
import time

import torch

from ddm import devices
from ddm.baselines.unlearners import finetune_rest, neggrad_plus, retrain_head
from ddm.cli.common import load_data
from ddm.evaluation.retrain import RetrainCache
from ddm.pipeline import DistilledDatamodel

DRAWS = [[15, 5, 9, 6], [13, 8, 17, 7], [15, 11, 13, 16], [19, 6, 9, 10], [16, 2, 6, 14], [4, 17, 6, 13]]


def main(ws: str) -> None:
    dm = DistilledDatamodel(ws).load()
    data = load_data(dm.config.data, ws)
    F = dm.fitted()
    cache = RetrainCache(dm.ws.path("check", "references-retrain"), F.model, F.trajectory.checkpoint(0), data.train,
                         F.groups, dm.config.train, torch.cat([data.test.x, data.train.x]),
                         threads=dm.training_threads())
    n = len(data.test)
    print(f"# {ws}: reference unlearners on the probe's draws (exact: the target's data order)\n")
    print("| draw | unlearner | test acc. | minus exact | removed acc. | agreement | seconds |")
    print("|---|---|---|---|---|---|---|")
    within: dict[str, int] = {}
    final, cfg = F.trajectory.final, dm.config.train
    for rem in DRAWS:
        gone = torch.isin(F.groups.assignment, torch.as_tensor(rem))
        t0 = time.perf_counter()
        exact = cache.get(rem)
        ex_seconds = cache.seconds(rem) if cache.has(rem) else time.perf_counter() - t0
        ex_test, ex_removed = exact[:n].argmax(1), exact[n:][gone].argmax(1)
        ex_acc = float((ex_test == data.test.y).float().mean())
        ex_rem = float((ex_removed == data.train.y[gone]).float().mean())
        print(f"| {','.join(map(str, rem))} | exact retraining | {100 * ex_acc:.1f} | | {100 * ex_rem:.1f} | | "
              f"{ex_seconds:.1f} |")
        keep = ~gone
        makers = {
            "no unlearning": lambda: F.model,
            "DDM": lambda rem=rem: dm.unlearn(rem, name="references"),
            "fine-tune on the rest, 1 epoch": lambda keep=keep: finetune_rest(F.model, final, data.train, keep, cfg),
            "NegGrad+ 0.99, 1 epoch": lambda keep=keep: neggrad_plus(F.model, final, data.train, keep, cfg),
            "last layer retrained on the rest": lambda keep=keep: retrain_head(F.model, final, data.train, keep, cfg,
                                                                               F.trajectory.checkpoint(0)),
        }
        for what, make in makers.items():
            t0 = time.perf_counter()
            model = make()
            seconds = time.perf_counter() - t0
            pt = devices.predict(model, data.test.x).argmax(1)
            pr = devices.predict(model, data.train.x[gone]).argmax(1)
            acc = float((pt == data.test.y).float().mean())
            gap = 100 * (acc - ex_acc)
            within[what] = within.get(what, 0) + (abs(gap) <= 3)
            print(f"| | {what} | {100 * acc:.1f} | {gap:+.1f} | "
                  f"{100 * float((pr == data.train.y[gone]).float().mean()):.1f} | "
                  f"{100 * float((pt == ex_test).float().mean()):.1f} | {seconds:.2f} |")
    print("\nwithin 3 points of exact retraining's test accuracy, of", len(DRAWS), "draws:",
          ", ".join(f"{k} {v}" for k, v in within.items()))


if __name__ == "__main__":
    main(sys.argv[1])
