"""Reference unlearners that need the training data itself, measured beside DDM's unlearning (which needs only the
synsets): both start from the trained model and use its training optimizer (``TrainConfig``: type, lr, momentum,
weight decay, batch size) for a budget of ``epochs`` passes over the kept data.

* ``finetune_rest`` ("fine-tune on the rest"): keep training on the kept data only;
* ``neggrad_plus`` (NegGrad+): each step descends ``alpha`` x the kept batch's loss and ascends ``1 - alpha`` x a
  batch of the removed data's loss;
* ``relabel_knn`` (relabelled fine-tuning): keep training on the kept data and on the removed samples whose ``k``
  nearest kept samples (on the raw inputs) mostly carry another label, with that label: what the kept data says about
  the removed samples' region, which retraining without them learns and the trained model has overwritten;
* ``retrain_head`` (a bound, not an unlearner one would ship): the last layer retrained from its initial value on the
  kept data's features under the trained network, the rest frozen, for the whole training schedule. What a method
  that changes only the trained model's last layer (as DDM's unlearning does) can reach when it does that exactly.

A budget of one epoch costs about 1 / ``train.epochs`` of an exact retrain.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ddm import devices
from ddm.config import TrainConfig
from ddm.data.dataset import Split
from ddm.exceptions import ConfigError, NumericalError
from ddm.models import with_params
from ddm.train.loop import epoch_order, make_optimizer, set_rate

#: NegGrad+'s kept-loss weight, chosen from 0.9, 0.99 and 0.999 on the matrix's selection configurations
#: (BENCHMARKS.md, "Reference unlearners"; 0.9 diverged, 0.999 did not forget a removed class)
NEGGRAD_ALPHA = 0.99

#: data orders of the reference unlearners are drawn after the training's own (``train.seed``, epochs beyond it)
_ORDER_OFFSET = 10_000


def _batches(n: int, cfg: TrainConfig, epoch: int) -> tuple[torch.Tensor, ...]:
    order = epoch_order(n, cfg.seed, _ORDER_OFFSET + epoch)
    return torch.tensor_split(order, max(1, math.ceil(n / cfg.batch_size)))


def _check(keep: torch.Tensor, n: int) -> torch.Tensor:
    keep = torch.as_tensor(keep, dtype=torch.bool).flatten()
    if len(keep) != n:
        raise ConfigError(f"the keep mask has {len(keep)} entries for {n} training samples")
    if not keep.any():
        raise ConfigError("nothing is kept: a reference unlearner needs kept training data")
    return keep


def finetune_rest(model: nn.Module, params: dict[str, torch.Tensor], train: Split, keep: torch.Tensor,
                  cfg: TrainConfig, epochs: float = 1.0) -> nn.Module:
    """A copy of ``model`` at ``params`` trained on ``train[keep]`` for ``epochs`` (fractions allowed) with the
    optimizer ``cfg`` names, its state fresh."""
    return neggrad_plus(model, params, train, keep, cfg, epochs, alpha=1.0)


def retrain_head(model: nn.Module, params: dict[str, torch.Tensor], train: Split, keep: torch.Tensor,
                 cfg: TrainConfig, head_init: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """A copy of ``model`` at ``params`` whose last ``nn.Linear`` layer is retrained on ``train[keep]`` with every
    other layer frozen at ``params``: from ``head_init``'s last layer (theta_0's for a retrain; default ``params``'),
    ``cfg.epochs`` passes in ``cfg``'s batches with its optimizer, on features computed once."""
    from ddm.distill.head import Head

    keep = _check(keep, len(train))
    head = Head.of(model)
    w_name, b_name = head.param_names
    start = params if head_init is None else head_init
    with torch.no_grad():
        h = head.features(train.x[keep], params)[:, :-1]
    y = train.y[keep].to(h.device)
    lin = nn.Linear(h.shape[1], start[w_name].shape[0]).to(h.device)
    with torch.no_grad():
        lin.weight.copy_(start[w_name].reshape(lin.weight.shape))
        lin.bias.copy_(start[b_name])
    opt = make_optimizer(lin, cfg)
    for epoch in range(cfg.epochs):
        batches = _batches(len(h), cfg, epoch)
        for i, idx in enumerate(batches):
            set_rate(opt, cfg, epoch * len(batches) + i, cfg.epochs * len(batches))  # the training's schedule
            loss = F.cross_entropy(lin(h[idx.to(h.device)]), y[idx.to(h.device)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if not all(torch.isfinite(p).all() for p in lin.parameters()):
        raise NumericalError("the last-layer retrain diverged (non-finite weights): a smaller train.lr")
    out = {k: v.detach().clone() for k, v in params.items()}
    out[w_name] = lin.weight.detach().reshape(out[w_name].shape).to(out[w_name])
    out[b_name] = lin.bias.detach().to(out[b_name])
    net = with_params(model, out)
    net.eval()
    return net


def neggrad_plus(model: nn.Module, params: dict[str, torch.Tensor], train: Split, keep: torch.Tensor,
                 cfg: TrainConfig, epochs: float = 1.0, alpha: float = NEGGRAD_ALPHA,
                 anneal: bool = False, targets: torch.Tensor | None = None) -> nn.Module:
    """A copy of ``model`` at ``params`` after ``epochs`` passes over ``train[keep]``, each step on
    ``alpha`` x the kept batch's cross-entropy minus ``(1 - alpha)`` x a removed batch's (cycled through the
    removed samples); ``alpha`` 1 is plain fine-tuning on the rest. ``anneal``: run ``cfg``'s learning-rate schedule
    over these steps (under ``train.schedule=cosine``, from ``train.lr`` down to 0, so the model ends annealed as the
    trained one and a retrain do); otherwise ``train.lr`` throughout. ``targets``: ``[N, classes]`` label
    distributions of ``train``'s rows, taught to the kept ones in place of their labels (soft labels)."""
    keep = _check(keep, len(train))
    if targets is not None and len(targets) != len(train):
        raise ConfigError(f"targets has {len(targets)} rows for {len(train)} training samples")
    if not 0 < alpha <= 1:
        raise ConfigError(f"alpha must be in (0, 1], got {alpha}")
    if epochs <= 0:
        raise ConfigError(f"epochs must be positive, got {epochs}")
    kept, gone = train[torch.nonzero(keep).flatten()], train[torch.nonzero(~keep).flatten()]
    soft = None if targets is None else targets[torch.nonzero(keep).flatten()].float()
    if alpha < 1 and len(gone) == 0:
        raise ConfigError("NegGrad+ needs removed data: the keep mask keeps everything")
    net = with_params(model, params)
    net.train()
    dev = devices.of(net)
    opt = make_optimizer(net, cfg)
    steps_left = total = math.ceil(epochs * math.ceil(len(kept) / cfg.batch_size))
    forget: list[torch.Tensor] = []
    epoch = 0
    while steps_left > 0:
        for idx in _batches(len(kept), cfg, epoch):
            if steps_left == 0:
                break
            z = net(kept.x[idx].to(dev))
            if soft is None:
                loss = F.cross_entropy(z, kept.y[idx].to(dev))
            else:  # label distributions (classes absent from them have no column: padded with zeros)
                loss = F.cross_entropy(z, F.pad(soft[idx], (0, z.shape[1] - soft.shape[1])).to(dev))
            if alpha < 1:
                if not forget:
                    forget = list(_batches(len(gone), cfg, epoch))
                jdx = forget.pop()
                loss = alpha * loss - (1 - alpha) * F.cross_entropy(net(gone.x[jdx].to(dev)), gone.y[jdx].to(dev))
            if anneal:
                set_rate(opt, cfg, total - steps_left, total)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps_left -= 1
        epoch += 1
    net.eval()
    if not all(torch.isfinite(p).all() for p in net.parameters()):
        raise NumericalError("the reference unlearner diverged (non-finite weights): a larger alpha (a smaller share "
                             "of ascent) or a smaller train.lr")
    return net


#: the neighbours whose majority label a removed sample takes in :func:`relabel_knn` (chosen from 1, 5 and 10 on the
#: two-groups-per-class Fashion-MNIST MLP probe, where all three did about as well; BENCHMARKS.md, "Relabelled
#: fine-tuning")
RELABEL_NEIGHBOURS = 5


#: how many of the ``RELABEL_NEIGHBOURS`` must share a label for :func:`relabelled_split` to teach it (a bare majority,
#: 3 of 5, over-forgot on a momentum-trained GroupNorm ConvNet; BENCHMARKS.md, "Relabelled fine-tuning")
RELABEL_AGREE = 4


#: where a removed sample's ``RELABEL_NEIGHBOURS`` do not agree on another class, :func:`relabelled_targets` teaches it
#: the label distribution of this many nearest kept samples where any of them carries another class (0.28; passed a
#: fresh test on seeds 4-6 of the report configurations: BENCHMARKS.md, "Soft labels for the removed samples whose
#: neighbours disagree"); 0: left out, as before
RELABEL_SOFT_NEIGHBOURS = 10


def _nearest_labels(x: torch.Tensor, reference_x: torch.Tensor, reference_y: torch.Tensor, k: int,
                    chunk: int = 1024) -> Iterator[torch.Tensor]:
    """The labels ``[n, k]`` of the ``k`` nearest rows of ``reference_x`` (Euclidean on the flattened inputs) of
    each row of ``x``, ``chunk`` rows at a time."""
    if len(reference_x) == 0:
        raise ConfigError("no reference samples to take labels from")
    k = min(k, len(reference_x))
    ref = reference_x.flatten(1).float()
    for s in range(0, len(x), chunk):
        yield reference_y[torch.cdist(x[s : s + chunk].flatten(1).float(), ref).topk(k, largest=False).indices]


def knn_labels(x: torch.Tensor, reference_x: torch.Tensor, reference_y: torch.Tensor, k: int = RELABEL_NEIGHBOURS,
               chunk: int = 1024, agree: int = 1) -> torch.Tensor:
    """The majority label ``[N]`` of each row of ``x`` among its ``k`` nearest rows of ``reference_x`` (Euclidean on
    the flattened inputs; ties to the smallest label), labelled ``reference_y``; -1 where fewer than ``agree`` of the
    ``k`` share it."""
    out = []
    for labels in _nearest_labels(x, reference_x, reference_y, k, chunk):
        mode = torch.mode(labels, 1).values
        out.append(torch.where((labels == mode[:, None]).sum(1) >= agree, mode, torch.full_like(mode, -1)))
    return torch.cat(out) if out else reference_y[:0]


def knn_votes(x: torch.Tensor, reference_x: torch.Tensor, reference_y: torch.Tensor, k: int, classes: int,
              chunk: int = 1024) -> torch.Tensor:
    """``[N, classes]``: the share of each class among the ``k`` nearest rows of ``reference_x`` of each row of ``x``
    (as :func:`knn_labels` finds them)."""
    out = [F.one_hot(labels, classes).float().mean(1)
           for labels in _nearest_labels(x, reference_x, reference_y, k, chunk)]
    return torch.cat(out) if out else torch.zeros(0, classes)


def relabelled_split(train: Split, keep: torch.Tensor, k: int = RELABEL_NEIGHBOURS,
                     agree: int = RELABEL_AGREE, space: torch.Tensor | None = None) -> tuple[Split, int]:
    """The samples :func:`relabel_knn` trains on with hard labels (``soft`` 0), in the training split's order: every
    kept one, and each removed one (``~keep``) of which at least ``agree`` of the ``k`` nearest kept samples name the
    same other class than its own, with that class; and how many removed samples that is. A removed sample is never
    among them with its own label. ``space``: ``[N, ...]`` rows to take the neighbours in instead of the raw inputs
    ``train.x``."""
    r = relabelled_targets(train, keep, int(train.y.max()) + 1 if len(train) else 1, k, agree, soft=0, space=space)
    return r.split, r.relabelled


class Relabelled(NamedTuple):
    """What :func:`relabelled_targets` gives: the rows to train on (``split``, in the training split's order), their
    label distributions (``targets [n, classes]``), and how many removed samples were taught another class
    (``relabelled``) or their neighbours' label shares (``softened``)."""
    split: Split
    targets: torch.Tensor
    relabelled: int
    softened: int


def relabelled_targets(train: Split, keep: torch.Tensor, classes: int, k: int = RELABEL_NEIGHBOURS,
                       agree: int = RELABEL_AGREE, soft: int = RELABEL_SOFT_NEIGHBOURS,
                       space: torch.Tensor | None = None) -> Relabelled:
    """:func:`relabelled_split`'s samples with their labels as distributions (one-hot), and, with ``soft`` > 0, each
    removed sample it leaves out of which at least one of the ``soft`` nearest kept samples carries another class,
    taught those neighbours' label distribution (its own class's share included): where the kept data is split about
    a removed sample's region, a retrain without it is unsure there too. A removed sample whose ``soft`` neighbours all
    carry its own class stays out, so none is taught its own label alone. ``space``: where the neighbours, hard and
    soft, are found (rows of the training split, e.g. its features; default: the raw inputs)."""
    keep = _check(keep, len(train))
    if len(train) and int(train.y.max()) >= classes:
        raise ConfigError(f"labels reach {int(train.y.max())} with {classes} classes")
    gone = torch.nonzero(~keep).flatten()
    where = train.x if space is None else space
    labels = (knn_labels(where[gone], where[keep], train.y[keep], k, agree=agree).to(train.y) if len(gone)
              else train.y[:0])
    other = (labels != train.y[gone]) & (labels >= 0)  # the neighbours name another class than the sample's own
    y, use = train.y.clone(), keep.clone()
    y[gone[other]], use[gone[other]] = labels[other], True
    targets = F.one_hot(y, classes).float()
    softened = 0
    rest = gone[~other]
    if soft > 0 and len(rest):
        votes = knn_votes(where[rest], where[keep], train.y[keep], soft, classes)
        split = votes.gather(1, train.y[rest][:, None])[:, 0] < 1  # some neighbour carries another class
        targets[rest[split]], use[rest[split]] = votes[split], True
        softened = int(split.sum())
    rows = torch.nonzero(use).flatten()
    return Relabelled(Split(train.x[rows], y[rows], train.index[rows]), targets[rows], int(other.sum()), softened)


def relabel_knn(model: nn.Module, params: dict[str, torch.Tensor], train: Split, keep: torch.Tensor, cfg: TrainConfig,
                epochs: float = 1.0, k: int = RELABEL_NEIGHBOURS, agree: int = RELABEL_AGREE,
                soft: int = RELABEL_SOFT_NEIGHBOURS) -> nn.Module:
    """A copy of ``model`` at ``params`` after ``epochs`` passes of ``cfg``'s optimizer over
    :func:`relabelled_targets`: the kept samples of ``train``, those removed ones (``~keep``) whose nearest kept
    samples name another class, each with that class, and (``soft`` > 0) those whose ``soft`` nearest kept samples
    are split, with their label shares. Where a removed sample's neighbours agree with it, it is left out
    (fine-tuning on the rest); where the kept data assigns its region to another class, it is taught that class, as a
    retrain without it would learn. Under a learning-rate schedule the epoch runs it over its own steps
    (:func:`train_relabelled`: a cosine-trained model ends annealed, as a retrain does)."""
    r = relabelled_targets(train, keep, int(train.y.max()) + 1, k, agree, soft)  # padded to the head's classes
    return train_relabelled(model, params, r.split, cfg, epochs, r.targets)


def train_relabelled(model: nn.Module, params: dict[str, torch.Tensor], split: Split, cfg: TrainConfig,
                     epochs: float = 1.0, targets: torch.Tensor | None = None) -> nn.Module:
    """:func:`relabel_knn`'s training on a :func:`relabelled_split` (or :func:`relabelled_targets`' split with its
    ``targets``): ``epochs`` passes of ``cfg``'s optimizer over all of ``split``, its learning-rate schedule run over
    these steps."""
    return neggrad_plus(model, params, split, torch.ones(len(split), dtype=torch.bool), cfg, epochs, alpha=1.0,
                        anneal=True, targets=targets)
