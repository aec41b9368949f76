"""The Gauss-Newton matrix over more of the network than its last layer, matrix-free, and a low-rank damped inverse.

The head recipe (:mod:`ddm.distill.head`) takes its Newton step on the last layer only. A diagnostic
(``benchmarks/deeper_step.py``, BENCHMARKS.md "A Newton step over more of the network than the last layer") found
the step over the *last block and the head* attributing better on the digits ResNet, as long as the synsets are
matched over that scope in the metric of the step, and the step's curvature kept only in its leading eigenvectors
(300 of 18,890 with the rest of the gradient at the last kept eigenvalue reproduced the full solve). These are the
building blocks for that step:

* :func:`scope_names`: the parameters a scope covers (``head``; ``block``: the last block before the head too);
* :class:`GaussNewton`: ``V -> G V`` for the mean training loss's Gauss-Newton matrix ``G = mean_i J_i^T Lambda_i
  J_i`` over those parameters, from per-sample Jacobians formed once when they fit in memory, else streamed over
  the data with ``torch.func`` forward- and reverse-mode products;
* :func:`leading_eigenpairs`: its top eigenpairs by block subspace iteration;
* :class:`LowRankInverse`: ``g -> V (S + lambda)^-1 V^T g + (g - V V^T g) / (s_r + lambda)``, the damped inverse
  with the curvature beyond the kept eigenvectors taken at the last kept eigenvalue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from ddm.exceptions import ConfigError
from ddm.linalg import eigh

log = logging.getLogger(__name__)
Params = dict[str, torch.Tensor]


def head_name(model: nn.Module) -> str | None:
    """Module name of the ``nn.Linear`` taken as the model's head, unchecked: the one its logits come from where that
    was found (``model.ddm_head``, :func:`adopt_logits_head`), else the last one it registers; None without any."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    chosen = getattr(model, "ddm_head", None)
    return chosen if chosen in names else (names[-1] if names else None)


def last_linear_name(model: nn.Module) -> str:
    """Module name of the model's head (:func:`head_name`), checked to be usable by the head recipe: a Linear with a
    plain weight and a bias; or an error saying what is needed."""
    name = head_name(model)
    if name is None:
        raise ConfigError("head matching and the Newton step need a model whose output comes from a final nn.Linear "
                          "layer; use --recipe paper (or distill.matching=local) for other models")
    head = dict(model.named_modules())[name]
    params = dict(model.named_parameters())
    if nn.utils.parametrize.is_parametrized(head) or f"{name}.weight" not in params:
        raise ConfigError(f"the model's head, the nn.Linear layer {name!r}, is parametrised (e.g. "
                          "weight_norm or spectral_norm): head matching and the Newton step need its weight as a "
                          "plain parameter; remove the parametrisation from the output layer "
                          "(torch.nn.utils.parametrize.remove_parametrizations after training), or use --recipe paper")
    if f"{name}.bias" not in params:
        raise ConfigError(f"the model's head, the nn.Linear layer {name!r}, has no bias: head "
                          "matching and the Newton step need one (nn.Linear(..., bias=True)); or use --recipe paper")
    return name


def logits_linear(model: nn.Module, x: torch.Tensor) -> str | None:
    """Which ``nn.Linear`` gives the model's logits on ``x`` (in eval mode, no gradient); the last of several that
    all match. None where the logits are no Linear's output as it is (a softmax or a scale after it, or no Linear)."""
    outs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: outs.__setitem__(n, o.detach()))
             for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    was = model.training
    model.eval()  # a batch norm's running statistics stay put
    try:
        with torch.no_grad():
            logits = model(x).detach()
    finally:
        model.train(was)
        for hk in hooks:
            hk.remove()
    same = [n for n, o in outs.items() if o.shape == logits.shape
            and torch.allclose(o.cpu(), logits.cpu(), rtol=1e-4, atol=1e-4)]
    return same[-1] if same else None


def adopt_logits_head(model: nn.Module, x: torch.Tensor) -> str | None:
    """Take as the model's head the Linear its logits on ``x`` come from (:func:`logits_linear`) where that is not the
    head taken so far (a model that registers its output layer before its body, or an auxiliary Linear after it):
    sets ``model.ddm_head``, which ``fit`` records in the workspace. Returns that Linear's name, None where the
    logits are no Linear's output as it is."""
    real = logits_linear(model, x)
    if real is not None and real != head_name(model):
        log.info("the model's logits come from its nn.Linear %r, not from the last one it registers (%r): %r is taken "
                 "as its head", real, head_name(model), real)
        model.ddm_head = real  # type: ignore[assignment]
    return real


