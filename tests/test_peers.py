"""Peer adapters (dattri): per-sample -> group aggregation, one sign convention, library workarounds."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ddm.baselines import peers
from ddm.cluster.groups import Groups
from ddm.exceptions import ConfigError

pytest.importorskip("dattri")

FAST = peers.PeerConfig(train_batch=64, hessian_batch=100, cg_iters=5, lissa_depth=20, lissa_batch=16, arnoldi_dim=20,
                        arnoldi_iters=30, arnoldi_samples=100, fastif_k=30, trak_dim=64, trak_checkpoints=2)


def test_group_scores_sum_members_and_transpose():
    s = torch.tensor([[1.0, 0.0], [2.0, 1.0], [4.0, -1.0], [8.0, 0.5]])  # [N=4, T=2]
    g = Groups(assignment=torch.tensor([1, 0, 1, 2]), labels=torch.tensor([0, 0, 1]))
    assert torch.equal(peers.group_scores(s, g), torch.tensor([[2.0, 5.0, 8.0], [1.0, -1.0, 0.5]]))
    with pytest.raises(ConfigError, match="cover"):
        peers.group_scores(s[:3], g)


def test_predicted_loss_rises_when_helpful_groups_are_removed():
    score = torch.tensor([[3.0, -1.0, 0.0]])  # group 0 helps the target, group 1 hurts it
    keep = torch.tensor([[1, 1, 1], [0, 1, 1], [1, 0, 1]], dtype=torch.bool)
    pred = peers.predicted_loss(score, keep)[:, 0]
    assert pred[1] > pred[0] > pred[2]  # removing the helper raises the loss, removing the hurter lowers it


@pytest.mark.parametrize("method", peers.PEERS)
def test_a_training_sample_supports_itself(method, digits, trained):
    """Sign convention: with a training sample as target, its own score is positive and in the top 10 %."""
    model, traj = trained
    rows = torch.tensor([0, 50, 120])
    s = peers.sample_scores(method, model, traj, digits.train, digits.train[rows], FAST)
    assert s.shape == (len(digits.train), 3)
    assert torch.isfinite(s).all()
    for t, r in enumerate(rows.tolist()):
        assert s[r, t] > 0, f"{method}: own score {s[r, t]:.3g} is not positive"
        assert (s[:, t] > s[r, t]).sum() < len(s) // 10, f"{method}: the sample ranks low for its own loss"


@pytest.mark.parametrize("method", ["tracin", "trak"])
def test_trajectory_peers_read_a_batch_norm_models_checkpoints(method, digits):
    """A trajectory holds parameters only; dattri loads each checkpoint as a whole state dict, so the adapter adds
    theta_tau's running statistics (a batch-norm model failed with missing keys before)."""
    import ddm
    from ddm.config import TrainConfig
    from ddm.train import train_model

    model = ddm.models.build("convnet", digits, width=8, depth=2, norm="batchnorm")
    traj = train_model(model, digits.train, TrainConfig(epochs=2, lr=0.1, batch_size=32))
    model.eval()
    s = peers.sample_scores(method, model, traj, digits.train, digits.train[[0, 50]], FAST)
    assert s.shape == (len(digits.train), 2) and torch.isfinite(s).all()
    assert (s[0, 0] > s[:, 0]).float().mean() > 0.5 and (s[50, 1] > s[:, 1]).float().mean() > 0.5  # self-support


def test_arnoldi_without_damping_gives_finite_scores(digits, trained):
    """dattri divides by the square root of negative eigenvalues at small damping; the adapter drops them."""
    model, traj = trained
    cfg = peers.PeerConfig(damping=0.0, arnoldi_dim=20, arnoldi_iters=30, arnoldi_samples=100)
    s = peers.sample_scores("arnoldi", model, traj, digits.train, digits.test[:2], cfg)
    assert torch.isfinite(s).all()


@pytest.mark.parametrize("method", peers.SELF_INFLUENCE)
def test_self_influence_is_one_positive_number_per_sample(method, digits, trained):
    model, traj = trained
    s = peers.self_influence(method, model, traj, digits.train, FAST)
    assert s.shape == (len(digits.train),)
    assert torch.isfinite(s).all() and (s >= -1e-6).float().mean() > 0.95


def test_fastif_scores_only_near_candidates(digits, trained):
    model, traj = trained
    s = peers.sample_scores("fastif", model, traj, digits.train, digits.test[:2], FAST)
    assert ((s != 0).sum(0) <= FAST.fastif_k).all()


