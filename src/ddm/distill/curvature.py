"""Curvature of the mean training loss with respect to the last layer, and its damped inverse.

The head's parameters are one ``[C, d+1]`` matrix (weight, then bias), flattened to ``D = C (d+1)``.
Cross-entropy is convex in the logits and the logits are linear in the head, so its Gauss-Newton matrix
*is* its Hessian: ``H = mean_i (diag(p_i) - p_i p_i^T) (x) h_i h_i^T``.

* :class:`ExactCurvature` stores ``H`` (``D x D``; 330^2 on the demo, 5130^2 for ResNet-18 on CIFAR-10);
* :class:`KroneckerCurvature` stores ``H ~ A (x) S`` with ``A = mean_i (diag(p_i) - p_i p_i^T)`` (``C x C``)
  and ``S = mean_i h_i h_i^T`` (``(d+1)^2``), the K-FAC factorisation, for heads too large to hold ``H``
  (CIFAR-100 with ResNet-18: ``D = 51,300``, 21 GB in float64).

Both solve ``(H + lambda I)^-1 V`` through an eigendecomposition computed once per object.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: heads with more parameters than this use the Kronecker factorisation under ``distill.curvature=auto``
EXACT_LIMIT = 6000
_TEMP_ELEMENTS = 1 << 23  # the largest temporary of ExactCurvature.accumulate, in elements (32 MiB)


def _eigh(m: torch.Tensor, single: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (negative ones clipped to 0) and eigenvectors, in double precision.

    ``single``: decomposed in single precision, 1.8x faster (0.24 s against 0.43 s for a 1,450-parameter head):
    eigenvalues come out within about 1e-6 of the top one, far below the damping of 1e-2 of it that the
    emulation adds, and the eigenvectors are stored in single precision anyway (``to_tensors(as_eig=True)``).
    LAPACK's single-precision solver has failed (an error, or NaN) on rank-deficient heads with many repeated
    eigenvalues (an AlexNet head of 387 parameters, whose double-precision decomposition is fine): such a
    decomposition is redone in double precision. Shifting the matrix by a tiny multiple of the identity (1e-6 of its
    mean diagonal, subtracted from the eigenvalues again; it leaves the eigenvectors as they are) avoids most of
    those failures: a 5,130-parameter AlexNet head at its first epoch (284 of 513 features dead) failed without it,
    and 3 of its 5 decompositions were redone in double precision at twice the cost."""
    if single:
        shift = 1e-6 * float(m.diagonal().abs().mean()) if m.numel() else 0.0
        try:
            evals, evecs = torch.linalg.eigh(m.float() + shift * torch.eye(len(m), dtype=torch.float32,
                                                                             device=m.device))
        except torch.linalg.LinAlgError:
            pass
        else:
            if bool(torch.isfinite(evals).all()) and bool(torch.isfinite(evecs).all()):
                return (evals.double() - shift).clamp(min=0), evecs.double()
    evals, evecs = torch.linalg.eigh(m.double())
    return evals.clamp(min=0), evecs


class Curvature:
    """``H`` of the mean training loss w.r.t. the head; subclasses store it exactly or factored."""

    kind = "base"

    def solve(self, v: torch.Tensor, damping: float, single: bool = False) -> torch.Tensor:
        """``(H + damping I)^-1 v`` for rows ``v [K, D]`` (float64; ``single``: float32, twice as fast, for uses
        that keep the result in single precision anyway, such as the Newton emulation's steps)."""
        raise NotImplementedError

    def top_eigenvalue(self) -> float:
        raise NotImplementedError

    def whitener(self, damping: float) -> Callable[[torch.Tensor], torch.Tensor]:
        """A float32 map ``v [K, D] -> [K, D]`` whose row norms are those of ``(H + damping I)^-1 v``: rows in
        the curvature's eigenbasis divided by the damped eigenvalues (one product with the eigenvectors instead
        of the solve's two, in single precision; what the distillation's matching loss needs at every step)."""
        raise NotImplementedError

    def minus(self, h: torch.Tensor, logits: torch.Tensor, weights: torch.Tensor, n: int,
              out_curv: torch.Tensor | None = None) -> Curvature:
        """The curvature of the data without weighted samples (features ``h [M, d+1]``, ``logits [M, C]``,
        ``weights [M]``), where ``self`` is the mean over ``n`` samples; negative directions clipped to 0.
        ``out_curv [M, C, C]``: the loss's curvature in the outputs (default: cross-entropy's)."""
        raise NotImplementedError

    def to_tensors(self, as_eig: bool = False) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def to(self, device: torch.device | str) -> Curvature:
        """The same curvature with its tensors on ``device``."""
        raise NotImplementedError

    @staticmethod
    def from_tensors(t: dict[str, torch.Tensor]) -> Curvature | None:
        if "hessian" in t:
            return ExactCurvature(t["hessian"])
        if "eigenvectors" in t:
            return ExactCurvature(None, (t["eigenvalues"], t["eigenvectors"]))
        if "curvature_a" in t:
            return KroneckerCurvature(t["curvature_a"], t["curvature_s"])
        return None


