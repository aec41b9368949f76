"""ddm: training-data attribution with Distilled Datamodels.

Quickstart::

    import ddm
    data = ddm.data.load("digits")
    cfg = ddm.presets.demo(data)
    dm = ddm.DistilledDatamodel("runs/digits", cfg)
    dm.fit(ddm.models.build(cfg.model, data), data.train)
    attr = dm.attribute(data.test[:20], objective="dist2")
    print(attr.top(0, k=5))

Submodules and the names below are imported on first use, so ``ddm --help`` does not load torch.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = ("attribution", "cluster", "data", "distill", "emulate", "exceptions", "health", "models",
               "objectives", "presets", "train")
_NAMES = {"AttributionMatrix": "ddm.attribution", "DistilledDatamodel": "ddm.pipeline", "RunConfig": "ddm.config",
          "Trajectory": "ddm.train", "TrajectoryRecorder": "ddm.train", "Task": "ddm.task", "Loss": "ddm.task",
          "CrossEntropy": "ddm.task"}

__all__ = ["AttributionMatrix", "CrossEntropy", "DistilledDatamodel", "Loss", "RunConfig", "Task", "Trajectory",
           "TrajectoryRecorder",
           *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    if not name.startswith("_") and importlib.util.find_spec(f"ddm.{name}") is not None:
        return importlib.import_module(f"ddm.{name}")
    raise AttributeError(f"module 'ddm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
