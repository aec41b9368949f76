"""One validated dataclass per stage, gathered in :class:`RunConfig`.

Every field carries ``help`` metadata (shown by ``ddm info --config-help``). Configs round-trip
through JSON, and ``--set stage.field=value`` overrides are parsed against the field types.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ddm.exceptions import ConfigError


def _f(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _finite(section: Any, prefix: str) -> None:
    """Every float field of a config section must be finite (``inf``/``nan`` silently poison a run), and every seed
    one that NumPy, scikit-learn and torch all take (0 to 2**32 - 1)."""
    for f in dataclasses.fields(section):
        v = getattr(section, f.name)
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{prefix}.{f.name}={v} is not a finite number")
        if f.name == "seed" and isinstance(v, int) and not 0 <= v < 2 ** 32:
            raise ConfigError(f"{prefix}.seed={v}: seeds must lie in 0..{2 ** 32 - 1}")


def _choice(value: str, name: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, f"{name}={value!r} is not valid; choose one of {', '.join(choices)}")


@dataclass
class DataConfig:
    name: str = _f("digits", "dataset name: digits, fashion-mnist, mnist, cifar10, cifar100, tinyimagenet, or "
                             "npz (your own arrays in a numpy .npz file)")
    data_dir: str | None = _f(None, "folder with the dataset files (IDX, CIFAR binary, or the unpacked "
                                    "tiny-imagenet-200); default per dataset; for npz the .npz file (X, y; optional "
                                    "X_test, y_test, class_names)")
    train_size: int | None = _f(None, "stratified subset of the training split (None: all)")
    test_size: int | None = _f(None, "stratified subset of the test split (None: all)")
    download: bool = _f(False, "let torchvision download missing files (needs the 'vision' extra)")
    seed: int = _f(0, "seed of the subset selection")

    def __post_init__(self) -> None:
        _finite(self, "data")
        for n in ("train_size", "test_size"):
            v = getattr(self, n)
            _check(v is None or v > 0, f"data.{n} must be positive or None, got {v}")


@dataclass
class ModelConfig:
    name: str = _f("convnet", "architecture: convnet (DC-style), mlp, resnet (ResNet-18 layout, GroupNorm; width 64 "
                              "and depth 4 give ResNet-18), alexnet (AlexNet's layout for small images) or vit "
                              "(a small Vision Transformer; width = embedding size, depth = blocks)")
    width: int = _f(64, "convnet channels / mlp hidden units")
    depth: int = _f(3, "convnet conv blocks / mlp hidden layers (mlp: 0 is softmax regression, the last layer "
                       "on the pixels)")
    norm: str = _f("instancenorm", "convnet normalisation: instancenorm, groupnorm, layernorm, batchnorm, none "
                   "(resnet: GroupNorm, or BatchNorm with batchnorm)")
    seed: int = _f(0, "seed of the initial weights theta_0")

    def __post_init__(self) -> None:
        _finite(self, "model")
        _check(self.width > 0, "model.width must be positive")
        _check(self.depth > 0 or (self.name == "mlp" and self.depth == 0),
               "model.depth must be positive (only the mlp takes 0: softmax regression on the pixels)")
        _choice(self.norm, "model.norm", ("instancenorm", "groupnorm", "layernorm", "batchnorm", "none"))


@dataclass
class TrainConfig:
    epochs: int = _f(20, "training epochs (tau)")
    batch_size: int = _f(64, "minibatch size")
    lr: float = _f(0.1, "learning rate (eta_a); 0.1 trains the default ConvNet on digits to 94% test accuracy in 20 "
                         "epochs, the paper's lr_net 0.01 (the paper preset) to 85%")
    optimizer: str = _f("sgd", "sgd (with momentum and weight_decay), adam (weight_decay as an L2 term) or adamw "
                               "(weight_decay decoupled from the gradient, as torch.optim.AdamW; since 0.15)",
                        since="0.4", implicit="sgd")
    momentum: float = _f(0.0, "SGD momentum (0: plain SGD as in the paper's Eq. 2)")
    weight_decay: float = _f(0.0, "weight decay: an L2 term for sgd and adam, decoupled for adamw (which the Newton "
                                  "emulation then leaves out of its curvature: it is no term of the loss)")
    save_every: int = _f(1, "record theta every this many epochs (theta_0 and theta_tau always)")
    seed: int = _f(0, "seed of the data order")
    last_batch: str = _f("balanced", "the epoch's last, partial minibatch: balanced (default: ceil(n / batch_size) "
                                     "minibatches of sizes that differ by at most one) or keep (PyTorch's DataLoader "
                                     "default). A tiny last batch at a high rate is a large step on a few samples: "
                                     "on a Fashion-MNIST MLP at lr 0.05 it cost exact retrains 5-7 points of test "
                                     "accuracy (BENCHMARKS.md), an effect of the loop, not of the data, that no "
                                     "attribution follows",
                         since="0.6", implicit="keep")
    schedule: str = _f("constant", "learning-rate schedule: constant (train.lr throughout) or cosine (train.lr x "
                                   "(1 + cos(pi t / T)) / 2 at optimizer step t of T, annealed to 0 at the last "
                                   "step, as most training recipes do). Exact retrains follow the same rule over "
                                   "their own steps; the unlearning's rewind (emulate.unlearn_rewind) assumes a "
                                   "constant rate and is skipped under cosine", since="0.12", implicit="constant")

    def __post_init__(self) -> None:
        _finite(self, "train")
        _choice(self.schedule, "train.schedule", ("constant", "cosine"))
        _check(self.epochs > 0, f"train.epochs must be positive, got {self.epochs}")
        _check(self.batch_size > 0, f"train.batch_size must be positive, got {self.batch_size}")
        _check(self.lr > 0, f"train.lr must be positive, got {self.lr}")
        _check(0 <= self.momentum < 1, f"train.momentum must be in [0, 1), got {self.momentum}")
        _check(self.weight_decay >= 0, "train.weight_decay must be >= 0")
        _check(self.save_every > 0, "train.save_every must be positive")
        _choice(self.optimizer, "train.optimizer", ("sgd", "adam", "adamw"))
        _choice(self.last_batch, "train.last_batch", ("keep", "balanced"))

    def optimizer_record(self) -> dict[str, Any]:
        """What the optimizer did, stored with the trajectory (the fine-tune emulations' rate assumes plain SGD)."""
        record = {"type": self.optimizer, "lr": self.lr, "momentum": self.momentum,
                  "weight_decay": self.weight_decay, "batch_size": self.batch_size}
        if self.schedule != "constant":
            record["schedule"] = self.schedule
        return record

    def lr_at(self, step: int, total: int) -> float:
        """The learning rate of optimizer step ``step`` (from 0) of ``total`` under ``schedule``."""
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * step / max(1, total)))
        return self.lr


