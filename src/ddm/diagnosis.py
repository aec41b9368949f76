"""Finding the training data that hurts the model (the paper's Sec. 4.3, "diagnosis").

:func:`diagnose` asks the datamodel how a validation objective would change if each group were
removed and returns a :class:`Diagnosis`: one *quality* score per group (positive = the group helps
the validation objective, negative = removing it is predicted to help), kept apart from the
decision of what to flag (:meth:`Diagnosis.issues`), as cleanlab separates scores and thresholds.

Also here, for measuring any detector against known label noise: :func:`flip_labels`,
:func:`detection_metrics` (ROC AUC, precision at k) and :func:`cleanlab_suspicion`, the
practitioners' reference (cleanlab on out-of-sample probabilities of the same model).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddm.cluster.groups import Groups
from ddm.config import TrainConfig
from ddm.data.dataset import Split
from ddm.exceptions import ConfigError, require
from ddm.objectives.influence import true_label_loss
from ddm.workspace import load_json, save_json

OBJECTIVES = {"loss": "dist2", "accuracy": "accuracy"}
#: default of :meth:`Diagnosis.issues` and `ddm diagnose --threshold`: the highest recall of flipped labels
#: while flagging under 5 % of clean data, on seed 3 of benchmarks/diagnosis_threshold.py, with the attribution's
#: class balance (DIAGNOSIS_CLASS_BALANCE). Loss: chosen again in 0.22 for the score with a standard error, on the
#: depth-2 digits ConvNet and the Fashion-MNIST ConvNet (0.1 again); seeds 0-2 are reported in
#: benchmarks/results/diagnosis-score-error.md. Accuracy: chosen before 0.22 on the depth-3 digits ConvNet and
#: Fashion-MNIST (benchmarks/results/diagnosis-threshold-class-balance.md: no threshold flagged under 5 % of clean
#: data on the selection seed, so the rule took the smallest, and its flags find flipped labels at chance level;
#: prefer the loss)
DEFAULT_THRESHOLDS = {"loss": 0.1, "accuracy": 1e-5}
#: the class balance of the diagnosis' attribution (``emulate.other_class_scale``). 1 (none) until the
#: rerun after 0.10: on the same benchmark, with each setting's threshold chosen by the rule above on seed 3,
#: 0.5 flagged 2.1 % of clean data (1: 4.2 %) at 55 % precision and 15 % recall on 10 % flipped labels (1: 20 % and
#: 4 %), seeds 0-2 (BENCHMARKS.md, "`ddm diagnose`'s default threshold")
DIAGNOSIS_CLASS_BALANCE = 0.5
#: the fewest validation samples whose per-sample effects give :attr:`Diagnosis.standard_error`; under it the
#: score falls back to the robust z-score among groups
MIN_SAMPLES_FOR_ERROR = 10
DEFAULT_THRESHOLD = DEFAULT_THRESHOLDS["loss"]
#: the default flagging rule where the score is a p-value (the loss with a standard error, since 0.25): the
#: Benjamini-Hochberg cut at this false discovery rate (:meth:`Diagnosis.fdr_threshold`), which tightens as K grows
#: where a fixed threshold flags its share of the groups whose removal changes nothing. Chosen after a first rule
#: failed (benchmarks/results/probes-028/fdr-rule.md: the rate it chose, 0.5, flagged 8.4 % of clean data on held-out
#: MLPs) as the loosest rate that passed that rule on those held-out runs, then tested on 18 fresh runs written before
#: them (probes-028/fdr-fresh.sh): clean data flagged 1.1 % against the threshold's 9.1 %, flipped labels found 26 %
#: against 37 % at 69 % precision against 56 % (BENCHMARKS.md, "A false-discovery-rate cut for `ddm diagnose`")
DEFAULT_FDR = 0.2


@dataclass
class Diagnosis:
    """``quality[k]``: predicted worsening of the validation objective when group ``k`` is removed.

    For ``loss``: summed validation loss increase; for ``accuracy``: accuracy drop. Negative means
    the group is predicted to hurt: removing it would improve the model on the validation data.
    """

    quality: torch.Tensor  # [K]
    groups: Groups
    objective: str
    method: str = "ddm"
    seconds: float | None = None  # DDM: online cost from scratch (cached emulations at their recorded time)
    #: ``[K]``: the standard error of ``quality`` over the validation samples (``quality`` is a sum over them:
    #: sqrt(T) times the standard deviation of the T per-sample effects); None where the objective is not a sum
    #: over samples (accuracy) or there are fewer than MIN_SAMPLES_FOR_ERROR of them
    standard_error: torch.Tensor | None = None

    def score(self) -> torch.Tensor:
        """Bounded quality ``[K]`` in (0, 1), lower = more likely an issue; comparable across datasets and
        validation sizes, unlike ``quality`` (in units of the objective, summed over the validation samples).

        With ``standard_error`` (the loss objective): the standard normal CDF of ``quality / standard_error``,
        how consistently the validation samples agree that removing the group helps (near 0) or hurts (near 1);
        0.5 is no evidence either way. A group whose predicted gain is a few samples' noise scores near 0.5 however
        it ranks among the others. Without it: the normal CDF of the group's robust z-score among all groups,
        ``(quality - median) / (1.4826 MAD)`` (0.5 a typical group, near 0 one far below the others), which
        flags a share of the groups whatever their effects (BENCHMARKS.md, "`ddm diagnose`'s score")."""
        if self.standard_error is not None:
            q, se = self.quality.double(), self.standard_error.double()
            exact = torch.where(q < 0, -torch.inf, torch.where(q > 0, torch.inf, 0.0)).double()  # no spread
            z = torch.where(se > 0, q / se.clamp_min(1e-300), exact)
            return (0.5 * torch.special.erfc(-z / 2 ** 0.5)).float()
        q = self.quality.double()
        med = q.quantile(0.5)  # the midpoint median (torch's median() takes the lower middle value)
        mad = 1.4826 * (q - med).abs().quantile(0.5)
        if not mad > 0:
            mad = q.std() if len(q) > 1 and q.std() > 0 else torch.tensor(1.0, dtype=torch.float64)
        z = (q - med) / mad
        return (0.5 * torch.special.erfc(-z / 2 ** 0.5)).float()

    @property
    def score_meaning(self) -> str:
        """What :meth:`score` means for this diagnosis, in one line (`ddm diagnose` and `ddm report` print it)."""
        if self.standard_error is not None:
            return ("score = 0..1, how consistently the validation samples say removing it helps (near 0) or hurts "
                    "(near 1), 0.5 no evidence")
        return "score = bounded 0..1 among the groups (0.5 typical, near 0 an outlier)"

    def ranking(self) -> torch.Tensor:
        """Groups from the most harmful (lowest quality) to the most useful."""
        return torch.argsort(self.quality, stable=True)

    @property
    def default_threshold(self) -> float:
        """The threshold :meth:`issues` uses for this diagnosis's objective (``DEFAULT_THRESHOLDS``) where no false
        discovery rate is its default (:attr:`default_fdr`), or a threshold is asked for."""
        return DEFAULT_THRESHOLDS.get(self.objective, DEFAULT_THRESHOLD)

    @property
    def default_fdr(self) -> float | None:
        """The false discovery rate :meth:`issues` flags at by default (:data:`DEFAULT_FDR`) where the score is a
        p-value (the loss with a standard error); None where it is a rank among groups (the default threshold)."""
        return DEFAULT_FDR if self.objective == "loss" and self.standard_error is not None else None

    @property
    def default_rule(self) -> str:
        """The default flagging rule in words (`ddm report` prints it)."""
        if self.default_fdr is not None:
            return f"the Benjamini-Hochberg cut at false discovery rate {self.default_fdr:g}"
        return f"the threshold {self.default_threshold:g}"

    def fdr_threshold(self, fdr: float) -> float:
        """The Benjamini-Hochberg cut on :meth:`score` at false discovery rate ``fdr``: the largest score
        ``p_(i)`` with ``p_(i) <= fdr * i / K`` among the K groups' scores sorted ascending (0 where none is).

        With a standard error a score is a one-sided p-value (about uniform for a group whose removal changes
        nothing), so the groups at or under the cut are flagged with about ``fdr`` of them false on average;
        unlike a fixed threshold, the cut tightens as K grows. Without a standard error (accuracy, or few
        validation samples) the score is a rank among groups and the cut only orders them."""
        if not 0 < fdr < 1:
            raise ConfigError(f"false discovery rate {fdr} must lie in (0, 1), e.g. 0.1")
        p = torch.sort(self.score().double()).values
        k = len(p)
        ok = (p <= fdr * torch.arange(1, k + 1, dtype=torch.float64) / k).nonzero()
        return float(p[int(ok.max())]) if len(ok) else 0.0

    def issues(self, threshold: float | None = None, max_fraction: float | None = None,
               fdr: float | None = None) -> list[int]:
        """Groups flagged as issues, most harmful (lowest quality) first: bounded score (:meth:`score`) below
        ``threshold`` *and* negative quality (removing it is predicted to help); at most ``max_fraction`` of the
        training samples when given. ``fdr``: instead of ``threshold``, the score at or under the Benjamini-Hochberg
        cut at that false discovery rate (:meth:`fdr_threshold`). Neither given: :attr:`default_fdr` where the score
        is a p-value (the loss with a standard error), else :attr:`default_threshold` (chosen on a selection seed
        and reported on others: benchmarks/results/diagnosis-score-error.md)."""
        if fdr is not None and threshold is not None:
            raise ConfigError("give a threshold or a false discovery rate, not both")
        if fdr is None and threshold is None:
            fdr = self.default_fdr
        cut = None if fdr is None else self.fdr_threshold(fdr)
        threshold = self.default_threshold if threshold is None else threshold
        if cut is None and not 0 < threshold < 1:
            raise ConfigError(f"threshold {threshold} is on the bounded score: give a value in (0, 1) "
                              f"(default {self.default_threshold:g})")
        out: list[int] = []
        budget = None if max_fraction is None else max_fraction * len(self.groups.assignment)
        used, sizes = 0, self.groups.sizes()
        score = self.score().double()
        passes = score < threshold if cut is None else (score <= cut) & (cut > 0)  # [K]
        for g in self.ranking().tolist():
            if float(self.quality[g]) >= 0:
                break
            if not passes[g]:  # with a standard error the score need not follow the quality
                continue
            if budget is not None and used + int(sizes[g]) > budget:
                break
            out.append(g)
            used += int(sizes[g])
        return out

    def worst_fraction(self, fraction: float) -> list[int]:
        """The lowest-quality groups covering ``fraction`` of the training samples (at least one group)."""
        if not 0 < fraction < 1:
            raise ConfigError(f"fraction must lie in (0, 1), got {fraction}")
        sizes, budget = self.groups.sizes(), fraction * len(self.groups.assignment)
        out: list[int] = []
        used = 0
        for g in self.ranking().tolist():
            if out and used + int(sizes[g]) > budget:
                break
            out.append(g)
            used += int(sizes[g])
        return out

    def sample_quality(self) -> torch.Tensor:
        """Each training sample's group quality ``[N]`` (lower = more suspicious)."""
        return self.quality[self.groups.assignment]

    def table(self, k: int | None = 10, members: int | None = 10, threshold: float | None = None,
              fdr: float | None = None, flagged_too: bool = False) -> list[dict[str, Any]]:
        """The ``k`` lowest-quality groups (all with ``None``), most harmful first: ``group``, ``label``,
        ``size``, ``quality``, ``score`` (bounded), ``flagged`` (an issue at ``threshold``, or at the false
        discovery rate ``fdr``: :meth:`issues`) and ``members`` (ids in the training split; the first ``members``
        of them). ``flagged_too``: the flagged groups beyond those ``k`` follow them (flags go by the score, which
        need not follow the quality: a small quality with a smaller standard error)."""
        sizes, score = self.groups.sizes(), self.score()
        flagged = set(self.issues(threshold, fdr=fdr))
        shown = self.ranking()[:k].tolist()
        if flagged_too:
            top = set(shown)
            shown += [g for g in self.ranking().tolist() if g in flagged and g not in top]
        rows = []
        for g in shown:
            ids = self.groups.member_ids(g).tolist()
            rows.append({"group": g, "label": int(self.groups.labels[g]), "size": int(sizes[g]),
                         "quality": float(self.quality[g]), "score": float(score[g]), "flagged": g in flagged,
                         "members": ids if members is None else ids[:members],
                         "classes": self.groups.num_classes_of(g)})
        return rows

    def to_frame(self, threshold: float | None = None) -> Any:
        """A pandas DataFrame, one row per group from the most harmful: ``rank``, ``group``, ``label``,
        ``size``, ``quality``, ``score``, ``flagged`` and ``members`` (ids in the training split, the same id
        space as :meth:`AttributionMatrix.to_frame`). Needs pandas (``pip install 'ddm[frames]'``)."""
        pd = require("pandas", "frames")
        rows = [{"rank": r + 1, **row} for r, row in enumerate(self.table(None, None, threshold))]
        return pd.DataFrame(rows)  # type: ignore[attr-defined]

    def save(self, path: str | Path) -> None:
        save_json(Path(path), {"objective": self.objective, "method": self.method,
                               "quality": self.quality.tolist(),
                               "standard_error": (None if self.standard_error is None
                                                  else self.standard_error.tolist()),
                               "group_method": self.groups.method,
                               "assignment": self.groups.assignment.tolist(), "labels": self.groups.labels.tolist(),
                               "sample_ids": (self.groups.sample_ids if self.groups.sample_ids is not None
                                              else torch.arange(len(self.groups.assignment))).tolist()})

    @classmethod
    def load(cls, path: str | Path) -> Diagnosis:
        d = load_json(Path(path))
        g = Groups(torch.tensor(d["assignment"]), torch.tensor(d["labels"]), d["group_method"],
                   torch.tensor(d["sample_ids"]))
        se = d.get("standard_error")  # absent from files written before 0.22
        return cls(torch.tensor(d["quality"]), g, d["objective"], d["method"],
                   standard_error=None if se is None else torch.tensor(se))


