import pytest
import torch

import ddm
from ddm.config import TrainConfig
from ddm.exceptions import ConfigError
from ddm.train import Trajectory, TrajectoryRecorder, accuracy, train_model


def test_trajectory_records_theta0_and_every_epoch(trained, digits):
    model, traj = trained
    assert len(traj) == 4 and traj.epochs == [0.0, 1.0, 2.0, 3.0]
    final = dict(model.named_parameters())
    for k, v in traj.final.items():
        assert torch.equal(v, final[k].detach())
    assert not torch.equal(traj[0]["classifier.weight"], traj.final["classifier.weight"])
    assert accuracy(model, digits.test) > 0.3  # it learned something in 3 epochs


def test_save_every_keeps_first_and_last(digits):
    model = ddm.models.build("mlp", digits, width=16, depth=1)
    traj = train_model(model, digits.train, TrainConfig(epochs=5, save_every=2, lr=0.1))
    assert traj.epochs == [0.0, 2.0, 4.0, 5.0]


def test_interrupted_training_resumes_to_the_same_weights(digits, tmp_path):
    cfg = TrainConfig(epochs=4, lr=0.1, momentum=0.9, batch_size=32)
    full = train_model(ddm.models.build("mlp", digits, width=16, depth=1), digits.train, cfg)
    # "kill" after 2 epochs: a 2-epoch run leaves the same checkpoints and progress a killed run would
    first = TrainConfig(epochs=2, lr=0.1, momentum=0.9, batch_size=32)
    train_model(ddm.models.build("mlp", digits, width=16, depth=1), digits.train, first, tmp_path)
    resumed = train_model(ddm.models.build("mlp", digits, width=16, depth=1), digits.train, cfg, tmp_path)
    assert resumed.epochs == full.epochs
    for k in full.final:
        assert torch.allclose(resumed.final[k], full.final[k], atol=1e-6)
    loaded = Trajectory.load(tmp_path)
    assert len(loaded) == 5 and torch.equal(loaded.final["net.1.weight"], resumed.final["net.1.weight"])


