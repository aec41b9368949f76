"""Ready-made run configurations, as plain functions returning a :class:`RunConfig`."""

from __future__ import annotations

from collections.abc import Callable
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
from ddm.registry import Registry

PRESETS: Registry[Callable[..., RunConfig]] = Registry("preset")


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
    """The paper's settings: DC ConvNet (width 128, depth 3, instance norm), c = 10 clusters per class,
    ipc = 1, lr_img = 10, lr_net = 0.01 (plain SGD), reverse matching with theta_t <-> theta_{tau-t},
    |P| >= K perturbations."""
    return RunConfig(
        data=_data_cfg(data),
        model=ModelConfig(width=128, depth=3),
        train=TrainConfig(epochs=20, lr=0.01, batch_size=64),
        cluster=ClusterConfig(per_class=10),
        distill=DistillConfig(iterations=1000, lr_img=10.0),
        emulate=EmulateConfig(),
    )


@PRESETS.register("demo")
def demo(data: Any = None) -> RunConfig:
    """A few minutes on 2 CPU cores with the embedded digits: a narrower ConvNet (width 32) trained with
    plain SGD at lr 0.1 (lr 0.01 leaves this net under-trained in 20 epochs), K = 100 groups, 200
    reverse-matching steps; everything else as in the paper."""
    return RunConfig(
        data=_data_cfg(data),
        model=ModelConfig(width=32, depth=3),
        train=TrainConfig(epochs=20, lr=0.1, batch_size=32),
        cluster=ClusterConfig(per_class=10),
        distill=DistillConfig(iterations=200, batch_real=16),
        emulate=EmulateConfig(),
    )


@PRESETS.register("tiny")
def tiny(data: Any = None) -> RunConfig:
    """Seconds, for tests and smoke runs: a small subset, tiny model, few steps."""
    d = _data_cfg(data)
    d.train_size, d.test_size = d.train_size or 300, d.test_size or 60
    return RunConfig(
        data=d,
        model=ModelConfig(width=8, depth=2),
        train=TrainConfig(epochs=4, lr=0.1, batch_size=32),
        cluster=ClusterConfig(per_class=2),
        distill=DistillConfig(iterations=6, batch_real=8, checkpoint_every=2),
        emulate=EmulateConfig(chunk_size=16),
    )


def get(name: str, data: Any = None) -> RunConfig:
    return PRESETS.get(name)(data)
