"""How much of a retrain's loss is its fewer steps: the full training data retrained from theta_0 taking only the
steps (and the rate schedule) of a retrain without a share of it (``train_model(..., subsample=1 - share)``: each
epoch takes the first part of its order, every sample stays in play), in the target's data order; test accuracy
beside the target's. Compared with exact retraining without that share (``ddm unlearn --verify``), it splits the
loss into the steps' part and the removed data's.

    .venv/bin/python benchmarks/results/probes-rgb/fewer_steps.py runs/rgb/rgb2 0.0953
"""

from __future__ import annotations

import copy
import sys

import torch

import ddm
from ddm import progress
from ddm.train.loop import accuracy, train_model


def main(workspace: str, share: float) -> None:
    torch.set_num_threads(1)
    progress.set_enabled(False)
    dm = ddm.DistilledDatamodel(workspace).load()
    data = ddm.data.load(dm.config.data)
    fitted = dm.fitted()
    model = copy.deepcopy(fitted.model)
    model.load_state_dict({**model.state_dict(), **fitted.trajectory.checkpoint(0)})
    train_model(model, data.train, dm.config.train, subsample=1 - share)
    print(f"{workspace}: target {100 * accuracy(fitted.model, data.test):.1f}%; all data, the steps of a retrain "
          f"without {100 * share:.1f}% of it: {100 * accuracy(model, data.test):.1f}%")


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