def test_unknown_method_and_bad_settings_are_rejected(digits, trained):
    model, traj = trained
    with pytest.raises(ConfigError, match="unknown peer"):
        peers.sample_scores("nope", model, traj, digits.train, digits.test[:1])
    with pytest.raises(ConfigError, match="self-influence"):
        peers.self_influence("if-cg", model, traj, digits.train)
    with pytest.raises(ConfigError, match="positive"):
        peers.PeerConfig(cg_iters=0)


def _raw_explicit(monkeypatch, head, train):
    """dattri's explicit attributor on the last layer as it comes (no operator memo), for reference numbers."""
    with monkeypatch.context() as m:
        m.setattr(peers, "_explicit_operator", lambda a: None)
        return peers._inner_product("if-explicit", head, train, FAST)


def test_explicit_operator_gives_dattris_scores_without_graphs(monkeypatch, digits, trained):
    """if-explicit applies the transform's matrix, built once under grad mode: dattri's numbers, no graph."""
    model, traj = trained
    targets = digits.test[:4]
    fast = peers.sample_scores("if-explicit", model, traj, digits.train, targets, FAST)
    head, (train, tgt) = peers._head_view(model, digits.train, targets)
    raw = _raw_explicit(monkeypatch, head, train)
    with torch.enable_grad():
        ref = raw.attribute(peers._loader(train, FAST.train_batch), peers._loader(tgt, 4)).detach()
    assert len(digits.train) > 2 * FAST.train_batch  # several training batches
    assert torch.allclose(fast, ref, rtol=1e-3, atol=1e-5 * float(ref.abs().max()))
    assert not fast.requires_grad


def test_explicit_hessian_in_chunks_gives_dattris_scores_and_refuses_a_huge_head(monkeypatch, digits, trained):
    """The explicit Hessian summed over chunks of samples (bounded memory) is dattri's one-batch Hessian; a last
    layer whose Hessian would not fit is refused with the peers that do not need it."""
    model, traj = trained
    targets, sub = digits.test[:4], digits.train
    whole = peers.sample_scores("if-explicit", model, traj, sub, targets, FAST)
    head, (train, tgt) = peers._head_view(model, sub, targets)
    raw = _raw_explicit(monkeypatch, head, train)
    with torch.enable_grad():
        ref = raw.attribute(peers._loader(train, FAST.train_batch), peers._loader(tgt, 4)).detach()
    p = sum(t.numel() for t in head.parameters())
    monkeypatch.setattr(peers, "EXPLICIT_CHUNK_FLOATS", 4 * p * 10 * 17)  # chunks of 17 samples
    chunked = peers.sample_scores("if-explicit", model, traj, sub, targets, FAST)
    for got in (whole, chunked):
        assert torch.allclose(got, ref, rtol=1e-3, atol=1e-5 * float(ref.abs().max()))
    monkeypatch.setattr(peers, "EXPLICIT_MAX_BYTES", p * p * 4 - 1)
    with pytest.raises(ConfigError, match="if-cg, if-lissa or arnoldi"):
        peers.sample_scores("if-explicit", model, traj, sub, targets, FAST)


def test_explicit_self_influence_matches_dattri(monkeypatch, digits, trained):
    model, traj = trained
    sub = digits.train[torch.arange(150)]
    fast = peers.self_influence("if-explicit", model, traj, sub, FAST)
    head, (train,) = peers._head_view(model, sub)
    raw = _raw_explicit(monkeypatch, head, train)
    with torch.enable_grad():
        ref = torch.cat([raw.self_attribute(peers._loader(train[s], s.stop - s.start)).detach().flatten()
                         for s in peers._chunks(len(train), FAST.train_batch)])
    assert torch.allclose(fast, ref, rtol=1e-3, atol=1e-5 * float(ref.abs().max()))


def test_explicit_on_the_head_equals_dattris_last_layer_influence(digits, trained):
    """The head view (last layer fed with penultimate features) gives the numbers dattri computes on the whole
    network restricted to the last layer's parameters (layer_name), one Hessian batch."""
    from dattri.algorithm.influence_function import IFAttributorExplicit
    from dattri.task import AttributionTask

    model, traj = trained
    sub, targets = digits.train[torch.arange(120)], digits.test[:3]
    ours = peers.sample_scores("if-explicit", model, traj, sub, targets, FAST)
    task = AttributionTask(loss_func=peers._Task(model, 3).loss, model=model, checkpoints=peers._params(model))
    names = [n for n, _ in model.named_parameters()][-2:]
    a = IFAttributorExplicit(task, layer_name=names, regularization=FAST.damping)
    a.cache(peers._loader(sub, len(sub)))
    ref = a.attribute(peers._loader(sub, len(sub)), peers._loader(targets, 3)).detach()
    assert torch.allclose(ours, ref, rtol=1e-3, atol=1e-5 * float(ref.abs().max()))


