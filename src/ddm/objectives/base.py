"""What an objective is: how to read outputs from emulated models and how to rank groups by their effect.

Sign convention, used everywhere in ddm: the attribution matrix fits
``output(p) = W p + b`` with ``p_k = 1`` when group k is *kept*. Removing group k from the full
data therefore changes the output by ``effect_k = -W_k``. Each objective turns ``effect`` into a
ranking ``score`` (higher = ranked first) and says in ``score_meaning`` what that ranking means.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Objective(ABC):
    """A behaviour of the model to attribute.

    ``per_target``: True when every target sample has its own outputs (influence on test samples);
    False when the targets form one set with shared outputs (accuracy, F1, ...). ``differentiable``: the outputs
    have useful derivatives in the logits (``emulate.readout=checkpoints`` expands them to first order).
    """

    name: str = "objective"
    per_target: bool = True
    differentiable: bool = True
    score_meaning: str = ""

    @abstractmethod
    def outputs(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Logits ``[P, N, C]`` of P models on N targets, labels ``[N]`` -> outputs ``[P, T, O]``.

        ``T = N`` for per-target objectives and ``T = 1`` for set objectives.
        """

    @abstractmethod
    def score(self, effect: torch.Tensor) -> torch.Tensor:
        """Predicted removal effects ``[T, K, O]`` -> ranking scores ``[T, K]`` (higher first)."""

    def output_names(self, num_classes: int) -> list[str]:
        return [self.name]
