"""The schedule term: a retrain without part of the data also takes fewer optimizer steps.

Exact retraining without a fraction f of the training samples keeps the number of epochs, so it takes f fewer
steps and ends nearer where the recorded training was at epoch tau (1 - f). DDM's emulated removal is a step at
theta_tau that does not see this. On most models it does not matter, but where a shorter training ends visibly
worse (a high effective learning rate: the weight-decayed momentum ConvNet of the benchmarks), removing *any* data
raises a target's loss roughly in proportion to how much is removed, and DDM ranks the groups of other classes the
wrong way round (BENCHMARKS.md, "What the remaining misses are made of").

The term adds, per target and output, ``weight x slope x f(p)`` to the prediction of a perturbation ``p`` that
removes the fraction ``f(p)`` of the training samples, where ``slope`` is the output's change from theta_tau back
to the recorded epoch tau / 2, per unit of removed fraction (a straight line through the point the perturbations
sit at: half of the groups kept). Being linear in the keep-mask, it is a per-group weight proportional to the
group's size. Its ``weight`` puts the two on one scale (DDM's predicted changes are far smaller than retraining's,
and by a factor that varies 10x between models): ``ddm check`` fits it on a workspace's own exact retrains and
says whether it helps there (``emulate.schedule_weight``; 0, the default, leaves the attribution as it was).
"""

from __future__ import annotations

import torch
from torch import nn

from ddm import devices
from ddm.attribution.matrix import AttributionMatrix
from ddm.cluster.groups import Groups
from ddm.objectives.base import Objective
from ddm.train.trajectory import Trajectory

#: the removed fraction the straight line is drawn through (the perturbations' keep_prob is 0.5)
REMOVED = 0.5


def rewound_change(model: nn.Module, trajectory: Trajectory, x: torch.Tensor, y: torch.Tensor, objective: Objective,
                   removed: float) -> torch.Tensor | None:
    """``[T, O]``: each output at the recorded epoch tau (1 - ``removed``) minus at theta_tau (where a retrain without
    that fraction of the samples stops, by the step count); None where the trajectory holds no checkpoint to
    interpolate that epoch from (it would lie between theta_0, a random initialisation, and the first recorded
    epoch)."""
    rewound = trajectory.at_epoch(float(trajectory.epochs[-1]) * (1 - removed))
    if rewound is None:
        return None
    def outputs(params: dict[str, torch.Tensor]) -> torch.Tensor:
        return objective.outputs(devices.predict(model, x, params=params)[None], y)[0].double()

    return (outputs(rewound) - outputs(trajectory.final)).float()


def schedule_slope(model: nn.Module, trajectory: Trajectory, x: torch.Tensor, y: torch.Tensor,
                   objective: Objective) -> torch.Tensor | None:
    """``[T, O]``: :func:`rewound_change` at :data:`REMOVED`, per unit of removed fraction (None where it is)."""
    change = rewound_change(model, trajectory, x, y, objective, REMOVED)
    return None if change is None else change / REMOVED


def add_schedule_term(attr: AttributionMatrix, slope: torch.Tensor, weight: float, groups: Groups,
                      objective: Objective, columns: torch.Tensor | None = None) -> AttributionMatrix:
    """``attr`` with ``weight x slope x f(p)`` added to every prediction (``f(p)``: the fraction of the training
    samples the perturbation removes; ``columns``: the groups of the weights' columns where they are not all of
    ``groups``, the others always kept): each kept group's weight falls by ``weight x slope x`` its share of the
    samples, and the intercept rises by the perturbed groups' total share, so the full data's prediction is
    unchanged. The scores follow the weights."""
    sizes = groups.sizes().double()
    share = (sizes / sizes.sum()).float()
    if columns is not None:
        share = share[columns]
    step = weight * slope[:, None, :] * share[None, :, None]  # [T, K, O]
    weights = attr.weights - step
    bias = attr.bias + weight * slope * share.sum()
    meta = {**(attr.meta or {}), "schedule_weight": weight}
    return AttributionMatrix(weights, bias, objective.score(-weights), attr.objective, attr.score_meaning,
                             attr.output_names, attr.target_ids, attr.groups, attr.evaluated, meta)
