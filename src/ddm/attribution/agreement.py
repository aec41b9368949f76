"""The step agreement: a retrain-free self-check of the attribution's Newton step, and the synset stage's switch to
tempered synsets where it fails (``distill.auto_temperature``). The step at theta_tau alone and the steps at the
earlier checkpoints are regressed as ``attribute`` does on training samples; where they rank removals differently
(below :data:`STEP_AGREEMENT_WARN`), the step at theta_tau is not to be trusted (BENCHMARKS.md, "A tempered synset
where the step agreement is low"). Functions of the façade ``dm``, which keeps thin methods for them."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ddm import distributed
from ddm import objectives as objective_registry
from ddm.attribution.fit import balance_classes, fit_attribution
from ddm.attribution.matrix import AttributionMatrix
from ddm.cluster.groups import Groups
from ddm.data.dataset import Split
from ddm.distill.matchers import MATCHERS, Matching
from ddm.distill.synset import Synset
from ddm.emulate.perturbations import sample_perturbations
from ddm.task import TemperedCrossEntropy
from ddm.text import beside

if TYPE_CHECKING:
    from ddm.pipeline import DistilledDatamodel

log = logging.getLogger(__name__)

#: below this :meth:`DistilledDatamodel.step_agreement` the synset stage switches to tempered synsets
#: (``distill.auto_temperature``) and warns where they stay below it: 0.7 until 0.19, read off the runs where DDM ranked
#: below the class labels (AlexNet, a batch-norm ResNet); 0.8 since, chosen on every stored run from 0.7 to 0.9
#: (BENCHMARKS.md, "The switch's threshold asked again")
STEP_AGREEMENT_WARN = 0.8


def auto_temperature(dm: DistilledDatamodel, syn: Synset, matching: Matching, train: Split, groups: Groups,
                     folder: Path) -> tuple[Synset, Matching, dict[str, Any]]:
    """``distill.auto_temperature``: the synsets just distilled, or, where their step agreement
    (:meth:`DistilledDatamodel.step_agreement`) is below :data:`STEP_AGREEMENT_WARN`, synsets distilled again with the
    cross-entropy at that temperature; with the matching that made them and what the stage records
    (``step_agreement``, and where it switched ``temperature`` and ``step_agreement_at_1``). Only head synsets matched
    with the plain cross-entropy (a configured temperature or a custom loss is the user's choice)."""
    d = dm.config.distill
    if d.matching != "head" or syn.kind != "head" or syn.block or dm._head_task() is not None:
        return syn, matching, {}
    both = agreements(dm, train, synset=syn, groups=groups)
    if both is None:
        return syn, matching, {}
    agreement, other = both
    out: dict[str, Any] = {"step_agreement": round(agreement, 4),
                           "other_class_agreement": None if other is None else round(other, 4)}
    # every rank takes the same decision (under torchrun each computed the agreement on the same synset)
    if not distributed.agree_all([agreement < STEP_AGREEMENT_WARN and d.auto_temperature > 0])[0]:
        return syn, matching, out
    log.warning("the step at theta_tau and the steps at the earlier checkpoints rank removals differently (step "
                "agreement %s on 50 training samples, below %g): distilling the synsets again with the "
                "cross-entropy at temperature %g (distill.auto_temperature; 0 turns this off)",
                beside(agreement, STEP_AGREEMENT_WARN), STEP_AGREEMENT_WARN, d.auto_temperature)
    sub = folder / "tempered"  # its own checkpoints, so a killed run resumes this matching too
    sub.mkdir(exist_ok=True)
    tempered = replace(matching, folder=sub, task=TemperedCrossEntropy(d.auto_temperature), statistics={})
    syn2 = MATCHERS.get(d.matching)(tempered)
    if syn.grown and syn2.grown and "seconds" in syn.grown:  # the stage's record: both matchings' growth
        syn2.grown["seconds"] = round(syn2.grown.get("seconds", 0.0) + syn.grown["seconds"], 1)
    both = agreements(dm, train, synset=syn2, groups=groups)
    after, other = (None, None) if both is None else both
    if distributed.is_main():
        import shutil

        shutil.rmtree(sub, ignore_errors=True)
    log.info("step agreement at temperature %g: %s", d.auto_temperature,
             "n/a" if after is None else f"{after:+.2f}")
    return syn2, tempered, {"step_agreement": None if after is None else round(after, 4),
                            "step_agreement_at_1": round(agreement, 4), "temperature": d.auto_temperature,
                            "step_agreement_threshold": STEP_AGREEMENT_WARN,
                            "other_class_agreement": None if other is None else round(other, 4)}



#: the step agreement reads its objective's outputs a chunk of perturbations at a time, each chunk's logits about this
#: many entries (64 MiB in single precision)
OUTPUT_CHUNK_ENTRIES = 2 ** 24


def step_attributions(dm: DistilledDatamodel, train: Split, num_targets: int = 50, synset: Synset | None = None,
                      groups: Groups | None = None) -> tuple[Split, AttributionMatrix, AttributionMatrix] | None:
    """``(targets, at theta_tau, averaged)``: the two attributions the step agreement compares, unbalanced
    (``dist2`` of ``num_targets`` training samples): the Newton step at theta_tau alone, and the steps averaged
    over the checkpoints the attribution averages (every recorded one where the synsets transfer to none).
    None where there is nothing to compare (no head synsets, no earlier checkpoint)."""
    from ddm.emulate.newton import member_shifts

    synset = dm.synset if synset is None else synset
    groups = dm.groups if groups is None else groups
    model, trajectory = dm.model, dm.trajectory
    if synset is None or groups is None or model is None or trajectory is None or synset.kind != "head":
        return None
    e = dm.config.emulate
    averaged = synset.transferring(e.min_transfer)
    if not averaged.checkpoints:
        # the synsets transfer to no earlier checkpoint (emulate.min_transfer), so the attribution uses theta_tau's
        # step alone: whether that step ranks removals as the earlier ones would is then the question itself, and
        # is asked of every recorded checkpoint
        averaged = synset
    averaged = averaged.damped(e.damping_scale)
    if not averaged.checkpoints:
        return None
    K = synset.num_groups
    targets = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:num_targets]]
    keep = sample_perturbations(K, dm._num_perturbations(K, synset), e.keep_prob, e.seed)
    z, s_tau, s_each = member_shifts(model, trajectory.final, averaged, ~keep, targets.x, trajectory,
                                     dm.decay(groups))
    obj = objective_registry.get("dist2")
    mean = s_each[0]  # the checkpoints' shifts averaged in place: one [P, N, C] more, not three
    for s in s_each[1:]:
        mean += s
    mean /= len(s_each)
    del s_each
    # the outputs a chunk of perturbations at a time: their temporaries are [P, N, C] each (0.8 GB for 20,000
    # perturbations of 50 targets and 200 classes), the outputs [P, N, O]
    rows = max(1, OUTPUT_CHUNK_ENTRIES // max(1, z.numel()))

    def outputs(shift: torch.Tensor) -> torch.Tensor:
        return torch.cat([obj.outputs((z + shift[r : r + rows]).float(), targets.y)
                          for r in range(0, len(shift), rows)])

    tau, ck = (fit_attribution(keep, outputs(shift), obj, groups, targets.index.tolist(), synset.num_classes,
                               e.weighting, e.ridge, None, targets.y)
               for shift in (s_tau, mean))
    return targets, tau, ck


def agreements(dm: DistilledDatamodel, train: Split, num_targets: int = 50, halves: int = 40,
               synset: Synset | None = None, groups: Groups | None = None) -> tuple[float, float | None] | None:
    """``(step agreement, other-class agreement)``: the step agreement (:meth:`DistilledDatamodel.step_agreement`: the
    two attributions of :func:`step_attributions`, balanced by ``emulate.other_class_scale``, predicting ``halves``
    random halves), and the same two attributions' weights compared over other classes' groups only: per
    target, the Spearman correlation of the step at theta_tau's weights and the averaged steps' weights over the
    groups of the other classes (the class balance leaves that order alone), averaged over the targets (None
    where groups mix classes). It decides whether other classes' weights are trusted at
    ``emulate.other_class_scale`` or shrunk to ``emulate.switched_class_scale`` (:attr:`class_balance`,
    ``benchmarks/class_agreement.py``)."""
    from ddm.evaluation.metrics import lds, spearman

    groups = dm.groups if groups is None else groups
    both = step_attributions(dm, train, num_targets, synset, groups)
    if both is None or groups is None:
        return None
    targets, *attrs = both
    e = dm.config.emulate
    test = sample_perturbations(groups.num_groups, halves, 0.5, e.seed + 1)
    predicted = []
    for raw in attrs:
        W, b = balance_classes(raw.weights, raw.bias, groups, targets.y, e.other_class_scale)
        predicted.append(test.float() @ W[:, :, 0].T + b[:, 0][None, :])
    other = None
    if not groups.mixes_classes():
        rhos = [spearman(attrs[0].weights[t, cols, 0], attrs[1].weights[t, cols, 0])
                for t, y in enumerate(targets.y.tolist()) if int((cols := groups.labels != y).sum()) > 2]
        other = sum(rhos) / len(rhos) if rhos else None
    return lds(predicted[0], predicted[1])[0], other
