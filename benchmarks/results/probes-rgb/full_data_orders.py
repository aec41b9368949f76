"""Retraining's own spread on a probe's workspace: the full training data retrained from theta_0 in the target's data
order and in two others (the seeds `ddm unlearn --verify 3` uses for its other orders), test accuracy of each.

    .venv/bin/python benchmarks/results/probes-rgb/full_data_orders.py runs/rgb/rgb2
"""

from __future__ import annotations

import sys

import torch

import ddm
from ddm import devices
from ddm.evaluation.retrain import RetrainCache


def main(workspace: str) -> None:
    torch.set_num_threads(1)
    dm = ddm.DistilledDatamodel(workspace).load()
    data = ddm.data.load(dm.config.data)
    fitted = dm.fitted()
    cache = RetrainCache(dm.ws.path("check", "full-data-orders"), fitted.model, fitted.trajectory.checkpoint(0),
                         data.train, fitted.groups, dm.config.train, data.test.x, device=devices.of(fitted.model),
                         threads=dm.training_threads())
    accs = [float((cache.get([], seed).argmax(1) == data.test.y).float().mean()) for seed in (None, 1000, 1001)]
    print(workspace, "full-data retrain test accuracy, the target's order then two others:",
          [round(100 * a, 1) for a in accs])


if __name__ == "__main__":
    main(sys.argv[1])
