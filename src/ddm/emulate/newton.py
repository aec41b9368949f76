"""Newton emulation of retraining without groups, from head-matched synsets (:mod:`ddm.distill.head`).

Attribution (``newton``): one damped Newton step on the last layer for every perturbation,
``W_p = W_tau + sum_{k deleted} U_k`` with ``U_k = (H + lambda I)^-1 g~_k / N`` (``g~_k`` the weighted
head gradient of group k's synthetic images), then the logits of the targets under ``W_p`` (read out
nonlinearly, so Eq. 8's regression still has work to do). The rest of the network is theta_tau's, so a
new target costs one forward pass to its features and a matrix product per perturbation.

When the synset carries curvatures at earlier checkpoints (``distill.checkpoints``), the same step is taken at
each of them (their features, head, curvature and the synsets' gradients there) and the logit changes
``h_t(x) U_t`` are averaged before they are added to theta_tau's logits: an ensemble over the trajectory that
raised LDS on the selection configurations (BENCHMARKS.md).

Unlearning (``newton_keep``): the step that minimises the quadratic model of the *kept* data's loss,
``(H - H~_del + epsilon H + lambda I)^-1 g~_del / N``, where ``H~_del`` is the Gauss-Newton matrix of the deleted
groups' synthetic images. With the full-data ``H`` a removed class keeps its curvature and barely moves
(accuracy on it stays high); with the kept data's curvature the class is forgotten as retraining forgets
it, while the other classes keep theirs (BENCHMARKS.md, "Head-Newton DDM").
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from ddm import devices
from ddm.distill.curvature import Curvature, EigenCorrectedCurvature, ExactCurvature, SubspaceCurvature
from ddm.distill.head import (
    Head,
    output_curvature,
    row_chunks,
    synset_head_gradients,
    whitened_synset_gradients,
)
from ddm.distill.synset import Synset
from ddm.exceptions import ConfigError, NumericalError
from ddm.train.trajectory import Trajectory

Params = dict[str, torch.Tensor]
log = logging.getLogger(__name__)


def _require_head(synset: Synset) -> tuple[Curvature, float, int]:
    if synset.curvature is None or synset.damping is None or synset.num_train is None:
        raise ConfigError("the Newton emulation needs a head-matched synset (distill.matching=head, the default); "
                          "this synset was made by another recipe: use emulate.method=finetune or linear")
    return synset.curvature, float(synset.damping), int(synset.num_train)


def decay_shares(sizes: torch.Tensor, weight_decay: float) -> torch.Tensor | None:
    """``[K]``: each group's share of the L2 term's gradient, ``n_k * weight_decay`` (None without decay).

    Training minimises the *mean* loss plus ``weight_decay / 2 |theta|^2``. In sum form that is
    ``sum_i l_i + N weight_decay / 2 |theta|^2``: every sample carries ``weight_decay / 2 |theta|^2`` of the
    penalty, and removing ``n_k`` samples removes their share with them. At theta_tau the gradient of the kept
    objective is then ``-(G_k + n_k weight_decay theta)`` (plus the full objective's own residual, the same for
    every deletion), so the removal step is ``(H + lambda I)^-1 (g_k + n_k weight_decay theta) / N``: the kept
    samples weigh more against the decay, and the weights grow back. Without decay the term is zero."""
    if weight_decay <= 0:
        return None
    return sizes.double() * weight_decay


def _with_decay(g: torch.Tensor, head: Head, params: Params, decay: torch.Tensor | None) -> torch.Tensor:
    """Rows of head gradients ``g [K, D]`` plus each group's decay share times the head's parameters there."""
    if decay is None:
        return g
    theta = head.matrix(params).reshape(-1).to(g.device, torch.float64)
    return (g.double() + decay.to(g.device)[:, None] * theta[None]).to(g.dtype)


def removal_displacements(model: nn.Module, params: Params, synset: Synset,
                          curvature: Curvature | None = None, damping: float | None = None,
                          decay: torch.Tensor | None = None, gradients: torch.Tensor | None = None,
                          rows: slice | None = None) -> torch.Tensor:
    """``U [K, D]``: the head displacement (flattened ``[C, d+1]``) of removing each group alone, at ``params``
    (theta_tau by default; another checkpoint with its own ``curvature`` and ``damping``). ``decay`` ``[K]``:
    the groups' shares of the weight decay (:func:`decay_shares`), added to their gradients. ``gradients``
    ``[K, D]``: the groups' own summed head gradients there, taken in place of the synthetic images'
    (``emulate.gradients=groups``). ``rows``: the groups ``rows`` only (``[len(rows), D]``; every row is solved on
    its own, so the rows of all groups' result)."""
    curvature, damping, n = _resolved(model, synset, curvature, damping)
    g = _removal_gradients(model, params, synset, decay, gradients, rows)
    return curvature.solve(g, damping, single=True) / n


def removal_shifts(model: nn.Module, params: Params, synset: Synset, h: torch.Tensor,
                   curvature: Curvature | None = None, damping: float | None = None,
                   decay: torch.Tensor | None = None, gradients: torch.Tensor | None = None,
                   rows: slice | None = None) -> torch.Tensor:
    """``[K, N, C]``: the logit change on features ``h [N, d+1]`` of each group's :func:`removal_displacements` (the
    same arguments), read in the curvature's eigenbasis (:meth:`Curvature.rotated_solve`, :meth:`Curvature.shifts`):
    an EK-FAC or subspace curvature never rotates the steps back, the targets' features are rotated once instead.
    With the exact curvature this is :func:`head_shifts` of :func:`removal_displacements`."""
    curvature, damping, n = _resolved(model, synset, curvature, damping)
    head = Head.of(model)
    shape = head.matrix(params).shape
    with torch.no_grad():
        if gradients is None and curvature.factored_whitener(damping) is not None:
            # a factored curvature's whitener gives its rotated_solve's rows (single precision): from the synthetic
            # images' factors one by one where that pays (many classes, few images: far cheaper than rotating each
            # group's summed [C, d+1] gradient)
            coords = whitened_synset_gradients(head, synset, curvature, damping, params, rows)
            if decay is not None:
                theta = head.matrix(params).reshape(1, -1)
                shares = (decay if rows is None else decay[rows]).to(coords)
                coords = coords + shares[:, None] * curvature.whitener(damping)(theta)
        else:
            g = _removal_gradients(model, params, synset, decay, gradients, rows)
            coords = curvature.rotated_solve(g, damping, single=True)
        return curvature.shifts(coords / n, h, shape)


def _resolved(model: nn.Module, synset: Synset, curvature: Curvature | None,
              damping: float | None) -> tuple[Curvature, float, int]:
    """The curvature (the synset's unless given; on the model's device), damping and training set size of a step."""
    stored, stored_damping, n = _require_head(synset)
    curvature = stored if curvature is None else curvature
    return curvature.to(devices.of(model)), stored_damping if damping is None else damping, n


def _removal_gradients(model: nn.Module, params: Params, synset: Synset, decay: torch.Tensor | None,
                       gradients: torch.Tensor | None, rows: slice | None) -> torch.Tensor:
    """The rows' summed head gradients of :func:`removal_displacements` (the synthetic images', or the groups' own
    ``gradients``), with their decay shares, on the model's device."""
    head = Head.of(model)
    with torch.no_grad():
        if gradients is None:
            g = synset_head_gradients(head, synset, params, rows)  # on the model's device
        else:
            g = (gradients if rows is None else gradients[rows]).to(devices.of(model), torch.float32)
        return _with_decay(g, head, params, decay if decay is None or rows is None else decay[rows])


def _site_gradients(synset: Synset, site: str) -> torch.Tensor | None:
    """The groups' own gradients at ``site`` (``tau`` or ``checkpoint<index>``) where the synset carries them."""
    if synset.group_gradients is None:
        return None
    if site not in synset.group_gradients:
        raise ConfigError(f"the groups' stored gradients lack the site {site!r} the synset averages over: run "
                          "`ddm distill` again on this workspace (it stores them anew)")
    return synset.group_gradients[site]


class Steps:
    """The head steps of the groups at one site (:func:`_sites`): ``steps(rows)``, ``U [len(rows), D]``, and
    ``shifts(rows, h, shape)``, their logit changes ``[len(rows), N, C]`` on features ``h`` (:func:`removal_shifts`;
    ``shape``: the head matrix's)."""

    def __init__(self, solve: Callable[[slice], torch.Tensor],
                 shifts: Callable[[slice, torch.Tensor, torch.Size], torch.Tensor]) -> None:
        self.solve, self.read = solve, shifts

    def __call__(self, rows: slice) -> torch.Tensor:
        return self.solve(rows)

    def shifts(self, rows: slice, h: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        return self.read(rows, h, shape)


def _members(model: nn.Module, params: Params, synset: Synset, trajectory: Trajectory | None,
             decay: torch.Tensor | None) -> list[tuple[Params, torch.Tensor]]:
    """``(parameters, U [K, D])`` at theta_tau, then at each checkpoint the synset holds a curvature for."""
    every = slice(0, synset.num_groups)
    return [(p, steps(every)) for p, steps in _sites(model, params, synset, trajectory, decay)]


def _sites(model: nn.Module, params: Params, synset: Synset, trajectory: Trajectory | None,
           decay: torch.Tensor | None) -> list[tuple[Params, Steps]]:
    """``(parameters, steps)`` at theta_tau, then at each checkpoint the synset holds a curvature for: ``steps(rows)``
    solves the head steps of those groups only (:func:`_members` solves them all at once)."""

    def at(p: Params, curvature: Curvature | None, damping: float | None, site: str) -> Steps:
        gradients = _site_gradients(synset, site)
        return Steps(lambda rows: removal_displacements(model, p, synset, curvature, damping, decay, gradients, rows),
                     lambda rows, h, shape: removal_shifts(model, p, synset, h, curvature, damping, decay, gradients,
                                                           rows))

    members = [(params, at(params, None, None, "tau"))]
    if synset.checkpoints:
        if trajectory is None:
            raise ConfigError("this synset averages the Newton step over checkpoints of the trajectory "
                              "(distill.checkpoints > 1): pass the trajectory it was distilled from")
        for c in synset.checkpoints:
            if c.index >= len(trajectory) or abs(float(trajectory.epochs[c.index]) - c.epoch) > 1e-6:
                raise ConfigError(f"the trajectory does not hold the checkpoint the synset was distilled at (index "
                                  f"{c.index}, epoch {c.epoch:g}): re-distill with --overwrite")
            p = trajectory.checkpoint(c.index)
            members.append((p, at(p, c.curvature, c.damping, f"checkpoint{c.index}")))
    return members


def _step_rows(model: nn.Module, synset: Synset) -> list[slice]:
    """The chunks of groups whose head steps are solved together (:func:`ddm.distill.head.row_chunks`: all of them up
    to 2^27 step entries, so small models compute exactly what one solve did)."""
    return row_chunks(synset.num_groups, Head.of(model).matrix().numel())


def _held(U: torch.Tensor) -> Steps:
    """The rows of steps already solved (:func:`step_members`)."""
    return Steps(lambda rows: U[rows], lambda rows, h, shape: head_shifts(h, U[rows], shape))


def steps_fit(model: nn.Module, synset: Synset) -> bool:
    """Whether every group's head step can be held at once at every site (:func:`step_members`), or should be solved
    a chunk of groups at a time where they are read out (``members=None``)."""
    return len(_step_rows(model, synset)) == 1


def _site_shifts(model: nn.Module, h: torch.Tensor, steps: Steps, shape: torch.Size, synset: Synset) -> torch.Tensor:
    """:func:`head_shifts` of every group's step at one site (:meth:`Steps.shifts`: read in the curvature's
    eigenbasis), solved a chunk of groups at a time (:func:`_step_rows`): the ``[K, N, C]`` shifts are held, never
    all ``[K, D]`` steps."""
    chunks = _step_rows(model, synset)
    if len(chunks) == 1:
        return steps.shifts(chunks[0], h, shape)
    S = torch.empty(synset.num_groups, len(h), shape[0], dtype=h.dtype, device=h.device)
    for rows in chunks:
        S[rows] = steps.shifts(rows, h, shape)
    return S


def head_shifts(h: torch.Tensor, U: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``[R, N, C]``: the logit change ``h U_r`` on features ``h [N, D]`` of each head step ``U [R, C D(+C)]``
    (flattened like the head matrix of ``shape``)."""
    return torch.einsum("nd,rcd->rnc", h, U.reshape(len(U), *shape).to(h.dtype))


def newton_outputs(model: nn.Module, params: Params, synset: Synset, deleted: torch.Tensor, x: torch.Tensor,
                   outputs: Callable[[torch.Tensor], torch.Tensor], trajectory: Trajectory | None = None,
                   decay: torch.Tensor | None = None) -> torch.Tensor:
    """An objective's outputs ``[P, N, O]`` on ``x`` for each row of ``deleted [P, K]``, read out per checkpoint
    (``emulate.readout=checkpoints``): at theta_tau and at each checkpoint the synset holds, the step's logit change
    ``h_t(x) U_t`` goes through the first-order expansion of ``outputs`` (logits ``[N, C]`` -> ``[N, O]``, which
    must be differentiable) at that checkpoint's own logits, and the results are averaged. Early checkpoints,
    where the targets are not fitted yet, weigh more than in :func:`newton_logits`, which reads the averaged
    change at theta_tau's logits. Linear in the perturbation: each group's effect adds up."""
    if synset.block:
        raise ConfigError("emulate.readout=checkpoints reads the last layer's step; a block-matched synset "
                          "(distill.matching=block) reads out at theta_tau: set emulate.readout=logits")
    head = Head.of(model)
    bases, effects = [], []
    for p, steps in _sites(model, params, synset, trajectory, decay):
        with torch.no_grad():
            h = head.features(x, p)
            W = head.matrix(p)
            z = h @ W.T
            S = _site_shifts(model, h, steps, W.shape, synset)  # [K, N, C]
            bases.append(outputs(z))
        effects.append(torch.func.vmap(lambda d, z=z: torch.func.jvp(outputs, (z,), (d,))[1])(S).detach())  # [K, N, O]
    base, effect = torch.stack(bases).mean(0), torch.stack(effects).mean(0)
    result = base[None] + torch.einsum("pk,kno->pno", deleted.to(effect.dtype).to(effect.device), effect)
    _check_finite(result, "Newton emulation (read out per checkpoint)")
    return result.cpu()


def step_members(model: nn.Module, params: Params, synset: Synset, trajectory: Trajectory | None = None,
                 decay: torch.Tensor | None = None) -> list[tuple[Params, torch.Tensor]] | None:
    """``(parameters, U [K, D])``: each group's head step at theta_tau and at each checkpoint the synset holds, for
    :func:`newton_shifts` (computed once for several target sets); None where they are too large to hold at once
    (:func:`steps_fit`), which :func:`newton_shifts` then solves a chunk of groups at a time for each target set."""
    return _members(model, params, synset, trajectory, decay) if steps_fit(model, synset) else None


def newton_shifts(model: nn.Module, params: Params, synset: Synset, x: torch.Tensor,
                  trajectory: Trajectory | None = None, decay: torch.Tensor | None = None,
                  members: list[tuple[Params, torch.Tensor]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """theta_tau's logits ``[N, C]`` on ``x`` and each group's logit shift ``[K, N, C]`` when it alone is removed,
    averaged over theta_tau and the synset's checkpoints: :func:`newton_logits` of a perturbation is the logits
    plus the sum of its deleted groups' shifts. ``members``: :func:`step_members`' result, if already at hand."""
    head = Head.of(model)
    sites = (_sites(model, params, synset, trajectory, decay) if members is None
             else [(p, _held(U)) for p, U in members])
    with torch.no_grad():
        W = head.matrix(params)
        feats = [(head.features(x, p), steps) for p, steps in sites]
        z = feats[0][0] @ W.T
        S = _site_shifts(model, *feats[0], W.shape, synset)
        for h, steps in feats[1:]:  # summed in place: one [K, N, C] at a time
            S += _site_shifts(model, h, steps, W.shape, synset)
        S /= len(feats)
    _check_finite(S, "Newton emulation")
    return z.cpu(), S.cpu()


def newton_logits(model: nn.Module, params: Params, synset: Synset, deleted: torch.Tensor, x: torch.Tensor,
                  chunk_size: int = 256, trajectory: Trajectory | None = None, order: str = "auto",
                  decay: torch.Tensor | None = None) -> torch.Tensor:
    """Logits ``[P, N, C]`` on ``x`` after one Newton step removing each row of ``deleted [P, K]``.

    ``params`` is theta_tau; ``trajectory`` (needed when the synset holds curvatures at earlier checkpoints)
    gives those checkpoints' parameters, and the logit changes are averaged over them (module doc).
    ``order``: ``groups`` (each group's logit shift first), ``perturbations`` (each perturbation's head step
    first) or ``auto`` (the one with fewer multiply-adds); the same numbers up to rounding. ``decay`` ``[K]``: the
    groups' shares of the weight decay (:func:`decay_shares`; None: not modelled)."""
    if order not in ("auto", "groups", "perturbations"):
        raise ConfigError(f"order must be auto, groups or perturbations, got {order!r}")
    head = Head.of(model)
    sites = _sites(model, params, synset, trajectory, decay)
    with torch.no_grad():
        W = head.matrix(params)
        feats = [(head.features(x, p), steps) for p, steps in sites]
        z = feats[0][0] @ W.T  # theta_tau's logits (sites[0] is theta_tau)
        P, K, N, C, M = len(deleted), synset.num_groups, len(x), W.shape[0], len(sites)
        out = []
        # The shift is linear in the perturbation: either each perturbation's head step (d @ U, [P, D]) is read out
        # on the targets' features (M P D (K + N) multiply-adds), or each group's logit shift on the targets is read
        # out first (S [K, N, C], averaged over the checkpoints) and the perturbations sum it (M N K D + P K N C):
        # the same numbers, and the second is 9x cheaper on the demo (K = 100, 20 targets). The cheaper one runs.
        # Where the steps are too many to hold at once (steps_fit), the first, which solves them a chunk of groups at
        # a time, runs unless the second is asked for.
        cheaper = M * N * K * W.numel() + P * K * N * C < M * P * W.numel() * (K + N)
        if order == "groups" or (order == "auto" and (cheaper or not steps_fit(model, synset))):
            S = torch.stack([_site_shifts(model, h, steps, W.shape, synset) for h, steps in feats]).mean(0)
            S = S.reshape(K, N * C)

            def shift(d: torch.Tensor) -> torch.Tensor:
                return (d @ S).reshape(len(d), N, C)
        else:
            every = slice(0, K)
            held = [(h, steps(every)) for h, steps in feats]

            def shift(d: torch.Tensor) -> torch.Tensor:
                return torch.stack([head_shifts(h, d @ U, W.shape) for h, U in held]).mean(0)
        for s in range(0, P, chunk_size):
            out.append((z + shift(deleted[s : s + chunk_size].float().to(W.device))).cpu())
    logits = torch.cat(out)
    _check_finite(logits, "Newton emulation")
    return logits


def member_shifts(model: nn.Module, params: Params, synset: Synset, deleted: torch.Tensor, x: torch.Tensor,
                  trajectory: Trajectory | None = None,
                  decay: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """``(z, s_tau, s_checkpoints)``: theta_tau's logits ``[N, C]`` on ``x`` and, apart, the logit shifts ``[P, N, C]``
    of the step at theta_tau and at each of the synset's checkpoints that :func:`newton_logits` averages (single
    precision, as the logits: 2,000 groups' perturbations on 50 targets of 200 classes take 0.8 GB a site): any
    weighting of the members follows from these, e.g. ``z + mean([s_tau, *s_checkpoints])`` is :func:`newton_logits`.
    Each site's steps are solved once."""
    head = Head.of(model)
    with torch.no_grad():
        shifts, z = [], None
        for p, steps in _sites(model, params, synset, trajectory, decay):  # theta_tau first
            h = head.features(x, p)
            S = _site_shifts(model, h, steps, head.matrix(p).shape, synset)  # [K, N, C]
            shifts.append(torch.einsum("pk,knc->pnc", deleted.to(S.device, S.dtype), S).cpu())
            z = (h @ head.matrix(p).T).cpu() if z is None else z
            del S
    for s in shifts:
        _check_finite(s, "Newton emulation")
    assert z is not None
    return z, shifts[0], shifts[1:]


def newton_keep_params(model: nn.Module, params: Params, synset: Synset, groups: torch.Tensor,
                       damping: float | None = None, curvature_damping: float = 0.0,
                       decay: torch.Tensor | None = None, group_curvature: bool = False) -> Params:
    """theta_tau with its head moved to the kept data's quadratic optimum (module doc) for ``groups`` removed.

    ``damping``: the absolute lambda (default: the synset's). ``curvature_damping`` (epsilon) adds
    ``epsilon * H`` of the *full* data, a Levenberg-Marquardt trust region that follows the curvature: the
    step stays long where the deletion removed the curvature (a forgotten class) and short along directions
    the full data never constrained (exact curvature only; ignored, with a warning, under K-FAC). ``decay`` ``[K]``:
    every group's share of the weight decay (:func:`decay_shares`), the removed ones' added to their gradient.
    ``group_curvature`` (``emulate.unlearn_curvature=group``): subtract the removed groups' own stored curvature
    (``distill.unlearn_rank``) over the exact block instead of their synthetic images'."""
    curvature, synset_damping, n = _require_head(synset)
    damping = synset_damping if damping is None else damping
    head = Head.of(model)
    sub = Synset(synset.images[groups], synset.labels[groups], synset.num_classes,
                 weights=synset.image_weights()[groups], task=synset.task)
    with torch.no_grad():
        # on the model's device; a chunk of groups at a time where all their gradients are too many to hold at once
        g = sum(synset_head_gradients(head, sub, params, rows).double().sum(0)
                for rows in row_chunks(sub.num_groups, head.matrix(params).numel()))
        assert isinstance(g, torch.Tensor)
        if decay is not None:
            g = _with_decay(g[None], head, params, decay[groups].sum()[None])[0]
        dev = g.device
        x, t, _ = sub.flat()
        h = head.features(x, params)
        W = head.matrix(params)
        z = h @ W.T
        oc = output_curvature(synset.task, z, t.argmax(-1).to(dev))
        curvature = curvature.to(dev)
        w = sub.image_weights().reshape(-1).to(dev)
        if group_curvature and synset.group_curvature is None:
            log.warning("emulate.unlearn_curvature=group: this synset stores no group curvature (distilled before "
                        "distill.unlearn_rank, with it at 0, or with a K-FAC or EK-FAC curvature); its synthetic "
                        "images' curvature is used. Re-distill (--overwrite) to store it")
        kept: Curvature
        key = (tuple(groups.tolist()), curvature_damping, group_curvature, str(dev), synset.images._version,
               tuple((id(v), v._version) for v in params.values()))  # changed in place: built again
        hit = next((c for s, p, k, c in _KEPT if s is synset and p is params and k == key), None)
        if hit is not None:  # the unlearning check's back-off asks again with another damping: decomposed once
            return _newton_step(head, params, W, g, n, hit, damping)
        if group_curvature and synset.group_curvature is not None:  # the groups' own curvature over the exact block
            values, vectors = (t[groups].reshape(-1, *t.shape[2:]).to(dev) for t in synset.group_curvature)
            if isinstance(curvature, SubspaceCurvature):  # the rest (EK-FAC) still loses the images' curvature
                rest = curvature.rest.minus(h, z, w, n, out_curv=oc)
                assert isinstance(rest, EigenCorrectedCurvature)
                kept = SubspaceCurvature(curvature.u, curvature.exact.minus_pairs(values, vectors, n), rest)
            else:
                assert isinstance(curvature, ExactCurvature)  # group_curvatures stores pairs for no other kind
                kept = curvature.minus_pairs(values, vectors, n)
        else:
            kept = curvature.minus(h, z, w, n, out_curv=oc)
    if curvature_damping > 0:
        if isinstance(kept, ExactCurvature) and isinstance(curvature, ExactCurvature):
            kept = ExactCurvature(kept.hessian.double() + curvature_damping * curvature.hessian.double())
        else:
            log.warning("emulate.unlearn_curvature_damping needs the exact curvature; ignored under K-FAC")
    _KEPT[:] = [(synset, params, key, kept)]
    return _newton_step(head, params, W, g, n, kept, damping)


#: the last kept-data curvature :func:`newton_keep_params` built, with the synset, parameters (held, so compared by
#: identity) and removal it is for: ``ddm unlearn``'s check redoes a step with more damping for the same removal,
#: and a large head's decomposition (about 10 s for 5,130 parameters) is then not repeated
_KEPT: list[tuple[Synset, Params, tuple[object, ...], Curvature]] = []


def forget_kept_curvature() -> None:
    """Let :data:`_KEPT` go (a large head's holds about 0.6 GB): done by the unlearning once its back-off ends."""
    _KEPT.clear()


def _newton_step(head: Head, params: Params, W: torch.Tensor, g: torch.Tensor, n: int, kept: Curvature,
                 damping: float) -> Params:
    """``params`` with the head moved by the damped Newton step ``(kept + damping)^-1 g / n``."""
    step = kept.solve((g / n)[None], damping)[0]
    w_name, b_name = head.param_names
    step = step.reshape(W.shape).float().cpu()
    out = {k: v.detach().to("cpu", copy=True) for k, v in params.items()}
    out[w_name] = out[w_name] + step[:, :-1].reshape(out[w_name].shape)
    out[b_name] = out[b_name] + step[:, -1]
    for k in (w_name, b_name):
        _check_finite(out[k], "Newton unlearning")
    return out


def _check_finite(t: torch.Tensor, what: str) -> None:
    if not torch.isfinite(t).all():
        raise NumericalError(f"{what} produced non-finite values; the synset or its curvature is broken "
                             "(re-distill with --overwrite, or raise distill.damping)")
