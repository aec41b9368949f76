"""The attribution matrix with named axes: ``weights[target, group, output]``.

Sign: ``output(p) ~ weights . p + bias`` with ``p_k = 1`` for a kept group, so removing group k
changes the output by ``removal_effect = -weights`` (see :mod:`ddm.objectives.base`).
``scores[target, group]`` ranks groups for the objective (higher first); ``evaluated`` marks the
groups a hierarchical attribution actually refined (others have weight 0 and are never ranked).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ddm.cluster.groups import Groups
from ddm.exceptions import require
from ddm.workspace import load_json, load_tensors, save_json, save_tensors

AXES = ("target", "group", "output")


@dataclass
class GroupInfluence:
    group: int
    label: int
    size: int
    score: float
    members: list[int]
    flagged: bool = False  # the group's synset failed a health check (see ddm.health)
    classes: int = 1  # classes the group holds (label is the most frequent where it holds several)

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class AttributionMatrix:
    weights: torch.Tensor  # [T, K, O]
    bias: torch.Tensor  # [T, O]
    scores: torch.Tensor  # [T, K]
    objective: str
    score_meaning: str
    output_names: list[str]
    target_ids: list[int]  # id of each target in its split (a single -1 for set objectives)
    groups: Groups
    evaluated: torch.Tensor | None = None  # [T, K] bool, for hierarchical attributions
    meta: dict[str, Any] | None = None

    axes = AXES

    @property
    def removal_effect(self) -> torch.Tensor:
        """Predicted change of each output when a group is removed: ``[T, K, O]``."""
        return -self.weights

    def predict(self, keep: torch.Tensor) -> torch.Tensor:
        """Predicted outputs ``[P, T, O]`` for keep-masks ``[P, K]`` (1 = kept)."""
        return torch.einsum("pk,tko->pto", keep.float(), self.weights) + self.bias

    def ranking(self, target: int) -> torch.Tensor:
        return self.ranking_all()[target]

    def ranking_all(self) -> torch.Tensor:
        """Group indices ``[T, K]`` ordered by score for every target (unevaluated groups last)."""
        s = self.scores.clone()
        if self.evaluated is not None:
            s[~self.evaluated] = float("-inf")
        return torch.argsort(s, dim=1, descending=True, stable=True)

    def top(self, target: int = 0, k: int = 5, members: int | None = 5) -> list[GroupInfluence]:
        """The ``k`` highest-scoring groups for the ``target``-th row, with up to ``members`` sample ids
        (ids in the full training split; ``None`` lists all)."""
        sizes = self.groups.sizes()
        flagged = set((self.meta or {}).get("flagged_groups", []))
        n = k if self.evaluated is None else min(k, int(self.evaluated[target].sum()))
        out = []
        for g in self.ranking(target)[:n].tolist():
            ids = self.groups.member_ids(g).tolist()
            out.append(GroupInfluence(g, int(self.groups.labels[g]), int(sizes[g]),
                                      float(self.scores[target, g]), ids if members is None else ids[:members],
                                      g in flagged, self.groups.num_classes_of(g)))
        return out

    # ---- persistence ------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        t = {"weights": self.weights, "bias": self.bias, "scores": self.scores,
             **{f"groups/{k}": v for k, v in self.groups.to_tensors().items()}}
        if self.evaluated is not None:
            t["evaluated"] = self.evaluated
        save_tensors(folder / "attribution.safetensors", t)
        save_json(folder / "attribution.json", {
            "axes": list(AXES), "objective": self.objective, "score_meaning": self.score_meaning,
            "output_names": self.output_names, "target_ids": self.target_ids,
            "group_method": self.groups.method, "meta": self.meta or {},
        })

    @classmethod
    def load(cls, folder: str | Path) -> AttributionMatrix:
        folder = Path(folder)
        t = load_tensors(folder / "attribution.safetensors")
        m = load_json(folder / "attribution.json")
        groups = Groups.from_tensors({k[7:]: v for k, v in t.items() if k.startswith("groups/")}, m["group_method"])
        return cls(t["weights"], t["bias"], t["scores"], m["objective"], m["score_meaning"], m["output_names"],
                   m["target_ids"], groups, t.get("evaluated"), m.get("meta"))

    def to_frame(self, k: int | None = None) -> Any:
        """A pandas DataFrame, one row per (target, ranked group): ``target`` (row of this matrix),
        ``target_id`` (id in the test split; -1 for set objectives), ``rank`` (1 = highest score), ``group``,
        ``label``, ``size``, ``score``, ``removal_effect`` (of the first output), ``flagged`` and ``members``
        (ids in the training split). ``k``: only each target's top ``k`` groups. Needs pandas
        (``pip install 'ddm[frames]'``)."""
        pd = require("pandas", "frames")
        rows = []
        for t, tid in enumerate(self.target_ids):
            for r, g in enumerate(self.top(t, k=k if k is not None else self.weights.shape[1], members=None)):
                rows.append({"target": t, "target_id": tid, "rank": r + 1, "group": g.group, "label": g.label,
                             "size": g.size, "score": g.score, "removal_effect": float(-self.weights[t, g.group, 0]),
                             "flagged": g.flagged, "members": g.members})
        return pd.DataFrame(rows)  # type: ignore[attr-defined]

    def summary(self, k: int = 5, members: int = 5) -> list[dict[str, Any]]:
        """Per target: its id, its ``k`` top groups (:meth:`top`) and ``unmoved``, true where every weight is 0 (the
        objective took the same value under every perturbation, so no group moves it and the order is arbitrary)."""
        return [{"target": tid, "top": [g.to_dict() for g in self.top(i, k, members)],
                 "unmoved": bool((self.weights[i] == 0).all())}
                for i, tid in enumerate(self.target_ids)]

    def __repr__(self) -> str:
        T, K, O = self.weights.shape
        return (f"AttributionMatrix(objective={self.objective!r}, targets={T}, groups={K}, outputs={O}, "
                f"meta={json.dumps(self.meta or {}, default=str)[:80]})")
