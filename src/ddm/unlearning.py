"""Unlearning from the synsets: the step (:func:`unlearn_groups`), the rewind along the trajectory (:func:`rewind`),
and the rules for classes that lose their data (:func:`forget_classes`, :func:`shift_priors`); the Table 4 check."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from ddm.cluster.groups import Groups
from ddm.data.dataset import Split
from ddm.distill.head import Head
from ddm.distill.synset import Synset
from ddm.emulate.finetune import finetune_reference
from ddm.exceptions import ConfigError
from ddm.models import with_params
from ddm.train.loop import accuracy
from ddm.train.trajectory import Trajectory

log = logging.getLogger(__name__)


def unlearn_groups(model: nn.Module, params: dict[str, torch.Tensor], synset: Synset, groups: torch.Tensor,
                   lr: float, steps: int, reduction: str = "sum", method: str = "auto",
                   damping: float | None = None, curvature_damping: float = 0.0,
                   decay: torch.Tensor | None = None, group_curvature: bool = False) -> nn.Module:
    """A copy of ``model`` at ``params`` without ``groups`` (indices): the kept data's Newton step on the
    last layer for head-matched synsets (``method`` auto or newton; ``damping`` its absolute lambda, default
    the synset's; ``decay`` ``[K]`` the groups' shares of the weight decay), else fine-tuning on their synsets."""
    if method == "newton" or (method == "auto" and synset.kind == "head"):
        from ddm.emulate.newton import newton_keep_params

        return with_params(model, newton_keep_params(model, params, synset, groups, damping, curvature_damping,
                                                     decay, group_curvature))
    deleted = torch.zeros(synset.num_groups, dtype=torch.bool)
    deleted[groups] = True
    return with_params(model, finetune_reference(model, params, synset, deleted, lr, steps, reduction))


def table4(model: nn.Module, trajectory_first: dict[str, torch.Tensor], trajectory_final: dict[str, torch.Tensor],
           synset: Synset, test: Split, lr: float, steps: int, reduction: str = "sum") -> dict[str, float]:
    """The paper's Table 4 check: accuracy of theta_0, of theta_tau, and of theta_tau fine-tuned on the
    whole synset (which should fall towards theta_0's accuracy if the synset unlearns the data)."""
    acc0 = accuracy(with_params(model, trajectory_first), test)
    acc_tau = accuracy(with_params(model, trajectory_final), test)
    everything = torch.arange(synset.num_groups)
    acc_unlearn = accuracy(unlearn_groups(model, trajectory_final, synset, everything, lr, steps, reduction), test)
    return {"acc_theta0": acc0, "acc_theta_tau": acc_tau, "acc_after_whole_synset": acc_unlearn,
            "chance": 0.0 if synset.num_classes == 0 else 1.0 / synset.num_classes}


#: the logit a class without training data gets after unlearning: never the argmax, softmax weight 0
FORGOTTEN_LOGIT = -1e4


def forget_classes(model: nn.Module, classes: list[int]) -> None:
    """Make ``model`` (in place) never predict ``classes``: their row of the last Linear layer is zeroed and
    their bias set to :data:`FORGOTTEN_LOGIT`."""
    try:
        lin = Head.of(model).linear
    except ConfigError:
        log.warning("classes %s have no training data left, but the model has no final Linear layer to remove "
                    "them from; they stay predictable", classes)
        return
    with torch.no_grad():
        lin.weight[classes] = 0.0
        if lin.bias is not None:
            lin.bias[classes] = FORGOTTEN_LOGIT
        else:
            log.warning("classes %s have no training data left, but the last layer has no bias: their logit is "
                        "set to 0, which other classes' logits may not exceed", classes)


def shift_priors(model: nn.Module, groups: Groups, removed: torch.Tensor, scale: float) -> None:
    """Add ``scale * log(kept / all)`` of each class's training samples to its bias (in place): the prior shift a
    calibrated classifier sees when a class keeps a fraction of its data (``emulate.unlearn_prior_shift``). Classes
    with nothing kept are left to :func:`forget_classes`."""
    total, kept = (t.double() for t in groups.class_sizes(removed))
    shift = torch.zeros_like(total)
    ok = (kept > 0) & (total > 0)
    shift[ok] = scale * torch.log(kept[ok] / total[ok])
    lin = Head.of(model).linear
    if lin.bias is None or len(shift) > len(lin.bias):
        log.warning("emulate.unlearn_prior_shift needs a last layer with a bias for every class; none is shifted")
        return
    with torch.no_grad():
        lin.bias[: len(shift)] += shift.to(lin.bias.dtype).to(lin.bias.device)


def removed_fraction(sizes: torch.Tensor, removed: torch.Tensor) -> float:
    """The share of the training samples that the ``removed`` groups (of group ``sizes``) hold: a retrain without
    them takes that share fewer optimizer steps."""
    sizes = sizes.double()
    return float(sizes[removed].sum() / sizes.sum())


def rewind(model: nn.Module, trajectory: Trajectory | None, sizes: torch.Tensor, removed: torch.Tensor,
           scale: float, warn: bool = True, to: str = "interpolate") -> dict[str, Any] | None:
    """Move the unlearned ``model`` (in place) back along the recorded ``trajectory`` by the steps its retraining
    would not take (``emulate.unlearn_rewind``, ``scale`` s): exact retraining keeps the number of epochs, so without
    a fraction f of the data (``removed`` groups of ``sizes``) it takes f fewer optimizer steps; the Newton step is
    added to the parameters at epoch tau (1 - s f): interpolated between the recorded checkpoints around it
    (``to="interpolate"``), or the recorded checkpoint nearest it (``to="checkpoint"``; theta_tau itself, so no move,
    where that is the nearest). Returns what was done (stored in unlearn.json), or None.
    ``warn``: say when no recorded checkpoint serves (once per unlearning, not at each of its back-off steps)."""
    if scale == 0 or trajectory is None:
        return None
    f = removed_fraction(sizes, removed)
    last = float(trajectory.epochs[-1])
    epoch = last * (1 - scale * f)
    if to == "checkpoint":  # the nearest recorded checkpoint (ties: the later one); theta_0 serves as none below
        epoch = float(min(trajectory.epochs, key=lambda e: (abs(float(e) - epoch), -float(e))))
    base = trajectory.at_epoch(epoch)
    if base is None:
        if not warn:
            return None
        log.warning("unlearning: no recorded checkpoint at or after the first epoch around epoch %.3g, so the "
                    "model is not moved back for the retrain's shorter schedule (record more checkpoints: "
                    "train.save_every=1; or set emulate.unlearn_rewind=0 to silence this)", epoch)
        return None
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(base[name].to(p.device) - trajectory.final[name].to(p.device))
        for name, b in model.named_buffers():  # a batch norm's running statistics of that epoch, where recorded
            if name in base:
                b.copy_(base[name].to(b.device))
    return {"fraction_removed": f, "epoch": epoch, "of_epochs": last, "scale": scale, "to": to}
