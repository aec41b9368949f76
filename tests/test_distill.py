import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

from ddm.config import DistillConfig
from ddm.distill import augment, distill, flat_cosine, group_gradients, layerwise_cosine, mse
from ddm.distill.matching import pair
from ddm.distill.synset import soft_cross_entropy


def test_layerwise_cosine_matches_a_hand_computation():
    a = {"w": torch.tensor([[1.0, 0.0], [1.0, 1.0]]), "b": torch.tensor([5.0, -5.0]),
         "c": torch.tensor([[[[3.0]], [[4.0]]]])}  # conv-shaped [1, 2, 1, 1] -> one row (3, 4)
    b = {"w": torch.tensor([[0.0, 2.0], [-1.0, -1.0]]), "b": torch.tensor([1.0, 1.0]),
         "c": torch.tensor([[[[4.0]], [[3.0]]]])}
    # rows: (1,0)vs(0,2): cos 0 -> 1; (1,1)vs(-1,-1): cos -1 -> 2; (3,4)vs(4,3): cos 24/25 -> 1/25; bias skipped
    expected = 1 + 2 + (1 - 24 / 25)
    assert layerwise_cosine(a, b).item() == pytest.approx(expected, abs=1e-5)


def test_flat_cosine_and_mse_by_hand():
    a = {"x": torch.tensor([1.0, 0.0]), "y": torch.tensor([[0.0]])}
    b = {"x": torch.tensor([1.0, 1.0]), "y": torch.tensor([[1.0]])}
    assert flat_cosine(a, b).item() == pytest.approx(1 - 1 / math.sqrt(3), abs=1e-5)
    assert mse(a, b).item() == pytest.approx(2.0)


def test_group_gradients_equal_a_loop_over_groups(trained, digits):
    model, traj = trained
    x = digits.train.x[:12].reshape(3, 4, 1, 8, 8)
    t = F.one_hot(digits.train.y[:12], 10).float().reshape(3, 4, 10)
    batched = group_gradients(model, traj.final, x, t)
    chunked = group_gradients(model, traj.final, x, t, chunk=2)
    for k in range(3):
        def loss(p, xk=x[k], tk=t[k]):
            return soft_cross_entropy(functional_call(model, p, (xk,)), tk).mean()

        one = grad(loss)(traj.final)
        for n in one:
            assert torch.allclose(batched[n][k], one[n], atol=1e-6)
            assert torch.allclose(chunked[n][k], one[n], atol=1e-6)


@pytest.mark.parametrize("pairing, expect", [("reverse", lambda a, b, tau: a + b == tau),
                                             ("step", lambda a, b, tau: b == a + 2)])
def test_trajectory_pairings(pairing, expect):
    cfg = DistillConfig(pairing=pairing, step=2)
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        a, b = pair(cfg, 10, g)
        assert 0 <= a <= 10 and 0 <= b <= 10 and expect(a, b, 10)
    a, b = pair(DistillConfig(matching="match"), 10, g)
    assert a == b


@pytest.mark.parametrize("matching", ["reverse", "match"])
def test_matching_loss_falls(trained, digits, groups, matching):
    model, traj = trained
    cfg = DistillConfig(matching=matching, iterations=30, lr_img=1.0, batch_real=16, augment="none", ipc=1)
    syn = distill(model, traj, digits.train, groups, cfg, 10)
    assert syn.images.shape == (groups.num_groups, 1, 1, 8, 8)
    assert len(syn.losses) == 30
    assert syn.losses[-10:].mean() < syn.losses[:3].mean()


def test_learned_labels_and_ipc(trained, digits, groups):
    model, traj = trained
    cfg = DistillConfig(matching="reverse", iterations=3, ipc=2, labels="learned", batch_real=4)
    syn = distill(model, traj, digits.train, groups, cfg, 10)
    assert syn.images.shape[:2] == (groups.num_groups, 2)
    assert syn.label_logits is not None and syn.targets().shape == (groups.num_groups, 2, 10)
    assert torch.allclose(syn.targets().sum(-1), torch.ones(groups.num_groups, 2))


@pytest.mark.parametrize("extra", [{"matching": "reverse", "ipc": 1},
                                   {"matching": "local", "optimizer": "adam", "lr_img": 0.01, "labels": "free",
                                    "lr_label": 0.01, "ipc": 1}])
