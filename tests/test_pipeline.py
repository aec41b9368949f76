"""End to end on a small digits subset with the ``tiny`` preset."""

import dataclasses
import math

import pytest
import torch

import ddm
from ddm import presets
from ddm.exceptions import ConfigError, ConfigMismatchError
from ddm.train import TrajectoryRecorder
from ddm.workspace import load_tensors, save_tensors


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = presets.tiny()
    data = ddm.data.load(cfg.data)
    ws = tmp_path_factory.mktemp("ws")
    dm = ddm.DistilledDatamodel(ws, cfg)
    dm.fit(ddm.models.build(cfg.model, data), data.train)
    # the class-level synset is built only when asked for (hierarchical=false by default)
    assert dm.class_synset is None and dm.ws.stage_info("synset-class") is None
    with pytest.raises(ddm.exceptions.MissingArtifactError, match="fit_classes"):
        dm.attribute(data.test[:2], "dist2", hierarchical=True)
    synset_info = dict(dm.ws.stage_info("synset"))
    dm.fit_classes(data.train)
    assert dm.ws.stage_info("synset") == synset_info  # the group stages are reused, not redone
    return cfg, data, ws, dm


def test_fit_writes_every_artifact(run):
    cfg, data, ws, dm = run
    assert dm.config.hierarchical and ddm.DistilledDatamodel(ws).load().class_synset is not None
    for stage in ("train", "groups", "synset", "groups-class", "synset-class"):
        assert dm.ws.stage_info(stage)["complete"], stage
    assert (ws / "train" / "trajectory" / "theta_0004.safetensors").exists()
    # the default recipe: 4 images per group, or 16 where the matching stopped short of its tolerance (ipc_grow)
    for stage, syn, k in (("synset", dm.synset, 20), ("synset-class", dm.class_synset, 10)):
        grown = dm.ws.stage_info(stage).get("grown")
        assert syn.images.shape == (k, grown["kept"] if grown else 4, 1, 8, 8) and syn.kind == "head"
        assert grown is None or (grown["from"], grown["to"]) == (4, 16)
    assert dm.ws.stage_info("synset")["health"]["checked"]
    assert len(dm.synset.losses) == cfg.distill.iterations


def test_stages_are_computed_under_the_workspace_lock(run, monkeypatch):
    import contextlib

    from ddm.workspace import Workspace

    cfg, data, ws, dm = run
    assert (ws / ".lock").exists() and (ws / ".lock").read_text() == ""  # taken by the fixture's fit, released
    taken: list[str] = []
    real = Workspace.lock

    @contextlib.contextmanager
    def recording(self, what="ddm"):
        taken.append(what)
        with real(self, what):
            yield

    monkeypatch.setattr(Workspace, "lock", recording)
    again = ddm.DistilledDatamodel(ws, dm.config)
    again.fit(ddm.models.build(cfg.model, data), data.train)  # every stage reused
    again.store_group_gradients(data.train)
    assert taken == ["fit", "store_group_gradients"]


def test_attribute_flat_and_hierarchical(run):
    cfg, data, ws, dm = run
    targets = data.test[:4]
    attr = dm.attribute(targets, "dist1")
    assert attr.weights.shape == (4, 20, 10) and attr.target_ids == targets.index.tolist()
    assert (ws / "attributions" / "dist1" / "attribution.safetensors").exists()
    top = attr.top(0, k=3)
    assert len(top) == 3 and all(len(g.members) > 0 for g in top)
    hier = dm.attribute(targets, "dist2", hierarchical=True, name="h")
    assert hier.evaluated is not None
    n_eval = hier.evaluated.sum(1)
    assert (n_eval == 2 * cfg.emulate.top_classes).all()  # 2 groups per class in the tiny preset
    assert all(hier.evaluated[0, g.group] for g in hier.top(0, k=10))
    acc = dm.attribute(data.test, "accuracy")
    assert acc.weights.shape == (1, 20, 1) and acc.target_ids == [-1]


def test_checkpoints_the_steps_do_not_transfer_to_are_left_out_of_the_average(run):
    cfg, data, ws, dm = run
    targets = data.test[:4]
    syn = dm.synset
    assert len(syn.checkpoints) == 2 and all(c.cosine_mean > 0.5 for c in syn.checkpoints)  # measured, healthy
    first, second = syn.checkpoints
    weak = dataclasses.replace(syn, checkpoints=[dataclasses.replace(first, cosine_mean=0.3),
                                                 dataclasses.replace(second, cosine_mean=float("nan"))])
    kept = weak.transferring(0.5)
    assert [c.epoch for c in kept.checkpoints] == [second.epoch]  # below the threshold out; unmeasured kept
    assert weak.transferring(0.0) is weak and syn.transferring(0.5) is syn
    base, key = dm.config, dm.keys["synset"]
    synsets = base.with_overrides(["emulate.gradients=synsets"])  # the step from the synsets' own gradients
    try:  # each synset under its own key: the emulation cache must not answer for another synset
        dm.config = synsets
        dm.synset, dm.keys["synset"] = weak, "weak"
        out = dm.attribute(targets, "dist2", name="weak")
        assert out.meta["checkpoints_left_out"] == [first.epoch]
        dm.config = synsets.with_overrides(["emulate.min_transfer=0"])
        every = dm.attribute(targets, "dist2", name="weak-all")
        assert every.meta["checkpoints_left_out"] == [] and not torch.allclose(every.weights, out.weights)
        dm.config = synsets
        dm.synset, dm.keys["synset"] = kept, "kept"  # what the default did: the average without the first checkpoint
        assert torch.allclose(dm.attribute(targets, "dist2", name="kept").weights, out.weights, atol=1e-6)
    finally:
        dm.config, dm.synset, dm.keys["synset"] = base, syn, key


def test_the_groups_own_gradients_stand_in_for_the_synsets_images_in_the_attribution(run):
    from ddm.distill.head import Head, group_gradients
    from ddm.pipeline import GRADIENTS_FILE

    cfg, data, ws, dm = run
    targets = data.test[:4]
    syn, groups = dm.synset, dm.groups
    path = ws / "synset" / GRADIENTS_FILE
    stored = load_tensors(path)
    assert set(stored) == {"tau"} | {f"checkpoint{c.index}" for c in syn.checkpoints}
    assert (ws / "synset-class" / GRADIENTS_FILE).exists()
    # a file of their own: the synset, what may be released, does not carry them
    assert not set(load_tensors(ws / "synset" / "synset.safetensors")) & set(stored)
    exact = group_gradients(Head.of(dm.model), data.train, groups, 10, task=syn.task)
    assert torch.allclose(stored["tau"], exact.float(), rtol=1e-4, atol=1e-6)
    # the same step as a synset whose images are each group's own samples at weight 1 (padding at weight 0), over
    # every checkpoint: exact gradients transfer to all of them
    members = [groups.members(k) for k in range(groups.num_groups)]
    n = max(len(m) for m in members)
    images = torch.zeros(groups.num_groups, n, *data.train.x.shape[1:])
    labels = torch.zeros(groups.num_groups, n, dtype=torch.long)
    weights = torch.zeros(groups.num_groups, n)
    for k, m in enumerate(members):
        images[k, : len(m)], labels[k, : len(m)], weights[k, : len(m)] = data.train.x[m], data.train.y[m], 1.0
    real = dataclasses.replace(syn, images=images, labels=labels, weights=weights)
    base, key = dm.config, dm.keys["synset"]
    try:
        assert base.emulate.gradients == "groups"  # the default
        ours = dm.attribute(targets, "dist2", name="groups")
        assert ours.meta["checkpoints_left_out"] == []
        dm.config = base.with_overrides(["emulate.gradients=synsets", "emulate.min_transfer=0"])
        dm.synset, dm.keys["synset"] = real, "real"
        assert torch.allclose(dm.attribute(targets, "dist2", name="real").weights, ours.weights, rtol=1e-3,
                              atol=1e-6)
        dm.synset, dm.keys["synset"] = syn, key
        dm.config = base.with_overrides(["emulate.gradients=synsets"])
        assert not torch.allclose(dm.attribute(targets, "dist2", name="synsets").weights, ours.weights, atol=1e-6)
        # a damped step leaves no checkpoint out (it compared the damped copies by identity once)
        dm.config = base.with_overrides(["emulate.gradients=synsets", "emulate.damping_scale=3"])
        assert dm.attribute(targets, "dist2", name="damped").meta["checkpoints_left_out"] == []
        # gone or stale: refused, saying what to do; `ddm distill` (fit on the finished stages) writes them again
        dm.config = base.with_overrides(["emulate.gradients=groups"])
        save_tensors(path, stored, metadata={"synset_key": "an-earlier-synset"})
        dm._gradients.clear()
        with pytest.raises(ConfigError, match="belong to an earlier synset"):
            dm.attribute(targets, "dist2", name="stale")
        path.unlink()
        with pytest.raises(ConfigError, match="ddm distill"):
            dm.attribute(targets, "dist2", name="gone")
        dm.fit(dm.model, data.train)
        assert torch.equal(load_tensors(path)["tau"], stored["tau"])
        path.unlink()
        again = ddm.DistilledDatamodel(ws).load().store_group_gradients(data.train)  # what the command line calls
        assert torch.equal(load_tensors(path)["tau"], stored["tau"])
        assert again.ws.stage_info("synset") == dm.ws.stage_info("synset")  # no new distillation
        assert torch.allclose(dm.attribute(targets, "dist2", name="groups").weights, ours.weights)
    finally:
        dm.config, dm.synset, dm.keys["synset"] = base, syn, key


