import dataclasses
import json
import math
import re

import pytest
import torch

import ddm
from ddm.baselines import clustering_based, predict_based, random_choice
from ddm.cli.main import main
from ddm.cluster.groups import Groups
from ddm.config import TrainConfig
from ddm.data.dataset import Split
from ddm.evaluation import RetrainCache, dist_metrics, lds, rank_agreement, spearman
from ddm.evaluation.metrics import other_class_subsets
from ddm.evaluation.protocol import split_targets
from ddm.exceptions import ConfigError
from ddm.pipeline import DistilledDatamodel


def test_dist_metrics_by_hand():
    full = torch.tensor([[0.0, 0.0]])  # softmax (0.5, 0.5)
    removed = torch.tensor([[math.log(3.0), 0.0]])  # softmax (0.75, 0.25)
    m = dist_metrics(removed, full, torch.tensor([1]))
    d1 = math.sqrt(2 * 0.25**2)
    assert m["dist1"].item() == pytest.approx(d1, abs=1e-6)
    assert m["dist2"].item() == pytest.approx(-math.log(0.25), abs=1e-6)
    assert m["dist3"].item() == pytest.approx(1 / (1 + d1), abs=1e-6)


def test_spearman_lds_and_rank_agreement_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0  # no ranking information
    # rho = 1 - 6 sum d^2 / (n (n^2 - 1)); ranks (1,2,3,4) vs (2,1,3,4): sum d^2 = 2 -> 1 - 12/60 = 0.8
    assert spearman([1, 2, 3, 4], [2, 1, 3, 4]) == pytest.approx(0.8)
    pred = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    actual = torch.tensor([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    mean, per = lds(pred, actual)
    assert per == pytest.approx([1.0, -1.0]) and mean == pytest.approx(0.0)
    assert rank_agreement(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[3.0, 5.0, 9.0]])) == pytest.approx(1.0)


def test_other_class_subsets_keep_the_class_whole():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    groups = Groups(assignment=torch.arange(6), labels=labels)
    out = other_class_subsets(groups, [2, 0, 2], subsets=30, seed=5)
    assert list(out) == [0, 2]
    for c, m in out.items():
        assert m.shape == (30, 6) and m[:, labels == c].all()
        assert 0 < m[:, labels != c].float().mean() < 1  # the other classes' groups vary
    assert torch.equal(out[2], other_class_subsets(groups, [2], 30, 5)[2])  # class c's draw: seed + c
    mixed = Groups(assignment=torch.arange(6), labels=labels,
                   class_counts=torch.tensor([[1, 1, 0]] + [[0, 1, 0]] * 5))
    assert other_class_subsets(mixed, [0, 1], 10, 5) == {}  # no subset keeps one class whole
    assert other_class_subsets(groups, [0, 1], 0, 5) == {}  # `--other-class-subsets 0` skips it


def test_reported_and_validation_targets_are_disjoint_and_fixed():
    rep, val = split_targets(50, 10)
    assert len(rep) == len(val) == 10
    assert not set(rep.tolist()) & set(val.tolist())
    assert torch.equal(split_targets(50, 10)[0], rep)
    with pytest.raises(ConfigError, match="reported"):
        split_targets(15, 10)


def test_the_protocol_refuses_too_few_subsets_for_a_correlation():
    from ddm.evaluation.protocol import EvalConfig

    for bad in ({"lds_subsets": 1}, {"lds_subsets": 3}, {"other_class_subsets": 2}):
        with pytest.raises(ConfigError, match="0 \\(skip\\) or at least 4"):
            EvalConfig(seeds=[0], **bad)
    assert EvalConfig(seeds=[0], lds_subsets=0, other_class_subsets=0).lds_subsets == 0  # 0 skips


def test_js_divergence_by_hand():
    from ddm.evaluation.unlearn import compare, js_divergence

    a = torch.tensor([[0.0, 0.0]])
    b = torch.tensor([[math.log(3.0), 0.0]])  # (0.75, 0.25) vs (0.5, 0.5)
    m = (0.625, 0.375)
    expect = 0.5 * (0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1])) + 0.5 * (
        0.75 * math.log(0.75 / m[0]) + 0.25 * math.log(0.25 / m[1]))
    assert js_divergence(a, b).item() == pytest.approx(expect, abs=1e-6)
    assert js_divergence(a, a).item() == pytest.approx(0.0, abs=1e-7)
    c = compare(b, a, torch.tensor([1]))
    assert c["accuracy"] == 0.0 and c["agreement"] == 1.0  # argmax of (0.5, 0.5) is class 0, as is b's


