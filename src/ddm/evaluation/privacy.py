"""How much a synset reveals of the training images: similarity of each synthetic image to its nearest
training image (cosine of the normalised pixel vectors; 1 = a copy)."""

from __future__ import annotations

from typing import Any

import torch


def nearest_similarity(synthetic: torch.Tensor, train_x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Max cosine similarity ``[M]`` of each synthetic image ``[M, C, H, W]`` to the training images."""
    s = torch.nn.functional.normalize(synthetic.flatten(1), dim=1)
    best = torch.full((len(s),), -1.0)
    for i in range(0, len(train_x), chunk):
        t = torch.nn.functional.normalize(train_x[i : i + chunk].flatten(1), dim=1)
        best = torch.maximum(best, (s @ t.T).max(1).values)
    return best


def synset_similarity(synset: Any, train_x: torch.Tensor) -> float:
    """Mean over a synset's images of :func:`nearest_similarity` (how much the synset reveals)."""
    return float(nearest_similarity(synset.images.flatten(0, 1), train_x).mean())