@dataclass
class ClusterConfig:
    method: str = _f("kmeans", "kmeans (within each class), sequential (by index), class (one per class) or sample "
                               "(one per training sample, K = N: per-sample attribution; each synset is then its "
                               "sample)")
    per_class: int = _f(10, "kmeans clusters per class (c); K = classes * c")
    num_groups: int | None = _f(None, "sequential: number of groups (None: classes * per_class)")
    seed: int = _f(0, "k-means seed")

    def __post_init__(self) -> None:
        _finite(self, "cluster")
        _choice(self.method, "cluster.method", ("kmeans", "sequential", "class", "sample"))
        _check(self.per_class > 0, "cluster.per_class must be positive")
        _check(self.num_groups is None or self.num_groups > 0, "cluster.num_groups must be positive")


@dataclass
class DistillConfig:
    """Defaults: the ``head`` recipe (head matching + Newton emulation), chosen on selection configurations
    (BENCHMARKS.md, "Head-Newton DDM"); ``--recipe paper`` (``ddm.presets.recipe("paper")``) gives the
    paper-faithful method, ``--recipe local-free`` the previous default."""

    matching: str = _f("head", "head (default; not in the paper: each group's synthetic images, with its hard label "
                               "and learned weights, reproduce its last-layer gradient at theta_tau in the metric "
                               "of the damped Newton step; see ddm.distill.head), block (head matching, then the "
                               "synsets matched again over the last block and the head at every checkpoint, for a "
                               "Newton step over that scope; ddm.distill.block; not the default), local (match "
                               "minus each group's "
                               "accumulated trajectory gradient near theta_tau), reverse (the paper's DDM, Eq. 6) "
                               "or match (plain gradient matching, DDM-match)")
    damping: float = _f(1e-3, "head matching: lambda of (H + lambda I) as a fraction of H's top eigenvalue "
                              "(plus train.weight_decay), or of its mean one (distill.damping_reference). 1e-3 "
                              "since 0.14, chosen again on the selection configurations (1e-4 to 1e-2; it was 1e-2, "
                              "chosen with the loop of 0.5: BENCHMARKS.md)")
    damping_reference: str = _f("top", "head matching: what distill.damping is a fraction of: top (H's top "
                                       "eigenvalue) or mean (its trace / parameters). The two differ by 48-128x on "
                                       "the selection configurations and by 1,000-1,900x on AlexNet and the "
                                       "heads above distill.exact_limit (BENCHMARKS.md)",
                                since="0.14", implicit="top")
    head_loss: str = _f("cross-entropy", "head matching with a custom training loss (DistilledDatamodel(task=...)): "
                                         "the loss whose last-layer gradients and curvature the synsets carry: "
                                         "cross-entropy (since 0.17) or task (the training loss; before 0.17). With "
                                         "label smoothing and a schedule or Adam that lets training settle, the "
                                         "smoothed loss's gradients vanish for the samples the model fits, and the "
                                         "task's synsets ranked below the trivial score on two of four such models "
                                         "(BENCHMARKS.md, 'A custom training loss'). No effect for a model trained "
                                         "with cross-entropy",
                        since="0.17", implicit="task")
    head_temperature: float = _f(1.0, "head matching, distill.head_loss=cross-entropy: the synsets carry the "
                                      "cross-entropy of the outputs divided by this temperature (1: plain "
                                      "cross-entropy, the default); above 1 the samples fitted with a large margin "
                                      "keep a gradient",
                                 since="0.17", implicit=1.0)
    auto_temperature: float = _f(2.0, "head matching with the cross-entropy at temperature 1: where the step at "
                                      "theta_tau and the steps at the earlier checkpoints rank removals unlike each "
                                      "other (the step agreement, on 50 training samples, below 0.8, 0.7 until "
                                      "after 0.19: a sign of a model that fits its data with margins too large for "
                                      "theta_tau's step), the synsets are distilled again at this temperature and "
                                      "those are kept (0: never; BENCHMARKS.md, 'A tempered synset where the step "
                                      "agreement is low', 'The switch's threshold asked again')",
                                 since="0.19", implicit=0.0, used_only_if=("head_temperature", 1.0))
    checkpoints: int = _f(3, "head matching: checkpoints of the trajectory (evenly spaced from theta_tau back to the "
                             "first epoch; theta_0 never) at which the Newton attribution takes its step with the "
                             "synsets, averaging the logit changes (1: theta_tau only). The trajectory is information "
                             "influence functions lack: averaging raised LDS and other-class LDS on the selection "
                             "configurations; 3 and 5 tie there and 3 costs less (BENCHMARKS.md; 5 until the "
                             "selection was redone with balanced minibatches)",
                          since="0.5", implicit=1)
    match_at: str = _f("tau", "head matching: where the synsets are matched: tau (theta_tau only; default) or "
                              "checkpoints (theta_tau and the distill.checkpoints averaged ones, one per step in "
                              "turn: the same cost per step, and steps that transfer to the checkpoints; +0.006 LDS "
                              "over 28 ten-class probes, short of what two tests written down first asked: "
                              "BENCHMARKS.md, 'The matching's norm')")
    match_metric: str | None = _f(None, "head matching: the norm the matching error is measured in: step (the "
                                        "removal step's own, (H + lambda I)^-1 g, in the head's parameters), outputs "
                                        "(the logit change that step makes on the training inputs, root mean square: "
                                        "directions the data's features do not reach count less) or both (the mean "
                                        "of the two relative errors); none (default): both where the task has two "
                                        "classes (chosen on ten binary probes, +0.028 LDS, and held out on four, "
                                        "+0.048), step otherwise (both was a wash there: BENCHMARKS.md, 'The "
                                        "matching's norm')",
                                  since="0.20", implicit=None)
    curvature: str = _f("auto", "head matching: last-layer curvature stored exact (D x D, D = classes x (features+1)), "
                                "subspace (exact over the top exact_limit / classes - 1 feature directions, "
                                "eigenvalue-corrected K-FAC on the rest: a second pass over the data), ekfac "
                                "(K-FAC's eigenbasis with the exact curvature's eigenvalues), kfac (plain Kronecker "
                                "factors) or auto (exact up to D = exact_limit, subspace above; plain kfac and ekfac "
                                "cost 0.05-0.12 LDS against exact on the report configurations: BENCHMARKS.md, "
                                "'Large last layers')")
    exact_limit: int = _f(6000, "head matching: the most last-layer parameters whose curvature is held exactly (a "
                                "D x D float64 matrix and its eigendecomposition: 6000 is 290 MB and about 30 s on 2 "
                                "cores per checkpoint; the cost grows as D^3)", since="0.12", implicit=6000)
    subspace_rank: int = _f(0, "head matching, distill.curvature=subspace: the top feature directions over which the "
                               "curvature is exact (0: as many as exact_limit allows, exact_limit / classes - 1). "
                               "Fewer cost less (128 instead of 599: distillation 6 s instead of 90 s on a held-out "
                               "head of 7,690 parameters) and tied the attribution, but lost 2.8 points on one "
                               "unlearning draw (BENCHMARKS.md, 'Large last layers')", since="0.12", implicit=0)
    checkpoint_subspace_share: float = _f(0.5, "head matching, distill.curvature=subspace, distill.checkpoints > 1: "
                                               "the share of theta_tau's exact feature directions that the "
                                               "curvature at the earlier checkpoints keeps (1: all). Only the "
                                               "attribution's average reads those; theta_tau keeps all, for "
                                               "unlearning. 0.5 cost 0.002 LDS on two held-out large heads, 128 of "
                                               "599 directions 0.005-0.013, and the decompositions of a "
                                               "5,990-coordinate block's two checkpoints go from about 55 s to 7 s "
                                               "(BENCHMARKS.md, 'Stage costs')", since="0.17", implicit=1.0)
    tolerance: float = _f(1e-3, "head matching: stop once the mean relative matching error falls below this "
                                "(1e-3 at lr_img 0.03 gave the LDS of 1e-4 with 1000 steps at 0.01 on the selection "
                                "configurations: benchmarks/results/distill-budget.md)")
    pairing: str = _f("reverse", "trajectory pairing of reverse/match: reverse (theta_t <-> theta_{tau-t}) or "
                                 "step (theta_t <-> theta_{t+s})")
    step: int = _f(1, "s of the step pairing, in recorded checkpoints")
    ipc: int = _f(4, "synthetic images per group (head matching: 4, and distill.ipc_grow where 4 stop short of "
                     "distill.tolerance; one image's last-layer gradient is rank one; a group that mixes classes "
                     "gets at least one image per class it holds)")
    ipc_grow: int = _f(16, "head matching: where the matching with distill.ipc images runs out of steps above "
                           "distill.tolerance, it is done again with this many images per group and the better of "
                           "the two matches (mean relative error at theta_tau) is kept; one image's last-layer "
                           "gradient is rank one, so a group's step can need more. Selection configurations: "
                           "LDS tied, other-class LDS +0.036 on the Fashion-MNIST MLP; report mean LDS +0.002; a "
                           "one-block ConvNet of width 48 0.805 -> 0.846; but unlearning on heads above "
                           "exact_limit lost 2 of 6 draws (BENCHMARKS.md, 'More images where the matching stops "
                           "short'). Costs up to 4x the matching where it applies; 0: off",
                       since="0.13", implicit=0)
    unlearn_rank: int = _f(16, "head matching with an exact or subspace curvature: each group's own last-layer "
                               "curvature is stored with the synset as its top this-many eigenpairs (the top 16 "
                               "held 99.2-99.7% of the trace on a wide MLP), for unlearning with "
                               "emulate.unlearn_curvature=group (BENCHMARKS.md, 'The groups' own curvature'); "
                               "0: not stored",
                           since="0.13", implicit=0)
    iterations: int = _f(100, "distillation steps, at most (head matching stops earlier at distill.tolerance; 100 "
                              "gave the selection configurations' LDS of 300 in a third of the steps: "
                              "BENCHMARKS.md, 'Head distillation budget'; the paper recipe: 200)")
    lr_img: float = _f(0.03, "learning rate of the synthetic images (head: 0.03; local: 0.01; the paper's sgd: 10)")
    momentum_img: float = _f(0.5, "momentum of the sgd optimiser of the synthetic images")
    batch_real: int = _f(32, "real images sampled per group and step")
    distance: str = _f("relative_mse", "gradient distance: relative_mse (mse / |target|^2, keeps magnitude; "
                                       "default), layerwise_cosine (DC; the paper), cosine (flat), mse")
    augment: str = _f("crop_scale_rotate", "differentiable siamese augmentation: '_'-joined of color, crop, "
                                                  "cutout, flip, scale, rotate; or none")
    labels: str = _f("hard", "synthetic labels: hard (the group's class, or under head matching each image's own "
                             "class where a group mixes classes; the paper; required by head matching), "
                             "free (optimised real target vectors used as is, so each image's gradient can take "
                             "any scale and sign; not in the paper) or learned (soft: softmax of optimised logits)")
    lr_label: float = _f(0.05, "learning rate of learned label logits, free targets or (head) log image weights")
    optimizer: str = _f("adam", "optimiser of the synthetic images and labels: adam (scale-free steps, with a small "
                                "lr_img such as 0.01; default) or sgd (with momentum_img; the paper)",
                        since="0.2", implicit="sgd")
    init: str = _f("real", "initialise synthetic images from random real members (real), from the members with the "
                           "largest training loss at theta_tau (loss; head matching only) or noise")
    keep_best: bool = _f(True, "head matching (at theta_tau): return each group's synthetic images and weights at the "
                               "step where that group's matching error was lowest, not at the last step (Adam can "
                               "leave a group's minimum: on the AlexNet probe 5 flagged groups became 0; LDS ties "
                               "on the selection and report configurations, BENCHMARKS.md)",
                         since="0.9", implicit=False)
    retry: float = _f(0.5, "head matching: a group whose relative matching error at theta_tau is still at least this "
                           "after the matching is matched again, from its members with the largest training loss "
                           "and least-squares weights, and keeps whichever of the two matches better (images "
                           "started from members the model fits with near-zero loss carry no gradient and cannot "
                           "move: on the AlexNet probe such synsets stayed at error 1, a group with no influence); "
                           "0: off", since="0.11", implicit=0.0)
    weight_init: str = _f("size", "head matching: initial image weights: size (the group's size / ipc each; default) "
                                  "or nnls (the non-negative least-squares fit of the group's step by its initial "
                                  "images: starts 10x closer on Fashion-MNIST and won the selection, but lost 0.11 "
                                  "LDS on the digits MLP of the report matrix, so it is off: BENCHMARKS.md)",
                          since="0.5", implicit="size")
    block_rank: int = _f(300, "block matching: leading eigenvectors of the Gauss-Newton matrix over the last block and "
                              "the head kept per checkpoint (the rest at the last kept eigenvalue; 300 of 18,890 "
                              "reproduced the full solve on the digits ResNet: BENCHMARKS.md)", since="0.6",
                         implicit=300)
    block_damping: float = _f(1e-3, "block matching: lambda as a fraction of the block curvature's top eigenvalue "
                                    "(plus train.weight_decay)", since="0.6", implicit=1e-3)
    block_steps: int = _f(200, "block matching: Adam steps of the matching over the last block, after the head "
                               "matching", since="0.6", implicit=200)
    block_lr: float = _f(0.01, "block matching: learning rate of the images (the weights use lr_label)",
                         since="0.6", implicit=0.01)
    group_chunk: int = _f(0, "groups per vmap chunk for real gradients (0: all at once)")
    match_chunk: int = _f(0, "head matching: groups whose synthetic images one autograd graph holds at a time, their "
                             "gradients put together before each step (the same gradients, less memory); 0: all "
                             "groups at once where the graph's estimate fits in 2 GiB and a quarter of the memory "
                             "available, else as many as fit (2,000 groups of 64x64 images on a ConvNet need "
                             "chunks)", since="0.25", implicit=0)
    checkpoint_every: int = _f(50, "save the synset every this many steps (resume after a kill)")
    seed: int = _f(0, "seed of initialisation, sampling and augmentation")

    def __post_init__(self) -> None:
        _finite(self, "distill")
        _choice(self.matching, "distill.matching", ("head", "block", "reverse", "match", "local"))
        _check(self.matching not in ("head", "block") or self.labels == "hard",
               f"distill.matching={self.matching} uses the groups' hard labels: set distill.labels=hard")
        _check(self.block_rank > 0, f"distill.block_rank must be positive, got {self.block_rank}")
        _check(self.block_damping > 0, f"distill.block_damping must be positive, got {self.block_damping}")
        _check(self.block_steps >= 0, f"distill.block_steps must be >= 0, got {self.block_steps}")
        _check(self.block_lr > 0, f"distill.block_lr must be positive, got {self.block_lr}")
        _check(self.damping > 0, f"distill.damping must be positive, got {self.damping}")
        _choice(self.curvature, "distill.curvature", ("auto", "exact", "subspace", "ekfac", "kfac"))
        _check(self.exact_limit >= 1, f"distill.exact_limit must be positive, got {self.exact_limit}")
        _check(self.subspace_rank >= 0, f"distill.subspace_rank must be >= 0, got {self.subspace_rank}")
        _check(0 < self.checkpoint_subspace_share <= 1,
               f"distill.checkpoint_subspace_share must be in (0, 1], got {self.checkpoint_subspace_share}")
        _check(self.checkpoints >= 1, f"distill.checkpoints must be at least 1 (theta_tau), got {self.checkpoints}")
        _check(self.tolerance >= 0, f"distill.tolerance must be >= 0, got {self.tolerance}")
        _check(self.ipc <= 64, f"distill.ipc={self.ipc} is more than 64 images per group: a synset should be small")
        _choice(self.pairing, "distill.pairing", ("reverse", "step"))
        _choice(self.distance, "distill.distance", ("layerwise_cosine", "cosine", "mse", "relative_mse"))
        _choice(self.labels, "distill.labels", ("hard", "learned", "free"))
        _choice(self.init, "distill.init", ("real", "noise", "loss"))
        _choice(self.weight_init, "distill.weight_init", ("nnls", "size"))
        _choice(self.match_at, "distill.match_at", ("tau", "checkpoints"))
        if self.match_metric is not None:
            _choice(self.match_metric, "distill.match_metric", ("step", "outputs", "both"))
        _choice(self.optimizer, "distill.optimizer", ("sgd", "adam"))
        _choice(self.damping_reference, "distill.damping_reference", ("top", "mean"))
        _choice(self.head_loss, "distill.head_loss", ("task", "cross-entropy"))
        _check(self.head_temperature > 0, f"distill.head_temperature must be positive, got {self.head_temperature}")
        _check(self.auto_temperature == 0 or self.auto_temperature > 1,
               f"distill.auto_temperature must be 0 (never) or above 1, got {self.auto_temperature}")
        _check(self.step > 0, "distill.step must be positive")
        _check(self.ipc > 0, "distill.ipc must be positive")
        _check(self.ipc_grow >= 0, "distill.ipc_grow must be >= 0 (0: off)")
        _check(self.unlearn_rank >= 0, "distill.unlearn_rank must be >= 0 (0: off)")
        _check(self.ipc_grow <= 64, f"distill.ipc_grow={self.ipc_grow} is more than 64 images per group: a synset "
                                    "should be small")
        _check(self.retry >= 0, "distill.retry must be >= 0 (0: off)")
        _check(self.iterations >= 0, "distill.iterations must be >= 0")
        _check(self.lr_img > 0, "distill.lr_img must be positive")
        _check(self.batch_real > 0, "distill.batch_real must be positive")
        _check(self.group_chunk >= 0, "distill.group_chunk must be >= 0")
        _check(self.match_chunk >= 0, "distill.match_chunk must be >= 0 (0: chosen from the memory)")
        _check(self.checkpoint_every > 0, "distill.checkpoint_every must be positive")
        from ddm.distill.augment import parse_strategy

        parse_strategy(self.augment)


