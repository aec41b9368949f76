"""The transfer probe's networks for ``ddm run --model pretrained_models:NAME`` (this folder on PYTHONPATH), as a user's
factory that loads pretrained weights would, from what ``make_data.py`` pretrained on Fashion-MNIST classes 0-4
(``runs/transfer/`` under the repository root, or the folder ``$DDM_PRETRAINED``). ``convnet``: the demo ConvNet,
every layer fine-tuned; ``convnet_frozen``: its pretrained features frozen, only the last layer trained (linear
probing); ``resnet_bn``: the batch-norm ResNet, its running statistics pretrained too."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

import ddm
from ddm.workspace import load_tensors

FOLDER = Path(os.environ.get("DDM_PRETRAINED", Path(__file__).resolve().parents[3] / "runs/transfer"))
WEIGHTS = FOLDER / "pretrained.safetensors"


def convnet(num_classes: int, image_shape: tuple[int, ...]) -> nn.Module:
    model = ddm.models.build("convnet", image_shape=image_shape, num_classes=num_classes, width=32)
    model.load_state_dict(load_tensors(WEIGHTS))
    return model


def convnet_frozen(num_classes: int, image_shape: tuple[int, ...]) -> nn.Module:
    model = convnet(num_classes, image_shape)
    head = ddm.distill.scope.last_linear_name(model)
    for name, p in model.named_parameters():
        if not name.startswith(head + "."):
            p.requires_grad_(False)
    return model


def resnet_bn(num_classes: int, image_shape: tuple[int, ...]) -> nn.Module:
    model = ddm.models.build("resnet", image_shape=image_shape, num_classes=num_classes, width=16, depth=2,
                             norm="batchnorm")
    model.load_state_dict(load_tensors(FOLDER / "pretrained-resnet-bn.safetensors"))
    return model
