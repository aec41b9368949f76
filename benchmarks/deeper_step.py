"""Does a Newton step over more of the network than the last layer attribute better? (a diagnostic, not a default)

DDM's emulation is one damped Gauss-Newton step on the last layer. Where it misses (the ResNet's seed 2, BENCHMARKS
"Against a ground truth averaged over data orders"), the synsets were found not to be the bottleneck: the groups'
*real* last-layer gradients in their place gain little. This script asks whether the *scope* of the step is. With
each group's real gradient g_k (no synsets anywhere), it takes the step ``U_k = (G + lambda I)^-1 g_k / N`` over a
growing set of parameters (G the Gauss-Newton matrix of the mean training loss at theta_tau over that set, lambda
``--damping`` times its top eigenvalue, the head default's rule), reads each target's logits out linearly
(``z + J_target sum_{k removed} U_k``) and scores LDS and other-class LDS on the matrix's subsets and validation
targets, against retrains in the target's data order and (``--orders``) against the mean over several orders.
``--sources synset`` puts the weighted gradients of DDM's synthetic images (matched on the last layer only) over
the same scope in place of the real ones; ``--checkpoints`` averages the logit shift over theta_tau and the
earlier checkpoints the default's synset holds, each with its own Jacobians, curvature and gradients.

Scopes: ``head`` (the last layer), and for the ResNet ``last block + head``, ``last stage + head`` and ``full
network``; for the ConvNet and the MLP ``last block + head`` is the last hidden layer with the head. The
Jacobians are formed explicitly (N C x P floats: about 2.5 GB for the digits ResNet's full network).

    python benchmarks/deeper_step.py --configs digits-resnet-K40-momentum --seed 2 --orders 3 \
        --out benchmarks/results/deeper-step-resnet-seed2
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, jacrev, vmap

from ddm import progress
from ddm.distill.block import MatchSite, match_over_scope
from ddm.distill.head import init_images, slot_labels
from ddm.distill.scope import LowRankInverse, leading_eigenpairs, scope_names
from ddm.evaluation.metrics import lds

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix as M  # noqa: E402


def scopes(model: torch.nn.Module) -> dict[str, list[str]]:
    """Scope name -> the parameter names it covers, last layer first, growing toward the input: ``head`` and
    ``last block + head`` are the library's (:func:`ddm.distill.scope.scope_names`), then for the ResNet the last
    stage, and the full network."""
    names = [n for n, _ in model.named_parameters()]
    head = scope_names(model, "head")
    out = {"head": head, "last block + head": scope_names(model, "block")}
    if hasattr(model, "layers"):  # ResNet: blocks under layers.<i>
        blocks = sorted({int(n.split(".")[1]) for n in names if n.startswith("layers.")})
        shapes = dict(model.named_parameters())
        stage_width = shapes[f"layers.{blocks[-1]}.conv2.weight"].shape[0]
        stage = [b for b in blocks if shapes[f"layers.{b}.conv2.weight"].shape[0] == stage_width]
        out["last stage + head"] = [n for n in names if n.startswith("layers.") and
                                    int(n.split(".")[1]) in stage] + head
    out["full network"] = names
    return out


def jacobian(model: torch.nn.Module, params: dict[str, torch.Tensor], scope: list[str], x: torch.Tensor,
             chunk: int = 32) -> torch.Tensor:
    """``[N, C, P]``: d logits / d (the scope's parameters, flattened in ``scope``'s order) per sample."""
    fixed = {k: v for k, v in params.items() if k not in scope}
    free = {k: params[k] for k in scope}

    def f(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return functional_call(model, {**fixed, **p}, (xi[None],))[0]

    jf = vmap(jacrev(f), in_dims=(None, 0))
    parts = []
    for s in range(0, len(x), chunk):
        j = jf(free, x[s:s + chunk])
        parts.append(torch.cat([j[k].reshape(j[k].shape[0], j[k].shape[1], -1) for k in scope], -1))
    return torch.cat(parts)


def cg(matvec, b: torch.Tensor, iters: int = 300, tol: float = 1e-6) -> torch.Tensor:
    """Conjugate gradients for every column of ``b [P, R]`` at once (a symmetric positive definite ``matvec``)."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = (r * r).sum(0)
    b2 = (b * b).sum(0).clamp_min(1e-30)
    for _ in range(iters):
        ap = matvec(p)
        alpha = rs / (p * ap).sum(0).clamp_min(1e-30)
        x += alpha * p
        r -= alpha * ap
        rs_new = (r * r).sum(0)
        if bool((rs_new / b2).max() < tol ** 2):
            break
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x


