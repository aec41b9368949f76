"""The training trajectory theta_0 ... theta_tau, and a recorder for users' own training loops.

On disk a trajectory is a folder of ``theta_XXXX.safetensors`` (one per checkpoint, written as
training goes) and ``trajectory.json`` (``{"epochs": [...], "lr": ...}``); a model with buffers (a batch norm's
running statistics) also gets ``buffers_XXXX.safetensors``, their values at each checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddm.exceptions import ConfigError
from ddm.workspace import load_json, load_tensors, save_json, save_tensors

Params = dict[str, torch.Tensor]
log = logging.getLogger(__name__)


class Trajectory:
    """Checkpoints ``params[i]`` (name -> tensor) taken at ``epochs[i]``; ``[0]`` is theta_0, ``[-1]`` theta_tau.

    ``lr`` is the learning rate the checkpoints were trained with (the default fine-tune rate);
    ``optimizer`` what is known of the optimizer (``type``, ``lr``, ``momentum``, ``weight_decay``, ``decay``,
    ``param_groups``, ...: :func:`optimizer_record`).
    The default head-Newton emulation needs neither; the fine-tuning emulations assume plain SGD at ``lr``.
    ``buffers`` (optional, one dict per checkpoint): the model's buffers there, e.g. a batch norm's running
    statistics, which :meth:`checkpoint` adds to the parameters so that a checkpoint is read as it was.
    """

    def __init__(self, params: list[Params], epochs: list[float], lr: float | None = None,
                 optimizer: dict[str, Any] | None = None, buffers: list[Params] | None = None) -> None:
        if len(params) < 2:
            raise ConfigError("a trajectory needs at least two checkpoints (theta_0 and theta_tau)")
        if len(params) != len(epochs):
            raise ConfigError("one epoch number per checkpoint is needed")
        names = set(params[0])
        for p in params[1:]:
            if set(p) != names:
                raise ConfigError("all checkpoints of a trajectory must hold the same parameter names")
        if buffers is not None and len(buffers) != len(params):
            raise ConfigError("a trajectory's buffers need one entry per checkpoint")
        self.params = params
        self.buffers = buffers if buffers and any(buffers) else None
        self.epochs = list(epochs)
        self.lr = lr
        self.optimizer = optimizer
        self.seconds: float | None = None  # training time, every process of a resumed run counted (train_model)

    def ordered(self, names: list[str]) -> Trajectory:
        """The same checkpoints with their parameters in ``names``' order (the model's ``named_parameters``).

        Loaded checkpoints come in the file's (sorted) order, trained ones in the model's; sums over
        parameters follow dict order, so one canonical order keeps results bit-identical after a reload."""
        missing = [n for n in names if n not in self.params[0]]
        if missing:
            raise ConfigError(f"the trajectory lacks parameters of the model: {missing[:3]}")
        return Trajectory([{n: p[n] for n in names} for p in self.params], self.epochs, self.lr, self.optimizer,
                          self.buffers)

    def checkpoint(self, i: int) -> Params:
        """Checkpoint ``i`` for ``torch.func.functional_call``: its parameters, with its buffers when recorded (else
        the model's own buffers apply: theta_tau's running statistics)."""
        return self.params[i] if self.buffers is None else {**self.buffers[i], **self.params[i]}

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

    def at_epoch(self, epoch: float) -> Params | None:
        """Parameters (and recorded buffers) at ``epoch``, linearly interpolated between the two recorded checkpoints
        around it; None where that would interpolate from theta_0 (the random initialisation is no point of the
        training run) or lies outside the recorded epochs."""
        if not self.epochs[1] <= epoch <= self.epochs[-1]:
            return None
        i = next(j for j in range(1, len(self.epochs)) if self.epochs[j] >= epoch)
        lo, hi = self.epochs[i - 1], self.epochs[i]
        w = 1.0 if hi == lo else (epoch - lo) / (hi - lo)
        a, b = self.checkpoint(i - 1), self.checkpoint(i)
        # recorded buffers come along: running statistics interpolated, counters taken from the later checkpoint
        return {k: a[k] * (1 - w) + b[k] * w if b[k].is_floating_point() else b[k] for k in b}

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        for i, p in enumerate(self.params):
            save_tensors(folder / f"theta_{i:04d}.safetensors", p)
            if self.buffers is not None:
                save_tensors(folder / f"buffers_{i:04d}.safetensors", self.buffers[i])
        save_json(folder / "trajectory.json", {"epochs": self.epochs, "lr": self.lr, "optimizer": self.optimizer})

    @classmethod
    def load(cls, folder: str | Path) -> Trajectory:
        folder = Path(folder)
        meta = load_json(folder / "trajectory.json")
        n = len(meta["epochs"])
        params = [load_tensors(folder / f"theta_{i:04d}.safetensors") for i in range(n)]
        buffers = load_buffers(folder, n)
        return cls(params, meta["epochs"], meta.get("lr"), meta.get("optimizer"), buffers)


def load_buffers(folder: Path, n: int) -> list[Params] | None:
    """The ``n`` checkpoints' buffers stored in ``folder``, or None when the trajectory has none (or not all)."""
    paths = [folder / f"buffers_{i:04d}.safetensors" for i in range(n)]
    return [load_tensors(p) for p in paths] if all(p.exists() for p in paths) else None