def test_nearest_similarity():
    from ddm.evaluation.privacy import nearest_similarity

    train = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(2, 1, 1, 2)
    syn = torch.tensor([[2.0, 0.0], [1.0, 1.0]]).view(2, 1, 1, 2)
    assert torch.allclose(nearest_similarity(syn, train, chunk=1), torch.tensor([1.0, 2 ** -0.5]), atol=1e-6)


def test_simple_baselines():
    x = torch.tensor([[0.0], [0.1], [5.0], [5.1]]).view(4, 1, 1, 1)
    train = Split(x, torch.tensor([0, 0, 1, 1]))
    groups = Groups(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1]))
    targets = Split(torch.tensor([[4.9], [0.2]]).view(2, 1, 1, 1), torch.tensor([1, 0]))
    assert clustering_based(train, groups, targets).tolist() == [1, 0]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[-1.0], [1.0]]))
        model[1].bias.copy_(torch.tensor([2.5, -2.5]))
    assert predict_based(model, train, groups, targets).tolist() == [1, 0]
    r = random_choice(100, groups, seed=3)
    assert r.min() >= 0 and r.max() <= 1 and torch.equal(r, random_choice(100, groups, seed=3))


def test_retrain_reproduces_the_target_and_resumes(digits, groups, tmp_path):
    cfg = TrainConfig(epochs=2, lr=0.1, batch_size=32)
    model = ddm.models.build("convnet", digits, width=8, depth=2)
    traj = ddm.train.train_model(model, digits.train, cfg)
    x = digits.test.x[:6]
    cache = RetrainCache(tmp_path, model, traj[0], digits.train, groups, cfg, x)
    same = cache.get([])
    with torch.no_grad():
        assert torch.allclose(same, model(x), atol=1e-5)  # same seed, all data: the target itself
    sets = [[0], [1, 2], [3]]
    cache.get([1, 2])  # as if a killed job had finished one of three
    calls = []
    real_retrain = cache._retrain

    def counting_retrain(removed, seed, path):
        calls.append(sorted(removed))
        return real_retrain(removed, seed, path)

    cache._retrain = counting_retrain
    out = cache.many(sets)
    assert out.shape == (3, 6, 10) and calls == [[0], [3]]
    assert not torch.allclose(out[0], cache.get([]))  # removing a group changes the retrained model
    assert cache.many(sets, shard=1, num_shards=2) is not None
    calls.clear()  # another data order: its own retrains, cached apart from the target order's
    other = cache.many(sets[:2], seed=7)
    assert calls == [[0], [1, 2]] and torch.equal(other[1], cache.get([1, 2], seed=7))
    assert not torch.allclose(other[0], out[0])
    # the folder's retrains belong to this training: another loop is refused, another data-order seed is not
    other_order = TrainConfig(epochs=2, lr=0.1, batch_size=32, seed=5)
    RetrainCache(tmp_path, model, traj[0], digits.train, groups, other_order, x)
    with pytest.raises(ddm.exceptions.ConfigMismatchError, match="another training configuration"):
        RetrainCache(tmp_path, model, traj[0], digits.train, groups,
                     TrainConfig(epochs=2, lr=0.1, batch_size=32, last_batch="keep"), x)


def test_a_batch_norm_retrain_starts_from_initial_statistics_whichever_theta0_it_is_given(digits, groups, tmp_path):
    """Given theta_0's parameters without its running statistics, a retrain must not start from theta_tau's
    (the trained model's): the statistics are reset, and the full-data retrain reproduces the target."""
    cfg = TrainConfig(epochs=2, lr=0.05, batch_size=32)
    model = ddm.models.build("convnet", digits, width=8, depth=2, norm="batchnorm")
    traj = ddm.train.train_model(model, digits.train, cfg)
    assert traj.buffers is not None and any("running_mean" in k for k in traj.checkpoint(0))
    x = digits.test.x[:6]
    recorded = RetrainCache(tmp_path / "a", model, traj.checkpoint(0), digits.train, groups, cfg, x).get([])
    params_only = RetrainCache(tmp_path / "b", model, traj[0], digits.train, groups, cfg, x).get([])
    model.eval()
    with torch.no_grad():
        target = model(x)
    assert torch.allclose(recorded, target, atol=1e-5) and torch.allclose(params_only, target, atol=1e-5)
    assert any(v.abs().sum() > 0 for k, v in ddm.models.with_params(model, traj[0]).state_dict().items()
               if "running_mean" in k)  # what a plain copy would have started from: theta_tau's statistics


