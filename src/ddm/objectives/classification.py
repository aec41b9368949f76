"""Model functionality over a set of samples: accuracy and macro precision, recall and F1."""

from __future__ import annotations

import torch

from ddm.objectives.base import Objective


def macro_prf(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, ...]:
    """Macro precision, recall, F1 of predictions ``[P, N]`` against ``labels [N]`` -> three ``[P]``.

    Averaged over the classes that occur in the labels or the predictions; 0 where undefined
    (as scikit-learn's ``zero_division=0``).
    """
    classes = torch.arange(num_classes)
    p1 = pred.unsqueeze(-1) == classes  # [P, N, C]
    y1 = (labels.unsqueeze(-1) == classes).unsqueeze(0)  # [1, N, C]
    tp = (p1 & y1).sum(1).float()
    fp = (p1 & ~y1).sum(1).float()
    fn = (~p1 & y1).sum(1).float()
    present = ((p1 | y1).sum(1) > 0).float()
    prec = torch.where(tp + fp > 0, tp / (tp + fp).clamp(min=1), torch.zeros_like(tp))
    rec = torch.where(tp + fn > 0, tp / (tp + fn).clamp(min=1), torch.zeros_like(tp))
    f1 = torch.where(prec + rec > 0, 2 * prec * rec / (prec + rec).clamp(min=1e-12), torch.zeros_like(tp))
    n = present.sum(1).clamp(min=1)
    return (prec * present).sum(1) / n, (rec * present).sum(1) / n, (f1 * present).sum(1) / n


class Functionality(Objective):
    """One metric of the model on the whole target set. score = -effect = the group's contribution
    (positive: the group helps the metric; negative: removing it would improve the metric)."""

    per_target = False
    differentiable = False  # argmax-based: zero derivative almost everywhere
    score_meaning = "drop of the metric when the group is removed (its contribution; negative = harmful)"

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.name = metric

    def outputs(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pred = logits.argmax(-1)
        if self.metric == "accuracy":
            value = (pred == labels).float().mean(1)
        else:
            prec, rec, f1 = macro_prf(pred, labels, logits.shape[-1])
            value = {"precision": prec, "recall": rec, "f1": f1}[self.metric]
        return value.view(-1, 1, 1)

    def score(self, effect: torch.Tensor) -> torch.Tensor:
        return -effect[..., 0]
