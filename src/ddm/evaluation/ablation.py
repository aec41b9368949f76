"""Ablation of DDM's design choices against exact retraining (issue "make DDM's attributions faithful").

Every variant is a flat DDM (no hierarchy) on the evaluation's own target model and groups, so it is
scored on the retrains that ``ddm evaluate`` caches under ``<root>/seed<S>/retrain``. For each seed
and variant: the fine-tune learning rate is chosen among ``tune`` by group-level LDS on the
*validation* targets and subsets (the same procedure as the protocol); then the reported LDS (reported
targets x ``lds_subsets`` half subsets) and Dist1 x100 of the retrain without the group ranked first,
ranked two ways: by the Dist1 objective's attribution (the paper's) and by the largest absolute weight on
the target's loss (how the peers pick).
Costs: distillation seconds (offline), online seconds of one attribution of the reported targets, and
what the method stores per group.

``first-order`` is not a DDM: it emulates removal by moving theta_tau by the deleted groups'
accumulated training updates (``ddm.distill.matching.removal_displacements``), with no synthetic data.
A synset that fine-tunes theta_tau exactly along those updates would reach its score, so it bounds
what better matching can buy; it stores a full parameter vector per group.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch.func import functional_call

from ddm import data as data_mod
from ddm import devices, models
from ddm import objectives as objective_registry
from ddm.attribution.fit import fit_attribution
from ddm.attribution.matrix import AttributionMatrix
from ddm.baselines.peers import predicted_loss
from ddm.baselines.simple import random_choice
from ddm.config import RunConfig, fingerprint
from ddm.data.dataset import Split
from ddm.distill.matching import removal_displacements
from ddm.emulate.perturbations import sample_perturbations
from ddm.evaluation.metrics import dist_metrics, lds
from ddm.evaluation.privacy import synset_similarity
from ddm.evaluation.protocol import (
    EvalConfig,
    _peer_group_scores,
    _Truth,
    _tune,
    choose_multiplier,
    seeded,
    split_targets,
    subset_losses,
)
from ddm.exceptions import ConfigError
from ddm.pipeline import DistilledDatamodel, online_seconds
from ddm.presets import RECIPES
from ddm.workspace import atomic_write_text, cached_json, save_json

#: name -> (overrides, description): the distillation recipes (``ddm.presets.RECIPES``) plus
#: ``first-order``, which is special-cased (no synset).
VARIANTS: dict[str, tuple[list[str], str]] = {
    **RECIPES,
    "local-free-linear": ([*RECIPES["local-free"][0], "emulate.method=linear"],
                          "the local-free synset, emulated by one first-order step (no fine-tuning)"),
    "local-free-noise": ([*RECIPES["local-free"][0], "distill.init=noise"],
                         "local-free with synthetic images initialised from noise, not from a member"),
    "local-free-ipc5-linear": ([*RECIPES["local-free-ipc5"][0], "emulate.method=linear"],
                               "the local-free-ipc5 synset, emulated by one first-order step"),
    "first-order": ([], "no synset: theta_tau moved by the deleted groups' accumulated updates (ceiling)"),
}


def _workspace(name: str) -> str:
    """The variant's workspace folder: a variant that only emulates differently (``emulate.*`` overrides on
    top of another variant's) shares that variant's, and so its synset."""
    distill = [o for o in VARIANTS[name][0] if not o.startswith("emulate.")]
    return next((v for v, (o, _) in VARIANTS.items() if v != name and o == distill and o), name)


#: bumped when a result gains a field, so older stored results are recomputed (from the cached stages)
_RESULT_VERSION = 2


def _variant_dm(root: Path, base: RunConfig, data: Any, seed: int, name: str) -> DistilledDatamodel:
    """The variant's flat DDM in its workspace, fitted (from cache when done) up to its synset, or up to
    its groups for ``first-order``."""
    cfg = seeded(base, seed).with_overrides(["hierarchical=false", *VARIANTS[name][0]])
    dm = DistilledDatamodel(root / f"seed{seed}" / "ablation" / _workspace(name), cfg)
    return dm.fit(models.build(cfg.model, data), data.train, until="groups" if name == "first-order" else "synset")


def _setup(root: Path, base: RunConfig, data: Any, ecfg: EvalConfig, rows: torch.Tensor, seed: int,
           name: str) -> tuple[DistilledDatamodel, _Truth, torch.Tensor, torch.Tensor]:
    """The variant's DDM (fitted; up to its groups for ``first-order``), its ground truth, LDS subsets
    ``[M, K]`` (keep masks) and the retrained losses ``[M, T]`` of the reported targets."""
    dm = _variant_dm(root, base, data, seed, name)
    truth = _Truth(root / f"seed{seed}", dm, data)
    assert dm.groups is not None
    keep, actual = subset_losses(truth, dm.groups.num_groups, ecfg.lds_subsets, ecfg.lds_keep, 10_000 + seed, rows,
                                 data.test.y[rows], "LDS retrains")
    return dm, truth, keep, actual


def first_order_logits(model: torch.nn.Module, theta: dict[str, torch.Tensor], delta: dict[str, torch.Tensor],
                       keep: torch.Tensor, x: torch.Tensor, mult: float = 1.0) -> torch.Tensor:
    """Logits ``[P, N, C]`` of ``theta + mult * sum_{k deleted} delta_k`` for every keep mask ``[P, K]``."""
    with torch.no_grad():
        return torch.stack([
            functional_call(model, {n: theta[n] + mult * torch.einsum("k,k...->...", (~k).float(), d)
                                    for n, d in delta.items()}, (x,)) for k in keep])


def _first_order(dm: DistilledDatamodel, targets: Split, mult: float, delta: dict[str, torch.Tensor],
                 objectives: tuple[str, ...] = ("dist2",)) -> list[AttributionMatrix]:
    """Attributions (one per objective, from the same emulated models) with removal emulated as
    ``theta_tau + mult * sum_deleted Delta_k`` (same P, fit as DDM)."""
    assert dm.model is not None and dm.trajectory is not None and dm.groups is not None
    e = dm.config.emulate
    K = dm.groups.num_groups
    keep = sample_perturbations(K, e.num_perturbations or 2 * K, e.keep_prob, e.seed)
    out = []
    t0 = time.perf_counter()
    logits = first_order_logits(dm.model, dm.trajectory.final, delta, keep, targets.x, mult)
    for name in objectives:
        obj = objective_registry.get(name)
        attr = fit_attribution(keep, obj.outputs(logits, targets.y), obj, dm.groups, targets.index.tolist(),
                               logits.shape[-1], e.weighting, e.ridge, {"perturbations": len(keep)},
                               targets.y if obj.per_target else None, e.other_class_scale)
        seconds = time.perf_counter() - t0  # the first also carries the emulation's time
        attr.meta = {**(attr.meta or {}), "seconds": seconds, "compute_seconds": seconds,
                     "overhead_seconds": seconds, "emulations": {}}
        out.append(attr)
        t0 = time.perf_counter()
    return out


def _variant_seed(root: Path, base: RunConfig, data: Any, rows: torch.Tensor, val: torch.Tensor, ecfg: EvalConfig,
                  seed: int, name: str) -> dict[str, Any]:
    dm, truth, keep, actual = _setup(root, base, data, ecfg, rows, seed, name)
    assert dm.model is not None and dm.trajectory is not None and dm.groups is not None
    targets = data.test[rows]
    out: dict[str, Any] = {}
    if name == "first-order":
        t0 = time.perf_counter()
        delta = removal_displacements(dm.model, dm.trajectory, data.train, dm.groups, data.num_classes,
                                      dm.config.train.batch_size)
        out["offline_s"] = time.perf_counter() - t0
        out["stored_floats_per_group"] = sum(d[0].numel() for d in delta.values())
        vkeep, vactual = subset_losses(truth, dm.groups.num_groups, ecfg.tune_subsets, ecfg.lds_keep, 20_000 + seed,
                                       val, data.test.y[val], "validation retrains")
        out["tuning"] = choose_multiplier(ecfg.tune, lambda m: lds(
            _first_order(dm, data.test[val], m, delta)[0].predict(vkeep)[..., 0], vactual)[0])
        attr, pick_attr = _first_order(dm, targets, out["tuning"]["chosen_multiplier"], delta, ("dist2", "dist1"))
        out["online_s"] = online_seconds([attr, pick_attr])
    else:
        out["tuning"] = _tune(dm, truth, data, val, ecfg, seed)
        attr = dm.attribute(targets, "dist2", name=f"ablation-{name}-dist2")
        pick_attr = dm.attribute(targets, "dist1", name=f"ablation-{name}-dist1")
        out["offline_s"] = float(dm.ws.require("synset")["seconds"])
        out["online_s"] = online_seconds([attr, pick_attr])
        s = dm.fitted().synset
        learned = s.label_logits is not None or s.free_targets is not None
        # images plus learned label vectors (a hard label is the group's class: nothing to store)
        out["stored_floats_per_group"] = int(s.images[0].numel() + (s.targets()[0].numel() if learned else 0))
    out["lds"] = lds(attr.predict(keep)[..., 0], actual)[0]
    out["dist1"] = _dist1(dm, truth, data, rows, pick_attr.ranking_all()[:, 0])
    # the peers' pick: the largest |effect on the target's loss| (one signed weight per group, where the
    # Dist1 objective's norm over all class outputs also sums their estimation noise)
    out["dist1_loss"] = _dist1(dm, truth, data, rows, attr.scores.abs().argmax(1))
    return out


def _dist1(dm: DistilledDatamodel, truth: _Truth, data: Any, rows: torch.Tensor, picks: torch.Tensor) -> float:
    """Mean Dist1 x100 between the target model and its retrain without each target's picked group."""
    assert dm.model is not None
    full = devices.predict(dm.model, data.test.x[rows])
    removed = torch.stack([truth.test([int(g)])[r] for r, g in zip(rows.tolist(), picks.tolist(), strict=True)])
    return 100 * float(dist_metrics(removed, full, data.test.y[rows])["dist1"].mean())


