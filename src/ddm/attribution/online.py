"""The online stage of :class:`~ddm.pipeline.DistilledDatamodel`: perturb the groups, emulate each perturbation's
removal (the Newton step on the last layer by default, fine-tuning for the other recipes), and fit the attribution
matrix W (weighted least squares, Eq. 7-8, or linearised above :data:`LINEARISE_ABOVE` groups); flat, class-level
and hierarchical (Sec. 3.3). Functions of the façade ``dm``, which keeps their thin methods
(:meth:`~ddm.pipeline.DistilledDatamodel.attribute`, ``attribute_classes``)."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any

import torch

from ddm import health
from ddm import objectives as objective_registry
from ddm.attribution.fit import fit_attribution
from ddm.attribution.matrix import AttributionMatrix
from ddm.attribution.memory import LINEARISED_CHUNK_BYTES, check_fit_memory, check_linearised_memory
from ddm.cluster.groups import Groups
from ddm.config import fingerprint, keyed
from ddm.data.dataset import Split
from ddm.distill.synset import Synset
from ddm.emulate.emulators import EMULATORS, Emulation
from ddm.emulate.emulators import backend as emulation_backend
from ddm.emulate.perturbations import sample_perturbations
from ddm.exceptions import ConfigError, MissingArtifactError, NumericalError
from ddm.models.checks import refuse_batchnorm
from ddm.objectives.base import Objective
from ddm.task import TemperedCrossEntropy
from ddm.workspace import load_tensors, save_tensors

if TYPE_CHECKING:
    from ddm.pipeline import DistilledDatamodel

log = logging.getLogger(__name__)

#: ``emulate.fit=auto`` fits W linearised above this many groups (the regression's P K^2 work reaches tens of seconds
#: there; measured against the regression on per-sample groups, BENCHMARKS.md "One group per sample")
LINEARISE_ABOVE = 2000
#: perturbations over which the linearised fit averages the objective's Jacobian (``emulate.num_perturbations``
#: overrides; no P >= K needed)
LINEARISED_PERTURBATIONS = 2000


def emulate(dm: DistilledDatamodel, synset: Synset, synset_key: str, deleted: torch.Tensor, targets: Split,
            tag: str, groups: Groups) -> torch.Tensor:
    """Logits ``[P, N, C]`` of the emulated models on ``targets`` (cached, resumable).

    Two caches: the logits per target set, and (fine-tuning emulations) the fine-tuned parameters per
    synset and perturbation set, so a new target set costs forward passes only."""
    assert dm.model is not None and dm.trajectory is not None
    e = dm.config.emulate
    cfg = {"emulate": keyed(e), "lr": dm.finetune_lr, "steps": dm.finetune_steps, "tag": tag}
    temperature = synset.task.temperature if isinstance(synset.task, TemperedCrossEntropy) else 1.0
    if temperature != dm.config.distill.head_temperature:
        # synsets tempered by the synset stage's own decision (distill.auto_temperature), which the stage's key,
        # made from the configuration before the decision, does not hold: a synset stage redone under another
        # threshold must not meet the emulations of the synsets it replaced
        cfg = {**cfg, "synset_temperature": temperature}
    models_key = fingerprint(cfg, synset_key, deleted.int().sum(0).tolist(), deleted.int().sum(1).tolist(),
                             hashlib.sha256(deleted.numpy().tobytes()).hexdigest())
    key = fingerprint(models_key, targets.fingerprint())
    stage = f"emulation/{key}"
    path = dm.ws.path(stage, "logits.safetensors")
    if dm.ws.is_done(stage, key, cfg):
        dm._emulations[key] = float(dm.ws.require(stage).get("seconds", 0.0))
        dm._reused.append("logits")
        return load_tensors(path)["logits"]
    method = dm.emulation_method(synset)
    if method != "newton":
        refuse_batchnorm(dm.model, f"the {method} emulation")
    if method != "newton" and not dm.task.is_default:
        raise ConfigError(f"the {method} emulation assumes cross-entropy; the custom task {dm.task.name!r} "
                          "works with the Newton emulation (emulate.method=auto or newton)")
    models_stage = f"emulation-models/{models_key}"
    params_dir = None
    if method != "newton":  # the Newton emulation needs no stored models: a matrix product per target set
        if dm.ws.is_done(models_stage, models_key, cfg):
            dm._reused.append("models")
        else:
            dm.ws.begin(models_stage, models_key, cfg)
        params_dir = dm.ws.path(models_stage, "params")
        params_dir.mkdir(parents=True, exist_ok=True)
    folder = dm.ws.begin(stage, key, cfg)
    t0 = time.perf_counter()
    logits = EMULATORS.get(method)(Emulation(
        dm.model, dm.trajectory.final, synset, deleted, targets.x, dm.finetune_lr, dm.finetune_steps,
        e.group_reduction, e.chunk_size, folder / "rows", f"emulate {tag}", e.backend, params_dir,
        dm.trajectory, dm.decay(groups) if method == "newton" else None))
    health.check_logits(logits, dm.trajectory.final, dm.model, targets.x, synset.images, method)
    save_tensors(path, {"logits": logits, "deleted": deleted})
    seconds = time.perf_counter() - t0
    if params_dir is not None and not dm.ws.is_done(models_stage, models_key, cfg):
        dm.ws.finish(models_stage, models_key, cfg, seconds=seconds, perturbations=len(deleted))
    dm.ws.finish(stage, key, cfg, seconds=seconds, perturbations=len(deleted))
    dm._emulations[key] = seconds
    dm._emulation_fresh += seconds
    return logits


def num_perturbations(dm: DistilledDatamodel, k: int, synset: Synset | None = None) -> int:
    """``emulate.num_perturbations``, or by default 2 K for fine-tuning emulations and max(2000, 10 K) for the
    Newton emulation (a matrix product each: more perturbations cost nothing and steady Eq. 8's fit)."""
    p = dm.config.emulate.num_perturbations
    if p is None:
        return max(2000, 10 * k) if dm.emulation_method(synset) == "newton" else 2 * k
    if p < k:
        raise ConfigError(f"emulate.num_perturbations={p} is below the number of groups {k}; Eq. 8 needs |P| >= K")
    return p


def attribute(dm: DistilledDatamodel, targets: Split | Any, objective: str | Objective | Any = "dist1",
              hierarchical: bool = False, name: str | None = None,
              other_class_scale: float | None = None) -> AttributionMatrix:
    """:meth:`DistilledDatamodel.attribute <ddm.pipeline.DistilledDatamodel.attribute>` (its docstring says what the
    arguments mean): the matrix checked finite, timed and saved under ``attributions/<name>``."""
    if dm.synset is None:
        raise MissingArtifactError("no synset: call fit() or load() first")
    c, h, w = (int(v) for v in dm.synset.images.shape[2:])
    if not isinstance(targets, Split):
        from ddm.data.targets import as_split

        assert dm.model is not None
        targets = as_split(targets, model=dm.model, image_shape=(c, h, w))
    obj = objective_registry.get(objective)
    if len(targets) == 0:
        raise ConfigError("no target samples given")
    dm._check_targets(targets, (c, h, w))
    if other_class_scale is not None and not 0 < other_class_scale <= 1:
        raise ConfigError(f"other_class_scale must be in (0, 1], got {other_class_scale}")
    t0 = time.perf_counter()
    dm._emulations, dm._emulation_fresh, dm._reused = {}, 0.0, []
    if hierarchical:
        attr = attribute_hierarchical(dm, targets, obj, other_class_scale)
    else:
        attr = attribute_flat(dm, targets, obj, dm.synset, dm.keys["synset"], dm.groups, "groups",
                                    scale=other_class_scale)
    wall = time.perf_counter() - t0
    # seconds: the wall time of this call (small when emulations were reused); compute_seconds: its cost
    # from scratch, cached emulations counted at their recorded time; emulations: that time per emulation
    # (attributions sharing an emulation, e.g. several objectives, pay for it once).
    attr.meta = {**(attr.meta or {}), "seconds": wall,
                 "compute_seconds": wall - dm._emulation_fresh + sum(dm._emulations.values()),
                 "overhead_seconds": wall - dm._emulation_fresh, "emulations": dict(dm._emulations),
                 "hierarchical": hierarchical, "finetune_lr": dm.finetune_lr,
                 "finetune_steps": dm.finetune_steps, "emulation": dm.emulation_method(),
                 "backend": None if dm.emulation_method() == "newton" else emulation_backend(
                     dm.config.emulate.backend),
                 # a synset that failed its health check weighs in the ranking only where its images give the
                 # step (emulate.gradients=synsets); it still carries unlearning, which says so itself
                 "flagged_groups": [] if dm.step_gradients() == "groups" else dm.flagged_groups(),
                 "reused": sorted(set(dm._reused))}
    if not (torch.isfinite(attr.weights).all() and torch.isfinite(attr.bias).all()):
        raise NumericalError(f"the {obj.name} attribution is not finite (the emulated outputs or the objective "
                             "gave NaN/inf); nothing was saved")
    attr.save(dm.ws.path("attributions", name or obj.name))
    return attr


def attribute_classes(dm: DistilledDatamodel, targets: Split,
                      objective: str | Objective | Any = "dist1") -> AttributionMatrix:
    """Class-level attribution (K = classes) with the class-level synset: the top of Sec. 3.3."""
    if dm.class_synset is None or dm.class_groups is None:
        raise MissingArtifactError("class-level attribution needs the class-level synset: call "
                                   "fit_classes(train) first (or fit with hierarchical=true)")
    return attribute_flat(dm, targets, objective_registry.get(objective), dm.class_synset,
                                dm.keys["synset-class"], dm.class_groups, "classes",
                                scale=dm.config.emulate.other_class_scale)


def attribute_flat(dm: DistilledDatamodel, targets: Split, obj: Objective, synset: Synset, synset_key: str,
                   groups: Any, tag: str, subset: torch.Tensor | None = None,
                   scale: float | None = None) -> AttributionMatrix:
    """Perturb every group, or only ``subset`` (the rest always kept); W has one column per perturbed group.
    ``scale``: the class balance of per-target objectives (None: :attr:`class_balance`)."""
    e = dm.config.emulate
    balance, setting = dm.class_balance
    if scale is not None:
        setting = "the other_class_scale argument"
    scale = (balance if scale is None else scale) if obj.per_target else 1.0
    K = synset.num_groups
    perturbed = torch.arange(K) if subset is None else subset
    averaged = dm._attribution_synset(synset, tag)
    kept = {a.index for a in averaged.checkpoints}
    left_out = [c.epoch for c in synset.checkpoints if c.index not in kept]
    if left_out:
        log.info("the step is not averaged over the checkpoint(s) at epoch %s: the synsets' steps do not transfer "
                 "there (emulate.min_transfer %.2g)", ", ".join(f"{x:g}" for x in left_out), e.min_transfer)
    ids = targets.index.tolist() if obj.per_target else [-1]
    if fit_mode(dm, obj, synset, len(perturbed)) == "linearised":
        attr = attribute_linearised(dm, targets, obj, averaged, groups, perturbed, subset, scale, ids, left_out)
        attr.meta = {**(attr.meta or {}), "class_balance_setting": setting}
        return with_schedule_term(dm, attr, targets, obj, groups, subset)
    num = num_perturbations(dm, len(perturbed), synset)
    check_fit_memory(len(perturbed), num, (len(targets) if obj.per_target else 1)
                      * len(obj.output_names(synset.num_classes)))
    keep = sample_perturbations(len(perturbed), num, e.keep_prob, e.seed)
    deleted = torch.zeros(len(keep), K, dtype=torch.bool)
    deleted[:, perturbed] = ~keep
    outputs = read_out_per_checkpoint(dm, averaged, deleted, targets, obj, groups)
    if outputs is None:
        outputs = obj.outputs(emulate(dm, averaged, synset_key, deleted, targets, tag, groups), targets.y)
    attr = fit_attribution(keep, outputs, obj, groups, ids, synset.num_classes, e.weighting, e.ridge,
                           {"perturbations": len(keep), "keep_prob": e.keep_prob,
                            "other_class_scale": scale, "class_balance_setting": setting,
                            "checkpoints_left_out": left_out},
                           targets.y if obj.per_target else None, scale, subset)
    return with_schedule_term(dm, attr, targets, obj, groups, subset)


def with_schedule_term(dm: DistilledDatamodel, attr: AttributionMatrix, targets: Split, obj: Objective,
                       groups: Groups, subset: torch.Tensor | None) -> AttributionMatrix:
    """``attr`` with ``emulate.schedule_weight`` x the schedule term (:mod:`ddm.attribution.schedule`: a retrain
    without part of the data takes fewer steps); unchanged at weight 0, the default."""
    weight = dm.config.emulate.schedule_weight
    if weight == 0:
        return attr
    from ddm.attribution.schedule import add_schedule_term, schedule_slope

    assert dm.model is not None and dm.trajectory is not None
    slope = schedule_slope(dm.model, dm.trajectory, targets.x, targets.y, obj)
    if slope is None:
        raise ConfigError(f"emulate.schedule_weight={weight:g} needs a recorded checkpoint at or before half of "
                          f"the training (epochs recorded: {dm.trajectory.epochs[1]:g} to "
                          f"{dm.trajectory.epochs[-1]:g}); set it to 0 for this workspace")
    return add_schedule_term(attr, slope, weight, groups, obj, subset)


def fit_mode(dm: DistilledDatamodel, obj: Objective, synset: Synset, k: int) -> str:
    """``emulate.fit`` resolved: ``linearised`` needs the Newton emulation read out through the logits and a
    per-target objective differentiable in them; ``auto`` takes it above :data:`LINEARISE_ABOVE` groups."""
    mode = dm.config.emulate.fit
    fits = (dm.emulation_method(synset) == "newton" and not synset.block
            and dm.config.emulate.readout == "logits" and obj.per_target and obj.differentiable)
    if mode == "linearised" and not fits:
        raise ConfigError(f"emulate.fit=linearised needs the Newton emulation (the head recipe) read out through "
                          f"the logits (emulate.readout=logits) and a per-target objective differentiable in "
                          f"them (dist1, dist2, dist3); {obj.name!r} with this synset is not: use "
                          "emulate.fit=regression")
    if mode == "auto":  # a user's callable may not be differentiable where it claims to be: regression for it
        from ddm.objectives.custom import CallableObjective

        auto = fits and not isinstance(obj, CallableObjective)
        mode = "linearised" if auto and k > LINEARISE_ABOVE else "regression"
    return mode


def attribute_linearised(dm: DistilledDatamodel, targets: Split, obj: Objective, synset: Synset, groups: Groups,
                         perturbed: torch.Tensor, subset: torch.Tensor | None, scale: float, ids: list[int],
                         left_out: list[float]) -> AttributionMatrix:
    """W from each group's Newton logit shift and the objective's Jacobian (:func:`fit_linearised`)."""
    from ddm.attribution.fit import fit_linearised
    from ddm.emulate.newton import newton_shifts, step_members

    assert dm.model is not None and dm.trajectory is not None
    e = dm.config.emulate
    K, C = synset.num_groups, synset.num_classes
    O = len(obj.output_names(C))
    check_linearised_memory(K, len(targets), O)
    keep = sample_perturbations(len(perturbed), e.num_perturbations or LINEARISED_PERTURBATIONS, e.keep_prob,
                                e.seed)
    deleted = torch.zeros(min(len(keep), 64), K, dtype=torch.bool)
    deleted[:, perturbed] = ~keep[:len(deleted)]
    t0 = time.perf_counter()
    members = step_members(dm.model, dm.trajectory.final, synset, dm.trajectory, dm.decay(groups))
    # targets in chunks, each with its own [K, chunk, C] shifts (a target's W needs only its own)
    chunk = max(1, LINEARISED_CHUNK_BYTES // (4 * K * C))
    parts = []
    for s in range(0, len(targets), chunk):
        part = targets[torch.arange(s, min(s + chunk, len(targets)))]
        z, S = newton_shifts(dm.model, dm.trajectory.final, synset, part.x, members=members)
        health.check_logits(z[None] + torch.einsum("pk,knc->pnc", deleted.float(), S), dm.trajectory.final,
                            dm.model, part.x, synset.images, "newton")
        parts.append(fit_linearised(z, S, keep, obj, part.y, groups, ids[s:s + len(part)], C, e.weighting,
                                    None, scale, subset))
        del S
    attr = parts[0]
    if len(parts) > 1:
        attr = AttributionMatrix(torch.cat([p.weights for p in parts]), torch.cat([p.bias for p in parts]),
                                 torch.cat([p.scores for p in parts]), attr.objective, attr.score_meaning,
                                 attr.output_names, ids, groups, None, None)
    attr.meta = {"perturbations": len(keep), "keep_prob": e.keep_prob, "other_class_scale": scale,
                 "checkpoints_left_out": left_out, "fit": "linearised"}
    dm._emulations["linearised"] = time.perf_counter() - t0
    dm._emulation_fresh += dm._emulations["linearised"]
    return attr


def read_out_per_checkpoint(dm: DistilledDatamodel, synset: Synset, deleted: torch.Tensor, targets: Split,
                            obj: Objective, groups: Groups) -> torch.Tensor | None:
    """The objective's outputs under ``emulate.readout=checkpoints`` (:func:`ddm.emulate.newton.newton_outputs`),
    or None where the logits readout applies (the default, another emulation, or an objective without
    per-target derivatives, which falls back with a note in the log)."""
    if dm.config.emulate.readout != "checkpoints":
        return None
    if dm.emulation_method(synset) != "newton" or not (obj.differentiable and obj.per_target):
        log.info("emulate.readout=checkpoints needs the Newton emulation and a differentiable per-target "
                 "objective (%s is not): its logits are read out instead", obj.name)
        return None
    from ddm.emulate.newton import newton_outputs

    assert dm.model is not None and dm.trajectory is not None
    labels = targets.y

    def outputs(z: torch.Tensor) -> torch.Tensor:
        return obj.outputs(z[None], labels.to(z.device))[0]

    return newton_outputs(dm.model, dm.trajectory.final, synset, deleted, targets.x, outputs,
                          trajectory=dm.trajectory, decay=dm.decay(groups))


def attribute_hierarchical(dm: DistilledDatamodel, targets: Split, obj: Objective,
                           scale: float | None = None) -> AttributionMatrix:
    """Sec. 3.3: class-level W first (without the class balance: it picks the classes), then group-level W within
    each target's top classes (with ``scale``'s balance, None: the config's)."""
    if dm.class_synset is None or dm.class_groups is None or dm.groups is None:
        raise MissingArtifactError("hierarchical attribution needs the class-level synset: call "
                                   "fit_classes(train) first (or fit with hierarchical=true)")
    e = dm.config.emulate
    top_c = min(e.top_classes, dm.class_synset.num_groups)
    cls_attr = attribute_flat(dm, targets, obj, dm.class_synset, dm.keys["synset-class"],
                                    dm.class_groups, "classes", scale=1.0)
    class_of_group = dm.class_groups.labels
    K = dm.groups.num_groups
    T = cls_attr.weights.shape[0]
    O = cls_attr.weights.shape[2]
    weights = torch.zeros(T, K, O)
    bias = torch.zeros(T, O)
    evaluated = torch.zeros(T, K, dtype=torch.bool)
    chosen = [tuple(sorted(class_of_group[cls_attr.ranking(i)[:top_c]].tolist())) for i in range(T)]
    n_perturbations = int((cls_attr.meta or {}).get("perturbations", 0))
    balance: dict[str, Any] = {}  # the group-level parts' class balance, said as a flat attribution says it
    for classes in sorted(set(chosen)):
        rows = [i for i, c in enumerate(chosen) if c == classes]
        sub = dm.groups.of_classes(list(classes))
        tsub = targets[rows] if obj.per_target else targets
        part = attribute_flat(dm, tsub, obj, dm.fitted().synset, dm.keys["synset"], dm.groups,
                                    f"classes {list(classes)}", subset=sub, scale=scale)
        n_perturbations += int((part.meta or {})["perturbations"])
        balance = {k: (part.meta or {}).get(k) for k in ("other_class_scale", "class_balance_setting")}
        for j, i in enumerate(rows):
            weights[i, sub] = part.weights[j]
            bias[i] = part.bias[j]
            evaluated[i, sub] = True
    ids = targets.index.tolist() if obj.per_target else [-1]
    return AttributionMatrix(weights, bias, obj.score(-weights), obj.name, obj.score_meaning,
                             obj.output_names(int(dm.num_classes or 0)), ids, dm.groups, evaluated,
                             {"perturbations": n_perturbations, "schedule_weight": e.schedule_weight, **balance,
                              "class_level": {"weights": cls_attr.weights.tolist(), "top_classes": chosen}})
