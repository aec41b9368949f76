"""The transfer probe's networks for ``ddm run --model pretrained_models:NAME`` (this folder on PYTHONPATH): the demo
ConvNet with the weights ``make_data.py`` pretrained on Fashion-MNIST classes 0-4 (``runs/transfer/pretrained.
safetensors`` under the repository root, or ``$DDM_PRETRAINED``), as a user's factory that loads pretrained weights
would. ``convnet``: every layer fine-tuned; ``convnet_frozen``: the pretrained features frozen, only the last layer
trained (linear probing)."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

import ddm
from ddm.workspace import load_tensors

WEIGHTS = Path(os.environ.get("DDM_PRETRAINED",
                              Path(__file__).resolve().parents[3] / "runs/transfer/pretrained.safetensors"))


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
