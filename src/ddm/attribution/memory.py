"""Memory checks before an attribution: refuse, with what to change, work that would not fit in the memory available."""

from __future__ import annotations

import logging

from ddm import devices
from ddm.exceptions import ConfigError

log = logging.getLogger(__name__)

#: the linearised fit takes the targets in chunks whose group logit shifts ``[K, chunk, C]`` take about this much
LINEARISED_CHUNK_BYTES = 2 ** 28


def check_fit_memory(K: int, P: int, D: int) -> None:
    """Refuse, before any work, an attribution whose perturbation masks and least-squares fit (K groups, P
    perturbations, D outputs) would not fit in the memory available; log the estimate when it is large."""
    from ddm.attribution.regression import GRAM_ABOVE

    fit = 2 * (K + 1) ** 2 * 8 if P * (K + 1) > GRAM_ABOVE else 3 * P * (K + 1) * 8
    need = 3 * P * K + fit + 24 * P * D
    require_memory(need, f"attributing over K = {K:,} groups with {P:,} perturbations and {D:,} outputs",
                    "use fewer, larger groups (cluster.per_class or cluster.num_groups), fewer targets per call, or "
                    "fewer perturbations (emulate.num_perturbations, at least K)")
    if need > 2 ** 30:
        log.info("the attribution's perturbations and least-squares fit take about %.1f GiB (K = %d groups, %d "
                 "perturbations, %d outputs)", need / 2 ** 30, K, P, D)
    if P * K * K > 10 ** 12:  # about 10^10 multiply-adds a second per CPU core
        log.warning("the least-squares fit over K = %d groups and %d perturbations takes about %.0e multiply-adds "
                    "(minutes to hours on a CPU); per-target objectives (dist1/2/3) are fitted linearised instead "
                    "(emulate.fit); fewer perturbations (emulate.num_perturbations, at least K) or fewer, larger "
                    "groups make this one faster", K, P, float(P * K * K))


def check_linearised_memory(K: int, T: int, O: int) -> None:
    """Refuse a linearised attribution whose result (``[T, K, O]`` weights and scores) would not fit in memory."""
    require_memory(3 * 4 * T * K * O + 3 * LINEARISED_CHUNK_BYTES,
                    f"the attribution of {T:,} targets over K = {K:,} groups ({O} output(s) each)",
                    "attribute fewer targets per call, or use fewer, larger groups (cluster.per_class or "
                    "cluster.num_groups)")


def require_memory(need: int, what: str, advice: str) -> None:
    """A ConfigError, before any work, when ``need`` bytes exceed the memory available (unknown: no check)."""
    free = devices.available_memory()
    if free is not None and need > free:
        raise ConfigError(f"{what} needs about {need / 2 ** 30:.1f} GiB of memory and {free / 2 ** 30:.1f} GiB is "
                          f"available: {advice}")
