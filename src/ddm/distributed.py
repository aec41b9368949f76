"""Many processes on one engine: ``torchrun`` ranks share the embarrassingly parallel work.

Under ``torchrun`` (``RANK`` and ``WORLD_SIZE`` in the environment) ddm joins the process group on first
use (gloo: the collectives are a few flags on the CPU) and every rank runs the same program in lockstep, each on
its own GPU when there are several (``--device auto`` gives rank r ``cuda:LOCAL_RANK``):

* the exact retrains of many removed sets (:meth:`ddm.evaluation.retrain.RetrainCache.many`) are split by
  rank, each rank writing its own result files into the shared folder; after a barrier every rank reads
  them all, so every rank holds the same results as a one-process run;
* the head distillation's groups are split by rank (:func:`owned`): each rank optimises its own groups'
  synthetic images, with the other groups' gradients gathered as constants (:func:`gather_owned`) so that the
  loss, its gradients and the stopping step are those of one process; rank 0 stores the whole synset;
* a single retrain, any other fitted stage or an emulation is computed by rank 0 while the others wait, then
  read from the workspace by all (:func:`rank0_first`);
* reports are written by rank 0 only (:func:`is_main`).

A killed rank's finished files stay; a rerun computes only what is missing. Without ``torchrun`` all of
this is a no-op. Multi-node: ``torchrun --nnodes N --nproc_per_node P --rdzv_backend c10d
--rdzv_endpoint HOST:PORT ...`` with the workspace on a shared file system.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch


def rank_world() -> tuple[int, int]:
    """``(rank, world_size)``; joins the process group if torchrun started this process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and "RANK" in os.environ and dist.is_available():
        # gloo even on GPU machines: ddm's collectives are a few flags in CPU tensors (NCCL would need them on the
        # GPU); the heavy work stays on each rank's own device (ddm.devices picks cuda:LOCAL_RANK)
        dist.init_process_group(backend="gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_world()[0] == 0


def barrier() -> None:
    if rank_world()[1] > 1:
        import torch.distributed as dist

        dist.barrier()


def agree_all(flags: list[bool]) -> list[bool]:
    """Element-wise AND of ``flags`` over the ranks (so every rank takes the same decision)."""
    if rank_world()[1] == 1 or not flags:
        return flags
    import torch.distributed as dist

    t = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return [bool(v) for v in t.tolist()]


_depth = 0


@contextlib.contextmanager
def rank0_first() -> Iterator[None]:
    """Rank 0 runs the block first; the others run it after (and find its results cached). Nested uses
    act at the outermost level only."""
    global _depth
    rank, world = rank_world()
    outer = _depth == 0 and world > 1
    if outer and rank != 0:
        barrier()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if outer and rank == 0:
            barrier()


def owned(num: int) -> torch.Tensor:
    """The items of ``num`` (e.g. groups) this rank works on: ``rank, rank + world, ...`` (all of them alone)."""
    rank, world = rank_world()
    return torch.arange(rank, num, world)


def gather_owned(local: torch.Tensor, num: int) -> torch.Tensor:
    """Every rank's :func:`owned` rows put back in order: ``[len(owned(num)), ...] -> [num, ...]`` on every rank."""
    rank, world = rank_world()
    if world == 1:
        return local
    import torch.distributed as dist

    size = -(-num // world)
    pad = torch.zeros(size, *local.shape[1:], dtype=local.dtype)
    pad[: len(local)] = local.detach().cpu()
    parts = [torch.empty_like(pad) for _ in range(world)]
    dist.all_gather(parts, pad)
    out = torch.empty(num, *local.shape[1:], dtype=local.dtype)
    for r in range(world):
        n = len(range(r, num, world))
        out[r::world] = parts[r][:n]
    return out.to(local.device)
