"""Train the target model with minibatch SGD and record theta_0 ... theta_tau as it goes.

Checkpoints are written when taken; a killed run resumes from the last one (the data order of
each epoch is seeded by ``(seed, epoch)``, so the resumed run is the one that would have run). So is the model's own
randomness (dropout masks): each epoch draws it from torch's RNG seeded by ``(seed, epoch)`` in a forked RNG state,
so that a retrain on the same data gives the target back bit for bit and the caller's RNG is left as it was.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ddm import devices
from ddm.config import TrainConfig
from ddm.data.dataset import Split
from ddm.exceptions import ConfigError, NumericalError
from ddm.progress import bar
from ddm.train.trajectory import Trajectory, load_buffers, model_buffers
from ddm.workspace import load_tensors, save_json, save_tensors

log = logging.getLogger(__name__)


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
    return torch.randperm(n, generator=g)


@contextmanager
def epoch_rng(seed: int, epoch: int, device: torch.device) -> Iterator[None]:
    """torch's global RNG, which the model's own randomness (dropout) draws from, seeded by ``(seed, epoch)`` for one
    epoch and restored afterwards. Without it a retrain draws other dropout masks than the target's training did,
    and the check finds that retraining on all the data does not reproduce the target."""
    forked = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" \
        else []
    with torch.random.fork_rng(devices=forked):
        torch.manual_seed(_epoch_seed(seed, epoch) ^ 0x5EED)  # not the data order's stream
        yield


@torch.no_grad()
def accuracy(model: nn.Module, split: Split, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on ``split`` (in [0, 1]), in eval mode (the model's mode is restored)."""
    if len(split) == 0:
        return 0.0
    pred = devices.predict(model, split.x, batch_size).argmax(1)
    return float((pred == split.y).sum().item()) / len(split)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` names: SGD (momentum, weight decay), Adam (weight decay as L2) or AdamW (weight decay
    decoupled from the gradient)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def set_rate(opt: torch.optim.Optimizer, cfg: TrainConfig, step: int, total: int) -> None:
    """Set the optimizer's rate for step ``step`` of ``total`` under ``train.schedule`` (nothing to do when
    constant): a function of the step alone, so a resumed run takes the same rates."""
    if cfg.schedule != "constant":
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(step, total)


RESUME = "resume.safetensors"


def _save_resume(folder: Path, model: nn.Module, opt: torch.optim.Optimizer, done: int, epochs: list[float],
                 seconds: float) -> None:
    """Model, optimizer state and progress in *one* atomic file: a kill leaves the old state or the new one."""
    state = {f"model/{k}": v for k, v in model.state_dict().items()}
    for name, p in model.named_parameters():
        for key, value in opt.state.get(p, {}).items():
            if torch.is_tensor(value):
                state[f"opt/{name}/{key}"] = value
    save_tensors(folder / RESUME, state, metadata={"progress": json.dumps({"done_epochs": done, "epochs": epochs,
                                                                          "seconds": seconds})})


def _load_resume(folder: Path, model: nn.Module, opt: torch.optim.Optimizer) -> tuple[int, list[float], float]:
    from safetensors import safe_open

    path = folder / RESUME
    with safe_open(str(path), "pt") as fh:  # type: ignore[no-untyped-call]
        prog = json.loads(fh.metadata()["progress"])
    state = load_tensors(path)
    model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model/")}, strict=False)
    for name, p in model.named_parameters():
        prefix = f"opt/{name}/"
        for key, value in state.items():
            if key.startswith(prefix):
                opt.state[p][key[len(prefix):]] = value.clone().to(p.device)
    return int(prog["done_epochs"]), list(prog["epochs"]), float(prog.get("seconds", 0.0))


def train_model(model: nn.Module, train: Split, cfg: TrainConfig, folder: str | Path | None = None,
                task: Any = None, subsample: float = 1.0) -> Trajectory:
    """Train ``model`` in place on ``train`` and return its trajectory.

    With ``folder``, checkpoints (``theta_XXXX.safetensors``) and the resume state (model, optimizer and
    progress in one atomic ``resume.safetensors``) are written as training goes, so an interrupted run
    resumes where the last finished epoch left it: a kill at any point gives the same trajectory.
    ``task``: the training loss (:class:`ddm.task.Task`; default cross-entropy). ``subsample``: each epoch takes
    only the first ``round(subsample x N)`` samples of its order, so training takes the steps (and the rate
    schedule) of a retrain on that share of the data while every sample stays in play (the step effect a retrain
    without part of the data carries, :mod:`ddm.attribution.schedule`; measured by ``benchmarks/schedule_steps.py``).
    """
    if not 0 < subsample <= 1:
        raise ValueError(f"subsample must be in (0, 1], got {subsample}")
    folder = Path(folder) if folder is not None else None
    opt = make_optimizer(model, cfg)
    params: list[dict[str, torch.Tensor]] = []
    buffers: list[dict[str, torch.Tensor]] = []  # a batch norm's running statistics at each checkpoint
    epochs: list[float] = []
    start = 0
    before = 0.0  # seconds spent by earlier (killed) processes on this training
    t0 = time.perf_counter()
    if folder is not None and (folder / RESUME).exists():
        start, epochs, before = _load_resume(folder, model, opt)
        params = [load_tensors(folder / f"theta_{i:04d}.safetensors") for i in range(len(epochs))]
        buffers = load_buffers(folder, len(epochs)) or [{} for _ in epochs]
        log.info("resuming training at epoch %d of %d", start, cfg.epochs)

    dev = devices.of(model)  # training runs where the model is; the checkpoints are kept on the CPU

    def snapshot(epoch: int) -> None:
        p = devices.cpu(dict(model.named_parameters()))
        b = model_buffers(model)
        if folder is not None:
            if b:  # before theta: a checkpoint counts once its theta file is there
                save_tensors(folder / f"buffers_{len(params):04d}.safetensors", b)
            save_tensors(folder / f"theta_{len(params):04d}.safetensors", p)
        params.append(p)
        buffers.append(b)
        epochs.append(float(epoch))

    if start == 0 and not params:
        snapshot(0)
    n = len(train)
    m = max(1, round(subsample * n))  # the samples each epoch takes
    steps_per_epoch = (m + cfg.batch_size - 1) // cfg.batch_size
    pbar = bar(cfg.epochs, "train", initial=start)
    for epoch in range(start, cfg.epochs):
        model.train()
        order = epoch_order(n, cfg.seed, epoch)[:m]
        total = 0.0
        batches = (torch.tensor_split(order, steps_per_epoch) if cfg.last_batch == "balanced" else
                   torch.split(order, cfg.batch_size))
        with epoch_rng(cfg.seed, epoch, dev):
            for i, idx in enumerate(batches):
                set_rate(opt, cfg, epoch * len(batches) + i, cfg.epochs * len(batches))
                xb, yb = train.x[idx].to(dev, non_blocking=True), train.y[idx].to(dev, non_blocking=True)
                out = model(xb)
                if not isinstance(out, torch.Tensor):  # e.g. auxiliary logits returned in train mode only
                    raise ConfigError(f"the model's forward returns a {type(out).__name__} in train mode, not a "
                                      "tensor of logits: ddm trains on one [N, classes] tensor; wrap the model so "
                                      "that forward returns only the logits (auxiliary outputs left out)")
                loss = F.cross_entropy(out, yb) if task is None else task.loss(out, yb).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
        if not math.isfinite(total):
            raise NumericalError(f"training diverged in epoch {epoch + 1} (loss {total / m}); nothing of this epoch "
                                 f"was saved. Lower train.lr (now {cfg.lr:g})")
        done = epoch + 1
        if done % cfg.save_every == 0 or done == cfg.epochs:
            snapshot(done)
        if folder is not None:
            _save_resume(folder, model, opt, done, epochs, before + time.perf_counter() - t0)
        pbar.update(1)
        pbar.set_postfix(loss=f"{total / m:.4f}")
        log.debug("epoch %d loss %.4f", done, total / m)
    pbar.close()
    traj = Trajectory(params, epochs, cfg.lr, optimizer=cfg.optimizer_record(), buffers=buffers)
    traj.seconds = before + time.perf_counter() - t0
    if folder is not None:
        save_json(folder / "trajectory.json", {"epochs": epochs, "lr": cfg.lr, "optimizer": cfg.optimizer_record()})
    return traj
