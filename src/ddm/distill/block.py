"""Synsets matched over the last block and the head, in the metric of a low-rank damped Newton step.

The head matcher (:mod:`ddm.distill.head`) makes each group's weighted synthetic images reproduce the group's
last-layer gradient. Over the last block as well, its synsets reproduce the direction of the group's gradient
(cosine 0.97-0.99 on the digits ResNet) but not its Newton step: the damped inverse of the curvature amplifies
what they miss (relative error 15 in that metric), and the deeper step on them attributes *worse* than the
head's (BENCHMARKS.md, "A Newton step over more of the network than the last layer"). Matching again in the
step's own metric, at every checkpoint the emulation averages over, brought the error to 0.6 in 200 Adam steps
and the LDS above the head's. This module holds that matching:

    min_{S, w}  mean_m mean_k |P_m (g~_k^m - g_k^m)|^2 / |P_m g_k^m|^2,
    g~_k^m = sum_{s in S_k} w_s grad_theta l(theta_m; x_s, y_s)   (over the scope's parameters)

with ``P_m`` member m's :class:`ddm.distill.scope.LowRankInverse` and ``g_k^m`` the group's real gradient there.
It runs after the head matcher, from its synsets (``distill.matching=block``, ``--recipe block``; not the default),
and stores each member's :class:`ddm.distill.scope.LowRankInverse` with the synset; the Newton emulation
(:func:`block_logits`) then takes its step over the same scope. ``benchmarks/deeper_step.py`` does the same
computation with explicit Jacobians.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

from ddm.cluster.groups import Groups
from ddm.config import DistillConfig
from ddm.data.dataset import Split
from ddm.distill.head import matching_quality
from ddm.distill.scope import GaussNewton, LowRankInverse, Params, flatten, leading_eigenpairs, scope_names, unflatten
from ddm.distill.synset import Synset
from ddm.exceptions import ConfigError, NumericalError
from ddm.progress import bar
from ddm.train.trajectory import Trajectory

log = logging.getLogger(__name__)
#: the eigenvectors a block synset may store, in bytes (float32, all checkpoints together)
MAX_BYTES = 2 << 30


def _per_sample(model: nn.Module, params: Params, names: list[str], x: torch.Tensor,
                targets: torch.Tensor) -> torch.Tensor:
    """``[B, P]``: each row's cross-entropy gradient (soft ``targets [B, C]``) over ``names``, flattened in order;
    differentiable in ``x`` (and in ``params``) when they require it."""
    free = {n: params[n] for n in names}
    fixed = {k: v for k, v in params.items() if k not in free}

    def loss(p: Params, xi: torch.Tensor, ti: torch.Tensor) -> torch.Tensor:
        z = functional_call(model, {**fixed, **p}, (xi[None],))[0]
        return -(ti * z.log_softmax(-1)).sum()

    per = vmap(grad(loss), in_dims=(None, 0, 0))(free, x, targets)
    return torch.cat([per[n].reshape(len(x), -1) for n in names], 1)


def _summed(per: torch.Tensor, weights: torch.Tensor, group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """``[K, P]``: rows of per-image gradients ``per [S, P]`` times their ``weights [S]``, summed by ``group [S]``."""
    per = per * weights.to(per.dtype)[:, None]
    return torch.zeros(num_groups, per.shape[1], dtype=per.dtype).index_add(0, group, per)


def group_gradients(model: nn.Module, params: Params, names: list[str], x: torch.Tensor, y: torch.Tensor,
                    assignment: torch.Tensor, num_groups: int, batch: int = 128) -> torch.Tensor:
    """``[K, P]``: each group's summed cross-entropy gradient over ``names`` at ``params`` (rows of ``x`` with
    labels ``y`` and groups ``assignment``), streamed ``batch`` rows at a time."""
    with torch.no_grad():
        C = functional_call(model, params, (x[:1],)).shape[-1]
    out: torch.Tensor | None = None
    for s in range(0, len(x), batch):
        t = torch.nn.functional.one_hot(y[s:s + batch], C).to(x.dtype)
        with torch.no_grad():
            g = _per_sample(model, params, names, x[s:s + batch], t)
        out = torch.zeros(num_groups, g.shape[1], dtype=g.dtype) if out is None else out
        out.index_add_(0, assignment[s:s + batch], g)
    assert out is not None
    return out


@dataclass
class MatchSite:
    """One member of the emulation's average: the parameters there, the damped inverse and the groups' real
    gradients ``[K, P]`` over the scope."""

    params: Params
    inverse: LowRankInverse
    real: torch.Tensor


def match_over_scope(model: nn.Module, names: list[str], sites: list[MatchSite], images: torch.Tensor,
                     labels: torch.Tensor, weights: torch.Tensor, num_classes: int, steps: int, lr_img: float,
                     lr_weight: float, tolerance: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Adam on the images ``[K, n, ...]`` and the log of their positive weights ``[K, n]`` (hard ``labels [K, n]``)
    for the matching loss of the module doc, summed over ``sites`` (averaged). Stops early once the loss is below
    ``tolerance``. Returns the images, the weights and the loss at every step; a non-finite loss is an error."""
    K, n = labels.shape
    group = torch.arange(K).repeat_interleave(n)
    targets = torch.nn.functional.one_hot(labels.reshape(-1), num_classes).to(images.dtype)
    norms = [site.inverse(site.real).pow(2).sum(1).clamp_min(1e-30) for site in sites]
    x = images.reshape(K * n, *images.shape[2:]).clone().requires_grad_(True)
    log_w = weights.reshape(-1).clamp_min(1e-12).log().clone().requires_grad_(True)
    opt = torch.optim.Adam([{"params": [x], "lr": lr_img}, {"params": [log_w], "lr": lr_weight}])
    losses: list[float] = []
    pbar = bar(steps, "distill (block)")
    for _ in range(steps):
        opt.zero_grad()
        total = torch.zeros((), dtype=images.dtype)
        for site, norm in zip(sites, norms, strict=True):
            g = _summed(_per_sample(model, site.params, names, x, targets), log_w.exp(), group, K)
            total = total + (site.inverse(g - site.real).pow(2).sum(1) / norm).mean() / len(sites)
        if not torch.isfinite(total):
            raise NumericalError("the matching over the last block diverged (a non-finite loss); lower the "
                                 "image learning rate")
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
        pbar.update(1)
        pbar.set_postfix(loss=f"{losses[-1]:.4f}")
        if losses[-1] < tolerance:
            break
    pbar.close()
    return x.detach().reshape(images.shape), log_w.detach().exp().reshape(K, n), losses


