"""Weighted least squares for the attribution matrix (the paper's Eq. 8), scikit-learn style."""

from __future__ import annotations

import torch

from ddm.exceptions import ConfigError
from ddm.progress import progress

#: entries of the design matrix ``[P, K + 1]`` above which the fit accumulates the normal equations over chunks of
#: perturbations instead of forming it in float64 (5e7 entries: 400 MB; the default's 10 K perturbations reach it
#: at K of about 2,200). Half the time of the QR solve and memory ``(K + 1)^2`` instead of ``3 P (K + 1)`` floats:
#: per-sample groups (K = N) of 10,000 samples need 0.8 GB where the QR solve's arrays took 16 GB.
GRAM_ABOVE = 50_000_000


def _least_squares(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """The minimum-norm least-squares solution of ``A X = B`` (NaN for non-finite input: the caller reports it)."""
    if not (bool(torch.isfinite(A).all()) and bool(torch.isfinite(B).all())):
        # LAPACK refuses non-finite input with an internal error
        return torch.full((A.shape[1], B.shape[1]), float("nan"), dtype=A.dtype)
    if A.device.type == "cpu" and len(A) >= A.shape[1]:
        # LAPACK's gelsy (QR with column pivoting) at a third of pinv's cost (10,000 x 1,001: 0.85 s against
        # 2.7 s), used only at full column rank, where the solution is unique: on rank-deficient systems it did not
        # return pinv's minimum-norm solution, not even repeatably
        fit = torch.linalg.lstsq(A, B, driver="gelsy")
        if int(fit.rank) == A.shape[1]:
            return fit.solution
    return torch.linalg.pinv(A) @ B  # the minimum-norm solution when rank deficient


def _normal_equations(X: torch.Tensor, Y: torch.Tensor, w: torch.Tensor, ridge: float,
                      chunk_entries: int = 2 ** 22) -> torch.Tensor:
    """``[K+1, D]``: the weighted least-squares solution (intercept last) from ``X^T W X`` and ``X^T W Y``
    accumulated over chunks of rows in float64; Cholesky where the system is well posed (random keep-masks with
    ``P >= K + 1`` are well conditioned), else the minimum-norm solution (the pseudo-inverse of ``X^T W X`` gives the
    same solution as that of ``X``)."""
    P, K = X.shape
    G = torch.zeros(K + 1, K + 1, dtype=torch.float64)
    R = torch.zeros(K + 1, Y.shape[1], dtype=torch.float64)
    step = max(1, chunk_entries // (K + 1))
    for s in progress(range(0, P, step), "least squares", total=-(-P // step)):
        a = torch.cat([X[s:s + step].double(), torch.ones(len(X[s:s + step]), 1, dtype=torch.float64)], 1)
        aw = a * w[s:s + step, None]
        G += aw.T @ a
        R += aw.T @ Y[s:s + step].double()
    if not (bool(torch.isfinite(G).all()) and bool(torch.isfinite(R).all())):
        return torch.full((K + 1, Y.shape[1]), float("nan"), dtype=torch.float64)
    if ridge > 0:
        G[range(K), range(K)] += ridge
    L, info = torch.linalg.cholesky_ex(G)
    d = L.diagonal()
    if int(info) == 0 and float(d.min()) > 1e-6 * float(d.max()):
        return torch.cholesky_solve(R, L)
    return torch.linalg.pinv(G, hermitian=True) @ R


class WeightedLeastSquares:
    """Fit ``Y ~ X W^T + b`` minimising ``sum_p beta_p ||Y_p - X_p W^T - b||^2 + ridge ||W||^2``.

    ``X``: masks ``[P, K]``; ``Y``: outputs ``[P, D]``; ``sample_weight``: beta ``[P]``.
    After :meth:`fit`: ``coef_ [D, K]`` and ``intercept_ [D]``. The intercept is not penalised.
    With ``ridge=0`` and fewer than K+1 distinct perturbations the minimum-norm solution is returned.
    """

    def __init__(self, ridge: float = 0.0, gram_above: int = GRAM_ABOVE) -> None:
        self.ridge = ridge
        self.gram_above = gram_above

    def fit(self, X: torch.Tensor, Y: torch.Tensor, sample_weight: torch.Tensor | None = None) -> WeightedLeastSquares:
        if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
            raise ConfigError(f"X must be [P, K] and Y [P, D] with the same P; got {tuple(X.shape)}, {tuple(Y.shape)}")
        P, K = X.shape
        w = torch.ones(P, dtype=torch.float64) if sample_weight is None else sample_weight.double()
        if (w < 0).any():
            raise ConfigError("sample weights must be non-negative")
        if P * (K + 1) > self.gram_above:  # large K: never the [P, K + 1] float64 matrix (GRAM_ABOVE)
            sol = _normal_equations(X, Y, w, self.ridge)
            self.coef_ = sol[:K].T.float()
            self.intercept_ = sol[K].float()
            return self
        X = X.double()
        Y = Y.double()
        A = torch.cat([X, torch.ones(P, 1, dtype=torch.float64)], 1) * w.sqrt().unsqueeze(1)
        B = Y * w.sqrt().unsqueeze(1)
        if self.ridge > 0:
            reg = torch.zeros(K, K + 1, dtype=torch.float64)
            reg[:, :K] = torch.eye(K, dtype=torch.float64) * self.ridge**0.5
            A = torch.cat([A, reg])
            B = torch.cat([B, torch.zeros(K, Y.shape[1], dtype=torch.float64)])
        sol = _least_squares(A, B)  # [K+1, D]
        self.coef_ = sol[:K].T.float()
        self.intercept_ = sol[K].float()
        return self

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        return X.float() @ self.coef_.T + self.intercept_
