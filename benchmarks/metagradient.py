"""Differentiate the recorded training run itself: each group's exact first-order removal effect (a diagnostic).

DDM's emulation is a damped Newton step at the end of training (and at two earlier checkpoints). Where it misses
(the weight-decayed momentum ConvNet: removing other classes' data *raises* a target's loss there, and the step
predicts the opposite; the ResNet), the step's locality is the suspect: it sees the trained model, not how the
training run used each group. This script measures what the training run itself says. It replays the recorded run
from theta_0 (same data order, minibatches, optimizer, momentum and weight decay) with a weight w_k on every
group's per-sample losses and carries, in forward mode, the derivatives d theta_t / d w_k of the parameters *and
the optimizer state* through every step (``torch.func`` jvp/vjp, vmapped over the K groups). With each minibatch's
exact Hessian (``--curvature hessian``) these are the exact first-order effects, but on the digits ConvNets they
grow about 100-fold per epoch (the linearised run is unstable, even from epoch 10 on) and overflow; the default
linearises each step with the minibatch's Gauss-Newton matrix instead, which is stable. ``--starts`` lists epochs
from which the weights are differentiated (truncations of the run, sharing one replay). A removal subset is read
out as each target's logits ``z - J_target sum_{k removed} d theta_tau / d w_k`` (the default's readout), and scored
on the matrix's subsets and validation targets against the exact retrains.

Only SGD (with momentum and weight decay) is replayed; the replay's theta_tau is checked against the recorded one.

    python benchmarks/metagradient.py --configs digits-convnet-K40-momentum-wd --starts 0,10,15,18,19 \
        --out benchmarks/results/metagradient-momentum-wd
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, jvp, vmap

from ddm.train.loop import epoch_order, make_optimizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--curvature", choices=("ggn", "hessian"), default="ggn",
                   help="the tangents' curvature: each minibatch's Gauss-Newton matrix (stable) or its exact Hessian")
    p.add_argument("--starts", default="0", type=lambda v: tuple(int(e) for e in v.split(",")),
                   help="comma-separated epochs from which the groups' weights are differentiated (0: the whole run)")


def batch_tangents(model: torch.nn.Module, p: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor,
                   dp: dict[str, torch.Tensor], dw: torch.Tensor, curvature: str) -> dict[str, torch.Tensor]:
    """The tangents ``[R, ...]`` of one minibatch's mean-loss gradient at ``p``: along ``dp`` (through the batch's
    Gauss-Newton matrix, or its Hessian) and along the sample weights ``dw [R, B]``."""
    B = len(xb)

    def f(q: dict[str, torch.Tensor]) -> torch.Tensor:
        return functional_call(model, q, (xb,))

    if curvature == "ggn":
        z, vjp_fn = torch.func.vjp(f, p)
        pr = F.softmax(z.detach(), 1)
        resid = pr - F.one_hot(yb, z.shape[1]).to(z.dtype)
        dz = vmap(lambda d: jvp(f, (p,), (d,))[1])(dp)  # [R, B, C]
        hz = pr * dz - pr * (pr * dz).sum(-1, keepdim=True)
        return vmap(lambda c: vjp_fn(c)[0])((hz + resid * dw[..., None]) / B)  # type: ignore[no-any-return]

    def batch_grad(q: dict[str, torch.Tensor], w: torch.Tensor) -> dict[str, torch.Tensor]:
        return grad(lambda r: (w * F.cross_entropy(f(r), yb, reduction="none")).mean())(q)  # type: ignore[no-any-return]

    ones = torch.ones(B, dtype=xb.dtype)
    return vmap(lambda d, e: jvp(batch_grad, (p, ones), (d, e))[1])(dp, dw)  # type: ignore[no-any-return]


def replay_tangents(model: torch.nn.Module, theta0: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                    member: torch.Tensor, K: int, cfg, curvature: str = "ggn",
                    starts: tuple[int, ...] = (0,)) -> dict[str, torch.Tensor]:
    """Replay SGD from ``theta0`` in the recorded order and return ``d theta_tau / d w`` ([S K, ...]).

    Row ``s K + k`` weighs group k's samples from epoch ``starts[s]`` on only (the derivative of a run whose weights
    change there), so truncations of the run share one replay.

    The primal steps are the training loop's own (``torch.optim.SGD`` on ``model``, so theta_tau is the recorded
    one bit for bit); the tangents follow the same update, linearised with each minibatch's Gauss-Newton matrix
    (``curvature="ggn"``) or its exact Hessian (``"hessian"``).
    """
    if cfg.optimizer != "sgd":
        raise SystemExit(f"only SGD is replayed (this run used {cfg.optimizer})")
    lr, mom, wd = float(cfg.lr), float(cfg.momentum), float(cfg.weight_decay)
    with torch.no_grad():
        for k, v in model.named_parameters():
            v.copy_(theta0[k])
    opt = make_optimizer(model, cfg)
    R = K * len(starts)
    dp = {k: torch.zeros(R, *v.shape, dtype=v.dtype) for k, v in model.named_parameters()}
    dbuf = {k: torch.zeros(R, *v.shape, dtype=v.dtype) for k, v in model.named_parameters()}
    n = len(x)
    steps = (n + cfg.batch_size - 1) // cfg.batch_size
    model.train()
    for epoch in range(cfg.epochs):
        order = epoch_order(n, cfg.seed, epoch)
        batches = (torch.tensor_split(order, steps) if cfg.last_batch == "balanced"
                   else torch.split(order, cfg.batch_size))
        for idx in batches:
            xb, yb = x[idx], y[idx]
            p = {k: v.detach() for k, v in model.named_parameters()}
            dw = (member[idx][None, :] == torch.arange(K)[:, None]).to(x.dtype)  # [K, B]: d (sample weight) / d w_k
            dw = torch.cat([dw * (epoch >= s0) for s0 in starts])
            dg = batch_tangents(model, p, xb, yb, dp, dw, curvature)
            for k in dp:
                dgk = dg[k] + wd * dp[k]
                dbuf[k] = mom * dbuf[k] + dgk if mom else dgk
                dp[k] = dp[k] - lr * dbuf[k]
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        size = float(sum(v.norm() ** 2 for v in dp.values()) ** 0.5)
        print(f"  epoch {epoch + 1}/{cfg.epochs}: |d theta| {size:.3g}", flush=True)
    model.eval()
    return dp


def run(name: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    cfg, data, _, dm, cache = M.open_run(root, name, seed)
    v = M.ValidationTargets(dm, cache, data, seed)
    targets, score = v.targets, v.score

    model = dm.model.eval()
    names = [k for k, _ in model.named_parameters()]
    theta0 = {k: dm.trajectory[0][k] for k in names}
    member = torch.as_tensor(dm.groups.assignment)
    K = dm.groups.num_groups
    last = {k: dm.trajectory.params[-1][k].clone() for k in names}
    t0 = time.perf_counter()
    dp = replay_tangents(model, theta0, data.train.x, data.train.y, member, K, cfg.train, args.curvature, args.starts)
    seconds = time.perf_counter() - t0
    recorded = dict(model.named_parameters())
    drift = max(float((recorded[k].detach() - last[k]).abs().max()) for k in names)
    if drift > 0:
        raise SystemExit(f"the replay did not reproduce the recorded theta_tau (max difference {drift:.3g})")
    print(f"{name} seed {seed}: replay {seconds:.0f} s, theta_tau reproduced exactly", flush=True)

    params = {k: v.detach() for k, v in recorded.items()}
    with torch.no_grad():
        z = model(targets.x)

    def logits(q: dict[str, torch.Tensor]) -> torch.Tensor:
        return functional_call(model, q, (targets.x,))

    shift = vmap(lambda d: jvp(logits, (params,), (d,))[1])(dp)  # [K, T, C]: d z / d w_k

    def predict(masks: torch.Tensor, cols: torch.Tensor, sh: torch.Tensor) -> torch.Tensor:
        removed = (~masks).float()
        zz = z[None, cols] - torch.einsum("sk,ktc->stc", removed, sh[:, cols])
        return M.losses(zz, targets.y[cols])

    out = v.baselines(dm, "metagradient")
    for i, s0 in enumerate(args.starts):
        sh = shift[i * K:(i + 1) * K]
        out[f"from epoch {s0}"] = score(lambda k, sel, sh=sh: predict(k, sel, sh))
    out["replay seconds"] = (round(seconds, 1), 0.0)
    return out


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/metagradient",
                                            "digits-convnet-K40-momentum-wd", options=options)
    rows = [r for r in next(iter(results.values())) if r != "replay seconds"]
    lines = ["# Exact first-order removal along the recorded training run (diagnostic)", "",
             f"Command: `python benchmarks/metagradient.py {' '.join(sys.argv[1:])}`; seed {args.seed}, validation "
             "targets; LDS / other-class LDS against the retrains in the target's data order.", "",
             "| configuration | replay seconds | " + " | ".join(rows) + " |", "|---|---|" + "---|" * len(rows)]
    for n in names:
        lines.append(f"| {n} | {results[n]['replay seconds'][0]:.0f} | "
                     + " | ".join(f"{results[n][r][0]:+.3f} / {results[n][r][1]:+.3f}" for r in rows) + " |")
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
