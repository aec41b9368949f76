"""The block recipe (ddm.distill.block): synsets matched over the last block and the head, and the Newton step over
that scope, end to end on the tiny preset and against the step computed by hand."""

import pytest
import torch
from torch.func import functional_call, jacrev

import ddm
from ddm import presets
from ddm.distill.block import block_logits
from ddm.distill.scope import flatten, scope_names
from ddm.exceptions import ConfigError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = presets.tiny().with_overrides([*presets.recipe("block"), "distill.block_steps=20", "distill.block_rank=40"])
    data = ddm.data.load(cfg.data)
    dm = ddm.DistilledDatamodel(tmp_path_factory.mktemp("ws"), cfg)
    dm.fit(ddm.models.build(cfg.model, data), data.train)
    return cfg, data, dm


def test_block_synsets_store_a_curvature_per_checkpoint_and_load_back(run):
    cfg, data, dm = run
    syn = dm.synset
    names = scope_names(dm.model, "block")
    size = sum(dm.model.get_parameter(n).numel() for n in names)
    assert len(syn.block) == 1 + len(syn.checkpoints) >= 2
    assert all(inv.eigenvectors.shape == (size, 40) and inv.damping > 0 for inv in syn.block)
    assert syn.kind == "head" and torch.isfinite(syn.images).all() and (syn.image_weights() > 0).all()
    # the matching went on after the head matcher's steps, and lowered its loss
    assert syn.losses[-1] < syn.losses[-20]
    # the health check reads the block step's quality, measured against the real block step at theta_tau
    assert syn.block_quality.shape == (syn.num_groups, 3)
    assert ((syn.block_quality[:, 0] > -1.0001) & (syn.block_quality[:, 0] < 1.0001)).all()
    health = dm.ws.stage_info("synset")["health"]
    assert "last block" in health["reference"]
    assert health["cosine"] == [round(float(c), 4) for c in syn.block_quality[:, 0]]
    back = ddm.DistilledDatamodel(dm.ws.root).load(dm.model).synset
    torch.testing.assert_close(back.block_quality, syn.block_quality)
    assert len(back.block) == len(syn.block)
    torch.testing.assert_close(back.block[0].eigenvectors, syn.block[0].eigenvectors)
    attr = dm.attribute(data.test[:4], "dist1")
    assert attr.weights.shape[:2] == (4, syn.num_groups) and torch.isfinite(attr.weights).all()


def test_block_logits_are_the_step_computed_by_hand(run):
    cfg, data, dm = run
    syn, model = dm.synset, dm.model
    names = scope_names(model, "block")
    params = {k: v.detach() for k, v in model.named_parameters()}
    x = data.test.x[:5]
    deleted = torch.zeros(2, syn.num_groups, dtype=torch.bool)
    deleted[0, 0] = deleted[1, 1] = deleted[1, 2] = True
    got = block_logits(model, params, syn, deleted, x, dm.trajectory)
    members = [params] + [{k: dm.trajectory.params[c.index][k].float() for k in params} for c in syn.checkpoints]
    sx, st, sg = syn.flat()
    w = syn.image_weights().reshape(-1)
    shift = torch.zeros(len(deleted), len(x), syn.num_classes, dtype=torch.float64)
    for p, inv in zip(members, syn.block, strict=True):
        def f(q, xs, p=p):
            return functional_call(model, {**p, **q}, (xs,))

        free = {n: p[n] for n in names}
        # each group's gradient by autograd on its weighted synthetic images
        g = torch.zeros(syn.num_groups, inv.eigenvectors.shape[0], dtype=torch.float64)
        for i in range(len(sx)):
            jac = jacrev(lambda q, i=i: -(st[i] * f(q, sx[i:i + 1])[0].log_softmax(-1)).sum())(free)
            g[sg[i]] += w[i].double() * flatten(jac, names).double()
        U = inv(g) / float(syn.num_train)  # [K, P]
        J = jacrev(lambda q: f(q, x))(free)  # {name: [N, C, *shape]}
        Jf = torch.cat([J[n].reshape(len(x), syn.num_classes, -1) for n in names], -1).double()
        shift += torch.einsum("pk,ncq,kq->pnc", deleted.double(), Jf, U) / len(members)
    with torch.no_grad():
        z = model(x)
    torch.testing.assert_close(got, (z[None].double() + shift).float(), rtol=1e-4, atol=1e-5)


def test_the_block_recipe_refuses_what_it_cannot_do(run):
    cfg, data, dm = run
    from ddm.emulate.newton import newton_outputs

    with pytest.raises(ConfigError, match="readout"):
        newton_outputs(dm.model, dm.trajectory.final, dm.synset, torch.zeros(1, dm.synset.num_groups, dtype=torch.bool),
                       data.test.x[:2], lambda z: z, dm.trajectory)
    with pytest.raises(ConfigError, match="block_rank"):
        presets.tiny().with_overrides(["distill.matching=block", "distill.block_rank=0"])


def test_block_members_read_each_checkpoint_with_its_own_batch_norm_statistics(digits, tmp_path):
    from types import SimpleNamespace

    from ddm.config import TrainConfig
    from ddm.distill.block import _members
    from ddm.train.loop import train_model

    model = ddm.models.build("convnet", digits, width=8, depth=2, norm="batchnorm")
    traj = train_model(model, digits.train, TrainConfig(epochs=3, lr=0.1, batch_size=32), tmp_path)
    synset = SimpleNamespace(checkpoints=[SimpleNamespace(index=1), SimpleNamespace(index=2)])
    members = _members(model, traj.final, traj, synset)
    key = "features.1.running_var"
    assert key not in members[0]  # theta_tau: the model's own statistics apply
    for m, i in zip(members[1:], (1, 2), strict=True):
        assert torch.equal(m[key], traj.buffers[i][key]) and not torch.equal(m[key], model.features[1].running_var)
        assert torch.equal(m["features.0.weight"], traj.params[i]["features.0.weight"])
    x = digits.test.x[:8]
    assert not torch.allclose(functional_call(model.eval(), members[1], (x,)),
                              functional_call(model, traj.params[1], (x,)))
