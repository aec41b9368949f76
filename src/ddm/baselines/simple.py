"""The paper's simple baselines for choosing "the" group behind a test prediction (Table 1).

Each returns one group per target: ``[T]`` long.
* random: uniformly random groups (seeded);
* predict-based: the group whose members' mean softmax output under theta_tau is most similar
  (cosine) to the target's output;
* clustering-based: the group whose pixel-space centroid is nearest to the target image.
"""

from __future__ import annotations

import torch
from torch import nn

from ddm.cluster.groups import Groups
from ddm.data.dataset import Split


def random_choice(num_targets: int, groups: Groups, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, groups.num_groups, (num_targets,), generator=g)


def _group_means(values: torch.Tensor, groups: Groups) -> torch.Tensor:
    sums = torch.zeros(groups.num_groups, values.shape[1]).index_add_(0, groups.assignment, values)
    return sums / groups.sizes().clamp(min=1).unsqueeze(1).float()


@torch.no_grad()
def predict_based(model: nn.Module, train: Split, groups: Groups, targets: Split) -> torch.Tensor:
    model.eval()
    member = _group_means(model(train.x).softmax(-1), groups)
    t = model(targets.x).softmax(-1)
    sim = torch.nn.functional.cosine_similarity(t.unsqueeze(1), member.unsqueeze(0), dim=-1)
    return sim.argmax(1)


def clustering_based(train: Split, groups: Groups, targets: Split) -> torch.Tensor:
    centroids = _group_means(train.x.flatten(1), groups)
    return torch.cdist(targets.x.flatten(1), centroids).argmin(1)
