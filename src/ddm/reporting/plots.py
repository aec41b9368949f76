"""Synset grids (the paper's Fig. 4) and class-level attribution heatmaps (Fig. 3) as PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ddm.attribution.matrix import AttributionMatrix
from ddm.cluster.groups import Groups
from ddm.distill.synset import Synset
from ddm.exceptions import require


def _plt() -> Any:
    require("matplotlib", "plots")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _show(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    img = x * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
    arr = img.clamp(0, 1).permute(1, 2, 0).numpy()
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def synset_grid(reverse: Synset, match: Synset, groups: Groups, data: Any, path: str | Path,
                per_class: int = 4) -> None:
    """Rows: classes; columns: ``per_class`` groups' first image, gradient matching | reverse matching."""
    plt = _plt()
    n_cls = data.num_classes if data.num_classes <= 10 else 10
    fig, axes = plt.subplots(n_cls, 2 * per_class, figsize=(2 * per_class * 0.9, n_cls * 0.9))
    for c in range(n_cls):
        gs = groups.of_classes([c])[:per_class].tolist()
        for j in range(per_class):
            for side, syn in enumerate((match, reverse)):
                ax = axes[c, side * per_class + j]
                ax.axis("off")
                if j < len(gs):
                    ax.imshow(_show(syn.images[gs[j], 0], data.mean, data.std), cmap="gray", vmin=0, vmax=1)
    axes[0, 0].set_title("gradient matching", loc="left", fontsize=8)
    axes[0, per_class].set_title("reverse gradient matching", loc="left", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def class_heatmap(attr: AttributionMatrix, labels: torch.Tensor, num_classes: int, path: str | Path) -> None:
    """Mean class-level score of each training class (columns) for the test samples of each class (rows)."""
    plt = _plt()
    m = torch.zeros(num_classes, attr.scores.shape[1])
    for c in range(num_classes):
        sel = labels == c
        if sel.any():
            m[c] = attr.scores[sel].mean(0)
    fig, ax = plt.subplots(figsize=(5, 4.3))
    im = ax.imshow(m.numpy(), cmap="viridis")
    ax.set_xlabel("training class (removed)")
    ax.set_ylabel("test class")
    ax.set_title(f"class-level attribution ({attr.objective} score)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
