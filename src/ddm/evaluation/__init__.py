"""Ground truth: exact retraining, the paper's protocol, LDS, noise floor and cost."""

from ddm.evaluation.metrics import dist_metrics, lds, rank_agreement, spearman
from ddm.evaluation.retrain import RetrainCache

__all__ = ["RetrainCache", "dist_metrics", "lds", "rank_agreement", "spearman"]
