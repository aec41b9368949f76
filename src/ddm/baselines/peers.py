"""Peer attribution methods behind one interface, computed by the maintained library dattri.

``sample_scores(method, model, trajectory, train, targets)`` returns ``[N_train, T]`` scores and
``group_scores`` sums them per group into ``[T, K]``. One sign convention for every method:

    score > 0  <=>  the training sample *helps* the target: removing it is predicted to
                    raise the target's loss (a "proponent").

So a group's predicted loss change when it is removed is ``+score`` (first order), and the
predicted loss of a model trained on the groups kept by ``keep`` is ``const - keep @ score``.

======== ====================================================================================
method   what dattri computes (model at theta_tau unless said otherwise)
======== ====================================================================================
if-explicit  Koh & Liang influence with the exact inverse Hessian of the last Linear layer, the rest
             of the network held fixed (dattri runs on that layer, its inputs as the data): the full
             Hessian of a ConvNet does not fit in memory.
if-cg        influence with conjugate-gradient inverse-Hessian-vector products, all parameters
             (CG, LiSSA and FastIF estimate the Hessian on ``hessian_samples`` training samples).
if-lissa     influence with LiSSA's stochastic recursion, all parameters.
fastif       FastIF: influence (CG) scored only for the ``fastif_k`` training samples nearest to
             the target in the model's penultimate features; all others score 0.
arnoldi      "Scaling up influence functions": Arnoldi eigen-projection of the Hessian.
ekfac        influence with the EK-FAC approximation of the Fisher (George et al.; Grosse et al.), every
             Linear layer of the model: the whole network of an MLP, the last layer of a ConvNet
             (dattri's EK-FAC takes Linear layers only), damped by ``ekfac_damping`` (0.1; None: each
             layer by 0.1 x the mean of its eigenvalues, kronfluence's heuristic); the
             Fisher from the training labels (dattri's) or, ``ekfac_fisher="true"``, from labels the
             model samples (kronfluence's default).
kronfluence  influence with EK-FAC computed by kronfluence over every nn.Linear and nn.Conv2d layer (a
             ConvNet's whole network, where dattri's ``ekfac`` sees its last layer only; layers of exactly
             those types: nn.MultiheadAttention's projections are not among them), its Fisher from
             labels the model samples (kronfluence's default), damped by ``kronfluence_damping`` (None:
             0.1 x each layer's mean eigenvalue, kronfluence's heuristic); the target's measurement is its
             loss on the true label, as for every peer here. Its own extra: ``pip install 'ddm[kronfluence]'``
             then ``pip install --no-deps kronfluence==1.0.1`` (its package requires torchvision, which it
             never imports; ``make install`` does both).
tracin       TracIn-CP over the recorded trajectory: sum_t lr * g_train(theta_t) . g_target(theta_t), the
             full per-sample gradients' exact inner products (``tracin_dim`` > 0: random projections).
trak         TRAK with random projections, the last ``trak_checkpoints`` checkpoints as ensemble.
======== ====================================================================================

Library problems worked around here (each with a test in tests/test_peers.py):
* LiSSA casts the labels of its Hessian batches to float: the loss casts them back to long.
* Arnoldi keeps negative Hessian eigenvalues at small damping and divides by their square root
  (NaN scores): the adapter drops non-positive eigenpairs after the projector is built.
* TRAK's ``self_attribute`` returns ``[N, 1]`` rather than ``[N]``: flattened.
* The inner-product attributors' ``self_attribute`` fails beyond one training batch: called per batch.
* Inner-product attributors redo the inverse-Hessian transform of the targets for every training
  batch: the adapter memoises it per checkpoint (same numbers, one transform per target chunk).
* The explicit attributor rebuilds the Hessian from the whole training set on every transform, so
  self-influence rebuilt it once per training batch (848 s on 1437 digits). Its transform is linear:
  the adapter transforms the identity once per checkpoint and applies that matrix (same numbers).
* With ``layer_name`` the explicit Hessian still runs the whole network once per Hessian direction
  (over 19 GB for 1450 last-layer weights at batch 32 on 28x28 images): the adapter hands dattri the
  last layer alone, with the penultimate features as inputs (same gradients and Hessian).
* The explicit transform sums the inverses of the per-batch Hessians rather than inverting the
  training set's Hessian: ``explicit_batch`` defaults to one batch for up to 10k samples.
* TracIn's and TRAK's per-sample gradients go through a flattened loss, 25x slower than ``vmap(grad)`` over the
  parameters' dict, and TracIn recomputes the targets' for every training batch: the adapter hands them the latter,
  the targets' memoised per checkpoint (the same gradients, in dattri's flat order; TRAK 81 s -> 36 s on a
  135k-parameter MLP, 4,000 images, 200 targets).
* TracIn projects every per-sample gradient to 512 random dimensions unless told otherwise, and cannot be told
  not to (``projector_kwargs=None`` means its defaults), writing the settings it is given into its module-wide
  defaults: the adapter clears the attributor's projection after construction for the exact inner products
  (``tracin_dim`` 0, the default; the full gradients are computed either way, so exact is also the faster), and
  hands a projection its own settings. ddm 0.17 and earlier scored TracIn with the projection.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ddm.cluster.groups import Groups
from ddm.data.dataset import Split
from ddm.distill.scope import head_name
from ddm.exceptions import ConfigError, require
from ddm.progress import bar
from ddm.train.trajectory import Trajectory

PEERS = ("if-explicit", "if-cg", "if-lissa", "fastif", "arnoldi", "ekfac", "kronfluence", "tracin", "trak")
SELF_INFLUENCE = ("if-explicit", "arnoldi", "tracin", "trak")


@dataclass
class PeerConfig:
    """Settings of the peer methods (defaults sized for the 2-core CPU benchmarks)."""

    damping: float = 1e-2  # added to the Hessian (IF, Arnoldi) or the TRAK kernel
    hessian_batch: int = 128  # training samples per Hessian-vector-product batch
    hessian_samples: int = 2048  # training samples (a fixed random subset) the CG/LiSSA/FastIF Hessian sees
    train_batch: int = 512  # training samples per gradient batch
    target_chunk: int = 5  # targets transformed together (memory of vmapped HVPs)
    cg_iters: int = 10
    lissa_depth: int = 100
    lissa_batch: int = 32
    lissa_scale: float = 50.0
    arnoldi_dim: int = 50
    arnoldi_iters: int = 60
    arnoldi_samples: int = 256  # training samples the Arnoldi Hessian sees
    fastif_k: int = 100
    trak_dim: int = 512
    tracin_dim: int = 0  # TracIn: 0 exact gradient inner products; > 0 random projections to this many dimensions
    trak_checkpoints: int = 3
    explicit_batch: int = 10_000  # samples per explicit Hessian (dattri sums the per-batch inverses)
    # EK-FAC's damping, added to every layer's corrected eigenvalues (0.1: the best of six on the selection seed,
    # BENCHMARKS.md "EK-FAC influence beside DDM"); None adds 0.1 x each layer's mean eigenvalue (kronfluence's
    # heuristic default)
    ekfac_damping: float | None = 0.1
    # EK-FAC's Fisher: "empirical" (the training labels' gradients, dattri's) or "true" (labels sampled from the
    # model's own predictions, seeded: kronfluence's default and Grosse et al.'s)
    ekfac_fisher: str = "empirical"
    # kronfluence's damping of its EK-FAC eigenvalues (None: 0.1 x each layer's mean eigenvalue, its heuristic)
    kronfluence_damping: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hessian_batch", "hessian_samples", "train_batch", "target_chunk", "cg_iters", "lissa_depth",
                     "lissa_batch", "arnoldi_dim", "arnoldi_iters", "arnoldi_samples", "fastif_k", "trak_dim",
                     "trak_checkpoints", "explicit_batch"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"peer setting {name} must be positive, got {getattr(self, name)}")
        if self.damping < 0:
            raise ConfigError("peer setting damping must be >= 0")
        if self.ekfac_fisher not in ("empirical", "true"):
            raise ConfigError(f"peer setting ekfac_fisher must be 'empirical' or 'true', got {self.ekfac_fisher!r}")
        if self.kronfluence_damping is not None and self.kronfluence_damping < 0:
            raise ConfigError(f"peer setting kronfluence_damping must be >= 0 (or None), got "
                              f"{self.kronfluence_damping}")
        if self.ekfac_damping is not None and self.ekfac_damping < 0:
            raise ConfigError(f"peer setting ekfac_damping must be >= 0 (or None), got {self.ekfac_damping}")
        if self.tracin_dim < 0:
            raise ConfigError(f"peer setting tracin_dim must be >= 0 (0: exact), got {self.tracin_dim}")


def _dattri() -> Any:
    require("dattri", "peers")
    import dattri.algorithm.base as base
    import dattri.algorithm.influence_function as inf
    import dattri.algorithm.tracin as tracin
    import dattri.algorithm.trak as trak
    import dattri.task as task

    for mod in (base, inf, tracin, trak):  # dattri draws nested bars per batch: keep the console readable
        if hasattr(mod, "tqdm"):
            mod.tqdm = _quiet_tqdm
    return inf, tracin, trak, task


#: the training loader whose passes a ddm bar counts (:func:`_train_progress`), and the bar
_COUNTED: list[Any] = []


def _quiet_tqdm(iterable: Any = None, *args: Any, **kwargs: Any) -> Any:
    """dattri's bars replaced: nothing drawn per batch, but the passes over the training loader that
    :func:`_train_progress` follows advance its one bar."""
    if _COUNTED and iterable is _COUNTED[0]:
        return _counting(iterable, _COUNTED[1])
    return iterable


def _counting(loader: Any, pbar: Any) -> Iterator[Any]:
    for batch in loader:
        yield batch
        pbar.update(1)


@contextmanager
def _train_progress(loader: Any, passes: int, desc: str) -> Iterator[None]:
    """One ddm bar over the ``passes`` dattri makes over the training ``loader`` (one per checkpoint for TracIn and
    TRAK: at 60,000 samples and 21 checkpoints exact TracIn ran for over 40 minutes with nothing on the console)."""
    pbar = bar(passes * len(loader), desc)
    _COUNTED[:] = [loader, pbar]
    try:
        yield
    finally:
        _COUNTED.clear()
        pbar.close()


class _Task:
    """The model as dattri wants it: a loss of (flat params, data), batched or per sample."""

    def __init__(self, model: nn.Module, sample_ndim: int) -> None:
        self.model = model
        self.sample_ndim = sample_ndim

    def loss(self, params: dict[str, torch.Tensor], data: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = data
        single = x.dim() == self.sample_ndim
        if single:
            x, y = x.unsqueeze(0), y.unsqueeze(0)
        # LiSSA hands its Hessian batches over with float labels: cast back.
        out = torch.func.functional_call(self.model, params, (x,))
        return nn.functional.cross_entropy(out, y.long())

    def sampled_loss(self, seed: int) -> Callable[[dict[str, torch.Tensor], Any], torch.Tensor]:
        """The loss at labels drawn from the model's own predicted distribution (a seeded draw per call): its
        gradients' covariance is the true Fisher, where the training labels' is the empirical one."""
        g = torch.Generator().manual_seed(seed)

        def loss(params: dict[str, torch.Tensor], data: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            x = data[0] if data[0].dim() > self.sample_ndim else data[0].unsqueeze(0)
            out = torch.func.functional_call(self.model, params, (x,))
            return nn.functional.cross_entropy(out, sampled_labels(out, g))

        return loss

    def correct_probability(self, params: dict[str, torch.Tensor], data: Any) -> torch.Tensor:
        return torch.exp(-self.loss(params, data))


def sampled_labels(logits: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One label per row drawn from the model's predicted distribution (``g`` on the CPU): the labels whose gradients'
    covariance is the true Fisher (the training labels' is the empirical one)."""
    return torch.multinomial(logits.detach().float().softmax(1).cpu(), 1, generator=g)[:, 0].to(logits.device)


