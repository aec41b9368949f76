"""Emulated retraining (Eq. 9): fine-tune theta_tau on the synsets of the deleted groups.

The loss of one perturbation is ``sum_{k deleted} mean_{s in S_k} CE(f(s), t_s)`` (``sum``,
matching Eq. 3-4 where each deleted group's synset undoes that group's share), or that sum
divided by the number of deleted groups (``mean``). Plain full-batch gradient descent with
learning rate ``lr`` for ``steps`` steps. :func:`finetune_reference` is the readable one-model
loop; :mod:`ddm.emulate.batched` runs many perturbations at once and must agree with it.
"""

from __future__ import annotations

import torch
from torch import nn

from ddm.distill.synset import Synset, soft_cross_entropy
from ddm.models import with_params

Params = dict[str, torch.Tensor]


def image_weights(deleted: torch.Tensor, ipc: int, reduction: str) -> torch.Tensor:
    """Per-synthetic-image loss weights ``[..., K*ipc]`` from deletion masks ``[..., K]``."""
    d = deleted.float()
    w = d.repeat_interleave(ipc, dim=-1) / ipc
    if reduction == "mean":
        w = w / d.sum(-1, keepdim=True).clamp(min=1.0)
    return w


def finetune_reference(
    model: nn.Module, params: Params, synset: Synset, deleted: torch.Tensor, lr: float, steps: int,
    reduction: str = "sum",
) -> Params:
    """Fine-tune a copy of ``model`` (starting at ``params``) for one deletion mask ``[K]``."""
    net = with_params(model, params)
    x, t, _ = synset.flat()
    w = image_weights(deleted, synset.ipc, reduction)
    used = w > 0  # images of kept groups have weight 0: no forward or backward for them
    x, t, w = x[used], t[used], w[used]
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(steps):
        loss = (w * soft_cross_entropy(net(x), t)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().clone() for k, v in net.named_parameters()}
