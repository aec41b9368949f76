import pytest
import torch
from torch.func import functional_call, vmap

import ddm
from ddm.models import MODELS


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_every_model_runs_under_functional_call_and_vmap(name, shape):
    model = ddm.models.build(name, image_shape=shape, num_classes=5, width=8, depth=2)
    params = {k: v.detach() for k, v in model.named_parameters()}
    stacked = {k: torch.stack([v, v + 0.01 * torch.randn_like(v), v * 0.5]) for k, v in params.items()}
    x = torch.randn(4, *shape)
    out = vmap(lambda p: functional_call(model, p, (x,)))(stacked)
    assert out.shape == (3, 4, 5)
    for i in range(3):
        one = functional_call(model, {k: v[i] for k, v in stacked.items()}, (x,))
        assert torch.allclose(out[i], one, atol=1e-5)


def test_build_is_seeded_and_carries_its_spec(digits):
    a = ddm.models.build("convnet", digits, width=8, depth=2, seed=3)
    b = ddm.models.from_spec(a.ddm_spec)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(p, q), n
    c = ddm.models.build("convnet", digits, width=8, depth=2, seed=4)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_models_have_no_running_statistics():
    for name in MODELS.names():
        model = ddm.models.build(name, image_shape=(1, 8, 8), num_classes=3)
        assert not list(model.buffers()), f"{name} has buffers; emulation under vmap needs pure functions"


@pytest.mark.parametrize("shape", [(5, 3, 28, 28), (2, 16, 7, 7), (3, 4, 9, 6)])
def test_the_convnet_pooling_is_average_pooling(shape):
    from ddm.models.convnet import AvgPool2x2

    x = (10 * torch.randn(shape, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    ours, ref = AvgPool2x2()(x), torch.nn.functional.avg_pool2d(x, 2)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(torch.autograd.grad(ours, x, g)[0], torch.autograd.grad(ref, x, g)[0], rtol=0, atol=1e-6)


def test_the_presets_convnet_keeps_its_last_instance_norm_on_maps_of_4x4_or_more(digits, caplog):
    from types import SimpleNamespace

    from ddm.models.checks import warn_small_norm_maps
    from ddm.presets import convnet_depth_for, demo, model_for

    assert [convnet_depth_for(s, 3) for s in ((8, 8), (12, 12), (28, 28), (32, 32), (4, 4))] == [2, 2, 3, 3, 1]
    assert convnet_depth_for((32, 32), 2) == 2  # never more blocks than asked for
    assert demo(digits).model.depth == 2 and demo("digits").model.depth == 3  # only where the image size is known
    mnist_like = SimpleNamespace(image_shape=(1, 28, 28))
    assert model_for(mnist_like, demo().model).depth == 3
    assert model_for(digits, demo().model.__class__(norm="groupnorm", depth=3)).depth == 3  # not instance norm
    deep = ddm.models.build(demo("digits").model, digits)  # depth 3 on 8x8: the last norm sees 2x2 maps
    shallow = ddm.models.build(demo(digits).model, digits)
    assert (deep.smallest_norm_map, shallow.smallest_norm_map) == (4, 16)
    with caplog.at_level("WARNING"):
        warn_small_norm_maps(shallow)
        assert not caplog.records
        warn_small_norm_maps(deep)
    assert "instance-normalises each channel over 4 values" in caplog.text
