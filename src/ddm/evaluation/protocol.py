"""The paper's protocol against exact retraining, plus LDS, unlearning fidelity, Table 4, privacy, cost.

For every seed: the target model, its groups and the DDM variants (DDM-full, DDM-match, DDM w/o
cluster) are built in ``<root>/seed<S>/<variant>``; each method picks one group per target and
objective; the model retrained without that group gives Avgdist (Eq. 10). Reported targets are a
fixed random subset of the test split; the next ``num_targets`` of the same permutation are the
*validation* targets on which ``tune`` chooses the fine-tune learning rate (never on reported ones).
Every retrain is cached in ``<root>/seed<S>/retrain/<key>/`` and resumes after a kill.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ddm import data as data_mod
from ddm import devices, models
from ddm.baselines.peers import PeerConfig, group_scores, predicted_loss, sample_scores, timed
from ddm.baselines.simple import clustering_based, predict_based, random_choice
from ddm.baselines.unlearners import NEGGRAD_ALPHA, finetune_rest, neggrad_plus
from ddm.config import RunConfig, fingerprint
from ddm.emulate.perturbations import sample_perturbations
from ddm.evaluation.metrics import dist_metrics, lds, other_class_subsets, rank_agreement
from ddm.evaluation.privacy import synset_similarity
from ddm.evaluation.report import SAME_SEED_TOLERANCE, markdown, summarise
from ddm.evaluation.retrain import RetrainCache, Retrainer, folder_key_parts
from ddm.evaluation.unlearn import compare
from ddm.exceptions import ConfigError, NumericalError
from ddm.objectives.influence import true_label_loss
from ddm.pipeline import DistilledDatamodel, online_seconds
from ddm.presets import recipe
from ddm.progress import bar
from ddm.unlearning import unlearn_groups
from ddm.workspace import atomic_write_text, cached_json, load_tensors, save_json, save_tensors

log = logging.getLogger(__name__)
DISTS = ("dist1", "dist2", "dist3")
#: DDM-full: the configured recipe; DDM-match: the paper's plain gradient matching; w/o cluster: sequential groups
VARIANTS = {"DDM-full": [], "DDM-match": recipe("match"), "DDM w/o cluster": ["cluster.method=sequential"]}
TARGET_SEED = 12345
#: bumped when what a seed's result holds or how it is computed changes (2: honest retraining cost; 3: the trivial
#: same-class row and other-class LDS), so stored results are recomputed from the cached stages and retrains
_RESULT_VERSION = 3
DIAG_SEED = 54321


@dataclass
class EvalConfig:
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    num_targets: int = 20
    lds_subsets: int = 50
    lds_keep: float = 0.5
    logo: bool = False
    noise_seeds: int = 2
    tune: tuple[float, ...] = ()  # fine-tune lr multipliers tried on validation targets (empty: no tuning)
    tune_subsets: int = 20
    unlearn_sizes: tuple[int, ...] = (1, 5, 10)
    plots: bool = False
    peers: tuple[str, ...] = ()  # peer methods (ddm.baselines.peers.PEERS) for the Table 2 analog
    diagnose: bool = False  # Table 3 analog and label-noise detection
    noise_fraction: float = 0.1
    remove_fractions: tuple[float, ...] = (0.01, 0.1, 0.2, 0.5)
    diagnose_methods: tuple[str, ...] = ("tracin", "trak", "arnoldi", "if-explicit")
    other_class_subsets: int = 5  # per class among the targets: the other-class LDS (0: skip)
    model: str | None = None  # the user's model, an import path MODULE:FACTORY (None: the configured registered one)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ConfigError("give at least one seed")
        if (self.num_targets <= 0 or self.lds_subsets < 0 or self.noise_seeds < 0 or self.tune_subsets < 3
                or self.other_class_subsets < 0):
            raise ConfigError("num_targets must be positive, lds_subsets, other_class_subsets and noise_seeds >= 0, "
                              "tune_subsets >= 3")
        if 0 < self.lds_subsets < 4 or 0 < self.other_class_subsets < 4:
            raise ConfigError(f"lds_subsets and other_class_subsets must be 0 (skip) or at least 4 (got "
                              f"{self.lds_subsets} and {self.other_class_subsets}): a Spearman correlation over fewer "
                              "retrained subsets says nothing")
        if not 0 < self.lds_keep < 1:
            raise ConfigError("lds_keep must be in (0, 1)")
        if any(t <= 0 for t in self.tune):
            raise ConfigError("tune multipliers must be positive")
        from ddm.baselines.peers import PEERS

        unknown = [p for p in (*self.peers, *self.diagnose_methods) if p not in PEERS]
        if unknown:
            raise ConfigError(f"unknown peer method(s) {unknown}; choose from: {', '.join(PEERS)}")
        if not 0 < self.noise_fraction < 1 or not all(0 < f < 1 for f in self.remove_fractions):
            raise ConfigError("noise_fraction and remove_fractions must lie in (0, 1)")


def split_targets(num_test: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(reported, validation) row positions in the test split: disjoint, fixed, sorted."""
    if 2 * n > num_test:
        raise ConfigError(f"need {2 * n} test samples for {n} reported + {n} validation targets; test has {num_test}")
    perm = torch.randperm(num_test, generator=torch.Generator().manual_seed(TARGET_SEED))
    return perm[:n].sort().values, perm[n : 2 * n].sort().values


