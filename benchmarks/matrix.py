"""Configuration matrix (issue "DDM that attributes on models and data it was not tuned on").

For every configuration and seed: train the target, fit the default DDM (``ddm.DistilledDatamodel`` with the
configured preset, nothing tuned here), and measure against exact retraining of the same schedule:

* **LDS**: random half subsets of the groups (Spearman per target between predicted and retrained test loss);
* **other-class LDS**: for each class, subsets that keep every group of that class and drop half of the others,
  scored on that class's targets: a score that only marks the target's own class gets 0 here;
* **unlearning** (seed 0): test accuracy after removing 4 random groups, and accuracy on a removed class.

Peers in the same table: last-layer influence (dattri, exact last-layer Hessian), TracIn and TRAK (dattri), and
the trivial "same class" score. ``--select`` runs the selection configurations on seed 3 with a grid of
one setting's values (``--grid``; ``distill.damping`` by default) and reports validation targets only (disjoint
from the reported ones).

    python benchmarks/matrix.py --out benchmarks/results/matrix            # report, seeds 0-2
    python benchmarks/matrix.py --select --out benchmarks/results/matrix-select
    python benchmarks/matrix.py --select --grid distill.checkpoints=1,3,5,10 --unlearn-dampings= \
        --out benchmarks/results/matrix-select-checkpoints
    python benchmarks/matrix.py --configs digits-mlp-K100-adam,fmnist-convnet-K40-momentum-wd,\
digits-convnet-layernorm-K20-adam --out benchmarks/results/matrix-held-out     # held out (below)

The held-out configurations (``HELD_OUT``) were added after the defaults were final and measured once with them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import ddm
from ddm import progress
from ddm.attribution.fit import balance_classes
from ddm.baselines.peers import PEERS as PEERS_ALL
from ddm.baselines.peers import PeerConfig, group_scores, predicted_loss, sample_scores
from ddm.config import RunConfig
from ddm.emulate.perturbations import sample_perturbations
from ddm.evaluation.metrics import lds, other_class_subsets
from ddm.evaluation.privacy import synset_similarity
from ddm.evaluation.retrain import RetrainCache
from ddm.objectives.influence import true_label_loss
from ddm.pipeline import online_seconds
from ddm.train.loop import accuracy
from ddm.workspace import atomic_write_text, load_tensors, save_tensors

FM = ["--dataset=fashion-mnist", "data.train_size=3000", "data.test_size=1000"]
#: name -> (overrides on the demo preset, selection?)
CONFIGS: dict[str, tuple[list[str], bool]] = {
    "digits-convnet-K100-sgd": ([], True),
    "fmnist-mlp-K40-sgd": ([*FM, "model.name=mlp", "model.width=64", "model.depth=2", "train.epochs=10",
                            "train.lr=0.05", "train.batch_size=64", "cluster.per_class=4"], True),
    "digits-convnet-K40-momentum-wd": (["train.lr=0.02", "train.momentum=0.9", "train.weight_decay=5e-4",
                                        "cluster.per_class=4"], False),
    "digits-mlp-K40-sgd": (["model.name=mlp", "model.width=64", "model.depth=2", "cluster.per_class=4"], False),
    "digits-convnet-groupnorm-K100-momentum": (["model.norm=groupnorm", "train.lr=0.02", "train.momentum=0.9",
                                                "cluster.per_class=10"], False),
    "fmnist-convnet-K100-sgd": ([*FM, "model.width=16", "train.epochs=5", "train.lr=0.05"], False),
    "fmnist-mlp-K100-momentum": ([*FM, "model.name=mlp", "model.width=128", "model.depth=2", "train.epochs=10",
                                  "train.lr=0.01", "train.momentum=0.9", "train.batch_size=64",
                                  "cluster.per_class=10"], False),
    "fmnist-mlp-K40-adam": ([*FM, "model.name=mlp", "model.width=64", "model.depth=2", "train.epochs=10",
                             "train.optimizer=adam", "train.lr=0.001", "train.batch_size=64", "cluster.per_class=4"],
                            False),
    "digits-resnet-K40-momentum": (["model.name=resnet", "model.width=16", "model.depth=2", "train.epochs=10",
                                    "train.lr=0.05", "train.momentum=0.9", "cluster.per_class=4"], False),
}
#: configurations added after the defaults were final and measured once with them, never used for a choice (not in
#: the default ``--configs``: ``--configs`` names them)
HELD_OUT: dict[str, list[str]] = {
    "digits-mlp-K100-adam": ["model.name=mlp", "model.width=128", "model.depth=2", "train.optimizer=adam",
                             "train.lr=0.001", "cluster.per_class=10"],
    "fmnist-convnet-K40-momentum-wd": [*FM, "model.width=16", "train.epochs=5", "train.lr=0.02", "train.momentum=0.9",
                                       "train.weight_decay=5e-4", "cluster.per_class=4"],
    "digits-convnet-layernorm-K20-adam": ["model.norm=layernorm", "train.optimizer=adam", "train.lr=0.001",
                                          "cluster.per_class=2"],
    # groups that mix classes (the paper's "w/o cluster" split), added after a probe found their synsets failing
    "digits-convnet-sequential-K40": ["cluster.method=sequential", "cluster.num_groups=40"],
    "fmnist-mlp-sequential-K50-sgd": [*FM, "model.name=mlp", "model.width=64", "model.depth=2", "train.epochs=10",
                                      "train.lr=0.05", "train.batch_size=64", "cluster.method=sequential",
                                      "cluster.num_groups=50"],
    # the same with the loop's previous default, a last partial minibatch kept as is: every 4-group removal leaves
    # one of 8 samples there (train.last_batch=balanced, the default since, was measured against it here)
    "fmnist-mlp-sequential-K50-sgd-keep": [*FM, "model.name=mlp", "model.width=64", "model.depth=2",
                                           "train.epochs=10", "train.lr=0.05", "train.batch_size=64",
                                           "train.last_batch=keep", "cluster.method=sequential",
                                           "cluster.num_groups=50"],
    # Adam with an L2 term: a probe saw unlearning 4 of class 0's 10 groups forget the class (exact retraining: 47%)
    "digits-convnet-K100-adam-wd": ["train.optimizer=adam", "train.lr=0.001", "train.weight_decay=1e-3"],
    # an architecture the matrix never had: a small Vision Transformer (attention, LayerNorm, mean pooling)
    "digits-vit-K40-adam": ["model.name=vit", "model.width=32", "model.depth=2", "train.optimizer=adam",
                            "train.lr=0.001", "cluster.per_class=4"],
    # AlexNet's layout without normalisation, trained with Adam: a probe whose synsets failed a third of the health
    # checks (images initialised from members the model fits with near-zero loss carry no gradient)
    "digits-alexnet-K40-adam": ["model.name=alexnet", "model.width=16", "train.optimizer=adam", "train.lr=0.001",
                                "cluster.per_class=4"],
    # batch norm, the normalisation most models in use have (running statistics; model.norm=batchnorm, added after
    # a probe found a reopened workspace's model without them)
    "digits-convnet-batchnorm-K40-momentum": ["model.norm=batchnorm", "train.lr=0.02", "train.momentum=0.9",
                                              "cluster.per_class=4"],
    "fmnist-convnet-batchnorm-K40-sgd": [*FM, "model.norm=batchnorm", "model.width=16", "train.epochs=5",
                                         "train.lr=0.05", "cluster.per_class=4"],
    # ResNet-18's layout with BatchNorm, as published (the report's digits-resnet-K40-momentum with BatchNorm)
    "digits-resnet-batchnorm-K40-momentum": ["model.name=resnet", "model.norm=batchnorm", "model.width=16",
                                             "model.depth=2", "train.epochs=10", "train.lr=0.05", "train.momentum=0.9",
                                             "cluster.per_class=4"],
    # a cosine learning-rate schedule (train.schedule, added after 0.11), as most training recipes have
    "digits-convnet-K40-cosine": ["train.lr=0.05", "train.momentum=0.9", "train.weight_decay=5e-4",
                                  "train.schedule=cosine", "cluster.per_class=4"],
    "fmnist-mlp-K40-cosine": [*FM, "model.name=mlp", "model.width=64", "model.depth=2", "train.epochs=10",
                              "train.lr=0.1", "train.batch_size=64", "train.schedule=cosine", "cluster.per_class=4"],
    "digits-mlp-K40-adam-cosine": ["model.name=mlp", "model.width=64", "model.depth=2", "train.optimizer=adam",
                                   "train.lr=0.003", "train.schedule=cosine", "cluster.per_class=4"],
    # one group per training sample (K = N = 1,437): the setting per-example attribution methods are made for
    "digits-convnet-per-sample": ["cluster.method=sequential", "cluster.num_groups=1437"],
    # the same on Fashion-MNIST's MLP (K = 3,000: above 2,000 groups, so W is fitted linearised, emulate.fit=auto)
    "fmnist-mlp-per-sample": [*FM, "model.name=mlp", "model.width=64", "model.depth=2", "train.epochs=10",
                              "train.lr=0.05", "train.batch_size=64", "cluster.method=sequential",
                              "cluster.num_groups=3000"],
    # last layers above distill.exact_limit (6,000 parameters), where the curvature is exact only on the top
    # feature directions (distill.curvature=auto -> subspace): 10 x 1,025 and 10 x 769 parameters
    "digits-mlp-wide-K40-sgd": ["model.name=mlp", "model.width=1024", "model.depth=2", "cluster.per_class=4"],
    "digits-convnet-wide-K40-momentum": ["model.width=48", "model.depth=1", "train.lr=0.02", "train.momentum=0.9",
                                         "cluster.per_class=4"],
    # (the two above, seeds 3 and 4, were the large-head selection configurations of emulate.unlearn_curvature)
    # large last layers added after that choice to report it on, never used for a choice: 10 x 1,025 on
    # Fashion-MNIST, 10 x 769 with Adam on an MLP and on a ConvNet
    "fmnist-mlp-wide-K40-sgd": [*FM, "model.name=mlp", "model.width=1024", "model.depth=2", "train.epochs=10",
                                "train.lr=0.05", "train.batch_size=64", "cluster.per_class=4"],
    "digits-mlp-wide-K40-adam": ["model.name=mlp", "model.width=768", "model.depth=2", "train.optimizer=adam",
                                 "train.lr=0.001", "cluster.per_class=4"],
    "digits-convnet-wide-K40-adam": ["model.width=48", "model.depth=1", "train.optimizer=adam", "train.lr=0.001",
                                     "cluster.per_class=4"],
    # AdamW (decoupled weight decay, train.optimizer=adamw, added after 0.14), the optimizer most recipes now use
    "digits-mlp-K40-adamw": ["model.name=mlp", "model.width=64", "model.depth=2", "train.optimizer=adamw",
                             "train.lr=0.001", "train.weight_decay=0.05", "cluster.per_class=4"],
    "digits-convnet-K40-adamw": ["train.optimizer=adamw", "train.lr=0.001", "train.weight_decay=0.05",
                                 "cluster.per_class=4"],
    # a Fashion-MNIST ConvNet of depth 2 (784 features: a subspace head of 7,850 parameters) trained with Adam, added
    # after 0.15 to score `ddm check`'s damping advice on a configuration no choice or probe had seen
    "fmnist-convnet-d2-K40-adam": [*FM, "model.width=16", "model.depth=2", "train.epochs=5", "train.optimizer=adam",
                                   "train.lr=0.002", "cluster.per_class=4"],
    # added after the step-agreement warning (0.7, read off the two models above that rank below the class labels) to
    # score an automatic tempered synset below it on models no choice had seen: AlexNet with momentum and on
    # Fashion-MNIST, the batch-norm ResNet on Fashion-MNIST, and an MLP trained with Adam long past fitting its data
    "digits-alexnet-K40-momentum": ["model.name=alexnet", "model.width=16", "train.lr=0.02", "train.momentum=0.9",
                                    "cluster.per_class=4"],
    "fmnist-alexnet-K40-adam": [*FM, "model.name=alexnet", "model.width=16", "train.epochs=10", "train.optimizer=adam",
                                "train.lr=0.001", "cluster.per_class=4"],
    "fmnist-resnet-batchnorm-K40-momentum": [*FM, "model.name=resnet", "model.norm=batchnorm", "model.width=16",
                                             "model.depth=2", "train.epochs=5", "train.lr=0.05", "train.momentum=0.9",
                                             "cluster.per_class=4"],
    "digits-mlp-K40-adam-long": ["model.name=mlp", "model.width=64", "model.depth=2", "train.optimizer=adam",
                                 "train.lr=0.003", "train.epochs=60", "cluster.per_class=4"],
    # the weight-decayed momentum ConvNet (the schedule regime's report configuration) with its last block's instance
    # norm off 2x2 maps: depth 2 (the last convolution at 4x4, 128 features), or GroupNorm across channels; added
    # after a probe found exact retraining of the depth-3 ConvNet fragile ("probe_fragile_retrain.py")
    "digits-convnet-d2-K40-momentum-wd": ["model.depth=2", "train.lr=0.02", "train.momentum=0.9",
                                          "train.weight_decay=5e-4", "cluster.per_class=4"],
    "digits-convnet-groupnorm-K40-momentum-wd": ["model.norm=groupnorm", "train.lr=0.02", "train.momentum=0.9",
                                                 "train.weight_decay=5e-4", "cluster.per_class=4"],
    # the depth rule's ConvNet (depth 2 on 8x8) on the cosine-schedule configuration that repeated the regime's miss,
    # and on the digits selection configuration (plain SGD, K = 100)
    "digits-convnet-d2-K40-cosine": ["model.depth=2", "train.lr=0.05", "train.momentum=0.9", "train.weight_decay=5e-4",
                                     "train.schedule=cosine", "cluster.per_class=4"],
    "digits-convnet-d2-K100-sgd": ["model.depth=2"],
    "digits-convnet-d2-K100-adam-wd": ["model.depth=2", "train.optimizer=adam", "train.lr=0.001",
                                       "train.weight_decay=1e-3"],
    # the third digits ConvNet of the report configurations with the depth rule's network, so that the report
    # matrix can be read with the library's current digits ConvNet (a redefinition after its results: labelled so)
    "digits-convnet-d2-groupnorm-K100-momentum": ["model.depth=2", "model.norm=groupnorm", "train.lr=0.02",
                                                  "train.momentum=0.9", "cluster.per_class=10"],
}
CONFIGS.update({k: (v, False) for k, v in HELD_OUT.items()})
#: design variants measured beside the default, by configuration ("*" = every configuration)
VARIANT_ROWS: dict[str, list[tuple[str, list[str]]]] = {
    "*": [("DDM head-noise", ddm.presets.recipe("head-noise"))],
    "fmnist-mlp-K40-sgd": [("DDM local-free (previous default)", ddm.presets.recipe("local-free"))],
}
PEERS = ("if-explicit", "ekfac", "tracin", "trak")
TARGET_SEED = 12345


def other_orders(seed: int) -> list[int]:
    """The two data-order seeds of the extra exact retrains that measure retraining's own spread on a run of
    ``seed``: 1 and 2, or for seeds 1 and 2 the two of 1, 2, 3 that differ from the run's own (whose order is the
    target's: a retrain at seed 1 of a seed-1 run is the target order's again)."""
    return ground_truth_orders(seed, 3)


def ground_truth_orders(seed: int, n: int) -> list[int]:
    """The ``n - 1`` data-order seeds whose retrains join the target order's in the averaged ground truth: the
    first of 1, 2, 3, ... that differ from the run's own seed (seed 3's first is ``other_orders(3)[0]``, whose
    retrains ``ceiling.py`` made)."""
    return [s for s in range(1, n + 1) if s != seed][: n - 1]


def target_rows(data: Any, n: int = 50, select: bool = True) -> tuple[torch.Tensor, Any]:
    """The targets of a run: test rows ``n .. 2n`` of a fixed permutation (the validation targets, ``select``) or
    ``0 .. n`` (the reported ones), and those test samples."""
    perm = torch.randperm(len(data.test), generator=torch.Generator().manual_seed(TARGET_SEED))
    rows = perm[n:2 * n] if select else perm[:n]
    return rows, data.test[rows]


def same_class(groups: Any, labels: torch.Tensor) -> torch.Tensor:
    """``[T, K]``: 1 where group k holds the class of target t. As group scores, the trivial same-class baseline."""
    return (groups.labels[None, :] == labels[:, None]).float()


#: the seed of ``ddm check``'s draws of subsets (ddm.evaluation.check.SUBSET_SEED)
CHECK_SEED = 40_000


Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def subset_scores(keep: torch.Tensor, oc_keep: dict[int, torch.Tensor], labels: torch.Tensor, predict: Predictor,
                  retrained: Predictor) -> tuple[float, float]:
    """(LDS over the kept masks ``keep``, other-class LDS over ``oc_keep``'s masks on each class's targets), rounded:
    ``predict`` and ``retrained`` map ``(masks [S, K], cols)`` to the targets ``cols``' losses ``[S, len(cols)]``."""
    every = torch.arange(len(labels))
    a = lds(predict(keep, every), retrained(keep, every))[0]
    per: list[float] = []
    for c, m in oc_keep.items():
        sel = torch.nonzero(labels == c).flatten()
        per += lds(predict(m, sel), retrained(m, sel))[1]
    return round(a, 3), round(float(np.mean(per)) if per else float("nan"), 3)