def test_head_view_keeps_the_logits(digits, trained):
    model, _ = trained
    head, (view,) = peers._head_view(model, digits.test[:10])
    with torch.no_grad():
        assert torch.allclose(head(view.x), model(digits.test.x[:10]), atol=1e-5)


def test_hessian_subset_is_seeded_and_all_when_small(digits):
    cfg = peers.PeerConfig(hessian_samples=100)
    a, b = peers._hessian_subset(digits.train, cfg), peers._hessian_subset(digits.train, cfg)
    assert len(a) == 100 and torch.equal(a.index, b.index) and len(set(a.index.tolist())) == 100
    assert peers._hessian_subset(digits.train, peers.PeerConfig()) is digits.train  # 1437 <= 2048


def test_tracin_is_the_exact_sum_of_gradient_products_unless_a_projection_is_asked(digits, trained):
    """dattri's TracIn projects gradients to 512 random dimensions by default; ddm's peer is the exact inner product
    sum_t lr * g_train(theta_t) . g_target(theta_t), computed here by hand, and a projection only when asked (without
    writing it into dattri's module-wide defaults)."""
    import dattri.algorithm.tracin as dattri_tracin

    model, traj = trained
    defaults = dict(dattri_tracin.DEFAULT_PROJECTOR_KWARGS)
    train, targets = digits.train[:40], digits.test[:3]
    s = peers.sample_scores("tracin", model, traj, train, targets, FAST)

    def grads(params, x, y):
        def loss(p, xi, yi):
            out = torch.func.functional_call(model, p, (xi.unsqueeze(0),))
            return torch.nn.functional.cross_entropy(out, yi.unsqueeze(0))
        g = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(params, x, y)
        return torch.cat([v.flatten(1) for v in g.values()], 1)

    want = torch.zeros(len(train), len(targets))
    for i in range(1, len(traj)):
        p = {k: v for k, v in traj.checkpoint(i).items() if k in dict(model.named_parameters())}
        want += traj.lr * grads(p, train.x, train.y) @ grads(p, targets.x, targets.y).T
    assert torch.allclose(s, want, rtol=1e-4, atol=1e-5 * want.abs().max())
    projected = peers.sample_scores("tracin", model, traj, train, targets, dataclasses.replace(FAST, tracin_dim=64))
    assert not torch.allclose(projected, want, rtol=1e-2)  # a projection is an approximation
    assert torch.corrcoef(torch.stack([projected.flatten(), want.flatten()]))[0, 1] > 0.5
    assert dattri_tracin.DEFAULT_PROJECTOR_KWARGS == defaults
    with pytest.raises(ConfigError, match="tracin_dim"):
        peers.PeerConfig(tracin_dim=-1)


@pytest.mark.parametrize("method", ["tracin", "trak"])
def test_the_fast_per_sample_gradients_are_dattris(method, digits, trained):
    """The adapter replaces dattri's per-sample gradient functions by faster ones: the same numbers, same order."""
    model, traj = trained
    a = peers._trajectory_attributor(method, model, traj, digits.train, FAST)
    last = len(a.task.get_checkpoints()) - 1  # dattri loads the checkpoint into the (shared) model: end at theta_tau
    flat, _ = a.task.get_param(ckpt_idx=last)
    batch = (digits.train.x[:16], digits.train.y[:16])
    theirs = a.task.get_grad_loss_func(in_dims=(None, 0))(flat, batch)
    for ours in (a.grad_loss_func, a.grad_target_func, a.grad_target_func):  # the last one memoised
        assert torch.allclose(ours(flat, batch), theirs, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", ["tracin", "trak"])
def test_a_frozen_backbone_is_left_out_as_dattri_leaves_it(method, digits, trained):
    """Linear probing (every layer but the head frozen, requires_grad=False): dattri flattens only the trainable
    parameters, and the adapter's gradients must be of the same ones (they had been of all, a size mismatch inside
    ``ddm check``'s TracIn)."""
    import copy

    from ddm.distill.scope import last_linear_name

    model, traj = trained
    frozen = copy.deepcopy(model)
    head = last_linear_name(frozen)
    for name, p in frozen.named_parameters():
        p.requires_grad_(name.startswith(head + "."))
    a = peers._trajectory_attributor(method, frozen, traj, digits.train, FAST)
    last = len(a.task.get_checkpoints()) - 1
    flat, _ = a.task.get_param(ckpt_idx=last)
    assert flat.numel() == sum(p.numel() for p in frozen.parameters() if p.requires_grad)
    batch = (digits.train.x[:16], digits.train.y[:16])
    theirs = a.task.get_grad_loss_func(in_dims=(None, 0))(flat, batch)
    assert torch.allclose(a.grad_loss_func(flat, batch), theirs, rtol=1e-5, atol=1e-7)
    if method == "tracin":  # the exact sum over checkpoints of the head's gradient products
        train, targets = digits.train[:40], digits.test[:3]
        s = peers.sample_scores("tracin", frozen, traj, train, targets, FAST)
        names = [f"{head}.weight", f"{head}.bias"]

        def grads(i, x, y):
            p = {k: v for k, v in traj.checkpoint(i).items() if k in dict(frozen.named_parameters())}

            def loss(h, xi, yi):
                out = torch.func.functional_call(frozen, {**p, **h}, (xi.unsqueeze(0),))
                return torch.nn.functional.cross_entropy(out, yi.unsqueeze(0))
            g = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))({n: p[n] for n in names}, x, y)
            return torch.cat([g[n].flatten(1) for n in names], 1)

        want = sum(traj.lr * grads(i, train.x, train.y) @ grads(i, targets.x, targets.y).T for i in range(1, len(traj)))
        assert torch.allclose(s, want, rtol=1e-4, atol=1e-5 * want.abs().max())


