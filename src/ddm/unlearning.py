"""Quick unlearning: fine-tune the trained model on the synsets of the groups to forget."""

from __future__ import annotations

import torch
from torch import nn

from ddm.data.dataset import Split
from ddm.distill.synset import Synset
from ddm.emulate.finetune import finetune_reference
from ddm.models import with_params
from ddm.train.loop import accuracy


def unlearn_groups(model: nn.Module, params: dict[str, torch.Tensor], synset: Synset, groups: torch.Tensor,
                   lr: float, steps: int, reduction: str = "sum", method: str = "auto",
                   damping: float | None = None, curvature_damping: float = 0.0,
                   decay: torch.Tensor | None = None) -> nn.Module:
    """A copy of ``model`` at ``params`` without ``groups`` (indices): the kept data's Newton step on the
    last layer for head-matched synsets (``method`` auto or newton; ``damping`` its absolute lambda, default
    the synset's; ``decay`` ``[K]`` the groups' shares of the weight decay), else fine-tuning on their synsets."""
    if method == "newton" or (method == "auto" and synset.kind == "head"):
        from ddm.emulate.newton import newton_keep_params

        return with_params(model, newton_keep_params(model, params, synset, groups, damping, curvature_damping,
                                                                     decay))
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