def test_evaluate_command_on_the_tiny_preset(tmp_path, capsys):
    ws = tmp_path / "ev"
    assert main(["evaluate", "-q", "-w", str(ws), "--preset", "tiny", "--seeds", "0,1", "--num-targets", "4",
                 "--lds-subsets", "5", "--noise-seeds", "1", "--tune", "0.5,1", "--plots", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    t1 = out["summary"]["table1"]
    assert set(t1) == {"Random", "Predict-based", "Clustering-based", "DDM-full", "DDM-match", "DDM w/o cluster"}
    assert out["summary"]["noise_floor"]["same_seed_dist1"][0] == pytest.approx(0.0, abs=1e-3)
    assert set(out["summary"]["lds"]) == {"DDM-full", "DDM-match", "same class (trivial)"}
    oc = out["summary"]["other_class_lds"]
    assert set(oc) == set(out["summary"]["lds"]) and oc["same class (trivial)"][0] == 0.0  # no signal by design
    assert all(-1 <= v[0] <= 1 for v in oc.values())
    assert out["per_seed"]["0"]["tuning"]["chosen_multiplier"] in (0.5, 1.0)
    assert set(out["summary"]["table4"]) == {"Normal", "DDM-match", "DDM"}
    unl = out["summary"]["unlearning"]["1 groups"]["unlearners"]
    assert unl["exact retrain"]["test"]["agreement"][0] == pytest.approx(1.0)
    assert set(unl) >= {"DDM", "DDM-match", "fine-tune on the rest (1 epoch)", "NegGrad+ 0.99 (1 epoch)"}
    assert 0 < out["summary"]["privacy"]["DDM-full"][0] <= 1.0001
    text = (ws / "evaluation.md").read_text()
    assert text.startswith("Data: digits") and "Table 4 analog" in text and "Unlearning fidelity" in text
    assert "| method | LDS | other-class LDS |" in text and "| same class (trivial) |" in text
    assert "| DDM-full | " in text and "mean ± std over seeds" in text
    # one seed has no spread: its values alone, not a std of 0 (rendered again from the JSON, as --json gives it)
    from ddm.evaluation.report import markdown

    one = markdown({**out, "eval": {**out["eval"], "seeds": [0]}})
    row = next(line for line in one.splitlines() if line.startswith("| DDM-full | "))
    assert "one seed, so no spread" in one and "±" not in row and "±" in text.split("| DDM-full | ")[1].split("\n")[0]
    assert (ws / "plots" / "synsets_seed0.png").exists() and (ws / "plots" / "class_attribution_seed1.png").exists()
    # each seed's result is kept; a second call (e.g. gathering seeds run as separate processes) reuses them
    assert "does not reproduce the target" not in text  # same seed, same threads: the target itself
    stored = (ws / "seed1" / "result.json").read_text().replace('"test_accuracy": ',
                                                               '"test_accuracy": 0.123456, "was": ')
    # as if seed 1's retrains had run with another thread count: the report says its floor is not zero
    (ws / "seed1" / "result.json").write_text(re.sub(r'"same_seed_dist1": [-0-9.e]+', '"same_seed_dist1": 3.0', stored))
    assert main(["evaluate", "-q", "-w", str(ws), "--preset", "tiny", "--seeds", "0,1", "--num-targets", "4",
                 "--lds-subsets", "5", "--noise-seeds", "1", "--tune", "0.5,1", "--plots", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["per_seed"]["1"]["test_accuracy"] == 0.123456  # read back, not recomputed
    assert "does not reproduce the target" in (ws / "evaluation.md").read_text()
    assert again["per_seed"]["0"] == out["per_seed"]["0"]


def test_a_comparison_variant_whose_emulation_fails_is_left_out_and_said_so(tmp_path, capsys, monkeypatch):
    """`ddm evaluate` on a model where the paper's matching diverges: the evaluation still reports the default and
    the references, and says which variant is missing and why; the default failing is still an error."""
    original = DistilledDatamodel.attribute

    def attribute(self, *args, **kwargs):
        if self.ws.root.name in failing:
            raise ddm.exceptions.NumericalError("the emulation produced non-finite outputs (NaN/inf)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DistilledDatamodel, "attribute", attribute)
    failing = {"DDM-match"}
    ws = tmp_path / "ev"
    args = ["evaluate", "-q", "-w", str(ws), "--preset", "tiny", "--seeds", "0", "--num-targets", "4",
            "--lds-subsets", "5", "--noise-seeds", "0", "--other-class-subsets", "0", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    s = out["summary"]
    assert "DDM-match" not in s["table1"] and "DDM-full" in s["table1"] and "DDM w/o cluster" in s["table1"]
    assert set(s["lds"]) == {"DDM-full", "same class (trivial)"}
    assert set(s["table4"]) == {"Normal", "DDM"} and set(s["privacy"]) == {"DDM-full"}
    assert "DDM-match" not in s["unlearning"]["1 groups"]["unlearners"]
    assert "non-finite" in out["per_seed"]["0"]["left_out"]["DDM-match"]
    assert "**DDM-match is left out**" in (ws / "evaluation.md").read_text()
    failing = {"DDM-full"}
    assert main(args[:3] + [str(tmp_path / "ev2")] + args[4:]) != 0
    assert "non-finite" in capsys.readouterr().err


def test_scaling_rows(tmp_path, capsys):
    assert main(["evaluate", "-q", "-w", str(tmp_path), "--preset", "tiny", "--scaling", "100,all:1", "--json",
                 "--num-targets", "3"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["train_size"], r["K"]) for r in rows] == [(100, 20), (300, 20), (300, 10)]
    assert all(r["retrain_one_s"] > 0 and r["speedup_online"] > 0 for r in rows)


def test_evaluate_with_peers_and_diagnosis(tmp_path, capsys):
    pytest.importorskip("dattri")
    pytest.importorskip("cleanlab")
    ws = tmp_path / "ev"
    assert main(["evaluate", "-q", "-w", str(ws), "--preset", "tiny", "--seeds", "0", "--num-targets", "3",
                 "--lds-subsets", "4", "--noise-seeds", "0", "--logo", "--peers", "tracin,trak,if-explicit",
                 "--diagnose", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)["summary"]
    for m in ("tracin", "trak", "if-explicit"):
        assert m in s["table1"] and m in s["lds"] and m in s["logo_rank_agreement"] and s["peer_cost"][m][0] > 0
    d = s["diagnosis"]
    assert set(d["clean"]["table3"]) == {"DDM", "Random", "tracin", "trak", "arnoldi", "if-explicit"}
    assert set(d["clean"]["table3"]["DDM"]) == {"1%", "10%", "20%", "50%"}
    det = d["noisy"]["detection"]
    assert {"DDM (group quality)", "cleanlab (3-fold)", "tracin (self-influence)", "Random"} <= set(det)
    assert all(0 <= r["auc"][0] <= 1 and 0 <= r["precision_at_k"][0] <= 1 for r in det.values())
    text = (ws / "evaluation.md").read_text()
    assert "Table 2 analog" in text and "Table 3 analog" in text and "Label-noise detection" in text
    # DDM's diagnosis cost is reported from scratch, also when a rerun finds its emulations cached
    first = det["DDM (group quality)"]["seconds"][0]
    (ws / "seed0" / "result.json").unlink()
    assert main(["evaluate", "-q", "-w", str(ws), "--preset", "tiny", "--seeds", "0", "--num-targets", "3",
                 "--lds-subsets", "4", "--noise-seeds", "0", "--logo", "--peers", "tracin,trak,if-explicit",
                 "--diagnose", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)["summary"]["diagnosis"]["noisy"]["detection"]
    # the rerun reuses the emulations and still counts them at their recorded seconds (not a timing ratio:
    # deterministic under any load)
    meta = json.loads((ws / "seed0" / "noisy-labels" / "attributions" / "diagnose-loss"
                       / "attribution.json").read_text())["meta"]
    recorded = sum(meta["emulations"].values())
    assert first >= recorded > 0 and again["DDM (group quality)"]["seconds"][0] >= recorded


def test_ablation_scores_variants_on_cached_retrains_and_reuses_results(tmp_path, capsys, monkeypatch):
    import ddm.evaluation.ablation as ablation
    from ddm.evaluation.protocol import EvalConfig

    overrides, what = ablation.VARIANTS["local-free"]
    monkeypatch.setitem(ablation.VARIANTS, "local-free", ([*overrides, "distill.iterations=20"], what))
    ecfg = EvalConfig(seeds=[0], num_targets=3, lds_subsets=4, tune=(0.5, 1.0), tune_subsets=3)
    cfg = ddm.presets.tiny()
    out = ablation.ablate(tmp_path, cfg, ecfg, ["first-order", "local-free"])
    rows = out["per_seed"][0]
    assert set(rows) == {"Random", "first-order", "local-free"}
    model = ddm.models.build(cfg.model, ddm.data.load(cfg.data))
    assert rows["first-order"]["stored_floats_per_group"] == sum(p.numel() for p in model.parameters())
    assert rows["local-free"]["stored_floats_per_group"] == 64 + 10  # one 8x8 image and its free target
    for name in ("first-order", "local-free"):
        r = rows[name]
        assert -1 <= r["lds"] <= 1 and r["dist1"] >= 0 and r["dist1_loss"] >= 0 and r["online_s"] > 0
        assert r["tuning"]["chosen_multiplier"] in (0.5, 1.0)
    md = (tmp_path / "ablation.md").read_text()
    assert "| local-free |" in md and "1 image per group: **local-free**" in md  # first-order is not a candidate
    assert 0 < rows["local-free"]["nearest_cosine"] <= 1 + 1e-6 and "nearest_cosine" not in rows["first-order"]
    assert ablation._images_per_group("local-free-ipc5") == 5 and ablation._images_per_group("paper") == 1
    assert ablation._seconds([0.2, 0.4]) == "0.3 ± 0.1" and ablation._seconds([12.0, 14.0]) == "13 ± 1"

    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(ablation, "_variant_seed", boom)
    again = ablation.ablate(tmp_path, cfg, ecfg, ["first-order", "local-free"])  # gathers the stored results
    assert again["per_seed"][0] == rows
    # a reference peer added later is computed; the variant rows are kept
    with_peer = ablation.ablate(tmp_path, cfg, dataclasses.replace(ecfg, peers=("tracin",)), ["local-free"])
    assert with_peer["per_seed"][0]["local-free"] == rows["local-free"]
    assert -1 <= with_peer["per_seed"][0]["tracin"]["lds"] <= 1
    # the linear emulation reuses the local-free synset (its workspace): no distillation
    monkeypatch.undo()
    for name in ("local-free", "local-free-linear"):
        overrides, what = ablation.VARIANTS[name]
        distill = [o for o in overrides if o.startswith("distill.")]  # the budget goes with the synset's options
        emulate = [o for o in overrides if not o.startswith("distill.")]
        monkeypatch.setitem(ablation.VARIANTS, name, ([*distill, "distill.iterations=20", *emulate], what))
    from ddm.distill.matchers import MATCHERS

    for matcher in MATCHERS.names():
        monkeypatch.setitem(MATCHERS._items, matcher, boom)
    linear = ablation.ablate(tmp_path, cfg, ecfg, ["local-free-linear"])["per_seed"][0]["local-free-linear"]
    assert -1 <= linear["lds"] <= 1 and linear["offline_s"] == rows["local-free"]["offline_s"]
    assert {p.name for p in (tmp_path / "seed0" / "ablation" / "local-free-linear").iterdir()} == {
        "result.json", "privacy.json"}  # the synset is local-free's
    assert linear["nearest_cosine"] == rows["local-free"]["nearest_cosine"]
    capsys.readouterr()
    assert main(["evaluate", "-q", "-w", str(tmp_path), "--preset", "tiny", "--tune", "1", "--ablation", "nope"]) != 0
    assert "unknown ablation variant" in capsys.readouterr().err


def test_first_order_emulation_moves_theta_tau_by_the_deleted_displacements(trained, digits):
    from torch.func import functional_call

    from ddm.evaluation.ablation import first_order_logits

    model, traj = trained
    theta = traj.final
    delta = {n: torch.randn(3, *p.shape, generator=torch.Generator().manual_seed(0)) * 0.1 for n, p in theta.items()}
    keep = torch.tensor([[True, True, True], [False, True, False]])
    x = digits.test.x[:4]
    out = first_order_logits(model, theta, delta, keep, x, 0.5)
    assert torch.allclose(out[0], functional_call(model, theta, (x,)), atol=1e-6)  # nothing deleted
    moved = {n: theta[n] + 0.5 * (delta[n][0] + delta[n][2]) for n in theta}
    assert torch.allclose(out[1], functional_call(model, moved, (x,)), atol=1e-5)
