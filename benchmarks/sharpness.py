"""Is the schedule effect's regime the edge of stability? The effective learning rate times the top Hessian eigenvalue
at theta_tau, per run (a diagnostic, no retrain).

The weight-decayed and cosine digits ConvNets rank other classes' groups the wrong way round because a retrain with
fewer steps ends worse at their rate ("What sets the weight-decayed ConvNet apart"); ``ddm check`` detects it with
retrains. A retrain-free detector would let the default add the schedule term where it belongs. This measures one
candidate: lr / (1 - momentum) times the top eigenvalue of the full network's training-loss Hessian (1,000 training
samples, 25 power iterations), which reaches 2 at the edge of stability of plain SGD. Runs are ``NAME:SEED``.

    python benchmarks/sharpness.py --root runs/matrix-b digits-convnet-K40-momentum-wd:0 digits-convnet-K100-sgd:3 \\
        --out benchmarks/results/sharpness
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.func import functional_call, grad, jvp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402


def top_eigenvalue(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, iters: int = 25) -> float:
    """The top eigenvalue of the mean cross-entropy's Hessian in every parameter, by power iteration on HVPs."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def loss(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(functional_call(model, {**p, **buffers}, (x,)), y)

    g = torch.Generator().manual_seed(0)
    v = {k: torch.randn(p.shape, generator=g) for k, p in params.items()}
    lam = 0.0
    for _ in range(iters):
        norm = torch.sqrt(sum((t ** 2).sum() for t in v.values()))
        v = {k: t / norm for k, t in v.items()}
        hv = jvp(grad(loss), (params,), (v,))[1]
        lam = float(sum((a * b).sum() for a, b in zip(v.values(), hv.values(), strict=True)))
        v = hv
    return lam


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="NAME:SEED")
    p.add_argument("--root", default="runs/matrix-b")
    p.add_argument("--out", default="runs/probe/sharpness")
    args = p.parse_args()
    torch.set_num_threads(1)
    lines = ["# Effective learning rate x top Hessian eigenvalue at theta_tau (diagnostic)", "",
             f"Command: `python benchmarks/sharpness.py {' '.join(sys.argv[1:])}`; 1,000 training samples, full "
             "network, 25 power iterations; lr and momentum as the trajectory recorded them (a cosine schedule's "
             "peak rate).", "", "| run | optimizer | lr / (1 - momentum) | top eigenvalue | product |",
             "|---|---|---|---|---|"]
    results = {}
    for spec in args.runs:
        name, seed = spec.split(":")
        cfg, data, _, dm, _ = M.open_run(Path(args.root), name, int(seed))
        idx = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:1000]
        lam = top_eigenvalue(dm.model.eval(), data.train.x[idx], data.train.y[idx])
        opt = dm.trajectory.optimizer or {}
        lr_eff = float(opt.get("lr", cfg.train.lr)) / (1 - float(opt.get("momentum") or 0.0))
        results[spec] = {"optimizer": opt, "lr_eff": lr_eff, "top_eigenvalue": lam, "product": lr_eff * lam}
        desc = f"{opt.get('type')}" + "".join(f", {k} {opt[k]}" for k in ("momentum", "weight_decay", "schedule")
                                              if opt.get(k))
        lines.append(f"| {name} s{seed} | {desc} | {lr_eff:.3g} | {lam:.2f} | {lr_eff * lam:.2f} |")
        print(lines[-1], flush=True)
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
