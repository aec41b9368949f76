"""Health checks of the tool's own outputs, on by default.

* :func:`synset_health` (after distillation): for every group, does one step of the emulation move the
  last layer the way removing the group's real data would? The reference is the damped Newton
  removal step from the real data, ``(H + lambda I)^-1 g_k / N``; the emulated step is the head-matched
  synset's own (head synsets) or one fine-tuning step on the synset, ``-grad L(theta_tau; S_k)``
  (fine-tune synsets). Reported: cosine at theta_tau, the relative error (head synsets, where the
  magnitude is part of the design), the gradient cosine at the previous recorded checkpoint (not used
  for fitting), and a dominance ratio: for head and block synsets, whose step is meant to equal the real one,
  the emulated step's norm over *its own group's* real step (a synset that exaggerates its group); for
  fine-tune synsets, which have no such scale, a group's step norm over the median. Groups with cosine below 0.5,
  dominance above 10 or non-finite values are *flagged*; rankings mark them. Also reported, not flagged: the
  groups whose images lie more than 10x off the training data's scale (``off_scale``; their largest absolute value
  over the data's), which a network invariant to its inputs' scale (instance norm after the first convolution)
  takes in its stride and a fine-tuning of an MLP does not. A group whose *real* step is
  10x the median is not a synset failure but a fact about the data (often a group holding mislabeled or
  atypical samples): it is reported as ``outsized`` and not flagged.
* :func:`check_logits` (after emulation): non-finite emulated outputs are an error; outputs far beyond
  the trained model's range are logged as a warning.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

from ddm import devices
from ddm.cluster.groups import Groups
from ddm.data.dataset import Split
from ddm.distill.curvature import SubspaceCurvature
from ddm.distill.head import (
    Head,
    HeadStatistics,
    group_gradients,
    head_statistics,
    matching_quality,
    row_chunks,
    row_cosine,
    synset_head_gradients,
)
from ddm.distill.synset import Synset
from ddm.exceptions import ConfigError, NumericalError
from ddm.train.trajectory import Trajectory

log = logging.getLogger(__name__)
MIN_COSINE = 0.5
MAX_DOMINANCE = 10.0
MIN_TRANSFER = 0.5  # mean step cosine at an averaged checkpoint below which it is reported (emulate.min_transfer)
EXPLODED = 20.0
#: a group whose synthetic images' largest absolute value exceeds the training inputs' largest by more than this factor
#: is off the data's scale: the paper's SGD matching (distill.lr_img=10) drives a digits MLP's images to about 2,000x,
#: head-matched images stay within 1.8x (the demo and four other models measured)
MAX_IMAGE_SCALE = 10.0


def image_scale(images: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Each group's largest absolute synthetic value over the largest absolute value of ``inputs`` ``[K]`` (float64;
    ``images`` ``[K, ipc, ...]``, NaN where a group's images are)."""
    def largest(t: torch.Tensor) -> torch.Tensor:  # each row's, a chunk at a time: no copy of all rows at once
        return torch.cat([t[i : i + 1024].detach().flatten(1).abs().amax(1) for i in range(0, len(t), 1024)])

    reference = float(largest(inputs).max()) if inputs.numel() else 1.0
    return largest(images).double().cpu() / max(reference, 1e-12)


