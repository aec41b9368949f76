"""From emulated outputs to an attribution matrix (Eq. 7-8), flat or hierarchical (Sec. 3.3)."""

from __future__ import annotations

import torch

from ddm.attribution.matrix import AttributionMatrix
from ddm.attribution.regression import WeightedLeastSquares
from ddm.cluster.groups import Groups
from ddm.emulate.perturbations import perturbation_weights
from ddm.objectives.base import Objective


def balance_classes(weights: torch.Tensor, bias: torch.Tensor, groups: Groups, labels: torch.Tensor,
                    scale: float, columns: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights ``[T, K, O]`` with each group's weight for target t scaled by ``scale + (1 - scale) share_k(y_t)``
    (``share_k(c)``: the fraction of group k's samples of class c; for groups of one class, 1 for the target's own
    class and ``scale`` for the others), and the intercept ``[T, O]`` moved so that the full data's prediction
    (every group kept) is unchanged. ``columns``: the groups of the weights' columns, where they are not all K.

    Exact retraining weighs the groups of a target's own class far more against those of the other classes than
    the emulated step does (benchmarks/class_balance.py: the per-target least-squares balance of the retrained
    losses is 0.04-0.45 of DDM's): this is the correction, chosen on the selection configurations. The ranking of
    the groups within the own class, and within the other classes, is unchanged."""
    counts = groups.class_count_matrix().to(weights.dtype)  # [K, classes]
    share = counts / counts.sum(1, keepdim=True).clamp(min=1)
    if columns is not None:
        share = share[columns]
    y = labels.long().clamp(0, share.shape[1] - 1)
    own = share[:, y].T * (labels[:, None] < share.shape[1])  # [T, K]; a label no group holds: no own class
    factor = (scale + (1 - scale) * own)[..., None]
    scaled = weights * factor
    return scaled, bias + (weights - scaled).sum(1)


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
    labels: torch.Tensor | None = None,
    other_class_scale: float = 1.0,
    columns: torch.Tensor | None = None,
) -> AttributionMatrix:
    """Regress objective outputs ``[P, T, O]`` on keep-masks ``[P, K]`` for every target and output at once; with
    the targets' ``labels`` (per-target objectives), :func:`balance_classes` by ``other_class_scale`` (``columns``:
    the groups the keep-masks' columns stand for, where they are not all of ``groups``)."""
    P, T, O = outputs.shape
    reg = WeightedLeastSquares(ridge).fit(keep, outputs.reshape(P, T * O), perturbation_weights(keep, weighting))
    weights = reg.coef_.reshape(T, O, -1).permute(0, 2, 1).contiguous()  # [T, K, O]
    bias = reg.intercept_.reshape(T, O)
    if labels is not None and other_class_scale != 1.0:
        weights, bias = balance_classes(weights, bias, groups, labels, other_class_scale, columns)
    return AttributionMatrix(weights, bias, objective.score(-weights), objective.name, objective.score_meaning,
                             objective.output_names(num_classes), target_ids, groups, None, meta)
