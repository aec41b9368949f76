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


def test_knn_labels_take_the_majority_of_the_nearest_reference_rows():
    from ddm.baselines.unlearners import knn_labels

    ref = torch.tensor([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]]).reshape(6, 1, 1, 1)
    ref_y = torch.tensor([0, 0, 1, 2, 2, 2])
    x = torch.tensor([[0.05], [5.05], [0.19]]).reshape(3, 1, 1, 1)
    assert knn_labels(x, ref, ref_y, k=3).tolist() == [0, 2, 0]
    assert knn_labels(x, ref, ref_y, k=1).tolist() == [0, 2, 1]
    assert knn_labels(x, ref, ref_y, k=3, chunk=1).tolist() == [0, 2, 0]  # chunking changes nothing
    assert knn_labels(x, ref, ref_y, k=3, agree=3).tolist() == [-1, 2, -1]  # unanimity asked: 0, 0, 1 is not
    with pytest.raises(ConfigError, match="no reference samples"):
        knn_labels(x, ref[:0], ref_y[:0])


def test_relabelled_split_takes_its_neighbours_in_another_space_where_given():
    """``space`` replaces the raw inputs as where the neighbours are found: the same split where it is the inputs,
    another where it places a removed sample among another class's kept samples."""
    from ddm.baselines.unlearners import relabelled_split
    from ddm.data.dataset import Split

    x = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4, 5.0, 5.1, 5.2, 5.3, 5.4, 0.05]).reshape(11, 1, 1, 1)
    train = Split(x, torch.tensor([0] * 5 + [1] * 5 + [0]), torch.arange(11))
    keep = torch.arange(11) < 10  # the last sample, class 0 among class 0's inputs, is removed
    plain, n = relabelled_split(train, keep)
    assert n == 0 and len(plain) == 10  # its neighbours agree with it: left out
    same, n_same = relabelled_split(train, keep, space=train.x.flatten(1))
    assert n_same == 0 and torch.equal(same.index, plain.index)
    elsewhere = train.x.flatten(1).clone()
    elsewhere[10] = 5.2  # in this space it sits among class 1
    moved, n_moved = relabelled_split(train, keep, space=elsewhere)
    assert n_moved == 1 and moved.index.tolist() == list(range(11)) and int(moved.y[10]) == 1


def test_soft_labels_go_to_removed_samples_whose_neighbours_are_split_and_never_to_those_all_alike():
    """A removed sample among its own class's kept samples stays out; one whose 4 of 5 nearest kept samples name
    another class is taught it; one among a split neighbourhood is taught the shares of its 10 nearest."""
    from ddm.baselines.unlearners import relabelled_targets
    from ddm.data.dataset import Split

    # class 0 at 0..1.1, class 1 at 10..11.1, and a mixed stretch around 5 (class 0 at 4.6..5.0, class 1 at 5.1..5.5)
    pos = [i / 10 for i in range(12)] + [10 + i / 10 for i in range(12)] + [4.6, 4.7, 4.8, 4.9, 5.0, 5.1, 5.2, 5.3, 5.4,
                                                                          5.5]
    y = [0] * 12 + [1] * 12 + [0] * 5 + [1] * 5
    pos += [0.55, 10.55, 5.05]  # removed: a 0 among 0s, a 0 among 1s, a 1 in the mixed stretch
    y += [0, 0, 1]
    n = len(pos)
    train = Split(torch.tensor(pos).reshape(n, 1, 1, 1), torch.tensor(y), torch.arange(n))
    keep = torch.arange(n) < n - 3
    r = relabelled_targets(train, keep, 2)
    assert r.relabelled == 1 and r.softened == 1
    assert r.split.index.tolist() == list(range(n - 3)) + [n - 2, n - 1]  # the 0 among 0s stays out
    assert r.targets[-2].tolist() == [0.0, 1.0]  # taught class 1 outright
    assert r.targets[-1].tolist() == pytest.approx([0.5, 0.5])  # the mixed stretch's 10 nearest: five of each
    where = train.x.flatten(1).clone()
    where[-1] = 10.6  # in another space the mixed stretch's 1 sits among class 1's kept samples: left out
    moved = relabelled_targets(train, keep, 2, space=where)
    assert moved.relabelled == 1 and moved.softened == 0 and moved.split.index.tolist()[-1] == n - 2
    hard = relabelled_targets(train, keep, 2, soft=0)
    assert hard.softened == 0 and hard.split.index.tolist() == list(range(n - 3)) + [n - 2]
    with pytest.raises(ConfigError, match="labels reach 1 with 1 classes"):
        relabelled_targets(train, keep, 1)