def test_recorder_attaches_to_a_users_own_loop(digits, tmp_path):
    model = ddm.models.build("mlp", digits, width=16, depth=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rec = TrajectoryRecorder(model, tmp_path)
    rec.attach(opt, every_steps=5, steps_per_epoch=10)
    for i in range(20):
        sl = slice(i * 8, (i + 1) * 8)
        loss = torch.nn.functional.cross_entropy(model(digits.train.x[sl]), digits.train.y[sl])
        opt.zero_grad()
        loss.backward()
        opt.step()
    rec.detach()
    traj = rec.trajectory(lr=1e-3)
    assert traj.epochs == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert torch.equal(traj.final["net.1.weight"], model.net[1].weight.detach())
    assert len(Trajectory.load(tmp_path)) == 5


def test_a_batch_norm_models_running_statistics_are_recorded_at_every_checkpoint(digits, tmp_path):
    model = ddm.models.build("convnet", digits, width=8, depth=2, norm="batchnorm")
    traj = train_model(model, digits.train, TrainConfig(epochs=3, lr=0.1, batch_size=32), tmp_path)
    assert traj.buffers is not None and len(traj.buffers) == len(traj) == 4
    var = [b["features.1.running_var"] for b in traj.buffers]
    assert torch.equal(var[0], torch.ones_like(var[0])) and not torch.equal(var[1], var[3])
    assert torch.equal(var[-1], model.features[1].running_var)  # the last one is the model's
    loaded = Trajectory.load(tmp_path)
    assert torch.equal(loaded.checkpoint(1)["features.1.running_var"], var[1])
    assert torch.equal(loaded.checkpoint(1)["features.0.weight"], traj.params[1]["features.0.weight"])
    # read as it was: the checkpoint's eval-mode outputs with its own statistics, not theta_tau's
    x = digits.test.x[:16]
    own = torch.func.functional_call(model.eval(), loaded.checkpoint(1), (x,))
    mixed = torch.func.functional_call(model, loaded.params[1], (x,))
    assert not torch.allclose(own, mixed)
    mid = loaded.at_epoch(1.5)  # the unlearning's rewind reads running statistics of that epoch too
    assert torch.allclose(mid["features.1.running_var"], (var[1] + var[2]) / 2)
    assert mid["features.1.num_batches_tracked"] == traj.buffers[2]["features.1.num_batches_tracked"]
    rec = TrajectoryRecorder(model)
    rec.record(0)
    rec.record(1)
    assert rec.trajectory(lr=0.1).buffers[0]["features.1.running_var"].shape == var[0].shape
    plain = train_model(ddm.models.build("mlp", digits, width=8, depth=1), digits.train, TrainConfig(epochs=1))
    assert plain.buffers is None and plain.checkpoint(1) is plain.params[1]  # nothing to record: as before


def test_attaching_without_a_step_count_takes_only_the_optimizers_settings(digits):
    model = ddm.models.build("mlp", digits, width=16, depth=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    rec = TrajectoryRecorder(model)
    rec.attach(opt)                      # no snapshots of its own: the loop below records once per epoch
    rec.record(0)
    for epoch in (1, 2):
        loss = torch.nn.functional.cross_entropy(model(digits.train.x[:64]), digits.train.y[:64])
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec.record(epoch)
    traj = rec.trajectory()
    assert traj.epochs == [0.0, 1.0, 2.0] and traj.lr == 0.05
    assert traj.optimizer == {"type": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "decay": "l2"}
    with pytest.raises(ConfigError, match="every_steps must be a positive"):
        rec.attach(opt, every_steps=0)
    # a scheduler changes the rate as the loop goes: recorded as a schedule (the unlearning's rewind is then off)
    opt2 = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt2, T_max=3)
    rec2 = TrajectoryRecorder(model)
    rec2.attach(opt2)
    rec2.record(0)
    for epoch in (1, 2, 3):
        loss = torch.nn.functional.cross_entropy(model(digits.train.x[:64]), digits.train.y[:64])
        opt2.zero_grad()
        loss.backward()
        opt2.step()
        sched.step()
        rec2.record(epoch)
    t2 = rec2.trajectory()
    assert t2.optimizer["schedule"] == "varying" and t2.optimizer["lr_range"][1] == pytest.approx(0.05)
    assert t2.optimizer["lr_range"][0] < 0.05


@pytest.mark.parametrize("optimizer, schedule", [("sgd", "constant"), ("adam", "constant"), ("sgd", "cosine")])
def test_a_kill_at_any_write_resumes_to_bit_identical_weights(digits, tmp_path, killed_at_write, optimizer,
                                                              schedule):
    """Kill the training at every file write in turn (between the checkpoint and the resume state of one
    epoch included); the resumed run must equal the uninterrupted one bit for bit (under a learning-rate schedule
    too: the rate is a function of the step)."""
    import ddm.train.loop as loop

    lr = 0.1 if optimizer == "sgd" else 0.01
    cfg = TrainConfig(epochs=3, lr=lr, momentum=0.9 if optimizer == "sgd" else 0.0, batch_size=64,
                      optimizer=optimizer, schedule=schedule)

    def build():
        return ddm.models.build("mlp", digits, width=8, depth=1)

    full = train_model(build(), digits.train, cfg, tmp_path / "full")
    assert full.optimizer["type"] == optimizer
    writes = 1 + 2 * cfg.epochs  # theta_0, then a checkpoint and the resume state per epoch
    for kill_at in range(writes):
        folder = tmp_path / f"kill{kill_at}"
        with killed_at_write(loop, kill_at):
            train_model(build(), digits.train, cfg, folder)
        resumed = train_model(build(), digits.train, cfg, folder)
        assert resumed.epochs == full.epochs
        for a, b in zip(resumed.params, full.params, strict=True):
            assert all(torch.equal(a[k], b[k]) for k in a), kill_at


def test_the_cosine_schedule_anneals_the_rate_to_zero_over_the_run(digits):
    cfg = TrainConfig(epochs=2, lr=0.2, batch_size=64, schedule="cosine")
    assert cfg.lr_at(0, 100) == pytest.approx(0.2) and cfg.lr_at(50, 100) == pytest.approx(0.1)
    assert cfg.lr_at(100, 100) == pytest.approx(0.0, abs=1e-12)
    assert TrainConfig(lr=0.2).lr_at(99, 100) == 0.2
    seen = []
    real_step = torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    torch.optim.SGD.step = spy
    try:
        traj = train_model(ddm.models.build("mlp", digits, width=8, depth=1), digits.train, cfg)
    finally:
        torch.optim.SGD.step = real_step
    steps = 2 * -(-len(digits.train) // 64)
    assert len(seen) == steps and seen[0] == pytest.approx(0.2)
    assert seen[-1] == pytest.approx(cfg.lr_at(steps - 1, steps)) and 0 < seen[-1] < 0.2 * 0.05
    assert all(a > b for a, b in zip(seen[:-1], seen[1:], strict=True))  # decreasing, step by step
    assert traj.optimizer["schedule"] == "cosine" and "schedule" not in TrainConfig().optimizer_record()
    with pytest.raises(ddm.exceptions.ConfigError, match="train.schedule"):
        TrainConfig(schedule="linear")


def test_a_resumed_training_counts_the_time_of_every_process(digits, tmp_path, monkeypatch, killed_at_write):
    import itertools
    import json

    from safetensors import safe_open

    import ddm.train.loop as loop

    clock = itertools.count(0.0, 1.0)  # one "second" per reading: deterministic
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(clock))
    cfg = TrainConfig(epochs=3, lr=0.1, batch_size=64)
    with killed_at_write(loop, 3):  # theta_0, theta_1, resume after epoch 1: die before theta_2
        train_model(ddm.models.build("mlp", digits, width=8, depth=1), digits.train, cfg, tmp_path)
    with safe_open(str(tmp_path / loop.RESUME), "pt") as fh:
        first = json.loads(fh.metadata()["progress"])["seconds"]
    resumed = train_model(ddm.models.build("mlp", digits, width=8, depth=1), digits.train, cfg, tmp_path)
    assert first > 0 and resumed.seconds > first


@pytest.mark.parametrize("last_batch, sizes", [("keep", [64, 64, 64, 8]), ("balanced", [50, 50, 50, 50])])
def test_the_last_partial_batch_is_kept_or_balanced(digits, last_batch, sizes):
    model = ddm.models.build("mlp", digits, width=16, depth=1)
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(len(args[0])) if m.training else None)
    train_model(model, digits.train, TrainConfig(epochs=2, batch_size=64, last_batch=last_batch))
    assert len(digits.train) == 200 and seen == sizes * 2  # every sample once per epoch either way


