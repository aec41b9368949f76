"""Split the training data into K groups D_1..D_K.

* ``kmeans``: k-means within each class, ``c`` clusters per class (K = classes x c, the paper's default);
* ``sequential``: consecutive index ranges (the paper's "DDM w/o cluster");
* ``class``: one group per class (K = classes; the top level of the hierarchical datamodel);
* ``sample``: one group per training sample (K = N, in index order): per-sample attribution.

No group is empty. A class with fewer than ``c`` samples gets one group per sample (logged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from ddm.config import ClusterConfig
from ddm.data.dataset import Split
from ddm.exceptions import DataError

log = logging.getLogger(__name__)


@dataclass
class Groups:
    """``assignment[i]`` is the group of training sample ``i``; ``labels[k]`` the class of group ``k``.

    For groups that mix classes (sequential split) ``labels[k]`` is the majority class, and ``class_counts[k, c]``
    the number of group k's samples of class c (None in workspaces grouped before it was stored: then every group
    is taken to be of its ``labels[k]`` alone).
    """

    assignment: torch.Tensor  # [N] long
    labels: torch.Tensor  # [K] long
    method: str = "kmeans"
    sample_ids: torch.Tensor | None = None  # [N] id of each training row in its full split
    class_counts: torch.Tensor | None = None  # [K, classes] long

    def __post_init__(self) -> None:
        if self.sample_ids is None:
            self.sample_ids = torch.arange(len(self.assignment))

    @property
    def num_groups(self) -> int:
        return len(self.labels)

    def sizes(self) -> torch.Tensor:
        return torch.bincount(self.assignment, minlength=self.num_groups)

    def members(self, k: int) -> torch.Tensor:
        """Training-sample indices (rows of the train split) in group ``k``."""
        return torch.nonzero(self.assignment == k).flatten()

    def member_ids(self, k: int) -> torch.Tensor:
        """Ids of group ``k``'s samples in the full training split (differs from rows for subsets)."""
        assert self.sample_ids is not None
        return self.sample_ids[self.members(k)]

    def of_classes(self, classes: list[int] | torch.Tensor) -> torch.Tensor:
        """Indices of the groups whose class is in ``classes``."""
        cls = torch.as_tensor(classes)
        return torch.nonzero(torch.isin(self.labels, cls)).flatten()

    def num_classes_of(self, k: int) -> int:
        """How many classes group ``k`` holds (1 where the class counts were not stored)."""
        return 1 if self.class_counts is None else int((self.class_counts[k] > 0).sum())

    def mixes_classes(self) -> bool:
        """Whether some group holds samples of more than one class (never where the class counts were not
        stored)."""
        return self.class_counts is not None and bool(((self.class_counts > 0).sum(1) > 1).any())

    def one_per_class(self) -> bool:
        """Whether every group is one whole class (``cluster.method=class``, or k-means with one group per class)."""
        return not self.mixes_classes() and len(set(self.labels.tolist())) == self.num_groups

    def class_count_matrix(self) -> torch.Tensor:
        """``[K, classes]``: each group's samples of each class (``class_counts``, or, where it was not stored,
        every group's size under its own class)."""
        if self.class_counts is not None:
            return self.class_counts
        counts = torch.zeros(self.num_groups, int(self.labels.max()) + 1, dtype=torch.long)
        counts[torch.arange(self.num_groups), self.labels] = self.sizes()
        return counts

    def class_sizes(self, removed: torch.Tensor | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(all [classes], kept [classes])``: each class's training samples, and those left without the
        ``removed`` groups (indices)."""
        counts = self.class_count_matrix()
        total = counts.sum(0)
        return total, total - counts[torch.as_tensor(removed, dtype=torch.long)].sum(0)

    def classes_left(self, removed: torch.Tensor | list[int]) -> tuple[set[int], set[int]]:
        """(classes with samples in the removed groups, classes with samples in the kept groups)."""
        gone = torch.zeros(self.num_groups, dtype=torch.bool)
        gone[torch.as_tensor(removed, dtype=torch.long)] = True
        present = self.class_count_matrix() > 0

        def classes(rows: torch.Tensor) -> set[int]:
            return set(torch.nonzero(present[rows].any(0)).flatten().tolist())

        return classes(gone), classes(~gone)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        assert self.sample_ids is not None
        out = {"assignment": self.assignment, "labels": self.labels, "sample_ids": self.sample_ids}
        if self.class_counts is not None:
            out["class_counts"] = self.class_counts
        return out

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], method: str) -> Groups:
        counts = t.get("class_counts")
        return cls(t["assignment"].long(), t["labels"].long(), method, t.get("sample_ids"),
                   None if counts is None else counts.long())


def count_classes(assignment: torch.Tensor, y: torch.Tensor, num_groups: int) -> torch.Tensor:
    """``[K, classes]``: how many samples of each class each group holds."""
    counts = torch.zeros(num_groups, int(y.max()) + 1 if len(y) else 1, dtype=torch.long)
    counts.index_put_((assignment.long(), y.long()), torch.ones(len(y), dtype=torch.long), accumulate=True)
    return counts


def _finish(assignment: np.ndarray, train: Split, method: str) -> Groups:
    a = torch.as_tensor(assignment, dtype=torch.long)
    counts = count_classes(a, train.y, int(a.max()) + 1)
    groups = Groups(a, counts.argmax(1), method, train.index.clone(), counts)
    if (groups.sizes() == 0).any():  # pragma: no cover - guarded by construction
        raise RuntimeError("empty group produced")
    return groups


def kmeans_groups(train: Split, per_class: int, seed: int = 0) -> Groups:
    from sklearn.cluster import KMeans

    x = train.x.flatten(1).numpy()
    y = train.y.numpy()
    assignment = np.empty(len(y), dtype=np.int64)
    next_id = 0
    classes = np.unique(y)
    small = {int(c): int((y == c).sum()) for c in classes if (y == c).sum() < per_class}
    if small:  # one line for all of them: a small subset of many classes would print one per class
        shown = ", ".join(f"class {c}: {n}" for c, n in list(small.items())[:8])
        log.warning("%d of %d classes have fewer samples than cluster.per_class=%d (%s%s): one group per sample "
                    "there (%d groups of one sample); lower cluster.per_class for larger groups",
                    len(small), len(classes), per_class, shown, ", ..." if len(small) > 8 else "",
                    sum(small.values()))
    for c in classes:
        idx = np.nonzero(y == c)[0]
        n_clusters = min(per_class, len(idx))
        if n_clusters == 1:
            labels = np.zeros(len(idx), dtype=np.int64)
        else:
            km = KMeans(n_clusters=n_clusters, n_init=3, random_state=seed).fit(x[idx])
            labels = km.labels_
            # k-means can (rarely) leave a cluster empty: renumber densely
            _, labels = np.unique(labels, return_inverse=True)
        assignment[idx] = labels + next_id
        next_id += int(labels.max()) + 1
    return _finish(assignment, train, "kmeans")


def sequential_groups(train: Split, num_groups: int) -> Groups:
    n = len(train)
    if num_groups > n:
        raise DataError(f"cannot split {n} samples into {num_groups} groups; lower cluster.num_groups")
    assignment = (np.arange(n) * num_groups) // n
    return _finish(assignment, train, "sequential")


def class_groups(train: Split) -> Groups:
    y = train.y.numpy()
    _, assignment = np.unique(y, return_inverse=True)
    return _finish(assignment.astype(np.int64), train, "class")


def make_groups(train: Split, cfg: ClusterConfig, num_classes: int) -> Groups:
    """Group the training split as configured."""
    if len(train) == 0:
        raise DataError("the training split is empty")
    if cfg.method == "kmeans":
        return kmeans_groups(train, cfg.per_class, cfg.seed)
    if cfg.method == "sequential":
        return sequential_groups(train, cfg.num_groups or num_classes * cfg.per_class)
    if cfg.method == "sample":
        return _finish(np.arange(len(train), dtype=np.int64), train, "sample")
    return class_groups(train)
