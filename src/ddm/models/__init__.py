"""Model registry. ``build(name, data)`` sizes a model for a dataset and seeds theta_0.

Every registered model must be a pure function of its parameters (no running statistics), so
that ``torch.func.functional_call`` + ``vmap`` can fine-tune many copies at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ddm.config import ModelConfig
from ddm.models.alexnet import AlexNet
from ddm.models.convnet import ConvNet
from ddm.models.mlp import MLP
from ddm.models.resnet import ResNet
from ddm.models.vit import ViT
from ddm.registry import Registry

Shape = tuple[int, int, int]
MODELS: Registry[Callable[[ModelConfig, Shape, int], nn.Module]] = Registry("model")


@MODELS.register("convnet")
def _convnet(cfg: ModelConfig, shape: Shape, num_classes: int) -> nn.Module:
    return ConvNet(shape[0], (shape[1], shape[2]), num_classes, cfg.width, cfg.depth, cfg.norm)


@MODELS.register("mlp")
def _mlp(cfg: ModelConfig, shape: Shape, num_classes: int) -> nn.Module:
    return MLP(shape[0] * shape[1] * shape[2], num_classes, cfg.width, cfg.depth)


@MODELS.register("resnet")
def _resnet(cfg: ModelConfig, shape: Shape, num_classes: int) -> nn.Module:
    """ResNet-18's layout with GroupNorm (``width`` 64 and ``depth`` 4 give ResNet-18), or with BatchNorm as
    published when ``model.norm=batchnorm`` (the other norms leave it GroupNorm)."""
    return ResNet(shape[0], (shape[1], shape[2]), num_classes, cfg.width, cfg.depth,
                  norm="batchnorm" if cfg.norm == "batchnorm" else "groupnorm")


@MODELS.register("alexnet")
def _alexnet(cfg: ModelConfig, shape: Shape, num_classes: int) -> nn.Module:
    """AlexNet's layout for small images (5 convolutions, 3 fully connected layers; no BatchNorm or dropout)."""
    return AlexNet(shape[0], (shape[1], shape[2]), num_classes, cfg.width)


@MODELS.register("vit")
def _vit(cfg: ModelConfig, shape: Shape, num_classes: int) -> nn.Module:
    """A small Vision Transformer (``width`` = embedding size, ``depth`` = blocks; LayerNorm)."""
    return ViT(shape[0], (shape[1], shape[2]), num_classes, cfg.width, cfg.depth)


