"""Metrics against exact retraining: the paper's Dist1-3 (Eq. 10), LDS (overall and other-class) and rank
correlations."""

from __future__ import annotations

import numpy as np
import torch

from ddm.cluster.groups import Groups
from ddm.emulate.perturbations import sample_perturbations
from ddm.objectives.influence import true_label_loss


def dist_metrics(logits_removed: torch.Tensor, logits_full: torch.Tensor,
                 labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Eq. 10 per target, from logits ``[T, C]`` of the retrained-without model and of the target model.

    dist1 = ||softmax(y_u) - softmax(y)||_2 ; dist2 = CE(y_u, label) ; dist3 = 1 / (1 + dist1).
    """
    pu, pf = logits_removed.softmax(-1), logits_full.softmax(-1)
    d1 = (pu - pf).norm(dim=-1)
    d2 = true_label_loss(logits_removed, labels)
    return {"dist1": d1, "dist2": d2, "dist3": 1.0 / (1.0 + d1)}


def spearman(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Spearman rank correlation; 0 where one side is constant (no ranking information)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    from scipy.stats import spearmanr  # here: SciPy's statistics take about 1 s to import, which a command that
    # never scores an attribution (``ddm attribute``'s check of the workspace's advice) should not pay

    return float(spearmanr(a, b).statistic)


def lds(predicted: torch.Tensor, actual: torch.Tensor) -> tuple[float, list[float]]:
    """Linear datamodeling score: Spearman over subsets ``[M]`` per target, averaged over targets.

    ``predicted``/``actual``: ``[M, T]``. Returns (mean, per-target values).
    """
    per = [spearman(predicted[:, t], actual[:, t]) for t in range(predicted.shape[1])]
    return float(np.mean(per)), per


def rank_agreement(scores: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean over targets of the Spearman correlation across groups: ``[T, K]`` each."""
    return float(np.mean([spearman(scores[t], truth[t]) for t in range(scores.shape[0])]))


def other_class_subsets(groups: Groups, classes: list[int], subsets: int, seed: int,
                        keep_prob: float = 0.5) -> dict[int, torch.Tensor]:
    """Keep masks ``[subsets, K]`` per class in ``classes`` for the *other-class LDS*: every group of the class kept,
    each other group kept with probability ``keep_prob`` (class ``c``'s draw from ``seed + c``). Scored on that
    class's targets, a prediction that only marks a target's own class gets 0, so what is left is the ranking of
    the other classes' data. Empty where groups mix classes (no subset of groups keeps one class whole) and for
    ``subsets`` 0 (skipped)."""
    if groups.mixes_classes() or subsets == 0:
        return {}
    out = {}
    for c in sorted({int(c) for c in classes}):
        m = sample_perturbations(groups.num_groups, subsets, keep_prob, seed=seed + c)
        m[:, groups.labels == c] = True
        out[c] = m
    return out