def _loader(split: Split, batch: int) -> DataLoader:
    return DataLoader(TensorDataset(split.x, split.y), batch_size=batch, shuffle=False)


def _memoise_transform(attributor: Any) -> None:
    """dattri transforms the same target representations once per training batch: compute them once."""
    inner = attributor.transform_test_rep
    memo: list[tuple[int, torch.Tensor, torch.Tensor]] = []

    def transform(ckpt_idx: int, test_rep: torch.Tensor) -> torch.Tensor:
        for idx, rep, out in memo:
            if idx == ckpt_idx and rep.shape == test_rep.shape and torch.equal(rep, test_rep):
                return out
        # A target representation that requires grad makes every CG/LiSSA iteration record a graph.
        out = inner(ckpt_idx, test_rep.detach()).detach()
        memo.append((ckpt_idx, test_rep.detach().clone(), out))
        return out

    attributor.transform_test_rep = transform


# The explicit Hessian's memory: forward-over-reverse keeps, per training sample, 1-4 floats per parameter and
# output (measured on heads of 6,500 parameters and 100 outputs, 7,850 and 10); samples are taken in chunks that
# stay under EXPLICIT_CHUNK_FLOATS at 4, and a Hessian above EXPLICIT_MAX_BYTES is refused with what to use instead.
EXPLICIT_CHUNK_FLOATS = 2.5e8
EXPLICIT_MAX_BYTES = 4 * 2**30