def build(
    name: str | ModelConfig = "convnet",
    data: Any = None,
    *,
    image_shape: Shape | None = None,
    num_classes: int | None = None,
    **options: Any,
) -> nn.Module:
    """Build a registered model for ``data`` (a Dataset) or an explicit shape and class count.

    The returned module carries ``ddm_spec`` (its config, shape and classes) so a workspace can
    rebuild it. The initial weights depend only on ``cfg.seed``.
    """
    cfg = name if isinstance(name, ModelConfig) else ModelConfig(name=name, **options)
    if data is not None:
        image_shape, num_classes = data.image_shape, data.num_classes
    if image_shape is None or num_classes is None:
        raise ValueError("build() needs a dataset or both image_shape and num_classes")
    factory = MODELS.get(cfg.name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = factory(cfg, tuple(image_shape), int(num_classes))  # type: ignore[arg-type]
    model.ddm_spec = {  # type: ignore[assignment]
        "config": cfg.__dict__.copy(),
        "image_shape": list(image_shape),
        "num_classes": int(num_classes),
    }
    return model


def from_import(path: str, num_classes: int | None = None, image_shape: Shape | None = None) -> nn.Module:
    """The user's model from an import path ``package.module:factory``.

    ``factory`` is called with whichever of ``num_classes`` and ``image_shape`` (channels, height, width) it
    takes as parameters (none is fine). The module carries ``ddm_spec`` with the path, so a workspace built
    from it reopens without naming it again (opening such a workspace imports that module)."""
    import inspect

    from ddm.exceptions import ConfigError
    from ddm.registry import import_object

    factory: Any = import_object(path, "--model", "MODULE:FACTORY", "mypackage.models:make_net")
    offered = {"num_classes": num_classes, "image_shape": tuple(image_shape) if image_shape else None}
    try:
        params: Any = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs = {k: v for k, v in offered.items() if k in params and v is not None}
    required = [n for n, p in dict(params).items()
                if p.default is inspect.Parameter.empty and n not in kwargs
                and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
    if required:
        raise ConfigError(f"--model {path!r} requires {', '.join(required)}, which ddm cannot give (it passes "
                          "num_classes and image_shape, where the factory names them): give those parameters "
                          "defaults, or point --model at a small function that calls the factory with your values")
    try:
        model = factory(**kwargs)
    except Exception as e:  # the user's own code: its error, not ddm's
        raise ConfigError(f"--model {path!r} raised {type(e).__name__}: {e} (called with "
                          f"{', '.join(f'{k}={v!r}' for k, v in kwargs.items()) or 'no arguments'})") from e
    if not isinstance(model, nn.Module):
        raise ConfigError(f"--model {path!r} returned {type(model).__name__}, not a torch.nn.Module")
    model.ddm_spec = {"import": path, "num_classes": num_classes,  # type: ignore[assignment]
                      "image_shape": list(image_shape) if image_shape else None,
                      "class": f"{type(model).__module__}.{type(model).__qualname__}",
                      "parameters": {k: list(v.shape) for k, v in model.named_parameters()}}
    return model


def from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a model from the ``ddm_spec`` stored in a workspace (registry models and import paths), with the head
    it was found to have (``head``)."""
    model = _from_spec(spec)
    if "head" in spec:
        model.ddm_head = spec["head"]  # type: ignore[assignment]
    return model


def _from_spec(spec: dict[str, Any]) -> nn.Module:
    if "import" in spec:
        model = from_import(spec["import"], spec.get("num_classes"), spec.get("image_shape"))
        got = {k: list(v.shape) for k, v in model.named_parameters()}
        if got != spec.get("parameters", got):
            from ddm.exceptions import ConfigError

            raise ConfigError(f"{spec['import']} now builds a model whose parameters differ from the stored ones; "
                              "the factory changed since the workspace was made")
        return model
    return build(ModelConfig(**spec["config"]), image_shape=tuple(spec["image_shape"]),
                 num_classes=spec["num_classes"])


def spec_of(model: nn.Module) -> dict[str, Any]:
    """What a workspace stores of ``model`` (``train/model.json``): ``ddm_spec`` (how to rebuild it), or its class and
    parameter shapes; with ``head``, the Linear its logits come from where that is not the last one it registers
    (``model.ddm_head``, :func:`ddm.distill.scope.logits_linear`)."""
    spec = getattr(model, "ddm_spec", None)
    if spec is None:
        spec = {"class": f"{type(model).__module__}.{type(model).__qualname__}",
                "parameters": {k: list(v.shape) for k, v in model.named_parameters()}}
    head = getattr(model, "ddm_head", None)
    return spec if head is None else {**spec, "head": head}


def with_params(model: nn.Module, params: dict[str, torch.Tensor]) -> nn.Module:
    """A deep copy of ``model`` carrying ``params`` (name -> tensor) as its trainable parameters, and as its buffers
    those ``params`` holds too (a checkpoint's running statistics, :meth:`Trajectory.checkpoint`)."""
    import copy

    net = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(params[name])
        for name, b in net.named_buffers():
            if name in params:
                b.copy_(params[name])
    return net


def params_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of the trainable parameters, by name."""
    return {k: v.detach().clone() for k, v in model.named_parameters()}


__all__ = ["MODELS", "ConvNet", "MLP", "ResNet", "build", "from_spec", "params_of", "spec_of", "with_params"]
