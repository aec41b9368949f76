"""Any user callable as an objective."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ddm.exceptions import ConfigError
from ddm.objectives.base import Objective


class CallableObjective(Objective):
    """Wrap ``fn(logits [N, C], labels [N]) -> [N, O] (per target) or [O] (whole set)``.

    ``score``: ``norm`` ranks by ||effect||_2, ``increase`` by the effect on the first output,
    ``decrease`` by minus that effect.
    """

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], name: str = "custom",
                 per_target: bool = True, score: str = "norm") -> None:
        if score not in ("norm", "increase", "decrease"):
            raise ConfigError("score must be norm, increase or decrease")
        self.fn, self.name, self.per_target, self._score = fn, name, per_target, score
        self.score_meaning = {"norm": "L2 change of the outputs when the group is removed",
                              "increase": "increase of the output when the group is removed",
                              "decrease": "decrease of the output when the group is removed"}[score]

    def outputs(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        rows = []
        for lg in logits:
            out = torch.as_tensor(self.fn(lg, labels), dtype=torch.float32)
            if self.per_target:
                if out.ndim == 1:
                    out = out.unsqueeze(-1)
                if out.ndim != 2 or out.shape[0] != lg.shape[0]:
                    raise ConfigError(f"objective {self.name!r} must return [N, O] or [N], got {tuple(out.shape)}")
            else:
                out = out.reshape(1, -1)
            rows.append(out)
        return torch.stack(rows)

    def score(self, effect: torch.Tensor) -> torch.Tensor:
        if self._score == "norm":
            return effect.norm(dim=-1)
        return effect[..., 0] if self._score == "increase" else -effect[..., 0]