def _explicit_inverse(attributor: Any, ckpt_idx: int) -> torch.Tensor:
    """What dattri's explicit transform applies, ``sum_b solve(H_b + damping I, I)^T`` over its training batches,
    with each batch's Hessian (of the batch's mean loss) summed over chunks of samples: the same matrix (up to
    float order) in bounded memory. dattri differentiates a whole batch at once, whose memory grows as batch x
    parameters x outputs (a 100-class head of 6,500 parameters on 5,000 samples: over 20 GB)."""
    task = attributor.task
    params, _ = task.get_param(ckpt_idx, layer_name=attributor.layer_name)
    loss = task.get_loss_func(layer_name=attributor.layer_name, ckpt_idx=ckpt_idx)
    key = task.loss_func_data_key
    reg = float(attributor.transformation_kwargs.get("regularization", 0.0))
    p = params.numel()
    if p * p * 4 > EXPLICIT_MAX_BYTES:
        raise ConfigError(f"if-explicit needs a {p:,} x {p:,} Hessian of the last layer ({p * p * 4 / 2**30:.1f} GiB): "
                          f"use if-cg, if-lissa or arnoldi for a last layer this large")
    eye = torch.eye(p, dtype=params.dtype, device=params.device)
    out = torch.zeros(p, p, dtype=params.dtype, device=params.device)
    for batch in attributor.full_train_dataloader:
        batch = tuple(t.to(params.device) for t in batch)
        n = len(batch[0])
        with torch.no_grad():
            outputs = task.model(batch[0][:1]).numel()
        size = max(1, min(n, int(EXPLICIT_CHUNK_FLOATS / (4 * p * outputs))))
        h = torch.zeros(p, p, dtype=params.dtype, device=params.device)
        for s in _chunks(n, size):
            part = tuple(t[s] for t in batch)
            with torch.enable_grad():
                hs = torch.func.hessian(lambda q, d=part: loss(q, **{key: d}))(params).detach()
            h += hs * ((s.stop - s.start) / n)
        out += torch.linalg.solve(h + reg * eye, eye).T
    return out


