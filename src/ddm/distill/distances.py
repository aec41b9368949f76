"""Distances between two gradients, each a dict ``name -> tensor`` of one model's parameter shapes.

``layerwise_cosine`` is Dataset Condensation's matching distance: each weight tensor is reshaped
to ``[out, -1]`` and ``sum_rows (1 - cos(row_a, row_b))`` is summed over layers; 1-D tensors
(biases, norm scales) are skipped, as in DC. ``cosine`` is one cosine over all parameters
flattened together; ``mse`` the summed squared difference; ``relative_mse`` that divided by the
target's squared norm. All are differentiable and vmap-safe.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ddm.registry import Registry

Grad = dict[str, torch.Tensor]
EPS = 1e-6

DISTANCES: Registry[Callable[[Grad, Grad], torch.Tensor]] = Registry("gradient distance")


@DISTANCES.register("layerwise_cosine")
def layerwise_cosine(a: Grad, b: Grad) -> torch.Tensor:
    total = torch.zeros(())
    for name, ga in a.items():
        if ga.ndim < 2:
            continue
        ra, rb = ga.reshape(ga.shape[0], -1), b[name].reshape(ga.shape[0], -1)
        cos = (ra * rb).sum(-1) / (ra.norm(dim=-1) * rb.norm(dim=-1) + EPS)
        total = total + (1 - cos).sum()
    return total


@DISTANCES.register("cosine")
def flat_cosine(a: Grad, b: Grad) -> torch.Tensor:
    va = torch.cat([g.flatten() for g in a.values()])
    vb = torch.cat([b[n].flatten() for n in a])
    return 1 - (va * vb).sum() / (va.norm() * vb.norm() + EPS)


@DISTANCES.register("mse")
def mse(a: Grad, b: Grad) -> torch.Tensor:
    return sum(((g - b[n]) ** 2).sum() for n, g in a.items())  # type: ignore[return-value]


@DISTANCES.register("relative_mse")
def relative_mse(a: Grad, b: Grad) -> torch.Tensor:
    """Squared error relative to the target ``b``'s squared norm: scale-free across groups, keeps magnitude."""
    num = sum(((g - b[n]) ** 2).sum() for n, g in a.items())
    den = sum((b[n] ** 2).sum() for n in a)
    return num / (den + EPS)  # type: ignore[operator,return-value]
