"""Synsets matched over the last block and the head, in the metric of a low-rank damped Newton step.

The head matcher (:mod:`ddm.distill.head`) makes each group's weighted synthetic images reproduce the group's
last-layer gradient. Over the last block as well, its synsets reproduce the direction of the group's gradient
(cosine 0.97-0.99 on the digits ResNet) but not its Newton step: the damped inverse of the curvature amplifies
what they miss (relative error 15 in that metric), and the deeper step on them attributes *worse* than the
head's (BENCHMARKS.md, "A Newton step over more of the network than the last layer"). Matching again in the
step's own metric, at every checkpoint the emulation averages over, brought the error to 0.6 in 200 Adam steps
and the LDS above the head's. This module holds that matching:

    min_{S, w}  mean_m mean_k |P_m (g~_k^m - g_k^m)|^2 / |P_m g_k^m|^2,
    g~_k^m = sum_{s in S_k} w_s grad_theta l(theta_m; x_s, y_s)   (over the scope's parameters)

with ``P_m`` member m's :class:`ddm.distill.scope.LowRankInverse` and ``g_k^m`` the group's real gradient there.
Not yet a recipe: the pipeline does not call it (the diagnostic in ``benchmarks/deeper_step.py`` does the same
computation with explicit Jacobians).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ddm.distill.scope import LowRankInverse, Params
from ddm.exceptions import NumericalError


def _per_sample(model: nn.Module, params: Params, names: list[str], x: torch.Tensor,
                targets: torch.Tensor) -> torch.Tensor:
    """``[B, P]``: each row's cross-entropy gradient (soft ``targets [B, C]``) over ``names``, flattened in order;
    differentiable in ``x`` (and in ``params``) when they require it."""
    free = {n: params[n] for n in names}
    fixed = {k: v for k, v in params.items() if k not in free}

    def loss(p: Params, xi: torch.Tensor, ti: torch.Tensor) -> torch.Tensor:
        z = functional_call(model, {**fixed, **p}, (xi[None],))[0]
        return -(ti * z.log_softmax(-1)).sum()

    per = vmap(grad(loss), in_dims=(None, 0, 0))(free, x, targets)
    return torch.cat([per[n].reshape(len(x), -1) for n in names], 1)


def group_gradients(model: nn.Module, params: Params, names: list[str], x: torch.Tensor, y: torch.Tensor,
                    assignment: torch.Tensor, num_groups: int, batch: int = 128) -> torch.Tensor:
    """``[K, P]``: each group's summed cross-entropy gradient over ``names`` at ``params`` (rows of ``x`` with
    labels ``y`` and groups ``assignment``), streamed ``batch`` rows at a time."""
    with torch.no_grad():
        C = functional_call(model, params, (x[:1],)).shape[-1]
    out: torch.Tensor | None = None
    for s in range(0, len(x), batch):
        t = torch.nn.functional.one_hot(y[s:s + batch], C).to(x.dtype)
        with torch.no_grad():
            g = _per_sample(model, params, names, x[s:s + batch], t)
        out = torch.zeros(num_groups, g.shape[1], dtype=g.dtype) if out is None else out
        out.index_add_(0, assignment[s:s + batch], g)
    assert out is not None
    return out


@dataclass
class MatchSite:
    """One member of the emulation's average: the parameters there, the damped inverse and the groups' real
    gradients ``[K, P]`` over the scope."""

    params: Params
    inverse: LowRankInverse
    real: torch.Tensor


def match_over_scope(model: nn.Module, names: list[str], sites: list[MatchSite], images: torch.Tensor,
                     labels: torch.Tensor, weights: torch.Tensor, num_classes: int, steps: int, lr_img: float,
                     lr_weight: float, tolerance: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Adam on the images ``[K, n, ...]`` and the log of their positive weights ``[K, n]`` (hard ``labels [K, n]``)
    for the matching loss of the module doc, summed over ``sites`` (averaged). Stops early once the loss is below
    ``tolerance``. Returns the images, the weights and the loss at every step; a non-finite loss is an error."""
    K, n = labels.shape
    group = torch.arange(K).repeat_interleave(n)
    targets = torch.nn.functional.one_hot(labels.reshape(-1), num_classes).to(images.dtype)
    norms = [site.inverse(site.real).pow(2).sum(1).clamp_min(1e-30) for site in sites]
    x = images.reshape(K * n, *images.shape[2:]).clone().requires_grad_(True)
    log_w = weights.reshape(-1).clamp_min(1e-12).log().clone().requires_grad_(True)
    opt = torch.optim.Adam([{"params": [x], "lr": lr_img}, {"params": [log_w], "lr": lr_weight}])
    losses: list[float] = []
    for _ in range(steps):
        opt.zero_grad()
        total = torch.zeros((), dtype=images.dtype)
        for site, norm in zip(sites, norms, strict=True):
            per = _per_sample(model, site.params, names, x, targets) * log_w.exp()[:, None]
            g = torch.zeros(K, per.shape[1], dtype=per.dtype).index_add(0, group, per)
            total = total + (site.inverse(g - site.real).pow(2).sum(1) / norm).mean() / len(sites)
        if not torch.isfinite(total):
            raise NumericalError("the matching over the last block diverged (a non-finite loss); lower the "
                                 "image learning rate")
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
        if losses[-1] < tolerance:
            break
    return x.detach().reshape(images.shape), log_w.detach().exp().reshape(K, n), losses
