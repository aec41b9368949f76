"""What the model is trained on: the per-sample training loss and its derivatives in the model's outputs.

The head recipe (the default) needs three things of the loss ``l(z, y)`` of one sample's outputs ``z``:
its value (training), its gradient in ``z`` (each group's removal step) and its curvature in ``z`` (the
Gauss-Newton matrix of the last layer). :class:`CrossEntropy` (the default) has them in closed form;
:class:`Loss` wraps any per-sample loss you train with (label smoothing, class weights, a focal loss, ...)
and takes the derivatives with ``torch.func``; its curvature is projected onto the positive semi-definite
cone (Gauss-Newton needs it), so a loss that is convex in the outputs is used exactly.

    task = ddm.Loss(lambda z, y: F.cross_entropy(z, y, label_smoothing=0.1, reduction="none"),
                    name="ce-smooth-0.1")
    dm = ddm.DistilledDatamodel("runs/mine", config, task=task)

The task's ``name`` is part of the workspace keys: two tasks need two names. Objectives (what an
attribution reads, e.g. dist2's test loss) stay separate: :mod:`ddm.objectives`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ddm.exceptions import ConfigError
from ddm.linalg import eigh


class Task:
    """The training loss (per sample) and its output derivatives; subclass or use :class:`Loss`."""

    name = "task"

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-sample loss ``[N]`` of outputs ``[N, C]`` and integer labels ``[N]``."""
        raise NotImplementedError

    def output_gradient(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``d loss_i / d outputs_i``: ``[N, C]``."""
        from torch.func import grad, vmap

        return vmap(grad(lambda z, y: self.loss(z[None], y[None]).sum()))(outputs, labels)

    def output_curvature(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``d^2 loss_i / d outputs_i^2``, made positive semi-definite: ``[N, C, C]``."""
        from torch.func import hessian, vmap

        h = vmap(hessian(lambda z, y: self.loss(z[None], y[None]).sum()))(outputs.double(), labels)
        h = 0.5 * (h + h.transpose(1, 2))
        evals, evecs = eigh(h)
        return (evecs * evals.clamp(min=0)[:, None, :]) @ evecs.transpose(1, 2)

    @property
    def is_default(self) -> bool:
        return False

    def key(self) -> dict[str, Any]:
        return {"task": self.name}


class TemperedCrossEntropy(Task):
    """Cross-entropy of the outputs divided by a temperature ``T`` (``distill.head_temperature``): what the head
    recipe's synsets carry in its place, not a training loss. ``T > 1`` softens the probabilities, so the samples a
    model fits with a large margin keep a gradient."""

    def __init__(self, temperature: float) -> None:
        if not temperature > 0:
            raise ConfigError(f"the temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.name = f"cross-entropy-T{temperature:g}"

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs / self.temperature, labels, reduction="none")

    def output_gradient(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        p = (outputs / self.temperature).softmax(-1)
        return (p - F.one_hot(labels, outputs.shape[-1]).to(outputs.dtype)) / self.temperature

    def output_curvature(self, outputs: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        p = (outputs / self.temperature).softmax(-1).double()
        return (torch.diag_embed(p) - torch.einsum("nc,ne->nce", p, p)) / self.temperature ** 2


class CrossEntropy(TemperedCrossEntropy):
    """Softmax cross-entropy on the labels (the default), with closed-form derivatives: the tempered one at T = 1."""

    def __init__(self) -> None:
        super().__init__(1.0)
        self.name = "cross-entropy"

    @property
    def is_default(self) -> bool:
        return True


class Loss(Task):
    """A task from a per-sample loss ``fn(outputs [N, C], labels [N]) -> [N]`` and a name (part of the keys)."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], name: str) -> None:
        if not callable(fn):
            raise ConfigError("ddm.Loss needs a callable fn(outputs, labels) -> per-sample losses")
        if not name or not isinstance(name, str):
            raise ConfigError("ddm.Loss needs a name: it keys the workspace's stages")
        self.fn, self.name = fn, name

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = self.fn(outputs, labels)
        if not isinstance(out, torch.Tensor) or out.shape != (len(outputs),):
            raise ConfigError(f"the task {self.name!r} must return one loss per sample, shape [{len(outputs)}] "
                              f"(use reduction='none'); got {getattr(out, 'shape', type(out).__name__)}")
        return out


def resolve(task: Task | None) -> Task:
    if task is None:
        return CrossEntropy()
    if not isinstance(task, Task):
        raise ConfigError(f"task must be a ddm.Task (e.g. ddm.Loss(fn, name)), got {type(task).__name__}")
    return task
