"""Unlearning fidelity: how close is an approximate unlearner to exact retraining without the same groups?

Unlearners compared (all start from theta_tau): ``DDM`` / ``DDM-match``, what ``ddm unlearn`` does with
each recipe's synsets; the reference unlearners of :mod:`ddm.baselines.unlearners` (fine-tune on the rest,
NegGrad+), which read the training data. Metrics (on the test split and on the removed training data): accuracy,
mean Jensen-Shannon divergence of the softmax outputs to the retrained model's, and top-1 agreement with it.
"""

from __future__ import annotations

import torch


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
