"""The optimizer state of a distillation checkpoint, per optimised leaf (so a killed run resumes identically)."""

from __future__ import annotations

import torch


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
            opt.state[leaf]["momentum_buffer"] = state[f"momentum/{i}"].clone()
        for key, value in state.items():
            if key.startswith(f"opt/{i}/"):
                opt.state[leaf][key.split("/", 2)[2]] = value.clone()