def diagnose(dm: Any, validation: Split, objective: str = "loss", name: str | None = None,
             other_class_scale: float = DIAGNOSIS_CLASS_BALANCE) -> Diagnosis:
    """Quality of every group of a fitted :class:`~ddm.pipeline.DistilledDatamodel` for ``validation``.

    ``objective``: ``loss`` (sum of the validation samples' cross-entropy) or ``accuracy``. ``other_class_scale``:
    the attribution's class balance (``emulate.other_class_scale``; default :data:`DIAGNOSIS_CLASS_BALANCE`, which
    the default thresholds were chosen with; 1 leaves it out).
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if len(validation) == 0:
        raise ConfigError("the validation split is empty")
    from ddm.pipeline import online_seconds

    attr = dm.attribute(validation, OBJECTIVES[objective], name=name or f"diagnose-{objective}",
                        other_class_scale=other_class_scale)
    return Diagnosis(attr.scores.sum(0), attr.groups, objective, seconds=online_seconds([attr]),
                     standard_error=summed_error(attr.scores) if objective == "loss" else None)


def verify(dm: Any, train: Split, test: Split, rows: list[int], removed: list[int], objective: str, orders: int,
           quality: torch.Tensor | None = None, retrain: Any = None) -> dict[str, Any]:
    """Exact retraining's answer to "does removing ``removed`` (groups, together) help on the validation samples
    ``test[rows]``?": the target's training on ``train`` (the workspace's) rerun from theta_0 with and without them
    in ``orders`` data orders (the target's own, then others), paired by order so that each difference leaves the
    order's own noise out.

    Returns the worsening of the validation objective per order (summed cross-entropy increase, or accuracy drop,
    as :class:`Diagnosis` measures quality; negative = removing them helped), its mean and standard deviation, and,
    given the diagnosis' ``quality``, the datamodel's prediction (the sum of the groups' qualities). The retrains
    are cached in the workspace (``diagnosis/retrain-<key>``) and resume after a kill. ``retrain``: the training
    loop of a trajectory handed in (``fn(model, train[, seed])``, :class:`~ddm.evaluation.retrain.Retrainer`); None
    retrains with ddm's own loop, which a handed-in trajectory refuses."""
    from ddm import progress
    from ddm.config import fingerprint
    from ddm.evaluation.retrain import RetrainCache, folder_key_parts, retrainer_for

    if objective not in OBJECTIVES:
        raise ConfigError(f"objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if orders < 1:
        raise ConfigError(f"verification needs at least one data order, got {orders}")
    if not removed:
        raise ConfigError("nothing to verify: no group was flagged (a larger --threshold flags more)")
    retrainer = retrainer_for(dm, retrain, orders)
    F = dm.fitted()
    key = fingerprint(dm.keys["train"], dm.keys["groups"], test.fingerprint(), *folder_key_parts(retrainer))
    cache = RetrainCache(dm.ws.path("diagnosis", f"retrain-{key}"), F.model, F.trajectory.checkpoint(0), train,
                         F.groups, dm.config.train, test.x, device=dm.device(),
                         threads=dm.training_threads(), retrain=retrainer)
    chosen = set(rows)
    rest = [i for i in range(len(test)) if i not in chosen]  # the test samples the flags were not chosen on

    def worse(with_them: torch.Tensor, without: torch.Tensor, at: list[int]) -> float:
        y = test.y[at]
        if objective == "loss":
            return float(true_label_loss(without[at], y).sum() - true_label_loss(with_them[at], y).sum())
        return float((with_them[at].argmax(1) == y).float().mean() - (without[at].argmax(1) == y).float().mean())

    seeds: list[int | None] = [None] + [1000 + i for i in range(orders - 1)]
    pbar = progress.bar(2 * orders, "verification retrains")
    per_order, per_order_rest = [], []
    for seed in seeds:
        full = cache.get([], seed)
        pbar.update(1)
        without = cache.get(removed, seed)
        per_order.append(worse(full, without, rows))
        if rest:
            per_order_rest.append(worse(full, without, rest))
        pbar.update(1)
    pbar.close()
    out: dict[str, Any] = {"groups": sorted(removed), "objective": objective, "orders": orders,
                           **_summary(per_order)}
    if rest:
        # the flags were chosen on the validation samples, so their change there is biased toward helping; the rest
        # of the test split tells whether it carries over (a K = 1000 MLP: -16.4 on the 500 chosen on)
        out["held_out"] = {"samples": len(rest), **_summary(per_order_rest)}
    if quality is not None:
        out["predicted"] = float(quality[torch.as_tensor(sorted(removed))].sum())
    return out


def _summary(per_order: list[float]) -> dict[str, Any]:
    """The per-order worsenings (``measured``), their mean, standard deviation and how many orders it helped in."""
    return {"measured": per_order, "measured_mean": float(np.mean(per_order)),
            "measured_std": float(np.std(per_order, ddof=1)) if len(per_order) > 1 else 0.0,
            "helped_in": int(sum(w < 0 for w in per_order))}


def from_group_scores(scores: torch.Tensor, groups: Groups, method: str) -> Diagnosis:
    """A peer method's diagnosis from group scores ``[T, K]`` on validation targets (sign of
    :mod:`ddm.baselines.peers`: positive = helps the target's loss)."""
    return Diagnosis(scores.sum(0), groups, "loss", method, standard_error=summed_error(scores))


def summed_error(scores: torch.Tensor) -> torch.Tensor | None:
    """The standard error ``[K]`` of ``scores.sum(0)`` over the T validation samples of ``scores`` ``[T, K]``
    (sqrt(T) times the per-sample standard deviation); None under MIN_SAMPLES_FOR_ERROR samples, where it would be
    too noisy to rank by."""
    if scores.dim() != 2 or scores.shape[0] < MIN_SAMPLES_FOR_ERROR:
        return None
    s = scores.double()
    return (s.std(0) * s.shape[0] ** 0.5).float()


def flip_labels(split: Split, fraction: float, num_classes: int, seed: int = 0) -> tuple[Split, torch.Tensor]:
    """Copy of ``split`` with ``fraction`` of its labels changed to another class (uniformly); also the mask."""
    if not 0 < fraction < 1:
        raise ConfigError(f"noise fraction must lie in (0, 1), got {fraction}")
    g = torch.Generator().manual_seed(seed)
    n = len(split)
    rows = torch.randperm(n, generator=g)[: round(fraction * n)]
    y = split.y.clone()
    y[rows] = (y[rows] + torch.randint(1, num_classes, (len(rows),), generator=g)) % num_classes
    mask = torch.zeros(n, dtype=torch.bool)
    mask[rows] = True
    return replace(split, y=y), mask


def detection_metrics(suspicion: torch.Tensor, is_noisy: torch.Tensor) -> dict[str, float]:
    """ROC AUC of ``suspicion`` (higher = more likely wrong) and precision among the top k = #noisy."""
    from sklearn.metrics import roc_auc_score

    s = np.asarray(suspicion, dtype=np.float64)
    y = np.asarray(is_noisy, dtype=bool)
    if y.all() or not y.any():
        raise ConfigError("detection metrics need both noisy and clean samples")
    k = int(y.sum())
    top = np.argsort(-s, kind="stable")[:k]
    return {"auc": float(roc_auc_score(y, s)), "precision_at_k": float(y[top].mean())}


def out_of_sample_probs(model: torch.nn.Module, train: Split, cfg: TrainConfig, folds: int = 3,
                        seed: int = 0) -> torch.Tensor:
    """Class probabilities ``[N, C]`` of each training sample from a copy of ``model`` (at its current
    initial weights) trained on the other folds with ``cfg``."""
    from sklearn.model_selection import StratifiedKFold

    from ddm.models import params_of, with_params
    from ddm.train.loop import train_model

    theta0 = params_of(model)
    n = len(train)
    fold = torch.zeros(n, dtype=torch.long)
    y = train.y.numpy()
    # stratified: every fold holds each class in proportion (a class missing from a fold's training part
    # would get near-zero probabilities there and look like label noise)
    splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(n), y)
    for f, (_, held) in enumerate(splits):
        fold[torch.as_tensor(held)] = f
    probs: torch.Tensor | None = None
    for f in range(folds):
        net = with_params(model, theta0)
        train_model(net, train[torch.nonzero(fold != f).flatten()], cfg)
        net.eval()
        held = torch.nonzero(fold == f).flatten()
        with torch.no_grad():
            p = net(train.x[held]).softmax(-1)
        if probs is None:
            probs = torch.zeros(n, p.shape[1])
        probs[held] = p
    assert probs is not None
    return probs


def cleanlab_suspicion(pred_probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cleanlab's view of the labels: suspicion = 1 - label quality ``[N]`` and its flagged issues ``[N]``."""
    require("cleanlab", "peers")
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    p, y = pred_probs.double().numpy(), labels.numpy()
    quality = get_label_quality_scores(y, p)
    # n_jobs=1: cleanlab's default forks a pool of workers, and a fork of a process whose torch threads are running
    # can deadlock (a test run hung there, in the pool's shutdown); one process gives the same flags
    flagged = find_label_issues(y, p, n_jobs=1)
    return torch.as_tensor(1.0 - quality), torch.as_tensor(flagged)
