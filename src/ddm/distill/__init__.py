"""Offline distillation: reverse gradient matching (DDM) and plain gradient matching (DDM-match)."""

from ddm.distill.distances import DISTANCES, flat_cosine, layerwise_cosine, mse
from ddm.distill.matching import distill, group_gradients
from ddm.distill.synset import Synset

__all__ = ["DISTANCES", "Synset", "distill", "flat_cosine", "group_gradients", "layerwise_cosine", "mse"]