def _output_curvature(logits: torch.Tensor, weights: torch.Tensor | None = None,
                      out_curv: torch.Tensor | None = None) -> torch.Tensor:
    if out_curv is None:  # cross-entropy's: diag(p) - p p^T
        p = logits.softmax(-1).double()
        a = torch.diag_embed(p) - torch.einsum("nc,ne->nce", p, p)
    else:
        a = out_curv.double()
    return a if weights is None else a * weights.double()[:, None, None]


class ExactCurvature(Curvature):
    kind = "exact"

    def __init__(self, hessian: torch.Tensor | None, eig: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        if hessian is None and eig is None:
            raise ValueError("an exact curvature needs its matrix or its eigendecomposition")
        self._hessian = hessian
        self._eig: tuple[torch.Tensor, torch.Tensor] | None = None
        if eig is not None:
            self._eig = (eig[0].double().clamp(min=0), eig[1].double())

    @property
    def hessian(self) -> torch.Tensor:
        """The ``[D, D]`` matrix (rebuilt from the eigendecomposition when only that was stored)."""
        if self._hessian is None:
            evals, evecs = self.eig()
            self._hessian = (evecs * evals) @ evecs.T
        return self._hessian

    @staticmethod
    def accumulate(h: torch.Tensor, logits: torch.Tensor, weights: torch.Tensor | None = None,
                   out_curv: torch.Tensor | None = None) -> torch.Tensor:
        """Summed ``[D, D]`` contribution of a batch.

        Block ``(c, e)`` is ``sum_i a_i[c, e] h_i h_i^T``; the output curvature ``a_i`` is symmetric, so only the
        ``C (C + 1) / 2`` blocks with ``c <= e`` are computed, as single-precision products (the batch's sum is
        rounded once to about 1e-7 of its size, far below the damping's 1e-2 of the top eigenvalue) that the caller
        accumulates in double precision: 2.6x faster than the double-precision product of all ``C^2`` blocks."""
        a = _output_curvature(logits, weights, out_curv)
        n, c, d = len(h), logits.shape[1], h.shape[1]
        iu, ju = torch.triu_indices(c, c, device=h.device)
        hf = h.float()
        out = torch.empty(c, c, d, d, dtype=torch.float64, device=h.device)
        step = max(1, _TEMP_ELEMENTS // max(1, n * d))  # pairs per product: the [n, pairs, d] operand stays small
        for s in range(0, len(iu), step):
            i, j = iu[s : s + step], ju[s : s + step]
            x = a[:, i, j].float()  # [n, pairs]
            blocks = ((x[:, :, None] * hf[:, None, :]).reshape(n, -1).T @ hf).reshape(len(i), d, d).double()
            out[i, j] = blocks
            out[j, i] = blocks.transpose(1, 2)
        return out.transpose(1, 2).reshape(c * d, c * d)

    def eig(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._eig is None:
            self._eig = _eigh(self.hessian, single=True)  # D x D: the one decomposition that costs
        return self._eig

    def solve(self, v: torch.Tensor, damping: float, single: bool = False) -> torch.Tensor:
        evals, evecs = self.eig()
        dt = torch.float32 if single else torch.float64
        q = evecs.to(dt)
        return ((v.to(dt) @ q) / (evals + damping).to(dt)) @ q.T

    def top_eigenvalue(self) -> float:
        return float(self.eig()[0][-1])

    def whitener(self, damping: float) -> Callable[[torch.Tensor], torch.Tensor]:
        evals, evecs = self.eig()
        q, scale = evecs.float(), (1.0 / (evals + damping)).float()
        return lambda v: (v.float() @ q) * scale

    def minus(self, h: torch.Tensor, logits: torch.Tensor, weights: torch.Tensor, n: int,
              out_curv: torch.Tensor | None = None) -> Curvature:
        return ExactCurvature(self.hessian.double() - self.accumulate(h, logits, weights, out_curv) / n)

    def to_tensors(self, as_eig: bool = False) -> dict[str, torch.Tensor]:
        """The matrix, or (``as_eig``) its eigendecomposition: the same size, and a solve needs no eigh."""
        if as_eig:
            evals, evecs = self.eig()
            return {"eigenvalues": evals.float(), "eigenvectors": evecs.float()}
        return {"hessian": self.hessian.float()}

    def to(self, device: torch.device | str) -> ExactCurvature:
        dev = torch.device(device)
        if self._eig is not None and self._eig[1].device != dev:
            return ExactCurvature(None if self._hessian is None else self._hessian.to(dev),
                                  (self._eig[0].to(dev), self._eig[1].to(dev)))
        if self._hessian is not None and self._hessian.device != dev:
            return ExactCurvature(self._hessian.to(dev))
        return self


class KroneckerCurvature(Curvature):
    kind = "kfac"

    def __init__(self, a: torch.Tensor, s: torch.Tensor, scale: float = 1.0) -> None:
        self.a, self.s, self.scale = a, s, scale
        self._eig: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def eig(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._eig is None:
            ea, qa = _eigh(self.a)
            es, qs = _eigh(self.s)
            self._eig = (ea * self.scale, qa, es, qs)
        return self._eig

    def solve(self, v: torch.Tensor, damping: float, single: bool = False) -> torch.Tensor:
        ea, qa, es, qs = self.eig()
        c, d = len(ea), len(es)
        dt = torch.float32 if single else torch.float64
        qa, qs = qa.to(dt), qs.to(dt)
        m = qa.T @ v.to(dt).reshape(-1, c, d) @ qs
        m = m / (ea[:, None] * es[None, :] + damping).to(dt)
        return (qa @ m @ qs.T).reshape(len(v), c * d)

    def top_eigenvalue(self) -> float:
        ea, _, es, _ = self.eig()
        return float(ea[-1] * es[-1])

    def whitener(self, damping: float) -> Callable[[torch.Tensor], torch.Tensor]:
        ea, qa, es, qs = self.eig()
        qa32, qs32 = qa.float(), qs.float()
        scale = (1.0 / (ea[:, None] * es[None, :] + damping)).float()
        c, d = len(ea), len(es)
        return lambda v: ((qa32.T @ v.float().reshape(-1, c, d) @ qs32) * scale).reshape(len(v), c * d)

    def minus(self, h: torch.Tensor, logits: torch.Tensor, weights: torch.Tensor, n: int,
              out_curv: torch.Tensor | None = None) -> Curvature:
        w = weights.double()
        removed = float(w.sum())
        keep = max(n - removed, 1e-12)
        a = (self.a.double() * n - _output_curvature(logits, w, out_curv).sum(0)) / keep
        s = (self.s.double() * n - torch.einsum("m,md,mf->df", w, h.double(), h.double())) / keep
        return KroneckerCurvature(a, s, scale=self.scale * keep / n)

    def to(self, device: torch.device | str) -> KroneckerCurvature:
        if self.a.device == torch.device(device):
            return self
        return KroneckerCurvature(self.a.to(device), self.s.to(device), self.scale)

    def to_tensors(self, as_eig: bool = False) -> dict[str, torch.Tensor]:  # factors: small either way
        if self.scale != 1.0:
            raise ValueError("only a full-data Kronecker curvature is stored")
        return {"curvature_a": self.a.float(), "curvature_s": self.s.float()}


def accumulate_kronecker(h: torch.Tensor, logits: torch.Tensor,
                         out_curv: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed K-FAC factors of a batch: ``(sum_i A_i [C, C], sum_i h_i h_i^T [d+1, d+1])``."""
    hd = h.double()
    return _output_curvature(logits, None, out_curv).sum(0), hd.T @ hd
