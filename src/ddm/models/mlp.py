"""A plain multilayer perceptron on flattened images."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """Input ``[N, C, H, W]`` -> logits ``[N, num_classes]`` through ``depth`` ReLU layers of ``width``.

    ``depth`` 0 is softmax regression: the one Linear layer is the head, and its features are the pixels."""

    def __init__(self, in_features: int, num_classes: int, width: int = 256, depth: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        d = in_features
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        layers.append(nn.Linear(d, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