def _references(root: Path, base: RunConfig, data: Any, rows: torch.Tensor, ecfg: EvalConfig,
                seed: int) -> dict[str, dict[str, Any]]:
    """Random picks and the peers (cached by the protocol's ``--peers`` run when it exists)."""
    dm, truth, keep, actual = _setup(root, base, data, ecfg, rows, seed, "first-order")
    assert dm.model is not None and dm.trajectory is not None and dm.groups is not None
    random_dist1 = _dist1(dm, truth, data, rows, random_choice(len(rows), dm.groups, seed))
    out: dict[str, dict[str, Any]] = {"Random": {"dist1": random_dist1, "dist1_loss": random_dist1}}
    fitted = SimpleNamespace(model=dm.model, trajectory=dm.trajectory, groups=dm.groups)  # peers need no synset
    for method in ecfg.peers:
        g, seconds = _peer_group_scores(root / f"seed{seed}", method, fitted, data.train, data.test[rows], rows)
        out[method] = {"lds": lds(predicted_loss(g, keep), actual)[0],
                       "dist1_loss": _dist1(dm, truth, data, rows, g.abs().argmax(1)), "online_s": seconds,
                       "offline_s": 0.0}
    return out


def _privacy(root: Path, base: RunConfig, data: Any, seed: int, name: str) -> dict[str, float]:
    """How much the variant's synset reveals: mean cosine of each synthetic image to its nearest training
    image (1 = a copy), from the cached synset."""
    return {"nearest_cosine": synset_similarity(_variant_dm(root, base, data, seed, name).fitted().synset,
                                                data.train.x)}