def build_model(cfg: RunConfig, data: Any, factory: str | None = None) -> nn.Module:
    """theta_0 of the model a run evaluates: the configured registered model, or the user's ``factory``
    (``MODULE:FACTORY``, as ``--model``) called under ``model.seed``, so that each seed has its own initial weights
    and a rerun the same ones."""
    if factory is None:
        return models.build(cfg.model, data)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.model.seed)
        return models.from_import(factory, data.num_classes, data.image_shape)


def seeded(cfg: RunConfig, seed: int) -> RunConfig:
    return cfg.with_overrides([f"{s}.seed={seed}" for s in ("model", "train", "cluster", "distill", "emulate")])


class _Truth:
    """Exact retraining for one grouping; logits on the test split then the training split."""

    def __init__(self, root: Path, dm: DistilledDatamodel, data: Any, retrain: Retrainer | None = None) -> None:
        """``retrain``: the user's own training loop (a trajectory handed in); None retrains with ddm's."""
        self.n_test = len(data.test)
        self._test: dict[tuple[tuple[int, ...], int | None], torch.Tensor] = {}
        key = fingerprint(dm.keys["train"], dm.keys["groups"], data.test.fingerprint(), *folder_key_parts(retrain))
        if dm.model is None or dm.trajectory is None or dm.groups is None:
            raise ConfigError("exact retraining needs the target model and its groups: fit up to 'groups' first")
        self.cache = RetrainCache(root / "retrain" / key, dm.model, dm.trajectory.checkpoint(0), data.train, dm.groups,
                                  dm.config.train, torch.cat([data.test.x, data.train.x]),
                                  device=devices.of(dm.model),  # where the model is placed, as the README says
                                  threads=dm.training_threads(), retrain=retrain)

    def test(self, removed: list[int], seed: int | None = None) -> torch.Tensor:
        key = (tuple(sorted(removed)), seed)
        if key not in self._test:  # Table 1 asks for the same few retrains many times
            self._test[key] = self.cache.get(removed, seed)[: self.n_test]
        return self._test[key]

    def train(self, removed: list[int]) -> torch.Tensor:
        return self.cache.get(removed)[self.n_test :]

    def many_test(self, sets: list[list[int]], desc: str) -> torch.Tensor:
        out = self.cache.many(sets, desc)
        assert out is not None
        return out[:, : self.n_test]


