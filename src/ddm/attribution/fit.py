"""From emulated outputs to an attribution matrix (Eq. 7-8), flat or hierarchical (Sec. 3.3)."""

from __future__ import annotations

import torch

from ddm.attribution.matrix import AttributionMatrix
from ddm.attribution.regression import WeightedLeastSquares
from ddm.cluster.groups import Groups
from ddm.emulate.perturbations import perturbation_weights
from ddm.objectives.base import Objective


def fit_attribution(
    keep: torch.Tensor,
    outputs: torch.Tensor,
    objective: Objective,
    groups: Groups,
    target_ids: list[int],
    num_classes: int,
    weighting: str = "inverse_deletions",
    ridge: float = 0.0,
    meta: dict | None = None,
) -> AttributionMatrix:
    """Regress objective outputs ``[P, T, O]`` on keep-masks ``[P, K]`` for every target and output at once."""
    P, T, O = outputs.shape
    reg = WeightedLeastSquares(ridge).fit(keep, outputs.reshape(P, T * O), perturbation_weights(keep, weighting))
    weights = reg.coef_.reshape(T, O, -1).permute(0, 2, 1).contiguous()  # [T, K, O]
    bias = reg.intercept_.reshape(T, O)
    return AttributionMatrix(weights, bias, objective.score(-weights), objective.name, objective.score_meaning,
                             objective.output_names(num_classes), target_ids, groups, None, meta)
