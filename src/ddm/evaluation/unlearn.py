"""Unlearning fidelity: how close is an approximate unlearner to exact retraining without the same groups?

Unlearners compared (all start from theta_tau):
* ``DDM`` / ``DDM-match``: fine-tune on the removed groups' synsets (the online emulation, Eq. 9);
* ``fine-tune on remaining``: one epoch of the target's SGD on the remaining data;
* ``gradient ascent``: one epoch of SGD *ascent* on the removed data, same learning rate and batch size.
Metrics (on the test split and on the removed training data): accuracy, mean Jensen-Shannon
divergence of the softmax outputs to the retrained model's, and top-1 agreement with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ddm.config import TrainConfig
from ddm.data.dataset import Split
from ddm.models import with_params
from ddm.train.loop import epoch_order


def js_divergence(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Per-row Jensen-Shannon divergence (natural log, in [0, ln 2]) between two softmax outputs."""
    p, q = logits_a.softmax(-1), logits_b.softmax(-1)
    m = 0.5 * (p + q)

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * (a.clamp_min(1e-12).log() - b.clamp_min(1e-12).log())).sum(-1)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def compare(logits: torch.Tensor, reference: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy of ``logits``, and its JS divergence and top-1 agreement with ``reference``."""
    return {"accuracy": float((logits.argmax(1) == labels).float().mean()),
            "js": float(js_divergence(logits, reference).mean()),
            "agreement": float((logits.argmax(1) == reference.argmax(1)).float().mean())}


def sgd_epoch(model: nn.Module, params: dict[str, torch.Tensor], data: Split, cfg: TrainConfig,
              ascent: bool = False) -> nn.Module:
    """One epoch of plain SGD (or ascent) from ``params`` with the target's learning rate and batch size."""
    net = with_params(model, params)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr)
    order = epoch_order(len(data), cfg.seed, 10_000)
    sign = -1.0 if ascent else 1.0
    with torch.enable_grad():
        for b in range(0, len(data), cfg.batch_size):
            idx = order[b : b + cfg.batch_size]
            loss = sign * F.cross_entropy(net(data.x[idx]), data.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net
