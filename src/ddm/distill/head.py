"""Head matching: synsets whose last-layer gradient at theta_tau is their group's, plus the curvature.

Removing group k from a model trained to (near) a minimum of the mean loss moves its parameters, to
first order, by the damped Newton step (influence functions)::

    Delta_k = (H + lambda I)^-1 g_k / N,    g_k = sum_{i in D_k} grad l(theta_tau; z_i)

and exact retraining measured on our benchmarks agrees with that step restricted to the last
(Linear) layer about as well as with the full-network one (BENCHMARKS.md, "Head-Newton DDM").
So the ``head`` matcher learns, for every group, ``ipc`` synthetic images with the group's hard label
and a positive loss weight each (in units of training samples) such that their weighted head
gradient reproduces ``g_k`` in the metric that matters, that of the displacement::

    min_S  sum_k |P (g~_k - g_k)|^2 / |P g_k|^2,    P = (H + lambda I)^-1,
    g~_k = sum_s w_s (softmax(z(x_s)) - e_{y_k}) (x) [h(x_s), 1]

``H`` is the Gauss-Newton matrix (= the Hessian) of the mean training loss with respect to the head's weight
and bias (:mod:`ddm.distill.curvature`: exact, or for large heads exact over the top feature directions and
eigenvalue-corrected K-FAC on the rest), stored with the synset:
the online stage (:mod:`ddm.emulate.newton`) needs it. With ``distill.checkpoints`` > 1 the curvature is also
stored at earlier checkpoints of the trajectory: the emulation takes the same synsets' Newton step at each and
averages the predicted logit changes (information about how training got to theta_tau, which an influence
function at theta_tau lacks; the synsets, matched at theta_tau only, transfer).
Hard labels and positive weights make each synthetic image act like training data, so removing it
(a Newton step *against* its gradient) removes by construction; the sign cannot flip.
A group still far from its step after the matching (relative error >= ``distill.retry``) is matched once more
from its highest-loss members with least-squares weights and keeps the better match (:func:`_retry_stuck`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ddm import devices, distributed
from ddm.cluster.groups import Groups, count_classes
from ddm.config import DistillConfig
from ddm.data.dataset import Split
from ddm.distill.checkpoint import matching_step, optimizer_state, restore_optimizer_state
from ddm.distill.curvature import (
    EXACT_LIMIT,
    SUBSPACE_RANK,
    Curvature,
    EigenCorrectedCurvature,
    ExactCurvature,
    ExactSum,
    KroneckerCurvature,
    SubspaceCurvature,
    accumulate_kronecker,
    top_curvature,
)
from ddm.distill.scope import adopt_logits_head, last_linear_name
from ddm.distill.synset import CheckpointCurvature, Synset
from ddm.exceptions import ConfigError, NumericalError
from ddm.linalg import eigh
from ddm.progress import bar, progress
from ddm.train.trajectory import Trajectory
from ddm.workspace import load_tensors, save_tensors

log = logging.getLogger(__name__)
Params = dict[str, torch.Tensor]


@dataclass
class Head:
    """The model split at its last Linear layer: differentiable features and the head's parameters."""

    model: nn.Module
    name: str

    @classmethod
    def of(cls, model: nn.Module) -> Head:
        return cls(model, last_linear_name(model))

    @property
    def linear(self) -> nn.Linear:
        return dict(self.model.named_modules())[self.name]  # type: ignore[return-value]

    @property
    def param_names(self) -> tuple[str, str]:
        return f"{self.name}.weight", f"{self.name}.bias"

    def matrix(self, params: Params | None = None) -> torch.Tensor:
        """The head as one ``[C, d+1]`` matrix (weight, then bias as the last column)."""
        w, b = self.param_names
        p = params if params is not None else dict(self.model.named_parameters())
        return torch.cat([p[w], p[b][:, None]], 1).detach().to(devices.of(self.model))

    def features(self, x: torch.Tensor, params: Params | None = None, chunk: int | None = None) -> torch.Tensor:
        """Augmented penultimate features ``[N, d+1]`` (the head's input, then a 1 for the bias).

        Differentiable in ``x`` when called with grad enabled; ``params`` evaluates another checkpoint.
        Computed on the model's device (``x`` and ``params`` are moved there in chunks of ``chunk`` rows; by
        default 64 on the CPU, where a ConvNet's forward is 3-5x faster per image than in chunks of 1,024 (the
        activations stay in cache), and 1,024 elsewhere)."""
        dev = devices.of(self.model)
        chunk = chunk or (64 if dev.type == "cpu" else 1024)
        params = devices.to(params, dev) if params is not None else None
        got: list[torch.Tensor] = []
        hook = self.linear.register_forward_hook(lambda m, i, o: got.append(i[0].flatten(1)))
        try:
            # split, not slices: under grad each slice's backward writes a zero tensor of x's full size, so N / chunk
            # slices cost N^2 / chunk (K = 1000 groups of 16 images: most of the matching's time); split's backward
            # concatenates the chunks' gradients once (the same values)
            for xb in x.split(chunk):
                xb = xb.to(dev)
                if params is None:
                    self.model(xb)
                else:
                    torch.func.functional_call(self.model, params, (xb,))
        finally:
            hook.remove()
        h = torch.cat(got)
        return torch.cat([h, torch.ones(len(h), 1, dtype=h.dtype, device=h.device)], 1)

    def check(self, x: torch.Tensor) -> None:
        """Refuse models whose logits are not a Linear layer's output as it is (e.g. a softmax or a scale after it),
        saying so. Where they are another Linear's than the head taken so far (a model that registers its output
        layer before its body, or an auxiliary Linear after it), that one becomes the head (``model.ddm_head``)."""
        if adopt_logits_head(self.model, x[:8].to(devices.of(self.model))) is not None:
            self.name = last_linear_name(self.model)  # the head the logits come from, with the usual checks on it
            return
        raise ConfigError("head matching needs a model whose logits are an nn.Linear layer's output, with "
                          f"nothing after it (this model changes {self.name!r}'s output, e.g. a softmax or a scale); "
                          "return the raw logits, or use --recipe paper (or distill.matching=local) for this model")


def head_gradients(h: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, task: Any = None) -> torch.Tensor:
    """Per-sample loss gradients w.r.t. the head matrix: ``[N, d+1], [N, C], [N, C] -> [N, C*(d+1)]``.

    ``targets``: one-hot (or soft) rows; ``task``: a :class:`ddm.task.Task` (default: cross-entropy)."""
    return torch.einsum("nc,nd->ncd", _output_gradient(logits, targets, task), h).flatten(1)


def _output_gradient(logits: torch.Tensor, targets: torch.Tensor, task: Any = None) -> torch.Tensor:
    """The loss's gradient in the logits ``[N, C]``: ``softmax - targets`` for cross-entropy, else the task's."""
    if task is None or task.is_default:
        return logits.softmax(-1) - targets
    return task.output_gradient(logits, targets.argmax(-1)).to(logits.dtype)


def summed_head_gradients(h: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                          groups: int, task: Any = None) -> torch.Tensor:
    """Weighted head gradients summed over consecutive equal-size blocks of rows (a group's images):
    ``[G*m, d+1], [G*m, C], [G*m, C], [G*m] -> [G, C*(d+1)]``; the same as summing :func:`head_gradients`,
    as one batched product instead of a per-sample outer product."""
    delta = _output_gradient(logits, targets, task)
    dw = (delta * weights[:, None]).reshape(groups, -1, delta.shape[1])
    return torch.bmm(dw.transpose(1, 2), h.reshape(groups, -1, h.shape[1])).flatten(1)


