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


def pixels(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """A normalised image ``[C, H, W]`` back in [0, 1] for display: ``[H, W]`` (gray) or ``[H, W, 3]``. A feature
    vector (``[D, 1, 1]``, standardised per feature) is a gray strip ``[1, D]``: -3 to +3 standard deviations from
    black to white."""
    if tuple(x.shape[1:]) == (1, 1):
        return ((x.float().flatten() + 3) / 6).clamp(0, 1)[None, :].numpy()
    img = x.float() * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
    arr = img.clamp(0, 1).permute(1, 2, 0).numpy()
    if arr.shape[-1] == 1:
        return arr[..., 0]
    return arr[..., :3] if arr.shape[-1] >= 3 else arr.mean(-1)


def synset_grid(panels: list[tuple[str, Synset]], groups: Groups, data: Any, path: str | Path | None = None,
                per_class: int | None = None, max_classes: int = 10) -> Any:
    """Rows: classes; one panel per ``(title, synset)`` with the first synthetic image of up to ``per_class``
    groups of each class (default: the most groups any class has, at most 8), each labelled with its group id.

    Titles are the caller's (name the recipe that made each synset). Saved to ``path`` when given; the
    figure is returned (closed) either way."""
    plt = _plt()
    n_cls = min(int(data.num_classes), max_classes)
    counts = [len(groups.of_classes([c])) for c in range(n_cls)]
    per_class = per_class or max(1, min(max(counts), 8))
    cols = len(panels) * per_class
    fig, axes = plt.subplots(n_cls, cols, figsize=(max(cols * 0.8, 3), n_cls * 0.9 + 0.4), squeeze=False)
    names = data.class_names or [str(c) for c in range(data.num_classes)]
    for c in range(n_cls):
        gs = groups.of_classes([c])[:per_class].tolist()
        for p, (_, syn) in enumerate(panels):
            for j in range(per_class):
                ax = axes[c, p * per_class + j]
                ax.set_xticks([])
                ax.set_yticks([])
                for sp in ax.spines.values():
                    sp.set_visible(False)
                if j < len(gs):
                    ax.imshow(pixels(syn.images[gs[j], 0], data.mean, data.std), cmap="gray", vmin=0, vmax=1)
                    ax.set_title(f"g{gs[j]}", fontsize=6, pad=1)
                if p == 0 and j == 0:
                    ax.set_ylabel(names[c], fontsize=7, rotation=0, ha="right", va="center")
    for p, (title, _) in enumerate(panels):
        axes[0, p * per_class].annotate(title, (0, 1.45), xycoords="axes fraction", fontsize=8, ha="left")
    fig.subplots_adjust(left=0.1, right=0.98, top=1 - 0.55 / (n_cls * 0.9 + 0.4), bottom=0.02, wspace=0.15,
                        hspace=0.45)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


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