@pytest.mark.parametrize("method", ["tracin", "trak"])
def test_trajectory_peers_count_their_passes_over_the_training_data_on_one_bar(method, digits, trained, monkeypatch):
    """dattri's own bars are silenced (one per batch); TracIn's and TRAK's passes over the training data, one per
    checkpoint, advance one ddm bar instead, so a long exact TracIn shows how far it is."""
    model, traj = trained
    bars = []

    class Bar:
        def __init__(self, total, desc):
            self.total, self.desc, self.n, self.closed = total, desc, 0, False
            bars.append(self)

        def update(self, n):
            self.n += n

        def close(self):
            self.closed = True

    monkeypatch.setattr(peers, "bar", Bar)
    train, batches = digits.train[:150], 3  # FAST.train_batch 64
    checkpoints = len(traj) - 1 if method == "tracin" else FAST.trak_checkpoints
    peers.sample_scores(method, model, traj, train, digits.test[:2], FAST)
    peers.self_influence(method, model, traj, train, FAST)
    assert [b.total for b in bars] == [checkpoints * batches] * 2
    assert all(b.closed and b.n == b.total for b in bars) and method in bars[0].desc
    assert not peers._COUNTED  # nothing left to count once the peer is done


def test_ekfac_covers_every_linear_layer_and_takes_its_damping(digits):
    """EK-FAC reads every nn.Linear (an MLP's whole network); a set damping is dattri's own, None adds a tenth of
    each layer's mean eigenvalue (kronfluence's heuristic), and both give dattri's scores for that damping."""
    import ddm
    from ddm.config import TrainConfig
    from ddm.train import train_model

    torch.manual_seed(0)
    model = ddm.models.build("mlp", digits, width=16, depth=2)
    train_model(model, digits.train, TrainConfig(epochs=2, lr=0.1, batch_size=32))
    model.eval()
    targets = digits.test[:4]
    fixed = peers.sample_scores("ekfac", model, None, digits.train, targets,
                                dataclasses.replace(FAST, ekfac_damping=0.01))
    inf, _, _, task_mod = peers._dattri()
    t = peers._Task(model, digits.train.x.dim() - 1)
    task = task_mod.AttributionTask(loss_func=t.loss, model=model, checkpoints=peers._params(model))
    direct = inf.IFAttributorEKFAC(task, damping=0.01)
    assert len(direct.module_name) == 3  # the MLP's three Linear layers, not only its head
    with torch.enable_grad():
        direct.cache(peers._loader(digits.train, FAST.hessian_batch))
    with torch.no_grad():
        want = direct.attribute(peers._loader(digits.train, FAST.train_batch), peers._loader(targets, 4))
    torch.testing.assert_close(fixed, want, rtol=1e-4, atol=1e-6)
    # the heuristic: the same as dattri's with each layer's eigenvalues raised by a tenth of their mean
    direct.cached_lambdas = {k: v + 0.1 * v.mean() for k, v in direct.cached_lambdas.items()}
    direct.damping = 0.0
    with torch.no_grad():
        want = direct.attribute(peers._loader(digits.train, FAST.train_batch), peers._loader(targets, 4))
    heuristic = peers.sample_scores("ekfac", model, None, digits.train, targets,
                                    dataclasses.replace(FAST, ekfac_damping=None))
    torch.testing.assert_close(heuristic, want, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(heuristic, fixed)
    # the true Fisher (labels sampled from the model, seeded): other factors, the same scores twice
    true = dataclasses.replace(FAST, ekfac_fisher="true", ekfac_damping=None)
    a, b = (peers.sample_scores("ekfac", model, None, digits.train, targets, true) for _ in range(2))
    assert torch.isfinite(a).all() and torch.equal(a, b) and not torch.allclose(a, heuristic)
    assert (a * heuristic).sum() > 0  # still the same sign of influence overall
    with pytest.raises(ConfigError, match="ekfac_damping"):
        peers.PeerConfig(ekfac_damping=-1.0)
    with pytest.raises(ConfigError, match="ekfac_fisher"):
        peers.PeerConfig(ekfac_fisher="sampled")


def test_kronfluence_reads_every_linear_and_conv_layer_on_a_copy_and_takes_its_damping(digits, monkeypatch):
    """kronfluence's EK-FAC tracks a ConvNet's convolutions as well as its head (dattri's ``ekfac`` sees the head
    only), works on a copy (the model handed in keeps its own layers), gives the same scores twice (its sampled
    Fisher labels are seeded) and reads ``kronfluence_damping``."""
    import kronfluence.analyzer
    from kronfluence.module.utils import get_tracked_module_names

    import ddm
    from ddm.config import TrainConfig
    from ddm.train import train_model

    torch.manual_seed(0)
    model = ddm.models.build("convnet", digits, width=8, depth=2)
    train_model(model, digits.train, TrainConfig(epochs=2, lr=0.1, batch_size=32))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tracked: list[list[str]] = []
    prepare = kronfluence.analyzer.prepare_model

    def recording(net, task):
        out = prepare(net, task)
        tracked.append(get_tracked_module_names(out))
        return out

    monkeypatch.setattr(kronfluence.analyzer, "prepare_model", recording)
    train, targets = digits.train, digits.test[:4]
    a = peers.sample_scores("kronfluence", model, None, train, targets, FAST)
    b = peers.sample_scores("kronfluence", model, None, train, targets, FAST)
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 and set(convs) <= set(tracked[0]) and peers.head_name(model) in tracked[0]
    assert a.shape == (len(train), 4) and torch.isfinite(a).all() and torch.equal(a, b)
    assert not any(type(m).__module__.startswith("kronfluence") for m in model.modules())  # the original unwrapped
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    fixed = peers.sample_scores("kronfluence", model, None, train, targets,
                                dataclasses.replace(FAST, kronfluence_damping=10.0))
    assert not torch.allclose(fixed, a) and (fixed * a).sum() > 0  # another damping, the same sign overall
    with pytest.raises(ConfigError, match="kronfluence_damping"):
        peers.PeerConfig(kronfluence_damping=-1.0)


def test_kronfluence_missing_names_the_install(monkeypatch, digits):
    import builtins

    real = builtins.__import__

    def no_kronfluence(name, *args, **kwargs):
        if name.startswith("kronfluence"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_kronfluence)
    monkeypatch.setattr("importlib.import_module", lambda name, *a: no_kronfluence(name))
    from ddm.exceptions import MissingDependencyError

    with pytest.raises(MissingDependencyError, match=r"ddm\[kronfluence\]"):
        peers.sample_scores("kronfluence", torch.nn.Linear(64, 10), None, digits.train[:10], digits.test[:2], FAST)


def test_kronfluence_takes_a_vit_whose_attention_holds_a_linear_subclass(digits):
    """nn.MultiheadAttention's out_proj is a subclass of nn.Linear that the attention never calls: kronfluence failed
    with a KeyError on it; the adapter tracks the layers of exactly its types, so a ViT is scored."""
    import ddm
    from ddm.config import TrainConfig
    from ddm.train import train_model

    torch.manual_seed(0)
    model = ddm.models.build("vit", digits)
    assert any(type(m) is not torch.nn.Linear and isinstance(m, torch.nn.Linear) for m in model.modules())
    train_model(model, digits.train, TrainConfig(epochs=1, lr=0.01, batch_size=32, optimizer="adam"))
    model.eval()
    s = peers.sample_scores("kronfluence", model, None, digits.train, digits.test[:3], FAST)
    assert s.shape == (len(digits.train), 3) and torch.isfinite(s).all() and s.abs().sum() > 0
