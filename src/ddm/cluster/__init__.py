"""Grouping of the training data (k-means per class, sequential, class-level)."""

from ddm.cluster.groups import Groups, class_groups, kmeans_groups, make_groups, sequential_groups

__all__ = ["Groups", "class_groups", "kmeans_groups", "make_groups", "sequential_groups"]
