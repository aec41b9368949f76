"""Objectives: what behaviour of the model is attributed (see :mod:`ddm.objectives.base` for signs)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from ddm.objectives.base import Objective
from ddm.objectives.classification import Functionality, macro_prf
from ddm.objectives.custom import CallableObjective
from ddm.objectives.influence import Dist1, Dist2, Dist3
from ddm.registry import Registry

OBJECTIVES: Registry[Callable[[], Objective]] = Registry("objective")
OBJECTIVES.add("dist1", Dist1)
OBJECTIVES.add("dist2", Dist2)
OBJECTIVES.add("dist3", Dist3)
for _m in ("accuracy", "precision", "recall", "f1"):
    OBJECTIVES.add(_m, partial(Functionality, _m))


def get(objective: str | Objective | Callable) -> Objective:  # type: ignore[type-arg]
    """An objective from a registered name, an instance, or a plain callable."""
    if isinstance(objective, Objective):
        return objective
    if isinstance(objective, str):
        return OBJECTIVES.get(objective)()
    if callable(objective):
        return CallableObjective(objective, getattr(objective, "__name__", "custom"))
    raise TypeError(f"objective must be a name, an Objective or a callable, got {type(objective)}")


__all__ = ["OBJECTIVES", "CallableObjective", "Dist1", "Dist2", "Dist3", "Functionality", "Objective",
           "get", "macro_prf"]
