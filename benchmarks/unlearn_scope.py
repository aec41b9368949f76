"""Can a Newton step over more than the last layer unlearn what the last layer cannot? (a diagnostic, not a default)

DDM's unlearning misses the draws that remove half of one class's groups: retraining loses that class's removed
modes, a last-layer step at theta_tau keeps them, and so does the last layer retrained exactly on the kept data
(``unlearn_references.py``). With no synsets anywhere (the deleted groups' *real* summed gradient, the *real* kept
data's Gauss-Newton matrix at the rewound checkpoint, as ``emulate.unlearn_rewind`` picks it), this takes the damped
step ``(G_keep + lambda I)^-1 g_del / N`` (lambda = ``--dampings`` x G_keep's top eigenvalue + the weight decay; the
removed samples' share of the decay added to g_del) over the last layer (``head``), over the last block and the
head (``block``, :func:`ddm.distill.scope.scope_names`) and, with ``--scopes``, over every parameter (``all``),
matrix-free (conjugate gradients on Jacobian-vector
products), and reports test accuracy, the accuracy of the removed groups' classes and agreement with the exact
retrain, beside exact retraining (target order; mean logits of two other orders), the rewind alone and DDM's
``unlearn``, on matrix.py's three 4-group draws.

    python benchmarks/unlearn_scope.py --configs fmnist-mlp-K40-sgd,digits-convnet-K40-momentum-wd --seeds 0,3 \
        --out benchmarks/results/unlearn-scope
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call, jvp, vjp

from ddm import progress
from ddm.distill.scope import scope_names
from ddm.models import with_params

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402

Params = dict[str, torch.Tensor]


def _dot(a: Params, b: Params) -> torch.Tensor:
    return sum(((a[k] * b[k]).sum() for k in a), torch.tensor(0.0))


def _axpy(a: float | torch.Tensor, x: Params, y: Params) -> Params:
    return {k: a * x[k] + y[k] for k in x}


def ggn(model: torch.nn.Module, params: Params, scope: list[str], x: torch.Tensor, n: int, chunk: int = 512):
    """The matrix-vector product of the cross-entropy's Gauss-Newton matrix over ``scope`` summed over ``x`` and
    divided by ``n`` (the full training set's size: the kept data's share of the mean loss's curvature)."""
    fixed = {k: v for k, v in params.items() if k not in scope}
    free = {k: params[k] for k in scope}
    with torch.no_grad():
        probs = torch.cat([functional_call(model, params, (x[s:s + chunk],)).softmax(1)
                           for s in range(0, len(x), chunk)])

    def mv(v: Params) -> Params:
        out: Params | None = None
        for s in range(0, len(x), chunk):
            xs, ps = x[s:s + chunk], probs[s:s + chunk]

            def f(p: Params, xs: torch.Tensor = xs) -> torch.Tensor:
                return functional_call(model, {**fixed, **p}, (xs,))

            _, jv = jvp(f, (free,), (v,))
            hv = ps * jv - ps * (ps * jv).sum(1, keepdim=True)
            g = vjp(f, free)[1](hv)[0]
            out = g if out is None else {k: out[k] + g[k] for k in g}
        assert out is not None
        return {k: t / n for k, t in out.items()}

    return free, mv


def solve(mv: Any, b: Params, lam: float, iters: int = 200, tol: float = 1e-5) -> Params:
    """(mv + lam I)^-1 b by conjugate gradients."""
    x = {k: torch.zeros_like(t) for k, t in b.items()}
    r = {k: t.clone() for k, t in b.items()}
    p = {k: t.clone() for k, t in r.items()}
    rs = b2 = _dot(r, r)
    for _ in range(iters):
        ap = _axpy(lam, p, mv(p))
        alpha = rs / _dot(p, ap)
        x, r = _axpy(alpha, p, x), _axpy(-alpha, ap, r)
        new = _dot(r, r)
        if new / b2 < tol ** 2:
            break
        p, rs = _axpy(new / rs, p, r), new
    return x


def top_eigenvalue(mv: Any, like: Params, iters: int = 30) -> float:
    g = torch.Generator().manual_seed(0)
    v = {k: torch.randn(t.shape, generator=g) for k, t in like.items()}
    norm = torch.tensor(0.0)
    for _ in range(iters):
        w = mv(v)
        norm = _dot(w, w).sqrt()
        v = {k: t / norm for k, t in w.items()}
    return float(norm)


def run(name: str, seed: int, root: Path, dampings: list[float], scopes: list[str]) -> dict[str, Any]:
    cfg, data, folder, dm, cache = M.open_run(root, name, seed)
    model, traj = dm.model, dm.trajectory
    X, Y = data.train.x, data.train.y
    sizes = dm.groups.sizes().double()
    yt = data.test.y
    draws = []
    for _, rem in M.unlearning_draws(dm, int(data.num_classes))[:3]:
        gone = torch.isin(dm.groups.assignment, torch.tensor(rem))
        f = float(sizes[rem].sum() / sizes.sum())
        base = traj.at_epoch(float(traj.epochs[-1]) * (1 - f))
        ex = cache.get(rem)
        others = torch.stack([cache.get(rem, seed=s) for s in M.other_orders(seed)])
        logits = {"exact": ex, "exact, other orders (mean logits)": others.mean(0)}
        kept_logits: dict[str, torch.Tensor] = {}  # on the kept training data: what a back-off could read
        with torch.no_grad():
            logits["rewind only"] = with_params(model, base)(data.test.x)
            kept_logits["rewind only"] = with_params(model, base)(X[~gone])
            ddm_model = dm.unlearn(rem, name="unlearn-scope").eval()
            logits["DDM"] = ddm_model(data.test.x)
            kept_logits["DDM"] = ddm_model(X[~gone])
            kept_logits["target"] = model.eval()(X[~gone])
            logits["target"] = model(data.test.x)
        for scope_name in scopes:
            scope = [n for n, _ in model.named_parameters()] if scope_name == "all" else scope_names(model, scope_name)
            free, mv = ggn(model, base, scope, X[~gone], len(X))
            fixed = {k: v for k, v in base.items() if k not in scope}

            def loss(p: Params, fixed: Params = fixed, gone: torch.Tensor = gone) -> torch.Tensor:
                return F.cross_entropy(functional_call(model, {**fixed, **p}, (X[gone],)), Y[gone], reduction="sum")

            g = torch.func.grad(loss)(free)
            wd = dm.weight_decay
            if wd:
                g = {k: g[k] + wd * int(gone.sum()) * free[k] for k in g}
            top = top_eigenvalue(mv, free)
            for d in dampings:
                step = solve(mv, {k: t / len(X) for k, t in g.items()}, d * top + wd)
                with torch.no_grad():
                    moved = {**base, **{k: free[k] + step[k] for k in scope}}
                    logits[f"{scope_name} step, damping {d:g}"] = functional_call(model, moved, (data.test.x,))
                    kept_logits[f"{scope_name} step, damping {d:g}"] = functional_call(model, moved, (X[~gone],))
        classes = sorted(set(dm.groups.labels[rem].tolist()))
        rows = {}
        for tag, lg in logits.items():
            pred = lg.argmax(1)
            rows[tag] = {"test_acc": (pred == yt).float().mean().item(),
                         "class_acc": {c: (pred[yt == c] == c).float().mean().item() for c in classes},
                         "agreement": (pred == ex.argmax(1)).float().mean().item()}
            if tag in kept_logits:
                rows[tag]["kept_acc"] = (kept_logits[tag].argmax(1) == Y[~gone]).float().mean().item()
                rows[tag]["kept_loss"] = F.cross_entropy(kept_logits[tag], Y[~gone]).item()
        draws.append({"groups": rem, "group_classes": dm.groups.labels[rem].tolist(), "fraction": f, "rows": rows})
    return {"config": name, "seed": seed, "draws": draws}


def markdown(results: list[dict[str, Any]], argv: list[str]) -> list[str]:
    lines = ["# Unlearning: a Newton step over more of the network than the last layer, with real gradients", "",
             f"Command: `python benchmarks/unlearn_scope.py {' '.join(argv)}`. Per draw of 4 groups: test accuracy, "
             "the accuracy of each class a removed group belongs to (test images), agreement with the exact retrain "
             "(target order), in %.", ""]
    for r in results:
        for d in r["draws"]:
            classes = list(next(iter(d["rows"].values()))["class_acc"])
            lines += [f"**{r['config']}, seed {r['seed']}**, groups {d['groups']} (classes {d['group_classes']}, "
                      f"{100 * d['fraction']:.1f}% of the data)", "",
                      "| unlearner | test acc | " + " | ".join(f"class {c}" for c in classes)
                      + " | agreement | kept training data: acc / loss |",
                      "|---|---|" + "---|" * len(classes) + "---|---|"]
            for tag, v in d["rows"].items():
                kept = f"{100 * v['kept_acc']:.1f} / {v['kept_loss']:.3f}" if "kept_acc" in v else "–"
                lines.append(f"| {tag} | {100 * v['test_acc']:.1f} | "
                             + " | ".join(f"{100 * v['class_acc'][c]:.0f}" for c in classes)
                             + f" | {100 * v['agreement']:.1f} | {kept} |")
            lines.append("")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/results/unlearn-scope")
    p.add_argument("--root", default="runs/matrix-b")
    p.add_argument("--configs", default="fmnist-mlp-K40-sgd,digits-convnet-K40-momentum-wd")
    p.add_argument("--seeds", default="0,3")
    p.add_argument("--dampings", default="1e-3,1e-2")
    p.add_argument("--scopes", default="head,block", help="head, block (the last block and the head), all (every "
                   "parameter of the network)")
    args = p.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    dampings = [float(d) for d in args.dampings.split(",")]
    results = []
    for name in args.configs.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            results.append(run(name, seed, Path(args.root), dampings, args.scopes.split(",")))
            M.write_report(args.out, markdown(results, sys.argv[1:]), results)


if __name__ == "__main__":
    main()
