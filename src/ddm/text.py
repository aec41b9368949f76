"""How numbers read in what ddm prints and renders."""

from __future__ import annotations


def signed(x: float) -> str:
    """A score with its sign, to four decimals, or in powers of ten where those would read +0.0000 or overflow (a model
    that fits its data almost exactly moves its losses by 1e-7 when a group goes)."""
    return f"{x:+.4f}" if x == 0 or 1e-3 <= abs(x) < 1e5 else f"{x:+.3e}"


def beside(x: float, threshold: float, decimals: int = 2) -> str:
    """``x`` with its sign to ``decimals`` places, or to as many more (up to 6) as it takes not to read as the
    ``threshold`` it is compared with: 0.7996 beside 0.8 reads +0.7996, not +0.80."""
    for d in range(decimals, 7):
        if round(x, d) != round(threshold, d):
            return f"{x:+.{d}f}"
    return f"{x:+.6f}"


def seconds(x: float) -> str:
    """A duration in seconds to two significant figures below 10 s (0.65, 1.3), whole seconds above (25, 250)."""
    return f"{x:.2g}" if x < 10 else f"{x:.0f}"
