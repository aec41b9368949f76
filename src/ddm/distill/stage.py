"""The synset stage of :class:`~ddm.pipeline.DistilledDatamodel` (offline, once per split): distil each group's
synthetic set with the configured matcher (the head recipe by default; shared among ranks under torchrun), switch to
tempered synsets where the step agreement asks for it (:mod:`ddm.attribution.agreement`), check the synsets' health,
and store beside them the groups' own last-layer gradients that the attribution's Newton step reads
(``emulate.gradients=groups``). Functions of the façade ``dm``, which keeps thin methods for them."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ddm import distributed, health
from ddm.cluster.groups import Groups
from ddm.config import fingerprint, keyed
from ddm.data.dataset import Split
from ddm.distill.curvature import describe as describe_curvature
from ddm.distill.matchers import MATCHERS, Matching
from ddm.distill.synset import Synset
from ddm.exceptions import ConfigError
from ddm.models.checks import refuse_batchnorm
from ddm.workspace import load_tensors, save_tensors

if TYPE_CHECKING:
    from ddm.pipeline import DistilledDatamodel

log = logging.getLogger(__name__)

#: the share of groups matched a second time (distill.retry) above which the synset stage warns: 73-80% on the
#: overfitted probe where DDM lost to the trivial score, at most 5% on every matrix and held-out run
RETRIED_WARNING = 0.25
#: the groups' own last-layer gradients (emulate.gradients=groups), in the synset stage's folder: a file of their own,
#: so the synset file stays what may be released (a group's summed gradient can give its members away)
GRADIENTS_FILE = "gradients.safetensors"
#: above this many bytes the groups' gradients are not stored, and emulate.gradients=groups refuses with the reason
GRADIENTS_MAX_BYTES = 2 ** 31


def gradients_key(path: Path) -> str | None:
    """The synset stage key a stored :data:`GRADIENTS_FILE` was computed for (None: no such file, or unreadable)."""
    from safetensors import safe_open

    if not path.exists():
        return None
    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get("synset_key")
    except Exception:  # a damaged file is computed again
        return None


def distill_stage(dm: DistilledDatamodel, stage: str, train: Split, groups: Groups, shared: bool = False) -> Synset:
    """The synset stage ``stage`` (``synset`` or ``synset-class``) for ``groups``: reused where stored under the same
    key, else distilled (resumable), checked and stored with its record. ``shared``: under torchrun every rank matches
    its share of the groups (head matching), and rank 0 checks, stores and finishes the stage."""
    cfg = keyed(dm.config.distill)
    metric = dm.match_metric  # resolved: the same synsets whether set or the default, so the same key
    cfg.pop("match_metric", None)
    if metric != "step":
        cfg = {**cfg, "match_metric": metric}
    if dm.task.is_default:
        cfg.pop("head_loss", None)  # a model trained with cross-entropy: no effect, and earlier keys stay valid
    if dm.config.distill.matching not in ("head", "block"):
        refuse_batchnorm(dm.model, f"the {dm.config.distill.matching} matching")
    if not dm.task.is_default and dm.config.distill.matching == "block":
        raise ConfigError(f"the custom task {dm.task.name!r} needs the head recipe (distill.matching=head, "
                          f"the default); block matching assumes cross-entropy")
    if not dm.task.is_default and dm.config.distill.matching != "head":
        raise ConfigError(f"the custom task {dm.task.name!r} needs the head recipe (distill.matching=head, "
                          f"the default); the trajectory matchers assume cross-entropy")
    if dm.weight_decay and dm.handed_in():
        # a handed-in trajectory's key does not hold the decay the damping uses (train.weight_decay when the
        # trajectory records none); internally trained ones have it in train.weight_decay, and wd 0 keeps old keys
        cfg = {**cfg, "weight_decay": dm.weight_decay}
    followed = dm._followed_temperature() if stage == "synset-class" else None
    if followed is not None:  # in the key only where it applies: other class-level synsets keep theirs
        cfg = {**cfg, "temperature": followed}
    key = fingerprint(cfg, dm.keys["train"], dm.keys["groups-class" if stage == "synset-class" else "groups"])
    dm.keys[stage] = key
    path = dm.ws.path(stage, "synset.safetensors")
    assert dm.trajectory is not None and dm.model is not None and dm.num_classes is not None
    num_classes = dm.num_classes

    def stored() -> Synset:
        syn = Synset.from_tensors(load_tensors(path), num_classes)
        syn.task = dm._head_task(temperature=(dm.ws.stage_info(stage) or {}).get("temperature"))
        return syn

    done = dm.ws.is_done(stage, key, cfg)
    if distributed.agree_all([done])[0] if shared else done:
        syn = stored()
        if not shared or distributed.is_main():  # a synset stored before the groups' gradients were: add them
            store_group_gradients(dm, stage, key, syn, train, groups)
        return syn
    if shared:  # rank 0 marks the stage begun, then every rank distils its share of the groups
        if distributed.is_main():
            dm.ws.begin(stage, key, cfg)
        distributed.barrier()
    if dm.config.distill.matching == "head":
        warn_memory(dm.model, groups.num_groups)
    folder = dm.ws.begin(stage, key, cfg) if not shared else dm.ws.path(stage)
    ckpt = folder / "checkpoint.safetensors"
    before = float(load_tensors(ckpt).get("seconds", torch.zeros(()))) if ckpt.exists() else 0.0
    t0 = time.perf_counter() - before  # a resumed distillation counts the killed processes' time too
    # the synset stage may distil twice (distill.auto_temperature): the groups' own curvature, which only unlearning
    # reads, is computed once, for the synsets kept (a tenth of the stage on a 60,000-image MLP)
    defer = stage == "synset" and dm.config.distill.matching == "head"
    matching = Matching(dm.model, dm.trajectory, train, groups, dm.config.distill, dm.num_classes, folder,
                        dm.config.train.batch_size, dm.weight_decay, dm._head_task(temperature=followed),
                        group_curvature=not defer)
    syn = MATCHERS.get(dm.config.distill.matching)(matching)
    auto: dict[str, Any] = {"match_metric": metric} if metric != "step" else {}
    if stage == "synset":  # every rank: each holds the whole synset, and a second matching is shared again
        syn, matching, switched = dm._auto_temperature(syn, matching, train, groups, folder)
        auto.update(switched)
    if shared and not distributed.is_main():
        distributed.barrier()  # rank 0 checks, stores and finishes the stage
        return stored()
    if gradients_bytes(syn, dm.model) > GRADIENTS_MAX_BYTES:
        # the groups' gradients will not be stored, so no [K, D] array of the checkpoints' statistics is read past
        # here but theta_tau's and the one before it (the health check's): released before the health check, whose
        # own pass at the checkpoint before theta_tau was the 2,000-group probe's peak
        keep = {dm.trajectory.tau, dm.trajectory.tau - 1}
        for i in [i for i in matching.statistics if i not in keep]:
            del matching.statistics[i]
    if defer:
        from ddm.distill.head import add_group_curvature

        add_group_curvature(dm.model, train, groups, syn, dm.config.distill.unlearn_rank)
    report = health.synset_health(dm.model, dm.trajectory, train, groups, syn, dm.num_classes,
                                  statistics=matching.statistics)
    save_tensors(path, syn.to_tensors())
    store_group_gradients(dm, stage, key, syn, train, groups, matching.statistics)
    for f in folder.glob("checkpoint*.safetensors"):
        f.unlink(missing_ok=True)
    losses = syn.losses if syn.losses is not None and len(syn.losses) else torch.zeros(1)
    dm.ws.finish(stage, key, cfg, seconds=time.perf_counter() - t0, num_groups=groups.num_groups,
                   first_loss=float(losses[0]), last_loss=float(losses[-10:].mean()), health=report,
                   steps=len(syn.losses) if syn.losses is not None else 0,
                   **({"kept_loss": syn.error} if syn.error is not None else {}),
                   ranks=distributed.rank_world()[1] if shared else 1, **auto,
                   **({"temperature": followed, "temperature_from": "synset"} if followed is not None else {}),
                   **({"curvature": describe_curvature(syn.curvature)} if syn.curvature is not None else {}),
                   **({"retried": {str(k): [round(b, 4), round(a, 4)] for k, (b, a) in syn.retried.items()}}
                      if syn.retried else {}),
                   **({"grown": {**syn.grown, "errors": [round(e, 4) for e in syn.grown["errors"]]}}
                      if syn.grown else {}))
    # which workspace: evaluate fits several
    health.log_report(f"{stage} ({dm.ws.root})", report, dm.step_gradients(syn))
    if len(syn.retried) >= RETRIED_WARNING * groups.num_groups:
        after = sum(e[1] for e in syn.retried.values()) / len(syn.retried)
        log.warning("%s (%s): %d of %d groups had to be matched a second time (relative error after it %.2g on "
                    "average): either the model fits their members almost exactly at theta_tau, where the "
                    "last-layer step DDM takes carries little, or %d images cannot carry groups this large. On a "
                    "probe of the first kind (an MLP trained 60 epochs past fitting its data) DDM ranked "
                    "0.06-0.17 LDS above the trivial same-class score on three seeds, level with TracIn, and "
                    "varied more between seeds than either (BENCHMARKS.md, 'Kinds of data the matrix never "
                    "had'): check it against exact retraining (ddm check -w %s), or compare with TracIn",
                    stage, dm.ws.root, len(syn.retried), groups.num_groups, after, syn.ipc, dm.ws.root)
    dm.timings[stage] = time.perf_counter() - t0
    if shared:
        distributed.barrier()
    return syn


#: the head synset stage's peak memory, estimated as bytes per entry of the groups' last-layer gradients (K groups x D
#: head parameters) plus, above the 2^27 entries where the stage works in chunks, a base for the chunks' buffers (the
#: matching's 2 GiB graph among them): the line through two 200-class probes of 64x64 images, 1,000 groups x 205,000
#: parameters at 6.3 GiB and 2,000 x 409,800 at 14.9 GiB (15.0 bytes per entry and 3.4 GiB), rounded up; 24 bytes
#: until the peaks were measured without the sampler that inflated them (BENCHMARKS.md, "Two hundred classes of 64x64
#: images")
STAGE_BYTES_PER_ENTRY = 16
STAGE_BASE_BYTES = 4 * 2 ** 30


def warn_memory(model: torch.nn.Module, groups: int) -> None:
    """A warning, before a head distillation starts, where the stage's estimated peak (:data:`STAGE_BYTES_PER_ENTRY`
    per group-parameter entry, and :data:`STAGE_BASE_BYTES` where the stage works in chunks) exceeds the memory
    available, naming what to lower: the stage keeps several ``[K, D]`` arrays of the groups' gradients (at theta_tau
    and each checkpoint) and, in places, double-precision copies."""
    from ddm import devices
    from ddm.distill.head import DOUBLE_GRADIENTS_LIMIT, Head

    size = Head.of(model).matrix().numel()
    need = STAGE_BYTES_PER_ENTRY * groups * size + (STAGE_BASE_BYTES if groups * size > DOUBLE_GRADIENTS_LIMIT else 0)
    free = devices.available_memory()
    if free is not None and need > free:
        log.warning("the synset stage may need about %.0f GiB of memory (K = %d groups x %d last-layer parameters) "
                    "and %.0f GiB is available: if it is killed, use fewer groups (cluster.per_class or "
                    "cluster.num_groups) or a narrower last layer (model.width), or run it on a larger machine",
                    need / 2 ** 30, groups, size, free / 2 ** 30)


def store_group_gradients(dm: DistilledDatamodel, stage: str, key: str, syn: Synset, train: Split, groups: Groups,
                          statistics: dict[int, Any] | None = None) -> None:
    """Store the groups' own head gradients at every site of ``syn``'s Newton step (:data:`GRADIENTS_FILE`,
    marked with the synset stage's ``key``; ``emulate.gradients=groups`` reads them). ``statistics``: the
    distillation's own (a fresh synset: always written); without, written only where missing or stale."""
    from ddm.distill.head import Head, site_gradients

    if syn.kind != "head" or syn.block:
        return
    assert dm.model is not None and dm.trajectory is not None and dm.num_classes is not None
    path = dm.ws.path(stage, GRADIENTS_FILE)
    if statistics is None and gradients_key(path) == key:
        return
    size = gradients_bytes(syn, dm.model)
    if size > GRADIENTS_MAX_BYTES:
        path.unlink(missing_ok=True)
        log.info("the groups' own gradients are not stored (%.1f GiB above %.1f GiB): emulate.gradients=groups "
                 "is not available on this workspace", size / 2 ** 30, GRADIENTS_MAX_BYTES / 2 ** 30)
        return
    grads = site_gradients(Head.of(dm.model), dm.trajectory, train, groups, dm.num_classes, syn, syn.task, statistics)
    save_tensors(path, grads, metadata={"synset_key": key})
    dm._gradients.pop(stage, None)



def gradients_bytes(syn: Synset, model: torch.nn.Module) -> int:
    """The bytes of the groups' own gradients :func:`store_group_gradients` would write for ``syn`` (float32, at
    theta_tau and each of its checkpoints); above :data:`GRADIENTS_MAX_BYTES` they are not stored."""
    from ddm.distill.head import Head

    return syn.num_groups * Head.of(model).matrix().numel() * (1 + len(syn.checkpoints)) * 4


def group_gradients(dm: DistilledDatamodel, stage: str) -> dict[str, torch.Tensor]:
    """The groups' stored gradients for the synset of ``stage`` (``synset`` or ``synset-class``)."""
    key = dm.keys.get(stage)
    known = dm._gradients.get(stage)
    if known is not None and known[0] == key:
        return known[1]
    path = dm.ws.path(dm._synset_folders.get(stage, stage), GRADIENTS_FILE)
    stored = gradients_key(path)
    if stored is None or stored != key:
        why = "are not stored" if stored is None else "belong to an earlier synset"
        raise ConfigError(f"emulate.gradients=groups reads the groups' own last-layer gradients, which {why} in "
                          f"{dm.ws.root}: run `ddm distill -w {dm.ws.root}` (from Python: "
                          "dm.store_group_gradients(data.train); either computes them from the training data "
                          "with no new distillation), or use emulate.gradients=synsets")
    grads = load_tensors(path)
    dm._gradients[stage] = (key, grads)
    return grads