def _ddm_loss(attribution: Any, keep: torch.Tensor) -> torch.Tensor:
    """An attribution's predicted loss ``[M, T]`` for keep masks ``[M, K]``."""
    return attribution.predict(keep)[..., 0]


def _loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the true label: logits ``[M, T, C]`` -> ``[M, T]``."""
    return true_label_loss(logits, labels.expand(len(logits), -1))


def subset_losses(truth: _Truth, num_groups: int, subsets: int, keep_prob: float, seed: int, rows: torch.Tensor,
                  labels: torch.Tensor, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Random group subsets (keep masks ``[M, K]``, drawn from ``seed``) and the exact-retrain losses
    ``[M, T]`` of the test ``rows`` when each subset's removed groups are left out of training."""
    keep = sample_perturbations(num_groups, subsets, keep_prob, seed=seed)
    logits = truth.many_test([torch.nonzero(~k).flatten().tolist() for k in keep], desc)
    return keep, _loss(logits[:, rows], labels)


def choose_multiplier(multipliers: tuple[float, ...], score: Callable[[float], float]) -> dict[str, Any]:
    """The multiplier with the highest validation ``score`` (ties: the first), with every score."""
    scores = {m: score(m) for m in multipliers}
    best = max(scores, key=lambda m: scores[m])
    return {"validation_lds": {f"{m:g}": v for m, v in scores.items()}, "chosen_multiplier": best}


def _tune(dm: DistilledDatamodel, truth: _Truth, data: Any, val: torch.Tensor, ecfg: EvalConfig, seed: int) -> dict:
    """Choose the fine-tune learning rate by LDS on validation targets and validation subsets."""
    keep, actual = subset_losses(truth, dm.fitted().groups.num_groups, ecfg.tune_subsets, ecfg.lds_keep,
                                 20_000 + seed, val, data.test.y[val], "validation retrains")
    base = dm.train_lr  # multipliers of the training rate, whatever emulate.finetune_scale says

    def score(mult: float) -> float:
        dm.config = dm.config.with_overrides([f"emulate.finetune_lr={base * mult}"])
        return lds(dm.attribute(data.test[val], "dist2", name=f"tune-{mult:g}").predict(keep)[..., 0], actual)[0]

    out = choose_multiplier(ecfg.tune, score)
    dm.config = dm.config.with_overrides([f"emulate.finetune_lr={base * out['chosen_multiplier']}"])
    return {**out, "finetune_lr": base * out["chosen_multiplier"]}


def _leave_out(out: dict[str, Any], name: str, seed: int, exc: Exception) -> None:
    """A comparison variant that cannot run is left out of every table and said so; the default failing is an error."""
    if name == "DDM-full":
        raise exc
    log.warning("seed %d: %s is left out of every table: %s", seed, name, exc)
    out.setdefault("left_out", {})[name] = str(exc)


