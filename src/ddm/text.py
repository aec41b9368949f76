"""How numbers read in what ddm prints and renders."""

from __future__ import annotations


def signed(x: float) -> str:
    """A score with its sign, to four decimals, or in powers of ten where those would read +0.0000 or overflow (a model
    that fits its data almost exactly moves its losses by 1e-7 when a group goes)."""
    return f"{x:+.4f}" if x == 0 or 1e-3 <= abs(x) < 1e5 else f"{x:+.3e}"
