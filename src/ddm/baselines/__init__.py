"""Baselines that attribute or pick training groups without DDM."""

from ddm.baselines.simple import clustering_based, predict_based, random_choice

__all__ = ["clustering_based", "predict_based", "random_choice"]
