"""A diagnostic on the two-groups-per-class probe (probe.sh; measured once, used for no choice): from DDM's unlearned
model, ascend the removed training samples' loss (and descend the kept ones', full batch, SGD at 0.01) over the last
layer ("head") or every parameter ("all") until the removed samples' accuracy reaches exact retraining's (the target
data order): an oracle that knows how far retraining forgets them. Does that land on exact retraining's test accuracy?

    .venv/bin/python benchmarks/results/probes-024/oracle.py runs/p24/mlp20 head
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from ddm.cli.common import load_data
from ddm.distill.head import Head
from ddm.evaluation.retrain import RetrainCache
from ddm.pipeline import DistilledDatamodel

DRAWS = [[15, 5, 9, 6], [13, 8, 17, 7], [15, 11, 13, 16], [19, 6, 9, 10], [16, 2, 6, 14], [4, 17, 6, 13]]


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main(ws: str, scope: str) -> None:
    torch.manual_seed(0)
    dm = DistilledDatamodel(ws).load()
    data = load_data(dm.config.data, ws)
    fit = dm.fitted()
    cache = RetrainCache(dm.ws.path("check", "references-retrain"), fit.model, fit.trajectory.checkpoint(0),
                         data.train, fit.groups, dm.config.train, torch.cat([data.test.x, data.train.x]),
                         threads=dm.training_threads())
    n = len(data.test)
    for rem in DRAWS:
        gone = torch.isin(fit.groups.assignment, torch.as_tensor(rem))
        exact = cache.get(rem)
        ex_test = float((exact[:n].argmax(1) == data.test.y).float().mean())
        ex_removed = float((exact[n:][gone].argmax(1) == data.train.y[gone]).float().mean())
        model = dm.unlearn(rem, name="oracle").eval()
        params = list(Head.of(model).linear.parameters()) if scope == "head" else list(model.parameters())
        opt = torch.optim.SGD(params, lr=0.01)
        xr, yr = data.train.x[gone], data.train.y[gone]
        xk, yk = data.train.x[~gone], data.train.y[~gone]
        steps = 0
        while steps < 400 and accuracy(model, xr, yr) > ex_removed:
            loss = -F.cross_entropy(model(xr), yr) + F.cross_entropy(model(xk), yk)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
        print(rem, f"exact test {100 * ex_test:.1f} removed {100 * ex_removed:.1f} | oracle-{scope} after {steps} "
              f"steps: test {100 * accuracy(model, data.test.x, data.test.y):.1f} removed "
              f"{100 * accuracy(model, xr, yr):.1f} kept {100 * accuracy(model, xk, yk):.1f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "head")