def _evaluate_seed(root: Path, base: RunConfig, data: Any, rows: torch.Tensor, val: torch.Tensor,
                   ecfg: EvalConfig, seed: int) -> dict:
    cfg = seeded(base, seed)
    targets = data.test[rows]
    out: dict[str, Any] = {"table1": {}, "lds": {}, "cost": {}}
    dms: dict[str, DistilledDatamodel] = {}
    for name, sets in VARIANTS.items():
        c = cfg.with_overrides(sets + [f"hierarchical={name == 'DDM-full'}"])
        dm = DistilledDatamodel(root / f"seed{seed}" / name.replace(" ", "_").replace("/", ""), c)
        try:
            dm.fit(build_model(c, data, ecfg.model), data.train)
        except ConfigError as exc:  # e.g. DDM-match's fine-tuning refuses a batch-norm model; the default may not
            _leave_out(out, name, seed, exc)
            continue
        dms[name] = dm
    full = dms["DDM-full"]
    F = full.fitted()
    truths: dict[str, _Truth] = {}
    for dm in dms.values():
        if dm.keys["groups"] not in truths:
            truths[dm.keys["groups"]] = _Truth(root / f"seed{seed}", dm, data)
    truth = truths[full.keys["groups"]]
    if ecfg.tune:
        out["tuning"] = _tune(full, truth, data, val, ecfg, seed)
        for dm in dms.values():
            dm.config = dm.config.with_overrides([f"emulate.finetune_lr={out['tuning']['finetune_lr']}"])
    attrs: dict[str, dict[str, Any]] = {}
    for name, dm in list(dms.items()):
        try:
            attrs[name] = {d: dm.attribute(targets, d) for d in DISTS}
        except NumericalError as exc:  # a comparison variant that fails is left out and said so; the default is not
            _leave_out(out, name, seed, exc)
            del dms[name]
            continue
        out["cost"][name] = {"train_s": dm.ws.require("train")["seconds"],
                             "distill_s": dm.ws.require("synset")["seconds"],
                             "attribute_s": online_seconds(list(attrs[name].values())),
                             "perturbations": (attrs[name]["dist1"].meta or {})["perturbations"],
                             "groups": dm.fitted().groups.num_groups}
    full_test = devices.predict(F.model, data.test.x)
    full_logits = full_test[rows]

    # ---- Table 1 ----------------------------------------------------------------------------
    picks: dict[str, tuple[_Truth, dict[str, torch.Tensor]]] = {
        "Random": (truth, dict.fromkeys(DISTS, random_choice(len(rows), F.groups, seed))),
        "Predict-based": (truth, dict.fromkeys(DISTS, predict_based(F.model, data.train, F.groups, targets))),
        "Clustering-based": (truth, dict.fromkeys(DISTS, clustering_based(data.train, F.groups, targets))),
    }
    for name, dm in dms.items():
        picks[name] = (truths[dm.keys["groups"]], {d: attrs[name][d].ranking_all()[:, 0] for d in DISTS})
    if ecfg.logo:
        if F.groups.num_groups > 500:  # one group per sample: a retrain per training sample
            log.warning("--logo retrains the model once per group: %d retrains (one group per sample makes that "
                        "one per training sample); they are cached and resume after a kill", F.groups.num_groups)
        logo = truth.many_test([[k] for k in range(F.groups.num_groups)], "leave-one-group-out")[:, rows]
        exact = {d: torch.stack([dist_metrics(lg, full_logits, targets.y)[d] for lg in logo], 1) for d in DISTS}
        picks["Exact leave-one-group-out (oracle)"] = (truth, {d: exact[d].argmax(1) for d in DISTS})
        out["logo_rank_agreement"] = {n: {d: rank_agreement(attrs[n][d].scores, exact[d]) for d in ("dist1", "dist2")}
                                      for n in ("DDM-full", "DDM-match") if n in attrs}
    peer_groups: dict[str, torch.Tensor] = {}
    if ecfg.peers:
        out["peer_cost"] = {}
        for method in ecfg.peers:
            peer_groups[method], out["peer_cost"][method] = _peer_group_scores(root / f"seed{seed}", method, F,
                                                                               data.train, targets, rows)
            g = peer_groups[method]
            # Dist1 rewards the largest change of the output either way; Dist2 the largest loss increase.
            picks[method] = (truth, {"dist1": g.abs().argmax(1), "dist2": g.argmax(1), "dist3": g.abs().argmin(1)})
        if ecfg.logo:
            for method, g in peer_groups.items():
                out["logo_rank_agreement"][method] = {"dist1": rank_agreement(g.abs(), exact["dist1"]),
                                                      "dist2": rank_agreement(g, exact["dist2"])}
    for method, (tr, choice) in picks.items():
        out["table1"][method] = {}
        for d in DISTS:
            pairs = zip(rows.tolist(), choice[d].tolist(), strict=True)
            removed = torch.stack([tr.test([int(g)])[r] for r, g in pairs])
            out["table1"][method][d] = 100 * float(dist_metrics(removed, full_logits, targets.y)[d].mean())

    # ---- group-level LDS ----------------------------------------------------------------------
    if ecfg.lds_subsets:
        keep, actual = subset_losses(truth, F.groups.num_groups, ecfg.lds_subsets, ecfg.lds_keep, 10_000 + seed,
                                     rows, targets.y, "LDS retrains")
        predict: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
            name: partial(_ddm_loss, attrs[name]["dist2"]) for name in ("DDM-full", "DDM-match") if name in attrs}
        for method, g in peer_groups.items():
            predict[method] = partial(predicted_loss, g)
        # the floor every method must clear: a score that only marks the groups of the target's own class
        same = (F.groups.labels[None, :] == targets.y[:, None]).float()  # [T, K]
        predict["same class (trivial)"] = partial(predicted_loss, same)
        for name, f in predict.items():
            out["lds"][name] = lds(f(keep), actual)[0]
        # within-class: subsets that keep the target's class whole (the trivial score gets 0 there)
        by_class = other_class_subsets(F.groups, targets.y.tolist(), ecfg.other_class_subsets, 30_000 + 100 * seed)
        per: dict[str, list[float]] = {name: [] for name in predict}
        for cls, masks in by_class.items():
            sel = torch.nonzero(targets.y == cls).flatten()
            logits = truth.many_test([torch.nonzero(~k).flatten().tolist() for k in masks],
                                     f"other-class retrains, class {cls}")
            oc_actual = _loss(logits[:, rows[sel]], targets.y[sel])
            for name, f in predict.items():
                per[name] += lds(f(masks)[:, sel], oc_actual)[1]
        if by_class:
            out["other_class_lds"] = {name: float(np.mean(v)) for name, v in per.items()}

    # ---- unlearning fidelity and Table 4 --------------------------------------------------------
    out["unlearning"] = _unlearning(full, dms.get("DDM-match"), truth, data, full_test, ecfg, seed)
    out["table4"] = _table4(full, dms.get("DDM-match"), data)
    if ecfg.diagnose:
        out["diagnosis"] = _diagnosis(root / f"seed{seed}", cfg, data, full, ecfg, seed)
    out["privacy"] = {name: synset_similarity(dms[name].fitted().synset, data.train.x)
                      for name in ("DDM-full", "DDM-match") if name in dms}

    # ---- noise floor and cost -------------------------------------------------------------------
    noise = {"same_seed_dist1": 100 * float(dist_metrics(truth.test([])[rows], full_logits, targets.y)["dist1"].mean())}
    others = [100 * float(dist_metrics(truth.test([], seed=1000 + i)[rows], full_logits, targets.y)["dist1"].mean())
              for i in range(ecfg.noise_seeds)]
    if others:
        noise["other_seed_dist1"] = float(np.mean(others))
    out["noise_floor"] = noise
    if noise["same_seed_dist1"] > SAME_SEED_TOLERANCE:
        log.warning("seed %d: retraining on all the data in the target's own data order does not reproduce the "
                    "target (Dist1 x100 %.2f, expected 0): every exact retrain carries nondeterminism, e.g. a thread "
                    "count other than the one the target was trained with (OMP_NUM_THREADS, torch.set_num_threads), "
                    "another device, or nondeterministic kernels. Keep them equal across runs, or read every "
                    "difference against this floor", seed, noise["same_seed_dist1"])
    # Honest accounting (issue "Fast where it counts"): a datamodel fitted from exact retrains needs about 2 K of
    # them (more perturbations than that are cheap for the Newton emulation, not work it replaces), each on the
    # data its perturbation keeps: priced at the recorded seconds of the LDS subsets' retrains when there are any.
    t_re = truth.cache.seconds([])
    if ecfg.lds_subsets:
        t_re = float(np.mean([truth.cache.seconds(torch.nonzero(~k).flatten().tolist()) for k in keep]))
    for cst in out["cost"].values():
        cst["retrain_one_s"] = t_re
        cst["retrain_equivalent_s"] = min(cst["perturbations"], 2 * cst["groups"]) * t_re
        cst["speedup_online"] = cst["retrain_equivalent_s"] / cst["attribute_s"]
        cst["speedup_with_offline"] = cst["retrain_equivalent_s"] / (cst["attribute_s"] + cst["distill_s"])
    out["test_accuracy"] = float((full_test.argmax(1) == data.test.y).float().mean())
    if ecfg.plots:
        from ddm.reporting.plots import class_heatmap, synset_grid

        folder = root / "plots"
        shown = [(f"DDM ({cfg.distill.matching} matching)", F.synset)]
        if "DDM-match" in dms:
            shown.append(("gradient matching (DDM-match)", dms["DDM-match"].fitted().synset))
        synset_grid(shown, F.groups, data, folder / f"synsets_seed{seed}.png")
        if full.class_synset is not None:
            cls = full.attribute_classes(data.test, "dist1")
            class_heatmap(cls, data.test.y, data.num_classes, folder / f"class_attribution_seed{seed}.png")
    return out


