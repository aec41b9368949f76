"""Influence on single test samples: the paper's Dist1, Dist2 and Dist3 (Eq. 10)."""

from __future__ import annotations

import torch

from ddm.objectives.base import Objective


class Dist1(Objective):
    """Output = the softmax confidence vector; score = ||effect||_2 (most influential first)."""

    name = "dist1"
    score_meaning = "L2 change of the confidence vector when the group is removed (largest first)"

    def outputs(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return logits.softmax(-1)

    def score(self, effect: torch.Tensor) -> torch.Tensor:
        return effect.norm(dim=-1)

    def output_names(self, num_classes: int) -> list[str]:
        return [f"p{c}" for c in range(num_classes)]


class Dist2(Objective):
    """Output = cross-entropy on the true label; score = its increase when the group is removed."""

    name = "dist2"
    score_meaning = "increase of the test loss on the true label when the group is removed (largest first)"

    def outputs(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logp = logits.log_softmax(-1)
        return -logp.gather(-1, labels.view(1, -1, 1).expand(logp.shape[0], -1, 1))

    def score(self, effect: torch.Tensor) -> torch.Tensor:
        return effect[..., 0]


class Dist3(Dist1):
    """Same outputs as Dist1; score = 1 / (1 + ||effect||_2): the *least* influential groups first."""

    name = "dist3"
    score_meaning = "1/(1+L2 change of the confidence vector): least influential groups first"

    def score(self, effect: torch.Tensor) -> torch.Tensor:
        return 1.0 / (1.0 + effect.norm(dim=-1))