def _explicit_operator(attributor: Any) -> None:
    """Build the explicit transform's matrix once per checkpoint (dattri rebuilds the Hessian per call).

    dattri's transform is ``v -> sum_b solve(H_b + damping I, v^T)^T`` over its Hessian batches: linear in
    ``v``, so ``transform(v) = v @ transform(I)``; :func:`_explicit_inverse` builds ``transform(I)``.
    """
    ops: dict[int, torch.Tensor] = {}

    def transform(ckpt_idx: int, test_rep: torch.Tensor) -> torch.Tensor:
        if ckpt_idx not in ops:
            ops[ckpt_idx] = _explicit_inverse(attributor, ckpt_idx)
        return test_rep.detach() @ ops[ckpt_idx]

    attributor.transform_test_rep = transform


def _fix_arnoldi(attributor: Any) -> None:
    """Drop the Arnoldi projector's non-positive eigenpairs (dattri divides by their square root)."""
    for fn in attributor.arnoldi_projectors:
        for cell in fn.__closure__ or ():
            p = cell.cell_contents
            if hasattr(p, "get_eigenspace") and hasattr(p, "eigvals"):
                if p.eigvals is None:
                    p.get_eigenspace()
                keep = p.eigvals > 0
                p.eigvals, p.eigvecs = p.eigvals[keep], p.eigvecs[keep]


