"""Exact retraining without sets of groups: the ground truth every claim is measured against.

Each retrain starts from the target's theta_0 and repeats its schedule (same :class:`TrainConfig`,
same epochs) on the training data minus the removed groups, then records its logits on a fixed
evaluation set. Results are cached one file per removed set (``<folder>/<hash>.safetensors`` with
the removed groups and the seconds it took), written as each finishes, so a killed job resumes.
Folder layout: one folder per (target training, grouping, evaluation set); any number of shards
may fill it (``many(..., shard=i, num_shards=n)``).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddm import devices, distributed
from ddm.cluster.groups import Groups
from ddm.config import TrainConfig, fingerprint, keyed
from ddm.data.dataset import Split
from ddm.exceptions import ConfigError, ConfigMismatchError
from ddm.models import with_params
from ddm.progress import bar
from ddm.train.loop import train_model
from ddm.workspace import load_json, load_tensors, save_json, save_tensors

log = logging.getLogger(__name__)


class Retrainer:
    """The user's own training loop, for exact retrains of a workspace whose trajectory was handed in
    (``fit(..., trajectory=)``), where ddm's loop (``train.*``) is not what trained the target.

    ``fn(model, train)`` or ``fn(model, train, seed)`` trains ``model`` (a copy of the target's network at its
    theta_0, in train mode) on ``train`` (a :class:`~ddm.data.dataset.Split`: the training split without the
    removed groups, rows in their order; ``x``, ``y``) as the target was trained, and returns the trained model
    (or None, having trained it in place). ``seed`` is None for the data order the target was trained in, an
    integer for another order (asked only for verifications in several orders; a function without the parameter
    cannot give them). Retraining on all the data should give the target back: the check's reproduction line says
    how far it does. Retrains are cached under ``name`` (the function's ``module:qualname`` by default), so a
    changed function wants another name, or the cached retrains deleted."""

    def __init__(self, fn: Callable[..., nn.Module | None], name: str | None = None) -> None:
        if not callable(fn):
            raise ConfigError(f"retrain must be a function fn(model, train[, seed]), got {type(fn).__name__}")
        self.fn = fn
        self.name = name or f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', type(fn).__name__)}"
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        self._params = dict(params)
        positional = [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        # a parameter named seed, or a required third one (fn(model, train, order)); a third with a default (e.g.
        # epochs=20) is the user's own option, not a seed
        self.takes_seed = "seed" in params or any(p.kind == p.VAR_POSITIONAL for p in params.values()) or (
            len(positional) >= 3 and positional[2].default is inspect.Parameter.empty)

    @classmethod
    def of(cls, retrain: Retrainer | Callable[..., nn.Module | None] | None) -> Retrainer | None:
        return retrain if retrain is None or isinstance(retrain, Retrainer) else cls(retrain)

    @classmethod
    def from_import(cls, path: str) -> Retrainer:
        """The function an import path ``package.module:function`` names (``--retrain``), cached under the path."""
        from ddm.registry import import_object

        return cls(import_object(path, "--retrain", "MODULE:FUNCTION", "mypackage.train:retrain"),  # type: ignore[arg-type]
                   name=path)

    def require_orders(self, orders: int) -> None:
        """Refuse, before anything is retrained, ``orders`` data orders from a function that takes no seed."""
        if orders > 1 and not self.takes_seed:
            raise ConfigError(f"the retrain function {self.name} takes no data-order seed (fn(model, train)), so it "
                              "can retrain only in the target's own order: verify in one order, or give it a third "
                              "parameter, seed (None: the target's order; an integer: another one)")

    def __call__(self, model: nn.Module, train: Split, seed: int | None) -> nn.Module:
        if seed is not None:  # another data order
            self.require_orders(2)
        if not self.takes_seed:
            out = self.fn(model, train)
        elif "seed" in self._params and self._params["seed"].kind == inspect.Parameter.KEYWORD_ONLY:
            out = self.fn(model, train, seed=seed)
        else:
            out = self.fn(model, train, seed)
        out = model if out is None else out
        if not isinstance(out, nn.Module):
            raise ConfigError(f"the retrain function {self.name} returned {type(out).__name__}: return the trained "
                              "torch.nn.Module (or None, having trained the model it was given in place)")
        return out


def retrainer_for(dm: Any, retrain: Retrainer | Callable[..., nn.Module | None] | None,
                  orders: int = 1) -> Retrainer | None:
    """The loop a workspace's exact retrains run with: the user's ``retrain`` (a :class:`Retrainer` or its
    function), else None for ddm's own, which a trajectory handed in from another loop cannot be retrained with.
    ``orders``: the data orders asked for, refused here from a function that takes no seed."""
    retrainer = Retrainer.of(retrain)
    if retrainer is not None:
        retrainer.require_orders(orders)
    if retrainer is None and dm.handed_in():
        raise ConfigError("exact retraining runs ddm's own training loop (train.*), but this workspace's trajectory "
                          "was handed in from another loop: give that loop as a function fn(model, train[, seed]) "
                          "that trains the model it is given (retrain= from Python, --retrain MODULE:FUNCTION on "
                          "the command line; README, 'Checking it against exact retraining')")
    return retrainer


def folder_key_parts(retrainer: Retrainer | None) -> list[str]:
    """What a retrain folder's key adds for the user's loop (its name), so that two loops never share a folder."""
    return [] if retrainer is None else [retrainer.name]


def removal_key(removed: Iterable[int], seed: int | None = None) -> str:
    ids = sorted({int(r) for r in removed})
    text = ",".join(map(str, ids)) + (f"|seed={seed}" if seed is not None else "")
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class RetrainCache:
    """Retrain ``model`` from ``theta0`` on ``train`` without chosen groups; logits on ``eval_x``, cached."""

    def __init__(self, folder: str | Path, model: nn.Module, theta0: dict[str, torch.Tensor], train: Split,
                 groups: Groups, cfg: TrainConfig, eval_x: torch.Tensor, device: torch.device | str = "cpu",
                 threads: int | None = None, retrain: Retrainer | None = None) -> None:
        """``threads``: the CPU thread count each retrain runs with (``DistilledDatamodel.training_threads()``: the
        one the target was trained with, so that the full data's retrain reproduces it bit for bit); None keeps the
        process's. ``retrain``: the user's own loop (:class:`Retrainer`) in place of ddm's with ``cfg``."""
        self.folder = Path(folder)
        self.retrain = retrain
        self.device = torch.device(device)  # where retrains run (ddm.devices); the logits are stored on the CPU
        self.model, self.theta0, self.train = model, theta0, train
        self.groups, self.cfg, self.eval_x = groups, cfg, eval_x
        self.threads = threads if self.device.type == "cpu" else None
        self._check_training()

    def _start(self) -> nn.Module:
        """The model at theta_0. Running statistics the given theta_0 does not carry (parameters only, e.g.
        ``trajectory[0]`` instead of ``trajectory.checkpoint(0)``) are reset to their initial values, which is
        what they were at theta_0, never left at theta_tau's: a retrain started from the trained model's
        batch-norm statistics does not reproduce the target."""
        net = with_params(self.model, self.theta0)
        for name, module in net.named_modules():
            reset = getattr(module, "reset_running_stats", None)
            stats = [f"{name}.{b}" if name else b for b, _ in module.named_buffers(recurse=False)
                     if b != "num_batches_tracked"]  # the statistics themselves decide
            if callable(reset) and stats and not all(s in self.theta0 for s in stats):
                reset()
        return net

    def _check_training(self) -> None:
        """The folder's retrains must come from this training configuration: its key (the data order's seed
        aside, which each retrain may set) is stored on first use and compared afterwards, so a changed loop
        (e.g. ``train.last_batch``) cannot silently mix with retrains of the old one. Folders made before the key
        was stored take it on first use."""
        key = fingerprint({"retrain": self.retrain.name} if self.retrain is not None
                          else {k: v for k, v in keyed(self.cfg).items() if k != "seed"})
        path = self.folder / "training.json"
        if path.exists():
            info = load_json(path)
            stored = info.get("train_key")
            if stored != key:
                raise ConfigMismatchError(f"the retrains in {self.folder} were made with another training "
                                          f"configuration (key {stored}, this one {key}): use another folder, or "
                                          "delete this one to redo them")
            if (self.threads is not None and info.get("threads") != self.threads
                    and any(self.folder.glob("*.safetensors"))):
                log.warning("the retrains cached in %s were made at %s CPU threads, new ones at %d (the target's): "
                            "they round differently, which blurs the comparison; delete the folder to redo them all",
                            self.folder, info.get("threads", "an unrecorded number of"), self.threads)
        elif distributed.is_main():
            save_json(path, {"train_key": key, "threads": self.threads,
                             **({"retrain": self.retrain.name} if self.retrain is not None
                                else {"train": keyed(self.cfg)})})

    def path(self, removed: Iterable[int], seed: int | None = None) -> Path:
        return self.folder / f"{removal_key(removed, seed)}.safetensors"

    def has(self, removed: Iterable[int], seed: int | None = None) -> bool:
        return self.path(removed, seed).exists()

    def seconds(self, removed: Iterable[int], seed: int | None = None) -> float:
        return float(load_tensors(self.path(removed, seed))["seconds"])

    def get(self, removed: Iterable[int], seed: int | None = None) -> torch.Tensor:
        """Logits ``[N_eval, C]`` of the model retrained without ``removed`` (data-order ``seed``:
        None = the target's own). Under torchrun, rank 0 retrains and the other ranks read its file."""
        removed = sorted({int(r) for r in removed})
        path = self.path(removed, seed)
        if distributed.agree_all([path.exists()])[0]:
            return load_tensors(path)["logits"]
        if distributed.rank_world()[1] > 1:
            with distributed.rank0_first():
                if not path.exists():
                    self._retrain(removed, seed, path)
            return load_tensors(path)["logits"]
        return self._retrain(removed, seed, path)

    def train_without(self, removed: list[int], seed: int | None = None) -> tuple[nn.Module, float]:
        """The model retrained from theta_0 without the ``removed`` groups (data-order ``seed``: None = the target's
        own), in eval mode, and the seconds its training took. Nothing is cached: :meth:`get` caches the logits."""
        keep = ~torch.isin(self.groups.assignment, torch.as_tensor(removed, dtype=torch.long))
        if not keep.any():
            raise ValueError("cannot retrain without every group")
        net = self._start().to(self.device)
        cfg = self.cfg if seed is None else TrainConfig(**{**self.cfg.__dict__, "seed": seed})
        t0 = time.perf_counter()
        from ddm import progress

        was = progress.enabled()
        progress.set_enabled(False)
        try:
            with torch.enable_grad(), devices.threads(self.threads):
                kept = self.train[torch.nonzero(keep).flatten()]
                if self.retrain is None:
                    train_model(net, kept, cfg)
                else:
                    net.train()
                    net = self.retrain(net, kept, seed).to(self.device)
        finally:
            progress.set_enabled(was)
        net.eval()
        return net, time.perf_counter() - t0

    def _retrain(self, removed: list[int], seed: int | None, path: Path) -> torch.Tensor:
        net, seconds = self.train_without(removed, seed)
        with torch.no_grad():
            logits = torch.cat([devices.forward(net, self.eval_x[s : s + 1024])
                                for s in range(0, len(self.eval_x), 1024)])
        if not torch.isfinite(logits).all():
            raise ConfigError(f"a retrain without groups {removed} gave non-finite logits"
                              + (f" (the retrain function {self.retrain.name})" if self.retrain is not None else "")
                              + ": its training diverged; nothing was cached")
        save_tensors(path, {"logits": logits, "removed": torch.as_tensor(removed, dtype=torch.long),
                            "seconds": torch.tensor(seconds)})
        return logits

    def many(self, removed_sets: list[list[int]], desc: str = "retrain", shard: int | None = None,
             num_shards: int | None = None, seed: int | None = None) -> torch.Tensor | None:
        """Retrain every set (this shard's share) in data order ``seed`` (None = the target's own); returns
        ``[M, N_eval, C]`` once all are present.

        Under torchrun the shard is the rank: each rank retrains its share, then (after a barrier) every
        rank returns all of them."""
        rank, world = distributed.rank_world()
        shard, num_shards = (rank, world) if shard is None else (shard, num_shards or 1)
        have = distributed.agree_all([self.has(r, seed) for r in removed_sets])
        missing = [r for r, h in zip(removed_sets, have, strict=True) if not h]
        todo = [r for i, r in enumerate(missing) if i % num_shards == shard and not self.has(r, seed)]
        pbar = bar(len(todo), desc)
        for r in todo:
            self._retrain(sorted({int(x) for x in r}), seed, self.path(r, seed))
            pbar.update(1)
        pbar.close()
        if world > 1:
            distributed.barrier()
        if all(self.has(r, seed) for r in removed_sets):
            return torch.stack([load_tensors(self.path(r, seed))["logits"] for r in removed_sets])
        return None