def synset_health(model: nn.Module, trajectory: Trajectory, train: Split, groups: Groups, synset: Synset,
                  num_classes: int, damping: float = 1e-2,
                  statistics: dict[int, HeadStatistics] | None = None) -> dict[str, Any]:
    """Per-group matching quality of ``synset`` (module doc); a JSON-able report with ``flagged`` groups.

    ``statistics``: the last layer's statistics the distillation already computed, by trajectory index
    (``ddm.distill.matchers.Matching.statistics``); the checkpoints found there are not streamed again."""
    statistics = statistics or {}
    try:
        head = Head.of(model)
        head.check(train.x)
    except ConfigError as exc:
        return {"checked": False, "reason": str(exc), "flagged": []}
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            final = trajectory.final
            kind = synset.curvature.kind if synset.curvature is not None else "auto"
            stats = statistics.get(trajectory.tau)
            if stats is None or stats.curvature.kind != kind:
                r = synset.curvature.u.shape[1] if isinstance(synset.curvature, SubspaceCurvature) else 0
                limit = {"exact_limit": num_classes * (r + 1), "subspace_rank": r} if r else {}  # the stored one's
                stats = head_statistics(head, train, groups, num_classes, params=final, curvature=kind,
                                        task=synset.task, **limit)
            lam = float(synset.damping) if synset.damping is not None else damping * stats.top_eigenvalue
            block = synset.block_quality
            parts: list[dict[str, torch.Tensor]] = []
            # row by row quantities, a chunk of groups at a time where the groups' steps are large (Tiny ImageNet's
            # 2,000 groups x 409,800 head parameters: 6.6 GB per copy in double precision); all at once otherwise
            # (solved in single precision where the gradients are, which halves the largest checks' time)
            single = stats.group_grads.dtype == torch.float32
            # a head-matched synset's steps are compared in the curvature's eigenbasis (norms and inner products
            # unchanged, no rotation back); a fine-tuned synset's gradient is compared with the real step itself
            solve = stats.curvature.rotated_solve if synset.kind == "head" else stats.curvature.solve
            for rows in row_chunks(groups.num_groups, stats.group_grads.shape[1]):
                real = solve(stats.group_grads[rows] / stats.num_train, lam, single)  # the real steps
                if block is not None:  # block-matched: the step over the last block and the head (ddm.distill.block)
                    q = {"cosine": block[rows, 0].double(), "relative_error": block[rows, 1].double()}
                    step = block[rows, 2:3].double()  # only its norm is used below
                elif synset.kind == "head":
                    emulated = synset_head_gradients(head, synset, final, rows).double() / stats.num_train
                    step = solve(emulated, lam, single)
                    q = matching_quality(step, real)
                else:  # one fine-tuning step on S_k moves the head by -grad L(S_k)
                    step = -synset_head_gradients(head, synset, final, rows).double()
                    q = {"cosine": row_cosine(step, real)}
                parts.append({**q, "norms": step.norm(dim=1), "real_norms": real.norm(dim=1)})
                del real, step
            q = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
            norms, real_norms = q.pop("norms"), q.pop("real_norms")
            prev: torch.Tensor | None = None
            if trajectory.tau >= 1:
                before = trajectory.checkpoint(trajectory.tau - 1)
                known = statistics.get(trajectory.tau - 1)
                real_prev = known.group_grads if known is not None else group_gradients(
                    head, train, groups, num_classes, params=before, task=synset.task)
                sign = 1.0 if synset.kind == "head" else -1.0
                prev = torch.cat([row_cosine(sign * synset_head_gradients(head, synset, before, rows).double(),
                                             real_prev[rows])
                                  for rows in row_chunks(groups.num_groups, real_prev.shape[1])])
            outsized: list[int] = []
            if "relative_error" in q:  # the step is meant to equal the real one: compare with the group's own
                if block is None:
                    dominance = (norms / real_norms.clamp(min=1e-30)).cpu()
                    outsized = torch.nonzero(real_norms > MAX_DOMINANCE * real_norms.median()).flatten().tolist()
                else:  # only the cosine, relative error and emulated norm are stored: |emulated| / |real| is at
                    dominance = (1 + q["relative_error"].sqrt()).cpu()  # most 1 + sqrt(relative error)
            else:
                dominance = (norms / norms.median().clamp(min=1e-30)).cpu()
            q = {k: v.cpu() for k, v in q.items()}
            prev = prev.cpu() if prev is not None else None
    finally:
        model.train(was)
    cos = q["cosine"]
    scale = image_scale(synset.images, train.x)
    bad = (~torch.isfinite(cos)) | (cos < MIN_COSINE) | (dominance > MAX_DOMINANCE) | (~torch.isfinite(dominance))
    report: dict[str, Any] = {
        "checked": True, "reference": "damped Newton removal step of the real data, " + (
            "last block and head (low-rank curvature)" if synset.block_quality is not None else "last layer"),
        "cosine": [round(float(c), 4) for c in cos],
        "dominance": [round(float(d), 3) for d in dominance],
        "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
        "positive_fraction": float((cos > 0).double().mean()),
        "flagged": torch.nonzero(bad).flatten().tolist(),
        "dominance_reference": "own real step" if "relative_error" in q else "median step",
        "outsized": outsized,
        "image_scale_max": float(scale.max()),
        "off_scale": torch.nonzero(~(scale <= MAX_IMAGE_SCALE)).flatten().tolist(),
    }
    if "relative_error" in q:
        report["relative_error"] = [round(float(e), 4) for e in q["relative_error"]]
        report["relative_error_median"] = float(q["relative_error"].median())
    if prev is not None:
        report["previous_checkpoint_cosine"] = [round(float(c), 4) for c in prev]
        report["previous_checkpoint_cosine_mean"] = float(prev.mean())
    measured = [c for c in synset.checkpoints if math.isfinite(c.cosine_mean)]
    if measured:  # how the steps transfer to the checkpoints the attribution averages over (ddm.distill.head)
        report["checkpoints"] = [{"epoch": c.epoch, "cosine_mean": round(c.cosine_mean, 4),
                                  "cosine_min": round(c.cosine_min, 4)} for c in measured]
    return report


