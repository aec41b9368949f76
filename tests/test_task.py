"""A custom training loss (ddm.Task / ddm.Loss) through training, head distillation, attribution and unlearning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ddm
from ddm import presets
from ddm.exceptions import ConfigError
from ddm.task import CrossEntropy, Loss


def _ce(z, y):
    return F.cross_entropy(z, y, reduction="none")


def test_generic_derivatives_match_cross_entropys_closed_forms():
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randint(0, 5, (6,), generator=g)
    ce, generic = CrossEntropy(), Loss(_ce, "ce-generic")
    assert torch.allclose(generic.loss(z, y), ce.loss(z, y))
    assert torch.allclose(generic.output_gradient(z, y), ce.output_gradient(z, y), atol=1e-10)
    assert torch.allclose(generic.output_curvature(z, y), ce.output_curvature(z, y), atol=1e-10)
    # the tempered cross-entropy the synsets may carry (distill.head_temperature): closed forms against torch.func
    from ddm.task import TemperedCrossEntropy

    hot, generic_hot = TemperedCrossEntropy(2.5), Loss(lambda z, y: F.cross_entropy(z / 2.5, y, reduction="none"), "t")
    assert torch.allclose(hot.output_gradient(z, y), generic_hot.output_gradient(z, y), atol=1e-10)
    assert torch.allclose(hot.output_curvature(z, y), generic_hot.output_curvature(z, y), atol=1e-10)
    assert torch.allclose(TemperedCrossEntropy(1.0).output_gradient(z, y), ce.output_gradient(z, y))
    with pytest.raises(ConfigError, match="positive"):
        TemperedCrossEntropy(0.0)
    # a non-convex loss's curvature is projected to positive semi-definite
    bad = Loss(lambda z, y: -(z ** 2).sum(1), "concave")
    assert torch.linalg.eigvalsh(bad.output_curvature(z, y)).min() >= -1e-12


def test_a_loss_wrapping_cross_entropy_reproduces_the_default(tmp_path):
    cfg = presets.tiny().with_overrides(["distill.iterations=20"])
    data = ddm.data.load(cfg.data)
    a = ddm.DistilledDatamodel(tmp_path / "a", cfg).fit(ddm.models.build(cfg.model, data), data.train)
    b = ddm.DistilledDatamodel(tmp_path / "b", cfg, task=Loss(_ce, "ce-generic")).fit(
        ddm.models.build(cfg.model, data), data.train)
    assert a.keys["train"] != b.keys["train"]  # the task keys the workspace
    for k, v in a.trajectory.final.items():
        assert torch.allclose(v, b.trajectory.final[k], atol=1e-6)
    # the generic loss's float rounding grows over the matching's steps (at most 0.02 on images of scale 1-2 here);
    # what the images are for, the attribution, agrees to 1e-3
    assert torch.allclose(a.synset.images, b.synset.images, atol=0.05)
    ta, tb = a.attribute(data.test[:3], "dist2"), b.attribute(data.test[:3], "dist2")
    assert torch.allclose(ta.weights, tb.weights, atol=1e-3)


def test_label_smoothing_trains_distills_attributes_and_unlearns(tmp_path):
    cfg = presets.tiny().with_overrides(["distill.iterations=20"])
    data = ddm.data.load(cfg.data)
    task = Loss(lambda z, y: F.cross_entropy(z, y, label_smoothing=0.2, reduction="none"), "ce-smooth-0.2")
    cfg = cfg.with_overrides(["distill.head_loss=task"])  # the synsets carry the smoothed loss (not the default)
    dm = ddm.DistilledDatamodel(tmp_path, cfg, task=task).fit(ddm.models.build(cfg.model, data), data.train)
    assert dm.ws.require("train")["task"] == "ce-smooth-0.2"
    # the synset reproduces the smoothed loss's removal steps (health is measured with the same task)
    h = dm.ws.require("synset")["health"]
    assert h["checked"] and h["cosine_min"] > 0.5
    # label smoothing keeps the logits small: the trained model is less confident than with plain CE
    plain = ddm.DistilledDatamodel(tmp_path / "plain", cfg).fit(ddm.models.build(cfg.model, data), data.train,
                                                                 until="train")
    with torch.no_grad():
        assert dm.model(data.test.x).abs().max() < plain.model(data.test.x).abs().max()
    attr = dm.attribute(data.test[:4], "dist2")
    assert torch.isfinite(attr.weights).all()
    assert torch.isfinite(torch.cat([p.flatten() for p in dm.unlearn([0, 1]).parameters()])).all()
    with pytest.raises(ConfigError, match="ce-smooth-0.2"):
        ddm.DistilledDatamodel(tmp_path).load()  # the task must be given again
    again = ddm.DistilledDatamodel(tmp_path, task=task).load()
    assert again.synset.task is task
    with pytest.raises(ConfigError, match="Newton"):
        again.config = again.config.with_overrides(["emulate.method=finetune"])
        again.attribute(data.test[:2], "dist2", name="ft")
    with pytest.raises(ConfigError, match="one loss per sample"):
        Loss(lambda z, y: F.cross_entropy(z, y), "mean").loss(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))


def test_the_synsets_can_carry_cross_entropy_for_a_model_trained_with_another_loss(tmp_path):
    cfg = presets.tiny().with_overrides(["distill.iterations=20"])
    data = ddm.data.load(cfg.data)
    task = Loss(lambda z, y: F.cross_entropy(z, y, label_smoothing=0.2, reduction="none"), "ce-smooth-0.2")
    own_cfg = cfg.with_overrides(["distill.head_loss=task"])  # the training loss, as before 0.17
    own = ddm.DistilledDatamodel(tmp_path / "own", own_cfg, task=task).fit(ddm.models.build(cfg.model, data),
                                                                           data.train)
    ce_cfg = cfg  # cross-entropy, the default
    ce = ddm.DistilledDatamodel(tmp_path / "ce", ce_cfg, task=task).fit(ddm.models.build(cfg.model, data), data.train)
    assert own.synset.task is task and ce.synset.task is None
    assert ce.keys["train"] == own.keys["train"]  # trained with the smoothed loss all the same
    assert all(torch.equal(v, ce.trajectory.final[k]) for k, v in own.trajectory.final.items())
    assert ce.keys["synset"] != own.keys["synset"] and not torch.equal(ce.synset.images, own.synset.images)
    # the synsets carry cross-entropy's gradients: a plain cross-entropy statistic of the same model says so
    assert ce.ws.require("synset")["health"]["cosine_min"] > 0.5
    assert torch.isfinite(ce.attribute(data.test[:3], "dist2").weights).all()
    assert ddm.DistilledDatamodel(tmp_path / "ce", task=task).load().synset.task is None  # reopened
    # a workspace whose synsets carry the task's loss (stored before 0.17, or set) reopens with that loss
    assert ddm.DistilledDatamodel(tmp_path / "own", task=task).load().synset.task is task
    assert "head_loss" not in own.ws.require("synset")["config"]  # as stored before the option existed
    # a model trained with cross-entropy: the option changes nothing, not even the key
    a = ddm.DistilledDatamodel(tmp_path / "a", cfg).fit(ddm.models.build(cfg.model, data), data.train)
    b = ddm.DistilledDatamodel(tmp_path / "b", own_cfg).fit(ddm.models.build(cfg.model, data), data.train)
    assert torch.equal(a.synset.images, b.synset.images) and a.keys["synset"] == b.keys["synset"]
    with pytest.raises(ConfigError, match="distill.head_loss"):
        cfg.with_overrides(["distill.head_loss=smoothed"])