def _members(model: nn.Module, params: Params, trajectory: Trajectory | None, synset: Synset) -> list[Params]:
    """``params`` (theta_tau), then each checkpoint the synset holds (the Newton emulation's members): the model's
    parameters in float32, with the checkpoint's own buffers (batch norm's running statistics) where the trajectory
    recorded them; theta_tau's are the model's."""
    own = [n for n, _ in model.named_parameters()]
    held = {n for n, _ in model.named_buffers()}
    at = [params] + ([trajectory.checkpoint(c.index) for c in synset.checkpoints] if trajectory is not None else [])
    return [{**{n: b for n, b in p.items() if n in held}, **{n: p[n].detach().float() for n in own}} for p in at]


def distill_block(model: nn.Module, trajectory: Trajectory, train: Split, groups: Groups, cfg: DistillConfig,
                  head_synset: Synset, weight_decay: float = 0.0) -> Synset:
    """The head-matched ``head_synset`` matched again over the last block and the head (module doc), with each
    member's low-rank damped inverse attached (``synset.block``). Cross-entropy only; runs on the CPU."""
    names = scope_names(model, "block")
    members = _members(model, trajectory.final, trajectory, head_synset)
    size = sum(members[0][n].numel() for n in names)
    rank = min(cfg.block_rank, size)
    need = 4 * size * rank * len(members)
    if need > MAX_BYTES:
        raise ConfigError(f"the last block and the head hold {size:,} parameters: {len(members)} x {rank} "
                          f"eigenvectors would take {need / 2 ** 30:.1f} GiB; lower distill.block_rank or "
                          "distill.checkpoints, or use the head recipe (distill.matching=head)")
    was_training = model.training
    model.eval()
    try:
        sites = []
        for i, p in enumerate(members):
            op = GaussNewton(model, p, names, train.x)
            s, V = leading_eigenpairs(op, size, rank, seed=cfg.seed)
            if float(s[0]) <= 0:
                raise NumericalError("the Gauss-Newton matrix over the last block is zero: the model fits every "
                                     "training sample exactly; use the head recipe")
            damping = cfg.block_damping * float(s[0]) + weight_decay
            real = op.summed_gradients(train.y, groups.assignment, groups.num_groups)
            if real is None:  # the Jacobians did not fit in memory: per-sample gradients, streamed
                real = group_gradients(model, p, names, train.x, train.y, groups.assignment, groups.num_groups)
            del op  # its Jacobians
            sites.append(MatchSite(p, LowRankInverse(s, V, damping), real))
            log.info("block curvature at member %d of %d: top eigenvalue %.3g, %d of %d parameters' eigenvectors",
                     i + 1, len(members), float(s[0]), rank, size)
        images, weights, losses = match_over_scope(
            model, names, sites, head_synset.images, head_synset.labels, head_synset.image_weights(),
            head_synset.num_classes, cfg.block_steps, cfg.block_lr, cfg.lr_label)
    finally:
        model.train(was_training)
    if losses:
        log.info("block matching: relative error %.3g -> %.3g in %d steps", losses[0], losses[-1], len(losses))
    with torch.no_grad():  # each group's block step against its real one at theta_tau (ddm.health reads them)
        site = sites[0]
        K, n = head_synset.labels.shape
        flat = images.reshape(K * n, *images.shape[2:])
        onehot = torch.nn.functional.one_hot(head_synset.labels.reshape(-1), head_synset.num_classes).float()
        g = _summed(_per_sample(model, site.params, names, flat, onehot), weights.reshape(-1),
                    torch.arange(K).repeat_interleave(n), K)
        step, ref = site.inverse(g.double()), site.inverse(site.real.double())
        q = matching_quality(step, ref)
        quality = torch.stack([q["cosine"], q["relative_error"], step.norm(dim=1).double()], 1).float()
    all_losses = torch.cat([head_synset.losses if head_synset.losses is not None else torch.zeros(0),
                            torch.tensor(losses)])
    out = replace(head_synset, images=images, weights=weights, losses=all_losses,
                  block=[site.inverse for site in sites], block_quality=quality)
    if not (torch.isfinite(images).all() and torch.isfinite(weights).all()):
        raise NumericalError("block matching produced non-finite images or weights; lower distill.block_lr")
    return out


