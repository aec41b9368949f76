"""Where ddm computes: ``device`` (``--device``): ``auto`` (CUDA when PyTorch sees one, else the CPU; under
``torchrun``, ``cuda:LOCAL_RANK``), ``cpu``,
``cuda`` or ``cuda:N``. Apple's MPS is refused with a message: it has no float64, which the last layer's
curvature (and its eigendecomposition) needs.

The rule throughout: a stage computes where the model is, and everything a stage keeps (trajectory, synsets,
curvature, logits, workspace files) comes back to the CPU, so a workspace made on a GPU opens on a machine
without one. :func:`placed` moves a model to the device for one stage and back.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import torch
from torch import nn

from ddm.exceptions import ConfigError

log = logging.getLogger(__name__)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve(spec: str | torch.device | None = "auto") -> torch.device:
    """The device ``spec`` names, or an error that says what this machine has."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        # under torchrun each process of a node takes its own GPU (wrapping round if there are fewer GPUs)
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device(f"cuda:{local % torch.cuda.device_count()}")
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"device={spec!r} is not a device; use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={spec!r}: this machine has no CUDA device that PyTorch can use (torch "
                              f"{torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use --device cpu "
                              "or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device={spec!r}: there are {torch.cuda.device_count()} CUDA devices "
                              f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    elif dev.type == "mps":
        raise ConfigError(f"device={spec!r}: Apple MPS has no float64, which the last layer's curvature needs; use "
                          f"--device cpu{' (MPS is available here, but not supported)' if _mps_available() else ''}")
    elif dev.type != "cpu":
        raise ConfigError(f"device={spec!r} is not supported; use auto, cpu, cuda or cuda:N")
    return dev


def of(model: nn.Module) -> torch.device:
    """The device of a model's parameters (the CPU for a model without any)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@contextlib.contextmanager
def placed(model: nn.Module, device: torch.device | str | None) -> Iterator[torch.device]:
    """Move ``model`` to ``device`` (None: leave it) for a block, and back to where it was afterwards."""
    before = of(model)
    dev = before if device is None else torch.device(device)
    if dev != before:
        model.to(dev)
    try:
        yield dev
    finally:
        if dev != before:
            model.to(before)


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` CPU threads (``torch.set_num_threads``), the count restored after; ``None`` leaves it.

    A CPU training run is reproducible bit for bit only at the thread count it ran with: the intra-op reductions
    are split by thread, so another count rounds differently, and the rounding grows over the steps (the demo's
    ConvNet: parameters up to 0.9 apart after 20 epochs at 1 and at 2 threads, identical at the same count). Exact
    retrains (``ddm check``, ``ddm evaluate``, ``ddm diagnose --verify``) run at the target's recorded count."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def forward(model: nn.Module, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """``model(x)`` (or with ``params``) computed on the model's device, returned on the CPU."""
    dev = of(model)
    if params is None:
        return model(x.to(dev)).cpu()
    return torch.func.functional_call(model, to(params, dev), (x.to(dev),)).cpu()


def predict(model: nn.Module, x: torch.Tensor, batch: int = 1024,
            params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """The model's outputs for ``x`` (with ``params`` where given) as an inference: in eval mode (batch norm reads its
    running statistics, which stay as they are; no dropout), without gradients, in batches, on the CPU; the model is
    given back in the mode it was in. A forward pass in train mode would normalise with the batch's own statistics
    and move the running ones."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([forward(model, x[i : i + batch], params) for i in range(0, len(x), batch)])
    finally:
        model.train(was)


def to(params: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A parameter dict on ``device`` (the same tensors where they already are)."""
    return {k: v.to(device) for k, v in params.items()}


def cpu(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a parameter dict (what is stored)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in params.items()}


def available_memory() -> int | None:
    """Bytes of host memory available to a new allocation (Linux's MemAvailable; else the physical memory), or None
    where the platform says neither."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None