def gauss_newton(J: torch.Tensor, probs: torch.Tensor) -> tuple[Callable[[torch.Tensor], torch.Tensor], float]:
    """The mean Gauss-Newton matrix-vector product ``V [P, R] -> G V`` of the cross-entropy with Jacobians
    ``J [N, C, P]`` and softmax outputs ``probs [N, C]``, and G's top eigenvalue (power iteration)."""
    N, C, P = J.shape
    Jf = J.reshape(N * C, P)

    def ggn(V: torch.Tensor) -> torch.Tensor:
        jv = (Jf @ V).reshape(N, C, -1)
        hv = probs[..., None] * jv - probs[..., None] * (probs[..., None] * jv).sum(1, keepdim=True)
        return Jf.T @ hv.reshape(N * C, -1) / N

    v = torch.randn(P, 1, generator=torch.Generator().manual_seed(0), dtype=J.dtype)
    top = 0.0
    for _ in range(50):
        w = ggn(v)
        top = float(w.norm())
        v = w / top
    return ggn, top


def steps(J: torch.Tensor, probs: torch.Tensor, G: torch.Tensor, damping: float, weight_decay: float = 0.0,
          curvature: tuple[Callable[[torch.Tensor], torch.Tensor], float] | None = None) -> tuple[torch.Tensor, float]:
    """``U [P, K]`` = (GGN + lambda I)^-1 G^T / N with lambda = damping x the GGN's top eigenvalue + the weight decay
    (curvature the loss lacks, as in the head default); and lambda. ``curvature``: :func:`gauss_newton`'s result for
    these ``J`` and ``probs``, when several solves share it."""
    ggn, top = gauss_newton(J, probs) if curvature is None else curvature
    lam = damping * top + weight_decay
    return cg(lambda V: ggn(V) + lam * V, G.T / len(J)), lam


def truncated_steps(eig: tuple[torch.Tensor, torch.Tensor], G: torch.Tensor, lam: float, N: int,
                    residual: bool) -> torch.Tensor:
    """``U [P, K]``: the damped Newton step restricted to the GGN's leading eigenvectors, ``V (S + lambda)^-1 V^T
    g / N``; with ``residual`` the rest of ``g`` is scaled by ``1 / (s_r + lambda)`` (s_r the last kept eigenvalue)
    instead of dropped."""
    s, V = eig
    c = V.T @ G.T / N  # [r, K]
    U = V @ (c / (s[:, None] + lam))
    if residual:
        U = U + (G.T / N - V @ c) / (float(s[-1]) + lam)
    return U