def averaged_checkpoints(checkpoints: list[dict[str, Any]], gradients: str | None,
                         min_transfer: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(used, left_out)``: which of a health report's ``checkpoints`` (each with the synsets' ``cosine_mean``
    there) the attribution's step averages over. Where it reads the groups' own gradients (``gradients`` is
    ``groups``, ``emulate.gradients``) every one: the groups' gradients are exact there, whatever the synsets'
    cosine; else those where the synsets' steps transfer (``emulate.min_transfer``; ``Synset.transferring``)."""
    if gradients == "groups":
        return list(checkpoints), []
    used = [c for c in checkpoints if not c["cosine_mean"] < min_transfer]
    return used, [c for c in checkpoints if c["cosine_mean"] < min_transfer]


def log_report(stage: str, report: dict[str, Any], gradients: str | None = None) -> None:
    """Log a :func:`synset_health` report; ``gradients``: whose gradients the attribution's step reads
    (``emulate.gradients``; None where there is no such step), which decides what a weak checkpoint means."""
    if not report.get("checked"):
        log.info("%s health: not checked (%s)", stage, report.get("reason"))
        return
    log.info("%s health: step cosine mean %.3f (min %.3f), %.0f%% positive, %d flagged", stage,
             report["cosine_mean"], report["cosine_min"], 100 * report["positive_fraction"], len(report["flagged"]))
    weak = [c for c in report.get("checkpoints", []) if c["cosine_mean"] < MIN_TRANSFER]
    epochs, cosines = (", ".join(f"{c['epoch']:g}" for c in weak),
                       ", ".join(f"{c['cosine_mean']:.2f}" for c in weak))
    if weak and gradients == "groups":  # the step reads the groups' exact gradients there: nothing is left out
        log.info("%s: the synsets' steps transfer poorly to the checkpoint(s) at epoch %s (mean cosine with the real "
                 "steps %s < %.1f); the attribution is not affected, its step reads the groups' own gradients there "
                 "(emulate.gradients=groups); the synsets' own steps are what unlearning and a released synset "
                 "carry, at theta_tau", stage, epochs, cosines, MIN_TRANSFER)
    elif weak:
        log.warning("%s: the synsets' steps do not transfer to the checkpoint(s) at epoch %s (mean cosine with the "
                    "real steps %s < %.1f): the attribution leaves them out of its average unless "
                    "emulate.min_transfer is lowered below that", stage, epochs, cosines, MIN_TRANSFER)
    if report["flagged"]:
        scale = "its group's real step" if report.get("dominance_reference") == "own real step" else "the median"
        log.warning("%s: %d group(s) failed the health check (cosine < %.1f with the real removal step, or a step "
                    "%gx %s): %s%s; rankings mark them", stage, len(report["flagged"]), MIN_COSINE,
                    MAX_DOMINANCE, scale, report["flagged"][:20], " ..." if len(report["flagged"]) > 20 else "")
    if report.get("off_scale"):
        log.info("%s: %s", stage, off_scale_note(len(report["off_scale"]), report["image_scale_max"]))
    if report.get("outsized"):
        log.info("%s: %d group(s) (%s%s) move the model more than %gx the median group when removed (their real "
                 "data does; not a synset failure): often mislabeled or atypical samples, see `ddm diagnose`", stage,
                 len(report["outsized"]), report["outsized"][:20], " ..." if len(report["outsized"]) > 20 else "",
                 MAX_DOMINANCE)


#: test accuracy that rose by more than this over the last quarter of the recorded training marks a model that was
#: still improving when training stopped (:func:`training_progress`)
STILL_IMPROVING = 0.05
#: test accuracy that fell by more than this from its best recorded checkpoint to theta_tau marks a training that
#: went backwards (diverged, or too fast a rate; :func:`training_progress`)
FELL_BACK = 0.10
#: how many test samples (the first ones) every checkpoint is scored on for that
TREND_SAMPLES = 2000


