"""Name -> factory registries for datasets, models, objectives, matchings and group splits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from ddm.exceptions import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A small mapping from names to factories, with helpful errors for unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")``."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        self.register(name)(obj)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(sorted(self._items))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def import_object(path: str, flag: str, form: str, example: str) -> object:
    """The callable an import path ``package.module:name`` (``name`` may be dotted) names, for a command-line
    ``flag`` such as ``--model``; ``form`` (e.g. ``MODULE:FACTORY``) and ``example`` are shown in the error a
    malformed one gets."""
    import importlib

    mod_name, _, attr = path.partition(":")
    if not mod_name or not attr:
        raise ConfigError(f"{flag} {path!r}: give an import path {form}, e.g. {example} (the module must be "
                          "importable: installed, or on PYTHONPATH)")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ConfigError(f"{flag} {path!r}: cannot import {mod_name!r} ({exc}); install it or add its folder "
                          "to PYTHONPATH") from None
    obj: object = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(f"{flag} {path!r}: {mod_name} has no attribute {attr!r}")
    if not callable(obj):
        raise ConfigError(f"{flag} {path!r} is not callable: name a function or a class")
    return obj
