"""Differentiable siamese augmentation (DSA): one random transform, applied alike to real and synthetic images.

A strategy is an ``_``-joined subset of ``color, crop, cutout, flip, scale, rotate`` (or ``none``).
:func:`sample` draws one parameter set; :func:`apply` applies it to any batch, differentiably in
the images, so the same draw can transform the real batch and the synthetic images of a step.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ddm.exceptions import ConfigError

OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")
SCALE, ROTATE_DEG, CROP, CUTOUT = 1.2, 15.0, 0.125, 0.5


def parse_strategy(strategy: str) -> tuple[str, ...]:
    if strategy in ("", "none"):
        return ()
    ops = tuple(strategy.split("_"))
    bad = [o for o in ops if o not in OPS]
    if bad:
        raise ConfigError(f"unknown augmentation {bad}; use '_'-joined names from {', '.join(OPS)} or 'none'")
    return ops


def sample(strategy: str, generator: torch.Generator) -> dict[str, Any]:
    """Draw one set of augmentation parameters."""

    def u() -> float:
        return float(torch.rand((), generator=generator))

    p: dict[str, Any] = {}
    for op in parse_strategy(strategy):
        if op == "color":
            p["brightness"] = u() - 0.5
            p["contrast"] = u() + 0.5
        elif op == "crop":
            p["shift"] = ((u() - 0.5) * 4 * CROP, (u() - 0.5) * 4 * CROP)
        elif op == "scale":
            p["scale"] = (SCALE ** (2 * u() - 1), SCALE ** (2 * u() - 1))
        elif op == "rotate":
            p["angle"] = math.radians((2 * u() - 1) * ROTATE_DEG)
        elif op == "flip":
            p["flip"] = u() < 0.5
        elif op == "cutout":
            p["cutout"] = (u(), u())
    return p


def apply(x: torch.Tensor, p: dict[str, Any]) -> torch.Tensor:
    """Apply parameters from :func:`sample` to images ``[..., C, H, W]`` (any leading dims)."""
    if not p:
        return x
    lead = x.shape[:-3]
    x = x.reshape(-1, *x.shape[-3:])
    if "brightness" in p:
        x = x + p["brightness"]
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * p["contrast"] + mean
    if "flip" in p and p["flip"]:
        x = x.flip(-1)
    if any(k in p for k in ("shift", "scale", "angle")):
        sx, sy = p.get("scale", (1.0, 1.0))
        a = p.get("angle", 0.0)
        tx, ty = p.get("shift", (0.0, 0.0))
        theta = torch.tensor(
            [[sx * math.cos(a), -sy * math.sin(a), tx], [sx * math.sin(a), sy * math.cos(a), ty]],
            dtype=x.dtype,
        )
        grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=True)
        x = F.grid_sample(x, grid, align_corners=True)
    if "cutout" in p:
        h, w = x.shape[-2:]
        ch, cw = max(1, int(h * CUTOUT)), max(1, int(w * CUTOUT))
        cy, cx = int(p["cutout"][0] * h), int(p["cutout"][1] * w)
        mask = torch.ones(h, w, dtype=x.dtype)
        mask[max(0, cy - ch // 2) : cy + ch // 2 + ch % 2, max(0, cx - cw // 2) : cx + cw // 2 + cw % 2] = 0
        x = x * mask
    return x.reshape(*lead, *x.shape[-3:])
