import torch

import ddm
from ddm.cluster import class_groups, kmeans_groups, sequential_groups
from ddm.data.dataset import Split


def test_kmeans_within_each_class(digits, groups):
    assert groups.num_groups == 20
    sizes = groups.sizes()
    assert sizes.min() > 0 and sizes.sum() == len(digits.train)
    for k in range(groups.num_groups):
        assert (digits.train.y[groups.members(k)] == groups.labels[k]).all()
    assert torch.bincount(groups.labels).tolist() == [2] * 10


def test_small_class_gets_one_group_per_sample(caplog):
    x = torch.randn(13, 1, 4, 4)
    y = torch.tensor([0] * 10 + [1] * 3)
    g = kmeans_groups(Split(x, y), per_class=5)
    assert g.num_groups == 5 + 3
    assert (g.sizes() > 0).all()
    assert "1 of 2 classes have fewer samples than cluster.per_class=5 (class 1: 3)" in caplog.text
    # many small classes (a small subset of many classes) give one warning, not one per class
    caplog.clear()
    g = kmeans_groups(Split(torch.randn(60, 1, 4, 4), torch.arange(60) % 30), per_class=5)
    assert g.num_groups == 60 and len(caplog.records) == 1
    assert "30 of 30 classes" in caplog.text and "(60 groups of one sample)" in caplog.text


def test_sequential_and_class_splits(digits):
    s = sequential_groups(digits.train, 7)
    assert s.num_groups == 7 and (s.sizes() > 0).all()
    assert torch.all(s.assignment[1:] >= s.assignment[:-1])  # contiguous index ranges
    c = class_groups(digits.train)
    assert c.num_groups == 10 and torch.equal(c.assignment, digits.train.y)
    assert torch.equal(c.labels, torch.arange(10))
    # mixed groups keep their class counts: the label is the most frequent class, rankings say "mixed"
    for k in range(7):
        y = digits.train.y[s.members(k)]
        assert torch.equal(s.class_counts[k], torch.bincount(y, minlength=s.class_counts.shape[1]))
        assert s.num_classes_of(k) == len(y.unique()) > 1 and s.class_counts[k, s.labels[k]] == s.class_counts[k].max()
    assert all(c.num_classes_of(k) == 1 for k in range(10))
    assert s.mixes_classes() and not c.mixes_classes()
    assert c.one_per_class() and not s.one_per_class()
    from ddm.cluster.groups import make_groups
    from ddm.config import ClusterConfig

    one = make_groups(digits.train, ClusterConfig(method="sample"), 10)  # per-sample attribution: K = N
    assert one.num_groups == len(digits.train) and torch.equal(one.assignment, torch.arange(len(digits.train)))
    assert torch.equal(one.labels, digits.train.y) and not one.mixes_classes() and not one.one_per_class()


def test_member_ids_map_back_to_the_full_split(digits, groups):
    full = ddm.data.load("digits")
    ids = groups.member_ids(3)
    assert torch.equal(full.train.x[ids], digits.train.x[groups.members(3)])
