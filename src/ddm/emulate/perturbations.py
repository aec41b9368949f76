"""Random perturbations p in {0,1}^K (1 = group kept, 0 = group deleted) and their weights beta(p)."""

from __future__ import annotations

import torch

from ddm.exceptions import ConfigError


def sample_perturbations(num_groups: int, num: int, keep_prob: float, seed: int = 0,
                         chunk_entries: int = 2 ** 24) -> torch.Tensor:
    """``[num, num_groups]`` bool masks, each group kept independently with ``keep_prob``."""
    if num_groups <= 0 or num <= 0:
        raise ConfigError("need at least one group and one perturbation")
    g = torch.Generator().manual_seed(seed)
    # rows drawn in chunks (the same numbers as one draw: the generator runs on), so large K x P never holds the
    # float draws at once (per-sample groups of 10,000 samples: 4 GB)
    rows = max(1, chunk_entries // num_groups)
    out = torch.empty(num, num_groups, dtype=torch.bool)
    for s in range(0, num, rows):
        out[s:s + rows] = torch.rand(min(rows, num - s), num_groups, generator=g) < keep_prob
    return out


def perturbation_weights(keep: torch.Tensor, scheme: str) -> torch.Tensor:
    """beta(p) of Eq. 8 from the number of deleted groups: ``[P, K] -> [P]``.

    ``inverse_deletions``: 1 / max(1, #deleted) (the paper only says beta depends on the number
    of zeros; this choice gives single-group deletions the most say). ``uniform``: all ones.
    """
    deleted = (~keep.bool()).sum(1).float()
    if scheme == "uniform":
        return torch.ones(len(keep))
    if scheme == "inverse_deletions":
        return 1.0 / deleted.clamp(min=1.0)
    raise ConfigError(f"unknown weighting {scheme!r}; use inverse_deletions or uniform")
