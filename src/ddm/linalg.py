"""A symmetric eigendecomposition that does not fail where LAPACK's default solver gives up.

Torch's multithreaded CPU ``eigh`` (the divide-and-conquer driver) has failed to converge on well-formed symmetric
matrices with many repeated eigenvalues: a 330 x 330 Gram matrix of rank 10, 320 of its rows zero (one group's
last-layer curvature on a Fashion-MNIST MLP), failed on two threads every time and decomposed on one. SciPy's
relatively robust driver (``evr``) decomposes it; so :func:`eigh` retries there.
"""

from __future__ import annotations

import torch


def eigh(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.eigh(m)`` (ascending eigenvalues, eigenvectors in columns; ``m`` may be a batch ``[..., n, n]``);
    where it fails to converge on a CPU matrix, SciPy's ``evr`` driver, one matrix at a time. Non-finite input, or a
    failure of both, raises ``torch.linalg.LinAlgError``."""
    try:
        return torch.linalg.eigh(m)
    except torch.linalg.LinAlgError:
        if m.device.type != "cpu":
            raise
        return scipy_eigh(m, "evr")


def scipy_eigh(m: torch.Tensor, driver: str) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`eigh` by SciPy's LAPACK ``driver`` (``evd``, ``evr``, ...): a CPU matrix or a batch, in its dtype."""
    import scipy.linalg

    flat = m.reshape(-1, *m.shape[-2:]).numpy()
    values, vectors = [], []
    for a in flat:
        try:
            w, v = scipy.linalg.eigh(a, driver=driver)
        except (scipy.linalg.LinAlgError, ValueError) as e:  # ValueError: non-finite input
            raise torch.linalg.LinAlgError(str(e)) from e
        values.append(torch.from_numpy(w))
        vectors.append(torch.from_numpy(v))
    shape = m.shape[:-2]
    return (torch.stack(values).to(m.dtype).reshape(*shape, m.shape[-1]),
            torch.stack(vectors).to(m.dtype).reshape(m.shape))
