"""What every distillation loop shares: one checked optimisation step, and the optimizer state of a
checkpoint per optimised leaf (so a killed run resumes identically)."""

from __future__ import annotations

import math
from typing import Any

import torch

from ddm.exceptions import NumericalError


def matching_step(opt: torch.optim.Optimizer, loss: torch.Tensor, it: int, per: int, losses: list[float],
                  pbar: Any, what: str, hint: str, total: float | None = None, backward: bool = True) -> None:
    """One step on the matching ``loss`` (an error naming ``what`` and ``hint`` if it is not finite); the
    loss per group (``per`` groups) is appended to ``losses`` and shown on ``pbar``. ``total``: the loss of all
    groups when this process optimises only its share of them (``loss``; :mod:`ddm.distributed`). ``backward``
    False: the caller has already put the loss's gradients in place (a loss differentiated in chunks)."""
    value = loss.item() if total is None else total
    if not math.isfinite(value):
        raise NumericalError(f"{what} diverged at step {it} (matching loss {value}); nothing was saved. {hint}")
    if backward:
        opt.zero_grad(set_to_none=True)
        loss.backward()
    opt.step()
    losses.append(value / per)
    pbar.update(1)
    pbar.set_postfix(loss=f"{losses[-1]:.4f}")


def optimizer_state(opt: torch.optim.Optimizer, leaves: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{"opt/<leaf>/<name>": tensor}`` (SGD momentum; Adam moments and step) for each leaf."""
    state = {}
    for i, leaf in enumerate(leaves):
        for name, value in opt.state.get(leaf, {}).items():
            if name == "momentum_buffer":
                state[f"momentum/{i}"] = value  # the key of checkpoints written before this helper
            elif torch.is_tensor(value):
                state[f"opt/{i}/{name}"] = value
    return state


def restore_optimizer_state(opt: torch.optim.Optimizer, leaves: list[torch.Tensor],
                            state: dict[str, torch.Tensor]) -> None:
    """Put what :func:`optimizer_state` saved back into ``opt``."""
    for i, leaf in enumerate(leaves):
        if f"momentum/{i}" in state:
            opt.state[leaf]["momentum_buffer"] = state[f"momentum/{i}"].clone().to(leaf.device)
        for key, value in state.items():
            if key.startswith(f"opt/{i}/"):
                opt.state[leaf][key.split("/", 2)[2]] = value.clone().to(leaf.device) if value.ndim else value.clone()