def test_gradients_too_large_to_store_leave_the_step_to_the_synsets_saying_so(tmp_path, monkeypatch, caplog):
    """Above GRADIENTS_MAX_BYTES the groups' gradients are not stored; the attribution then reads the synsets' (as
    emulate.gradients=synsets does) and says so once, where it refused before and `ddm distill` could not help."""
    import logging

    import ddm.distill.stage as stage_mod
    from ddm.pipeline import GRADIENTS_FILE

    cfg = presets.tiny()
    data = ddm.data.load(cfg.data)
    stored = ddm.DistilledDatamodel(tmp_path / "stored", cfg).fit(ddm.models.build(cfg.model, data), data.train)
    monkeypatch.setattr(stage_mod, "GRADIENTS_MAX_BYTES", 1)
    seen: list[set[int]] = []
    real_health = stage_mod.health.synset_health

    def health(*args, statistics=None, **kwargs):
        seen.append(set(statistics or {}))
        return real_health(*args, statistics=statistics, **kwargs)

    monkeypatch.setattr(stage_mod.health, "synset_health", health)
    dm = ddm.DistilledDatamodel(tmp_path, cfg)
    with caplog.at_level(logging.INFO):
        dm.fit(ddm.models.build(cfg.model, data), data.train)
    # the checkpoints' statistics, which nothing reads past the matching then, were released before the health check;
    # its report is the one of the stage that stores the gradients
    tau = dm.trajectory.tau
    assert seen and seen[0] <= {tau, tau - 1} and tau in seen[0]
    assert dm.ws.stage_info("synset")["health"] == stored.ws.stage_info("synset")["health"]
    with caplog.at_level(logging.INFO):
        assert not (tmp_path / "synset" / GRADIENTS_FILE).exists()
        assert dm.step_gradients() == "synsets"
        got = dm.attribute(data.test[:3], "dist2", name="large")
        dm.attribute(data.test[:3], "dist1", name="large1")
    assert torch.isfinite(got.weights).all()
    assert caplog.text.count("so they are not stored and the attribution's step reads the synsets'") == 1
    want = dm.config.with_overrides(["emulate.gradients=synsets"])
    same = ddm.DistilledDatamodel(tmp_path, want).load().attribute(data.test[:3], "dist2", name="synsets")
    assert torch.equal(same.weights, got.weights)


def test_a_synset_stage_larger_than_the_memory_warns_before_it_starts(run, monkeypatch, caplog):
    import logging

    from ddm import devices
    from ddm.distill.stage import STAGE_BYTES_PER_ENTRY, warn_memory

    cfg, data, ws, dm = run
    size = 10 * 33  # the tiny preset's head on the digits: 10 classes x (32 features + 1)
    need = STAGE_BYTES_PER_ENTRY * dm.groups.num_groups * size  # far below the chunked stage's base
    monkeypatch.setattr(devices, "available_memory", lambda: need + 1)
    with caplog.at_level(logging.WARNING):
        warn_memory(dm.model, dm.groups.num_groups)
    assert "may need" not in caplog.text
    monkeypatch.setattr(devices, "available_memory", lambda: need - 1)
    with caplog.at_level(logging.WARNING):
        warn_memory(dm.model, dm.groups.num_groups)
    assert f"K = {dm.groups.num_groups} groups x {size} last-layer parameters" in caplog.text
    assert "cluster.per_class" in caplog.text
    # where the stage works in chunks (above the single-chunk limit) its buffers add a base to the estimate
    import ddm.distill.head as head_mod
    from ddm.distill.stage import STAGE_BASE_BYTES

    caplog.clear()
    monkeypatch.setattr(head_mod, "DOUBLE_GRADIENTS_LIMIT", 10)
    monkeypatch.setattr(devices, "available_memory", lambda: need + STAGE_BASE_BYTES - 1)
    with caplog.at_level(logging.WARNING):
        warn_memory(dm.model, dm.groups.num_groups)
    assert "may need" in caplog.text


def test_emulation_is_shared_between_objectives(run, monkeypatch):
    cfg, data, ws, dm = run
    dm.attribute(data.test[:4], "dist1")
    from ddm.emulate.emulators import EMULATORS

    def boom(*a, **k):
        raise AssertionError("emulation recomputed")

    for name in ("newton", "finetune", "linear"):
        monkeypatch.setitem(EMULATORS._items, name, boom)
    dm.attribute(data.test[:4], "dist3")  # same perturbations and targets: cached logits
    with pytest.raises(AssertionError, match="recomputed"):
        dm.attribute(data.test[:5], "dist3")  # other targets: the patched emulator is really the one called


def test_online_cost_counts_cached_emulations_once_at_their_recorded_time(tmp_path):
    from ddm.pipeline import online_seconds

    cfg = presets.tiny().with_overrides(presets.recipe("local-free"))  # fine-tuning: emulation dominates the time
    data = ddm.data.load(cfg.data)
    dm = ddm.DistilledDatamodel(tmp_path, cfg)
    dm.fit(ddm.models.build(cfg.model, data), data.train)
    fresh = dm.attribute(data.test[:4], "dist1")
    (key, seconds), = fresh.meta["emulations"].items()
    assert seconds > 0 and fresh.meta["compute_seconds"] == pytest.approx(fresh.meta["seconds"])
    reused = dm.attribute(data.test[:4], "dist2")  # same emulation, read from the cache
    assert reused.meta["emulations"] == {key: seconds}
    assert reused.meta["seconds"] < seconds <= reused.meta["compute_seconds"]
    both = online_seconds([fresh, reused])
    assert both == pytest.approx(seconds + fresh.meta["overhead_seconds"] + reused.meta["overhead_seconds"])
    with pytest.raises(ConfigError):
        online_seconds([ddm.attribution.matrix.AttributionMatrix.__new__(ddm.attribution.matrix.AttributionMatrix)])


def test_rerun_skips_finished_stages(run, monkeypatch):
    cfg, data, ws, dm = run
    import ddm.pipeline as pipeline

    def boom(*a, **k):
        raise AssertionError("stage recomputed")

    from ddm.distill.matchers import MATCHERS

    monkeypatch.setattr(pipeline, "train_model", boom)
    for name in MATCHERS.names():
        monkeypatch.setitem(MATCHERS._items, name, boom)
    again = ddm.DistilledDatamodel(ws, cfg).fit(ddm.models.build(cfg.model, data), data.train)
    assert torch.equal(again.synset.images, dm.synset.images)