def training_progress(model: nn.Module, trajectory: Trajectory, test: Split,
                      final_accuracy: float | None = None) -> dict[str, Any] | None:
    """Was the model still improving when its training stopped? The test accuracy at the recorded checkpoint nearest
    three quarters of the training (one in its second half, before its end) and at theta_tau: ``{"epoch", "accuracy",
    "final_epoch", "final_accuracy", "rise", "still_improving"}``; None where no such checkpoint was recorded or
    there is no test data. A rise above :data:`STILL_IMPROVING` is what ``ddm run`` (and the stage commands) warn
    about: a longer training would give another model, whose data matter differently. ``final_accuracy``: theta_tau's,
    where the caller has it (else measured here).

    Did it go backwards? Every checkpoint is scored on the first :data:`TREND_SAMPLES` test samples: ``"best_epoch",
    "best_accuracy"`` (the best checkpoint's), ``"trend_final_accuracy"`` (theta_tau's on the same samples),
    ``"trend_samples"`` and ``"fell_back"``, a fall of more than :data:`FELL_BACK` from the best to theta_tau: a
    training that diverged or ran too fast (a Fashion-MNIST MLP at lr 0.1 with momentum 0.9 reached 58 % after one
    epoch and ended at 20 %), whose final model is rarely the one meant."""
    if len(test) == 0 or len(trajectory) < 3:
        return None
    first, last = trajectory.epochs[0], trajectory.epochs[-1]
    inner = [i for i in range(1, len(trajectory) - 1)
             if first + 0.5 * (last - first) <= trajectory.epochs[i] < last]
    if not inner or last <= first:
        return None
    i = min(inner, key=lambda j: abs(trajectory.epochs[j] - (first + 0.75 * (last - first))))

    def acc(params: dict[str, torch.Tensor]) -> float:
        out = devices.predict(model, test.x, params=params)
        return float((out.argmax(1) == test.y).float().mean())

    sample = Split(test.x[:TREND_SAMPLES], test.y[:TREND_SAMPLES])
    curve = []
    for j in range(len(trajectory)):
        out = devices.predict(model, sample.x, params=trajectory.checkpoint(j))
        curve.append(float((out.argmax(1) == sample.y).float().mean()))
    whole = len(sample) == len(test)  # the curve is the whole test split's: nothing to score again
    then = curve[i] if whole else acc(trajectory.checkpoint(i))
    final = final_accuracy if final_accuracy is not None else curve[-1] if whole else acc(trajectory.final)
    best = max(range(len(curve)), key=lambda j: curve[j])
    return {"epoch": trajectory.epochs[i], "accuracy": then, "final_epoch": last, "final_accuracy": final,
            "rise": final - then, "still_improving": final - then > STILL_IMPROVING,
            "best_epoch": trajectory.epochs[best], "best_accuracy": curve[best], "trend_final_accuracy": curve[-1],
            "trend_samples": len(sample), "fell_back": curve[best] - curve[-1] > FELL_BACK}


#: a model whose training cross-entropy at theta_tau is above this fraction of a uniform guess's (ln C) fits its data
#: loosely (:func:`fit_to_training`). On three of the four configurations drawn at random above it (0.79-0.92: MLPs
#: and a ConvNet stopped at 60-90 % training accuracy) DDM's default ranked groups 0.04-0.11 LDS below last-layer
#: influence and a damping 100x the default ranked them best; the fourth (0.51) it ranked ahead, and there that damping
#: lost 0.22. Every configuration of the matrix read at most 0.32 (BENCHMARKS.md, "Configurations drawn at random")
LOOSE_FIT = 0.5
#: training samples (the first ones) :func:`fit_to_training` scores
FIT_SAMPLES = 5000


def fit_to_training(model: nn.Module, params: dict[str, torch.Tensor], train: Split,
                    num_classes: int) -> dict[str, Any] | None:
    """How closely the model at ``params`` fits its training data: the mean cross-entropy of its first
    :data:`FIT_SAMPLES` training samples (``"loss"``), that loss over a uniform guess's ``ln C`` (``"ratio"``), their
    accuracy, and ``"loose"``, a ratio above :data:`LOOSE_FIT`; None without training data or with fewer than two
    classes."""
    if len(train) == 0 or num_classes < 2:
        return None
    x, y = train.x[:FIT_SAMPLES], train.y[:FIT_SAMPLES]
    out = devices.predict(model, x, params=params).float()
    if out.ndim != 2 or out.shape[1] <= int(y.max()):
        return None
    loss = float(torch.nn.functional.cross_entropy(out, y.to(out.device)))
    ratio = loss / math.log(num_classes)
    return {"loss": loss, "ratio": ratio, "accuracy": float((out.argmax(1) == y.to(out.device)).float().mean()),
            "samples": len(x), "loose": ratio > LOOSE_FIT}


