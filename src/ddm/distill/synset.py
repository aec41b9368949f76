"""The distilled synset: ``ipc`` synthetic images per group, with their (hard or learned) labels."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

from ddm.distill.curvature import Curvature
from ddm.distill.scope import LowRankInverse


@dataclass
class CheckpointCurvature:
    """The last layer's curvature at an earlier checkpoint of the trajectory (``index``, taken at ``epoch``)
    and the absolute damping for it: what the Newton emulation needs to average its step over checkpoints."""

    index: int
    epoch: float
    curvature: Curvature
    damping: float
    cosine_mean: float = float("nan")  # how the synsets' steps transfer there (ddm.distill.head; nan: not measured)
    cosine_min: float = float("nan")


@dataclass
class Synset:
    """Synthetic images for K groups.

    ``images``: ``[K, ipc, C, H, W]``; ``labels``: ``[K, ipc]`` hard classes;
    ``label_logits``: ``[K, ipc, classes]`` when labels are learned (soft targets = their softmax),
    else None. ``free_targets``: ``[K, ipc, classes]`` when labels are free (any real vector, used as is:
    the loss ``-sum_c t_c log p_c`` can then take any scale and sign), else None. ``losses``: the
    matching loss at every distillation step.

    Head-matched synsets (:mod:`ddm.distill.head`) also carry ``weights`` ``[K, ipc]`` (each image's loss
    weight, in training samples), ``curvature`` (of the mean training loss w.r.t. the last layer at
    theta_tau, :mod:`ddm.distill.curvature`), ``damping`` (the absolute lambda added to it) and ``num_train`` (N),
    and ``checkpoints``: the same curvature at earlier checkpoints (``distill.checkpoints``), over which the
    Newton emulation averages its step.
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    label_logits: torch.Tensor | None = None
    losses: torch.Tensor | None = None
    free_targets: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    curvature: Curvature | None = None
    damping: torch.Tensor | None = None
    num_train: torch.Tensor | None = None
    checkpoints: list[CheckpointCurvature] = field(default_factory=list)
    # block-matched synsets (ddm.distill.block): the damped inverse of the Gauss-Newton matrix over the last block
    # and the head at theta_tau, then at each of ``checkpoints``; empty for head-matched ones
    block: list[LowRankInverse] = field(default_factory=list)
    # [K, 3] for block-matched synsets: each group's block-step cosine with its real one at theta_tau, the relative
    # error, and the step's norm (ddm.health reads them in place of the last-layer step's)
    block_quality: torch.Tensor | None = None
    # head-matched synsets (distill.unlearn_rank): each group's own last-layer curvature at theta_tau, over the exact
    # curvature's coordinates (the head's parameters, or a subspace curvature's exact block), as its top eigenpairs:
    # ``(values [K, m], vectors [K, m, D'])``; unlearning subtracts these instead of the synset images' curvature
    group_curvature: tuple[torch.Tensor, torch.Tensor] | None = None
    # head matching's distill.retry: {group: (relative error before, best of the second matching)} of the groups
    # matched again; set when distilled, never stored (the synset stage's stage.json keeps it)
    retried: dict[int, tuple[float, float]] = field(default_factory=dict, repr=False, compare=False)
    grown: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    # head matching: the mean relative matching error at theta_tau of the images kept (each group's best step with
    # distill.keep_best, which the last step's loss in ``losses`` need not be); set when distilled, never stored
    error: float | None = field(default=None, repr=False, compare=False)
    # the training loss (ddm.task.Task) the head statistics used; set at run time, never stored (None = CE)
    task: Any = field(default=None, repr=False, compare=False)
    # the groups' own summed last-layer gradients ``[K, D]``, by site: ``tau`` (theta_tau) and ``checkpoint<index>``
    # (each of ``checkpoints``, by trajectory index). Set only on the copy the attribution uses with
    # emulate.gradients=groups (the Newton step then reads them in place of the synthetic images'); stored in a file
    # of their own beside the synset (GRADIENTS_FILE), never in it: the synset is what may be released, a group's
    # summed gradient is not
    group_gradients: dict[str, torch.Tensor] | None = field(default=None, repr=False, compare=False)

    def transferring(self, min_transfer: float) -> Synset:
        """This synset without the checkpoints (and their block curvatures) where its steps' measured mean cosine
        with the real removal steps is below ``min_transfer``; unmeasured ones are kept (``emulate.min_transfer``)."""
        keep = [j for j, c in enumerate(self.checkpoints) if not c.cosine_mean < min_transfer]
        if len(keep) == len(self.checkpoints):
            return self
        block = [self.block[0]] + [self.block[1 + j] for j in keep] if self.block else []
        return replace(self, checkpoints=[self.checkpoints[j] for j in keep], block=block)

    def damped(self, scale: float) -> Synset:
        """This synset with its dampings (at theta_tau and at every checkpoint) times ``scale``
        (``emulate.damping_scale``); itself at 1."""
        if scale == 1 or self.damping is None:
            return self
        return replace(self, damping=self.damping * scale,
                       checkpoints=[replace(c, damping=c.damping * scale) for c in self.checkpoints])

    @property
    def kind(self) -> str:
        """``head`` for head-matched synsets (emulated by a Newton step), else ``finetune``."""
        return "head" if self.curvature is not None else "finetune"

    def image_weights(self) -> torch.Tensor:
        """Loss weight of every image ``[K, ipc]`` (1 where the synset has none)."""
        return self.weights if self.weights is not None else torch.ones(self.images.shape[:2])

    @property
    def num_groups(self) -> int:
        return self.images.shape[0]

    @property
    def ipc(self) -> int:
        return self.images.shape[1]

    def targets(self) -> torch.Tensor:
        """Targets ``[K, ipc, classes]``: one-hot (hard), softmax of the logits (learned) or free vectors."""
        if self.free_targets is not None:
            return self.free_targets
        if self.label_logits is not None:
            return self.label_logits.softmax(-1)
        return F.one_hot(self.labels, self.num_classes).float()

    def flat(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images ``[K*ipc, C, H, W]``, targets ``[K*ipc, classes]``, group of each image ``[K*ipc]``)."""
        k, ipc = self.images.shape[:2]
        group = torch.arange(k).repeat_interleave(ipc)
        return self.images.reshape(k * ipc, *self.images.shape[2:]), self.targets().reshape(k * ipc, -1), group

    def to_tensors(self) -> dict[str, torch.Tensor]:
        out = {"images": self.images, "labels": self.labels}
        if self.label_logits is not None:
            out["label_logits"] = self.label_logits
        if self.free_targets is not None:
            out["free_targets"] = self.free_targets
        for name in ("losses", "weights", "damping", "num_train"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        # an exact curvature is stored as its eigendecomposition (the same size): attribution and unlearning solve
        # with it and read its top eigenvalue, so a process that loads it needs no decomposition of its own
        if self.curvature is not None:
            out.update(self.curvature.to_tensors(as_eig=self.curvature.kind == "exact"))
        for j, c in enumerate(self.checkpoints):
            stored = c.curvature.to_tensors(as_eig=True) if c.curvature.kind == "exact" else c.curvature.to_tensors()
            out.update({f"checkpoint{j}.{k}": v for k, v in stored.items()})
            out[f"checkpoint{j}.meta"] = torch.tensor([c.index, c.epoch, c.damping, c.cosine_mean, c.cosine_min],
                                                      dtype=torch.float64)
        for j, inv in enumerate(self.block):
            out.update(inv.to_tensors(f"block{j}."))
        if self.block_quality is not None:
            out["block_quality"] = self.block_quality
        if self.group_curvature is not None:
            out["group_curvature.values"], out["group_curvature.vectors"] = self.group_curvature
        return out

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], num_classes: int) -> Synset:
        checkpoints = []
        j = 0
        while f"checkpoint{j}.meta" in t:
            pre = f"checkpoint{j}."
            curv = Curvature.from_tensors({k[len(pre):]: v for k, v in t.items() if k.startswith(pre)})
            index, epoch, damping, *cos = t[f"{pre}meta"].tolist()
            assert curv is not None
            checkpoints.append(CheckpointCurvature(int(index), float(epoch), curv, float(damping), *cos))
            j += 1
        block: list[LowRankInverse] = []
        while f"block{len(block)}.eigenvalues" in t:
            block.append(LowRankInverse.from_tensors(t, f"block{len(block)}."))
        group = ((t["group_curvature.values"], t["group_curvature.vectors"]) if "group_curvature.values" in t
                 else None)
        return cls(t["images"], t["labels"].long(), num_classes, t.get("label_logits"), t.get("losses"),
                   t.get("free_targets"), t.get("weights"), Curvature.from_tensors(t), t.get("damping"),
                   t.get("num_train"), checkpoints, block, t.get("block_quality"), group)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy ``-sum_c t_c log softmax(z)_c``: ``[..., C], [..., C] -> [...]``."""
    return -(targets * logits.log_softmax(-1)).sum(-1)
