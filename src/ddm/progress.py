"""One progress-bar wrapper for every long loop; the CLI (or a user) can silence it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_ENABLED = True


def set_enabled(enabled: bool) -> None:
    """Turn every ddm progress bar on or off."""
    global _ENABLED
    _ENABLED = enabled


def enabled() -> bool:
    return _ENABLED


def progress(iterable: Iterable[T], desc: str, total: int | None = None, **kwargs: Any) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar unless progress bars are disabled."""
    return iter(tqdm(iterable, desc=desc, total=total, disable=not _ENABLED, leave=False, **kwargs))


def bar(total: int, desc: str, initial: int = 0) -> tqdm:
    """A manual bar (``update``/``set_postfix``) that respects :func:`set_enabled`."""
    return tqdm(total=total, desc=desc, initial=initial, disable=not _ENABLED, leave=False)
