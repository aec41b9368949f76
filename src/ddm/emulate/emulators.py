"""The emulators of "retrain without the deleted groups", registered by name with one signature.

Each takes an :class:`Emulation` (the trained model, theta_tau, the synset, deletion masks ``[P, K]`` and
the inputs) and returns logits ``[P, N, C]``. The façade picks one by name (``emulate.method``; ``auto``
resolves by the synset's kind) and does not orchestrate emulation itself. Each has a reference test
(``tests/test_emulate.py``, ``tests/test_head.py``) and its output is checked by :mod:`ddm.health`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ddm.distill.synset import Synset
from ddm.emulate.batched import emulate_logits
from ddm.emulate.newton import newton_logits
from ddm.registry import Registry
from ddm.train.trajectory import Trajectory

log = logging.getLogger(__name__)


@dataclass
class Emulation:
    model: nn.Module
    params: dict[str, torch.Tensor]
    synset: Synset
    deleted: torch.Tensor  # [P, K] bool
    x: torch.Tensor  # [N, ...]
    lr: float = 0.0  # fine-tuning emulations: rate and steps
    steps: int = 0
    reduction: str = "sum"
    chunk_size: int = 64
    rows_dir: Path | None = None  # resumable rows (fine-tuning emulations)
    desc: str = "emulate"
    backend: str = "vmap"
    params_dir: Path | None = None  # fine-tuned parameters, independent of x (fine-tuning emulations)
    trajectory: Trajectory | None = None  # the Newton emulation's earlier checkpoints (distill.checkpoints)
    decay: torch.Tensor | None = None  # [K] the groups' shares of the weight decay (Newton emulation)


Emulator = Callable[[Emulation], torch.Tensor]
EMULATORS: Registry[Emulator] = Registry("emulator")


@EMULATORS.register("newton")
def _newton(e: Emulation) -> torch.Tensor:
    """One damped Newton step on the last layer per perturbation (head-matched synsets); over the last block and
    the head for block-matched ones (:func:`ddm.distill.block.block_logits`)."""
    if e.synset.block:
        from ddm.distill.block import block_logits

        return block_logits(e.model, e.params, e.synset, e.deleted, e.x, e.trajectory, e.decay)
    return newton_logits(e.model, e.params, e.synset, e.deleted, e.x, trajectory=e.trajectory, decay=e.decay)


def backend(name: str) -> str:
    """The fine-tuning backend ``emulate.backend`` names; ``auto`` is the loop (ddm runs on the CPU, where vmap
    turns convolutions into grouped ones that run at 4-9 % of the loop's rate: issue "Fast where it counts")."""
    if name != "auto":
        return name
    log.info("fine-tuning backend: loop (CPU)")
    return "loop"



@EMULATORS.register("finetune")
def _finetune(e: Emulation) -> torch.Tensor:
    """Eq. 3: ``steps`` SGD steps on the deleted groups' synsets (vmap or loop backend)."""
    return emulate_logits(e.model, e.params, e.synset, e.deleted, e.x, e.lr, e.steps, e.reduction, e.chunk_size,
                          e.rows_dir, e.desc, backend(e.backend), "finetune", e.params_dir)


@EMULATORS.register("linear")
def _linear(e: Emulation) -> torch.Tensor:
    """One first-order step of the fine-tuning's length from theta_tau."""
    return emulate_logits(e.model, e.params, e.synset, e.deleted, e.x, e.lr, e.steps, e.reduction, e.chunk_size,
                          e.rows_dir, e.desc, backend(e.backend), "linear", e.params_dir)


def resolve(method: str, synset: Synset | None) -> str:
    """``emulate.method`` with ``auto`` resolved: ``newton`` for head-matched synsets, else ``finetune``."""
    if method == "auto":
        return "newton" if synset is not None and synset.kind == "head" else "finetune"
    EMULATORS.get(method)  # an unknown name is an error that lists the choices
    return method