@dataclass
class EmulateConfig:
    num_perturbations: int | None = _f(None, "|P|, perturbations sampled (None: 2 K for fine-tuning emulations, "
                                             "max(2000, 10 K) for the Newton one; must be >= K)")
    keep_prob: float = _f(0.5, "probability that a group is kept in a perturbation")
    finetune_lr: float | None = _f(None, "fine-tune learning rate eta_f (None: finetune_scale x train.lr)")
    finetune_scale: float = _f(0.1, "eta_f = finetune_scale x train.lr when finetune_lr is None (the paper's Eq. 3: "
                                    "1; 0.1 was chosen on a validation seed; `ddm evaluate --tune` picks it per "
                                    "run from exact retrains)", since="0.3", implicit=1.0, unused_if="finetune_lr")
    finetune_steps: int | None = _f(None, "fine-tune steps T (None: recorded epochs tau, as in Eq. 3)")
    group_reduction: str = _f("sum", "loss over deleted groups: sum (Eq. 3-4) or mean")
    weighting: str = _f("inverse_deletions", "beta(p) of Eq. 8: inverse_deletions (1/#deleted) or uniform")
    ridge: float = _f(0.0, "ridge penalty on W (0: plain weighted least squares)")
    other_class_scale: float = _f(0.5, "per-target objectives (dist1/2/3): each group's weight for a target is "
                                       "scaled by s + (1 - s) x the share of the group's samples in the target's "
                                       "class (1: unscaled). Exact retraining weighs the target's own class far "
                                       "more against the others than the emulated step does; 0.5 was chosen on "
                                       "the selection configurations (BENCHMARKS.md, 'the class balance and "
                                       "each group's best step'). The ranking within the own class and within "
                                       "the others is unchanged; the intercept keeps the full data's prediction",
                                  since="0.10", implicit=1.0)
    switched_class_scale: float | None = _f(0.1, "the class balance (as other_class_scale) where the emulation's "
                                                 "other-class weights disagree between the steps (the synsets' "
                                                 "other-class step agreement below switched_class_agreement), and, "
                                                 "where that was not recorded, where the synset stage switched to "
                                                 "tempered synsets on its own (distill.auto_temperature), the case "
                                                 "it was first seen on: there the other classes' weights are the weak "
                                                 "part of the ranking. 0.1 was chosen on the two runs that set the "
                                                 "switch's threshold (BENCHMARKS.md, 'The class balance follows the "
                                                 "switch'). none: other_class_scale everywhere. Applied after the "
                                                 "emulation, like other_class_scale",
                                            since="0.20", implicit=None, keyed=False)
    switched_class_agreement: float | None = _f(0.35, "switched_class_scale applies where the synsets' other-class "
                                                      "step agreement (the Newton step at theta_tau and the steps "
                                                      "averaged over the earlier checkpoints ranking other classes' "
                                                      "groups alike, on 50 training samples; the synset stage records "
                                                      "it) is below this, switched or not; above it other_class_scale "
                                                      "is kept. Read off the 15 switched runs with a balance grid "
                                                      "(0.07-0.31 wanted the small balance, 0.39-0.72 did not); held "
                                                      "out on 21 runs with tempered synsets (0.5 kept on all, +0.012 "
                                                      "LDS against 0.1); on 34 unswitched runs it moves the 6 below "
                                                      "it, +0.007 LDS on average (BENCHMARKS.md, 'The "
                                                      "switched balance where other classes' weights agree'). none: "
                                                      "switched_class_scale wherever the synsets switched, and only "
                                                      "there",
                                                since="0.20", implicit=None, keyed=False)
    binary_class_scale: float | None = _f(None, "the class balance (as other_class_scale) where the task has two "
                                                "classes, in place of other_class_scale and switched_class_scale "
                                                "(the other class is then a target's only competitor). None (the "
                                                "default): the other rules there too. 1 (no balance) won on the four "
                                                "binary runs it was read off (+0.008 to +0.057 LDS) and on three "
                                                "binary probes made after, but lost on three more (-0.016 to "
                                                "-0.020): a wash held out (BENCHMARKS.md, 'Two classes: the class "
                                                "balance asked')",
                                          since="0.20", implicit=None, keyed=False)
    schedule_weight: float = _f(0.0, "weight of the schedule term: a retrain without a fraction f of the data "
                                      "takes f fewer steps, so each prediction gets weight x (the output at the "
                                      "recorded epoch tau / 2 minus at theta_tau) x 2 f. 0: none. `ddm check` fits "
                                      "it on the workspace's own retrains and says whether it helps there (README, "
                                      "'Checking it against exact retraining')", since="0.15", implicit=0.0)
    chunk_size: int = _f(64, "perturbations fine-tuned at once under vmap (bounds memory)")
    backend: str = _f("auto", "fine-tuning emulations: vmap (batched; the fast path on GPUs), loop (one model at a "
                              "time; 2-3x faster on CPUs, measured in issue 17) or auto (loop on the CPU)",
                      since="0.4", implicit="vmap")
    method: str = _f("auto", "auto (newton for head-matched synsets, else finetune), newton (one damped Newton step "
                             "on the last layer from the synset's gradients and stored curvature; not in the "
                             "paper), finetune (Eq. 3: finetune_steps SGD steps on the deleted synsets) or linear "
                             "(one first-order step of the same length from theta_tau; not in the paper)",
                     since="0.3", implicit="finetune")
    readout: str = _f("logits", "Newton emulation: how a perturbation's step becomes the objective's outputs: logits "
                                "(the step averaged over the checkpoints, added to theta_tau's logits, through the "
                                "objective) or checkpoints (each checkpoint's step through the objective's "
                                "first-order expansion at that checkpoint's own logits, then averaged; needs a "
                                "differentiable objective, others fall back to logits; BENCHMARKS.md, 'What the "
                                "remaining misses are made of')", since="0.9", implicit="logits")
    min_transfer: float = _f(0.5, "Newton emulation: an earlier checkpoint the step is averaged over "
                                  "(distill.checkpoints) is left out of the average when the synsets' steps there "
                                  "have a mean cosine with the real removal steps below this (the synset health "
                                  "check measures and reports it); never the case on the benchmark matrix, 0.27-0.43 "
                                  "on two Fashion-MNIST MLPs (BENCHMARKS.md). 0 keeps every checkpoint",
                             since="0.11", implicit=0.0)
    damping_scale: float = _f(1.0, "Newton emulation (attribution): the synset's dampings (distill.damping's lambda "
                                   "at theta_tau and at each checkpoint) times this when a removal is emulated; the "
                                   "synsets stay as they were matched. The best damping differs by model: the "
                                   "selection's MLP wants 1e-3 of the top eigenvalue, Fashion-MNIST ConvNets 1e-2 "
                                   "(BENCHMARKS.md); `ddm check` fits this on its retrains and advises it",
                            since="0.16", implicit=1.0)
    gradients: str = _f("groups", "Newton emulation (attribution): whose last-layer gradients the step is taken "
                                  "from: groups (the groups' own, which the synset stage computes anyway and stores "
                                  "beside the synset in a file of their own, at theta_tau and at every checkpoint "
                                  "averaged over; the default since 0.20: +0.033 LDS on 7 held-out runs, most where "
                                  "synthetic images fall short) or synsets (the synthetic images', as matched: the "
                                  "distilled datamodel as the paper has it). The synsets carry unlearning and what is "
                                  "released either way, and block-matched synsets (distill.matching=block) and the "
                                  "fine-tuning recipes, which take no last-layer Newton step, read their synsets "
                                  "whatever this says. BENCHMARKS.md, 'The groups' own gradients'",
                        since="0.20", implicit="synsets")
    top_classes: int = _f(2, "hierarchical datamodel: classes refined at group level per target")
    unlearn_damping: float | None = _f(1e-3, "Newton unlearning: lambda as a fraction of the curvature's top "
                                             "eigenvalue (plus train.weight_decay; chosen on the selection "
                                             "configurations; chosen again with distill.ipc_grow, where 3e-3 tied "
                                             "it: BENCHMARKS.md); None: the synset's (distill.damping)",
                                       since="0.4", implicit=None)
    unlearn_curvature_damping: float = _f(0.0, "Newton unlearning: epsilon of a trust region epsilon x H (the full "
                                               "data's curvature) added to the kept data's; 0.1 with "
                                               "unlearn_damping=1e-4 won on the selection configurations but "
                                               "wrecked models on others (BENCHMARKS.md), so it is off",
                                          since="0.4", implicit=0.0)
    unlearn_rewind: float = _f(1.0, "Newton unlearning: the step is added to the recorded trajectory's parameters "
                                     "at epoch tau (1 - s f) instead of theta_tau, f the fraction of training "
                                     "samples removed and s this value: retraining with the same number of epochs "
                                     "takes f fewer optimizer steps. 1 (the schedule's own rule) halved the gap to "
                                     "exact retraining on the selection configurations; 0 for retraining that "
                                     "keeps the number of steps", since="0.5", implicit=0.0)
    unlearn_rewind_to: str = _f("interpolate", "Newton unlearning, the rewind's point (emulate.unlearn_rewind): "
                                              "interpolate (the parameters at epoch tau (1 - s f) on the straight "
                                              "line between the two recorded checkpoints around it) or checkpoint "
                                              "(the recorded checkpoint nearest that epoch: a point SGD visited; "
                                              "the straight line between two noisy checkpoints averages them, which "
                                              "can raise accuracy above both)", since="0.20", implicit="interpolate")
    unlearn_rewind_guard: bool = _f(True, "Newton unlearning: where the recorded checkpoint the rewind lands on "
                                          "(emulate.unlearn_rewind) has itself lost a class that theta_tau has and "
                                          "the removal leaves half or more of its training samples (a fluctuation "
                                          "of training between checkpoints, seen with constant learning rates), "
                                          "the step is taken from theta_tau instead; false keeps the rewound "
                                          "model and only warns (before 0.23). BENCHMARKS.md, 'The rewind's guard'",
                                    since="0.23", keyed=False)
    unlearn_backoff: int = _f(2, "Newton unlearning: when the step costs a class that keeps training data more than "
                                 "emulate.unlearn_class_drop of its kept synthetic images' accuracy (the unlearning "
                                 "check's 'collapsed' class; retraining keeps such a class), the damping is raised "
                                 "tenfold and the step redone, "
                                 "at most this many times; 0 keeps the first step. A class the removal leaves with "
                                 "under half of its training samples never sets it off (retraining loses accuracy "
                                 "there too)", since="0.6", implicit=0)
    unlearn_class_drop: float = _f(0.2, "the unlearning check: a class that keeps training data and loses more than "
                                        "this share of its kept synthetic images' accuracy counts as collapsed "
                                        "(warned about, and the step redone under emulate.unlearn_backoff). 0.2 and "
                                        "0.3 tied on the selection configurations, both ahead of 0.5 (the value "
                                        "before); 0.2 also catches a 29-point drop a probe outside the benchmarks "
                                        "found (BENCHMARKS.md)", since="0.8", implicit=0.5)
    unlearn_curvature: str = _f("images", "Newton unlearning: the removed groups' curvature subtracted from the full "
                                          "one to give the kept data's: images (their synthetic images', the "
                                          "default) or group (each group's own, stored by distill.unlearn_rank). "
                                          "With 16 images per group the images' can remove too much in a few "
                                          "directions: a wide MLP's draw fell to 91.1% where exact retraining keeps "
                                          "97.8% and group gives 97.8%; but images won the selection "
                                          "configurations (with two large heads among them: 1.14 points from "
                                          "exact retraining against 1.20; BENCHMARKS.md, 'The groups' own "
                                          "curvature')", since="0.13", implicit="images")
    unlearn_prior_shift: float = _f(0.0, "Newton unlearning: a class that keeps a fraction r of its training "
                                         "samples gets s log r added to its bias (s this value), the shift of a "
                                         "calibrated classifier's class prior; its limit r = 0 is the rule that "
                                         "takes a class without data out of the head. 0: off",
                                    since="0.9", implicit=0.0)
    decay_share: bool = _f(True, "Newton emulation and unlearning: removing a group also removes its samples' share "
                                 "of the weight decay (training averages the loss, so the kept samples weigh more "
                                 "against train.weight_decay); no effect without weight decay",
                           since="0.7", implicit=False)
    fit: str = _f("auto", "how W is fitted to the emulations: regression (Eq. 8: weighted least squares over the "
                          "perturbations; time P K^2 and memory (K+1)^2), linearised (the Newton emulation's logits "
                          "are linear in the deletions, so each group's coefficient is the objective's Jacobian, "
                          "averaged over the perturbations, times the group's logit shift: time and memory linear in "
                          "K; per-target objectives differentiable in the logits, emulate.readout=logits) or auto "
                          "(linearised above 2,000 groups where it applies: per-sample groups of large data; "
                          "BENCHMARKS.md, 'One group per sample')", since="0.12", implicit="auto")
    seed: int = _f(0, "seed of the perturbations")

    def __post_init__(self) -> None:
        _finite(self, "emulate")
        _choice(self.fit, "emulate.fit", ("auto", "regression", "linearised"))
        _choice(self.unlearn_rewind_to, "emulate.unlearn_rewind_to", ("interpolate", "checkpoint"))
        _choice(self.gradients, "emulate.gradients", ("synsets", "groups"))
        _check(0 <= self.unlearn_rewind <= 1, f"emulate.unlearn_rewind must be in [0, 1], got {self.unlearn_rewind}")
        _check(self.num_perturbations is None or self.num_perturbations > 0,
               "emulate.num_perturbations must be positive")
        _check(0 < self.keep_prob < 1, f"emulate.keep_prob must be in (0, 1), got {self.keep_prob}")
        _check(0 < self.other_class_scale <= 1, "emulate.other_class_scale must be in (0, 1] (0 would erase the "
               f"ranking of other classes' groups; 1 leaves the weights as fitted), got {self.other_class_scale}")
        _check(self.binary_class_scale is None or 0 < self.binary_class_scale <= 1,
               f"emulate.binary_class_scale must be in (0, 1] or none, got {self.binary_class_scale}")
        _check(self.switched_class_agreement is None or -1 <= self.switched_class_agreement <= 1,
               "emulate.switched_class_agreement is a rank correlation: give a value in [-1, 1], or none, got "
               f"{self.switched_class_agreement}")
        _check(self.switched_class_scale is None or 0 < self.switched_class_scale <= 1,
               "emulate.switched_class_scale must be in (0, 1], or none to keep emulate.other_class_scale "
               f"everywhere, got {self.switched_class_scale}")
        _choice(self.readout, "emulate.readout", ("logits", "checkpoints"))
        _check(self.schedule_weight >= 0, f"emulate.schedule_weight must be >= 0 (0: no schedule term), got "
               f"{self.schedule_weight}")
        _check(self.finetune_lr is None or self.finetune_lr > 0, "emulate.finetune_lr must be positive")
        _check(self.finetune_scale > 0, "emulate.finetune_scale must be positive")
        _check(self.finetune_steps is None or self.finetune_steps >= 0, "emulate.finetune_steps must be >= 0")
        _choice(self.group_reduction, "emulate.group_reduction", ("sum", "mean"))
        _choice(self.weighting, "emulate.weighting", ("inverse_deletions", "uniform"))
        _choice(self.backend, "emulate.backend", ("auto", "vmap", "loop"))
        _choice(self.method, "emulate.method", ("auto", "newton", "finetune", "linear"))
        _check(self.ridge >= 0, "emulate.ridge must be >= 0")
        _check(self.chunk_size > 0, "emulate.chunk_size must be positive")
        _check(self.top_classes > 0, "emulate.top_classes must be positive")
        _check(self.unlearn_damping is None or self.unlearn_damping > 0, "emulate.unlearn_damping must be positive")
        _choice(self.unlearn_curvature, "emulate.unlearn_curvature", ("images", "group"))
        _check(self.unlearn_backoff >= 0, "emulate.unlearn_backoff must be >= 0")
        _check(0 <= self.min_transfer <= 1, f"emulate.min_transfer must be in [0, 1], got {self.min_transfer}")
        _check(self.damping_scale > 0, f"emulate.damping_scale must be positive, got {self.damping_scale}")
        _check(0 < self.unlearn_class_drop <= 1, "emulate.unlearn_class_drop must be in (0, 1]")
        _check(self.unlearn_prior_shift >= 0,
               f"emulate.unlearn_prior_shift must be >= 0, got {self.unlearn_prior_shift}")
        _check(self.unlearn_curvature_damping >= 0, "emulate.unlearn_curvature_damping must be >= 0")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    emulate: EmulateConfig = field(default_factory=EmulateConfig)
    device: str = _f("auto", "where ddm computes: auto (CUDA when PyTorch sees one, else the CPU), cpu, cuda or "
                             "cuda:N. "
                             "Not part of any stage's key: results are stored on the CPU and a workspace made on a "
                             "GPU opens anywhere. The head recipe (the default) runs on any of them; the fine-tuning "
                             "and trajectory-matching recipes on the CPU only")
    hierarchical: bool = _f(False, "also distill a class-level synset (Sec. 3.3 hierarchical datamodel); off by "
                            "default (it costs a second distillation): `ddm attribute --hierarchical` and "
                            "`ddm unlearn --classes` build it when first asked")

    # ---- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key_dict(self) -> dict[str, Any]:
        """What identifies results made with this config (see :func:`keyed`)."""
        return {f.name: keyed(getattr(self, f.name)) if dataclasses.is_dataclass(getattr(self, f.name))
                else getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return _from_dict(cls, d, "")

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return cls.from_dict(json.loads(text))

    def with_overrides(self, overrides: str | Iterable[str] | Mapping[str, Any]) -> RunConfig:
        """Apply ``["stage.field=value", ...]`` (as ``--set`` takes them; one such string alone, or a mapping
        ``{"stage.field": value}``, works too) and return a new, validated config."""
        d = self.to_dict()
        items: Iterable[str]
        if isinstance(overrides, str):
            items = [overrides]
        elif isinstance(overrides, Mapping):
            items = [f"{k}={_as_text(v)}" for k, v in overrides.items()]
        else:
            items = list(overrides)
            if any(not isinstance(i, str) for i in items):
                raise ConfigError("overrides must be strings like 'stage.field=value' (e.g. 'train.epochs=5'), "
                                  "or a mapping {'stage.field': value}")
        for item in items:
            if "=" not in item:
                raise ConfigError(f"override {item!r} must look like stage.field=value (e.g. train.epochs=5)")
            key, raw = item.split("=", 1)
            parts = key.strip().split(".")
            node: Any = self
            target = d
            for p in parts[:-1]:
                if not dataclasses.is_dataclass(node) or p not in {f.name for f in dataclasses.fields(node)}:
                    raise ConfigError(f"unknown config section {key!r}; sections: {', '.join(d)}")
                node = getattr(node, p)
                target = target[p]
            name = parts[-1]
            fields = {f.name: f for f in dataclasses.fields(node)} if dataclasses.is_dataclass(node) else {}
            if name not in fields or dataclasses.is_dataclass(getattr(node, name)):
                raise ConfigError(
                    f"unknown config field {key!r}; fields here: {', '.join(sorted(fields))}"
                )
            target[name] = parse_value(raw.strip(), _field_type(type(node), name), key)
        return RunConfig.from_dict(d)


def _as_text(value: Any) -> str:
    """A mapping's override value as ``--set`` would spell it (``None`` as none, booleans as true/false)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def parse_value(raw: str, tp: Any, key: str) -> Any:
    """Parse the text of an override against a field type (int, float, bool, str, Optional)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if raw.lower() in ("none", "null"):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return parse_value(raw, inner[0], key)
    try:
        if tp is bool:
            low = raw.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if tp is int:
            return int(raw)
        if tp is float:
            return float(raw)
        if tp is str:
            return raw
    except ValueError:
        raise ConfigError(f"{key}={raw!r}: expected a value of type {getattr(tp, '__name__', tp)}") from None
    raise ConfigError(f"{key}: fields of type {tp} cannot be set from the command line")


def _from_dict(cls: type, d: dict[str, Any], prefix: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"config section {prefix or 'root'!r} must be a JSON object")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(
            f"unknown config field(s) {', '.join(sorted(prefix + u for u in unknown))}; "
            f"valid: {', '.join(sorted(names))}"
        )
    # a field missing from a file written before it existed takes the behaviour of that time
    kwargs: dict[str, Any] = {f.name: f.metadata["implicit"] for f in dataclasses.fields(cls)
                              if "implicit" in f.metadata and f.name not in d}
    for name, value in d.items():
        tp = hints[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            kwargs[name] = _from_dict(tp, value, f"{prefix}{name}.")
        else:
            kwargs[name] = value
    return cls(**kwargs)


def keyed(section: Any) -> dict[str, Any]:
    """The fields of a config section that identify a stage's inputs, for :func:`fingerprint`.

    Options added after caches already existed carry ``since`` in their metadata and count only when
    set away from the behaviour before they existed (``implicit``, else their default), so adding an option,
    or changing its default, keeps every earlier cache valid. An option with ``unused_if`` does not count
    while that other field is set, one with ``used_only_if`` ``(field, value)`` while that field holds another
    value (it has no effect then), one with ``keyed=False`` never (it acts after every cached stage)."""
    def counts(f: dataclasses.Field) -> bool:
        value = getattr(section, f.name)
        if "unused_if" in f.metadata and getattr(section, f.metadata["unused_if"]) is not None:
            return False
        if "used_only_if" in f.metadata and getattr(section, f.metadata["used_only_if"][0]) != f.metadata[
                "used_only_if"][1]:
            return False
        if not f.metadata.get("keyed", True):
            return False
        return not ("since" in f.metadata and value == f.metadata.get("implicit", f.default))

    return {f.name: getattr(section, f.name) for f in dataclasses.fields(section) if counts(f)}


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts; identifies a stage's inputs."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe(cls: type) -> list[tuple[str, str, Any]]:
    """(field, help, default) rows of a config dataclass, for ``--help`` style listings."""
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else "(section)"
        rows.append((f.name, f.metadata.get("help", ""), default))
    return rows