def test_relabelled_fine_tuning_never_trains_a_removed_sample_on_its_own_label(digits, trained, monkeypatch):
    """The removed samples whose nearest kept samples agree with their label are left out; the others are trained on
    with their neighbours' label, beside every kept sample."""
    from ddm.baselines import unlearners as U

    model, traj = trained
    train = digits.train
    y = train.y.clone()
    flipped = torch.nonzero(y == 1).flatten()[:10]
    y[flipped] = 7  # ten 1s labelled 7: their neighbours (kept 1s) say 1
    noisy = type(train)(train.x, y, train.index)
    keep = torch.ones(len(train), dtype=torch.bool)
    removed = torch.cat([flipped, torch.nonzero(y == 4).flatten()[:5]])  # and five clean 4s
    keep[removed] = False
    seen = {}

    def capture(model, params, split, keep_all, cfg, epochs, alpha, anneal, targets):
        seen["split"], seen["keep"], seen["alpha"], seen["anneal"] = split, keep_all, alpha, anneal
        seen["targets"] = targets
        return model

    monkeypatch.setattr(U, "neggrad_plus", capture)
    U.relabel_knn(model, traj.final, noisy, keep, CFG, soft=0)  # hard labels alone (the soft part: the next test)
    split = seen["split"]
    assert seen["alpha"] == 1.0 and bool(seen["keep"].all()) and seen["anneal"]
    rows = split.index.tolist()
    kept_rows = train.index[keep].tolist()
    assert rows[: len(kept_rows)] != [] and set(kept_rows) <= set(rows)  # every kept sample
    extra = sorted(set(rows) - set(kept_rows))
    assert extra and set(extra) <= set(train.index[flipped].tolist())  # mislabelled ones only, never the clean 4s
    labels = U.knn_labels(noisy.x[flipped], noisy.x[keep], noisy.y[keep], agree=U.RELABEL_AGREE)
    assert len(extra) == int((labels >= 0).sum())  # those whose neighbours agree (4 of 5) on another class
    by_row = dict(zip(rows, split.y.tolist(), strict=True))
    taught = [by_row[r] for r in extra]  # what their neighbours say: never the removed label
    assert 7 not in taught and taught == [int(v) for v in labels[labels >= 0].tolist()]
    assert rows == sorted(rows)  # in the training split's order
    assert torch.equal(seen["targets"], torch.nn.functional.one_hot(split.y, 10).float())  # one-hot: hard labels

    # soft labels: each removed sample left out above of which some of its 10 nearest kept samples carry another
    # class is taught their label shares; one whose 10 neighbours all carry its own class stays out
    U.relabel_knn(model, traj.final, noisy, keep, CFG)
    split, targets = seen["split"], seen["targets"]
    assert U.RELABEL_SOFT_NEIGHBOURS == 10
    gone = torch.nonzero(~keep).flatten()
    hard = U.knn_labels(noisy.x[gone], noisy.x[keep], noisy.y[keep], agree=U.RELABEL_AGREE)
    votes = U.knn_votes(noisy.x[gone], noisy.x[keep], noisy.y[keep], 10, 10)
    own = votes.gather(1, noisy.y[gone][:, None])[:, 0]
    moved = (hard >= 0) & (hard != noisy.y[gone])
    softened = ~moved & (own < 1)
    assert softened.any() and moved.any()
    expected = sorted(train.index[keep].tolist() + train.index[gone[moved | softened]].tolist())
    assert split.index.tolist() == expected
    row_of = {r: i for i, r in enumerate(split.index.tolist())}
    for j in torch.nonzero(softened).flatten().tolist():
        t = targets[row_of[int(train.index[gone[j]])]]
        assert torch.allclose(t, votes[j]) and t[int(noisy.y[gone[j]])] < 1  # never its own label alone
    assert torch.allclose(targets.sum(1), torch.ones(len(targets)))


