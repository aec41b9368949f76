"""Reference unlearners (fine-tune on the rest, NegGrad+, the last layer retrained): what they do to the removed
and the kept data."""

from __future__ import annotations

import pytest
import torch

from ddm.baselines.unlearners import finetune_rest, neggrad_plus, retrain_head
from ddm.config import TrainConfig
from ddm.distill.head import Head
from ddm.exceptions import ConfigError
from ddm.train.loop import accuracy

CFG = TrainConfig(epochs=3, lr=0.1, batch_size=32)


def test_finetune_on_the_rest_forgets_an_absent_class_and_keeps_the_others(digits, trained):
    model, traj = trained
    keep = digits.train.y != 3
    gone, kept = digits.train[torch.nonzero(~keep).flatten()], digits.train[torch.nonzero(keep).flatten()]
    before = accuracy(model, gone)
    net = finetune_rest(model, traj.final, digits.train, keep, CFG, epochs=4)
    assert accuracy(net, gone) < before - 0.2  # a class the fine-tuning never sees loses ground
    assert accuracy(net, kept) >= accuracy(model, kept) - 0.05
    # the input model is untouched
    assert all(torch.equal(p, traj.final[k]) for k, p in model.named_parameters())


def test_neggrad_plus_pushes_the_removed_data_further_than_fine_tuning(digits, trained):
    model, traj = trained
    keep = torch.ones(len(digits.train), dtype=torch.bool)
    keep[:40] = False  # 40 mixed samples: fine-tuning alone keeps them (the model generalises to them)
    gone = digits.train[torch.arange(40)]
    ft = finetune_rest(model, traj.final, digits.train, keep, CFG, epochs=1)
    ng = neggrad_plus(model, traj.final, digits.train, keep, CFG, epochs=1, alpha=0.5)
    loss = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert loss(ng(gone.x), gone.y) > loss(ft(gone.x), gone.y) + 0.1
    # alpha 1 is fine-tuning on the rest, step for step
    same = neggrad_plus(model, traj.final, digits.train, keep, CFG, epochs=1, alpha=1.0)
    assert all(torch.equal(a, b) for a, b in zip(same.parameters(), ft.parameters(), strict=True))


def test_the_last_layer_retrained_without_a_class_never_predicts_it_and_nothing_else_moves(digits, trained):
    model, traj = trained
    keep = digits.train.y != 3
    kept = digits.train[torch.nonzero(keep).flatten()]
    net = retrain_head(model, traj.final, digits.train, keep, CFG, head_init=traj[0])
    with torch.no_grad():
        assert (net(digits.test.x).argmax(1) == 3).float().mean() < 0.02  # retraining never pushes class 3 up
    assert accuracy(net, kept) >= accuracy(model, kept) - 0.05  # theta_tau's features serve the other classes
    moved = {k for k, p in net.named_parameters() if not torch.equal(p, traj.final[k])}
    assert moved == set(Head.of(model).param_names)  # the last layer only


def test_the_last_layer_retrain_follows_the_training_schedule(digits, trained, monkeypatch):
    """The exact last-layer retrain replays the training's schedule (a cosine run anneals its rate to 0), as exact
    retraining does (``train_model``): the rate each step takes is the schedule's."""
    from dataclasses import replace

    import ddm.train.loop as loop

    model, traj = trained
    keep = digits.train.y != 3
    cosine = replace(CFG, schedule="cosine")
    seen = []
    real = loop.set_rate

    def spy(opt, cfg, step, total):
        real(opt, cfg, step, total)
        seen.append(opt.param_groups[0]["lr"])

    monkeypatch.setattr("ddm.baselines.unlearners.set_rate", spy)
    annealed = retrain_head(model, traj.final, digits.train, keep, cosine, head_init=traj[0])
    assert seen[0] == pytest.approx(0.1) and seen[-1] == pytest.approx(cosine.lr_at(len(seen) - 1, len(seen)))
    assert all(a > b for a, b in zip(seen[:-1], seen[1:], strict=True))
    seen.clear()
    flat = retrain_head(model, traj.final, digits.train, keep, CFG, head_init=traj[0])
    assert set(seen) == {0.1}  # constant: train.lr throughout, as before
    w = Head.of(model).param_names[0]
    assert not torch.allclose(dict(annealed.named_parameters())[w], dict(flat.named_parameters())[w])


def test_a_fractional_budget_takes_that_share_of_an_epoch(digits, trained):
    model, traj = trained
    keep = torch.ones(len(digits.train), dtype=torch.bool)
    a = finetune_rest(model, traj.final, digits.train, keep, CFG, epochs=0.01)  # one step
    b = finetune_rest(model, traj.final, digits.train, keep, CFG, epochs=1)
    moved_a = sum((p - traj.final[k]).norm() for k, p in a.named_parameters())
    moved_b = sum((p - traj.final[k]).norm() for k, p in b.named_parameters())
    assert 0 < moved_a < moved_b


def test_bad_inputs_say_what_is_wrong(digits, trained):
    model, traj = trained
    n = len(digits.train)
    with pytest.raises(ConfigError, match="entries"):
        finetune_rest(model, traj.final, digits.train, torch.ones(n - 1, dtype=torch.bool), CFG)
    with pytest.raises(ConfigError, match="nothing is kept"):
        finetune_rest(model, traj.final, digits.train, torch.zeros(n, dtype=torch.bool), CFG)
    with pytest.raises(ConfigError, match="alpha"):
        neggrad_plus(model, traj.final, digits.train, torch.ones(n, dtype=torch.bool), CFG, alpha=0)
    with pytest.raises(ConfigError, match="removed data"):
        neggrad_plus(model, traj.final, digits.train, torch.ones(n, dtype=torch.bool), CFG, alpha=0.9)
    with pytest.raises(ConfigError, match="epochs"):
        finetune_rest(model, traj.final, digits.train, torch.ones(n, dtype=torch.bool), CFG, epochs=0)
