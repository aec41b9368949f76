"""Errors ddm raises for things a user can get wrong. Each message says what to do."""

from __future__ import annotations


class DDMError(Exception):
    """Base class of every error ddm raises on purpose."""


class ConfigError(DDMError, ValueError):
    """A configuration value is out of range or of the wrong type."""


class ConfigMismatchError(DDMError):
    """A workspace already holds a stage computed with another configuration."""


class MissingArtifactError(DDMError, FileNotFoundError):
    """A stage needs an artifact that the workspace does not hold yet."""


class MissingDependencyError(DDMError, ImportError):
    """An optional dependency is not installed."""


class NumericalError(DDMError, ArithmeticError):
    """A stage produced non-finite or exploding values; nothing was saved over earlier results."""


class CorruptArtifactError(DDMError):
    """A stored file is truncated, damaged or not what its name says."""


class DataError(DDMError, ValueError):
    """Data files are missing or malformed."""


def require(module: str, extra: str) -> object:
    """Import an optional dependency or raise an error naming the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised through monkeypatching in tests
        raise MissingDependencyError(
            f"{module} is needed for this feature but is not installed. "
            f"Install it with: pip install 'ddm[{extra}]'"
        ) from exc