def scope_names(model: nn.Module, scope: str) -> list[str]:
    """Names of the parameters ``scope`` covers, in ``model.named_parameters()`` order.

    ``head``: the last ``nn.Linear``'s weight and bias. ``block``: the head and the block before it: for a model
    with residual blocks under ``layers.<i>`` (the library's ResNet) the last of them; otherwise the last module
    with a weight matrix or kernel before the head, with the modules between it and the head (a norm)."""
    head = last_linear_name(model)
    names = [n for n, _ in model.named_parameters()]
    head_names = [f"{head}.weight", f"{head}.bias"]  # both parameters: last_linear_name checked
    if scope == "head":
        return head_names
    if scope != "block":
        raise ConfigError(f"scope must be head or block, got {scope!r}")
    before = [n for n in names if n not in head_names]
    blocks = sorted({int(n.split(".")[1]) for n in before if n.startswith("layers.") and n.split(".")[1].isdigit()})
    if blocks:
        take = [n for n in before if n.startswith(f"layers.{blocks[-1]}.")]
    else:
        shapes = dict(model.named_parameters())
        modules = list(dict.fromkeys(n.rsplit(".", 1)[0] for n in before))
        chosen: list[str] = []
        for mod in reversed(modules):
            chosen.insert(0, mod)
            if shapes.get(f"{mod}.weight") is not None and shapes[f"{mod}.weight"].dim() >= 2:
                break
        take = [n for n in before if n.rsplit(".", 1)[0] in chosen]
    if not take:
        raise ConfigError("the model has no parameters before its head: use the head scope")
    return [n for n in names if n in take or n in head_names]


def flatten(d: Params, names: list[str]) -> torch.Tensor:
    """``[P]``: the tensors of ``names`` flattened and concatenated, in that order."""
    return torch.cat([d[n].reshape(-1) for n in names])


def unflatten(v: torch.Tensor, like: Params, names: list[str]) -> Params:
    """Rows ``v [q, P]`` -> ``{name: [q, *shape]}``, the inverse of flattening ``like``'s tensors in ``names`` order."""
    out, s = {}, 0
    for n in names:
        k = like[n].numel()
        out[n] = v[:, s:s + k].reshape(len(v), *like[n].shape)
        s += k
    return out


@dataclass
class GaussNewton:
    """``V [P, q] -> G V``: the Gauss-Newton matrix of the mean cross-entropy (or a task's loss, through
    ``out_curv``) over the parameters ``names`` of ``model`` at ``params``, on the inputs ``x``.

    When the per-sample Jacobians (``N x C x P`` floats) fit in ``cache_bytes`` they are formed once (a vmapped
    ``jacrev``, ``batch`` rows at a time) and every product is two matrix products: on the CPU, vmapping
    forward-mode products over many tangents turns convolutions into grouped ones that run at a few percent of the
    plain rate (the digits ResNet's last block: minutes per product). Otherwise each batch costs one forward pass
    with ``q`` tangents (a vmapped ``jvp``) and one backward pass with ``q`` cotangents (a vmapped ``vjp``).
    ``out_curv``: ``(logits [B, C], rows) -> [B, C, C]``, the loss's curvature in the logits (default:
    cross-entropy's ``diag(p) - p p^T``)."""

    model: nn.Module
    params: Params
    names: list[str]
    x: torch.Tensor
    batch: int = 256
    out_curv: Callable[[torch.Tensor, slice], torch.Tensor] | None = None
    cache_bytes: int = 2 << 30

    def __post_init__(self) -> None:
        self._jacobians: torch.Tensor | None = None  # [N, C, P] once formed
        self._curvature: torch.Tensor | None = None  # [N, C] probabilities (cross-entropy) or [N, C, C]

    @property
    def size(self) -> int:
        return sum(self.params[n].numel() for n in self.names)

    def _parts(self) -> tuple[Params, Params]:
        free = {n: self.params[n].detach() for n in self.names}
        return free, {k: v.detach() for k, v in self.params.items() if k not in free}

    def _output_curvature(self, z: torch.Tensor, rows: slice) -> torch.Tensor:
        return z.softmax(-1) if self.out_curv is None else self.out_curv(z, rows)

    def _apply_output_curvature(self, curv: torch.Tensor, jv: torch.Tensor) -> torch.Tensor:
        """``Lambda (J v)`` for ``jv [q, B, C]`` (``curv``: probabilities ``[B, C]`` or matrices ``[B, C, C]``)."""
        if self.out_curv is None:
            return curv * jv - curv * (curv * jv).sum(-1, keepdim=True)
        return torch.einsum("bcd,qbd->qbc", curv.to(jv.dtype), jv)

    def _form(self) -> bool:
        """Form and keep the per-sample Jacobians if they fit in ``cache_bytes``; whether they are kept."""
        if self._jacobians is not None:
            return True
        free, fixed = self._parts()
        with torch.no_grad():
            C = functional_call(self.model, self.params, (self.x[:1],)).shape[-1]
        if len(self.x) * C * self.size * free[self.names[0]].element_size() > self.cache_bytes:
            return False

        def one(p: Params, xi: torch.Tensor) -> torch.Tensor:
            return functional_call(self.model, {**fixed, **p}, (xi[None],))[0]

        jac = vmap(jacrev(one), in_dims=(None, 0))
        parts, curv = [], []
        for s in range(0, len(self.x), self.batch):
            xb = self.x[s:s + self.batch]
            j = jac(free, xb)
            parts.append(torch.cat([j[n].reshape(len(xb), C, -1) for n in self.names], -1))
            with torch.no_grad():
                curv.append(self._output_curvature(functional_call(self.model, self.params, (xb,)),
                                                   slice(s, s + len(xb))))
        self._jacobians, self._curvature = torch.cat(parts), torch.cat(curv)
        return True

    def summed_gradients(self, y: torch.Tensor, assignment: torch.Tensor, num_groups: int) -> torch.Tensor | None:
        """``[K, P]``: each group's summed cross-entropy gradient from the kept Jacobians (``J_i^T (p_i - e_y)``),
        or None when they are not kept (or the loss is not cross-entropy)."""
        if self.out_curv is not None or not self._form():
            return None
        assert self._jacobians is not None and self._curvature is not None
        resid = self._curvature - torch.nn.functional.one_hot(y, self._curvature.shape[1]).to(self._curvature.dtype)
        per = torch.einsum("ncp,nc->np", self._jacobians, resid)
        return torch.zeros(num_groups, per.shape[1], dtype=per.dtype).index_add_(0, assignment, per)

    def __call__(self, V: torch.Tensor) -> torch.Tensor:
        if self._form():
            assert self._jacobians is not None and self._curvature is not None
            J = self._jacobians
            jv = torch.einsum("ncp,pq->qnc", J, V.to(J.dtype))
            hv = self._apply_output_curvature(self._curvature, jv)
            return (torch.einsum("ncp,qnc->pq", J, hv) / len(self.x)).to(V.dtype)
        free, fixed = self._parts()
        tangents = unflatten(V.T.to(next(iter(free.values())).dtype), free, self.names)
        out = torch.zeros(V.shape[1], V.shape[0], dtype=V.dtype)
        for s in range(0, len(self.x), self.batch):
            xb = self.x[s:s + self.batch]

            def f(p: Params, xb: torch.Tensor = xb) -> torch.Tensor:
                return functional_call(self.model, {**fixed, **p}, (xb,))

            primal = vjp(f, free)
            z, pull = primal[0], primal[1]
            jv = vmap(lambda t, f=f: jvp(f, (free,), (t,))[1])(tangents)  # [q, B, C]
            hv = self._apply_output_curvature(self._output_curvature(z.detach(), slice(s, s + len(xb))), jv)
            back = vmap(pull)(hv)[0]  # {name: [q, *shape]}
            out += torch.cat([back[n].reshape(len(hv), -1) for n in self.names], 1).to(out.dtype)
        return (out / len(self.x)).T


