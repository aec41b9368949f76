"""ResNet-18's layout (4 stages of 2 basic blocks) with GroupNorm instead of BatchNorm (``norm="batchnorm"``: with
BatchNorm, as published).

GroupNorm keeps the model free of running statistics (safe under ``vmap``), as the dataset-distillation
literature does; BatchNorm's running statistics are recorded with the trajectory at every checkpoint.
``width`` is the first stage's channels (64 in ResNet-18; stages double it), ``depth`` the number of stages used
(4 in ResNet-18). Small inputs (8x8 digits) simply stop downsampling at 1x1.
"""

from __future__ import annotations

import torch
from torch import nn


def _gn(channels: int, norm: str = "groupnorm") -> nn.Module:
    if norm == "batchnorm":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(min(32, max(1, channels // 4)), channels, affine=True)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: str = "groupnorm") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = _gn(cout, norm)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = _gn(cout, norm)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _gn(cout, norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """Input ``[N, C, H, W]`` -> logits ``[N, num_classes]``; ends in global average pooling and one Linear."""

    def __init__(self, in_channels: int, image_size: tuple[int, int], num_classes: int, width: int = 64,
                 depth: int = 4, blocks: int = 2, norm: str = "groupnorm") -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), _gn(width, norm), nn.ReLU())
        layers: list[nn.Module] = []
        c, size = width, min(image_size)
        for stage in range(depth):
            cout = width * 2 ** stage
            for b in range(blocks):
                stride = 2 if (stage > 0 and b == 0 and size > 1) else 1
                if stride == 2:
                    size = (size + 1) // 2
                layers.append(BasicBlock(c, cout, stride, norm))
                c = cout
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.layers(self.stem(x)).mean(dim=(2, 3)))
