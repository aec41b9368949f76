"""Does the body's share of the model's tangent kernel predict the emulation's best damping? (a diagnostic)

The Newton step DDM emulates a removal with moves the last layer only, on theta_tau's features. Retraining moves
the features too: linearised around theta_tau, its function-space response is governed by the whole network's
tangent kernel ``J J^T = J_head J_head^T + J_body J_body^T``, of which the head's part is all the step sees. Where the
body's part is large, the step sees too little curvature, which a larger damping would stand in for. This reads,
at theta_tau on 512 training samples and without any retrain:

* ``ntk``: tr(J_body J_body^T) / tr(J_head J_head^T) of the logits (Rademacher probes for the body's trace);
* ``grad``: the same ratio for the per-sample loss gradients (the residual-weighted kernel);
* ``drift``: how far the features moved over the last half of training, ``||phi_tau - phi_{tau/2}|| / ||phi_tau||``
  (relative Frobenius norm over the samples);

beside the best ``emulate.damping_scale`` on the matrix's halves (``damping-calibration-*.json``).

    python benchmarks/feature_share.py --configs fmnist-convnet-K100-sgd,fmnist-mlp-K40-sgd --seed 0
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch.func import functional_call, grad, vmap

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

from ddm.distill.head import Head  # noqa: E402

SAMPLES = 512
PROBES = 4


def shares(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    model = model.eval()
    head = Head.of(model)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    hw, hb = head.param_names
    body = {k: v for k, v in params.items() if k not in (hw, hb)}
    rest = {k: v for k, v in params.items() if k in (hw, hb)}

    def logits(b: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return functional_call(model, ({**b, **rest}, buffers), (xi[None],))[0]

    def probe(b: dict[str, torch.Tensor], xi: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (logits(b, xi) * v).sum()

    def loss(b: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits(b, xi)[None], yi[None])

    def sq(g: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(t.flatten(1).pow(2).sum(1) for t in g.values())  # type: ignore[return-value]

    gen = torch.Generator().manual_seed(0)
    body_ntk, body_grad = torch.zeros(len(x)), torch.zeros(len(x))
    for s in range(0, len(x), 64):
        xb, yb = x[s:s + 64], y[s:s + 64]
        for _ in range(PROBES):
            with torch.no_grad():
                c = logits(body, xb[0]).shape[0]
            v = torch.randint(0, 2, (len(xb), c), generator=gen).float() * 2 - 1
            body_ntk[s:s + 64] += sq(vmap(grad(probe), in_dims=(None, 0, 0))(body, xb, v)) / PROBES
        body_grad[s:s + 64] = sq(vmap(grad(loss), in_dims=(None, 0, 0))(body, xb, yb))
    with torch.no_grad():
        h = head.features(x)
        out = model(x)
        r = torch.softmax(out, 1) - torch.nn.functional.one_hot(y, out.shape[1]).float()
    c = out.shape[1]
    head_ntk = c * h.pow(2).sum(1)
    head_grad = h.pow(2).sum(1) * r.pow(2).sum(1)
    return {"ntk": float(body_ntk.sum() / head_ntk.sum()), "grad": float(body_grad.sum() / head_grad.sum())}


def run(name: str, seed: int, root: Path, args: Any) -> dict[str, Any]:
    cfg, data, folder, dm, cache = M.open_run(root, name, seed)
    idx = torch.randperm(len(data.train.x), generator=torch.Generator().manual_seed(1))[:SAMPLES]
    x, y = data.train.x[idx], data.train.y[idx]
    out = shares(dm.model, x, y)
    head = Head.of(dm.model.eval())
    traj = dm.trajectory
    n = len(traj)
    with torch.no_grad():
        last = head.features(x)
        mid = head.features(x, traj.checkpoint((n - 1) // 2))
    out["drift"] = float((last - mid).norm() / last.norm())
    print(name, seed, out, flush=True)
    return out


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/feature-share", "fmnist-mlp-K40-sgd")
    rows = ["body / head kernel trace", "body / head loss-gradient energy", "feature drift"]
    lines = M.diagnostic_head("The body's share of the tangent kernel and the features' drift (diagnostic)", args,
                              f"theta_tau on {SAMPLES} training samples (drift: from the middle checkpoint)", rows)
    lines += [f"| {n} | {r['ntk']:.2f} | {r['grad']:.2f} | {r['drift']:.3f} |" for n, r in results.items()]
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