def leading_eigenpairs(matvec: Callable[[torch.Tensor], torch.Tensor], size: int, rank: int, iters: int = 12,
                       oversample: int = 16, seed: int = 0,
                       dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``rank`` leading eigenpairs ``(s [rank] descending, V [size, rank])`` of a symmetric positive
    semi-definite operator: block subspace iteration on ``rank + oversample`` columns (``iters`` products), then a
    Rayleigh-Ritz step (one more product). Negative Ritz values (rounding) are clipped to 0."""
    if rank < 1:
        raise ConfigError(f"the rank must be at least 1, got {rank}")
    q = min(size, rank + oversample)
    V = torch.linalg.qr(torch.randn(size, q, generator=torch.Generator().manual_seed(seed), dtype=dtype))[0]
    for _ in range(iters):
        V = torch.linalg.qr(matvec(V))[0]
    s, R = eigh(V.T @ matvec(V))
    order = torch.argsort(s, descending=True)[:rank]
    return s[order].clamp_min(0), V @ R[:, order]


@dataclass
class LowRankInverse:
    """``(G + damping I)^-1`` with ``G ~ V diag(s) V^T`` on its leading eigenvectors and ``s_r`` (the last kept
    eigenvalue) on the rest: ``g -> V (V^T g / (s + damping)) + (g - V V^T g) / (s_r + damping)``. Taking the rest
    at ``s_r`` rather than at 0 keeps the directions the eigenvectors miss from being amplified by ``1 / damping``.
    ``eigenvalues [r]`` descending, ``eigenvectors [P, r]`` orthonormal."""

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    damping: float

    def __post_init__(self) -> None:
        if self.eigenvectors.shape[1] != len(self.eigenvalues) or len(self.eigenvalues) == 0:
            raise ConfigError("LowRankInverse needs r >= 1 eigenvalues and a [P, r] matrix of eigenvectors")
        if self.damping <= 0:
            raise ConfigError(f"the damping must be positive, got {self.damping}")

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        """Rows ``g [K, P]`` -> ``[K, P]``."""
        V = self.eigenvectors.to(g.dtype)
        s = self.eigenvalues.to(g.dtype)
        c = g @ V  # [K, r]
        return (c / (s + self.damping)) @ V.T + (g - c @ V.T) / (float(s[-1]) + self.damping)

    def to_tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        return {f"{prefix}eigenvalues": self.eigenvalues, f"{prefix}eigenvectors": self.eigenvectors,
                f"{prefix}damping": torch.tensor(self.damping, dtype=torch.float64)}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], prefix: str = "") -> LowRankInverse:
        return cls(t[f"{prefix}eigenvalues"], t[f"{prefix}eigenvectors"], float(t[f"{prefix}damping"]))
