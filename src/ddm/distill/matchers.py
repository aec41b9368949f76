"""The matchers that learn a synset, registered by name (``distill.matching``) with one signature.

``head`` (:mod:`ddm.distill.head`, the default) matches each group's last-layer gradient for the Newton
emulation; ``block`` (:mod:`ddm.distill.block`) then matches again over the last block and the head;
``reverse`` (the paper), ``match`` (DDM-match) and ``local`` (:mod:`ddm.distill.matching`) match
gradients along the trajectory for the fine-tuning emulations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ddm.cluster.groups import Groups
from ddm.config import DistillConfig
from ddm.data.dataset import Split
from ddm.distill.head import HeadStatistics, distill_head
from ddm.distill.matching import distill
from ddm.distill.synset import Synset
from ddm.registry import Registry
from ddm.train.trajectory import Trajectory


@dataclass
class Matching:
    model: nn.Module
    trajectory: Trajectory
    train: Split
    groups: Groups
    cfg: DistillConfig
    num_classes: int
    folder: Path | None = None  # checkpoints, so a killed run resumes
    train_batch: int = 256  # the target's batch size (local matching's displacement scale)
    weight_decay: float = 0.0  # the target's weight decay (curvature the loss lacks; head matching)
    task: Any = None  # the training loss (ddm.task.Task; head matching); None = cross-entropy
    # filled by the head matcher: the last layer's statistics it computed, by trajectory index (the health check
    # reuses them instead of streaming the training set again)
    statistics: dict[int, HeadStatistics] = field(default_factory=dict)
    # head matching: False leaves the groups' own curvature (distill.unlearn_rank) to the caller, which computes it
    # for the synsets it keeps (ddm.distill.head.add_group_curvature; the synset stage, which may distil twice)
    group_curvature: bool = True


Matcher = Callable[[Matching], Synset]
MATCHERS: Registry[Matcher] = Registry("matching")


@MATCHERS.register("head")
def _head(m: Matching) -> Synset:
    return distill_head(m.model, m.trajectory, m.train, m.groups, m.cfg, m.num_classes, m.folder, m.weight_decay,
                        m.task, m.statistics, m.group_curvature)


@MATCHERS.register("block")
def _block(m: Matching) -> Synset:
    """Head matching, then the synsets matched again over the last block and the head (ddm.distill.block)."""
    from ddm.distill.block import distill_block

    head = distill_head(m.model, m.trajectory, m.train, m.groups, m.cfg, m.num_classes, m.folder, m.weight_decay,
                        m.task, m.statistics)
    return distill_block(m.model, m.trajectory, m.train, m.groups, m.cfg, head, m.weight_decay)


def _trajectory_matcher(m: Matching) -> Synset:
    return distill(m.model, m.trajectory, m.train, m.groups, m.cfg, m.num_classes, m.folder, m.train_batch)


for _name in ("reverse", "match", "local"):
    MATCHERS.add(_name, _trajectory_matcher)
