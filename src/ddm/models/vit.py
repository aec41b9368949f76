"""A small Vision Transformer (patch embedding, pre-norm encoder blocks, mean pooling, a Linear head).

LayerNorm only (no running statistics), so it is a pure function of its weights. ``width`` is the
embedding size, ``depth`` the number of blocks; patches are 4x4 (2x2 for inputs of 16 pixels or less).
"""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, in_channels: int, image_size: tuple[int, int], num_classes: int, width: int = 64,
                 depth: int = 4, heads: int = 4) -> None:
        super().__init__()
        patch = 2 if min(image_size) <= 16 else 4
        self.embed = nn.Conv2d(in_channels, width, patch, patch)
        tokens = (image_size[0] // patch) * (image_size[1] // patch)
        self.pos = nn.Parameter(torch.zeros(1, tokens, width))
        nn.init.trunc_normal_(self.pos, std=0.02)
        heads = heads if width % heads == 0 else 1
        self.blocks = nn.Sequential(*[Block(width, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2) + self.pos
        return self.classifier(self.norm(self.blocks(t)).mean(dim=1))
