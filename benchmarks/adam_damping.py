"""Does Adam's own preconditioner shape the Newton step's damping? (a diagnostic; no default depends on it)

Gradient descent stopped early acts on a quadratic like a Newton step with a Tikhonov damping ``mu = 1 / (eta S)``
(rate eta, S steps); *preconditioned* descent (``theta -= eta P g``, Adam's ``P = 1 / (sqrt(v) + eps)``) like
``(H + mu P^-1)^-1``: a damping that is not a multiple of the identity but larger where Adam's second moment is
large. DDM's default damps isotropically (``distill.damping`` x H's top eigenvalue). With each group's *real*
last-layer gradient at theta_tau (no synsets), the exact last-layer Gauss-Newton matrix H and Adam's second moment
at the end of training (the training's resume file), this scores the removal step ``(H + Lambda)^-1 g_k / N`` read
out linearly in the targets' losses, for

* ``iso s``: ``Lambda = s top(H) I`` (the default's form; s = 1e-3 is its value);
* ``adam s``: ``Lambda = s top(P^1/2 H P^1/2) P^-1`` (the preconditioned form at the same relative size);
* ``adam 1/(eta S)``: ``Lambda = P^-1 / (eta S)``, read off the training with no choice at all;

each plus the weight decay, on the validation targets (LDS / other-class LDS), raw and with DDM's class balance
(other classes' groups at ``emulate.other_class_scale``).

    python benchmarks/adam_damping.py --configs fmnist-mlp-K40-adam,digits-alexnet-K40-adam --seed 0
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

from ddm.distill.head import Head, head_statistics  # noqa: E402
from ddm.workspace import load_tensors  # noqa: E402

SCALES = (1e-4, 1e-3, 1e-2)


def second_moment(folder: Path, head: Head) -> tuple[torch.Tensor, float]:
    """Adam's bias-corrected second moment of the head ``[C, d+1]`` (weight, then bias) and its step count."""
    state = load_tensors(folder / "ddm" / "train" / "trajectory" / "resume.safetensors")
    w, b = head.param_names
    step = float(state[f"opt/{w}/step"])
    v = torch.cat([state[f"opt/{w}/exp_avg_sq"], state[f"opt/{b}/exp_avg_sq"][:, None]], 1).double()
    return v / (1 - 0.999 ** step), step


def run(name: str, seed: int, root: Path, args: Any) -> dict[str, Any]:
    cfg, data, folder, dm, cache = M.open_run(root, name, seed)
    if cfg.train.optimizer not in ("adam", "adamw"):
        raise SystemExit(f"{name} was not trained with Adam")
    v = M.ValidationTargets(dm, cache, data, seed, halves_only=args.halves_only)
    res: dict[str, Any] = v.baselines(dm, "adam-damping")
    model = dm.model.eval()
    head = Head.of(model)
    C = int(data.num_classes)
    stats = head_statistics(head, data.train, dm.groups, C, curvature="exact", exact_limit=10 ** 6)
    H = stats.curvature.hessian.double()
    G = stats.group_grads.double()  # [K, D]
    N = stats.num_train
    wd = cfg.train.weight_decay if cfg.train.optimizer == "adam" else 0.0
    vhat, steps = second_moment(folder, head)
    pinv = (vhat.sqrt() + 1e-8).flatten()  # P^-1
    with torch.no_grad():
        phi = head.features(v.targets.x)
        logits = model(v.targets.x)
    delta = logits.softmax(1) - torch.nn.functional.one_hot(v.targets.y, C).float()
    tgrad = torch.einsum("tc,td->tcd", delta, phi).flatten(1).double()  # [T, D]
    same = M.same_class(dm.groups, v.targets.y).bool()  # [T, K]
    scale = dm.config.emulate.other_class_scale

    def scored(lam: torch.Tensor) -> dict[str, tuple[float, float]]:
        U = torch.linalg.solve(H + torch.diag(lam), G.T) / N  # [D, K]
        effect = (tgrad @ U).float()  # [T, K]: the loss change of removing each group
        balanced = torch.where(same, effect, scale * effect)
        out = {}
        for label, e in (("raw", effect), ("balanced", balanced)):
            out[label] = v.score(lambda keep, sel, e=e: (~keep).float() @ e[sel].T)
        return out

    top = float(torch.linalg.eigvalsh(H)[-1])
    ph = pinv.rsqrt()  # P^1/2
    top_p = float(torch.linalg.eigvalsh(ph[:, None] * H * ph[None, :])[-1])
    for s in SCALES:
        res[f"iso {s:g}"] = scored(torch.full_like(pinv, s * top + wd))
        res[f"adam {s:g}"] = scored(s * top_p * pinv + wd)
    lr = cfg.train.lr
    mu = 1.0 / (lr * steps)
    res["adam 1/(eta S)"] = scored(mu * pinv + wd)
    res["info"] = {"steps": steps, "lr": lr, "mu / top(PHP)": mu / top_p,
                   "P^-1 spread (max / min)": float(pinv.max() / pinv.min())}
    print(name, seed, res, flush=True)
    return res


def main() -> None:
    args, names, results = M.run_diagnostic(__doc__, run, "benchmarks/results/adam-damping",
                                            "fmnist-mlp-K40-adam", options=M.halves_only_option)
    rows = [r for r in next(iter(results.values())) if r not in ("info",)]
    lines = M.diagnostic_head("Adam's preconditioner as the Newton step's damping (diagnostic)", args,
                              "validation targets; LDS / other-class LDS; real last-layer group gradients at "
                              "theta_tau; each cell raw | with DDM's class balance (the baselines' rows: as they are)",
                              rows)
    for n in names:
        cells = []
        for r in rows:
            x = results[n][r]
            if isinstance(x, dict):
                cells.append(" \\| ".join(f"{x[k][0]:+.3f} / {x[k][1]:+.3f}" for k in ("raw", "balanced")))
            else:
                cells.append(f"{x[0]:+.3f} / {x[1]:+.3f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", *[f"* {n}: {results[n]['info']}" for n in names]]
    M.write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