def test_relabelled_fine_tuning_is_fine_tuning_on_the_rest_where_every_neighbour_agrees(digits, trained):
    """Removed samples whose nearest kept samples share their label are not trained on at all: the same model as
    fine-tuning on the rest, step for step."""
    from ddm.baselines.unlearners import knn_labels, relabel_knn

    model, traj = trained
    x, y = digits.train.x, digits.train.y
    fours = torch.nonzero(y == 4).flatten()
    others = [torch.nonzero(torch.arange(len(y)) != i).flatten() for i in fours.tolist()]
    candidates = [int(i) for i, o in zip(fours.tolist(), others, strict=True)  # 4s whose 10 neighbours are 4s
                  if knn_labels(x[i : i + 1], x[o], y[o], k=10, agree=10).item() == 4]

    def kept_without(rows):
        keep = torch.ones(len(y), dtype=torch.bool)
        keep[rows] = False
        return keep

    alike: list[int] = []
    for i in candidates:  # those that stay so once removed together (at most five)
        trial = kept_without(alike + [i])
        if (knn_labels(x[alike + [i]], x[trial], y[trial], k=10, agree=10) == 4).all():
            alike.append(i)
        if len(alike) == 5:
            break
    keep = kept_without(alike)
    # every one of their 5 and 10 nearest kept samples is a 4: no hard and no soft label
    assert len(alike) >= 2 and knn_labels(x[alike], x[keep], y[keep], k=10, agree=10).tolist() == [4] * len(alike)
    rl = relabel_knn(model, traj.final, digits.train, keep, CFG)
    ft = finetune_rest(model, traj.final, digits.train, keep, CFG)
    assert all(torch.equal(a, b) for a, b in zip(rl.parameters(), ft.parameters(), strict=True))


def test_relabelled_fine_tuning_ends_annealed_under_a_cosine_schedule(digits, trained, monkeypatch):
    """A cosine-trained model sits at the end of its annealing: the relabelled epoch runs the schedule over its own
    steps (from train.lr down to 0), as a retrain ends annealed; under a constant schedule the rate stays train.lr."""
    from dataclasses import replace

    from ddm.baselines import unlearners as U

    model, traj = trained
    keep = torch.ones(len(digits.train), dtype=torch.bool)
    keep[:20] = False
    rates = []
    real = U.set_rate

    def record(opt, cfg, step, total):
        real(opt, cfg, step, total)
        rates.append(opt.param_groups[0]["lr"])

    monkeypatch.setattr(U, "set_rate", record)
    U.relabel_knn(model, traj.final, digits.train, keep, replace(CFG, schedule="cosine"))
    assert rates[0] == pytest.approx(CFG.lr) and rates[-1] < 0.1 * CFG.lr and rates == sorted(rates, reverse=True)
    rates.clear()
    U.relabel_knn(model, traj.final, digits.train, keep, CFG)
    assert rates and set(rates) == {CFG.lr}


def test_a_replayed_epoch_starts_at_the_latest_checkpoint_one_epoch_before_theta_tau():
    """``ddm.unlearning.replay_start``: per-epoch checkpoints replay the last epoch; sparser ones replay from the
    latest at least an epoch back, as many epochs as lie between; a training shorter than one epoch from theta_0."""
    from ddm.train.trajectory import Trajectory
    from ddm.unlearning import replay_start

    def traj(epochs: list[float]) -> Trajectory:
        return Trajectory([{"w": torch.full((2,), float(e))} for e in epochs], epochs)

    start, since, epochs = replay_start(traj([0, 1, 2, 3, 4]))
    assert since == 3 and epochs == 1 and torch.equal(start["w"], torch.full((2,), 3.0))
    assert replay_start(traj([0, 2, 4, 6]))[1:] == (4.0, 2.0)
    assert replay_start(traj([0, 2, 4, 5]))[1:] == (4.0, 1.0)
    assert replay_start(traj([0, 0.5, 1]))[1:] == (0.0, 1.0)
    assert replay_start(traj([0, 0.25, 0.5]))[1:] == (0.0, 0.5)
    buffered = Trajectory([{"w": torch.zeros(1)}, {"w": torch.ones(1)}, {"w": torch.full((1,), 2.0)}], [0, 1, 2],
                          buffers=[{"b": torch.full((1,), float(i))} for i in range(3)])
    assert replay_start(buffered)[0] == {"b": torch.ones(1), "w": torch.ones(1)}  # the checkpoint's statistics too