class ValidationTargets:
    """A seed's validation targets (:func:`target_rows`) and its LDS and other-class subsets, scored against the
    exact retrains of ``cache``, for the diagnostic scripts."""

    def __init__(self, dm: ddm.DistilledDatamodel, cache: RetrainCache, data: Any, seed: int,
                 halves_only: bool = False, select: bool = True) -> None:
        """``halves_only``: score the LDS halves only, without the other-class subsets (which cost a retrain each
        where they are not cached). ``select=False``: the reported targets instead (:func:`target_rows`)."""
        self.rows, self.targets = target_rows(data, select=select)
        self.keep, self.oc_keep = lds_subsets(dm.groups, self.targets.y, seed)
        if halves_only:
            self.oc_keep = {}
        self.cache = cache

    def retrained(self, masks: torch.Tensor, cols: torch.Tensor, order: int | None = None) -> torch.Tensor:
        """The targets ``cols``' losses after exact retraining without each mask's dropped groups ``[S, len(cols)]``
        (``order``: another data order's retrains)."""
        logits = torch.stack([self.cache.get(torch.nonzero(~k).flatten().tolist(), seed=order) for k in masks])
        return losses(logits[:, self.rows[cols]], self.targets.y[cols])

    def calibration(self, num_groups: int, subsets: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(every, halves, retrained)``: all target columns, the random halves ``ddm check --subsets`` draws (its
        seed, :data:`CHECK_SEED`; 16 by default) and the targets' losses after retraining without each half's dropped
        groups: the calibration retrains a diagnostic chooses a setting on, as the check would, before scoring it."""
        every = torch.arange(len(self.rows))
        halves = sample_perturbations(num_groups, subsets, 0.5, seed=CHECK_SEED)
        return every, halves, self.retrained(halves, every)

    def score(self, predict: Predictor) -> tuple[float, float]:
        """(LDS, other-class LDS) of ``predict(masks, cols)`` (predicted losses ``[S, len(cols)]``), rounded."""
        return subset_scores(self.keep, self.oc_keep, self.targets.y, predict, self.retrained)

    def baselines(self, dm: ddm.DistilledDatamodel, name: str) -> dict[str, tuple[float, float]]:
        """The scores of DDM's default (an attribution of the targets called ``name``) and of the same-class
        baseline."""
        attr = dm.attribute(self.targets, "dist2", name=name)
        same = same_class(dm.groups, self.targets.y)
        return {"DDM (the default)": self.score(lambda k, sel: attr.predict(k)[:, sel, 0]),
                "same class (trivial)": self.score(lambda k, sel: predicted_loss(same[sel], k))}


def per_mask(value: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A predictor ``(masks [S, K], cols) -> [S, len(cols)]`` from ``value(mask)``, every target's value for one kept
    mask (a retrain's losses), each mask's value computed once."""
    memo: dict[bytes, torch.Tensor] = {}

    def predict(masks: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        out = []
        for k in masks:
            key = k.numpy().tobytes()
            if key not in memo:
                memo[key] = value(k)
            out.append(memo[key][cols])
        return torch.stack(out)

    return predict


def head_retrained(dm: ddm.DistilledDatamodel, data: Any, targets: Any
                   ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A predictor ``(masks [S, K], cols) -> [S, len(cols)]`` of the ``targets``' losses after retraining only the
    last layer on theta_tau's frozen features without each mask's dropped groups (theta_0's last layer, the whole
    schedule: :func:`ddm.baselines.unlearners.retrain_head`), each subset's retrain made once."""
    from ddm.baselines.unlearners import retrain_head

    def value(k: torch.Tensor) -> torch.Tensor:
        keep = torch.isin(dm.groups.assignment, torch.nonzero(k).flatten())
        net = retrain_head(dm.model, dm.trajectory.final, data.train, keep, dm.config.train,
                           head_init=dm.trajectory[0])
        with torch.no_grad():
            return losses(net(targets.x)[None], targets.y)[0]

    return per_mask(value)


def check_halves(workspace: str | Path, data: Any = None
                 ) -> tuple[ddm.DistilledDatamodel, Any, Any, torch.Tensor, Any, torch.Tensor, torch.Tensor]:
    """A workspace ``ddm check`` has retrained, opened with what its random halves need: ``(dm, data, targets, rows,
    truth, keep, actual)``: the check's 200 targets (test ``rows``), its retrains (``truth``, a
    :class:`ddm.evaluation.protocol._Truth`), its 16 halves' keep-masks and the targets' retrained losses. ``data``:
    the workspace's data where its config cannot load them (arrays handed in from Python)."""
    from ddm.evaluation.check import SUBSET_SEED, check_targets
    from ddm.evaluation.protocol import _Truth, subset_losses

    dm = ddm.DistilledDatamodel(workspace).load()
    data = ddm.data.load(dm.config.data) if data is None else data
    rows = check_targets(len(data.test), 200)
    targets = data.test[rows]
    truth = _Truth(dm.ws.path("check"), dm, data, None)
    keep, actual = subset_losses(truth, dm.fitted().groups.num_groups, 16, 0.5, SUBSET_SEED, rows, targets.y,
                                 "retrains")
    return dm, data, targets, rows, truth, keep, actual


def check_other_class(dm: ddm.DistilledDatamodel, data: Any, targets: Any, rows: torch.Tensor, truth: Any
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The check's other-class subsets on a workspace :func:`check_halves` opened: ``(masks, sel, actual)``, the
    keep-masks (:func:`ddm.evaluation.check.other_class_subsets`), the targets they serve and those targets' losses
    after the check's retrains without each mask's dropped groups; None where the check has none."""
    from ddm.evaluation.check import other_class_subsets
    from ddm.evaluation.protocol import _loss

    subsets = other_class_subsets(dm.fitted().groups, targets.y, data.num_classes)
    if subsets is None:
        return None
    _, masks, sel = subsets
    logits = truth.many_test([torch.nonzero(~m).flatten().tolist() for m in masks], "other-class retrains")
    return masks, sel, _loss(logits[:, rows[sel]], targets.y[sel])


def extra_retrain(cache: RetrainCache, path: Path, rows: torch.Tensor | None = None, subsample: float = 1.0,
                  seed: int | None = None) -> torch.Tensor:
    """Logits on ``cache``'s evaluation inputs of a retrain that is not a removal of groups (cached at ``path``): on
    the training rows ``rows`` (None: all), each epoch taking ``subsample`` of its order
    (:func:`ddm.train.loop.train_model`), in the data order ``seed`` (None: the target's)."""
    from ddm import devices
    from ddm.train.loop import train_model

    if path.exists():
        return load_tensors(path)["logits"]
    net = cache._start()
    cfg = cache.cfg if seed is None else type(cache.cfg)(**{**cache.cfg.__dict__, "seed": seed})
    with torch.enable_grad(), devices.threads(cache.threads):
        train_model(net, cache.train if rows is None else cache.train[rows], cfg, subsample=subsample)
    net.eval()
    with torch.no_grad():
        logits = devices.forward(net, cache.eval_x)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(path, {"logits": logits})
    return logits


def rewound_losses(dm: ddm.DistilledDatamodel, targets: Any) -> Callable[[float], torch.Tensor]:
    """``effect_at(f)``: the ``targets``' losses at the recorded epoch tau (1 - f) minus at theta_tau (where a retrain
    without the fraction f of the samples stops, by the step count; 0 where no checkpoint lies that early), each
    epoch computed once (:func:`ddm.attribution.schedule.rewound_change`)."""
    from ddm.attribution.schedule import rewound_change

    last, memo = float(dm.trajectory.epochs[-1]), {}

    def effect_at(f: float) -> torch.Tensor:
        epoch = round(last * (1 - f), 4)
        if epoch not in memo:
            change = rewound_change(dm.model, dm.trajectory, targets.x, targets.y, ddm.objectives.get("dist2"),
                                    1 - epoch / last)
            memo[epoch] = torch.zeros(len(targets)) if change is None else change[:, 0]
        return memo[epoch]

    return effect_at


def score_table(results: dict[str, dict[str, Any]]) -> list[str]:
    """A diagnostic's markdown table: one row per configuration of ``results`` (``{configuration: {method: (LDS,
    other-class LDS, ...)}}``), one column per method, each cell ``LDS / other-class LDS``."""
    methods = list(dict.fromkeys(m for r in results.values() for m in r))
    lines = ["| configuration | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for n, r in results.items():
        lines.append(f"| {n} | " + " | ".join(f"{r[m][0]:+.3f} / {r[m][1]:+.3f}" for m in methods) + " |")
    return lines


def implied_slopes(actual: torch.Tensor, *predictions: torch.Tensor) -> torch.Tensor:
    """``[T, P]``: per target, the least-squares slopes of the retrained losses ``actual [S, T]`` on the predictions
    ``[S, T]`` each (an intercept fitted beside): 1 where a prediction is on retraining's scale, above 1 where it
    predicts too little."""
    out = []
    for t in range(actual.shape[1]):
        X = torch.stack([torch.ones_like(actual[:, t]), *(p[:, t] for p in predictions)], 1).double()
        out.append(torch.linalg.lstsq(X, actual[:, t].double()[:, None]).solution.flatten()[1:])
    return torch.stack(out)


def lds_subsets(groups: Any, labels: torch.Tensor, seed: int, subsets: int = 40,
                other: int = 10) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """The kept-group masks of a seed: ``subsets`` random half subsets (LDS), and for each class among ``labels``
    ``other`` subsets that keep every group of that class and drop half of the others (other-class LDS; none where
    groups mix classes: no subset of groups keeps a class whole and drops others)."""
    keep = sample_perturbations(groups.num_groups, subsets, 0.5, seed=10_000 + seed)
    return keep, other_class_subsets(groups, labels.unique().tolist(), other, 20_000 + 100 * seed)


def halves_only_option(p: argparse.ArgumentParser) -> None:
    """A diagnostic's ``--halves-only``: score :class:`ValidationTargets`' halves only."""
    p.add_argument("--halves-only", action="store_true",
                   help="score the matrix's halves only (its other-class subsets cost a retrain each where they are "
                        "not cached)")


def run_diagnostic(doc: str, run: Callable[[str, int, Path, argparse.Namespace], dict[str, Any]], out: str,
                   configs: str, root: str = "runs/matrix-b",
                   options: Callable[[argparse.ArgumentParser], None] | None = None,
                   ) -> tuple[argparse.Namespace, list[str], dict[str, Any]]:
    """The command line of a diagnostic script on the selection seed (``--out``, ``--root``, ``--configs``,
    ``--seed``, 3 by default, and the script's own ``options``), and ``run(name, seed, root, args)`` on each
    configuration: ``(args, names, results)``."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=out)
    p.add_argument("--root", default=root)
    p.add_argument("--configs", default=configs)
    p.add_argument("--seed", type=int, default=3)
    if options is not None:
        options(p)
    args = p.parse_args()
    torch.set_num_threads(1)
    progress.set_enabled(False)
    names = args.configs.split(",")
    return args, names, {n: run(n, args.seed, Path(args.root), args) for n in names}


def make_config(overrides: list[str], seed: int, extra: list[str]) -> tuple[RunConfig, Any]:
    dataset = next((o.split("=", 1)[1] for o in overrides if o.startswith("--dataset=")), "digits")
    sets = [o for o in overrides if not o.startswith("--")]
    cfg = ddm.presets.demo(dataset).with_overrides(
        [*sets, *[f"{s}.seed={seed}" for s in ("model", "train", "cluster", "distill", "emulate")], *extra,
         "hierarchical=false"])
    return cfg, ddm.data.load(cfg.data)


def losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return true_label_loss(logits, labels.expand(len(logits), -1))


def run_one(root: Path, name: str, seed: int, args: argparse.Namespace,
            grid: tuple[str, list[str]]) -> dict[str, Any]:
    overrides, _ = CONFIGS[name]
    cfg, data = make_config(overrides, seed, args.set)
    rows, targets = target_rows(data, args.targets, args.select)
    folder = root / name / f"seed{seed}"
    out: dict[str, Any] = {"config": name, "seed": seed, "overrides": overrides, "lds": {}, "other_class_lds": {},
                           "seconds": {}}
    # overwrite: a changed default re-distils (the training and the cached retrains are reused); a stage's key is
    # its configuration's, not the code's, so after a code change --redistill drops the cached synset first
    if args.redistill:
        for stage in ("synset", "emulation"):
            shutil.rmtree(folder / "ddm" / stage, ignore_errors=True)
    dm = ddm.DistilledDatamodel(folder / "ddm", cfg, overwrite=True).fit(ddm.models.build(cfg.model, data),
                                                                         data.train)
    K = dm.groups.num_groups
    cache = RetrainCache(folder / "retrain", dm.model, dm.trajectory.checkpoint(0), data.train, dm.groups, cfg.train,
                         data.test.x)
    keep, oc_keep = lds_subsets(dm.groups, targets.y, seed, args.subsets, args.other_subsets)

    def retrained(order: int | None) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        tag = "" if order is None else f" order {order}"
        actual = losses(cache.many([torch.nonzero(~k).flatten().tolist() for k in keep], f"{name} LDS{tag}",
                                   seed=order)[:, rows], targets.y)
        oc_actual = {}
        for c, m in oc_keep.items():
            sel = targets.y == c
            oc_actual[c] = losses(cache.many([torch.nonzero(~k).flatten().tolist() for k in m],
                                             f"{name} class {c}{tag}", seed=order)[:, rows[sel]], targets.y[sel])
        return actual, oc_actual

    # the ground truth: retrains in the target's data order, and with --orders N also their loss averaged over N
    # data orders (the target's and N - 1 others), which takes out most of the data order's noise
    truths = {"": retrained(None)}
    if args.orders > 1:
        orders = ground_truth_orders(seed, args.orders)
        each = [truths[""], *[retrained(o) for o in orders]]
        truths["_orders"] = (torch.stack([a for a, _ in each]).mean(0),
                             {c: torch.stack([oc[c] for _, oc in each]).mean(0) for c in oc_keep})
        out["orders"] = [seed, *orders]
    # the cost of one exact retrain of the data a perturbation keeps (about half), as recorded when it ran
    out["seconds"]["retrain (half data)"] = float(np.mean([cache.seconds(torch.nonzero(~k).flatten().tolist())
                                                           for k in keep]))
    out["seconds"]["train"] = float(dm.ws.require("train").get("seconds", 0.0))
    out["K"] = K

    def score(tag: str, predict: Any) -> None:
        for suffix, (actual, oc_actual) in truths.items():
            out.setdefault("lds" + suffix, {})[tag] = lds(predict(keep, torch.arange(len(rows))), actual)[0]
            per = []
            for c, m in oc_keep.items():
                sel = torch.nonzero(targets.y == c).flatten()
                per += lds(predict(m, sel), oc_actual[c])[1]
            if per:
                out.setdefault("other_class_lds" + suffix, {})[tag] = float(np.mean(per))

    key, values = grid
    for v in values:
        tag = "DDM" if len(values) == 1 else f"DDM {key.split('.')[-1]}={v}"
        dml = dm if len(values) == 1 else ddm.DistilledDatamodel(
            folder / f"ddm-{key.split('.')[-1]}-{v}", cfg.with_overrides([f"{key}={v}"]), overwrite=True).fit(
            ddm.models.build(cfg.model, data), data.train)
        t1 = time.perf_counter()
        attr = dml.attribute(targets, "dist2", name="matrix")
        out["seconds"][tag + " online"] = online_seconds([attr])  # from scratch, also when the emulation is cached
        out["seconds"][tag + " distill"] = float(dml.ws.require("synset").get("seconds", 0.0))
        out.setdefault("health", {})[tag] = {k: v for k, v in dml.ws.require("synset")["health"].items()
                                             if not isinstance(v, list) or k == "flagged"}
        score(tag, lambda k, sel, a=attr: a.predict(k)[:, sel, 0])
    scale = cfg.emulate.other_class_scale
    if len(values) == 1 and scale != 1.0:  # the same default without the class balance (the default before it)
        attr = dm.attribute(targets, "dist2", name="matrix-unbalanced", other_class_scale=1.0)
        score("DDM, other classes x1", lambda k, sel, a=attr: a.predict(k)[:, sel, 0])
    if not args.select:
        out["nearest_image_cosine"] = {"DDM": synset_similarity(dm.synset, data.train.x)}
        for tag, extra in ([] if args.no_variants else VARIANT_ROWS["*"] + VARIANT_ROWS.get(name, [])):
            vdm = ddm.DistilledDatamodel(folder / tag.split()[1], cfg.with_overrides(extra), overwrite=True).fit(
                ddm.models.build(cfg.model, data), data.train)
            t1 = time.perf_counter()
            try:
                attr = vdm.attribute(targets, "dist2", name="matrix")
            except ddm.exceptions.DDMError as exc:  # reported, not hidden
                out.setdefault("errors", {})[tag] = str(exc)
                continue
            out["seconds"][tag + " online"] = online_seconds([attr])  # from scratch, also when the emulation is cached
            out["nearest_image_cosine"][tag] = synset_similarity(vdm.synset, data.train.x)
            score(tag, lambda k, sel, a=attr: a.predict(k)[:, sel, 0])
    if args.select and args.unlearn_dampings:  # the unlearning damping, chosen on these configurations and seed only
        out["unlearning_select"] = {}
        for eps in [float(v) for v in args.unlearn_curvature_dampings.split(",")]:
            for lam_u in [float(v) for v in args.unlearn_dampings.split(",")]:
                dm.config = cfg.with_overrides([f"emulate.unlearn_damping={lam_u}",
                                                f"emulate.unlearn_curvature_damping={eps}"])
                out["unlearning_select"][f"{eps:g} / {lam_u:g}"] = unlearning(dm, cache, data)
        dm.config = cfg
    same = same_class(dm.groups, targets.y)
    train_key = str(dm.ws.require("train").get("key", ""))[:12]
    score("same class (trivial)", lambda k, sel: predicted_loss(same[sel], k))
    if not args.select:
        peer_sets = dict(o.split("=", 1) for o in args.peer_set)
        peer_cfg = PeerConfig(**{k: (None if v == "None" else type(getattr(PeerConfig(), k) or 0.0)(v))
                                 for k, v in peer_sets.items()})
        for method in args.peers:
            # peers do not change with DDM, only with the trained model (its stage key) and their --peer-set (named
            # where the method reads it: ekfac_* only for ekfac, lissa_* for if-lissa, unprefixed ones for all)
            own = [k for k in sorted(peer_sets) if not any(k.startswith(m.split("-")[-1] + "_") for m in PEERS_ALL)
                   or k.startswith(method.split("-")[-1] + "_")]
            if own:
                method = method + "[" + ",".join(f"{k}={peer_sets[k]}" for k in own) + "]"
            cached = folder / "peers" / f"{method}-T{args.targets}-{train_key}.safetensors"
            if cached.exists():
                got = load_tensors(cached)
                s, out["seconds"][method] = got["scores"], float(got["seconds"])
            else:
                t1 = time.perf_counter()
                s = group_scores(sample_scores(method.split("[")[0], dm.model, dm.trajectory, data.train, targets,
                                               peer_cfg), dm.groups)
                out["seconds"][method] = time.perf_counter() - t1
                save_tensors(cached, {"scores": s, "seconds": torch.tensor(out["seconds"][method])})
            score(method, lambda k, sel, g=s: predicted_loss(g[sel], k))
            if scale != 1.0:  # the peer with DDM's class balance, for a like-for-like comparison
                g = balance_classes(s[:, :, None], torch.zeros(len(s), 1), dm.groups, targets.y, scale)[0][..., 0]
                score(f"{method}, other classes x{scale:g}", lambda k, sel, g=g: predicted_loss(g[sel], k))
        if seed == 0:
            out["unlearning"] = unlearning(dm, cache, data)
    return out


def fitted(folder: Path, cfg: RunConfig, data: Any, until: str = "synset") -> ddm.DistilledDatamodel:
    """The workspace ``folder`` fitted with ``cfg`` (stages stored with another config are recomputed), ``until`` a
    stage (``DistilledDatamodel.fit``)."""
    return ddm.DistilledDatamodel(folder, cfg, overwrite=True).fit(ddm.models.build(cfg.model, data), data.train,
                                                                   until=until)


def fit_variant(folder: Path, cfg: RunConfig, data: Any, sets: list[str]) -> ddm.DistilledDatamodel:
    """A run's default with the settings ``sets`` (``KEY=VALUE``), in its own workspace beside the default's
    (``grid-<sets>``), for the diagnostic scripts that compare a setting with the default."""
    return fitted(folder / ("grid-" + "-".join(s.replace("=", "-").replace(".", "_") for s in sets)),
                  cfg.with_overrides(sets), data)


def health_summary(dm: ddm.DistilledDatamodel) -> dict[str, Any]:
    """The synset health of a fitted workspace: step cosine mean, fraction positive, number of flagged groups."""
    h = dm.ws.require("synset").get("health", {})
    return {"cosine_mean": h.get("cosine_mean", float("nan")), "positive": h.get("positive_fraction", float("nan")),
            "flagged": len(h.get("flagged", []))}


def open_run(root: Path, name: str, seed: int, workspace: str = "ddm", sets: list[str] | None = None,
             until: str = "synset") -> tuple[RunConfig, Any, Path, ddm.DistilledDatamodel, RetrainCache]:
    """A configuration's seed as the matrix ran it: its config, data, folder, fitted workspace (stages reused) and
    retrain cache (logits on the test split), for the scripts that measure more on the same runs. ``workspace``: the
    workspace folder in the run's (another than the matrix's own ``ddm``, fitted with the settings ``sets``);
    ``until``: the last stage fitted (``groups`` for what reads no synset)."""
    cfg, data = make_config(CONFIGS[name][0], seed, sets or [])
    folder = root / name / f"seed{seed}"
    dm = fitted(folder / workspace, cfg, data, until)
    cache = RetrainCache(folder / "retrain", dm.model, dm.trajectory.checkpoint(0), data.train, dm.groups, cfg.train,
                         data.test.x)
    return cfg, data, folder, dm, cache


def unlearning_draws(dm: ddm.DistilledDatamodel, num_classes: int, groups4: int = 3) -> list[tuple[str, list[int]]]:
    """The unlearning draws: ``groups4`` of 4 random groups (the first 3 are the matrix's whatever the number), then
    every group of class 0 and of class C / 2 (none where groups mix classes: no set of groups holds exactly one
    class)."""
    g = torch.Generator().manual_seed(777)
    draws = [("4 groups", torch.randperm(dm.groups.num_groups, generator=g)[:4].tolist()) for _ in range(groups4)]
    if not dm.groups.mixes_classes():
        draws += [("class", torch.nonzero(dm.groups.labels == c).flatten().tolist()) for c in (0, num_classes // 2)]
    return draws


def unlearning(dm: ddm.DistilledDatamodel, cache: RetrainCache, data: Any) -> dict[str, Any]:
    """Test accuracy after removing 4 random groups (3 draws) and accuracy on a removed class (2 classes)."""
    def acc(logits: torch.Tensor) -> float:
        return (logits.argmax(1) == data.test.y).float().mean().item()

    # exact retraining's own spread: the same data in other data orders
    orders = other_orders(dm.config.train.seed)
    res: dict[str, Any] = {"target_test_acc": accuracy(dm.model, data.test), "groups4": [], "class": [],
                           "full_data_other_orders": [acc(cache.get([], seed=s)) for s in orders]}
    for kind, rem in unlearning_draws(dm, int(data.num_classes)):
        if kind == "4 groups":
            exact = acc(cache.get(rem))
            res["groups4"].append({"groups": rem, "exact": exact, "ddm": accuracy(dm.unlearn(rem, name="matrix"),
                                                                                   data.test),
                                   "exact_other_orders": [acc(cache.get(rem, seed=s)) for s in orders]})
            continue
        c = int(dm.groups.labels[rem[0]])
        on_c = data.test.y == c
        ex = cache.get(rem).argmax(1)
        model = dm.unlearn(rem, name="matrix")
        with torch.no_grad():
            pr = model(data.test.x).argmax(1)
        res["class"].append({"class": c, "exact_class_acc": (ex[on_c] == c).float().mean().item(),
                             "ddm_class_acc": (pr[on_c] == c).float().mean().item(),
                             "exact_test_acc": (ex == data.test.y).float().mean().item(),
                             "ddm_test_acc": (pr == data.test.y).float().mean().item()})
    return res


def table(results: list[dict[str, Any]], key: str) -> list[str]:
    methods = list(dict.fromkeys(m for r in results for m in r[key]))
    if not methods:
        return ["None: the groups of these configurations mix classes, so no subset of groups keeps one class whole."]
    lines = [f"| configuration | seeds | {' | '.join(methods)} |", "|---|---|" + "---|" * len(methods)]
    for name in dict.fromkeys(r["config"] for r in results):
        rs = [r for r in results if r["config"] == name]
        cells = []
        for m in methods:
            v = np.array([r[key][m] for r in rs if m in r[key]])
            cells.append("–" if not len(v) else f"{v.mean():+.3f}" + (f" ± {v.std(ddof=1):.3f}" if len(v) > 1 else ""))
        sel = " (selection)" if CONFIGS.get(name, ([], False))[1] else " (held out)" if name in HELD_OUT else ""
        lines.append(f"| {name}{sel} | {','.join(str(r['seed']) for r in rs)} | {' | '.join(cells)} |")
    return lines


def markdown(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    out = ["# Configuration matrix", "", f"Command: `python benchmarks/matrix.py {' '.join(args.argv)}`", "",
           f"{args.targets} {'validation' if args.select else 'reported'} targets per run, {args.subsets} half "
           f"subsets (LDS), {args.other_subsets} other-class subsets per class; mean ± sample std over seeds.", "",
           "## LDS (random half subsets of the groups)", "", *table(results, "lds"), "",
           "## Other-class LDS (the target's class kept whole)", "", *table(results, "other_class_lds"), ""]
    averaged = [r for r in results if "lds_orders" in r]
    if averaged:
        n = len(averaged[0]["orders"])
        out += [f"## Against the loss averaged over {n} data orders", "",
                f"The same subsets and predictions; the ground truth is each subset's retrained loss averaged over {n}"
                " data orders (the target's and others), which takes out most of the data order's noise "
                "(`--orders`).", "", "### LDS", "", *table(averaged, "lds_orders"), "", "### Other-class LDS", "",
                *table(averaged, "other_class_lds_orders"), ""]
    sel = [r for r in results if "unlearning_select" in r]
    if sel:
        out += ["## Unlearning damping (selection): mean absolute gap to exact retraining, points", "",
                "Gap = |DDM - exact| of test accuracy after removing 4 random groups (3 draws), and of the removed "
                "class's accuracy and the test accuracy after removing a whole class (2 classes).", "",
                "| configuration | unlearn_curvature_damping / unlearn_damping | 4 groups: test acc gap "
                "| class: class acc gap "
                "| class: test acc gap | mean |", "|---|---|---|---|---|---|"]
        for r in sel:
            for lam, u in r["unlearning_select"].items():
                g4 = np.mean([abs(d["exact"] - d["ddm"]) for d in u["groups4"]]) * 100
                gc = np.mean([abs(d["exact_class_acc"] - d["ddm_class_acc"]) for d in u["class"]]) * 100
                gt = np.mean([abs(d["exact_test_acc"] - d["ddm_test_acc"]) for d in u["class"]]) * 100
                out.append(f"| {r['config']} | {lam} | {g4:.1f} | {gc:.1f} | {gt:.1f} | {(g4 + gc + gt) / 3:.1f} |")
        out.append("")
    un = [r for r in results if "unlearning" in r]
    if un:
        out += ["## Unlearning (seed 0): DDM against exact retraining", "",
                "Retraining's own spread: the full data retrained in two other data orders (`full data, other "
                "orders`), and each 4-group removal's exact accuracy averaged over three data orders (the target's "
                "and two others).", "",
                "| configuration | test acc | full data, other orders | 4 groups removed: exact / DDM (3 draws) "
                "| 4 groups removed: exact (mean of 3 orders) / DDM | removed class acc: exact / DDM "
                "| test acc after class removal: exact / DDM |", "|---|---|---|---|---|---|---|"]
        for r in un:
            u = r["unlearning"]
            g4 = ", ".join(f"{100 * d['exact']:.1f} / {100 * d['ddm']:.1f}" for d in u["groups4"])
            g4m = ", ".join(f"{100 * np.mean([d['exact'], *d['exact_other_orders']]):.1f} / {100 * d['ddm']:.1f}"
                            for d in u["groups4"] if "exact_other_orders" in d)
            full = " ".join(f"{100 * a:.1f}" for a in u.get("full_data_other_orders", []))
            cl = ", ".join(f"{100 * d['exact_class_acc']:.1f} / {100 * d['ddm_class_acc']:.1f}" for d in u["class"])
            ct = ", ".join(f"{100 * d['exact_test_acc']:.1f} / {100 * d['ddm_test_acc']:.1f}" for d in u["class"])
            out.append(f"| {r['config']} | {100 * u['target_test_acc']:.1f} | {full or '–'} | {g4} | {g4m or '–'} | "
                       f"{cl or '–'} | {ct or '–'} |")
        out.append("")
    ckeys = list(dict.fromkeys(k for r in results for k in r.get("nearest_image_cosine", {})))
    if ckeys:
        out += ["## Nearest-training-image cosine of the synthetic images (1 = a copy; seed 0)", "",
                "| configuration | " + " | ".join(ckeys) + " |", "|---|" + "---|" * len(ckeys)]
    for r in results:
        if r["seed"] == 0 and "nearest_image_cosine" in r:
            cos = r["nearest_image_cosine"]
            out.append(f"| {r['config']} | " + " | ".join(f"{cos[k]:.2f}" if k in cos else "–" for k in ckeys) + " |")
    errs = [(r["config"], r["seed"], t, e) for r in results for t, e in r.get("errors", {}).items()]
    if errs:
        out += ["", "Variants that stopped with an error (instead of returning NaN):", ""]
        out += [f"* {c} seed {s}, {t}: `{e}`" for c, s, t, e in errs]
    out += ["", "## Synset health (step cosine with the real removal step, fraction positive, flagged groups)", "",
            "| configuration | seed | variant | cosine mean | min | positive | flagged |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        for tag, h in r.get("health", {}).items():
            out.append(f"| {r['config']} | {r['seed']} | {tag} | {h['cosine_mean']:.3f} | {h['cosine_min']:.3f} | "
                       f"{100 * h['positive_fraction']:.0f}% | {len(h['flagged'])} |")
    out += ["", "## Speed against the retraining DDM replaces", "",
            "A datamodel fitted from exact retrains needs at least 2 K of them (the paper's |P| >= K; 2 K is "
            "ddm's fine-tuning default), each on the data its perturbation keeps (about half). DDM's cost is its "
            "distillation (offline, once) plus the online attribution of the reported targets. Means over seeds.", "",
            "| configuration | K | one half-data retrain (s) | 2 K retrains (s) | DDM distill (s) | DDM online (s) "
            "| speedup online | speedup distill + online |", "|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["config"] for r in results):
        rs = [r for r in results if r["config"] == name and "DDM online" in r["seconds"]]
        if not rs:
            continue
        t_half = np.mean([r["seconds"]["retrain (half data)"] for r in rs])
        K = rs[0]["K"]
        dist = np.mean([r["seconds"]["DDM distill"] for r in rs])
        onl = np.mean([r["seconds"]["DDM online"] for r in rs])
        out.append(f"| {name} | {K} | {t_half:.2f} | {2 * K * t_half:.0f} | {dist:.1f} | {onl:.2f} | "
                   f"{2 * K * t_half / onl:,.0f}x | {2 * K * t_half / (dist + onl):,.0f}x |")
    out += ["", "## Seconds (mean over seeds)", "", "| configuration | " + " | ".join(
        dict.fromkeys(k for r in results for k in r["seconds"])) + " |"]
    keys = list(dict.fromkeys(k for r in results for k in r["seconds"]))
    out.append("|---|" + "---|" * len(keys))
    for name in dict.fromkeys(r["config"] for r in results):
        rs = [r for r in results if r["config"] == name]
        cells = []
        for k in keys:
            v = [r["seconds"][k] for r in rs if k in r["seconds"]]
            cells.append(f"{np.mean(v):.2f}" if v else "–")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def diagnostic_head(title: str, args: argparse.Namespace, what: str, rows: list[str]) -> list[str]:
    """The first lines of a diagnostic script's report: its ``title``, the command that made it (this script and its
    arguments), the seed and ``what`` the cells hold, and the head of a table with one column per ``rows``."""
    command = f"python benchmarks/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}"
    return [f"# {title}", "", f"Command: `{command}`; seed {args.seed}, {what}", "",
            "| configuration | " + " | ".join(rows) + " |", "|---|" + "---|" * len(rows)]


def write_report(out: str | Path, lines: list[str], results: Any) -> None:
    """``out``.md from the markdown ``lines`` and ``out``.json from ``results``, and the markdown on stdout."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_name(out.name + ".md"), "\n".join(lines) + "\n")
    atomic_write_text(out.with_name(out.name + ".json"), json.dumps(results, indent=1))
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/results/matrix")
    p.add_argument("--root", default="runs/matrix")
    p.add_argument("--configs", default=",".join(n for n in CONFIGS if n not in HELD_OUT),
                   help="comma-separated; the held-out ones (" + ", ".join(HELD_OUT) + ") only when named")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--targets", type=int, default=50)
    p.add_argument("--subsets", type=int, default=40)
    p.add_argument("--other-subsets", type=int, default=10)
    p.add_argument("--orders", type=int, default=1, metavar="N",
                   help="also score against the retrained loss averaged over N data orders (the target's and N - 1 "
                        "others; N - 1 more retrains of every subset)")
    p.add_argument("--peers", default=",".join(PEERS))
    p.add_argument("--peer-set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a ddm.baselines.peers.PeerConfig setting for every peer of the run (repeatable; 'None' for "
                        "None), named in the peer's row and cache file, e.g. ekfac_damping=0.01")
    p.add_argument("--no-variants", action="store_true",
                   help="skip the design variants measured beside the default (VARIANT_ROWS), e.g. when --set changes "
                        "the default and the variants' cached synsets should stay")
    p.add_argument("--redistill", action="store_true",
                   help="drop the cached default synsets first (after a code change: stages are keyed by config)")
    p.add_argument("--select", action="store_true", help="selection configurations, seed 3, the --grid of a setting")
    p.add_argument("--grid", default="distill.damping=1e-3,3e-3,1e-2", metavar="KEY=V1,V2,...",
                   help="with --select: the setting and values compared (each in its own workspace)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting applied to every configuration of the run, before --grid (repeatable)")
    p.add_argument("--unlearn-dampings", default="1e-5,1e-4,1e-3,1e-2")
    p.add_argument("--unlearn-curvature-dampings", default="0,0.03,0.1,0.3")
    p.add_argument("--render", default=None, metavar="A.json,B.json",
                   help="only write --out's markdown from stored results (several runs into one report)")
    args = p.parse_args()
    import sys

    args.argv = sys.argv[1:]
    args.peers = [m for m in args.peers.split(",") if m]
    torch.set_num_threads(1)
    progress.set_enabled(False)
    names = [n for n in args.configs.split(",") if n]
    seeds = [3] if args.select else [int(s) for s in args.seeds.split(",")]
    if args.select:
        names = [n for n in names if CONFIGS[n][1]]
    grid_key, grid_values = args.grid.split("=", 1)
    grid = (grid_key, grid_values.split(",")) if args.select else (grid_key, ["default"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.render:
        gathered = [r for f in args.render.split(",") for r in json.loads(Path(f).read_text())]
        atomic_write_text(out.with_name(out.name + ".json"), json.dumps(gathered, indent=1))
        atomic_write_text(out.with_name(out.name + ".md"), markdown(gathered, args))
        return
    results = []
    for name in names:
        for seed in seeds:
            t0 = time.perf_counter()
            results.append(run_one(Path(args.root), name, seed, args, grid))
            print(f"{name} seed {seed}: {time.perf_counter() - t0:.0f} s  LDS {json.dumps(results[-1]['lds'])}",
                  flush=True)
            # after every run (an interrupted matrix keeps what it measured), atomically
            atomic_write_text(out.with_name(out.name + ".json"), json.dumps(results, indent=1))
            atomic_write_text(out.with_name(out.name + ".md"), markdown(results, args))


if __name__ == "__main__":
    main()
