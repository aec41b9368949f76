"""AlexNet's layout, sized for small images, without BatchNorm or dropout (a pure function of its weights).

Five 3x3 convolutions (the dataset-distillation literature's AlexNet for 32x32 inputs: 64-192-384-256-256
channels at ``width`` 64) with ReLU and three 2x2 max-pools, then two hidden fully connected layers and
the classifier. ``width`` scales every layer; pooling stops once the feature map is 1x1.
"""

from __future__ import annotations

import torch
from torch import nn


class AlexNet(nn.Module):
    def __init__(self, in_channels: int, image_size: tuple[int, int], num_classes: int, width: int = 64) -> None:
        super().__init__()
        chans = [width, 3 * width, 6 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        c, size = in_channels, min(image_size)
        for i, cout in enumerate(chans):
            layers += [nn.Conv2d(c, cout, 3, 1, 1), nn.ReLU()]
            if i in (0, 1, 4) and size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            c = cout
        self.features = nn.Sequential(*layers)
        hidden = 16 * width
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.classifier(self.fc(f.mean(dim=(2, 3))))