def block_logits(model: nn.Module, params: Params, synset: Synset, deleted: torch.Tensor, x: torch.Tensor,
                 trajectory: Trajectory | None = None, decay: torch.Tensor | None = None,
                 chunk: int = 256) -> torch.Tensor:
    """Logits ``[P, N, C]`` on ``x`` after one damped Newton step over the last block and the head removing each
    row of ``deleted [P, K]``, averaged over theta_tau and the synset's checkpoints (linear in the step: each
    group's logit shift ``J(x) U_k`` first, by a forward-mode product per group). ``decay [K]``: the groups'
    shares of the weight decay, added to their gradients."""
    if not synset.block or synset.num_train is None:
        raise ConfigError("this synset was not matched over the last block (distill.matching=block)")
    if trajectory is None and synset.checkpoints:
        raise ConfigError("this synset averages its step over checkpoints: pass the trajectory it was distilled from")
    names = scope_names(model, "block")
    members = _members(model, params, trajectory, synset)
    if len(members) != len(synset.block):
        raise ConfigError(f"the synset holds {len(synset.block)} block curvatures for {len(members)} checkpoints: "
                          "re-distill with --overwrite")
    n_train = float(synset.num_train)
    sx, st, sg = synset.flat()
    sw = synset.image_weights().reshape(-1)
    K = synset.num_groups
    shift = torch.zeros(K, len(x), synset.num_classes)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for p, inv in zip(members, synset.block, strict=True):
                g = _summed(_per_sample(model, p, names, sx, st).double(), sw, sg, K)
                if decay is not None:
                    g = g + decay.double()[:, None] * flatten(p, names).double()[None]
                if inv.eigenvectors.shape[0] != g.shape[1]:
                    raise ConfigError("the synset's block curvature does not fit this model's last block: "
                                      "re-distill with --overwrite")
                U = unflatten((inv(g) / n_train).float(), p, names)  # {name: [K, *shape]}
                free = {n: p[n] for n in names}
                fixed = {k: v for k, v in p.items() if k not in free}
                for s in range(0, len(x), chunk):
                    xb = x[s:s + chunk]

                    def f(q: Params, xb: torch.Tensor = xb, fixed: Params = fixed) -> torch.Tensor:
                        return functional_call(model, {**fixed, **q}, (xb,))

                    shift[:, s:s + len(xb)] += vmap(lambda u, f=f, free=free: jvp(f, (free,), (u,))[1])(U)
            shift /= len(members)
            z = functional_call(model, members[0], (x,))
    finally:
        model.train(was_training)
    logits = z[None] + torch.einsum("pk,knc->pnc", deleted.float(), shift)
    if not torch.isfinite(logits).all():
        raise NumericalError("the block Newton emulation produced non-finite logits; re-distill with --overwrite")
    return logits