def test_interrupted_distillation_resumes_identically(trained, digits, groups, tmp_path, extra):
    model, traj = trained
    cfg = DistillConfig(iterations=6, checkpoint_every=2, batch_real=4, **extra)
    full = distill(model, traj, digits.train, groups, cfg, 10)
    # a killed run leaves its last checkpoint: run 4 steps with checkpoints, then resume to 6
    distill(model, traj, digits.train, groups, DistillConfig(**{**cfg.__dict__, "iterations": 4}), 10, tmp_path)
    resumed = distill(model, traj, digits.train, groups, cfg, 10, tmp_path)
    assert torch.allclose(resumed.images, full.images, atol=1e-5)
    assert torch.allclose(resumed.losses, full.losses, atol=1e-5)
    assert torch.allclose(resumed.targets(), full.targets(), atol=1e-5)


def test_siamese_augmentation_is_shared_and_differentiable():
    g = torch.Generator().manual_seed(1)
    p = augment.sample("color_crop_cutout_flip_scale_rotate", g)
    x = torch.randn(3, 1, 8, 8, requires_grad=True)
    y = augment.apply(x, p)
    assert y.shape == x.shape
    assert torch.allclose(augment.apply(x[1:2], p), y[1:2], atol=1e-6)  # same transform for any batch
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert augment.apply(x, augment.sample("none", g)) is x


def test_removal_displacements_by_hand(trained, digits, groups):
    """Delta_k = lr / B * trapezoid sum over checkpoints of the group's summed loss gradient."""
    from ddm.distill.matching import removal_displacements

    model, traj = trained
    delta = removal_displacements(model, traj, digits.train, groups, 10, train_batch=32, chunk=3)
    k = 2
    members = groups.members(k)

    def summed(p):
        return F.cross_entropy(functional_call(model, p, (digits.train.x[members],)), digits.train.y[members],
                               reduction="sum")

    ep = traj.epochs
    w = [(ep[1] - ep[0]) / 2] + [(ep[t + 1] - ep[t - 1]) / 2 for t in range(1, traj.tau)] + [(ep[-1] - ep[-2]) / 2]
    want = {n: sum(traj.lr * w[t] / 32 * grad(summed)(traj[t])[n] for t in range(traj.tau + 1)) for n in traj[0]}
    for n, v in want.items():
        assert torch.allclose(delta[n][k], v, atol=1e-5), n


def test_relative_mse_by_hand():
    from ddm.distill.distances import relative_mse

    a = {"w": torch.tensor([[1.0, 2.0]]), "b": torch.tensor([0.0])}
    b = {"w": torch.tensor([[1.0, 0.0]]), "b": torch.tensor([1.0])}
    assert float(relative_mse(a, b)) == pytest.approx((0 + 4 + 1) / (1 + 0 + 1), rel=1e-5)


def test_local_matching_loss_falls_with_learned_labels(trained, digits, groups):
    model, traj = trained
    cfg = DistillConfig(matching="local", labels="learned", distance="relative_mse", iterations=30, lr_img=1.0,
                        lr_label=1.0, augment="none")
    syn = distill(model, traj, digits.train, groups, cfg, 10, train_batch=32)
    assert len(syn.losses) == 30 and syn.losses[-10:].mean() < syn.losses[:3].mean()


def test_free_targets_take_any_scale_and_sign_and_round_trip(trained, digits, groups):
    from ddm.distill.synset import Synset

    model, traj = trained
    cfg = DistillConfig(matching="local", labels="free", distance="relative_mse", optimizer="adam", iterations=40,
                        lr_img=0.01, lr_label=0.05, augment="none", ipc=1)
    syn = distill(model, traj, digits.train, groups, cfg, 10, train_batch=32)
    assert syn.label_logits is None and syn.free_targets is not None
    t = syn.targets()
    assert t is syn.free_targets and t.shape == (groups.num_groups, 1, 10)
    assert not torch.allclose(t.sum(-1), torch.ones_like(t.sum(-1)))  # no longer distributions
    assert syn.losses[-10:].mean() < syn.losses[:3].mean()
    back = Synset.from_tensors(syn.to_tensors(), 10)
    assert torch.equal(back.targets(), t) and back.label_logits is None
