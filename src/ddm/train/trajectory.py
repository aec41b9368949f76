"""The training trajectory theta_0 ... theta_tau, and a recorder for users' own training loops.

On disk a trajectory is a folder of ``theta_XXXX.safetensors`` (one per checkpoint, written as
training goes) and ``trajectory.json`` (``{"epochs": [...], "lr": ...}``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddm.exceptions import ConfigError
from ddm.workspace import load_json, load_tensors, save_json, save_tensors

Params = dict[str, torch.Tensor]


class Trajectory:
    """Checkpoints ``params[i]`` (name -> tensor) taken at ``epochs[i]``; ``[0]`` is theta_0, ``[-1]`` theta_tau.

    ``lr`` is the learning rate the checkpoints were trained with (the default fine-tune rate).
    """

    def __init__(self, params: list[Params], epochs: list[float], lr: float | None = None) -> None:
        if len(params) < 2:
            raise ConfigError("a trajectory needs at least two checkpoints (theta_0 and theta_tau)")
        if len(params) != len(epochs):
            raise ConfigError("one epoch number per checkpoint is needed")
        names = set(params[0])
        for p in params[1:]:
            if set(p) != names:
                raise ConfigError("all checkpoints of a trajectory must hold the same parameter names")
        self.params = params
        self.epochs = list(epochs)
        self.lr = lr

    def __len__(self) -> int:
        return len(self.params)

    def __getitem__(self, i: int) -> Params:
        return self.params[i]

    def __iter__(self) -> Iterator[Params]:
        return iter(self.params)

    @property
    def final(self) -> Params:
        return self.params[-1]

    @property
    def tau(self) -> int:
        """Number of recorded steps between theta_0 and theta_tau."""
        return len(self.params) - 1

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        for i, p in enumerate(self.params):
            save_tensors(folder / f"theta_{i:04d}.safetensors", p)
        save_json(folder / "trajectory.json", {"epochs": self.epochs, "lr": self.lr})

    @classmethod
    def load(cls, folder: str | Path) -> Trajectory:
        folder = Path(folder)
        meta = load_json(folder / "trajectory.json")
        params = [load_tensors(folder / f"theta_{i:04d}.safetensors") for i in range(len(meta["epochs"]))]
        return cls(params, meta["epochs"], meta.get("lr"))


class TrajectoryRecorder:
    """Snapshot a model's parameters while *your* loop trains it.

    Either call :meth:`record` yourself (e.g. once before training and after every epoch), or
    :meth:`attach` it to your optimizer to snapshot every ``every_steps`` optimizer steps::

        rec = TrajectoryRecorder(model)
        rec.record(0)                       # theta_0
        for epoch in range(1, epochs + 1):
            ...train one epoch...
            rec.record(epoch)
        trajectory = rec.trajectory(lr=0.01)
    """

    def __init__(self, model: nn.Module, folder: str | Path | None = None) -> None:
        self.model = model
        self.folder = Path(folder) if folder is not None else None
        self._params: list[Params] = []
        self._epochs: list[float] = []
        self._handle: Any = None
        self._steps = 0

    def record(self, epoch: float) -> None:
        p = {k: v.detach().cpu().clone() for k, v in self.model.named_parameters()}
        if self.folder is not None:
            save_tensors(self.folder / f"theta_{len(self._params):04d}.safetensors", p)
        self._params.append(p)
        self._epochs.append(float(epoch))

    def attach(self, optimizer: torch.optim.Optimizer, every_steps: int, steps_per_epoch: int | None = None) -> None:
        """Record theta now and after every ``every_steps`` calls of ``optimizer.step()``."""
        if every_steps <= 0:
            raise ConfigError("every_steps must be positive")
        if not self._params:
            self.record(0)

        def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            self._steps += 1
            if self._steps % every_steps == 0:
                self.record(self._steps / steps_per_epoch if steps_per_epoch else self._steps)

        self._handle = optimizer.register_step_post_hook(hook)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def trajectory(self, lr: float | None = None) -> Trajectory:
        traj = Trajectory(self._params, self._epochs, lr)
        if self.folder is not None:
            save_json(self.folder / "trajectory.json", {"epochs": self._epochs, "lr": lr})
        return traj


