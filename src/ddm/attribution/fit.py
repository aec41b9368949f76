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


def unmoved(outputs: torch.Tensor) -> torch.Tensor:
    """``[T, O]``: the outputs ``[P, T, O]`` that took the same value under every perturbation (up to rounding): a
    metric over a few targets (accuracy, F1) moves only where a prediction flips, and may never do."""
    if len(outputs) == 0:
        return torch.zeros(outputs.shape[1:], dtype=torch.bool)
    spread = outputs.amax(0) - outputs.amin(0)
    return spread <= 1e-12 * (1 + outputs.abs().amax(0))


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
    still = unmoved(outputs)
    if still.any():  # the exact fit of a constant is W = 0; the solver's is rounding noise, which would rank groups
        weights = weights.masked_fill(still[:, None, :], 0.0)
        bias = torch.where(still, outputs[0].to(bias.dtype), bias)
    if labels is not None and other_class_scale != 1.0:
        weights, bias = balance_classes(weights, bias, groups, labels, other_class_scale, columns)
    return AttributionMatrix(weights, bias, objective.score(-weights), objective.name, objective.score_meaning,
                             objective.output_names(num_classes), target_ids, groups, None, meta)


def fit_linearised(
    logits: torch.Tensor,
    shifts: torch.Tensor,
    keep: torch.Tensor,
    objective: Objective,
    labels: torch.Tensor,
    groups: Groups,
    target_ids: list[int],
    num_classes: int,
    weighting: str = "inverse_deletions",
    meta: dict | None = None,
    other_class_scale: float = 1.0,
    columns: torch.Tensor | None = None,
    chunk: int = 256,
) -> AttributionMatrix:
    """The attribution matrix of an emulation whose logits are linear in the deletions, ``z + sum_{k deleted}
    S_k`` (the Newton step's: ``logits [N, C]``, ``shifts [K, N, C]``), without the regression over ``[P, K]``:
    for independent keep-masks the regression coefficient of group k is ``E[f(u) | k kept] - E[f(u) | k deleted]``
    = ``-E[grad f(u)] . S_k`` up to third order in ``S_k`` (at ``keep_prob`` 0.5, the perturbations' mean is the
    midpoint of k's two states), so the objective's Jacobian in each target's logits is averaged over the
    perturbations ``keep [P, K']`` (weighted as Eq. 8) and applied to every group's shift. Memory and time linear in
    K: per-sample groups of tens of thousands of samples, where the regression needs ``(K + 1)^2`` floats and
    ``P K^2`` work. Needs a per-target objective differentiable in the logits. ``columns``: the groups the
    keep-masks' columns stand for (the rest kept)."""
    S = shifts if columns is None else shifts[columns]
    K, N, C = S.shape
    labels = labels.to(logits.device)
    beta = perturbation_weights(keep, weighting).double()
    beta = beta / beta.sum()
    flat = S.reshape(K, N * C)

    def f(u: torch.Tensor) -> torch.Tensor:
        return objective.outputs(u, labels)

    jac = mean_out = None
    eye = torch.eye(C, dtype=logits.dtype)
    for s in range(0, len(keep), chunk):
        d = (~keep[s:s + chunk]).to(flat.dtype)
        u = logits[None] + (d @ flat).reshape(len(d), N, C)
        b = beta[s:s + chunk]
        y = f(u).double()  # [p, N, O]
        # the Jacobian of each target's outputs in its own logits (per-target objectives): one jvp per logit
        J = torch.stack([torch.func.jvp(f, (u,), (eye[c].expand_as(u),))[1].double() for c in range(C)], -1)
        part_j, part_y = torch.einsum("p,pnoc->noc", b, J), torch.einsum("p,pno->no", b, y)
        jac = part_j if jac is None else jac + part_j
        mean_out = part_y if mean_out is None else mean_out + part_y
    assert jac is not None and mean_out is not None
    weights = -torch.einsum("noc,knc->nko", jac, S.double())  # coefficient of keeping each group
    mean_keep = torch.einsum("p,pk->k", beta, keep.double())
    bias = mean_out - torch.einsum("nko,k->no", weights, mean_keep)
    weights, bias = weights.float(), bias.float()
    if other_class_scale != 1.0:
        weights, bias = balance_classes(weights, bias, groups, labels.cpu(), other_class_scale, columns)
    return AttributionMatrix(weights, bias, objective.score(-weights), objective.name, objective.score_meaning,
                             objective.output_names(num_classes), target_ids, groups, None, meta)