def run(name: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, object]:
    cfg, data, _, dm, cache = M.open_run(root, name, seed)
    wd = float(cfg.train.weight_decay)
    rows, targets = M.target_rows(data)  # the validation targets
    keep, oc_keep = M.lds_subsets(dm.groups, targets.y, seed)
    orders = [None, *M.ground_truth_orders(seed, args.orders)] if args.orders > 1 else [None]

    def truth(masks: torch.Tensor, cols: torch.Tensor) -> list[torch.Tensor]:
        each = [M.losses(cache.many([torch.nonzero(~k).flatten().tolist() for k in masks], name, seed=o)[
            :, rows[cols]], targets.y[cols]) for o in orders]
        return [each[0], torch.stack(each).mean(0)]

    every = torch.arange(len(rows))
    truths = (truth(keep, every), {c: truth(m, torch.nonzero(targets.y == c).flatten()) for c, m in oc_keep.items()})

    def score(predict: object) -> dict[str, float]:
        out = {}
        for i, tag in enumerate(["1 order", f"{len(orders)} orders"][: 1 + (len(orders) > 1)]):
            a = lds(predict(keep, every), truths[0][i])[0]  # type: ignore[operator]
            per: list[float] = []
            for c, m in oc_keep.items():
                sel = torch.nonzero(targets.y == c).flatten()
                per += lds(predict(m, sel), truths[1][c][i])[1]  # type: ignore[operator]
            out[f"LDS, {tag}"] = round(a, 3)
            out[f"other-class, {tag}"] = round(float(np.mean(per)), 3) if per else float("nan")
        return out

    res: dict[str, object] = {}
    attr = dm.attribute(targets, "dist2", name="deeper")
    res["DDM (the default: synsets, head, 3 checkpoints)"] = score(lambda k, sel: attr.predict(k)[:, sel, 0])
    same = M.same_class(dm.groups, targets.y)
    res["same class (trivial)"] = score(lambda k, sel: M.predicted_loss(same[sel], k))

    model = dm.model.eval()
    x, y = data.train.x, data.train.y
    with torch.no_grad():
        zt = model(targets.x)
    member = torch.as_tensor(dm.groups.assignment)
    K = dm.groups.num_groups
    sources = args.sources.split(",")
    dampings = [float(v) for v in args.damping.split(",")]
    # theta_tau, then (--checkpoints) the earlier checkpoints DDM's default averages its step over
    members = [{k: v.detach() for k, v in model.named_parameters()}]
    if args.checkpoints:
        members += [{k: v.detach() for k, v in dm.trajectory.params[c.index].items() if k in members[0]}
                    for c in dm.synset.checkpoints]

    ranks = [int(r) for r in args.ranks.split(",") if r]
    sx, st, sg = dm.synset.flat()
    sw = dm.synset.image_weights().reshape(-1)

    def synset_gradients(params: dict[str, torch.Tensor], pnames: list[str], images: torch.Tensor,
                         weights: torch.Tensor) -> torch.Tensor:
        """``[K, P]``: each group's weighted synset gradient over the scope (without the weight-decay share)."""
        Js = jacobian(model, params, pnames, images)
        with torch.no_grad():
            sres = (functional_call(model, params, (images,)).softmax(-1) - st) * weights.reshape(-1, 1)
        return torch.zeros(K, Js.shape[-1]).index_add_(0, sg, torch.einsum("ncp,nc->np", Js, sres))

    def prepare(params: dict[str, torch.Tensor], pnames: list[str]) -> dict[str, object]:
        """Jacobians, curvature, its leading eigenvectors and the gradients of every source at ``params``."""
        with torch.no_grad():
            probs = functional_call(model, params, (x,)).softmax(-1)
        J = jacobian(model, params, pnames, x)  # [N, C, P]
        resid = probs - F.one_hot(y, probs.shape[1]).float()  # d loss_i / d logits
        G = torch.zeros(K, J.shape[-1]).index_add_(0, member, torch.einsum("ncp,nc->np", J, resid))
        theta = torch.cat([params[k].reshape(-1) for k in pnames])
        share = dm.groups.sizes().float()[:, None] * wd * theta[None]  # each group's L2 share (decay_shares)
        grads = {"real": G}
        if "synset" in sources:  # the synsets' weighted gradients over the same scope (matched on the head only)
            grads["synset"] = synset_gradients(params, pnames, sx, sw)
        curvature = gauss_newton(J, probs)  # one power iteration for every source and damping
        want = max(ranks + ([args.rematch_rank] if "rematched" in sources else []), default=0)
        eig = leading_eigenpairs(curvature[0], J.shape[-1], want, seed=1) if want else None
        return {"params": params, "J": J, "probs": probs, "grads": grads, "share": share, "curvature": curvature,
                "eig": eig, "Jt": jacobian(model, params, pnames, targets.x)}

    def shifts(prep: dict[str, object]) -> dict[tuple[str, float, str], tuple]:
        """Each group's logit shift on the targets ``[K, T, C]`` and lambda, by (source, damping, solver)."""
        J, probs, Jt, eig, curvature = prep["J"], prep["probs"], prep["Jt"], prep["eig"], prep["curvature"]
        grads = {k: g + prep["share"] for k, g in prep["grads"].items()}  # type: ignore[attr-defined]
        out = {}
        for src in sources:
            cos = float(F.cosine_similarity(grads[src].double(), grads["real"].double(), dim=1).median())
            for d in dampings:
                U, lam = steps(J, probs, grads[src], d, wd, curvature)  # type: ignore[arg-type]  # [P, K]
                out[(src, d, "")] = (torch.einsum("tcp,pk->ktc", Jt, U), lam, cos)
                for r in ranks:
                    assert eig is not None
                    for resid in (False, True):
                        U = truncated_steps((eig[0][:r], eig[1][:, :r]), grads[src], lam, len(J), resid)
                        out[(src, d, f", top {r} eigenvectors" + (" + residual" if resid else ""))] = (
                            torch.einsum("tcp,pk->ktc", Jt, U), lam, cos)
        return out

    def rematch(preps: list[dict[str, object]], pnames: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
        """DDM's synsets (images and loss weights) matched again over the scope at every member at once, by the
        block recipe's matching (:func:`ddm.distill.block.match_over_scope`, Adam at ``--rematch-lr``): ``P_m`` is
        the damped inverse of member m's Gauss-Newton matrix in its top ``--rematch-rank`` eigenvectors, the rest at
        the last kept eigenvalue (the first ``--damping``). Returns the images, the weights and the loss at every
        step."""
        r, d = args.rematch_rank, dampings[0]
        sites = []
        for prep in preps:
            s, V = prep["eig"]  # type: ignore[misc]
            lam = d * prep["curvature"][1] + wd  # type: ignore[index]
            sites.append(MatchSite(prep["params"], LowRankInverse(s[:r], V[:, :r], lam),  # type: ignore[arg-type]
                                   prep["grads"]["real"]))  # type: ignore[index]
        labels = dm.synset.labels
        if args.rematch_init == "real":  # the head matcher's start: members of the group, even shares
            labels, shares = slot_labels(data.train, dm.groups, dm.synset.ipc)
            images = init_images(data.train, dm.groups, labels, "real", int(cfg.distill.seed))
            weights = shares
        else:
            images, weights = dm.synset.images, dm.synset.image_weights()
        images, weights, losses = match_over_scope(model, pnames, sites, images, labels, weights,
                                                   dm.synset.num_classes, args.rematch_steps, args.rematch_lr,
                                                   args.rematch_lr)
        return images.reshape(sx.shape), weights.reshape(-1), losses

    for scope, pnames in scopes(model).items():
        if args.scopes and scope not in args.scopes.split(","):
            continue
        t0 = time.perf_counter()
        preps = [prepare(p, pnames) for p in members]
        if "rematched" in sources:
            t1 = time.perf_counter()
            images, weights, losses = rematch(preps, pnames)
            res[f"rematch loss, {scope}"] = {"first": losses[0], "last": losses[-1],
                                             "seconds": round(time.perf_counter() - t1, 1)}
            print(name, seed, scope, "rematch loss", losses[0], "->", losses[-1], flush=True)
            for prep in preps:
                prep["grads"]["rematched"] = synset_gradients(prep["params"], pnames, images, weights)  # type: ignore
        each = [shifts(prep) for prep in preps]
        del preps
        P = sum(members[0][k].numel() for k in pnames)
        for (src, d, how), (_, lam, cos) in each[0].items():
            S = torch.stack([e[(src, d, how)][0] for e in each]).mean(0)  # averaged over the members

            def predict(k: torch.Tensor, sel: torch.Tensor, S: torch.Tensor = S) -> torch.Tensor:
                logits = zt[sel][None] + torch.einsum("mk,ktc->mtc", (~k).float(), S[:, sel])
                return M.losses(logits, targets.y[sel])

            where = f", {len(members)} checkpoints" if len(members) > 1 else ""
            tag = f"{src} gradients, {scope} ({P:,} parameters){where}, damping {d:g}{how}"
            res[tag] = {**score(predict), "lambda (theta_tau)": lam, "seconds": round(time.perf_counter() - t0, 1)}
            if src == "synset":
                res[tag]["gradient cosine (median)"] = round(cos, 3)
            print(name, seed, tag, res[tag], flush=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/results/deeper-step")
    p.add_argument("--root", default="runs/matrix-b")
    p.add_argument("--configs", default="digits-resnet-K40-momentum")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--orders", type=int, default=1, help="also score against the loss averaged over N data orders")
    p.add_argument("--damping", default="1e-2", help="comma-separated, relative to the top GGN eigenvalue")
    p.add_argument("--scopes", default="", help="comma-separated scope names (default: all)")
    p.add_argument("--sources", default="real,synset",
                   help="the groups' real gradients (real), DDM's synsets' (synset), DDM's synsets matched again over "
                   "the scope (rematched); comma-separated")
    p.add_argument("--ranks", default="", help="also the step restricted to the GGN's top R eigenvectors "
                   "(comma-separated R; with and without the rest of the gradient at the last eigenvalue)")
    p.add_argument("--rematch-rank", type=int, default=300, help="source 'rematched': eigenvectors in its metric")
    p.add_argument("--rematch-steps", type=int, default=200)
    p.add_argument("--rematch-init", choices=("synset", "real"), default="synset",
                   help="start from DDM's head-matched synsets, or from members of each group (the head matcher's "
                   "own start)")
    p.add_argument("--rematch-lr", type=float, default=0.01)
    p.add_argument("--checkpoints", action="store_true",
                   help="average the logit shift over theta_tau and the checkpoints DDM's default uses")
    args = p.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    names = args.configs.split(",")
    results = {n: run(n, args.seed, Path(args.root), args) for n in names}
    lines = ["# A Newton step over more of the network (diagnostic)", "",
             f"Command: `python benchmarks/deeper_step.py {' '.join(sys.argv[1:])}`; seed {args.seed}, the "
             "validation targets (test rows 50-99 of the matrix's permutation), the matrix's 40 half subsets and "
             "10 other-class subsets per class.", ""]
    for n in names:
        cols = list(dict.fromkeys(k for v in results[n].values() for k in v))  # type: ignore[union-attr]
        lines += [f"## {n}", "", "| prediction | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        plain = ("lambda (theta_tau)", "seconds", "gradient cosine (median)")
        for tag, v in results[n].items():
            lines.append(f"| {tag} | " + " | ".join(
                (f"{v[c]:.3g}" if c in plain else f"{v[c]:+.3f}") if c in v else "–"
                for c in cols) + " |")  # type: ignore[index,operator]
        lines.append("")
    M.write_report(args.out, lines, {n: results[n] for n in names})


if __name__ == "__main__":
    main()