def model_buffers(model: nn.Module) -> Params:
    """A detached CPU copy of the model's buffers (empty for a model without running statistics)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.named_buffers()}


#: torch optimizers whose ``weight_decay`` shrinks the weights apart from the gradient: no L2 term of the loss
DECOUPLED_DECAY = frozenset({"adamw", "adafactor", "muon"})
#: torch optimizers whose ``weight_decay`` adds ``weight_decay * theta`` to the gradient (an L2 term of the loss)
#: unless their ``decoupled_weight_decay`` flag is set
L2_DECAY = frozenset({"sgd", "adam", "nadam", "radam", "rmsprop", "adagrad", "adamax", "adadelta", "asgd"})
_SETTINGS = ("lr", "momentum", "weight_decay", "betas")


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """The settings in ``values`` worth storing: numbers and tuples, not tensors (a tensor lr) nor None."""
    return {k: (list(values[k]) if isinstance(values[k], tuple) else values[k]) for k in _SETTINGS
            if k in values and values[k] is not None and not torch.is_tensor(values[k])}


def optimizer_record(optimizer: torch.optim.Optimizer, model: nn.Module | None = None,
                     decoupled_decay: bool | None = None) -> dict[str, Any]:
    """What the trajectory stores of ``optimizer``: its type, its default ``lr``, ``momentum``, ``weight_decay`` and
    ``betas``, ``decay`` ("l2", "decoupled" or "unknown": whether the weight decay is a term of the loss), and, where
    its parameter groups differ in those settings, ``param_groups``: each group's settings and the names (in
    ``model``) of the parameters it holds."""
    kind = type(optimizer).__name__.lower()
    d = optimizer.defaults
    record: dict[str, Any] = {"type": kind, **_plain(d)}
    if decoupled_decay is not None:
        record["decay"] = "decoupled" if decoupled_decay else "l2"
    elif kind in DECOUPLED_DECAY or (kind in L2_DECAY and d.get("decoupled_weight_decay")):
        record["decay"] = "decoupled"
    elif kind in L2_DECAY:
        record["decay"] = "l2"
    else:
        record["decay"] = "unknown"
    groups = [_plain(g) for g in optimizer.param_groups]
    if len(groups) > 1 or any(g != _plain(d) for g in groups):
        names = {id(p): n for n, p in model.named_parameters()} if model is not None else {}
        record["param_groups"] = [{**g, "params": [names[id(p)] for p in pg["params"] if id(p) in names]}
                                  for g, pg in zip(groups, optimizer.param_groups, strict=True)]
    decays = [float(g.get("weight_decay") or 0) for g in [d, *optimizer.param_groups]]
    if record["decay"] == "unknown" and any(decays):
        log.warning("ddm cannot tell whether %s's weight decay is an L2 term of the loss (as SGD's and Adam's) or "
                    "shrinks the weights apart from the gradient (as AdamW's): it takes it for an L2 term; say which "
                    "with TrajectoryRecorder.attach(optimizer, decoupled_decay=True/False)", type(optimizer).__name__)
    return record


def decoupled(record: dict[str, Any] | None) -> bool:
    """Whether an optimizer ``record`` (:func:`optimizer_record`, or ddm's own loop's) says its weight decay is
    decoupled from the gradient (AdamW's kind: no term of the loss). Records written before ``decay`` was stored
    name AdamW by its type."""
    if not record:
        return False
    return record.get("decay") == "decoupled" or record.get("type") == "adamw"


def recorded_weight_decay(record: dict[str, Any] | None, param: str | None = None) -> float | None:
    """The L2 weight decay an optimizer ``record`` (:func:`optimizer_record`) says ``param`` trained with: that of
    its parameter group where the record has groups and one holds ``param``, else the optimizer's default; 0 for a
    decoupled decay (no term of the loss); None where the record does not say."""
    if not record:
        return None
    if decoupled(record):
        return 0.0
    for group in record.get("param_groups") or []:
        if param is not None and param in group.get("params", ()):
            return float(group.get("weight_decay") or 0.0)
    wd = record.get("weight_decay")
    return None if wd is None else float(wd)


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
        self._buffers: list[Params] = []
        self._epochs: list[float] = []
        self._handle: Any = None
        self._steps = 0
        self._optimizer: dict[str, Any] | None = None
        self._rates: list[float] = []  # the lowest and highest rate the attached optimizer stepped with

    def record(self, epoch: float) -> None:
        p = {k: v.detach().cpu().clone() for k, v in self.model.named_parameters()}
        b = model_buffers(self.model)
        if self.folder is not None:
            save_tensors(self.folder / f"theta_{len(self._params):04d}.safetensors", p)
            if b:
                save_tensors(self.folder / f"buffers_{len(self._params):04d}.safetensors", b)
        self._params.append(p)
        self._buffers.append(b)
        self._epochs.append(float(epoch))

    def attach(self, optimizer: torch.optim.Optimizer, every_steps: int | None = None,
               steps_per_epoch: int | None = None, decoupled_decay: bool | None = None) -> None:
        """Take the optimizer's type and hyperparameters (learning rate, momentum, weight decay, betas) for the
        trajectory, and with ``every_steps`` also record theta now and after every ``every_steps`` calls of
        ``optimizer.step()`` (epochs counted as steps / ``steps_per_epoch`` when given, else as steps). Without
        ``every_steps`` you keep calling :meth:`record` yourself. A learning rate that changes from step to step (a
        scheduler) is recorded as a schedule (``optimizer["schedule"]``), which turns the unlearning's rewind off.

        Parameter groups with their own settings (e.g. no decay on biases and norms) are recorded by parameter
        name, so that ddm reads the decay of the group that holds the model's head. Whether the weight decay is an
        L2 term of the loss (SGD, Adam, RMSprop, ...) or shrinks the weights apart from the gradient (AdamW, and
        Adam, NAdam or RAdam with ``decoupled_weight_decay=True``) is read off torch's optimizers; for another
        optimizer with weight decay say it with ``decoupled_decay`` (else ddm takes it for an L2 term and warns)."""
        if every_steps is not None and every_steps <= 0:
            raise ConfigError(f"every_steps must be a positive number of optimizer steps, got {every_steps}")
        if steps_per_epoch is not None and steps_per_epoch <= 0:
            raise ConfigError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
        self._optimizer = optimizer_record(optimizer, self.model, decoupled_decay)
        if every_steps is not None and not self._params:
            self.record(0)

        def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            self._steps += 1
            rate = float(opt.param_groups[0]["lr"])  # a scheduler changes it: recorded as a schedule
            self._rates = [min(self._rates[0], rate), max(self._rates[1], rate)] if self._rates else [rate, rate]
            if every_steps is not None and self._steps % every_steps == 0:
                self.record(self._steps / steps_per_epoch if steps_per_epoch else self._steps)

        self._handle = optimizer.register_step_post_hook(hook)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def trajectory(self, lr: float | None = None) -> Trajectory:
        """The recorded trajectory. ``lr`` defaults to the attached optimizer's; with neither, a warning says
        that the fine-tuning emulations (not the default head-Newton one) will guess the rate."""
        if lr is None and self._optimizer is not None:
            lr = self._optimizer.get("lr")
        if self._optimizer is not None and self._rates and self._rates[0] != self._rates[1]:  # it changed: a schedule
            self._optimizer = {**self._optimizer, "schedule": "varying", "lr_range": list(self._rates)}
        if lr is None:
            log.warning("trajectory recorded without its learning rate or optimizer: the fine-tuning emulations "
                        "(emulate.method=finetune/linear) will assume plain SGD at train.lr; pass lr= or attach() "
                        "the optimizer")
        traj = Trajectory(self._params, self._epochs, lr, self._optimizer, self._buffers)
        if self.folder is not None:
            save_json(self.folder / "trajectory.json", {"epochs": self._epochs, "lr": lr, "optimizer": self._optimizer})
        return traj