def test_changed_config_is_an_error_that_says_what_to_do(run):
    cfg, data, ws, dm = run
    other = cfg.with_overrides(["distill.iterations=7"])
    with pytest.raises(ConfigMismatchError, match="--overwrite"):
        ddm.DistilledDatamodel(ws, other).fit(ddm.models.build(cfg.model, data), data.train)


def test_too_few_perturbations_is_refused(run):
    cfg, data, ws, dm = run
    dm2 = ddm.DistilledDatamodel(ws).load()
    dm2.config = dm2.config.with_overrides(["emulate.num_perturbations=5"])
    with pytest.raises(ConfigError, match=r"needs \|P\| >= K"):
        dm2.attribute(data.test[:2])


def test_an_attribution_too_large_for_memory_is_refused_before_any_work(run, monkeypatch, caplog):
    cfg, data, ws, dm = run
    dm2 = ddm.DistilledDatamodel(ws).load()
    monkeypatch.setattr(ddm.devices, "available_memory", lambda: 10 * 2 ** 20)  # 10 MiB
    with pytest.raises(ConfigError, match=r"needs about .* GiB of memory and 0.0 GiB is available: use fewer"):
        dm2.attribute(data.test[:200])
    monkeypatch.setattr(ddm.devices, "available_memory", lambda: None)  # unknown: no refusal
    assert dm2.attribute(data.test[:2]).weights.shape[0] == 2
    # a fit that fits in memory but takes long (accuracy over per-sample groups) says so before it starts
    import logging

    from ddm.attribution.memory import check_fit_memory

    with caplog.at_level(logging.WARNING, logger="ddm.pipeline"):
        check_fit_memory(2000, 20000, 1)
        assert "multiply-adds" not in caplog.text
        check_fit_memory(10000, 100000, 1)
    assert "takes about 1e+13 multiply-adds" in caplog.text


def test_many_groups_fit_w_linearised_close_to_the_regression(run, monkeypatch):
    """emulate.fit=auto fits W linearised above LINEARISE_ABOVE groups (per-sample groups of large data): each
    group's Newton logit shift through the objective's mean Jacobian, close to Eq. 8's regression."""
    import ddm.attribution.online as online

    cfg, data, ws, dm = run
    dm2 = ddm.DistilledDatamodel(ws).load()
    targets = data.test[:6]
    reg = dm2.attribute(targets, "dist2", name="reg")
    assert "fit" not in reg.meta
    monkeypatch.setattr(online, "LINEARISE_ABOVE", dm2.synset.num_groups - 1)
    lin = dm2.attribute(targets, "dist2", name="lin")
    assert lin.meta["fit"] == "linearised" and lin.meta["perturbations"] == online.LINEARISED_PERTURBATIONS
    assert float((lin.weights - reg.weights).norm() / reg.weights.norm()) < 0.05
    for t in range(6):
        assert lin.ranking(t)[0] == reg.ranking(t)[0]
    # the targets in chunks (each with its own group shifts): the same matrix
    monkeypatch.setattr(online, "LINEARISED_CHUNK_BYTES", 1)
    chunked = dm2.attribute(targets, "dist2", name="lin-chunked")
    torch.testing.assert_close(chunked.weights, lin.weights)
    torch.testing.assert_close(chunked.bias, lin.bias)
    assert chunked.target_ids == lin.target_ids and chunked.meta["fit"] == "linearised"
    monkeypatch.setattr(ddm.devices, "available_memory", lambda: 100)  # bytes
    with pytest.raises(ConfigError, match="attribute fewer targets per call"):
        dm2.attribute(targets, "dist2", name="lin")
    monkeypatch.undo()
    # set objectives (and any objective without derivatives) stay with the regression; asking for it is refused
    assert "fit" not in dm2.attribute(targets, "accuracy", name="acc").meta
    dm2.config = dm2.config.with_overrides(["emulate.fit=linearised"])
    with pytest.raises(ConfigError, match="per-target objective differentiable"):
        dm2.attribute(targets, "accuracy", name="acc")


def test_targets_and_groups_a_model_cannot_take_are_refused_saying_why(run):
    cfg, data, ws, dm = run
    x, y = data.test.x[:2], data.test.y[:2]
    cases = [(ddm.data.Split(torch.zeros(2, 1, 28, 28), y), "targets have shape \\(1, 28, 28\\)"),
             (ddm.data.Split(x, torch.tensor([3, 12])), "labels must lie in \\[0, 9\\]"),
             (ddm.data.Split(torch.where(torch.arange(2)[:, None, None, None] == 1, float("nan"), x), y),
              "1 target\\(s\\) hold NaN or infinite values \\(rows \\[1\\]\\)")]
    for targets, says in cases:
        with pytest.raises(ddm.exceptions.DataError, match=says):
            dm.attribute(targets, "dist2", name="bad")
    for groups, says in [([], "no groups given"), ([1.5], "integer indices"), ([99], "must be in \\[0, 19\\]")]:
        with pytest.raises(ConfigError, match=says):
            dm.unlearn(groups)


def test_load_and_unlearn(run):
    cfg, data, ws, dm = run
    dm2 = ddm.DistilledDatamodel(ws).load()
    assert dm2.groups.num_groups == 20 and torch.equal(dm2.synset.images, dm.synset.images)
    assert not dm2.model.training  # the model load() builds is an inference model: in eval mode
    model = dm2.unlearn([0, 3], name="two")
    assert (ws / "unlearned" / "two" / "model.safetensors").exists()
    changed = any(not torch.equal(p, q) for p, q in zip(model.parameters(), dm2.model.parameters(), strict=True))
    assert changed
    again = ddm.DistilledDatamodel(ws).load().unlearned("two")  # what ddm unlearn saved, as a model
    assert not again.training
    assert all(torch.equal(p, q) for p, q in zip(again.state_dict().values(), model.state_dict().values(), strict=True))
    assert not torch.equal(again(data.test.x[:50]), dm2.model(data.test.x[:50]))
    for bad in ("nope", "../two", ""):
        with pytest.raises(ddm.exceptions.MissingArtifactError, match="saved: two"):
            dm2.unlearned(bad)
    with pytest.raises(ConfigError, match="group indices"):
        dm2.unlearn([99])
    with pytest.raises(ConfigError, match="integer indices"):
        dm2.unlearn("3")
    with pytest.raises(ConfigError, match="removes every one of the 20 groups"):
        dm2.unlearn(list(range(20)))
    with pytest.raises(ConfigError, match="training split"):
        ddm.DistilledDatamodel(ws / "other").fit(ddm.models.build(cfg.model, data), data.train.x)


