"""The paper's architectures (ResNet-18 layout, AlexNet, a small ViT) and a BatchNorm model through
fit -> attribute -> unlearn, on 32x32 RGB inputs (CIFAR's shape)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ddm
from ddm import presets
from ddm.exceptions import ConfigError


@pytest.fixture(scope="module")
def rgb32():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(90) % 3
    x = torch.rand(90, 3, 32, 32, generator=g) * 0.5
    x[torch.arange(90), y] += 0.5  # the class is the brighter channel: learnable in a few epochs
    return ddm.data.from_arrays(x, y, test_fraction=0.2)


def _cfg(*extra):
    return presets.tiny().with_overrides(["cluster.per_class=2", "train.epochs=3", "train.batch_size=16",
                                          "distill.iterations=10", "emulate.num_perturbations=60", *extra])


@pytest.mark.parametrize("name", ["resnet", "resnet-batchnorm", "alexnet", "vit"])
def test_architecture_fits_attributes_and_unlearns_on_rgb32(name, rgb32, tmp_path):
    norm = ["model.norm=batchnorm"] if name.endswith("-batchnorm") else []
    cfg = _cfg(f"model.name={name.split('-')[0]}", "model.width=8", "model.depth=1", *norm)
    if norm:
        assert any(isinstance(m, nn.BatchNorm2d) for m in ddm.models.build(cfg.model, rgb32).modules())
    dm = ddm.DistilledDatamodel(tmp_path, cfg).fit(ddm.models.build(cfg.model, rgb32), rgb32.train)
    assert dm.synset.images.shape[2:] == (3, 32, 32)
    attr = dm.attribute(rgb32.test[:4], "dist2")
    assert attr.weights.shape == (4, 6, 1) and torch.isfinite(attr.weights).all()
    un = dm.unlearn([0, 1])
    assert all(torch.isfinite(p).all() for p in un.parameters())
    assert dm.ws.require("synset")["health"]["checked"]


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten())
        self.classifier = nn.Linear(8, 3)

    def forward(self, x):
        return self.classifier(self.body(x))


def test_batchnorm_is_handled_by_the_head_recipe_and_refused_by_fine_tuning(rgb32, tmp_path):
    torch.manual_seed(0)
    model = BNNet()
    dm = ddm.DistilledDatamodel(tmp_path / "head", _cfg()).fit(model, rgb32.train)
    attr = dm.attribute(rgb32.test[:4], "dist2")
    assert torch.isfinite(attr.weights).all() and attr.weights.abs().max() < 1e3  # no 1e18 scores
    # the Newton emulation moves only the last layer: the network below it is theta_tau's, BatchNorm in eval mode
    with torch.no_grad():
        model.eval()
        logits = model(rgb32.test.x[:4])
    nothing = torch.zeros(1, dm.synset.num_groups, dtype=torch.bool)
    from ddm.emulate.newton import newton_logits

    same = newton_logits(model, dm.trajectory.final, dm.synset, nothing, rgb32.test.x[:4], trajectory=dm.trajectory)[0]
    assert torch.allclose(same, logits, atol=1e-4)
    un = dm.unlearn([0])
    assert all(torch.isfinite(p).all() for p in un.parameters())
    with pytest.raises(ConfigError, match="GroupNorm"):
        ddm.DistilledDatamodel(tmp_path / "ft", _cfg(*presets.recipe("local-free"))).fit(BNNet(), rgb32.train)


def test_an_mlp_without_hidden_layers_is_softmax_regression_on_the_pixels(rgb32, tmp_path):
    from ddm.distill.head import Head

    cfg = _cfg("model.name=mlp", "model.depth=0", "train.lr=0.001")
    model = ddm.models.build(cfg.model, rgb32)
    assert [type(m) for m in model.net] == [nn.Flatten, nn.Linear]
    x = rgb32.test.x[:5]
    torch.testing.assert_close(Head.of(model).features(x)[:, :-1], x.flatten(1))
    dm = ddm.DistilledDatamodel(tmp_path, cfg).fit(model, rgb32.train)
    attr = dm.attribute(rgb32.test[:4], "dist2")
    assert torch.isfinite(attr.weights).all() and attr.weights.abs().sum() > 0
    assert all(torch.isfinite(p).all() for p in dm.unlearn([0, 1]).parameters())
    with pytest.raises(ConfigError, match="only the mlp takes 0"):
        _cfg("model.name=convnet", "model.depth=0")


def test_a_model_that_fits_its_data_with_certainty_is_refused_with_the_reason(rgb32, tmp_path):
    """At lr 0.1 this softmax regression separates its 72 images with a training loss of 0 in float32: its last
    layer's curvature underflows (about 1e-28) and some groups' gradients are exactly 0. The matching used to
    diverge with advice to lower its learning rates; now the error says what is wrong with the model."""
    from ddm.exceptions import NumericalError

    cfg = _cfg("model.name=mlp", "model.depth=0", "train.lr=0.1")
    with pytest.raises(NumericalError, match="fits its training data with certainty.*Train it less"):
        ddm.DistilledDatamodel(tmp_path, cfg).fit(ddm.models.build(cfg.model, rgb32), rgb32.train)
    assert not (tmp_path / "synset" / "synset.safetensors").exists()