def _diagnosis(folder: Path, cfg: RunConfig, data: Any, full: DistilledDatamodel, ecfg: EvalConfig,
               seed: int) -> dict[str, Any]:
    """Table 3 analog (remove the least useful data, retrain) on clean and on label-flipped training data,
    and label-noise detection on the latter. Validation = half the test split; accuracy on the other half."""
    from ddm.diagnosis import flip_labels

    perm = torch.randperm(len(data.test), generator=torch.Generator().manual_seed(DIAG_SEED))
    val_rows, acc_rows = perm[: len(perm) // 2], perm[len(perm) // 2:]
    noisy_train, flipped = flip_labels(data.train, ecfg.noise_fraction, data.num_classes, seed=40_000 + seed)
    noisy = replace(data, train=noisy_train)
    c = cfg.with_overrides(["hierarchical=False", f"emulate.finetune_lr={full.finetune_lr}"])
    noisy_dm = DistilledDatamodel(folder / "noisy-labels", c)
    noisy_dm.fit(build_model(c, noisy, ecfg.model), noisy.train)
    return {"validation_size": len(val_rows),
            "clean": _diagnose_setting(folder / "clean", full, data, val_rows, acc_rows, ecfg, seed),
            "noisy": _diagnose_setting(folder / "noisy", noisy_dm, noisy, val_rows, acc_rows, ecfg, seed, flipped)}


def _diagnose_setting(folder: Path, dm: DistilledDatamodel, d: Any, val_rows: torch.Tensor, acc_rows: torch.Tensor,
                      ecfg: EvalConfig, seed: int, flipped: torch.Tensor | None = None) -> dict[str, Any]:
    from ddm.baselines.peers import self_influence
    from ddm.diagnosis import (
        Diagnosis,
        cleanlab_suspicion,
        detection_metrics,
        diagnose,
        from_group_scores,
        out_of_sample_probs,
    )

    F = dm.fitted()
    truth = _Truth(folder.parent, dm, d)

    def acc(logits: torch.Tensor) -> float:
        return float((logits[acc_rows].argmax(1) == d.test.y[acc_rows]).float().mean())

    g = torch.Generator().manual_seed(50_000 + seed)
    diags: dict[str, Diagnosis] = {"DDM": diagnose(dm, d.test[val_rows])}
    ddm_seconds = diags["DDM"].seconds  # from scratch, also when the emulations were cached
    diags["Random"] = Diagnosis(torch.rand(F.groups.num_groups, generator=g), F.groups, "loss", "random")
    for m in ecfg.diagnose_methods:
        scores, _ = _peer_group_scores(folder, m, F, d.train, d.test[val_rows], val_rows)
        diags[m] = from_group_scores(scores, F.groups, m)
    out: dict[str, Any] = {"accuracy_all": acc(truth.test([])), "table3": {
        m: {f"{f:.0%}": acc(truth.test(dg.worst_fraction(f))) for f in ecfg.remove_fractions}
        for m, dg in diags.items()}}
    if flipped is None:
        return out
    det: dict[str, Any] = {"DDM (group quality)": {**detection_metrics(-diags["DDM"].sample_quality(), flipped),
                                                   "seconds": ddm_seconds}}
    for m in ecfg.diagnose_methods:
        t0 = time.perf_counter()
        s = self_influence(m, F.model, F.trajectory, d.train)
        det[f"{m} (self-influence)"] = {**detection_metrics(s, flipped), "seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    probs = out_of_sample_probs(models.with_params(F.model, F.trajectory.checkpoint(0)), d.train, dm.config.train,
                                seed=seed)
    susp, _ = cleanlab_suspicion(probs, d.train.y)
    det["cleanlab (3-fold)"] = {**detection_metrics(susp, flipped), "seconds": time.perf_counter() - t0}
    det["Random"] = {**detection_metrics(torch.rand(len(flipped), generator=g), flipped), "seconds": 0.0}
    out["detection"] = det
    return out


def _peer_group_scores(folder: Path, method: str, F: Any, train: Any, targets: Any,
                       rows: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Group scores ``[T, K]`` of a peer method on the targets, cached with their wall time."""
    cfg = PeerConfig()
    key = fingerprint(method, cfg.__dict__, train.fingerprint(), rows.tolist(), F.groups.assignment.tolist(),
                      float(sum(p.double().sum() for p in F.trajectory.final.values())))
    path = folder / "peers" / f"{method}-{key}.safetensors"
    if path.exists():
        t = load_tensors(path)
        return t["group_scores"], float(t["seconds"])
    with bar(1, f"peer {method} on {len(targets)} targets") as shown:  # one step: says what runs for minutes
        scores, seconds = timed(lambda: sample_scores(method, F.model, F.trajectory, train, targets, cfg))
        shown.update()
    g = group_scores(scores, F.groups)
    save_tensors(path, {"group_scores": g, "sample_scores": scores, "seconds": torch.tensor(seconds)})
    log.info("%s: %.1f s", method, seconds)
    return g, seconds


def _unlearning(full: DistilledDatamodel, match: DistilledDatamodel | None, truth: _Truth, data: Any,
                full_test: torch.Tensor, ecfg: EvalConfig, seed: int) -> dict:
    g = torch.Generator().manual_seed(30_000 + seed)
    F = full.fitted()
    K = F.groups.num_groups
    res: dict[str, Any] = {}
    for size in ecfg.unlearn_sizes:
        removed = torch.randperm(K, generator=g)[: min(size, K - 1)].sort().values.tolist()
        gone = torch.isin(F.groups.assignment, torch.as_tensor(removed))
        rows = torch.nonzero(gone).flatten()
        forget = data.train[rows]
        ref_test, ref_forget = truth.test(removed), truth.train(removed)[rows]
        keep = ~gone
        # DDM's rows are what `ddm unlearn` does (its damping, rewind, class rule and back-off), not a bare step
        nets = {
            "no unlearning (target)": F.model,
            "DDM": full.unlearn(removed, name=f"evaluate-{len(removed)}"),
        }
        others: dict[str, Callable[[], Any]] = {}
        if match is not None:
            others["DDM-match"] = partial(match.unlearn, removed, name=f"evaluate-{len(removed)}")
        others["fine-tune on the rest (1 epoch)"] = partial(finetune_rest, F.model, F.trajectory.final, data.train,
                                                            keep, full.config.train)
        others[f"NegGrad+ {NEGGRAD_ALPHA:g} (1 epoch)"] = partial(neggrad_plus, F.model, F.trajectory.final,
                                                                  data.train, keep, full.config.train,
                                                                  alpha=NEGGRAD_ALPHA)
        for name, make in others.items():
            try:
                nets[name] = make()
            except NumericalError as exc:  # a comparison unlearner that diverges is left out of the table, said so
                log.warning("unlearning fidelity, %d groups: %s left out (%s)", len(removed), name, exc)
        row: dict[str, Any] = {"exact retrain": {
            "test": compare(ref_test, ref_test, data.test.y), "removed": compare(ref_forget, ref_forget, forget.y)}}
        with torch.no_grad():
            for name, net in nets.items():
                row[name] = {"test": compare(net(data.test.x), ref_test, data.test.y),
                             "removed": compare(net(forget.x), ref_forget, forget.y)}
        res[f"{len(removed)} groups"] = {"samples": len(rows), "unlearners": row}
    return res


def _table4(full: DistilledDatamodel, match: DistilledDatamodel | None, data: Any) -> dict:
    """Acc(theta_0)/Acc(theta_tau) as in the paper's Table 4: Normal training; DDM-match (train theta_0 on
    the whole gradient-matching synset; left out when ``match`` is None); DDM (fine-tune theta_tau on the whole
    reverse synset)."""
    from ddm.train.loop import accuracy
    from ddm.unlearning import table4

    F = full.fitted()
    t = table4(F.model, F.trajectory[0], F.trajectory.final, F.synset, data.test, full.finetune_lr,
               full.finetune_steps, full.config.emulate.group_reduction)
    out = {"Normal": {"acc_theta0": t["acc_theta0"], "acc_theta_tau": t["acc_theta_tau"]}}
    if match is not None:
        M = match.fitted()
        everything = torch.arange(M.synset.num_groups)
        trained_on_match = unlearn_groups(M.model, M.trajectory[0], M.synset, everything, match.finetune_lr,
                                          match.finetune_steps, match.config.emulate.group_reduction)
        out["DDM-match"] = {"acc_theta0": t["acc_theta0"], "acc_theta_tau": accuracy(trained_on_match, data.test)}
    out["DDM"] = {"acc_theta0": t["acc_after_whole_synset"], "acc_theta_tau": t["acc_theta_tau"]}
    return out


def _seed_result(root: Path, base: RunConfig, data: Any, rows: torch.Tensor, val: torch.Tensor, ecfg: EvalConfig,
                 seed: int) -> dict[str, Any]:
    """One seed's results, reused from ``seed<S>/result.json`` when that was made with the same settings
    (so seeds can run as separate processes and a final call only gathers them)."""
    settings = {k: v for k, v in ecfg.__dict__.items() if k != "seeds"}
    key = fingerprint(base.key_dict(), settings, rows.tolist(), val.tolist(), seed, _RESULT_VERSION)
    return dict(cached_json(root / f"seed{seed}" / "result.json", key,
                            lambda: _evaluate_seed(root, base, data, rows, val, ecfg, seed)))


def evaluate(root: str | Path, base: RunConfig, ecfg: EvalConfig) -> dict[str, Any]:
    """Run the protocol for every seed; returns per-seed results and mean/std summaries (also saved)."""
    root = Path(root)
    data = data_mod.load(base.data)
    rows, val = split_targets(len(data.test), ecfg.num_targets)
    t0 = time.perf_counter()
    per_seed = {s: _seed_result(root, base, data, rows, val, ecfg, s) for s in ecfg.seeds}
    result = {"dataset": data.summary(), "config": base.to_dict(), "eval": ecfg.__dict__,
              "targets": data.test.index[rows].tolist(), "validation_targets": data.test.index[val].tolist(),
              "seconds": time.perf_counter() - t0, "per_seed": per_seed, "summary": summarise(per_seed)}
    from ddm import distributed

    if distributed.is_main():  # under torchrun every rank holds the same result; one writes it
        save_json(root / "evaluation.json", result)
        atomic_write_text(root / "evaluation.md", markdown(result))
    return result