def test_external_trajectory_from_a_users_loop(tmp_path):
    cfg = presets.tiny().with_overrides(["hierarchical=false", "distill.iterations=2"])
    data = ddm.data.load(cfg.data)
    model = ddm.models.build(cfg.model, data)
    rec = TrajectoryRecorder(model)
    rec.record(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(1, 3):
        loss = torch.nn.functional.cross_entropy(model(data.train.x), data.train.y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec.record(epoch)
    dm = ddm.DistilledDatamodel(tmp_path, cfg).fit(model, data.train, trajectory=rec.trajectory(lr=0.1))
    assert dm.ws.stage_info("train")["config"]["external_trajectory"]
    assert dm.train_lr == 0.1 and dm.finetune_steps == 2
    assert dm.finetune_lr == pytest.approx(0.1 * cfg.emulate.finetune_scale)
    assert dm.attribute(data.test[:2]).weights.shape == (2, 20, 10)
    # one more step after the last snapshot: the trajectory no longer ends at the model, which is refused
    loss = torch.nn.functional.cross_entropy(model(data.train.x), data.train.y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    with pytest.raises(ConfigError, match="last snapshot \\(epoch 2\\) is not the model handed in"):
        ddm.DistilledDatamodel(tmp_path / "stale", cfg).fit(model, data.train, trajectory=rec.trajectory(lr=0.1))


def test_a_handed_in_trajectory_brings_its_weight_decay_or_a_warning(tmp_path, caplog):
    cfg = presets.tiny().with_overrides(["hierarchical=false", "distill.iterations=2"])
    data = ddm.data.load(cfg.data)

    def fit(folder, attach):
        model = ddm.models.build(cfg.model, data)
        rec = TrajectoryRecorder(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-2)
        if attach:
            rec.attach(opt, every_steps=1)
        else:
            rec.record(0)
        for epoch in range(1, 3):
            loss = torch.nn.functional.cross_entropy(model(data.train.x), data.train.y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if not attach:
                rec.record(epoch)
        return ddm.DistilledDatamodel(tmp_path / folder, cfg).fit(model, data.train, trajectory=rec.trajectory(lr=0.1))

    with caplog.at_level("WARNING"):
        recorded = fit("recorded", attach=True)
    assert recorded.weight_decay == 1e-2 and "weight decay" not in caplog.text
    top = recorded.synset.curvature.top_eigenvalue()
    assert float(recorded.synset.damping) == pytest.approx(cfg.distill.damping * top + 1e-2, rel=1e-4)
    assert recorded.decay(recorded.groups) is not None
    # ddm's own training loop is not the one that made this trajectory: diagnose --verify refuses to retrain with it
    from ddm.diagnosis import verify

    assert recorded.handed_in()
    with pytest.raises(ConfigError, match="handed in"):
        verify(recorded, data.train, data.test, [0, 1], [0], "loss", 1)
    from ddm.evaluation.check import check, verify_unlearning  # nor do ddm check and unlearn --verify

    with pytest.raises(ConfigError, match="handed in"):
        check(recorded, data)
    with pytest.raises(ConfigError, match="handed in"):
        verify_unlearning(recorded, data, [0], recorded.model, 1)
    with caplog.at_level("WARNING"):
        silent = fit("silent", attach=False)
    assert silent.weight_decay == cfg.train.weight_decay == 0.0
    assert "does not record its optimizer's weight decay" in caplog.text
    # the decay the trajectory does not record is part of the synset's key: the stored one is not reused silently
    wd = cfg.with_overrides(["train.weight_decay=1e-2"])
    with pytest.raises(ddm.exceptions.ConfigMismatchError, match="weight_decay"):
        ddm.DistilledDatamodel(tmp_path / "silent", wd).fit(silent.model, data.train, trajectory=silent.trajectory)
    again = ddm.DistilledDatamodel(tmp_path / "silent", wd, overwrite=True)
    again.fit(silent.model, data.train, trajectory=silent.trajectory)
    assert again.weight_decay == 1e-2
    top = again.synset.curvature.top_eigenvalue()
    assert float(again.synset.damping) == pytest.approx(cfg.distill.damping * top + 1e-2, rel=1e-4)


@pytest.mark.parametrize("recipe", ["head", "local-free"])
def test_stages_in_one_process_or_after_a_reload_give_bit_identical_synsets(tmp_path, recipe):
    cfg = presets.tiny().with_overrides(["hierarchical=false", *presets.recipe(recipe), "distill.iterations=5"])
    data = ddm.data.load(cfg.data)
    together = ddm.DistilledDatamodel(tmp_path / "one", cfg).fit(ddm.models.build(cfg.model, data), data.train)
    ddm.DistilledDatamodel(tmp_path / "two", cfg).fit(ddm.models.build(cfg.model, data), data.train, until="train")
    apart = ddm.DistilledDatamodel(tmp_path / "two", cfg).fit(ddm.models.build(cfg.model, data), data.train)
    assert list(apart.trajectory.final) == [n for n, _ in apart.model.named_parameters()]  # the model's order
    assert torch.equal(together.synset.images, apart.synset.images)


def test_unlearning_uses_its_own_damping(run):
    from ddm.emulate.newton import newton_keep_params

    cfg, data, ws, dm = run
    # one group of each of two classes (removing every group of a class also removes the class: tested below)
    removed = torch.stack([torch.nonzero(dm.groups.labels == c).flatten()[0] for c in (0, 1)])
    head = "classifier.weight"
    theta = dm.trajectory.final

    def unlearned(*overrides):  # at theta_tau (the rewind along the trajectory and the back-off: tested below)
        dm.config = cfg.with_overrides([*overrides, "emulate.unlearn_rewind=0", "emulate.unlearn_backoff=0"])
        return dict(dm.unlearn(removed.tolist(), name="u").named_parameters())[head]

    synset_damping = unlearned("emulate.unlearn_damping=none", "emulate.unlearn_curvature_damping=0")
    assert torch.allclose(synset_damping, newton_keep_params(dm.model, theta, dm.synset, removed)[head])
    lam = 1e-4 * dm.synset.curvature.top_eigenvalue() + cfg.train.weight_decay
    small = unlearned("emulate.unlearn_damping=1e-4", "emulate.unlearn_curvature_damping=0")
    assert torch.allclose(small, newton_keep_params(dm.model, theta, dm.synset, removed, lam)[head])
    assert (small - theta[head]).norm() > (synset_damping - theta[head]).norm()  # less damping, a longer step
    trust = unlearned("emulate.unlearn_damping=1e-4", "emulate.unlearn_curvature_damping=0.1")
    assert torch.allclose(trust, newton_keep_params(dm.model, theta, dm.synset, removed, lam, 0.1)[head])
    assert (trust - theta[head]).norm() < (small - theta[head]).norm()  # the trust region shortens it
    dm.config = cfg


def test_unlearning_reports_damage_to_the_kept_groups(run, caplog):
    cfg, data, ws, dm = run
    # a step this damped barely moves anything (and the model stays at theta_tau)
    dm.config = cfg.with_overrides(["emulate.unlearn_damping=100", "emulate.unlearn_rewind=0"])
    dm.unlearn([0, 1], name="still")
    still = dm.last_unlearning_check
    assert not still["damaged"] and still["kept_accuracy_after"] == pytest.approx(still["kept_accuracy_before"])
    dm.config = cfg.with_overrides(["emulate.unlearn_damping=1e-9",  # an undamped step on a tiny model
                                    "emulate.unlearn_backoff=0"])
    dm.unlearn(list(range(dm.groups.num_groups // 2)), name="wild")
    wild = dm.last_unlearning_check
    assert wild["damaged"] and wild["kept_accuracy_after"] < wild["kept_accuracy_before"] - 0.1
    assert "may be damaged" in caplog.text
    assert ddm.workspace.load_json(ws / "unlearned" / "wild" / "unlearn.json")["check"] == wild
    dm.config = cfg
    # a group named twice is removed once
    once, twice = dm.unlearn([3], name="once"), dm.unlearn([3, 3], name="twice")
    assert all(torch.equal(a, b) for a, b in zip(once.parameters(), twice.parameters(), strict=True))
    # every group removed: refused (a retrain without any data is the untrained model), nothing written
    with pytest.raises(ConfigError, match="removes every one of the 20 groups"):
        dm.unlearn(list(range(dm.groups.num_groups)), name="everything")
    assert not (ws / "unlearned" / "everything").exists()


def test_a_step_that_collapses_a_kept_class_is_redone_with_more_damping(run, caplog):
    from ddm.emulate.newton import newton_keep_params

    cfg, data, ws, dm = run
    removed = torch.stack([torch.nonzero(dm.groups.labels == c).flatten()[0] for c in (0, 1)])
    base = ["emulate.unlearn_damping=1e-4", "emulate.unlearn_rewind=0"]
    dm.config = cfg.with_overrides([*base, "emulate.unlearn_backoff=0"])
    dm.unlearn(removed.tolist(), name="once")
    once = dm.last_unlearning_check
    assert once["collapsed_classes"] and once["damaged"] and once["damping_raised"] == []  # class 0 (kept) collapsed
    dm.config = cfg.with_overrides([*base, "emulate.unlearn_backoff=4"])
    caplog.clear()
    model = dm.unlearn(removed.tolist(), name="backoff")
    again = dm.last_unlearning_check
    assert again["damping_raised"] and not again["collapsed_classes"]  # redone until no kept class collapsed
    assert "overshoots" not in caplog.text  # the rejected step is not reported as the result
    lam = again["damping_raised"][-1] * dm.synset.curvature.top_eigenvalue() + cfg.train.weight_decay
    expected = newton_keep_params(dm.model, dm.trajectory.final, dm.synset, removed, lam)["classifier.weight"]
    assert torch.allclose(dict(model.named_parameters())["classifier.weight"], expected)
    saved = ddm.workspace.load_json(ws / "unlearned" / "backoff" / "unlearn.json")["check"]
    assert saved["damping_raised"] == again["damping_raised"]
    # the threshold is the configuration's: a class must lose more than all of its accuracy to count at 1.0
    dm.config = cfg.with_overrides([*base, "emulate.unlearn_backoff=4", "emulate.unlearn_class_drop=1.0"])
    dm.unlearn(removed.tolist(), name="lenient")
    assert dm.last_unlearning_check["damping_raised"] == [] and not dm.last_unlearning_check["collapsed_classes"]
    dm.config = cfg
    with pytest.raises(ddm.exceptions.ConfigError, match="unlearn_class_drop"):
        cfg.with_overrides(["emulate.unlearn_class_drop=0"])


def test_a_class_the_removal_thins_does_not_set_the_back_off_off(run, caplog):
    # a removal that leaves a class under half of its samples: retraining loses accuracy there too (often all of
    # it), so its kept synthetic images' fall is reported but the step is not damped for it
    cfg, data, ws, dm = run
    base = ["emulate.unlearn_damping=1e-3", "emulate.unlearn_rewind=0"]
    found = None
    for c in range(int(dm.groups.labels.max()) + 1):
        mine = torch.nonzero(dm.groups.labels == c).flatten()
        if len(mine) < 2:
            continue
        dm.config = cfg.with_overrides([*base, "emulate.unlearn_backoff=0"])
        first = dm.unlearn(mine[:1].tolist(), name="thin-once")
        collapsed = dm.last_unlearning_check["collapsed_classes"]
        if collapsed and all(x.get("kept_share") is not None for x in collapsed):
            found = mine[:1].tolist(), first, collapsed
            break
    assert found is not None  # some class's removal collapses only classes it thins
    removed, first, collapsed = found
    assert all(x["kept_share"] < 0.5 and x["before"] - x["after"] > cfg.emulate.unlearn_class_drop for x in collapsed)
    dm.config = cfg.with_overrides([*base, "emulate.unlearn_backoff=4"])
    caplog.clear()
    with caplog.at_level("WARNING"):
        model = dm.unlearn(removed, name="thin-backoff")
    check = dm.last_unlearning_check
    assert check["damping_raised"] == [] and check["collapsed_classes"] == collapsed and not check["damaged"]
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), first.parameters(), strict=True))
    assert "retraining without most of a class loses accuracy there too" in caplog.text
    assert "overshoots" not in caplog.text
    dm.config = cfg


def test_the_rewind_says_once_that_no_checkpoint_serves(run, caplog):
    from ddm.unlearning import rewind

    cfg, data, ws, dm = run
    everything = torch.arange(dm.groups.num_groups)  # a retrain of no steps: before the first recorded epoch
    model = ddm.models.with_params(dm.model, dm.trajectory.final)
    with caplog.at_level("WARNING"):
        assert rewind(model, dm.trajectory, dm.groups.sizes(), everything, 1.0) is None
        assert caplog.text.count("no recorded checkpoint") == 1
        caplog.clear()
        assert rewind(model, dm.trajectory, dm.groups.sizes(), everything, 1.0, warn=False) is None  # a back-off
        assert "no recorded checkpoint" not in caplog.text
        assert rewind(model, dm.trajectory, dm.groups.sizes(), everything, 1.0, to="checkpoint") is None  # theta_0
        assert caplog.text.count("no recorded checkpoint") == 1
    assert all(torch.equal(p, dm.trajectory.final[n]) for n, p in model.named_parameters())  # left where it was


def test_the_rewind_to_a_checkpoint_lands_on_a_recorded_point_not_between_two(run):
    from ddm.unlearning import rewind

    cfg, data, ws, dm = run
    traj, sizes = dm.trajectory, dm.groups.sizes().double()
    last = float(traj.epochs[-1])
    for removed in (torch.arange(1), torch.arange(dm.groups.num_groups // 3)):
        want = last * (1 - float(sizes[removed].sum() / sizes.sum()))
        near = min((float(e) for e in traj.epochs[1:]), key=lambda e: abs(e - want))
        line = ddm.models.with_params(dm.model, traj.final)
        at = ddm.models.with_params(dm.model, traj.final)
        r_line = rewind(line, traj, dm.groups.sizes(), removed, 1.0)
        r_at = rewind(at, traj, dm.groups.sizes(), removed, 1.0, to="checkpoint")
        assert r_line["epoch"] == pytest.approx(want) and r_at["epoch"] == near and r_at["to"] == "checkpoint"
        ckpt = traj.checkpoint([float(e) for e in traj.epochs].index(near))
        assert all(torch.allclose(p, ckpt[n]) for n, p in at.named_parameters())  # a point SGD visited
        if want not in traj.epochs:  # the interpolation is on the chord between two checkpoints, on neither
            assert not all(torch.allclose(p, ckpt[n]) for n, p in line.named_parameters())
    with pytest.raises(ddm.exceptions.ConfigError, match="unlearn_rewind_to"):
        cfg.with_overrides(["emulate.unlearn_rewind_to=nearest"])


def test_a_class_lost_by_the_rewind_is_reported_as_such_and_not_damped_again(run, caplog):
    cfg, data, ws, dm = run
    removed = torch.stack([torch.nonzero(dm.groups.labels == c).flatten()[0] for c in (1, 2)]).tolist()
    traj = dm.trajectory
    saved = list(traj.params)
    # every checkpoint before theta_tau never predicts class 0: the rewound start point has lost it, the step has not
    for i in range(1, len(traj) - 1):
        bias = traj.params[i]["classifier.bias"].clone()
        bias[0] = -1e4
        traj.params[i] = {**traj.params[i], "classifier.bias": bias}
    try:
        dm.config = cfg.with_overrides(["emulate.unlearn_damping=100", "emulate.unlearn_backoff=4",
                                        "emulate.unlearn_rewind_guard=false"])
        caplog.clear()
        dm.unlearn(removed, name="rewound")
        check = dm.last_unlearning_check
        lost = sorted(c["class"] for c in check["collapsed_classes"])  # the tiny run's own epoch 3.4 may lose more
        assert 0 in lost and check["collapsed_by_rewind"] == lost
        assert check["damping_raised"] == []  # no damping brings back what the start point lacks
        assert "not the step" in caplog.text and "emulate.unlearn_rewind=0" in caplog.text
        assert "overshoots" not in caplog.text
        assert "rewind_dropped" not in check
        dm.config = cfg.with_overrides(["emulate.unlearn_damping=100", "emulate.unlearn_rewind=0"])
        at_tau = dict(dm.unlearn(removed, name="at-tau").named_parameters())
        assert not dm.last_unlearning_check["collapsed_classes"]  # theta_tau plus a damped step keeps every class
        # the guard (the default): the same step, taken from theta_tau, with the rewound model kept for --verify
        dm.config = cfg.with_overrides(["emulate.unlearn_damping=100", "emulate.unlearn_backoff=4"])
        caplog.clear()
        guarded = dict(dm.unlearn(removed, name="guarded").named_parameters())
        check = dm.last_unlearning_check
        assert 0 in check["rewind_dropped"]["classes"] and check["rewind_dropped"]["epoch"] < traj.epochs[-1]
        assert not check["collapsed_classes"] and check["damping_raised"] == [] and dm.last_rewind is None
        assert all(torch.equal(guarded[n], at_tau[n]) for n in at_tau)
        first = dm.last_unlearned_first
        assert first is not None and first.state_dict()["classifier.bias"][0] < -1e3  # the rewound one, kept aside
        stored = ddm.workspace.load_json(ws / "unlearned" / "guarded" / "unlearn.json")
        assert stored["check"]["rewind_dropped"] == check["rewind_dropped"] and stored["rewind"] is None
        assert "not the step" not in caplog.text
    finally:
        traj.params[:] = saved
        dm.config = cfg


def test_unlearning_moves_back_along_the_trajectory_by_the_data_removed(run):
    cfg, data, ws, dm = run
    traj = dm.trajectory
    assert traj.at_epoch(traj.epochs[-1]) is not None and traj.at_epoch(0.5) is None  # never toward theta_0
    mid = traj.at_epoch((traj.epochs[1] + traj.epochs[2]) / 2)
    assert torch.allclose(mid["classifier.weight"], (traj[1]["classifier.weight"] + traj[2]["classifier.weight"]) / 2)
    # one group of each of three classes (a class without groups also leaves the head: tested below)
    groups = [int(torch.nonzero(dm.groups.labels == c).flatten()[0]) for c in (0, 1, 2)]
    f = float(dm.groups.sizes()[groups].sum()) / len(data.train)
    dm.config = cfg.with_overrides(["emulate.unlearn_rewind=0", "emulate.unlearn_backoff=0"])
    still = dict(dm.unlearn(groups, name="no-rewind").named_parameters())
    assert dm.last_rewind is None
    dm.config = cfg.with_overrides(["emulate.unlearn_backoff=0"])  # the same step either way (back-off: above)
    moved = dict(dm.unlearn(groups, name="rewind").named_parameters())
    r = dm.last_rewind
    assert r["fraction_removed"] == pytest.approx(f) and r["epoch"] == pytest.approx(traj.epochs[-1] * (1 - f))
    base = traj.at_epoch(r["epoch"])
    for name, p in moved.items():  # the same Newton step, from the parameters at that epoch
        assert torch.allclose(p, still[name] - traj.final[name] + base[name], atol=1e-5)
    assert not torch.allclose(moved["features.0.weight"], traj.final["features.0.weight"])
    assert ddm.workspace.load_json(ws / "unlearned" / "rewind" / "unlearn.json")["rewind"] == r
    # under an annealed schedule the retrain ends annealed as theta_tau does: no rewind, the step from theta_tau
    saved = traj.optimizer
    traj.optimizer = {**(saved or {}), "schedule": "cosine"}
    try:
        annealed = dict(dm.unlearn(groups, name="cosine").named_parameters())
        assert dm.last_rewind is None
        assert all(torch.allclose(annealed[n], still[n]) for n in still)
        # ... which is said, with the share of the data whose steps the retrain still does not take
        assert dm.last_rewind_skipped == {"schedule": "cosine", "fraction_removed": pytest.approx(f)}
        stored = ddm.workspace.load_json(ws / "unlearned" / "cosine" / "unlearn.json")
        assert stored["rewind_skipped"]["schedule"] == "cosine"
    finally:
        traj.optimizer = saved
        dm.config = cfg
    dm.unlearn(groups, name="rewind")  # a constant rate again: nothing skipped
    assert dm.last_rewind_skipped is None


def test_the_per_checkpoint_readout_is_an_option_of_the_newton_attribution(run, caplog):
    cfg, data, ws, dm = run
    targets = data.test[:6]
    default = dm.attribute(targets, "dist2", name="readout-logits")
    # without the class balance, which is not part of the readout
    dm.config = cfg.with_overrides(["emulate.readout=checkpoints", "emulate.other_class_scale=1"])
    per = dm.attribute(targets, "dist2", name="readout-checkpoints")
    assert torch.isfinite(per.weights).all() and not torch.allclose(per.weights, default.weights)
    # the readout is linear in the perturbation, so the regression recovers it: prediction == readout
    keep = ddm.emulate.sample_perturbations(dm.groups.num_groups, 3, 0.5, seed=9)
    from ddm.emulate.newton import newton_outputs
    used = dm._attribution_synset(dm.synset, "groups")  # the groups' own gradients, at every checkpoint
    assert used.group_gradients is not None and len(used.checkpoints) == len(dm.synset.checkpoints)
    exact = newton_outputs(dm.model, dm.trajectory.final, used, ~keep, targets.x,
                           lambda z: torch.nn.functional.cross_entropy(z, targets.y, reduction="none")[:, None],
                           trajectory=dm.trajectory, decay=dm.decay(dm.groups))
    assert torch.allclose(per.predict(keep), exact, atol=1e-4)
    caplog.set_level("INFO")
    acc = dm.attribute(data.test[:30], "accuracy", name="readout-accuracy")  # argmax: no derivative, falls back
    assert "read out instead" in caplog.text
    dm.config = cfg
    assert torch.allclose(acc.weights, dm.attribute(data.test[:30], "accuracy", name="acc-logits").weights)
    with pytest.raises(ConfigError, match="emulate.readout"):
        cfg.with_overrides(["emulate.readout=sideways"])


def test_the_prior_shift_lowers_the_bias_of_a_class_by_the_log_of_the_data_it_keeps(run):
    cfg, data, ws, dm = run
    a, b = 0, 1  # one group of each (the tiny preset has 2 per class): both classes keep data
    ga = torch.nonzero(dm.groups.labels == a).flatten()[:1]
    gb = torch.nonzero(dm.groups.labels == b).flatten()[:1]
    removed = torch.cat([ga, gb]).tolist()
    sizes = dm.groups.sizes()
    base = ["emulate.unlearn_backoff=0", "emulate.unlearn_rewind=0"]
    dm.config = cfg.with_overrides([*base, "emulate.unlearn_prior_shift=0"])
    off = dict(dm.unlearn(removed, name="no-shift").named_parameters())["classifier.bias"]
    dm.config = cfg.with_overrides([*base, "emulate.unlearn_prior_shift=0.5"])
    on = dict(dm.unlearn(removed, name="shift").named_parameters())["classifier.bias"]
    dm.config = cfg
    expected = torch.zeros(data.num_classes)
    for c, rows in ((a, ga), (b, gb)):
        total = sizes[dm.groups.labels == c].sum().item()
        expected[c] = 0.5 * math.log((total - sizes[rows].sum().item()) / total)
    assert torch.allclose(on - off, expected, atol=1e-5)
    assert expected[a] < 0 and expected[b] < 0 and (expected != 0).sum() == 2  # untouched classes keep their bias
    with pytest.raises(ddm.exceptions.ConfigError, match="unlearn_prior_shift"):
        cfg.with_overrides(["emulate.unlearn_prior_shift=-1"])


def test_a_resumed_distillation_stage_counts_the_killed_process_too(tmp_path, monkeypatch, killed_at_write):
    import ddm.distill.head as head_mod

    cfg = presets.tiny().with_overrides(["hierarchical=false", "distill.iterations=6", "distill.checkpoint_every=2",
                                         "distill.tolerance=0"])
    data = ddm.data.load(cfg.data)
    clock = iter(range(0, 10**9, 500))  # the first process "spends" >= 500 s ...
    monkeypatch.setattr(head_mod.time, "perf_counter", lambda: float(next(clock)))
    with killed_at_write(head_mod, 1):  # ... then dies writing its second checkpoint
        ddm.DistilledDatamodel(tmp_path, cfg).fit(ddm.models.build(cfg.model, data), data.train)
    monkeypatch.undo()
    dm = ddm.DistilledDatamodel(tmp_path, cfg).fit(ddm.models.build(cfg.model, data), data.train)
    assert dm.ws.require("synset")["seconds"] >= 500  # the killed process's (fake) seconds are included


def test_a_new_target_set_reuses_the_fine_tuned_models(tmp_path, monkeypatch):
    import ddm.emulate.batched as batched

    cfg = presets.tiny().with_overrides([*presets.recipe("local-free"), "distill.iterations=5",
                                         "emulate.backend=loop"])
    data = ddm.data.load(cfg.data)
    dm = ddm.DistilledDatamodel(tmp_path, cfg).fit(ddm.models.build(cfg.model, data), data.train)
    first = dm.attribute(data.test[:3], "dist2")
    assert first.meta["reused"] == []

    def no_finetuning(*a, **k):
        raise AssertionError("a new target set must not fine-tune again")

    monkeypatch.setattr(batched, "finetune_reference", no_finetuning)
    monkeypatch.setattr(batched, "finetune_batched", no_finetuning)
    second = dm.attribute(data.test[:5], "dist2")  # other targets: forward passes through the stored models
    assert second.meta["reused"] == ["models"]
    assert torch.allclose(second.weights[:3], first.weights, atol=1e-5)  # same emulated models, same rows
    third = dm.attribute(data.test[:5], "dist2")
    assert third.meta["reused"] == ["logits"]


def test_results_do_not_depend_on_the_mode_the_model_was_left_in(tmp_path):
    """A user model with dropout, handed over in train mode: every stage reads it in eval mode, and the
    model goes back in the caller's mode."""
    cfg = presets.tiny().with_overrides(["distill.iterations=5"])
    data = ddm.data.load(cfg.data)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                                torch.nn.Linear(32, 10))
    model.train()
    dm = ddm.DistilledDatamodel(tmp_path, cfg).fit(model, data.train)
    assert model.training  # given back as it came
    seen = []
    model[3].register_forward_pre_hook(lambda mod, inp: seen.append(mod.training))
    a = dm.attribute(data.test[:3], "dist2", name="a")
    dm.unlearn([0, 1])
    assert model.training and seen and not any(seen)  # read in eval mode, handed back in train mode
    model.eval()
    b = dm.attribute(data.test[:3], "dist2", name="b")
    assert not model.training and torch.equal(a.weights, b.weights)


def test_a_batch_norm_model_reopens_with_its_running_statistics(tmp_path, caplog):
    """A trajectory holds parameters only; the running statistics of theta_tau are stored with the train stage, so
    a reopened workspace's model gives the trained model's outputs and the same attribution."""
    cfg = presets.tiny().with_overrides(["model.norm=batchnorm", "distill.iterations=5"])
    data = ddm.data.load(cfg.data)
    dm = ddm.DistilledDatamodel(tmp_path, cfg).fit(ddm.models.build(cfg.model, data), data.train)
    a = dm.attribute(data.test[:3], "dist2", name="a")
    reopened = ddm.DistilledDatamodel(tmp_path, cfg).load()
    stats = dict(reopened.model.named_buffers())
    assert any(k.endswith("running_var") for k in stats) and not torch.equal(stats["features.1.running_var"],
                                                                             torch.ones_like(stats["features.1.running_var"]))
    assert not reopened.model.training  # load() builds an inference model; fit() handed ours back as it came
    with torch.no_grad():
        assert torch.equal(reopened.model(data.test.x), dm.model.eval()(data.test.x))  # the running statistics
    assert torch.equal(reopened.attribute(data.test[:3], "dist2", name="b").weights, a.weights)
    # a workspace whose train stage holds the parameters only (as before ddm stored buffers) says so
    stored = tmp_path / "train" / "model.safetensors"
    save_tensors(stored, {k: v for k, v in load_tensors(stored).items() if "running" not in k})
    with caplog.at_level("WARNING"):
        ddm.DistilledDatamodel(tmp_path, cfg).load()
    assert "holds no value for the model's buffers" in caplog.text


def test_unlearning_every_group_of_a_class_removes_the_class(run):
    cfg, data, ws, dm = run
    dm.config = cfg.with_overrides(["emulate.unlearn_rewind=0"])  # the other classes' predictions stay theta_tau's
    groups = torch.nonzero(dm.groups.labels == 3).flatten().tolist()
    model = dm.unlearn(groups, name="class3")
    assert dm.last_classes_without_data == [3]
    with torch.no_grad():
        before, after = dm.model(data.test.x).argmax(1), model(data.test.x).argmax(1)
    assert not (after == 3).any()  # never predicted, as retraining without any of its data
    # the other classes keep their predictions about as well as exact retraining without the class keeps them
    # (the tiny model's predictions are near ties: retraining changes a fifth of them)
    from ddm.evaluation.retrain import RetrainCache

    cache = RetrainCache(ws / "retrain-test", dm.model, dm.trajectory[0], data.train, dm.groups, cfg.train,
                         data.test.x)
    exact = cache.get(groups).argmax(1)
    others = data.test.y != 3
    agree = (after[others] == before[others]).float().mean()
    assert agree >= (exact[others] == before[others]).float().mean() - 0.05 and agree > 0.5
    # a few of its groups only: the class stays
    dm.unlearn(groups[:1], name="one-group")
    assert dm.last_classes_without_data == []
    # the class-level synset: the same rule
    dm.unlearn([3], name="class3-cls", synset="classes")
    assert dm.last_classes_without_data == [3]
    dm.config = cfg


def test_per_target_attributions_weigh_the_targets_own_class_more(run):
    cfg, data, ws, dm = run
    targets = data.test[:6]
    assert dm.config.emulate.other_class_scale == 0.5  # the default
    balanced = dm.attribute(targets, "dist2", name="balanced")
    dm.config = cfg.with_overrides(["emulate.other_class_scale=1"])
    try:
        plain = dm.attribute(targets, "dist2", name="plain")
        acc_plain = dm.attribute(data.test[:20], "accuracy", name="acc-plain")
    finally:
        dm.config = cfg
    own = (dm.groups.labels[None, :] == targets.y[:, None]).float()[..., None]
    torch.testing.assert_close(balanced.weights, plain.weights * (0.5 + 0.5 * own))
    assert balanced.meta["other_class_scale"] == 0.5 and plain.meta["other_class_scale"] == 1.0
    # an objective of the whole set has no target class: never scaled
    acc = dm.attribute(data.test[:20], "accuracy", name="acc")
    torch.testing.assert_close(acc.weights, acc_plain.weights)
    # per call; the diagnosis of low-quality data asks with its own balance (the one its thresholds were chosen with)
    torch.testing.assert_close(dm.attribute(targets, "dist2", name="plain2", other_class_scale=1.0).weights,
                               plain.weights)
    from ddm.diagnosis import DIAGNOSIS_CLASS_BALANCE, diagnose

    diag = diagnose(dm, data.test[:20])
    torch.testing.assert_close(diag.quality, dm.attribute(data.test[:20], "dist2", name="d",
                                                          other_class_scale=DIAGNOSIS_CLASS_BALANCE).scores.sum(0))
    unbalanced = diagnose(dm, data.test[:20], other_class_scale=1.0)
    torch.testing.assert_close(unbalanced.quality, dm.attribute(data.test[:20], "dist2", other_class_scale=1.0,
                                                                name="d1").scores.sum(0))
    assert not torch.allclose(diag.quality, unbalanced.quality)
    with pytest.raises(ConfigError, match="other_class_scale"):
        cfg.with_overrides(["emulate.other_class_scale=0"])
    with pytest.raises(ConfigError, match="other_class_scale"):
        dm.attribute(targets, "dist2", other_class_scale=1.5)


def test_adamw_trains_with_decoupled_decay_which_the_newton_step_leaves_out(tmp_path, caplog):
    from ddm.train.loop import make_optimizer

    cfg = presets.tiny().with_overrides(["hierarchical=false", "distill.iterations=2", "train.optimizer=adamw",
                                         "train.lr=0.003", "train.weight_decay=0.05"])
    data = ddm.data.load(cfg.data)
    model = ddm.models.build(cfg.model, data)
    opt = make_optimizer(model, cfg.train)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["weight_decay"] == 0.05
    own = ddm.DistilledDatamodel(tmp_path / "own", cfg).fit(model, data.train)
    assert own.trajectory.optimizer["type"] == "adamw" and own.weight_decay == 0.0
    top = own.synset.curvature.top_eigenvalue()  # no L2 term in the damping: only the configured fraction
    assert float(own.synset.damping) == pytest.approx(cfg.distill.damping * top, rel=1e-4)
    assert own.decay(own.groups) is None
    def own_loop(name, optimizer):
        """Two full-batch steps of a user's loop with ``optimizer(model)``, recorded and handed to ``fit``."""
        model = ddm.models.build(cfg.model, data)
        rec = TrajectoryRecorder(model)
        opt = optimizer(model)
        rec.attach(opt, every_steps=1)
        for _ in range(2):
            loss = torch.nn.functional.cross_entropy(model(data.train.x), data.train.y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return ddm.DistilledDatamodel(tmp_path / name, cfg.with_overrides(["train.optimizer=sgd",
                                                                          "train.weight_decay=0"])
                                      ).fit(model, data.train, trajectory=rec.trajectory())

    # a user's own loop with torch.optim.AdamW, recorded: the same, without a warning about an unrecorded decay
    with caplog.at_level("WARNING"):
        handed = own_loop("handed", lambda m: torch.optim.AdamW(m.parameters(), lr=0.003, weight_decay=0.05))
    assert handed.trajectory.optimizer["type"] == "adamw" and handed.weight_decay == 0.0
    assert "weight decay" not in caplog.text
    # parameter groups as timm makes them (decay on weight matrices only, the optimizer's default 0): the head's
    # weight decayed, so the Newton step takes its decay, not the default's 0
    grouped = own_loop("grouped", lambda m: torch.optim.SGD(
        [{"params": [p for p in m.parameters() if p.ndim > 1], "weight_decay": 5e-3},
         {"params": [p for p in m.parameters() if p.ndim <= 1], "weight_decay": 0.0}], lr=0.05))
    assert grouped.trajectory.optimizer["weight_decay"] == 0 and grouped.weight_decay == 5e-3
    assert grouped.decay(grouped.groups) is not None
    # ddm info says what it read, for a user to check
    from ddm.cli.info import optimizer_line

    assert optimizer_line(grouped.ws) == ("trained by your own loop (trajectory handed in): sgd, lr 0.05; weight "
                                          "decay 0.005, of the head's among 2 parameter groups")
    assert "0.05 decoupled (no L2 term" in optimizer_line(handed.ws)
    assert optimizer_line(own.ws).startswith("trained by ddm's loop: adamw, lr 0.003;")


def test_the_schedule_term_adds_a_retrains_fewer_steps_in_proportion_to_the_data_removed(run):
    from ddm.attribution.schedule import schedule_slope

    cfg, data, ws, dm = run
    targets = data.test[:5]
    base = dm.config
    plain = dm.attribute(targets, "dist2", name="plain")
    assert plain.meta.get("schedule_weight") is None  # off by default: the attribution as it was
    slope = schedule_slope(dm.model, dm.trajectory, targets.x, targets.y, ddm.objectives.get("dist2"))
    assert slope is not None and slope.shape == (5, 1) and torch.isfinite(slope).all()
    # the slope is the loss at the recorded epoch tau / 2 minus at theta_tau, per unit of removed fraction
    half = dm.trajectory.at_epoch(dm.trajectory.epochs[-1] / 2)
    with torch.no_grad():
        loss = [torch.nn.functional.cross_entropy(torch.func.functional_call(dm.model.eval(), p, (targets.x,)),
                                                  targets.y, reduction="none") for p in (half, dm.trajectory.final)]
    assert torch.allclose(slope[:, 0], 2 * (loss[0] - loss[1]), atol=1e-5)
    try:
        dm.config = base.with_overrides(["emulate.schedule_weight=0.3"])
        with_term = dm.attribute(targets, "dist2", name="schedule")
        hier = dm.attribute(targets, "dist2", hierarchical=True, name="schedule-h")
    finally:
        dm.config = base
    assert with_term.meta["schedule_weight"] == 0.3 and hier.meta["schedule_weight"] == 0.3
    share = dm.groups.sizes().float() / dm.groups.sizes().sum()
    keep = torch.rand(7, 20, generator=torch.Generator().manual_seed(0)) < 0.5
    removed = (~keep).float() @ share
    expected = plain.predict(keep) + 0.3 * removed[:, None, None] * slope[None]
    assert torch.allclose(with_term.predict(keep), expected, atol=1e-5)
    every = torch.ones(1, 20, dtype=torch.bool)
    assert torch.allclose(with_term.predict(every), plain.predict(every), atol=1e-5)  # the full data's: unchanged
    assert torch.allclose(with_term.scores, -with_term.weights[..., 0])  # scores follow: the loss increase
    with pytest.raises(ConfigError, match="schedule_weight must be >= 0"):
        base.with_overrides(["emulate.schedule_weight=-1"])


def test_the_emulation_damping_scale_multiplies_every_stored_damping_and_nothing_else(run):
    cfg, data, ws, dm = run
    targets = data.test[:6]
    syn = dm.synset
    assert syn.damped(1.0) is syn
    big = syn.damped(10.0)
    assert float(big.damping) == pytest.approx(10 * float(syn.damping))
    assert [c.damping for c in big.checkpoints] == pytest.approx([10 * c.damping for c in syn.checkpoints])
    assert torch.equal(big.images, syn.images) and float(dm.synset.damping) == float(syn.damping)  # a view
    default = dm.attribute(targets, "dist2", name="damping-default")
    dm.config = cfg.with_overrides(["emulate.damping_scale=10"])
    try:
        damped = dm.attribute(targets, "dist2", name="damping-x10")
    finally:
        dm.config = cfg
    assert torch.isfinite(damped.weights).all() and not torch.allclose(damped.weights, default.weights)
    # a larger damping shortens every group's step: the emulated effects shrink
    assert float(damped.weights.abs().mean()) < float(default.weights.abs().mean())
    assert torch.equal(dm.attribute(targets, "dist2", name="damping-default").weights, default.weights)
    with pytest.raises(ConfigError, match="emulate.damping_scale"):
        cfg.with_overrides(["emulate.damping_scale=0"])


def test_long_removals_never_share_an_unlearned_folder(tmp_path):
    """The default folder of an unlearned model spells out the ids; past UNLEARNED_NAME_MAX characters it names the
    first 8, how many more and a digest, so two long removals that begin alike get folders of their own (the default
    was cut at 80 characters: 0..94 and 0..95 shared one, and the second overwrote the first)."""
    from ddm.pipeline import UNLEARNED_NAME_MAX

    dm = ddm.DistilledDatamodel(tmp_path / "ws", presets.tiny())
    assert dm.unlearn_folder([3, 17]).name == "groups-3-17"
    assert dm.unlearn_folder([3, 17], synset="classes", prefix="relabel-").name == "relabel-classes-3-17"
    a, b = (dm.unlearn_folder(list(range(n)), prefix="relabel-").name for n in (95, 96))
    assert a != b and a.startswith("relabel-groups-0-1-2-3-4-5-6-7-and-87-more-") and "-and-88-more-" in b
    assert max(len(a), len(b)) <= UNLEARNED_NAME_MAX
    assert dm.unlearn_folder(list(range(95)), name="mine").name == "mine"
    again = dm.unlearn_folder(list(range(95)), prefix="relabel-").name
    assert again == a  # the same removal, the same folder