def test_an_unknown_last_batch_rule_is_refused():
    with pytest.raises(ddm.exceptions.ConfigError, match="train.last_batch"):
        TrainConfig(last_batch="drop")
    assert TrainConfig().last_batch == "balanced"
    assert "last_batch" not in ddm.config.keyed(TrainConfig(last_batch="keep"))  # caches made before stay valid
    assert ddm.config.keyed(TrainConfig())["last_batch"] == "balanced"


def test_a_subsampled_training_takes_a_half_data_retrains_steps_over_all_the_samples(digits):
    """``subsample``: each epoch takes the first share of its order, so the steps are a half-data retrain's while every
    sample stays in play across epochs (the schedule diagnostics' retrain)."""
    model = ddm.models.build("mlp", digits, width=16, depth=1)
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()) if m.training else None)
    train_model(model, digits.train, TrainConfig(epochs=4, batch_size=64), subsample=0.5)
    half = ddm.models.build("mlp", digits, width=16, depth=1)
    sizes: list[int] = []
    half.register_forward_pre_hook(lambda m, args: sizes.append(len(args[0])) if m.training else None)
    train_model(half, digits.train[torch.arange(100)], TrainConfig(epochs=4, batch_size=64))
    assert [len(x) for x in seen] == sizes == [50, 50] * 4  # the steps of a retrain on 100 of the 200 samples
    distinct = {tuple(r.flatten().tolist()) for r in torch.cat(seen)}
    assert len(distinct) > 100  # other samples in other epochs: not a fixed half
    with pytest.raises(ValueError, match="subsample"):
        train_model(ddm.models.build("mlp", digits, width=16, depth=1), digits.train, TrainConfig(epochs=1),
                    subsample=0)


