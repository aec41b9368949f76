"""Curvature of the mean training loss with respect to the last layer, and its damped inverse.

The head's parameters are one ``[C, d+1]`` matrix (weight, then bias), flattened to ``D = C (d+1)``.
Cross-entropy is convex in the logits and the logits are linear in the head, so its Gauss-Newton matrix
*is* its Hessian: ``H = mean_i (diag(p_i) - p_i p_i^T) (x) h_i h_i^T``.

* :class:`ExactCurvature` stores ``H`` (``D x D``; 330^2 on the demo, 5130^2 for ResNet-18 on CIFAR-10);
* :class:`KroneckerCurvature` stores ``H ~ A (x) S`` with ``A = mean_i (diag(p_i) - p_i p_i^T)`` (``C x C``)
  and ``S = mean_i h_i h_i^T`` (``(d+1)^2``), the K-FAC factorisation, for heads too large to hold ``H``
  (CIFAR-100 with ResNet-18: ``D = 51,300``, 21 GB in float64);
* :class:`SubspaceCurvature` (the default for large heads) is exact on the top ``r`` eigenvectors of ``S`` (the
  feature directions that carry most of the features' energy; as many as the exact budget allows)
  and EK-FAC on the rest; the cross terms between the two are left out;
* :class:`EigenCorrectedCurvature` (EK-FAC; George et al., 2018) keeps K-FAC's eigenbasis ``Q_A (x) Q_S`` and
  replaces its eigenvalues by the exact curvature's diagonal in that basis,
  ``lambda[c, j] = mean_i (Q_A^T A_i Q_A)[c, c] (Q_S^T h_i)[j]^2`` (a second pass over the data).

K-FAC assumes a sample's output curvature ``A_i`` independent of its features ``h_i``; on a classifier's last layer
it is not (a confidently fitted sample has ``A_i`` near 0). Forced on the nine report configurations (heads of
330-1,450 parameters), K-FAC cost 0.05-0.12 LDS against the exact matrix on seven; EK-FAC's corrected eigenvalues
recovered none of it (the eigenbasis is what is wrong: the damped solves' cosine with the exact ones rose from
0.77 to 0.78 on one of them), the subspace with 16 directions all of it (BENCHMARKS.md, "Large last layers").

All solve ``(H + lambda I)^-1 V`` through an eigendecomposition computed once per object.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch

from ddm.linalg import eigh, scipy_eigh
from ddm.progress import bar

#: heads with more parameters than this use the Kronecker factorisation under ``distill.curvature=auto``
EXACT_LIMIT = 6000
#: feature directions over which a larger head's curvature is exact (:class:`SubspaceCurvature`); 0: as many as
#: :data:`EXACT_LIMIT` allows. 16, 99 and 599 tied the exact matrix's attribution on the two held-out large heads,
#: but 128 lost 2.8 points of one unlearning draw that 599 and the exact matrix kept (unlearning's damping is 10x
#: smaller, so more of the spectrum counts)
SUBSPACE_RANK = 0
_TEMP_ELEMENTS = 1 << 23  # the largest temporary of ExactCurvature.accumulate, in elements (32 MiB)
#: from this many coordinates a CPU matrix is decomposed by SciPy's LAPACK driver ``evd`` instead of
#: ``torch.linalg.eigh``: 26 s against 40-45 s for a 5,990-coordinate head in single precision, 7.5 s against 10.9 s
#: for 4,000, on one thread; level at 1,450-2,570 (so smaller heads keep torch's, and their synsets' numbers)
SCIPY_EIGH_MIN = 3000


def _lapack_eigh(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.eigh(m)``, through SciPy for a large CPU matrix (:data:`SCIPY_EIGH_MIN`); failures raise
    ``torch.linalg.LinAlgError`` either way."""
    if m.device.type != "cpu" or len(m) < SCIPY_EIGH_MIN:
        return torch.linalg.eigh(m)
    return scipy_eigh(m, "evd")


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
            evals, evecs = _lapack_eigh(m.float() + shift * torch.eye(len(m), dtype=torch.float32, device=m.device))
        except torch.linalg.LinAlgError:
            pass
        else:
            if bool(torch.isfinite(evals).all()) and bool(torch.isfinite(evecs).all()):
                return (evals.double() - shift).clamp(min=0), evecs.double()
    try:
        evals, evecs = _lapack_eigh(m.double())
    except torch.linalg.LinAlgError:
        if m.device.type != "cpu":
            raise
        evals, evecs = scipy_eigh(m.double(), "evr")  # ddm.linalg: where the default driver gives up (raises on NaN)
    return evals.clamp(min=0), evecs


