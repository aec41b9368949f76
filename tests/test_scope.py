"""The Gauss-Newton matrix over a scope (ddm.distill.scope): its parameters, its products, its eigenpairs and the
low-rank damped inverse, against explicit Jacobians and decompositions."""

import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev

from ddm.distill.scope import GaussNewton, LowRankInverse, leading_eigenpairs, scope_names
from ddm.exceptions import ConfigError
from ddm.models.resnet import ResNet


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 5), nn.LayerNorm(5), nn.Tanh(),
                         nn.Linear(5, 3)).double()


def test_scopes_name_the_head_and_the_block_before_it():
    m = _mlp()
    assert scope_names(m, "head") == ["6.weight", "6.bias"]
    # the last layer with a weight matrix before the head, and the norm between it and the head
    assert scope_names(m, "block") == ["3.weight", "3.bias", "4.weight", "4.bias", "6.weight", "6.bias"]
    r = ResNet(1, (8, 8), 10, width=4, depth=2)
    block = scope_names(r, "block")
    last = max(int(n.split(".")[1]) for n, _ in r.named_parameters() if n.startswith("layers."))
    assert block[-2:] == scope_names(r, "head")
    assert all(n.startswith(f"layers.{last}.") for n in block[:-2]) and len(block) > 4
    with pytest.raises(ConfigError, match="head or block"):
        scope_names(m, "everything")
    with pytest.raises(ConfigError, match="nn.Linear"):
        scope_names(nn.Sequential(nn.Conv2d(1, 2, 3)), "head")


def test_the_products_are_the_explicit_gauss_newton_matrix():
    m = _mlp()
    params = {k: v.detach() for k, v in m.named_parameters()}
    names = scope_names(m, "block")
    x = torch.randn(23, 6, dtype=torch.float64)
    op = GaussNewton(m, params, names, x, batch=7)  # batches that do not divide N
    P = op.size
    assert P == 5 * 5 + 5 + 5 + 5 + 3 * 5 + 3

    def f(p, xi):
        return functional_call(m, {**params, **p}, (xi[None],))[0]

    free = {n: params[n] for n in names}
    rows = [jacrev(f)(free, x[i]) for i in range(len(x))]
    J = torch.stack([torch.cat([r[n].reshape(3, -1) for n in names], 1) for r in rows])  # [N, C, P]
    with torch.no_grad():
        p = m(x).softmax(-1)
    G = sum(J[i].T @ (torch.diag(p[i]) - p[i][:, None] * p[i][None]) @ J[i] for i in range(len(x))) / len(x)
    V = torch.randn(P, 4, dtype=torch.float64)
    torch.testing.assert_close(op(V), G @ V)  # the Jacobians formed once and kept
    streamed = GaussNewton(m, params, names, x, batch=7, cache_bytes=0)  # forward- and reverse-mode products
    torch.testing.assert_close(streamed(V), G @ V)
    assert streamed._jacobians is None and op._jacobians is not None
    # another loss's output curvature goes in through out_curv
    eye = torch.eye(3, dtype=torch.float64)
    for cache in (0, 1 << 30):
        op2 = GaussNewton(m, params, names, x, batch=5, out_curv=lambda z, rows: eye.expand(len(z), 3, 3),
                          cache_bytes=cache)
        torch.testing.assert_close(op2(V), sum(J[i].T @ J[i] for i in range(len(x))) @ V / len(x))


def test_leading_eigenpairs_and_the_low_rank_inverse():
    torch.manual_seed(1)
    A = torch.randn(30, 12, dtype=torch.float64)
    G = A.T @ A / 30  # [12, 12], positive semi-definite
    s_ref, V_ref = torch.linalg.eigh(G)
    s_ref, V_ref = s_ref.flip(0), V_ref.flip(1)
    s, V = leading_eigenpairs(lambda v: G @ v, 12, 3, iters=80, oversample=2, dtype=torch.float64)
    torch.testing.assert_close(s, s_ref[:3])
    torch.testing.assert_close((V.T @ V_ref[:, :3]).abs(), torch.eye(3, dtype=torch.float64), atol=1e-6, rtol=0)
    lam = 1e-2 * float(s_ref[0])
    inv = LowRankInverse(s, V, lam)
    g = torch.randn(4, 12, dtype=torch.float64)
    proj = V_ref[:, :3] @ V_ref[:, :3].T
    ref = (proj @ torch.linalg.solve(G + lam * torch.eye(12, dtype=torch.float64), g.T)).T + \
        g @ (torch.eye(12, dtype=torch.float64) - proj) / (float(s_ref[2]) + lam)
    torch.testing.assert_close(inv(g), ref)
    # every eigenvector kept: the exact damped inverse
    full = LowRankInverse(s_ref, V_ref, lam)
    torch.testing.assert_close(full(g), torch.linalg.solve(G + lam * torch.eye(12, dtype=torch.float64), g.T).T)
    back = LowRankInverse.from_tensors(inv.to_tensors("m0."), "m0.")
    torch.testing.assert_close(back(g), inv(g))
    with pytest.raises(ConfigError, match="damping"):
        LowRankInverse(s, V, 0.0)
    with pytest.raises(ConfigError, match="rank"):
        leading_eigenpairs(lambda v: G @ v, 12, 0)


def test_group_gradients_and_a_synset_of_the_groups_own_data_matches_exactly():
    from ddm.distill.block import MatchSite, group_gradients, match_over_scope
    from ddm.distill.scope import GaussNewton

    m = _mlp()
    params = {k: v.detach() for k, v in m.named_parameters()}
    names = scope_names(m, "block")
    torch.manual_seed(2)
    x = torch.randn(12, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    assignment = torch.arange(12) // 3  # 4 groups of 3
    G = group_gradients(m, params, names, x, y, assignment, 4, batch=5)
    # against autograd: the summed loss of group 1's rows
    m.zero_grad()
    torch.nn.functional.cross_entropy(m(x[3:6]), y[3:6], reduction="sum").backward()
    torch.testing.assert_close(G[1], torch.cat([m.get_parameter(n).grad.reshape(-1) for n in names]))
    op = GaussNewton(m, params, names, x)
    torch.testing.assert_close(op.summed_gradients(y, assignment, 4), G)  # from the kept Jacobians
    assert GaussNewton(m, params, names, x, cache_bytes=0).summed_gradients(y, assignment, 4) is None
    s, V = leading_eigenpairs(op, len(G[0]), 5, dtype=torch.float64)
    site = MatchSite(params, LowRankInverse(s, V, 1e-2 * float(s[0])), G)
    # each group's own rows as its synset, weight 1: the loss is zero and stays there
    imgs, labels = x.reshape(4, 3, 6), y.reshape(4, 3)
    _, w, losses = match_over_scope(m, names, [site], imgs, labels, torch.ones(4, 3), 3, steps=1, lr_img=0.1,
                                    lr_weight=0.1)
    assert losses[0] < 1e-20
    # from other images the loss falls
    start = imgs.flip(0).clone()  # another group's rows (the labels kept: hard labels)
    _, _, losses = match_over_scope(m, names, [site, site], start, labels, torch.ones(4, 3), 3, steps=60,
                                    lr_img=0.05, lr_weight=0.05)
    assert losses[-1] < 0.5 * losses[0]