def test_dropout_masks_are_seeded_so_a_retrain_and_a_resumed_run_give_the_target_back(digits, tmp_path):
    def net():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                   torch.nn.Dropout(0.5), torch.nn.Linear(32, 10))

    cfg = TrainConfig(epochs=3, lr=0.1, batch_size=64)
    m = net()
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = train_model(m, digits.train, cfg).final
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's RNG is left as it was
    m = net()
    torch.manual_seed(999)  # another global RNG state: the masks must not depend on it
    b = train_model(m, digits.train, cfg).final
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the masks are drawn: another training seed gives other weights
    other = train_model(net(), digits.train, TrainConfig(epochs=3, lr=0.1, batch_size=64, seed=1)).final
    assert not torch.equal(a["1.weight"], other["1.weight"])
    # a run killed after 2 epochs and resumed draws the masks the whole run drew
    train_model(net(), digits.train, TrainConfig(epochs=2, lr=0.1, batch_size=64), tmp_path)
    resumed = train_model(net(), digits.train, cfg, tmp_path).final
    assert all(torch.equal(a[k], resumed[k]) for k in a)


def test_the_recorder_reads_decoupled_decay_and_the_decay_of_each_parameter_group(digits, caplog):
    from ddm.train.trajectory import optimizer_record, recorded_weight_decay

    model = ddm.models.build("mlp", digits, width=16, depth=1)
    head = "net.3.weight"
    assert head in dict(model.named_parameters())
    # an L2 term (SGD, Adam) or a decay apart from the gradient (AdamW, Adam with decoupled_weight_decay=True)
    for opt, decay, wd in [(torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=5e-4), "l2", 5e-4),
                           (torch.optim.Adam(model.parameters(), weight_decay=0.05), "l2", 0.05),
                           (torch.optim.RMSprop(model.parameters(), weight_decay=1e-3), "l2", 1e-3),
                           (torch.optim.AdamW(model.parameters(), weight_decay=0.05), "decoupled", 0.0),
                           (torch.optim.Adam(model.parameters(), weight_decay=0.05, decoupled_weight_decay=True),
                            "decoupled", 0.0),
                           (torch.optim.NAdam(model.parameters(), weight_decay=0.05, decoupled_weight_decay=True),
                            "decoupled", 0.0)]:
        record = optimizer_record(opt, model)
        assert record["decay"] == decay and "param_groups" not in record
        assert recorded_weight_decay(record, head) == pytest.approx(wd)
    # timm's parameter groups: decay on the weight matrices only, the optimizer's own default 0
    params = list(model.parameters())
    opt = torch.optim.SGD([{"params": [p for p in params if p.ndim > 1], "weight_decay": 5e-4},
                           {"params": [p for p in params if p.ndim == 1], "weight_decay": 0.0}], lr=0.1, momentum=0.9)
    rec = TrajectoryRecorder(model)
    rec.attach(opt)
    rec.record(0)
    rec.record(1)
    record = rec.trajectory().optimizer
    assert record["weight_decay"] == 0 and len(record["param_groups"]) == 2
    assert head in record["param_groups"][0]["params"] and "net.3.bias" in record["param_groups"][1]["params"]
    assert recorded_weight_decay(record, head) == 5e-4 and recorded_weight_decay(record, "net.3.bias") == 0.0
    assert recorded_weight_decay(record, None) == 0.0  # no parameter named: the default
    assert recorded_weight_decay(None) is None and recorded_weight_decay({"type": "sgd"}) is None

    # an optimizer ddm does not know: taken for an L2 term, with a warning, unless the user says
    class Lion(torch.optim.Optimizer):
        def __init__(self, params, lr=1e-4, weight_decay=0.0):
            super().__init__(params, {"lr": lr, "weight_decay": weight_decay})

    with caplog.at_level("WARNING"):
        record = optimizer_record(Lion(model.parameters(), weight_decay=0.1), model)
    assert record["decay"] == "unknown" and recorded_weight_decay(record, head) == 0.1
    assert "cannot tell whether Lion's weight decay" in caplog.text and "decoupled_decay" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        record = optimizer_record(Lion(model.parameters(), weight_decay=0.1), model, decoupled_decay=True)
        quiet = optimizer_record(Lion(model.parameters()), model)  # no decay: nothing to tell
    assert record["decay"] == "decoupled" and recorded_weight_decay(record, head) == 0.0
    assert quiet["decay"] == "unknown" and caplog.text == ""