def off_scale_note(groups: int, largest: float) -> str:
    """What synthetic images far beyond the data's scale mean and what to do (health report, emulation error)."""
    return (f"The synthetic images of {groups} group(s) lie off the data's scale (up to {largest:.3g}x the training "
            "inputs' largest absolute value; the paper's SGD at distill.lr_img=10 takes a digits MLP's to about "
            "2,000x and the demo ConvNet's to about 250x). A network invariant to its inputs' scale (instance norm "
            "after the first convolution) takes that in its stride; fine-tuning any other, an MLP's, on them diverges. "
            "Distill again with Adam at a small rate (--set distill.optimizer=adam --set distill.lr_img=0.01 "
            "--overwrite: finite on a digits MLP), or use the default recipe (head)")


def check_logits(logits: torch.Tensor, params: dict[str, torch.Tensor], model: nn.Module, x: torch.Tensor,
                 images: torch.Tensor | None = None, method: str = "finetune") -> None:
    """Emulated logits ``[P, N, C]``: an error when non-finite, a warning when far beyond theta_tau's range.

    ``images``: the synset's (``[K, ipc, ...]``), whose scale against ``x`` (inputs of the same normalisation) names
    the likely cause of non-finite outputs; ``method``: the emulation (``newton`` or a fine-tuning one)."""
    if not torch.isfinite(logits).all():
        scale = image_scale(images, x) if images is not None else torch.zeros(0, dtype=torch.float64)
        off = ~(scale <= MAX_IMAGE_SCALE)
        if off.any():
            advice = off_scale_note(int(off.sum()), float(scale[off].max()))
        elif method == "newton":
            advice = ("the synset, its stored curvature or the trained model holds non-finite or exploding values: "
                      "run `ddm info` for the synset health check, and distill again with --overwrite")
        else:
            advice = ("the fine-tuning on the synsets diverged: try a smaller rate, --set emulate.finetune_scale=0.01, "
                      "or distill again with --overwrite")
        raise NumericalError(f"the emulation produced non-finite outputs (NaN/inf); nothing was saved. {advice}")
    with torch.no_grad():
        ref = devices.forward(model, x[:256], params).abs().max()
    peak = logits.abs().max()
    if peak > EXPLODED * (float(ref) + 1.0):
        log.warning("emulated logits reach %.3g, %.0fx the trained model's %.3g: the emulation is far from the "
                    "trained model; its attributions are unreliable", float(peak), float(peak / (ref + 1)), float(ref))


def untypical_collapses(check: dict[str, Any]) -> list[dict[str, Any]]:
    """The collapsed classes of an :func:`unlearning_check` result that retraining would keep: those the removal
    leaves with half or more of their training samples (a thinned one, ``kept_share`` set, loses accuracy in
    retraining too). They mark the model damaged and set off ``ddm unlearn``'s back-off."""
    return [c for c in check["collapsed_classes"] if c.get("kept_share") is None]