def output_curvature(task: Any, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
    """The task's output curvature ``[N, C, C]``, or None for cross-entropy (the curvature classes' closed
    form); what :meth:`ddm.distill.curvature.Curvature.minus` and the accumulators take as ``out_curv``."""
    return None if task is None or task.is_default else task.output_curvature(logits, labels)


@dataclass
class HeadStatistics:
    """What the head matcher and emulator need from the real data at theta_tau."""

    curvature: Curvature  # of the *mean* training loss (D = C (d+1) parameters)
    group_grads: torch.Tensor  # [K, D] summed per group: float64 (float32 above DOUBLE_GRADIENTS_LIMIT entries)
    num_train: int

    @property
    def top_eigenvalue(self) -> float:
        return self.curvature.top_eigenvalue()

    def damping(self, fraction: float, reference: str, weight_decay: float) -> float:
        """The absolute lambda of ``distill.damping`` (``fraction``) of the curvature's top or mean eigenvalue
        (``distill.damping_reference``), plus the weight decay (curvature the loss lacks)."""
        scale = self.top_eigenvalue if reference == "top" else self.curvature.mean_eigenvalue()
        return fraction * scale + weight_decay


#: the curvatures :func:`head_statistics` computed last in this process, by :func:`_curvature_key`: the groups'
#: synset, the class-level one and ``ddm evaluate``'s variants distill on the same model and data, and the curvature
#: (with its eigendecomposition, computed once per object) does not depend on the groups
_CURVATURES: OrderedDict[str, Curvature] = OrderedDict()
#: how many of them are kept, on the CPU: up to five checkpoints of one distillation, which the next one reuses (the
#: largest exact heads' curvatures take about 0.6 GB each with their eigenvectors)
CURVATURE_CACHE = 5


def clear_curvature_cache() -> None:
    """Forget the curvatures :func:`head_statistics` keeps for the next distillation (memory back in a long session;
    the next distillation computes its own)."""
    _CURVATURES.clear()


def _curvature_key(head: Head, train: Split, params: Params | None, batch: int, task: Any, *setting: Any) -> str:
    """What the head's curvature on ``train`` depends on: the model (its architecture, the parameters and buffers it
    is read with, its mode and device), the data, the loss and the curvature's settings, as one digest."""
    h = hashlib.sha256()
    state = {**dict(head.model.named_parameters()), **dict(head.model.named_buffers()), **(params or {})}
    h.update(repr((type(head.model).__qualname__, head.name, head.model.training, str(devices.of(head.model)), batch,
                   getattr(task, "name", None), id(getattr(task, "fn", None)), setting)).encode())
    for name in sorted(state):
        t = state[name].detach()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(_bytes(t))
    for t in (train.x, train.y):
        h.update(f"{tuple(t.shape)}:{t.dtype}".encode())
        h.update(_bytes(t))
    return h.hexdigest()


def _bytes(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def head_statistics(head: Head, train: Split, groups: Groups, num_classes: int, batch: int = 256,
                    params: Params | None = None, curvature: str = "auto", task: Any = None,
                    exact_limit: int = EXACT_LIMIT, subspace_rank: int = SUBSPACE_RANK) -> HeadStatistics:
    """Stream the training set once (``batch`` rows at a time): curvature and group gradients.

    ``curvature``: ``exact``, ``kfac``, ``ekfac`` (K-FAC's eigenbasis with the exact eigenvalues in it: a second
    pass), ``subspace`` (exact over the top ``exact_limit // C - 1`` feature directions, fewer with ``subspace_rank``
    > 0, EK-FAC on the rest: a second pass) or ``auto`` (exact up to ``exact_limit`` head parameters, ``subspace``
    above). A curvature this process computed for the same model, parameters, data, loss and settings (another
    split of the data into groups) is reused (:data:`CURVATURE_CACHE`): only the group gradients are streamed."""
    key = _curvature_key(head, train, params, batch, task, curvature, exact_limit, subspace_rank, FEATURE_LIMIT,
                         FEATURE_BASIS)
    known = _CURVATURES.get(key)
    if known is not None:
        _CURVATURES.move_to_end(key)
        return HeadStatistics(known.to(devices.of(head.model)),
                              group_gradients(head, train, groups, num_classes, batch, params, task), len(train))
    stats = _head_statistics(head, train, groups, num_classes, batch, params, curvature, task, exact_limit,
                             subspace_rank)
    _CURVATURES[key] = stats.curvature.to("cpu")  # the same object on the CPU: its eigendecomposition is shared
    while len(_CURVATURES) > CURVATURE_CACHE:
        _CURVATURES.popitem(last=False)
    return stats


def feature_batches(head: Head, train: Split, params: Params | None, batch: int,
                    desc: str) -> Iterator[tuple[slice, torch.Tensor]]:
    """The training set's rows ``batch`` at a time with their head features, under a progress bar: ``(rows,
    features)``. The caller sets the grad mode (a ``no_grad`` held inside a generator would leak to it between
    batches)."""
    for s in progress(range(0, len(train), batch), desc, total=-(-len(train) // batch)):
        rows = slice(s, s + batch)
        yield rows, head.features(train.x[rows], params)


def group_gradients(head: Head, train: Split, groups: Groups, num_classes: int, batch: int = 256,
                    params: Params | None = None, task: Any = None,
                    each: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
                    desc: str = "group gradients (last layer)") -> torch.Tensor:
    """The groups' summed head gradients ``[K, D]`` (float64; float32 above :data:`DOUBLE_GRADIENTS_LIMIT` entries),
    streaming the training set once ``batch`` rows at a time; ``each(features, logits, labels)`` is called on every
    batch too (:func:`head_statistics` accumulates the curvature there, in the same pass)."""
    W = head.matrix(params)
    dtype = gradient_dtype(groups.num_groups, W.numel())
    G = torch.zeros(groups.num_groups, W.numel(), dtype=dtype, device=W.device)
    assignment = groups.assignment.to(W.device)
    with torch.no_grad():
        for rows, h in feature_batches(head, train, params, batch, desc):
            z = h @ W.T
            yb = train.y[rows].to(W.device)
            if each is not None:
                each(h, z, yb)
            G.index_add_(0, assignment[rows], head_gradients(h, z, F.one_hot(yb, num_classes).to(z.dtype),
                                                             task).to(dtype))
    return G


#: above this many entries (K groups x D last-layer parameters) the groups' summed gradients are held in single
#: precision: 2,000 groups of Tiny ImageNet on a ConvNet of width 32 have D = 409,800 (6.6 GB per copy in double
#: precision, several copies alive), where the benchmarks' largest has 2.6 million entries. Every consumer but the
#: saturation check casts them to single precision first (the whiteners, the stored gradients)
DOUBLE_GRADIENTS_LIMIT = 2 ** 27


#: the entries of one chunk of :func:`row_chunks` (256 MB a copy in double precision): the health check holds about
#: eight copies of its chunk at once (the real and synthetic steps, their double-precision comparison)
CHUNK_ENTRIES = 2 ** 25


def row_chunks(groups: int, size: int) -> list[slice]:
    """Slices of ``groups`` rows of ``size`` entries each: one for all of them up to :data:`DOUBLE_GRADIENTS_LIMIT`
    entries, else chunks of :data:`CHUNK_ENTRIES` (what a check computed row by row takes at a time)."""
    most = min(CHUNK_ENTRIES, DOUBLE_GRADIENTS_LIMIT)
    step = groups if gradient_dtype(groups, size) == torch.float64 else max(1, most // max(1, size))
    return [slice(a, min(a + step, groups)) for a in range(0, groups, step)]


def gradient_dtype(groups: int, size: int) -> torch.dtype:
    """The precision of ``groups`` summed gradients of ``size`` entries each (:data:`DOUBLE_GRADIENTS_LIMIT`)."""
    return torch.float64 if groups * size <= DOUBLE_GRADIENTS_LIMIT else torch.float32


#: above this many features (``d + 1``) the last layer's curvature (``distill.curvature`` auto, subspace or ekfac) keeps
#: only the features' top :data:`FEATURE_BASIS` directions (:func:`feature_basis`): the ``(d+1)^2`` second moment of
#: a ConvNet of width 128 and depth 1 on 28x28 images (25,089 features) took 20 GB and minutes to decompose
FEATURE_LIMIT = 8192
#: the feature directions kept above :data:`FEATURE_LIMIT`: every direction of the training features where they are
#: this many or fewer (the second moment's rank is at most the training set's size), else the top ones
FEATURE_BASIS = 2048


@torch.no_grad()
def feature_basis(head: Head, train: Split, params: Params | None, batch: int, rank: int,
                  power: int = 2) -> tuple[torch.Tensor, float]:
    """The top ``rank`` eigenvectors ``[d+1, rank]`` (by decreasing eigenvalue, double precision) of the features'
    second moment ``S = mean_i h_i h_i^T`` over ``train``, found without forming ``S``, and the share of ``S``'s trace
    they hold. Where the training set has no more than ``rank + 16`` samples, its features span at most that many
    directions: all of them, exactly, from the samples' Gram matrix (one pass; fewer columns where the features span
    fewer directions). Otherwise a randomized range finder with ``power`` subspace iterations (Halko et al. 2011:
    ``2 + power`` passes over the data)."""
    W = head.matrix(params)
    d1, dev = W.shape[1], W.device
    k = min(d1, rank + 16)

    def stream(desc: str) -> Iterator[torch.Tensor]:
        return (h.double() for _, h in feature_batches(head, train, params, batch, desc))

    if len(train) <= k:
        h = torch.cat(list(stream("feature directions of the last layer")))
        evals, v = torch.linalg.eigh(h @ h.T)
        evals, v = evals.flip(0), v.flip(1)
        keep = evals > 1e-10 * float(evals[0].clamp(min=1e-300))
        basis = (h.T @ v[:, keep]) / evals[keep].sqrt()  # unit columns: h^T v / sqrt(lambda)
        return basis[:, :rank].contiguous(), float(evals[keep][:rank].sum() / evals[keep].sum())
    g = torch.Generator().manual_seed(0)
    q = torch.randn(d1, k, generator=g, dtype=torch.float64).to(dev)
    for i in range(1 + power):
        y = torch.zeros(d1, k, dtype=torch.float64, device=dev)
        for h in stream(f"feature directions of the last layer ({i + 1} of {2 + power})"):
            y += h.T @ (h @ q)
        q = torch.linalg.qr(y).Q
    b = torch.zeros(k, k, dtype=torch.float64, device=dev)
    trace = 0.0
    for h in stream(f"feature directions of the last layer ({2 + power} of {2 + power})"):
        hq = h @ q
        b += hq.T @ hq
        trace += float(h.square().sum())
    evals, evecs = torch.linalg.eigh((b + b.T) / 2)
    evals, evecs = evals.flip(0)[:rank].clamp(min=0), evecs.flip(1)[:, :rank]
    return (q @ evecs).contiguous(), float(evals.sum()) / trace if trace > 0 else 1.0


def _head_statistics(head: Head, train: Split, groups: Groups, num_classes: int, batch: int, params: Params | None,
                     curvature: str, task: Any, exact_limit: int, subspace_rank: int) -> HeadStatistics:
    W = head.matrix(params)
    D = W.numel()
    C, d1 = W.shape
    dev = W.device  # the model's: the training set streams there a batch at a time
    if curvature == "auto":
        curvature = "exact" if D <= exact_limit else "subspace"
    rank = min(d1, max(0, exact_limit // C - 1))
    rank = min(rank, subspace_rank) if subspace_rank > 0 else rank
    if curvature == "subspace" and rank >= d1:
        curvature = "exact"
    elif curvature == "subspace" and rank == 0:
        curvature = "ekfac"
    exact = curvature == "exact"
    corrected = curvature in ("ekfac", "subspace")
    low_rank = corrected and d1 > FEATURE_LIMIT  # the features' top directions only (FEATURE_LIMIT)
    H = ExactSum(C, d1, dev) if exact else None
    A = torch.zeros(W.shape[0], W.shape[0], dtype=torch.float64, device=dev)
    S = None if low_rank else torch.zeros(W.shape[1], W.shape[1], dtype=torch.float64, device=dev)

    def add_curvature(h: torch.Tensor, z: torch.Tensor, yb: torch.Tensor) -> None:
        oc = output_curvature(task, z, yb)
        if H is not None:
            H.add(h, z, out_curv=oc)
        else:
            a, hh = accumulate_kronecker(h, z, oc, features=S is not None)
            A.add_(a)
            if S is not None and hh is not None:
                S.add_(hh)

    G = group_gradients(head, train, groups, num_classes, batch, params, task, each=add_curvature,
                        desc="curvature of the last layer")
    n = len(train)
    curv: Curvature | None = None
    if H is not None:
        curv = ExactCurvature(H.matrix() / n)
    elif S is not None:
        curv = KroneckerCurvature(A / n, S / n)
    if corrected:  # the second pass: the exact curvature on the top feature directions and/or in K-FAC's basis
        qa, full = EigenCorrectedCurvature.basis(A / n, None if S is None else S / n)
        if full is not None:
            qs = full.flip(1)  # the features' directions by decreasing energy
        else:  # a large head (FEATURE_LIMIT): the features' top directions, found without their second moment
            qs, kept = feature_basis(head, train, params, batch, min(d1, FEATURE_BASIS))
            log.info("the last layer's %s features: its curvature is held on their top %s directions (%.4f of their "
                     "second moment; distill FEATURE_LIMIT)", f"{d1:,}", f"{qs.shape[1]:,}", kept)
        r = min(rank, qs.shape[1]) if curvature == "subspace" else 0
        u, rest = qs[:, :r].contiguous(), qs[:, r:].contiguous()
        top = ExactSum(C, r, dev)  # laid out once, as the first pass's exact curvature
        lam = torch.zeros(C, rest.shape[1], dtype=torch.float64, device=dev)
        with torch.no_grad():
            for rows, h in feature_batches(head, train, params, batch, "curvature of the last layer (second pass)"):
                z = h @ W.T
                oc = output_curvature(task, z, train.y[rows].to(dev))
                lam += EigenCorrectedCurvature.accumulate(qa, rest, h, z, oc)
                if r:
                    top.add(SubspaceCurvature.features(u, h), z, out_curv=oc)
        curv = EigenCorrectedCurvature(qa, rest, lam / n)
        if r:
            curv = SubspaceCurvature(u, ExactCurvature(top.matrix() / n), curv)
    assert curv is not None
    return HeadStatistics(curv, G, n)


def site_gradients(head: Head, trajectory: Trajectory, train: Split, groups: Groups, num_classes: int,
                   synset: Synset, task: Any = None,
                   statistics: dict[int, HeadStatistics] | None = None) -> dict[str, torch.Tensor]:
    """The groups' own summed head gradients ``[K, D]`` (float32, on the CPU) at every site the Newton step of
    ``synset`` is taken at: ``tau`` (theta_tau) and ``checkpoint<index>`` for each of its checkpoints; what
    ``emulate.gradients=groups`` reads in place of the synthetic images' (:attr:`Synset.group_gradients`). Those
    ``statistics`` (by trajectory index, e.g. the distillation's own) already hold are not streamed again."""
    statistics = statistics or {}
    sites = [("tau", trajectory.tau, None)] + [(f"checkpoint{c.index}", c.index, trajectory.checkpoint(c.index))
                                               for c in synset.checkpoints]
    out = {}
    for name, index, params in sites:
        known = statistics.get(index)
        G = known.group_grads if known is not None else group_gradients(
            head, train, groups, num_classes, params=params, task=task,
            desc=f"group gradients at {'theta_tau' if params is None else f'checkpoint {index}'}")
        out[name] = G.float().cpu()
    return out


def checkpoint_rank(cfg: DistillConfig, num_classes: int) -> int:
    """``distill.subspace_rank`` at the earlier checkpoints: ``distill.checkpoint_subspace_share`` of theta_tau's
    exact directions (``subspace_rank``, or as many as ``exact_limit`` allows), at least one; theta_tau's own
    ``subspace_rank`` at a share of 1 or where theta_tau has no exact direction either."""
    limit = cfg.exact_limit // num_classes - 1
    if cfg.checkpoint_subspace_share >= 1 or limit < 1:  # (no room for one direction: EK-FAC at every checkpoint)
        return cfg.subspace_rank
    full = min(limit, cfg.subspace_rank) if cfg.subspace_rank > 0 else limit
    return max(1, int(full * cfg.checkpoint_subspace_share))


def checkpoint_indices(num_checkpoints: int, wanted: int) -> list[int]:
    """Trajectory indices of up to ``wanted`` checkpoints evenly spaced from theta_tau (the last) back to the first
    after theta_0 (the random initialisation, never used), ascending; the last is always theta_tau."""
    last = num_checkpoints - 1
    if wanted <= 1 or last <= 1:
        return [last]
    return sorted({int(round(float(v))) for v in torch.linspace(last, 1, min(wanted, last))})


def checkpoint_curvatures(head: Head, trajectory: Trajectory, train: Split, groups: Groups, cfg: DistillConfig,
                          num_classes: int, weight_decay: float, task: Any = None,
                          synset: Synset | None = None,
                          statistics: dict[int, HeadStatistics] | None = None) -> list[CheckpointCurvature]:
    """The head's curvature and damping at the earlier checkpoints the Newton emulation averages over; with the
    ``synset`` (matched at theta_tau), also how well its steps transfer there: the cosine between each group's
    synset step and its real removal step at that checkpoint (mean and minimum over groups). ``statistics``, when
    given, holds or receives each checkpoint's :class:`HeadStatistics` by trajectory index (those it holds are not
    streamed again; the health check reuses them)."""
    out = []
    rank = checkpoint_rank(cfg, num_classes)
    for i in checkpoint_indices(len(trajectory), cfg.checkpoints)[:-1]:
        p = trajectory.checkpoint(i)
        st = statistics.get(i) if statistics is not None else None
        if st is None:
            st = head_statistics(head, train, groups, num_classes, params=p, curvature=cfg.curvature, task=task,
                                 exact_limit=cfg.exact_limit, subspace_rank=rank)
        if statistics is not None:
            statistics[i] = st
        damping = st.damping(cfg.damping, cfg.damping_reference, weight_decay)
        c = CheckpointCurvature(i, float(trajectory.epochs[i]), st.curvature.to("cpu"), damping)
        if synset is not None:
            with torch.no_grad():
                whiten = st.curvature.whitener(damping)
                cos = torch.cat([row_cosine(whitened_synset_gradients(head, synset, st.curvature, damping, p, rows),
                                            whiten(st.group_grads[rows]))
                                 for rows in row_chunks(groups.num_groups, st.group_grads.shape[1])])
            c.cosine_mean, c.cosine_min = float(cos.mean()), float(cos.min())
        out.append(c)
    if cfg.checkpoints > 1 and not out:
        log.info("the trajectory has no checkpoint between theta_0 and theta_tau: the Newton attribution uses "
                 "theta_tau only")
    return out


def slot_labels(train: Split, groups: Groups, ipc: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each synthetic image's class and its share of the group's samples: ``labels [K, n]``, ``shares [K, n]``.

    A group of one class (k-means within classes, the class split) gets ``ipc`` images of that class, each
    standing for ``size / ipc`` samples. A group that mixes classes (the sequential split) needs an image of every
    class it holds: a hard-labelled image's head gradient only moves the logits the way its class does, so a
    class without an image is a part of the group's removal step no weight can reproduce. So ``n`` is
    ``max(ipc, the most classes in one group)``; every class in a group gets one image, the rest go to its
    classes in proportion to their counts (the largest count per image first), and each image stands for its
    class's count divided by that class's images. Where every group holds fewer than ``ipc`` samples (one group
    per sample: ``cluster.method=sample``), ``n`` is the largest group's size: more images would only repeat members."""
    K = groups.num_groups
    counts = count_classes(groups.assignment, train.y, K)  # also for groups stored before they kept their counts
    n = max(min(ipc, int(counts.sum(1).max())), int((counts > 0).sum(1).max()))
    labels = torch.empty(K, n, dtype=torch.long)
    shares = torch.empty(K, n)
    for k in range(K):
        present = torch.nonzero(counts[k]).flatten()
        present = present[torch.argsort(counts[k, present], descending=True, stable=True)]
        slots = {int(c): 1 for c in present}
        for _ in range(n - len(present)):  # the class with the most samples per image gets the next image
            c = max(slots, key=lambda c: (float(counts[k, c]) / slots[c], -c))
            slots[c] += 1
        j = 0
        for c, m in slots.items():
            labels[k, j:j + m] = c
            shares[k, j:j + m] = float(counts[k, c]) / m
            j += m
    return labels, shares


def init_images(train: Split, groups: Groups, labels: torch.Tensor, init: str, seed: int,
                losses: torch.Tensor | None = None) -> torch.Tensor:
    """``[K, n, C, H, W]``: for image ``j`` of group ``k``, a member of the group of class ``labels[k, j]`` (``real``:
    random members, distinct while the class has enough; ``loss``: the members with the largest ``losses``, the
    per-sample training losses at theta_tau, which carry most of the group's gradient) or noise."""
    g = torch.Generator().manual_seed(seed)
    K, n = labels.shape
    if init == "noise":
        return torch.randn(K, n, *train.x.shape[1:], generator=g)
    images = torch.empty(K, n, *train.x.shape[1:])
    for k in range(K):
        m = groups.members(k)
        for c in labels[k].unique().tolist():
            slots = torch.nonzero(labels[k] == c).flatten()
            mc = m[train.y[m] == c]
            if init == "loss":
                if losses is None:
                    raise ConfigError("distill.init=loss is for head matching (distill.matching=head); use real "
                                      "or noise")
                pick = mc[torch.argsort(losses[mc], descending=True, stable=True)[:len(slots)]]
            else:
                pick = mc[torch.randperm(len(mc), generator=g)[:len(slots)]]
            if len(pick) < len(slots):
                pick = torch.cat([pick, mc[torch.randint(0, len(mc), (len(slots) - len(pick),), generator=g)]])
            images[k, slots] = train.x[pick]
    return images


def synset_head_gradients(head: Head, synset: Synset, params: Params | None = None,
                          rows: slice | None = None) -> torch.Tensor:
    """Weighted head gradient of each group's synthetic images at ``params``: ``[K, D]`` (summed over ipc); of the
    groups ``rows`` only (``[len(rows), D]``) where given."""
    x, t, w, count = _synset_rows(synset, rows)
    W = head.matrix(params)
    h = head.features(x, params)
    return summed_head_gradients(h, h @ W.T, t.to(h.device), w.to(h.device), count, synset.task)


def synset_head_factors(head: Head, synset: Synset, params: Params | None = None,
                        rows: slice | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The factors of :func:`synset_head_gradients`: ``(delta [R, n, C], h [R, n, d+1])``, each image's weighted output
    gradient and its features, whose outer products summed over a group's ``n`` images are its row
    (:meth:`ddm.distill.curvature.Curvature.factored_whitener` takes them)."""
    x, t, w, count = _synset_rows(synset, rows)
    W = head.matrix(params)
    h = head.features(x, params)
    return _image_factors(h, W, t.to(h.device), w.to(h.device), count, synset.task)


def _image_factors(h: torch.Tensor, W: torch.Tensor, t: torch.Tensor, w: torch.Tensor, count: int,
                   task: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(delta [count, n, C], h [count, n, d+1])`` of ``count`` groups' images in turn (features ``h``, targets ``t``,
    weights ``w``): each image's weighted output gradient and its features."""
    delta = _output_gradient(h @ W.T, t, task) * w[:, None]
    return delta.reshape(count, -1, delta.shape[1]), h.reshape(count, -1, h.shape[1])


def _whitened_rows(h: torch.Tensor, W: torch.Tensor, t: torch.Tensor, w: torch.Tensor, count: int, task: Any,
                   whiten: Callable[[torch.Tensor], torch.Tensor],
                   factored: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
    """``whiten`` of the summed head gradients of ``count`` groups' images in turn (as :func:`_image_factors` takes
    them), or ``factored`` of their factors where that pays (:func:`factored_pays`: many classes, few images). The
    matching (differentiable images and log weights) and the steps read from stored synsets share it."""
    if factored is not None and factored_pays(len(h) // count, *W.shape):
        return factored(*_image_factors(h, W, t, w, count, task))
    return whiten(summed_head_gradients(h, h @ W.T, t, w, count, task))


def whitened_synset_gradients(head: Head, synset: Synset, curvature: Curvature, damping: float,
                              params: Params | None = None, rows: slice | None = None) -> torch.Tensor:
    """``curvature.whitener(damping)`` of :func:`synset_head_gradients` (float32 ``[R, D]``), from each image's factors
    where that pays (:func:`factored_pays`: many classes, few images), else from the summed rows."""
    x, t, w, count = _synset_rows(synset, rows)
    W = head.matrix(params)
    h = head.features(x, params)
    return _whitened_rows(h, W, t.to(h.device), w.to(h.device), count, synset.task,
                          lambda g: curvature.whitener(damping)(g), curvature.factored_whitener(damping))


def _synset_rows(synset: Synset, rows: slice | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The flat images, targets and weights of the groups ``rows`` (all where None), and how many groups."""
    x, t, _ = synset.flat()
    w = synset.image_weights().reshape(-1)
    if rows is None:
        return x, t, w, synset.num_groups
    start, stop, _ = rows.indices(synset.num_groups)
    n = len(x) // synset.num_groups  # the flat rows are the groups' images in turn
    return x[start * n : stop * n], t[start * n : stop * n], w[start * n : stop * n], stop - start


def row_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine of each pair of rows ``[K, D]``, in double and independent of scale: ``F.cosine_similarity`` floors each
    norm at 1e-8, which sent a group whose removal step is 1e-12 (a model that fits all its members exactly) to a
    cosine of 0 and the health check's flag. Rows of zeros give 0."""
    a, b = a.double(), b.double()
    a = a / a.abs().amax(1, keepdim=True).clamp(min=torch.finfo(torch.float64).tiny)  # rescaled: no underflow
    b = b / b.abs().amax(1, keepdim=True).clamp(min=torch.finfo(torch.float64).tiny)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp(min=torch.finfo(torch.float64).tiny)


def matching_quality(synthetic: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-group cosine and relative error ``|a - b|^2 / |b|^2`` of rows ``[K, D]``: ``[K]`` each (both independent
    of the rows' common scale)."""
    a, b = synthetic.double(), real.double()
    scale = b.abs().amax(1, keepdim=True).clamp(min=torch.finfo(torch.float64).tiny)
    a, b = a / scale, b / scale
    return {"cosine": row_cosine(a, b),
            "relative_error": ((a - b) ** 2).sum(1) / (b ** 2).sum(1).clamp(min=torch.finfo(torch.float64).tiny)}


def _nnls_weights(head: Head, images: torch.Tensor, onehot: torch.Tensor, whiten: Any, target: torch.Tensor,
                  fallback: torch.Tensor, task: Any = None) -> torch.Tensor:
    """Initial image weights ``[K, ipc]``: per group, the non-negative least-squares fit of its (whitened) removal
    step by its images' gradients (with a 1e-3 ridge toward the even share ``fallback``); a weight below 1 % of the
    even share gets that 1 %, so every image keeps a positive weight and stays trainable."""
    from scipy.optimize import nnls

    K, ipc = images.shape[:2]
    with torch.no_grad():
        h = head.features(images.reshape(K * ipc, *images.shape[2:]))
        a = whiten(head_gradients(h, h @ head.matrix().T, onehot, task)).reshape(K, ipc, -1).double().cpu()
    t = target.double().cpu()
    out = []
    for k in range(K):
        # a small ridge toward the even share keeps the fit well posed when the images' gradients are nearly
        # collinear (otherwise float rounding can flip which weights are zero)
        rho = 1e-3 * float((a[k] ** 2).sum()) / ipc
        m = torch.cat([a[k].T, rho ** 0.5 * torch.eye(ipc, dtype=torch.float64)])
        v = torch.cat([t[k], rho ** 0.5 * fallback[k].double()])
        out.append(torch.as_tensor(nnls(m.numpy(), v.numpy())[0]))
    return torch.maximum(torch.stack(out).float(), 0.01 * fallback)


def _holds(model: nn.Module, params: Params) -> bool:
    """Whether ``model``'s parameters are exactly ``params``."""
    own = dict(model.named_parameters())
    return own.keys() == params.keys() and all(torch.equal(own[k].detach().cpu(), params[k].detach().cpu())
                                                for k in own)


def feature_moment(head: Head, train: Split, params: Params | None = None, batch: int = 256) -> torch.Tensor:
    """The training features' second moment ``E[h h^T]`` ``[d+1, d+1]`` (float64) at ``params`` (theta_tau by
    default): the metric in which a head step's logit change on the training inputs is measured."""
    W = head.matrix(params)
    M = torch.zeros(W.shape[1], W.shape[1], dtype=torch.float64, device=W.device)
    with torch.no_grad():
        for s in range(0, len(train), batch):
            h = head.features(train.x[s : s + batch], params).double()
            M += h.T @ h
    return M / max(len(train), 1)


def match_metric(cfg: DistillConfig, num_classes: int) -> str:
    """``distill.match_metric`` resolved: as set, or (none, the default) ``both`` where the task has two classes and
    ``step`` otherwise."""
    if cfg.match_metric is not None:
        return cfg.match_metric
    return "both" if num_classes == 2 else "step"


def step_whitener(metric: str, curvature: Curvature, damping: float, head: Head, train: Split,
                  params: Params | None = None, reference: torch.Tensor | None = None
                  ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The map whose row norms the head matching compares (``metric``, :func:`match_metric`): ``step``, the removal step
    ``(H + lambda I)^-1 v`` itself (:meth:`Curvature.whitener`); ``outputs``, that step's root-mean-square logit
    change on the training inputs, ``|U R|`` with ``R R^T`` the features' second moment (:func:`feature_moment`);
    ``both``, the two side by side, each divided by its median row norm over ``reference`` (the groups' real
    gradients ``[K, D]``, needed then), so that the matching error is about the mean of the two relative errors.
    The step's own norm is dominated by the directions of least curvature, which the damping amplifies up to
    1 / lambda and which the data's features barely reach; the logit change weighs each direction by what the
    inputs see of it, and leaves the directions they do not see free."""
    step = curvature.whitener(damping)
    if metric == "step":
        factored = curvature.factored_whitener(damping)
        if factored is not None:  # what _site_loss uses where it pays (factored_pays)
            step.factored = factored  # type: ignore[attr-defined]
        return step
    evals, evecs = eigh(feature_moment(head, train, params))
    root = (evecs * evals.clamp(min=0).sqrt()).float()  # R: R R^T = E[h h^T]
    d1 = root.shape[0]

    def outputs(v: torch.Tensor) -> torch.Tensor:
        U = curvature.solve(v, damping, single=True)
        return (U.reshape(len(v), -1, d1) @ root.to(U.device)).reshape(len(v), -1)

    if metric == "outputs":
        return outputs
    if reference is None:
        raise ValueError("distill.match_metric=both needs the groups' real gradients to scale its two parts")
    with torch.no_grad():
        a = float(step(reference).norm(dim=1).median().clamp(min=1e-30))
        b = float(outputs(reference).norm(dim=1).median().clamp(min=1e-30))
    return lambda v: torch.cat([step(v) / a, outputs(v) / b], dim=1)


def _sample_losses(head: Head, train: Split, task: Any = None) -> torch.Tensor:
    """Each training sample's loss at theta_tau ``[N]`` (on the CPU): what ``init_images(..., "loss")`` ranks by."""
    with torch.no_grad():
        h = head.features(train.x)
        z, y = h @ head.matrix().T, train.y.to(h.device)
        return (F.cross_entropy(z, y, reduction="none") if task is None else task.loss(z, y)).cpu()


def _retry_stuck(head: Head, train: Split, groups: Groups, labels: torch.Tensor, shares: torch.Tensor,
                 own: torch.Tensor, images: torch.Tensor, log_w: torch.Tensor, onehot: torch.Tensor, site: Any,
                 cfg: DistillConfig, task: Any = None, chunk: int | None = None) -> dict[int, tuple[float, float]]:
    """``distill.retry``: this process's groups whose relative matching error at theta_tau (``site``) is still at
    least ``cfg.retry`` are matched again from their members with the largest training loss at theta_tau, with
    least-squares weights (Adam at ``lr_img`` for ``iterations`` steps, each group's best step kept); a group takes
    the new images and weights, in place, only where they match better. Returns ``{group: (error before, after)}``
    of the groups retried. ``chunk``: how many groups' errors are computed at a time (the matching's
    ``distill.match_chunk``; default all at once)."""
    whiten_at, target_at = site[2], site[3]
    ipc = labels.shape[1]
    num_classes = onehot.shape[1]
    oh = onehot.reshape(len(own), ipc, num_classes)
    rows = own.to(target_at.device)

    def errors(imgs: torch.Tensor, lw: torch.Tensor, local: torch.Tensor, by: int | None = None) -> torch.Tensor:
        return _site_errors(head, imgs, lw, oh[local].reshape(-1, num_classes), own[local.cpu()], site, task, by)

    with torch.no_grad():
        before = errors(images.detach(), log_w.detach(), torch.arange(len(own), device=images.device), chunk)
    local = torch.nonzero(~(before < cfg.retry)).flatten()  # NaN counts as stuck
    if len(local) == 0:
        return {}
    gids = own[local.cpu()]
    new = init_images(train, groups, labels, "loss", cfg.seed, _sample_losses(head, train, task))[gids]
    new = new.to(images.device)
    w0 = _nnls_weights(head, new, oh[local].reshape(-1, num_classes), whiten_at, target_at[rows[local]],
                       shares[gids], task)
    new.requires_grad_(True)
    lw = torch.log(w0).to(images.device).clone().requires_grad_(True)
    opt = torch.optim.Adam([{"params": [new], "lr": cfg.lr_img}, {"params": [lw], "lr": cfg.lr_label}])
    best_err = torch.full((len(local),), float("inf"), device=images.device)
    best_img, best_lw = new.detach().clone(), lw.detach().clone()
    at_once = len(local) if chunk is None else chunk
    for it in range(cfg.iterations + 1):
        if at_once >= len(local):
            err = errors(new, lw, local)
        else:  # many stuck groups: each chunk's graph differentiated and freed in turn, as the matching's
            err = _chunked_gradients(new, lw, at_once, lambda a, b, x, w: errors(x, w, local[a:b]))
        with torch.no_grad():  # each group's best step so far (NaN never wins)
            better = err.detach() < best_err
            best_err = torch.where(better, err.detach(), best_err)
            best_img[better], best_lw[better] = new.detach()[better], lw.detach()[better]
        if it == cfg.iterations or float(err.detach().mean()) < cfg.tolerance:
            break
        if at_once >= len(local):
            opt.zero_grad(set_to_none=True)
            err.sum().backward()
        opt.step()
    out: dict[int, tuple[float, float]] = {}
    with torch.no_grad():
        for j, k in enumerate(gids.tolist()):
            b, a = float(before[local[j]]), float(best_err[j])
            out[k] = (b, a)
            if a < b or not b == b:
                images[local[j]] = best_img[j]
                log_w[local[j]] = best_lw[j]
    kept = {k: v for k, v in out.items() if v[1] < v[0] or not v[0] == v[0]}
    log.info("head distillation: %d group(s) still at relative error >= %g matched again from their highest-loss "
             "members; %d improved (%s)", len(out), cfg.retry, len(kept),
             ", ".join(f"{k}: {b:.2g} -> {a:.2g}" for k, (b, a) in kept.items()))
    return out


def distill_head(model: nn.Module, trajectory: Trajectory, train: Split, groups: Groups, cfg: DistillConfig,
                 num_classes: int, folder: str | Path | None = None, weight_decay: float = 0.0,
                 task: Any = None, statistics: dict[int, HeadStatistics] | None = None,
                 group_curvature: bool = True) -> Synset:
    """Learn the head-matched synset (module doc) and attach the curvature and health checks.

    With ``folder``, a checkpoint is kept there so a killed run resumes. ``statistics``, when given, receives the
    :class:`HeadStatistics` computed on the way, by trajectory index (theta_tau's only when the model holds
    theta_tau's parameters), so that :func:`ddm.health.synset_health` need not stream the training set again.
    ``group_curvature`` False leaves :attr:`Synset.group_curvature` to :func:`add_group_curvature` (the synset stage
    computes it only for the synsets it keeps)."""
    head = Head.of(model)
    head.check(train.x)
    with _frozen(model):
        return _distill_head(head, trajectory, train, groups, cfg, num_classes, folder, weight_decay, task,
                             statistics, group_curvature)


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode with no parameter requiring gradients, as it was afterwards."""
    was_training = model.training
    model.eval()
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, r in zip(model.parameters(), requires, strict=True):
            p.requires_grad_(r)
        model.train(was_training)


def add_group_curvature(model: nn.Module, train: Split, groups: Groups, syn: Synset, rank: int) -> None:
    """Attach ``distill.unlearn_rank``'s group curvature (:func:`group_curvatures`) to a head synset distilled
    without it (``group_curvature=False``): the same pairs :func:`distill_head` would have stored."""
    if syn.kind != "head" or syn.block or syn.group_curvature is not None or syn.curvature is None:
        return
    head = Head.of(model)
    with _frozen(model):
        syn.group_curvature = group_curvatures(head, train, groups, syn.curvature, rank, syn.task)


#: below this top eigenvalue of the last layer's curvature at theta_tau the model fits its training data with
#: certainty to single precision: the groups' gradients underflow (exact zeros among them) and a damped step, whose
#: squares the float32 matching sums, overflows (a 3,072-pixel softmax regression trained to a loss of 0 read 8e-29,
#: where the benchmarks' models read 0.006-25)
SATURATED_CURVATURE = 1e-12


def _refuse_saturated(stats: HeadStatistics) -> None:
    """A clear error where the model has no curvature left at theta_tau (:data:`SATURATED_CURVATURE`) instead of a
    matching that diverges for a reason the learning rates cannot fix."""
    top = stats.top_eigenvalue
    if top < SATURATED_CURVATURE:
        zero = int((stats.group_grads.abs().amax(1) == 0).sum())
        raise NumericalError(
            f"the target model fits its training data with certainty to single precision: its last layer's curvature "
            f"at theta_tau is {top:.2g} at most (the benchmarks' models: 0.006 and above) and {zero} of "
            f"{len(stats.group_grads)} groups' gradients are exactly 0, so removing a group changes nothing that "
            "float32 can hold and the removal step DDM distils is undefined. Train it less (fewer train.epochs or a "
            "lower train.lr), with train.weight_decay, or on more data; its loss at theta_tau should not be 0")


def _distill_head(head: Head, trajectory: Trajectory, train: Split, groups: Groups, cfg: DistillConfig,
                  num_classes: int, folder: str | Path | None, weight_decay: float, task: Any = None,
                  statistics: dict[int, HeadStatistics] | None = None, group_curvature: bool = True) -> Synset:
    stats = head_statistics(head, train, groups, num_classes, curvature=cfg.curvature, task=task,
                            exact_limit=cfg.exact_limit, subspace_rank=cfg.subspace_rank)
    statistics = {} if statistics is None else statistics
    if _holds(head.model, trajectory.final):
        statistics[trajectory.tau] = stats
    _refuse_saturated(stats)
    damping = stats.damping(cfg.damping, cfg.damping_reference, weight_decay)
    curv = stats.curvature
    # the matching loss |P (g~_k - g_k)|^2 / |P g_k|^2 (module doc), computed in the curvature's eigenbasis
    metric = match_metric(cfg, num_classes)
    whiten = step_whitener(metric, curv, damping, head, train, reference=stats.group_grads)
    target = whiten(stats.group_grads)  # [K, D]: the removal displacements' coordinates, up to a rotation
    norm2 = (target ** 2).sum(1).clamp(min=1e-30)
    dev = target.device  # the model's
    # where each step matches: theta_tau, or (match_at=checkpoints) theta_tau and the averaged checkpoints in turn
    sites: list[tuple[Params | None, torch.Tensor, Any, torch.Tensor, torch.Tensor]] = [
        (None, head.matrix(), whiten, target, norm2)]
    if cfg.match_at == "checkpoints":
        for c in checkpoint_curvatures(head, trajectory, train, groups, cfg, num_classes, weight_decay, task,
                                       statistics=statistics):
            p = devices.to(trajectory.checkpoint(c.index), dev)
            wt = step_whitener(metric, statistics[c.index].curvature, c.damping, head, train, p,
                               statistics[c.index].group_grads)
            tt = wt(statistics[c.index].group_grads)
            sites.append((p, head.matrix(p), wt, tt, (tt ** 2).sum(1).clamp(min=1e-30)))
    K = groups.num_groups
    sample_losses = _sample_losses(head, train, task) if cfg.init == "loss" else None  # distill.init=loss
    first = _match(head, train, groups, cfg, num_classes, cfg.ipc, sites, folder, "checkpoint", task, sample_losses,
                   keep_state=cfg.ipc_grow > cfg.ipc)
    chosen, grown = first, None
    grow = cfg.ipc_grow > first.ipc and slot_labels(train, groups, cfg.ipc_grow)[0].shape[1] > first.ipc
    if grow and not first.converged:
        # distill.ipc_grow: the matching ran out of steps above its tolerance, which more images can lower
        log.info("head distillation stopped at mean relative error %.2g above distill.tolerance=%g with %d images per "
                 "group: matching again with %d (distill.ipc_grow)", first.error, cfg.tolerance, first.ipc,
                 cfg.ipc_grow)
        t_grow = time.perf_counter()
        second = _match(head, train, groups, cfg, num_classes, cfg.ipc_grow, sites, folder, "checkpoint-grown", task,
                        sample_losses)
        chosen = second if second.error < first.error else first
        grown = {"from": first.ipc, "to": second.ipc, "errors": [first.error, second.error], "kept": chosen.ipc,
                 "seconds": round(time.perf_counter() - t_grow, 1)}  # this process's (a resumed run: since resuming)
        log.info("head distillation: %d images per group match at mean relative error %.2g, %d at %.2g: kept %d",
                 first.ipc, first.error, second.ipc, second.error, chosen.ipc)
    # the matching's targets ([K, D] at each site) are not needed past here: their memory goes back before the
    # checkpoints' statistics are streamed (2,000 groups x 409,800 parameters: 3.3 GB a site)
    del sites, target, norm2
    syn = Synset(distributed.gather_owned(chosen.images.cpu(), K), chosen.labels, num_classes,
                 losses=torch.tensor(chosen.losses), weights=distributed.gather_owned(chosen.log_w.exp().cpu(), K),
                 curvature=curv.to("cpu"), damping=torch.tensor(damping),
                 num_train=torch.tensor(stats.num_train), task=task)
    syn.retried = chosen.retried
    syn.grown = grown
    syn.error = chosen.error
    if group_curvature:
        syn.group_curvature = group_curvatures(head, train, groups, curv, cfg.unlearn_rank, task)
    syn.checkpoints = checkpoint_curvatures(head, trajectory, train, groups, cfg, num_classes, weight_decay, task, syn,
                                            statistics)
    if not all(torch.isfinite(t).all() for t in syn.to_tensors().values()):
        raise NumericalError("head distillation produced non-finite synthetic images or weights; "
                             "lower distill.lr_img or distill.lr_label")
    return syn


@dataclass
class _Matched:
    """One head matching's result for this process's groups (:func:`_match`)."""

    images: torch.Tensor  # [own, n, C, H, W]
    log_w: torch.Tensor  # [own, n]
    labels: torch.Tensor  # [K, n], every group's
    losses: list[float]  # the mean matching loss per step
    retried: dict[int, tuple[float, float]]
    error: float  # mean relative matching error at theta_tau over all groups, of the images returned
    converged: bool  # whether the steps reached distill.tolerance

    @property
    def ipc(self) -> int:
        return int(self.labels.shape[1])


def _match(head: Head, train: Split, groups: Groups, cfg: DistillConfig, num_classes: int, ipc: int, sites: list[Any],
           folder: str | Path | None, stem: str, task: Any = None, sample_losses: torch.Tensor | None = None,
           keep_state: bool = False) -> _Matched:
    """Match every group's ``ipc`` synthetic images (module doc) at ``sites`` (theta_tau first; ``distill.match_at``),
    keeping each group's best step and matching stuck groups again (``distill.retry``). A checkpoint
    ``<stem>.safetensors`` in ``folder`` lets a killed run resume; ``keep_state`` also saves the finished matching
    there, so that a run killed during a later matching (``distill.ipc_grow``) does not redo this one."""
    K = groups.num_groups
    dev = sites[0][3].device
    # under torchrun each rank optimises its own groups (the groups' losses are independent, Adam is elementwise)
    own = distributed.owned(K)
    rank, world = distributed.rank_world()
    labels, shares = slot_labels(train, groups, ipc)
    if labels.shape[1] > ipc:
        log.info("groups mix up to %d classes: %d synthetic images per group (%d asked for), one per class at least",
                 labels.shape[1], labels.shape[1], ipc)
    ipc = labels.shape[1]
    images = init_images(train, groups, labels, cfg.init, cfg.seed, sample_losses)[own].to(dev).requires_grad_(True)
    onehot = F.one_hot(labels[own].reshape(-1), num_classes).float().to(dev)
    whiten, target = sites[0][2], sites[0][3]
    w0 = shares[own]
    if cfg.weight_init == "nnls":
        w0 = _nnls_weights(head, images.detach(), onehot, whiten, target[own], w0, task)
    log_w = torch.log(w0).to(dev).clone().requires_grad_(True)
    opt = torch.optim.Adam([{"params": [images], "lr": cfg.lr_img}, {"params": [log_w], "lr": cfg.lr_label}])
    losses: list[float] = []
    start = 0
    before, t0 = 0.0, time.perf_counter()
    name = f"{stem}.safetensors" if world == 1 else f"{stem}-{rank}-of-{world}.safetensors"
    ckpt = Path(folder) / name if folder is not None else None
    if ckpt is not None and ckpt.exists():
        state = load_tensors(ckpt)
        if state["images"].shape != images.shape:
            raise ConfigError(f"{ckpt} holds {state['images'].shape[1]} images per group, this matching "
                              f"{ipc}: delete it (or the workspace's synset folder) to start the matching over")
        before = float(state.get("seconds", torch.zeros(())))
        with torch.no_grad():
            images.copy_(state["images"])
            log_w.copy_(state["log_weights"])
        restore_optimizer_state(opt, [images, log_w], state)
        losses = state["losses"].tolist()
        start = len(losses)
        log.info("resuming head distillation (%d images per group) at step %d of %d", ipc, start, cfg.iterations)
    # distill.keep_best: each group's images and weights where its own error was lowest (groups are independent)
    keep_best = cfg.keep_best and len(sites) == 1
    best = {"images": images.detach().clone(), "log_weights": log_w.detach().clone(),
            "losses": torch.full((len(own),), float("inf"), device=dev)}
    if keep_best and ckpt is not None and ckpt.exists() and "best/losses" in state:
        best = {k: state[f"best/{k}"].to(dev) for k in best}

    def remember(errors: torch.Tensor) -> None:
        """Keep the current images and weights of the groups whose ``errors`` (this process's) beat their best."""
        with torch.no_grad():
            better = errors < best["losses"]  # False for NaN: a NaN error never wins
            best["losses"] = torch.where(better, errors, best["losses"])
            best["images"][better] = images.detach()[better]
            best["log_weights"][better] = log_w.detach()[better]

    def save() -> None:
        if ckpt is None:
            return
        spent = torch.tensor(before + time.perf_counter() - t0)
        state = {"images": images.detach(), "log_weights": log_w.detach(), "losses": torch.tensor(losses),
                 "seconds": spent, **optimizer_state(opt, [images, log_w])}
        if keep_best:
            state.update({f"best/{k}": v for k, v in best.items()})
        save_tensors(ckpt, state)

    converged = len(losses) >= len(sites) and max(losses[-len(sites):]) < cfg.tolerance
    if converged:
        start = cfg.iterations  # a resumed run that had already converged
    pbar = bar(cfg.iterations, "distill (head)" if ipc == cfg.ipc else f"distill (head, {ipc} images)",
               initial=start)
    chunk = match_chunk(head, images, sites[0][1].numel(), cfg.match_chunk) if world == 1 else len(own)
    if chunk < len(own):
        log.info("head distillation: the graph of all %d groups' %d images would not fit in memory: %d groups at a "
                 "time (distill.match_chunk; the same gradients)", len(own), ipc, chunk)
    def chunk_loss(site: Any, a: int, b: int, x: torch.Tensor, lw: torch.Tensor) -> torch.Tensor:
        """The matching error at ``site`` of groups ``a:b`` (their images ``x``, weights ``lw``)."""
        at, W, whiten_at, target_at, norm2_at = site
        return _site_loss(head, x, lw, onehot[a * ipc : b * ipc], at, W, whiten_at, target_at[a:b], norm2_at[a:b],
                          task)

    for it in range(start, cfg.iterations):
        at, W, whiten_at, target_at, norm2_at = sites[it % len(sites)]
        if chunk < len(own):  # one process: each chunk of groups differentiated on its own (their losses add up)
            per_group = _chunked_gradients(images, log_w, chunk, partial(chunk_loss, sites[it % len(sites)]))
            if keep_best:
                remember(per_group)
            matching_step(opt, per_group.sum(), it, K, losses, pbar, "head distillation",
                          "Lower distill.lr_img or distill.lr_label", backward=False)
        elif world == 1:  # every group's graph at once (the factored whitening where it pays, as in the chunks)
            per_group = _site_loss(head, images, log_w, onehot, at, W, whiten_at, target_at, norm2_at, task)
            if keep_best:
                remember(per_group.detach())
            matching_step(opt, per_group.sum(), it, K, losses, pbar, "head distillation",
                          "Lower distill.lr_img or distill.lr_label")
        else:
            h = head.features(images.reshape(len(own) * ipc, *images.shape[2:]), at)
            g = summed_head_gradients(h, h @ W.T, onehot, log_w.exp().reshape(-1), len(own), task)
            # the other ranks' group gradients as constants: the loss of all groups, as one process has it
            g = distributed.gather_owned(g.detach(), K).index_put((own.to(g.device),), g)
            per_group = ((whiten_at(g) - target_at) ** 2).sum(1) / norm2_at
            if keep_best:
                remember(per_group.detach()[own.to(per_group.device)])
            matching_step(opt, per_group.sum(), it, K, losses, pbar, "head distillation",
                          "Lower distill.lr_img or distill.lr_label")
        recent = losses[-len(sites):]  # one loss per matching site
        if len(recent) == len(sites) and max(recent) < cfg.tolerance:  # matched: more steps would not change it
            log.info("head distillation converged at step %d (mean relative error %.2g)", it + 1, losses[-1])
            converged = True
            break
        if (it + 1) % cfg.checkpoint_every == 0 and it + 1 < cfg.iterations:
            save()
    pbar.close()
    if keep_state and not converged and start < cfg.iterations:
        save()  # a later matching follows: a run killed there resumes after this one
    if keep_best:
        with torch.no_grad():  # the last step's result, which the loop never scored
            remember(_site_errors(head, images, log_w, onehot, own, sites[0], task, chunk))
            images.copy_(best["images"])
            log_w.copy_(best["log_weights"])
        log.info("head distillation kept each group's best step (mean relative error %.2g)",
                 float(best["losses"].mean()))
    retried: dict[int, tuple[float, float]] = {}
    if cfg.retry > 0:
        mine = _retry_stuck(head, train, groups, labels, shares, own, images, log_w, onehot, sites[0], cfg, task,
                            chunk)
        local = torch.full((len(own), 2), float("nan"))
        for j, k in enumerate(own.tolist()):
            if k in mine:
                local[j] = torch.tensor(mine[k])
        every = distributed.gather_owned(local, K)  # every rank's groups, as one process has them
        retried = {k: (float(every[k, 0]), float(every[k, 1])) for k in range(K) if not torch.isnan(every[k, 1])}
    with torch.no_grad():
        errors = distributed.gather_owned(_site_errors(head, images, log_w, onehot, own, sites[0], task, chunk).cpu(),
                                          K)
    return _Matched(images.detach(), log_w.detach(), labels, losses, retried, float(errors.double().mean()), converged)


def group_curvatures(head: Head, train: Split, groups: Groups, curvature: Curvature, rank: int, task: Any = None,
                     batch: int = 256) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``distill.unlearn_rank``: each group's own last-layer curvature at theta_tau as its top ``rank`` eigenpairs
    (``values [K, rank]``, ``vectors [K, rank, D']``, float32 on the CPU) over the coordinates the curvature holds
    exactly (an exact one's ``D`` head parameters, a subspace one's exact block); None for K-FAC and EK-FAC, which
    hold no exact block, or ``rank`` 0. One more pass over the training set; an SVD per group of its ``size x C``
    factor rows."""
    if rank <= 0 or not isinstance(curvature, ExactCurvature | SubspaceCurvature):
        return None
    u = curvature.u if isinstance(curvature, SubspaceCurvature) else None
    W = head.matrix()
    feats, outs = [], []
    with torch.no_grad():
        for s in range(0, len(train), batch):
            h = head.features(train.x[s : s + batch])
            z = h @ W.T
            feats.append((h.double() @ u.to(h.device) if u is not None else h.double()).cpu())
            outs.append(z.cpu())
        h, z = torch.cat(feats), torch.cat(outs)
        values, vectors = [], []
        for k in range(groups.num_groups):
            m = groups.members(k)
            v, vec = top_curvature(h[m], z[m], rank, output_curvature(task, z[m], train.y[m]))
            values.append(v.float())
            vectors.append(vec.float())
    return torch.stack(values), torch.stack(vectors)


def _site_loss(head: Head, images: torch.Tensor, log_w: torch.Tensor, onehot: torch.Tensor, at: Params | None,
               W: torch.Tensor, whiten_at: Callable[[torch.Tensor], torch.Tensor], target: torch.Tensor,
               norm2: torch.Tensor, task: Any = None) -> torch.Tensor:
    """The relative matching error ``[G]`` of ``G`` groups' ``images [G, n, ...]`` (weights ``log_w [G, n]``, labels
    ``onehot [G n, C]``) against their ``target`` rows at the parameters ``at``."""
    h = head.features(images.reshape(-1, *images.shape[2:]), at)
    whitened = _whitened_rows(h, W, onehot, log_w.exp().reshape(-1), len(images), task, whiten_at,
                              getattr(whiten_at, "factored", None))
    return ((whitened - target) ** 2).sum(1) / norm2


def factored_pays(n: int, classes: int, features: int) -> bool:
    """Whether whitening a group's ``n`` images' factors (:meth:`Curvature.factored_whitener`) takes at most a quarter
    of the multiply-adds of forming its ``classes x features`` gradient and whitening that: never with 10 classes and
    4 or more images (at most 2.5x fewer there), about 50x fewer with 200 classes, 2,049 features and 4 images."""
    c, d = classes, features
    return 4 * n * (c * c + d * d + c * d) <= c * d * (n + c + d)


#: the most bytes one step of the head matching may hold in its autograd graph before the groups are taken in chunks
#: (``distill.match_chunk`` 0): a 64x64 ConvNet keeps megabytes of activations per synthetic image, so 2,000 groups'
#: graph took more than 24 GiB (the Tiny ImageNet probe of BENCHMARKS.md) where the benchmarks' models take megabytes
MATCH_GRAPH_BYTES = 2 ** 31


def _chunked_gradients(images: torch.Tensor, log_w: torch.Tensor, chunk: int,
                       loss: Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Per-group losses ``[G]`` (detached) of ``G`` groups' ``images`` and ``log_w``, ``chunk`` groups at a time:
    ``loss(a, b, images_ab, log_w_ab)`` of groups ``a:b`` is differentiated on detached leaves and freed before the
    next chunk, and the chunks' gradients are put in ``images.grad`` and ``log_w.grad`` (the groups' losses are
    independent, so these are the gradients of their sum)."""
    grads = torch.zeros_like(images), torch.zeros_like(log_w)
    parts = []
    for a in range(0, len(images), chunk):
        b = min(a + chunk, len(images))
        leaves = images[a:b].detach().requires_grad_(True), log_w[a:b].detach().requires_grad_(True)
        part = loss(a, b, *leaves)
        grads[0][a:b], grads[1][a:b] = torch.autograd.grad(part.sum(), leaves)
        parts.append(part.detach())
    images.grad, log_w.grad = grads
    return torch.cat(parts)


def match_chunk(head: Head, images: torch.Tensor, head_size: int, asked: int = 0) -> int:
    """How many groups one head-matching step differentiates at a time: ``asked`` where positive, else all of them
    when their graph's estimate fits :data:`MATCH_GRAPH_BYTES` (and a quarter of the memory available), else as
    many as fit. The estimate: the bytes the autograd graph saves for one group's ``images [n, ...]`` (measured on
    the first group) plus ten ``head_size`` vectors (its gradient, whitened, their differences and gradients)."""
    groups = len(images)
    if asked > 0:
        return min(asked, groups)
    saved = [0]
    weights = {t.data_ptr() for t in [*head.model.parameters(), *head.model.buffers()]}  # held once, not per group

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() not in weights:
            saved[0] += t.numel() * t.element_size()
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        probe = images[:1].detach().requires_grad_(True)
        head.features(probe.reshape(-1, *images.shape[2:]))
    per_group = saved[0] + 10 * 4 * head_size
    free = devices.available_memory()
    budget = MATCH_GRAPH_BYTES if free is None else min(MATCH_GRAPH_BYTES, free // 4)
    if per_group * groups <= budget:
        return groups
    return max(1, budget // per_group)


def _site_errors(head: Head, images: torch.Tensor, log_w: torch.Tensor, onehot: torch.Tensor, own: torch.Tensor,
                 site: Any, task: Any = None, chunk: int | None = None) -> torch.Tensor:
    """Relative matching error of this process's groups ``[own]`` at a matching ``site`` (theta_tau: ``sites[0]``),
    ``chunk`` groups at a time (default: all at once)."""
    at, W, whiten_at, target_at, norm2_at = site
    rows = own.to(target_at.device)
    chunk = chunk or len(own)
    if chunk >= len(own):
        return _site_loss(head, images, log_w, onehot, at, W, whiten_at, target_at[rows], norm2_at[rows], task)
    ipc = images.shape[1]
    return torch.cat([_site_loss(head, images[a : a + chunk], log_w[a : a + chunk],
                                 onehot[a * ipc : (a + chunk) * ipc], at, W, whiten_at, target_at[rows[a : a + chunk]],
                                 norm2_at[rows[a : a + chunk]], task)
                      for a in range(0, len(own), chunk)])