class Curvature:
    """``H`` of the mean training loss w.r.t. the head; subclasses store it exactly or factored."""

    kind = "base"

    def solve(self, v: torch.Tensor, damping: float, single: bool = False) -> torch.Tensor:
        """``(H + damping I)^-1 v`` for rows ``v [K, D]`` (float64; ``single``: float32, twice as fast, for uses
        that keep the result in single precision anyway, such as the Newton emulation's steps)."""
        raise NotImplementedError

    def rotated_solve(self, v: torch.Tensor, damping: float, single: bool = False) -> torch.Tensor:
        """:meth:`solve`'s rows in an orthonormal basis of the head's parameters this curvature keeps (rows ``[K, D]``):
        the same norms and inner products as :meth:`solve`'s, and :meth:`shifts` reads the logit changes they make.
        A factored curvature (EK-FAC, K-FAC, the subspace) leaves its rows in its eigenbasis, which skips the
        solve's rotation back: half its cost, the larger half where the features outnumber the classes; in single
        precision these are :meth:`whitener`'s rows, so :meth:`factored_whitener` gives them from a sum's factors.
        The exact curvature's basis is the parameters' own: this is :meth:`solve`."""
        return self.solve(v, damping, single)

    def shifts(self, coords: torch.Tensor, h: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """``[K, N, C]``: the logit change ``h U_k^T`` on features ``h [N, d+1]`` of each step ``U_k`` (a head matrix of
        ``shape`` ``[C, d+1]``) whose :meth:`rotated_solve` row is ``coords[k]``, in ``h``'s dtype."""
        return torch.einsum("nd,kcd->knc", h, coords.reshape(len(coords), *shape).to(h.dtype))

    def top_eigenvalue(self) -> float:
        raise NotImplementedError

    def mean_eigenvalue(self) -> float:
        """The mean of the eigenvalues (trace / parameters): the scale of ``distill.damping_reference=mean``."""
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

    def factored_whitener(self, damping: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        """:meth:`whitener` of sums of outer products, from their factors: ``(delta [G, n, C], h [G, n, d+1]) ->
        [G, D']``, equal to ``whitener(damping)`` of the rows ``sum_i delta_i (x) h_i`` (a group's summed head
        gradient) without forming them; None where the curvature has no Kronecker-factored basis. With few images
        per group and many classes this is far cheaper: the basis acts on each factor's short side (200 classes,
        2,049 features, 4 images: about 50x fewer multiply-adds)."""
        return None

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
        if "sub_u" in t:
            exact = Curvature.from_tensors({k[10:]: v for k, v in t.items() if k.startswith("sub_exact.")})
            rest = Curvature.from_tensors({k[9:]: v for k, v in t.items() if k.startswith("sub_rest.")})
            assert isinstance(exact, ExactCurvature) and isinstance(rest, EigenCorrectedCurvature)
            return SubspaceCurvature(t["sub_u"], exact, rest)
        if "ekfac_lambda" in t:
            return EigenCorrectedCurvature(t["ekfac_qa"], t["ekfac_qs"], t["ekfac_lambda"])
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


def output_factors(logits: torch.Tensor, out_curv: torch.Tensor | None = None) -> torch.Tensor:
    """``L [M, C, C]`` with ``L_i L_i^T`` each sample's output curvature: cross-entropy's ``diag(p) - p p^T`` has the
    columns ``sqrt(p_l) (e_l - p)``; another loss's (``out_curv``) its eigendecomposition, negative parts dropped."""
    if out_curv is None:
        p = logits.softmax(-1).double()
        eye = torch.eye(p.shape[1], dtype=torch.float64, device=p.device)
        return (eye[None] - p[:, :, None]) * p.sqrt()[:, None, :]
    e, v = eigh(out_curv.double())
    return v * e.clamp(min=0).sqrt()[:, None, :]


#: below this many rows and columns (on the factor rows' short side) :func:`top_curvature` decomposes the whole Gram
#: matrix (LAPACK is fast there); above it, Lanczos iterations on the curvature as an operator
_DENSE_LIMIT = 512


def _top_pairs_lanczos(f: torch.Tensor, hd: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The top ``k`` eigenpairs ``(values [k] descending, vectors [k, C d])`` of ``sum_i L_i L_i^T (x) h_i h_i^T`` by
    ARPACK's Lanczos iterations (``scipy.sparse.linalg.eigsh``) on the matrix as an operator, never formed: a product
    with ``V [C, d]`` is ``sum_i (A_i V h_i) h_i^T`` (``A_i = L_i L_i^T``), ``4 M C d`` operations. From a fixed start
    (the global random state is left alone); None where it fails or any pair's residual ``|H v - e v|`` is above 1e-8
    of the top eigenvalue."""
    import numpy as np
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigsh

    c, d = f.shape[1], hd.shape[1]
    a = (f @ f.transpose(1, 2)).cpu()  # [M, C, C]
    hc = hd.cpu()

    def apply(v: np.ndarray) -> np.ndarray:
        vv = torch.from_numpy(np.ascontiguousarray(v)).reshape(c, d, -1)
        z = torch.einsum("md,cdk->mck", hc, vv)
        y = torch.einsum("mce,mek->mck", a, z)
        return torch.einsum("md,mck->cdk", hc, y).reshape(c * d, -1).numpy()

    op = LinearOperator((c * d, c * d), matvec=apply, matmat=apply, dtype=np.float64)
    start = np.random.default_rng(0).standard_normal(c * d)
    try:
        e, v = eigsh(op, k=k, which="LA", v0=start)
    except (ArpackError, ArpackNoConvergence):
        return None
    order = np.argsort(e)[::-1]
    e, v = torch.from_numpy(e[order].copy()), torch.from_numpy(v[:, order].copy())
    if not (bool(torch.isfinite(e).all()) and bool(torch.isfinite(v).all())):
        return None
    residual = torch.from_numpy(apply(v.numpy())) - v * e
    if float(residual.norm(dim=0).max()) > 1e-8 * max(float(e[0]), 1e-300):
        return None
    return e.to(hd.device), v.T.contiguous().to(hd.device)


def _top_pairs_dense(f: torch.Tensor, hd: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_top_pairs_lanczos`'s pairs from the full decomposition of the factor rows' Gram matrix on their short
    side (the top pairs of an SVD of the rows at a fraction of its cost)."""
    m, c, d = f.shape[0], f.shape[1], hd.shape[1]
    wide = m * c <= c * d
    if wide:  # row (i, l) is f_i[:, l] (x) h_i: its Gram matrix is the product of the factors' and the features'
        cols = f.transpose(1, 2).reshape(m * c, c)
        gram = (cols @ cols.T) * (hd @ hd.T).repeat_interleave(c, 0).repeat_interleave(c, 1)
    else:
        rows = torch.einsum("mcl,md->mlcd", f, hd).reshape(-1, c * d)
        gram = rows.T @ rows
    e, v = eigh(gram)
    evals, evecs = e.flip(0)[:k], v.flip(1)[:, :k]
    if not wide:
        return evals, evecs.T
    # the right singular vectors: the rows mapped through the left ones, (L (x) h)^T u / s
    u = evecs.reshape(m, c, k)  # [i, l, j]
    mapped = torch.einsum("mcl,mlj,md->jcd", f, u, hd).reshape(k, c * d)
    return evals, mapped / evals.clamp(min=1e-300).sqrt()[:, None]


def top_curvature(h: torch.Tensor, logits: torch.Tensor, rank: int,
                  out_curv: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``rank`` eigenpairs ``(values [rank], vectors [rank, C d])`` of a set of samples' summed last-layer
    curvature (features ``h [M, d]``, ``logits [M, C]``; :meth:`ExactCurvature.accumulate`'s layout), from the
    samples' factors ``L_i (x) h_i`` (``M C`` rows), never the ``[C d, C d]`` matrix: by Lanczos iterations on the
    curvature as an operator where both sides of the rows are large (a 250-sample group on a 2,570-parameter head:
    about 0.1 s against 1.5 s for the Gram matrix's LOBPCG and 11 s for an SVD, on one thread), else from the Gram
    matrix on the rows' short side. Fewer pairs than ``rank`` exist where the samples span fewer directions
    (eigenvalues at or below 1e-12 of the top one count as none): the rest are zeros."""
    f = output_factors(logits, out_curv)  # [M, C, C]: column l of L_i
    m, c, d = f.shape[0], f.shape[1], h.shape[1]
    values = torch.zeros(rank, dtype=torch.float64, device=h.device)
    vectors = torch.zeros(rank, c * d, dtype=torch.float64, device=h.device)
    if m == 0 or rank <= 0:
        return values, vectors
    hd = h.double()
    short = min(m * c, c * d)
    want = min(rank, short)
    pairs = _top_pairs_lanczos(f, hd, want) if short > max(_DENSE_LIMIT, 4 * want) else None
    evals, evecs = pairs if pairs is not None else _top_pairs_dense(f, hd, want)
    k = int((evals > 1e-12 * evals[0]).sum()) if evals[0] > 0 else 0
    if k:
        values[:k] = evals[:k]
        vectors[:k] = evecs[:k]
    return values, vectors


class ExactSum:
    """The summed exact last-layer curvature ``[C D, C D]`` of the batches given to :meth:`add`, built once
    by :meth:`matrix`.

    Block ``(c, e)`` is ``sum_i a_i[c, e] h_i h_i^T``; the output curvature ``a_i`` is symmetric, so only the
    ``C (C + 1) / 2`` blocks with ``c <= e`` are computed, as single-precision products (a batch's sum is rounded once
    to about 1e-7 of its size, far below the damping's 1e-2 of the top eigenvalue) accumulated in double precision:
    2.6x faster than the double-precision product of all ``C^2`` blocks. The blocks stay in one contiguous buffer
    until :meth:`matrix` mirrors and lays them out: assembling the ``[C D, C D]`` matrix for every batch took 60% of
    the time on a 60,000-image MLP, and the sums are the same, added in the same order."""

    def __init__(self, c: int, d: int, device: torch.device | str | None = None) -> None:
        self.c, self.d = c, d
        self.iu, self.ju = torch.triu_indices(c, c, device=device)
        self.blocks = torch.zeros(len(self.iu), d, d, dtype=torch.float64, device=device)

    def add(self, h: torch.Tensor, logits: torch.Tensor, weights: torch.Tensor | None = None,
            out_curv: torch.Tensor | None = None) -> None:
        """Add a batch's curvature: features ``h [n, D]``, ``logits [n, C]`` (cross-entropy's output curvature, or
        ``out_curv [n, C, C]``), optional per-sample ``weights``."""
        a = _output_curvature(logits, weights, out_curv)
        n, d = len(h), self.d
        hf = h.float()
        step = max(1, _TEMP_ELEMENTS // max(1, n * d))  # pairs per product: the [n, pairs, d] operand stays small
        for s in range(0, len(self.iu), step):
            i, j = self.iu[s : s + step], self.ju[s : s + step]
            x = a[:, i, j].float()  # [n, pairs]
            self.blocks[s : s + step] += ((x[:, :, None] * hf[:, None, :]).reshape(n, -1).T @ hf).reshape(
                len(i), d, d)

    def matrix(self) -> torch.Tensor:
        """The summed ``[C D, C D]`` curvature (double precision)."""
        c, d = self.c, self.d
        out = torch.empty(c, c, d, d, dtype=torch.float64, device=self.blocks.device)
        out[self.iu, self.ju] = self.blocks
        out[self.ju, self.iu] = self.blocks.transpose(1, 2)
        return out.transpose(1, 2).reshape(c * d, c * d)


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
        """Summed ``[D, D]`` contribution of a batch (:class:`ExactSum` over one batch)."""
        total = ExactSum(logits.shape[1], h.shape[1], h.device)
        total.add(h, logits, weights, out_curv)
        return total.matrix()

    def eig(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._eig is None:
            m = self.hessian
            # D x D: the one decomposition that costs (about 30 s for 6,000 coordinates on one CPU thread)
            with bar(1, f"decomposing the {len(m):,}-coordinate last-layer curvature") if len(m) >= 2000 else \
                    nullcontext():
                self._eig = _eigh(m, single=True)
        return self._eig

    def solve(self, v: torch.Tensor, damping: float, single: bool = False) -> torch.Tensor:
        evals, evecs = self.eig()
        dt = torch.float32 if single else torch.float64
        q = evecs.to(dt)
        return ((v.to(dt) @ q) / (evals + damping).to(dt)) @ q.T

    def top_eigenvalue(self) -> float:
        return float(self.eig()[0][-1])

    def mean_eigenvalue(self) -> float:
        return float(self.eig()[0].double().mean())

    def whitener(self, damping: float) -> Callable[[torch.Tensor], torch.Tensor]:
        evals, evecs = self.eig()
        q, scale = evecs.float(), (1.0 / (evals + damping)).float()
        return lambda v: (v.float() @ q) * scale

    def minus(self, h: torch.Tensor, logits: torch.Tensor, weights: torch.Tensor, n: int,
              out_curv: torch.Tensor | None = None) -> Curvature:
        return ExactCurvature(self.hessian.double() - self.accumulate(h, logits, weights, out_curv) / n)

    def minus_pairs(self, values: torch.Tensor, vectors: torch.Tensor, n: int) -> ExactCurvature:
        """The curvature without samples whose summed curvature is ``sum_j values[j] vectors[j] vectors[j]^T``
        (:func:`top_curvature`'s pairs, stacked), where ``self`` is the mean over ``n`` samples."""
        v = vectors.double().to(self.hessian.device)
        return ExactCurvature(self.hessian.double() - (v.T * values.double().to(v.device)) @ v / n)

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


def _eigenbasis_shifts(qa: torch.Tensor, qs: torch.Tensor, coords: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``[K, N, C]``: the logit change on features ``h [N, d+1]`` of the steps ``qa M_k qs^T`` whose coordinates in the
    basis ``qa (x) qs`` are ``coords [K, C m]`` (``qs [d+1, m]``): ``(h qs) M_k^T qa^T``, the features rotated once
    instead of every step rotated back."""
    dt = h.dtype
    hq = h @ qs.to(h.device, dt)  # [N, m]
    t = torch.einsum("nj,kaj->kna", hq, coords.to(dt).reshape(len(coords), len(qa), qs.shape[1]))
    return t @ qa.to(h.device, dt).T


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

    def rotated_solve(self, v: torch.Tensor, damping: float, single: bool = False) -> torch.Tensor:
        ea, qa, es, qs = self.eig()
        c, d = len(ea), len(es)
        dt = torch.float32 if single else torch.float64
        m = qa.to(dt).T @ v.to(dt).reshape(-1, c, d) @ qs.to(dt)
        return (m / (ea[:, None] * es[None, :] + damping).to(dt)).reshape(len(v), c * d)

    def solve(self, v: torch.Tensor, damping: float, single: bool = False) -> torch.Tensor:
        _, qa, es, qs = self.eig()
        dt = torch.float32 if single else torch.float64
        m = self.rotated_solve(v, damping, single).reshape(len(v), len(qa), len(es))
        return (qa.to(dt) @ m @ qs.to(dt).T).reshape(len(v), -1)

    def shifts(self, coords: torch.Tensor, h: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        _, qa, _, qs = self.eig()
        return _eigenbasis_shifts(qa, qs, coords, h)

    def top_eigenvalue(self) -> float:
        ea, _, es, _ = self.eig()
        return float(ea[-1] * es[-1])

    def mean_eigenvalue(self) -> float:
        ea, _, es, _ = self.eig()
        return float(ea.double().mean() * es.double().mean())

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


def accumulate_kronecker(h: torch.Tensor, logits: torch.Tensor, out_curv: torch.Tensor | None = None,
                         features: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Summed K-FAC factors of a batch: ``(sum_i A_i [C, C], sum_i h_i h_i^T [d+1, d+1])`` (the second None where
    not ``features``)."""
    hd = h.double()
    return _output_curvature(logits, None, out_curv).sum(0), (hd.T @ hd if features else None)


class EigenCorrectedCurvature(Curvature):
    """EK-FAC: K-FAC's eigenbasis ``qa (x) qs`` with eigenvalues ``lam [C, d+1]`` fitted to the exact curvature
    (its diagonal in that basis, the closest matrix of this form in the Frobenius norm). ``qs`` may hold only some
    of the features' eigenvectors (``[d+1, m]``, ``lam [C, m]``): the curvature on that subspace, as
    :class:`SubspaceCurvature` uses it. The eigenvectors are
    stored with the eigenvalues: decomposing the factors again after a round trip through single precision could
    rotate them within near-degenerate eigenspaces, away from the basis the eigenvalues belong to."""

    kind = "ekfac"

    def __init__(self, qa: torch.Tensor, qs: torch.Tensor, lam: torch.Tensor) -> None:
        self.qa, self.qs, self.lam = qa.double().contiguous(), qs.double().contiguous(), lam.double().clamp(min=0)

    @staticmethod
    def basis(a: torch.Tensor, s: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """K-FAC's eigenvectors ``(qa, qs)`` of the factors ``a [C, C]`` and ``s [d+1, d+1]`` (None for None: a
        large head's feature directions come from :func:`ddm.distill.head.feature_basis`)."""
        return _eigh(a)[1], (None if s is None else _eigh(s)[1])

    @staticmethod
    def accumulate(qa: torch.Tensor, qs: torch.Tensor, h: torch.Tensor, logits: torch.Tensor,
                   out_curv: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Summed ``[C, m]`` diagonal of a batch's exact curvature in the basis ``qa (x) qs`` (features ``h``,
        ``logits``): sample ``i`` adds ``diag(qa^T A_i qa) (x) (qs^T h_i)^2``, times its weight."""
        qa = qa.to(h.device, torch.float64)
        if out_curv is None:  # cross-entropy: diag(qa^T (diag(p) - p p^T) qa) = p @ qa^2 - (p @ qa)^2, O(C^2) a sample
            p = logits.softmax(-1).double()
            u = p @ qa.square() - (p @ qa).square()
        else:
            u = torch.einsum("nce,ck,ek->nk", out_curv.double(), qa, qa)
        if weights is not None:
            u = u * weights.double()[:, None]
        t = (h.float() @ qs.to(h.device, torch.float32)).double().square()
        return (u.T @ t).clamp(min=0)

    def rotated_solve(self, v: torch.Tensor, damping: float, single: bool = False) -> torch.Tensor:
        c, d = len(self.qa), len(self.qs)
        dt = torch.float32 if single else torch.float64
        m = self.qa.to(dt).T @ v.to(dt).reshape(-1, c, d) @ self.qs.to(dt)
        return (m / (self.lam + damping).to(dt)).reshape(len(v), -1)

    def solve(self, v: torch.Tensor, damping: float, single: bool = False) -> torch.Tensor:
        c, d = len(self.qa), len(self.qs)
        dt = torch.float32 if single else torch.float64
        m = self.rotated_solve(v, damping, single).reshape(len(v), c, self.qs.shape[1])
        return (self.qa.to(dt) @ m @ self.qs.to(dt).T).reshape(len(v), c * d)

    def shifts(self, coords: torch.Tensor, h: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        return _eigenbasis_shifts(self.qa, self.qs, coords, h)

    def top_eigenvalue(self) -> float:
        return float(self.lam.max()) if self.lam.numel() else 0.0

    def mean_eigenvalue(self) -> float:
        return float(self.lam.double().mean()) if self.lam.numel() else 0.0

    def whitener(self, damping: float) -> Callable[[torch.Tensor], torch.Tensor]:
        qa32, qs32 = self.qa.float(), self.qs.float()
        scale = (1.0 / (self.lam + damping)).float()
        c, d = len(self.qa), len(self.qs)
        return lambda v: ((qa32.T @ v.float().reshape(-1, c, d) @ qs32) * scale).reshape(len(v), scale.numel())

    def factored_whitener(self, damping: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        qa32, qs32 = self.qa.float(), self.qs.float()
        scale = (1.0 / (self.lam + damping)).float()
        # qa^T (sum_i delta_i h_i^T) qs = sum_i (qa^T delta_i) (qs^T h_i)^T
        return lambda delta, h: (torch.bmm((delta.float() @ qa32).transpose(1, 2), h.float() @ qs32)
                                 * scale).flatten(1)

    def minus(self, h: torch.Tensor, logits: torch.Tensor, weights: torch.Tensor, n: int,
              out_curv: torch.Tensor | None = None) -> Curvature:
        """The kept data's curvature (normalised by ``n``, as :meth:`ExactCurvature.minus`) in the same basis: the
        removed samples' contributions to the eigenvalues subtracted."""
        removed = self.accumulate(self.qa, self.qs, h, logits, out_curv, weights).to(self.lam.device)
        return EigenCorrectedCurvature(self.qa, self.qs, self.lam - removed / n)

    def to(self, device: torch.device | str) -> EigenCorrectedCurvature:
        if self.lam.device == torch.device(device):
            return self
        return EigenCorrectedCurvature(self.qa.to(device), self.qs.to(device), self.lam.to(device))

    def to_tensors(self, as_eig: bool = False) -> dict[str, torch.Tensor]:
        return {"ekfac_qa": self.qa.float(), "ekfac_qs": self.qs.float(), "ekfac_lambda": self.lam.float()}


class SubspaceCurvature(Curvature):
    """Exact on the head's parameters over the top feature directions ``u [d+1, r]`` (coordinates ``W u``,
    ``C r`` of them, curvature ``exact``), eigenvalue-corrected K-FAC on the orthogonal rest (``rest``, whose ``qs``
    spans the other ``d+1-r`` directions); the cross terms between the two subspaces are left out. A trained
    network's features concentrate on few directions (the top 32 of 65-145 held 97.3-99.9% of their second moment on
    three report configurations), which is where the damped inverse differs from the damping alone."""

    kind = "subspace"

    def __init__(self, u: torch.Tensor, exact: ExactCurvature, rest: EigenCorrectedCurvature) -> None:
        self.u, self.exact, self.rest = u.double().contiguous(), exact, rest

    @staticmethod
    def features(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """A batch's features ``h`` on the directions ``u``: an :class:`ExactSum` over them (``C`` by ``r``) sums the
        exact curvature over the coordinates ``W u``."""
        return h @ u.to(h.device, h.dtype)

    def _coords(self, v: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
        c, d = len(self.rest.qa), len(self.u)
        return (v.to(dt).reshape(-1, c, d) @ self.u.to(dt)).reshape(len(v), -1)

    def solve(self, v: torch.Tensor, damping: float, single: bool = False) -> torch.Tensor:
        dt = torch.float32 if single else torch.float64
        c, (d, r) = len(self.rest.qa), self.u.shape
        x = self.exact.solve(self._coords(v, dt), damping, single).to(dt).reshape(-1, c, r) @ self.u.to(dt).T
        return x.reshape(len(v), c * d) + self.rest.solve(v, damping, single).to(dt)

    def rotated_solve(self, v: torch.Tensor, damping: float, single: bool = False) -> torch.Tensor:
        """The exact part's solution in its eigenbasis over the coordinates ``W u`` (``u`` orthonormal), then the
        rest's in its own: the two parts are orthogonal, so norms and inner products are :meth:`solve`'s; in single
        precision, :meth:`whitener`'s rows."""
        dt = torch.float32 if single else torch.float64
        evals, evecs = self.exact.eig()
        x = (self._coords(v, dt) @ evecs.to(v.device, dt)) / (evals + damping).to(v.device, dt)
        return torch.cat([x, self.rest.rotated_solve(v, damping, single).to(dt)], dim=1)

    def shifts(self, coords: torch.Tensor, h: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        c, r = len(self.rest.qa), self.u.shape[1]
        evecs = self.exact.eig()[1].to(h.device, h.dtype)
        x = (coords[:, : c * r].to(h.dtype) @ evecs.T).reshape(len(coords), c, r)  # back to the coordinates W u
        hu = h @ self.u.to(h.device, h.dtype)  # [N, r]
        return torch.einsum("nr,kcr->knc", hu, x) + self.rest.shifts(coords[:, c * r :], h, shape)

    def top_eigenvalue(self) -> float:
        return max(self.exact.top_eigenvalue(), self.rest.top_eigenvalue())

    def mean_eigenvalue(self) -> float:
        n_exact, n_rest = len(self.exact.eig()[0]), self.rest.lam.numel()
        total = self.exact.mean_eigenvalue() * n_exact + self.rest.mean_eigenvalue() * n_rest
        return total / max(n_exact + n_rest, 1)

    def whitener(self, damping: float) -> Callable[[torch.Tensor], torch.Tensor]:
        top, rest = self.exact.whitener(damping), self.rest.whitener(damping)
        return lambda v: torch.cat([top(self._coords(v, torch.float32)), rest(v)], dim=1)

    def factored_whitener(self, damping: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        top, rest, u32 = self.exact.whitener(damping), self.rest.factored_whitener(damping), self.u.float()
        assert rest is not None
        # the coordinates W u of sum_i delta_i h_i^T: sum_i delta_i (u^T h_i)^T
        return lambda delta, h: torch.cat([top(torch.bmm(delta.float().transpose(1, 2), h.float() @ u32).flatten(1)),
                                           rest(delta, h)], dim=1)

    def minus(self, h: torch.Tensor, logits: torch.Tensor, weights: torch.Tensor, n: int,
              out_curv: torch.Tensor | None = None) -> Curvature:
        exact = self.exact.minus(h.double() @ self.u.to(h.device), logits, weights, n, out_curv)
        rest = self.rest.minus(h, logits, weights, n, out_curv)
        assert isinstance(exact, ExactCurvature) and isinstance(rest, EigenCorrectedCurvature)
        return SubspaceCurvature(self.u, exact, rest)

    def to(self, device: torch.device | str) -> SubspaceCurvature:
        if self.u.device == torch.device(device):
            return self
        return SubspaceCurvature(self.u.to(device), self.exact.to(device), self.rest.to(device))

    def to_tensors(self, as_eig: bool = False) -> dict[str, torch.Tensor]:
        out = {"sub_u": self.u.float()}
        out.update({f"sub_exact.{k}": v for k, v in self.exact.to_tensors(as_eig=True).items()})
        out.update({f"sub_rest.{k}": v for k, v in self.rest.to_tensors().items()})
        return out


def describe(curv: Curvature) -> dict[str, object]:
    """What a stored curvature is, for the synset stage's record and ``ddm info``: its kind, the head's parameter
    count and, for the subspace, how many of the features' directions it holds exactly."""
    if isinstance(curv, SubspaceCurvature):
        out: dict[str, object] = {"kind": curv.kind, "parameters": len(curv.rest.qa) * len(curv.u),
                                  "exact_directions": curv.u.shape[1], "features": len(curv.u)}
        held = curv.u.shape[1] + curv.rest.qs.shape[1]
        return out | ({"feature_directions": held} if held < len(curv.u) else {})
    if isinstance(curv, EigenCorrectedCurvature | KroneckerCurvature):
        c = len(curv.qa) if isinstance(curv, EigenCorrectedCurvature) else len(curv.a)
        d = len(curv.qs) if isinstance(curv, EigenCorrectedCurvature) else len(curv.s)
        held = curv.qs.shape[1] if isinstance(curv, EigenCorrectedCurvature) else d
        return {"kind": curv.kind, "parameters": c * d} | ({"features": d, "feature_directions": held}
                                                           if held < d else {})
    if isinstance(curv, ExactCurvature):
        return {"kind": curv.kind, "parameters": len(curv.eig()[0]) if curv._hessian is None else len(curv.hessian)}
    return {"kind": curv.kind}