def _params(model: nn.Module, params: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """A checkpoint for dattri (which loads it with ``load_state_dict``): ``params`` (theta_tau's by default), with
    the model's buffers (theta_tau's running statistics) for those ``params`` does not hold."""
    src = {**dict(model.named_buffers()), **(params if params is not None else dict(model.named_parameters()))}
    return {n: t.detach().clone() for n, t in src.items()}


def _hessian_subset(train: Split, cfg: PeerConfig) -> Split:
    """The training samples the CG/LiSSA Hessian is estimated on: all, or a seeded random subset of
    ``hessian_samples`` (each CG iteration is a pass over them: 25 min per 20 targets at 10k 28x28 images)."""
    if len(train) <= cfg.hessian_samples:
        return train
    g = torch.Generator().manual_seed(cfg.seed)
    return train[torch.randperm(len(train), generator=g)[: cfg.hessian_samples].sort().values]


def _inner_product(method: str, model: nn.Module, train: Split, cfg: PeerConfig) -> Any:
    inf, _, _, task_mod = _dattri()
    t = _Task(model, train.x.dim() - 1)
    task = task_mod.AttributionTask(loss_func=t.loss, model=model, checkpoints=_params(model))
    if method == "if-explicit":  # ``model`` is the last layer here (see _head_view): one exact Hessian
        a = inf.IFAttributorExplicit(task, regularization=cfg.damping)
        a.cache(_loader(train, cfg.explicit_batch))
        _explicit_operator(a)
        return a
    if method == "ekfac":  # every nn.Linear (dattri's EK-FAC takes no other layer), factors over all of train
        fisher = task
        if cfg.ekfac_fisher == "true":  # the factors from labels the model samples; the scores from the true ones
            fisher = task_mod.AttributionTask(loss_func=t.loss, model=model, checkpoints=_params(model),
                                              target_func=t.sampled_loss(cfg.seed))
        a = inf.IFAttributorEKFAC(fisher, damping=0.0 if cfg.ekfac_damping is None else cfg.ekfac_damping)
        with torch.enable_grad():  # its factors come from autograd's backward through module hooks
            a.cache(_loader(train, cfg.hessian_batch))
        a.task = task
        if cfg.ekfac_damping is None:  # per layer: 0.1 x its mean eigenvalue, added to its eigenvalues
            a.cached_lambdas = {k: v + 0.1 * v.mean() for k, v in a.cached_lambdas.items()}
    elif method == "arnoldi":
        a = inf.IFAttributorArnoldi(task, proj_dim=cfg.arnoldi_dim, max_iter=cfg.arnoldi_iters,
                                    regularization=cfg.damping, seed=cfg.seed,
                                    precompute_data_ratio=min(1.0, cfg.arnoldi_samples / len(train)))
        a.cache(_loader(train, cfg.hessian_batch))  # it subsamples by arnoldi_samples itself
        _fix_arnoldi(a)
    else:
        if method in ("if-cg", "fastif"):
            a = inf.IFAttributorCG(task, max_iter=cfg.cg_iters, regularization=cfg.damping)
        elif method == "if-lissa":
            a = inf.IFAttributorLiSSA(task, recursion_depth=cfg.lissa_depth, batch_size=cfg.lissa_batch,
                                      damping=cfg.damping, scaling=cfg.lissa_scale)
        else:  # pragma: no cover - guarded by the caller
            raise ConfigError(method)
        a.cache(_loader(_hessian_subset(train, cfg), cfg.hessian_batch))
    _memoise_transform(a)
    return a


def _last_linear(model: nn.Module) -> nn.Linear:
    """The model's head: the Linear its logits come from where ``fit`` found it (``model.ddm_head``: one registered
    before the body, or before an auxiliary Linear), else the last Linear it registers."""
    name = head_name(model)
    if name is None:
        raise ConfigError("this peer method needs a model that ends with a Linear layer")
    return dict(model.named_modules())[name]  # type: ignore[return-value]


def _features(model: nn.Module, x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Penultimate features: what the last Linear layer receives, ``[N, D]``."""
    feats: list[torch.Tensor] = []
    h = _last_linear(model).register_forward_hook(lambda m, i, o: feats.append(i[0].detach().flatten(1)))
    try:
        with torch.no_grad():
            for s in _chunks(len(x), chunk):
                model(x[s])
    finally:
        h.remove()
    return torch.cat(feats)


def _head_view(model: nn.Module, *splits: Split) -> tuple[nn.Module, list[Split]]:
    """The last Linear layer as a model of its own and each split's penultimate features as its images
    (``[N, D, 1, 1]``): same logits, same last-layer gradients and Hessian, the rest of the network fixed."""
    head = nn.Sequential(nn.Flatten(), _last_linear(model)).eval()
    out = []
    for sp in splits:
        f = _features(model, sp.x)[:, :, None, None]
        with torch.no_grad():
            mine, theirs = head(f[:8]), model(sp.x[:8])
            if mine.shape != theirs.shape or not torch.allclose(mine, theirs, rtol=1e-4, atol=1e-4):
                raise ConfigError("if-explicit needs a model whose last operation is its last Linear layer")
        out.append(Split(f, sp.y, sp.index))
    return head, out


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


def sample_scores(method: str, model: nn.Module, trajectory: Trajectory | None, train: Split, targets: Split,
                  cfg: PeerConfig | None = None) -> torch.Tensor:
    """Per-sample scores ``[N_train, T]`` of ``method`` (see the module doc for the sign)."""
    cfg = cfg or PeerConfig()
    if method not in PEERS:
        raise ConfigError(f"unknown peer method {method!r}; choose one of: {', '.join(PEERS)}")
    model.eval()
    # torch.func transforms still differentiate inside no_grad; outside it, dattri's outputs keep the graph of
    # every per-sample gradient alive (23 GB at 10k Fashion-MNIST images).
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if method in ("tracin", "trak"):
            return _trajectory_scores(method, model, trajectory, train, targets, cfg)
        if method == "fastif":
            return _fastif(model, train, targets, cfg)
        if method == "kronfluence":
            return _kronfluence(model, train, targets, cfg)
        if method == "if-explicit":
            model, (train, targets) = _head_view(model, train, targets)
        a = _inner_product(method, model, train, cfg)
        tr = _loader(train, cfg.train_batch)
        # Only the Hessian-vector-product methods need small target chunks (their HVPs are vmapped over targets).
        chunk = cfg.target_chunk if method in ("if-cg", "if-lissa") else len(targets)
        out = [a.attribute(tr, _loader(targets[s], s.stop - s.start)).detach()
               for s in _chunks(len(targets), chunk)]
    return torch.cat(out, 1).detach()


def _fastif(model: nn.Module, train: Split, targets: Split, cfg: PeerConfig) -> torch.Tensor:
    a = _inner_product("fastif", model, train, cfg)
    k = min(cfg.fastif_k, len(train))
    near = torch.cdist(_features(model, targets.x), _features(model, train.x)).topk(k, largest=False).indices
    out = torch.zeros(len(train), len(targets))
    for t in range(len(targets)):
        cand = train[near[t]]
        out[near[t], t] = a.attribute(_loader(cand, k), _loader(targets[[t]], 1))[:, 0].detach()
    return out


def _kronfluence(model: nn.Module, train: Split, targets: Split, cfg: PeerConfig) -> torch.Tensor:
    """kronfluence's EK-FAC influence ``[N_train, T]`` (module doc): factors over all of ``train`` with labels the
    model samples (seeded), pairwise scores of every training sample against each target's true-label loss. It runs
    on a copy of ``model`` (kronfluence wraps its layers in place) and keeps its files in a temporary folder."""
    require("kronfluence", "kronfluence")
    import copy
    import logging
    import tempfile

    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from kronfluence.task import Task

    g = torch.Generator().manual_seed(cfg.seed)
    net = copy.deepcopy(model).eval()
    # the layers kronfluence handles, by exact type: a subclass such as nn.MultiheadAttention's out_proj (whose
    # forward the attention never calls, so no hook would see it) made kronfluence fail with a KeyError
    tracked = [n for n, m in net.named_modules() if type(m) in (nn.Linear, nn.Conv2d)]

    class Classification(Task):  # type: ignore[misc]
        def get_influence_tracked_modules(self) -> list[str]:
            return tracked

        def compute_train_loss(self, batch: Any, model: nn.Module, sample: bool = False) -> torch.Tensor:
            x, y = batch
            logits = model(x)
            if sample:  # the true Fisher: labels drawn from the model's own predictions
                y = sampled_labels(logits, g)
            return nn.functional.cross_entropy(logits, y, reduction="sum")

        def compute_measurement(self, batch: Any, model: nn.Module) -> torch.Tensor:
            x, y = batch
            return nn.functional.cross_entropy(model(x), y, reduction="sum")

    task = Classification()
    net = prepare_model(net, task)
    train_ds, target_ds = TensorDataset(train.x, train.y), TensorDataset(targets.x, targets.y)
    with tempfile.TemporaryDirectory(prefix="ddm-kronfluence-") as out, torch.enable_grad():
        analyzer = Analyzer("ddm", net, task, cpu=True, log_level=logging.WARNING, disable_tqdm=True,
                            output_dir=out)
        analyzer.fit_all_factors("ekfac", dataset=train_ds, per_device_batch_size=cfg.hessian_batch,
                                 factor_args=FactorArguments(strategy="ekfac"), overwrite_output_dir=True)
        analyzer.compute_pairwise_scores("scores", "ekfac", query_dataset=target_ds, train_dataset=train_ds,
                                         per_device_query_batch_size=max(1, len(targets)),
                                         per_device_train_batch_size=cfg.hessian_batch,
                                         score_args=ScoreArguments(damping_factor=cfg.kronfluence_damping),
                                         overwrite_output_dir=True)
        scores = analyzer.load_pairwise_scores("scores")["all_modules"]  # [T, N]
    return scores.T.float().contiguous()


def _fast_per_sample_grads(attributor: Any, t: _Task) -> None:
    """dattri's TracIn and TRAK take per-sample gradients through a flattened loss, 25x slower than ``vmap(grad)``
    over the parameters' dict (2.6 s against 0.1 s for 512 samples of a 135k-parameter MLP), and TracIn recomputes the
    targets' for every training batch: the same gradients, flattened in dattri's order, from the dict, the targets'
    once per checkpoint."""
    # dattri flattens the checkpoints' trainable parameters in this order (a frozen backbone's are left out: training
    # never moved them, and the module holds their values for every checkpoint)
    named = {n: p for n, p in t.model.named_parameters() if p.requires_grad}
    names = list(named)
    shapes = [named[n].shape for n in names]
    sizes = [s.numel() for s in shapes]
    per_sample = torch.func.vmap(torch.func.grad(t.loss), in_dims=(None, 0))

    def grads(flat: torch.Tensor, data: Any) -> torch.Tensor:
        params = {n: v.view(s) for n, v, s in zip(names, flat.split(sizes), shapes, strict=True)}
        g = per_sample(params, tuple(data))
        return torch.cat([g[n].flatten(1) for n in names], 1)

    memo: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def target_grads(flat: torch.Tensor, data: Any) -> torch.Tensor:
        for seen_flat, seen_x, out in memo:
            if seen_flat is flat and seen_x.shape == data[0].shape and torch.equal(seen_x, data[0]):
                return out
        if memo and memo[0][0] is not flat:
            memo.clear()  # a new checkpoint (one flat parameter tensor for all its training batches)
        memo.append((flat, data[0], grads(flat, data)))
        return memo[-1][2]

    attributor.grad_loss_func, attributor.grad_target_func = grads, target_grads


def _trajectory_attributor(method: str, model: nn.Module, trajectory: Trajectory | None, train: Split,
                           cfg: PeerConfig) -> Any:
    """dattri's TracIn (every recorded checkpoint after theta_0, weighted by lr) or TRAK (the last
    ``trak_checkpoints`` checkpoints as its ensemble), uncached."""
    if trajectory is None:
        raise ConfigError(f"{method} needs the training trajectory (the recorded checkpoints)")
    _, tracin_mod, trak_mod, task_mod = _dattri()
    t = _Task(model, train.x.dim() - 1)
    n = len(trajectory)
    at = range(1, n) if method == "tracin" else range(max(0, n - cfg.trak_checkpoints), n)
    chosen = [trajectory.checkpoint(i) for i in at]  # with their own running statistics where recorded
    ckpts = [_params(model, p) for p in chosen]
    task = task_mod.AttributionTask(loss_func=t.loss, model=model, checkpoints=ckpts)
    if method == "tracin":
        lr = trajectory.lr if trajectory.lr is not None else 1.0
        a = tracin_mod.TracInAttributor(task, weight_list=torch.full((len(ckpts),), float(lr)),
                                        normalized_grad=False)
        # dattri projects by default and keeps what it is given in its module-wide defaults: set ours on the instance
        a.projector_kwargs = ({"proj_dim": cfg.tracin_dim, "proj_max_batch_size": 32, "proj_seed": cfg.seed,
                               "device": "cpu"} if cfg.tracin_dim else None)
        _fast_per_sample_grads(a, t)
        return a
    a = trak_mod.TRAKAttributor(task, correct_probability_func=t.correct_probability, device="cpu",
                                projector_kwargs={"proj_dim": cfg.trak_dim, "device": "cpu", "proj_seed": cfg.seed},
                                regularization=cfg.damping)
    _fast_per_sample_grads(a, t)
    return a


def _trajectory_scores(method: str, model: nn.Module, trajectory: Trajectory | None, train: Split, targets: Split,
                       cfg: PeerConfig) -> torch.Tensor:
    a = _trajectory_attributor(method, model, trajectory, train, cfg)
    tr = _loader(train, cfg.train_batch)
    te = _loader(targets, max(1, len(targets)))
    with _train_progress(tr, len(a.task.get_checkpoints()), f"{method} (training gradients x checkpoints)"):
        if method == "tracin":
            return a.attribute(tr, te).detach()
        a.cache(tr)
    return a.attribute(te).detach()


def self_influence(method: str, model: nn.Module, trajectory: Trajectory | None, train: Split,
                   cfg: PeerConfig | None = None) -> torch.Tensor:
    """Each training sample's influence on its own loss ``[N]`` (large = unusual, often mislabeled)."""
    cfg = cfg or PeerConfig()
    if method not in SELF_INFLUENCE:
        raise ConfigError(f"self-influence is offered for {', '.join(SELF_INFLUENCE)}; got {method!r}")
    model.eval()
    tr = _loader(train, cfg.train_batch)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if method in ("tracin", "trak"):
            # TRAK uncached on purpose (dattri refuses a loader after cache()); it returns [N, 1] here.
            a = _trajectory_attributor(method, model, trajectory, train, cfg)
            with _train_progress(tr, len(a.task.get_checkpoints()), f"{method} self-influence"):
                return a.self_attribute(tr).detach().flatten()
        if method == "if-explicit":
            model, (train,) = _head_view(model, train)
        a = _inner_product(method, model, train, cfg)
        # dattri's inner-product self_attribute adds every batch into one [N] buffer (shape error beyond one
        # batch): call it once per batch.
        return torch.cat([a.self_attribute(_loader(train[s], s.stop - s.start)).detach().flatten()
                          for s in _chunks(len(train), cfg.train_batch)])


def group_scores(scores: torch.Tensor, groups: Groups) -> torch.Tensor:
    """Sum per-sample scores ``[N, T]`` over each group's members: ``[T, K]``."""
    if scores.shape[0] != len(groups.assignment):
        raise ConfigError(f"scores cover {scores.shape[0]} training samples but the groups cover "
                          f"{len(groups.assignment)}")
    out = torch.zeros(groups.num_groups, scores.shape[1], dtype=scores.dtype)
    return out.index_add_(0, groups.assignment, scores).T.contiguous()


def predicted_loss(group_score: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """First-order predicted target loss (up to a constant) for each keep mask: ``[M, T]``."""
    return -keep.to(group_score.dtype) @ group_score.T


def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0
