"""Ready-made run configurations, as plain functions returning a :class:`RunConfig`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ddm.config import (
    ClusterConfig,
    DataConfig,
    DistillConfig,
    EmulateConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from ddm.exceptions import ConfigError
from ddm.registry import Registry

PRESETS: Registry[Callable[..., RunConfig]] = Registry("preset")


def model_for(data: Any, model: ModelConfig) -> ModelConfig:
    """``model``, or, where it is a ConvNet and ``data`` holds feature vectors (``[N, D]`` arrays become 1x1 images,
    which a ConvNet cannot convolve: ``from_arrays``), an MLP of its width and seed with two hidden layers; an
    instance-norm ConvNet on images so small that its last block would normalise maps of 2x2 or fewer values gets
    fewer blocks (:func:`convnet_depth_for`: depth 2 on the 8x8 digits)."""
    shape = getattr(data, "image_shape", None)
    if model.name == "convnet" and shape is not None and tuple(shape)[1:] == (1, 1):
        return ModelConfig(name="mlp", width=model.width, depth=2, seed=model.seed)
    if model.name == "convnet" and model.norm == "instancenorm" and shape is not None:
        depth = convnet_depth_for(tuple(shape)[1:], model.depth)
        if depth != model.depth:
            return replace(model, depth=depth)
    return model


def convnet_depth_for(size: tuple[int, ...], depth: int) -> int:
    """The most blocks, up to ``depth``, an instance-norm ConvNet can have on ``size`` (H, W) images while its last
    block still normalises maps of at least 4x4: each block halves the maps, and a channel normalised over 2x2 values
    keeps little but their pattern. On the 8x8 digits the depth-3 ConvNet (the demo's before this rule) ranked other
    classes' groups the wrong way round where it was trained at a high rate, and its exact retrains lost whole
    classes that kept three quarters of their data; at depth 2 neither happened (BENCHMARKS.md, "The last block's
    instance norm on 2x2 maps")."""
    h, w = (int(size[0]), int(size[-1])) if size else (0, 0)
    best = 1
    for d in range(1, depth + 1):
        if min(h, w) >> (d - 1) >= 4:
            best = d
    return min(best, depth)


def _data_cfg(data: Any) -> DataConfig:
    if data is None:
        return DataConfig()
    if isinstance(data, DataConfig):
        return data
    if isinstance(data, str):
        return DataConfig(name=data)
    return DataConfig(name=getattr(data, "name", "digits"))


@PRESETS.register("paper")
def paper(data: Any = None) -> RunConfig:
    """The paper's scale: DC ConvNet (width 128, depth 3, instance norm), c = 10 clusters per class,
    lr_net = 0.01 (plain SGD); distillation by the default recipe (``head``, 4 images per group). Add
    ``recipe("paper")`` (``--recipe paper``) for the paper's reverse matching (ipc = 1, lr_img = 10,
    fine-tuning emulation)."""
    return RunConfig(
        data=_data_cfg(data),
        model=model_for(data, ModelConfig(width=128, depth=3)),
        train=TrainConfig(epochs=20, lr=0.01, batch_size=64),
        cluster=ClusterConfig(per_class=10),
        distill=DistillConfig(),
        emulate=EmulateConfig(),
    )


@PRESETS.register("demo")
def demo(data: Any = None) -> RunConfig:
    """Seconds on 2 CPU cores with the embedded digits: a narrower ConvNet (width 32) trained with plain SGD,
    lr 0.1 (lr 0.01 leaves this net under-trained in 20 epochs), K = 100 groups, 16 real images per group and
    step; the default distillation recipe (``head``). Depth 3, or 2 on the 8x8 digits where the data are given
    (:func:`model_for`)."""
    return RunConfig(
        data=_data_cfg(data),
        model=model_for(data, ModelConfig(width=32, depth=3)),
        train=TrainConfig(epochs=20, lr=0.1, batch_size=32),
        cluster=ClusterConfig(per_class=10),
        distill=DistillConfig(batch_real=16),
        emulate=EmulateConfig(),
    )


@PRESETS.register("tiny")
def tiny(data: Any = None) -> RunConfig:
    """Seconds, for tests and smoke runs: a small subset, tiny model, few steps."""
    d = _data_cfg(data)
    d.train_size, d.test_size = d.train_size or 300, d.test_size or 60
    return RunConfig(
        data=d,
        model=model_for(data, ModelConfig(width=8, depth=2)),
        train=TrainConfig(epochs=4, lr=0.1, batch_size=32),
        cluster=ClusterConfig(per_class=2),
        distill=DistillConfig(iterations=6, batch_real=8, checkpoint_every=2),
        emulate=EmulateConfig(chunk_size=16),
    )


def get(name: str, data: Any = None) -> RunConfig:
    return PRESETS.get(name)(data)


#: Distillation recipes: named bundles of overrides applied on top of any preset (``--recipe``). Each sets
#: every option that tells the methods apart (and the step budget measured with it at the demo scale), so a
#: recipe gives the same method whatever came before it. ``head`` is the default (DistillConfig's
#: defaults), chosen on selection configurations; ``paper`` is the paper-faithful method. All are measured against
#: exact retraining in BENCHMARKS.md ("Toward a faithful DDM").
_SGD = ["distill.optimizer=sgd", "distill.lr_img=10.0", "distill.lr_label=1.0", "distill.iterations=200"]
_ADAM = ["distill.optimizer=adam", "distill.lr_img=0.01", "distill.lr_label=0.01", "distill.iterations=500"]
_REVERSE = ["distill.matching=reverse", "distill.distance=layerwise_cosine"]
_LOCAL = ["distill.matching=local", "distill.distance=relative_mse", *_ADAM]
_HEAD = ["distill.matching=head", "distill.distance=relative_mse", "distill.labels=hard", "distill.optimizer=adam",
         "distill.lr_img=0.03", "distill.lr_label=0.05", "distill.iterations=100", "distill.tolerance=1e-3",
         "distill.ipc=4", "distill.ipc_grow=16"]
RECIPES: dict[str, tuple[list[str], str]] = {
    "head": ([*_HEAD, "distill.init=real"],
             "the default: 4 images per group (16 where 4 stop short of the tolerance) reproduce its last-layer "
             "gradient (hard labels, learned weights); "
             "emulation by a damped Newton step with the stored last-layer curvature"),
    # from noise, 300 steps left many groups unmatched (the matrix's health checks): the earlier budget
    "head-noise": ([*_HEAD, "distill.init=noise", "distill.lr_img=0.01", "distill.iterations=1000",
                    "distill.tolerance=1e-4", "distill.ipc_grow=0"],
                   "head matching from noise-initialised images (reveals less; 1000 steps, 4 images, as measured)"),
    "block": (["distill.matching=block", *_HEAD[1:], "distill.init=real"],
              "head matching, then the synsets matched again over the last block and the head at every checkpoint; "
              "emulation by a damped Newton step over that scope with a low-rank curvature (not the default: "
              "BENCHMARKS.md)"),
    "local-free": ([*_LOCAL, "distill.labels=free", "distill.ipc=1"],
                   "the previous default: local matching (near theta_tau, magnitude kept), free labels (any scale and "
                   "sign), Adam"),
    "paper": ([*_REVERSE, "distill.labels=hard", *_SGD, "distill.ipc=1"],
              "paper-faithful: reverse matching theta_t <-> theta_{tau-t}, hard labels, layer-wise cosine, SGD"),
    "match": (["distill.matching=match", "distill.distance=layerwise_cosine", "distill.labels=hard", *_SGD,
               "distill.ipc=1"], "the paper's plain gradient matching (DDM-match)"),
    "reverse-free": ([*_REVERSE, "distill.labels=free", *_ADAM, "distill.ipc=1"],
                     "the paper's reverse matching with free labels and Adam"),
    "local-hard": ([*_LOCAL, "distill.labels=hard", "distill.ipc=1"], "local matching, hard labels, Adam"),
    "local-soft": ([*_LOCAL, "distill.labels=learned", "distill.ipc=1"], "local matching, learned soft labels, Adam"),
    "local-free-ipc5": ([*_LOCAL, "distill.labels=free", "distill.ipc=5"], "local-free with 5 images per group"),
}
DEFAULT_RECIPE = "head"


def recipe(name: str) -> list[str]:
    """The ``--set`` overrides of a distillation recipe."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose from: {', '.join(RECIPES)} (see `ddm info`)")
    return list(RECIPES[name][0])