def _cached(path: Path, inputs: tuple, compute: Any, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """``compute()``, reused from ``path`` when made from the same inputs (seeds and variants can run as
    separate processes; a final call gathers them). ``ignore``: evaluation settings the result does not
    depend on."""
    base, ecfg, *rest = inputs
    unused = ("seeds", "plots", "diagnose", "logo", *ignore)
    settings = {k: v for k, v in ecfg.__dict__.items() if k not in unused}
    return dict(cached_json(path, fingerprint(base.key_dict(), settings, rest, _RESULT_VERSION), compute))


def ablate(root: str | Path, base: RunConfig, ecfg: EvalConfig, variants: list[str]) -> dict[str, Any]:
    """Score every variant on every seed; writes ``ablation.json`` and ``ablation.md`` in ``root``."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown ablation variant(s) {unknown}; choose from: {', '.join(VARIANTS)}")
    if not ecfg.tune:
        raise ConfigError("the ablation chooses each variant's fine-tune rate on validation targets: give --tune")
    root = Path(root)
    data = data_mod.load(base.data)
    rows, val = split_targets(len(data.test), ecfg.num_targets)
    t0 = time.perf_counter()
    per_seed: dict[int, dict[str, Any]] = {}
    for seed in ecfg.seeds:
        per_seed[seed] = _cached(root / f"seed{seed}" / "ablation" / "references.json", (base, ecfg, seed),
                                 lambda seed=seed: _references(root, base, data, rows, ecfg, seed))
        for v in variants:
            folder = root / f"seed{seed}" / "ablation" / v
            per_seed[seed][v] = _cached(folder / "result.json", (base, ecfg, seed, VARIANTS[v][0]),
                                        lambda s=seed, v=v: _variant_seed(root, base, data, rows, val, ecfg, s, v),
                                        ignore=("peers",))  # adding a reference peer keeps the variant rows
            if v != "first-order":  # stored apart, so results made before this column stay valid
                per_seed[seed][v] = {**per_seed[seed][v], **_cached(
                    folder / "privacy.json", (base, ecfg, seed, VARIANTS[v][0]),
                    lambda s=seed, v=v: _privacy(root, base, data, s, v), ignore=("peers", "tune"))}
    result = {"dataset": data.summary(), "config": base.to_dict(), "eval": ecfg.__dict__, "variants": variants,
              "seconds": time.perf_counter() - t0, "per_seed": per_seed}
    save_json(root / "ablation.json", result)
    atomic_write_text(root / "ablation.md", ablation_markdown(result))
    return result


def validation_lds(row: dict[str, Any]) -> float:
    """The validation LDS at the fine-tune rate the validation chose."""
    t = row["tuning"]
    return float(t["validation_lds"][f"{t['chosen_multiplier']:g}"])


def _ms(values: list[float], fmt: str) -> str:
    if not values:
        return "–"
    m = fmt.format(float(np.mean(values)))
    return m if len(values) == 1 else f"{m} ± {fmt.replace('+', '').format(float(np.std(values)))}"


def _seconds(values: list[float]) -> str:
    """Seconds, with a decimal while they are below 10 (a linear emulation takes a fraction of one)."""
    return _ms(values, "{:.1f}" if values and max(values) < 10 else "{:.0f}")


def _images_per_group(name: str) -> int:
    return RunConfig().with_overrides(list(VARIANTS[name][0])).distill.ipc if name in VARIANTS else 1


def ablation_markdown(result: dict[str, Any]) -> str:
    seeds = list(result["per_seed"])
    names = list(next(iter(result["per_seed"].values())))
    out = [f"Data: {result['dataset']}. Seeds {', '.join(map(str, seeds))} (mean ± std over seeds). LDS on "
           f"{result['eval']['num_targets']} reported targets x {result['eval']['lds_subsets']} half subsets; "
           "Dist1 x100 of the retrain without the group ranked first by the Dist1 objective's attribution, or "
           "by the largest absolute weight on the target's loss (the peers' pick); fine-tune rate multiplier "
           "chosen per seed on validation targets (shown as chosen values); nearest-image cosine: mean "
           "similarity of each synthetic image to its nearest training image (1 = a copy).", "",
           "| method | what | validation LDS | LDS | Dist1 x100, Dist1-objective pick | Dist1 x100, abs(loss) pick | "
           "chosen lr x | offline s | online s | floats stored per group | nearest-image cosine |", "|" + "---|" * 11]
    best: dict[int, tuple[str, float]] = {}  # images per group -> the best variant there, its validation LDS
    for n in names:
        rs = [result["per_seed"][s][n] for s in seeds]
        what = VARIANTS[n][1] if n in VARIANTS else ("peer (ddm.baselines.peers)" if n != "Random" else
                                                     "uniformly random group")
        chosen = ",".join(f"{r['tuning']['chosen_multiplier']:g}" for r in rs if "tuning" in r) or "–"
        stored = rs[0].get("stored_floats_per_group")
        val = [validation_lds(r) for r in rs if "tuning" in r]
        ipc = _images_per_group(n)
        if val and n in VARIANTS and n != "first-order" and float(np.mean(val)) > best.get(ipc, ("", -2.0))[1]:
            best[ipc] = (n, float(np.mean(val)))
        out.append(f"| {n} | {what} | {_ms(val, '{:+.2f}')} | {_ms([r['lds'] for r in rs if 'lds' in r], '{:+.2f}')} | "
                   f"{_ms([r['dist1'] for r in rs if 'dist1' in r], '{:.1f}')} | "
                   f"{_ms([r['dist1_loss'] for r in rs if 'dist1_loss' in r], '{:.1f}')} | {chosen} | "
                   f"{_seconds([r['offline_s'] for r in rs if 'offline_s' in r])} | "
                   f"{_seconds([r['online_s'] for r in rs if 'online_s' in r])} | "
                   f"{stored if stored is not None else '–'} | "
                   f"{_ms([r['nearest_cosine'] for r in rs if 'nearest_cosine' in r], '{:.2f}')} |")
    if best:
        out += ["", "Highest mean validation LDS among the DDM variants on these seeds, per synset budget "
                    "(validation targets and subsets only; the reported columns play no part): "
                    + "; ".join(f"{ipc} image{'s' if ipc > 1 else ''} per group: **{n}** ({v:+.2f})"
                                for ipc, (n, v) in sorted(best.items())) + "."]
    out += ["", f"Total time: {result['seconds']:.0f} s."]
    return "\n".join(out) + "\n"
