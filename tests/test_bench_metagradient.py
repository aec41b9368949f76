"""The metagradient diagnostic (`benchmarks/metagradient.py`): its replay differentiates the training run."""

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from ddm.train.loop import epoch_order


def _weighted_run(model: nn.Module, theta0, x, y, weights, cfg, start: int) -> dict[str, torch.Tensor]:
    """The training loop with per-sample loss weights from epoch ``start`` on (the mean over the batch kept)."""
    with torch.no_grad():
        for k, v in model.named_parameters():
            v.copy_(theta0[k])
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps = (len(x) + cfg.batch_size - 1) // cfg.batch_size
    for epoch in range(cfg.epochs):
        for idx in torch.tensor_split(epoch_order(len(x), cfg.seed, epoch), steps):
            w = weights[idx] if epoch >= start else torch.ones(len(idx), dtype=x.dtype)
            loss = (w * F.cross_entropy(model(x[idx]), y[idx], reduction="none")).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_the_replay_is_the_derivative_of_training_with_group_weights(bench):
    """On softmax regression the Gauss-Newton matrix is the Hessian, so the tangents are exact: they must equal
    central differences of the weighted training run, for the whole run and for a truncation."""
    mg = bench("metagradient")
    torch.manual_seed(0)
    n, K = 30, 3
    x, y = torch.randn(n, 5, dtype=torch.float64), torch.randint(0, 3, (n,))
    member = torch.arange(n) % K
    model = nn.Sequential(nn.Flatten(), nn.Linear(5, 3)).double()
    theta0 = {k: v.detach().clone() for k, v in model.named_parameters()}
    cfg = SimpleNamespace(optimizer="sgd", lr=0.3, momentum=0.9, weight_decay=0.01, batch_size=8, epochs=3, seed=1,
                          last_batch="balanced")
    dp = mg.replay_tangents(model, theta0, x, y, member, K, cfg, "ggn", starts=(0, 2))
    for s, start in enumerate((0, 2)):
        for k in range(K):
            eps = 1e-5
            up = _weighted_run(model, theta0, x, y, 1 + eps * (member == k).double(), cfg, start)
            down = _weighted_run(model, theta0, x, y, 1 - eps * (member == k).double(), cfg, start)
            for name in up:
                fd = (up[name] - down[name]) / (2 * eps)
                assert fd.abs().max() > 1e-3  # the group moved the run
                torch.testing.assert_close(dp[name][s * K + k], fd, rtol=1e-5, atol=1e-7)