def unlearning_check(before: nn.Module, after: nn.Module, synset: Synset, removed: torch.Tensor,
                     max_drop: float = 0.1,
                     hint: str = "the step overshoots; a larger emulate.unlearn_damping (e.g. 1e-2) moves it less",
                     max_class_drop: float = 0.2, warn: bool = True,
                     class_counts: torch.Tensor | None = None) -> dict[str, Any]:
    """Accuracy of the model before and after unlearning on the kept and on the removed groups' synthetic
    images (each image's class as label): a proxy for "is the unlearned model still usable". A drop on the
    kept groups above ``max_drop`` is logged as a warning and reported as ``damaged``; so is a class that still
    has kept images but loses more than ``max_class_drop`` of their accuracy (``collapsed_classes``): its kept
    data is still there, so retraining would still predict it, while a small drop overall can hide it (one class
    of ten forgotten costs about 10 points). ``warn=False``: report only (a step about to be redone).
    ``class_counts [K, classes]`` (the groups' samples per class; else the synset's image weights stand in) gives
    each class's share of training samples kept: a class left with under half of them is reported
    (``thinned_classes``) and the warnings say that retraining can lose accuracy there too; such a class's collapse
    (``kept_share`` set) does not make the model ``damaged``."""
    x, _, group = synset.flat()
    labels = synset.labels.reshape(-1)
    gone = torch.isin(group, removed)
    out: dict[str, Any] = {}
    hits = {}
    with torch.no_grad():
        for name, model in (("before", before), ("after", after)):
            was = model.training
            model.eval()
            ok = (devices.forward(model, x).argmax(1).cpu() == labels).float()
            model.train(was)
            hits[name] = ok
            # None where no image is on that side (every group removed): nothing to measure, and no NaN in JSON
            out[f"kept_accuracy_{name}"] = float(ok[~gone].mean()) if (~gone).any() else None
            out[f"removed_accuracy_{name}"] = float(ok[gone].mean()) if gone.any() else None
    drop = out["kept_accuracy_before"] - out["kept_accuracy_after"] if (~gone).any() else 0.0
    collapsed: list[dict[str, Any]] = []
    thinned: list[dict[str, Any]] = []
    w = synset.image_weights().reshape(-1)
    kept_groups = ~torch.isin(torch.arange(synset.num_groups), removed)
    for c in labels[~gone].unique().tolist():
        of_c = labels == c
        kept_c = (~gone) & of_c
        a, b = float(hits["before"][kept_c].mean()), float(hits["after"][kept_c].mean())
        # the share of the class's training samples kept: under half, retraining can lose accuracy there too
        if class_counts is not None and c < class_counts.shape[1]:
            n_c = class_counts[:, c].double()
            share = float(n_c[kept_groups].sum() / n_c.sum().clamp(min=1e-30))
        else:
            share = float(w[kept_c].sum() / w[of_c].sum().clamp(min=1e-30))
        if share < 0.5 and a > b:
            thinned.append({"class": int(c), "kept_share": share, "accuracy_lost": a - b})
        if a - b > max_class_drop:
            collapsed.append({"class": int(c), "kept_images": int(kept_c.sum()), "before": a, "after": b,
                              "kept_share": share if share < 0.5 else None})
    out["collapsed_classes"] = collapsed
    out["thinned_classes"] = thinned
    # a thinned class's fall is what retraining does too: reported (collapsed, with its kept_share), not damage
    out["damaged"] = bool(drop > max_drop) or bool(untypical_collapses(out))
    if warn:
        warn_unlearning(out, hint, max_drop)
    return out


def warn_unlearning(check: dict[str, Any], hint: str, max_drop: float = 0.1) -> None:
    """Log the warnings of an :func:`unlearning_check` result (``hint``: what caused it and what to do)."""
    if check["kept_accuracy_before"] is None:  # every group removed: no kept image to check
        return
    drop = check["kept_accuracy_before"] - check["kept_accuracy_after"]
    thinned = check.get("thinned_classes") or []
    note = ("" if not thinned else
            "; but " + ", ".join(f"class {t['class']} keeps {100 * t['kept_share']:.0f}%" for t in thinned)
            + " of its training samples, and retraining without the rest can lose accuracy there too: check against "
            "an exact retrain (ddm evaluate, or ddm diagnose --verify) before changing the damping")
    if drop > max_drop:
        log.warning("unlearning cost %.0f points of accuracy on the kept groups' synthetic images (%.1f%% -> %.1f%%): "
                    "the unlearned model may be damaged: %s%s",
                    100 * drop, 100 * check["kept_accuracy_before"], 100 * check["kept_accuracy_after"], hint, note)
        note = ""
    for c in check["collapsed_classes"]:
        if c.get("kept_share") is not None:  # thinned: what retraining does as well
            log.warning("unlearning took class %d's kept synthetic images (%d) from %.0f%% to %.0f%% accuracy; the "
                        "removal leaves the class %.0f%% of its training samples, and retraining without most of a "
                        "class loses accuracy there too (often all of it in the benchmarks' exact retrains), so the "
                        "step is kept as it is: check it against an exact retrain (ddm unlearn --verify 1)",
                        c["class"], c["kept_images"], 100 * c["before"], 100 * c["after"], 100 * c["kept_share"])
            continue
        log.warning("unlearning took class %d's kept synthetic images (%d) from %.0f%% to %.0f%% accuracy although "
                    "the class keeps training data, and the unlearned model may be damaged: %s%s",
                    c["class"], c["kept_images"], 100 * c["before"], 100 * c["after"], hint, note)
        note = ""
