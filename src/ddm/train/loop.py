"""Train the target model with minibatch SGD and record theta_0 ... theta_tau as it goes.

Checkpoints are written when taken; a killed run resumes from the last one (the data order of
each epoch is seeded by ``(seed, epoch)``, so the resumed run is the one that would have run).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ddm.config import TrainConfig
from ddm.data.dataset import Split
from ddm.progress import bar
from ddm.train.trajectory import Trajectory
from ddm.workspace import load_json, load_tensors, save_json, save_tensors

log = logging.getLogger(__name__)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


@torch.no_grad()
def accuracy(model: nn.Module, split: Split, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on ``split`` (in [0, 1])."""
    model.eval()
    correct = 0
    for i in range(0, len(split), batch_size):
        correct += (model(split.x[i : i + batch_size]).argmax(1) == split.y[i : i + batch_size]).sum().item()
    return correct / max(1, len(split))


def train_model(model: nn.Module, train: Split, cfg: TrainConfig, folder: str | Path | None = None) -> Trajectory:
    """Train ``model`` in place on ``train`` and return its trajectory.

    With ``folder``, checkpoints (``theta_XXXX.safetensors``), the optimizer state and
    ``trajectory.json`` are written there as training goes, and an interrupted run resumes.
    """
    folder = Path(folder) if folder is not None else None
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    params: list[dict[str, torch.Tensor]] = []
    epochs: list[float] = []
    start = 0
    if folder is not None and (folder / "progress.json").exists():
        prog = load_json(folder / "progress.json")
        epochs = prog["epochs"]
        params = [load_tensors(folder / f"theta_{i:04d}.safetensors") for i in range(len(epochs))]
        start = prog["done_epochs"]
        model.load_state_dict(load_tensors(folder / "last_model.safetensors"), strict=False)
        state = load_tensors(folder / "last_optimizer.safetensors")
        for name, p in model.named_parameters():
            if f"momentum/{name}" in state:
                opt.state[p]["momentum_buffer"] = state[f"momentum/{name}"].clone()
        log.info("resuming training at epoch %d of %d", start, cfg.epochs)

    def snapshot(epoch: int) -> None:
        p = {k: v.detach().clone() for k, v in model.named_parameters()}
        if folder is not None:
            save_tensors(folder / f"theta_{len(params):04d}.safetensors", p)
        params.append(p)
        epochs.append(float(epoch))

    if start == 0 and not params:
        snapshot(0)
    n = len(train)
    steps_per_epoch = (n + cfg.batch_size - 1) // cfg.batch_size
    pbar = bar(cfg.epochs, "train", initial=start)
    for epoch in range(start, cfg.epochs):
        model.train()
        order = epoch_order(n, cfg.seed, epoch)
        total = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            loss = F.cross_entropy(model(train.x[idx]), train.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        done = epoch + 1
        if done % cfg.save_every == 0 or done == cfg.epochs:
            snapshot(done)
        if folder is not None:
            save_tensors(folder / "last_model.safetensors", dict(model.state_dict()))
            state = {
                f"momentum/{name}": opt.state[p]["momentum_buffer"]
                for name, p in model.named_parameters()
                if opt.state.get(p, {}).get("momentum_buffer") is not None
            }
            save_tensors(folder / "last_optimizer.safetensors", state)
            save_json(folder / "progress.json", {"done_epochs": done, "epochs": epochs})
        pbar.update(1)
        pbar.set_postfix(loss=f"{total / n:.4f}")
        log.debug("epoch %d loss %.4f", done, total / n)
    pbar.close()
    traj = Trajectory(params, epochs, cfg.lr)
    if folder is not None:
        save_json(folder / "trajectory.json", {"epochs": epochs, "lr": cfg.lr})
    return traj
