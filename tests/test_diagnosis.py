"""Diagnosis: quality scores separate from the flagging rule; noisy-label metrics on hand-built cases."""

from __future__ import annotations

import json
import re

import pytest
import torch

from ddm.cli.main import main
from ddm.cluster.groups import Groups
from ddm.data.dataset import Split
from ddm.diagnosis import (
    DEFAULT_FDR,
    DEFAULT_THRESHOLD,
    Diagnosis,
    cleanlab_suspicion,
    detection_metrics,
    flip_labels,
    from_group_scores,
)
from ddm.exceptions import ConfigError

GROUPS = Groups(assignment=torch.tensor([0, 0, 1, 2, 2, 2, 3, 3, 3, 3]), labels=torch.tensor([0, 0, 1, 1]))


def test_ranking_issues_and_worst_fraction():
    d = Diagnosis(torch.tensor([0.5, -2.0, 1.0, -0.1]), GROUPS, "loss")
    assert d.ranking().tolist() == [1, 3, 0, 2]
    # bounded score: robust z among groups (median 0.2, 1.4826 MAD 0.815) through the normal CDF
    score = d.score()
    assert ((score > 0) & (score < 1)).all() and torch.argsort(score).tolist() == [1, 3, 0, 2]
    assert abs(float(score[1]) - 0.00349) < 1e-4
    assert d.issues() == [1]  # the default flags only the clear outlier
    assert d.issues(0.001) == []
    assert d.issues(0.5) == [1, 3]
    assert d.issues(0.9) == [1, 3]  # group 0 scores 0.64 but helps (quality > 0): never an issue
    assert d.issues(0.5, max_fraction=0.3) == [1]  # group 3 has 4 of 10 samples: over the budget
    with pytest.raises(ConfigError, match="bounded score"):
        d.issues(-1.0)
    assert d.worst_fraction(0.1) == [1]
    assert d.worst_fraction(0.5) == [1, 3]
    assert d.worst_fraction(0.01) == [1]  # at least one group
    assert torch.allclose(d.sample_quality(), torch.tensor([0.5, 0.5, -2.0, 1.0, 1.0, 1.0, -0.1, -0.1, -0.1, -0.1]))
    row = d.table(2, members=2, threshold=0.01)[0]
    assert row == {"group": 1, "label": 0, "size": 1, "quality": -2.0, "score": row["score"], "flagged": True,
                   "members": [2], "classes": 1}
    df = d.to_frame(threshold=0.5)
    assert df["group"].tolist() == [1, 3, 0, 2] and df["flagged"].tolist() == [True, True, False, False]
    assert df.loc[1, "members"] == [6, 7, 8, 9] and df["rank"].tolist() == [1, 2, 3, 4]
    with pytest.raises(ConfigError):
        d.worst_fraction(1.0)


def test_peer_group_scores_sum_over_validation_targets(tmp_path):
    d = from_group_scores(torch.tensor([[1.0, -1.0, 0.0, 2.0], [0.5, -0.5, 1.0, -3.0]]), GROUPS, "tracin")
    assert d.quality.tolist() == [1.5, -1.5, 1.0, -1.0]
    d.save(tmp_path / "d.json")
    back = Diagnosis.load(tmp_path / "d.json")
    assert torch.equal(back.quality, d.quality) and torch.equal(back.groups.assignment, GROUPS.assignment)


def test_the_loss_score_weighs_the_quality_by_its_standard_error_over_validation_samples(tmp_path):
    # 20 validation samples: group 1 is a little worse for every sample (consistent), group 3 far worse for one
    # sample only (a larger sum, but one sample's say), group 0 mixed, group 2 helps
    s = torch.zeros(20, 4)
    s[:, 0] = torch.tensor([1.0, -1.0] * 10) - 0.05
    s[:, 1] = -0.2
    s[:, 1] += torch.linspace(-0.01, 0.01, 20)
    s[0, 3] = -10.0
    s[:, 2] = 0.5
    d = from_group_scores(s, GROUPS, "tracin")
    assert d.standard_error is not None
    assert torch.allclose(d.standard_error, s.double().std(0).float() * 20 ** 0.5)
    score = d.score()
    assert float(score[1]) < 1e-6 and 0.05 < float(score[3]) < 0.5 and 0.3 < float(score[0]) < 0.5
    assert float(score[2]) == 1.0  # helps with no spread at all
    # ranked by quality (group 3 first), flagged by score: group 3 is skipped, the consistent group 1 is flagged
    assert d.ranking().tolist()[:2] == [3, 1]
    assert d.issues(0.01) == [1]
    assert d.issues(0.5) == [3, 1, 0]
    d.save(tmp_path / "d.json")
    back = Diagnosis.load(tmp_path / "d.json")
    assert torch.allclose(back.standard_error, d.standard_error) and torch.equal(back.score(), d.score())
    # a file written before the standard error was saved loads with the robust z-score among groups
    old = json.loads((tmp_path / "d.json").read_text())
    del old["standard_error"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert Diagnosis.load(tmp_path / "old.json").standard_error is None
    # under MIN_SAMPLES_FOR_ERROR validation samples: no standard error, the robust z-score
    assert from_group_scores(s[:5], GROUPS, "tracin").standard_error is None
    # no spread: a zero quality is no evidence, a negative one certain
    flat = Diagnosis(torch.tensor([0.0, -1.0, 1.0, 0.0]), GROUPS, "loss", standard_error=torch.zeros(4))
    assert flat.score().tolist() == [0.5, 0.0, 1.0, 0.5]


def _with_scores(p: list[float]) -> Diagnosis:
    """A loss diagnosis whose bounded scores are the one-sided p-values ``p`` (standard error 1)."""
    z = torch.special.ndtri(torch.tensor(p, dtype=torch.float64)).float()
    groups = Groups(assignment=torch.arange(len(p)), labels=torch.zeros(len(p), dtype=torch.long))
    return Diagnosis(z, groups, "loss", standard_error=torch.ones(len(p)))


def test_the_false_discovery_rate_cut_is_benjamini_hochberg_and_tightens_with_the_number_of_groups():
    d = _with_scores([0.04, 0.001, 0.9, 0.02])
    assert torch.allclose(d.score(), torch.tensor([0.04, 0.001, 0.9, 0.02]), atol=1e-6)
    # sorted 0.001, 0.02, 0.04, 0.9 against q i / 4: at 0.1 the bounds 0.025, 0.05, 0.075, 0.1 pass the first three
    assert d.fdr_threshold(0.1) == pytest.approx(0.04, abs=1e-6)
    assert d.issues(fdr=0.1) == [1, 3, 0]
    # at 0.05 the bounds 0.0125, 0.025, 0.0375: 0.04 fails its own, the cut is 0.02
    assert d.fdr_threshold(0.05) == pytest.approx(0.02, abs=1e-6) and d.issues(fdr=0.05) == [1, 3]
    assert d.issues(0.05) == [1, 3, 0]  # the fixed threshold
    # step-up: 0.03 fails its bound (0.025) but 0.035 passes its own (0.05), so both are flagged
    assert _with_scores([0.035, 0.9, 0.03, 0.95]).issues(fdr=0.1) == [2, 0]
    assert _with_scores([0.3, 0.9, 0.6]).fdr_threshold(0.1) == 0.0 and _with_scores([0.3, 0.9]).issues(fdr=0.1) == []
    # groups whose removal changes nothing: uniform scores; a fixed threshold flags its share of them, the cut none
    null = _with_scores([(i + 0.5) / 1000 for i in range(1000)])
    assert len(null.issues(0.1)) == 100 and null.issues(fdr=0.1) == []
    # the same 4 clear groups among 1,000 null ones are still found: their scores are far under 0.1 x 4 / 1000
    mixed = _with_scores([1e-6, 2e-6, 3e-6, 4e-6] + [(i + 0.5) / 996 for i in range(996)])
    assert mixed.issues(fdr=0.1) == [0, 1, 2, 3]
    assert mixed.table(2, fdr=0.1, flagged_too=True)[-1]["group"] == 3  # the flagged beyond the 2 listed follow
    assert len(mixed.table(2, fdr=0.1)) == 2
    with pytest.raises(ConfigError, match="false discovery rate"):
        d.issues(fdr=1.0)
    with pytest.raises(ConfigError, match="not both"):
        d.issues(0.1, fdr=0.1)


def test_detection_metrics_by_hand():
    noisy = torch.tensor([True, False, True, False, False])
    perfect = detection_metrics(torch.tensor([0.9, 0.1, 0.8, 0.2, 0.3]), noisy)
    assert perfect == {"auc": 1.0, "precision_at_k": 1.0}
    # one of the two noisy samples outranked by one clean one: pairs ranked right = 5 of 6
    half = detection_metrics(torch.tensor([0.9, 0.5, 0.4, 0.1, 0.2]), noisy)
    assert half["auc"] == pytest.approx(5 / 6) and half["precision_at_k"] == 0.5
    with pytest.raises(ConfigError):
        detection_metrics(torch.ones(3), torch.zeros(3, dtype=torch.bool))


def test_flip_labels_changes_exactly_the_fraction_to_other_classes():
    s = Split(torch.zeros(50, 1, 2, 2), torch.arange(50) % 5)
    noisy, mask = flip_labels(s, 0.2, 5, seed=3)
    assert int(mask.sum()) == 10
    assert (noisy.y[mask] != s.y[mask]).all() and torch.equal(noisy.y[~mask], s.y[~mask])
    assert noisy.y.max() < 5 and torch.equal(noisy.x, s.x)


def test_cleanlab_flags_an_obviously_wrong_label():
    pytest.importorskip("cleanlab")
    probs = torch.tensor([[0.9, 0.1]] * 10 + [[0.1, 0.9]] * 10)
    labels = torch.tensor([0] * 10 + [1] * 10)
    labels[3] = 1
    susp, flagged = cleanlab_suspicion(probs, labels)
    assert int(susp.argmax()) == 3 and flagged[3] and flagged.sum() == 1


def test_diagnose_command(tmp_path, capsys):
    ws = tmp_path / "ws"
    assert main(["run", "-q", "-w", str(ws), "--preset", "tiny", "--targets", "0:1", "--json"]) == 0
    capsys.readouterr()
    assert main(["diagnose", "-q", "-w", str(ws), "--validation", "0:10", "--top-k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["lowest_quality"]) == 3 and out["validation"] == list(range(10))
    q = [r["quality"] for r in out["lowest_quality"]]
    # the loss has a standard error: by default the Benjamini-Hochberg cut, not the threshold
    assert q == sorted(q) and out["threshold"] is None and out["fdr"] == DEFAULT_FDR
    for r in out["lowest_quality"]:
        assert 0 < r["score"] < 1 and r["flagged"] == (r["group"] in out["issues"])
        assert r["flagged"] == (r["quality"] < 0 and 0 < out["fdr_cut"] and r["score"] <= out["fdr_cut"])
    saved = Diagnosis.load(out["saved"])
    assert saved.groups.num_groups == 20 and saved.method == "ddm"
    assert saved.standard_error is not None and saved.standard_error.shape == (20,)  # 10 samples: the error score
    assert main(["diagnose", "-q", "-w", str(ws), "--validation", "0:10"]) == 0
    said = capsys.readouterr().out
    assert "0.5 no evidence" in said and f"false discovery rate {DEFAULT_FDR:g}" in said
    assert main(["diagnose", "-q", "-w", str(ws), "--validation", "0:10", "--threshold", str(DEFAULT_THRESHOLD)]) == 0
    said = capsys.readouterr().out
    # how many flags a threshold gives by chance alone: 0.1 of 20 groups
    assert "by chance alone" in said and "this threshold would flag about 2 of the 20 groups" in said
    assert main(["diagnose", "-q", "-w", str(ws), "--validation", "0:10", "--threshold", "0.01"]) == 0
    assert "by chance alone" not in capsys.readouterr().out  # under one group
    assert main(["diagnose", "-q", "-w", str(ws), "--validation", "0:9"]) == 0  # too few: the robust z-score
    said = capsys.readouterr().out
    assert "0.5 typical" in said and "by chance alone" not in said  # no uniform score to count by
    assert main(["diagnose", "-q", "-w", str(ws), "--objective", "accuracy", "--method", "tracin"]) == 2
    # the Benjamini-Hochberg cut instead of the threshold
    assert main(["diagnose", "-q", "-w", str(ws), "--validation", "0:10", "--fdr", "0.5", "--top-k", "1",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fdr"] == 0.5 and out["threshold"] is None and out["issues"] == saved.issues(fdr=0.5)
    shown = out["lowest_quality"] + out["flagged_beyond_top_k"]
    assert len(out["lowest_quality"]) == 1 and {r["group"] for r in shown if r["flagged"]} == set(out["issues"])
    assert all(r["score"] <= out["fdr_cut"] for r in shown if r["flagged"])
    assert main(["diagnose", "-q", "-w", str(ws), "--validation", "0:10", "--fdr", "0.5"]) == 0
    said = capsys.readouterr().out
    assert "Benjamini-Hochberg cut at false discovery rate 0.5" in said and "by chance alone" not in said
    # flags beyond --top-k are listed up to as many again, then counted
    assert main(["diagnose", "-q", "-w", str(ws), "--validation", "0:10", "--threshold", "0.99", "--top-k", "1",
                 "--json"]) == 0
    many = json.loads(capsys.readouterr().out)
    extra = len(many["flagged_beyond_top_k"])
    assert main(["diagnose", "-q", "-w", str(ws), "--validation", "0:10", "--threshold", "0.99", "--top-k", "1"]) == 0
    said = capsys.readouterr().out
    listed = [ln for ln in said.splitlines() if re.match(r"\s+(ISSUE)?\s+group\s+\d+", ln)]
    assert len(listed) == min(2, 1 + extra)
    if extra > 1:
        assert f"and {extra - 1} more flagged groups" in said and "ddm-loss-issues.json" in said
    for bad in (["--fdr", "0.1", "--threshold", "0.1"], ["--fdr", "1.5"], ["--threshold", "0"]):
        assert main(["diagnose", "-q", "-w", str(ws), *bad]) == 2


def test_diagnose_verifies_its_flags_by_exact_retraining(tmp_path, capsys, monkeypatch):
    import ddm
    from ddm.diagnosis import diagnose, verify
    from ddm.evaluation.retrain import RetrainCache
    from ddm.models import with_params
    from ddm.train.loop import train_model

    ws = tmp_path / "ws"
    assert main(["run", "-q", "-w", str(ws), "--preset", "tiny", "--targets", "0:1", "--json"]) == 0
    capsys.readouterr()
    # clean digits: no group hurts, so nothing is flagged and nothing retrained
    assert main(["diagnose", "-q", "-w", str(ws), "--validation", "0:30", "--verify", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["issues"] == [] and out["verification"] is None
    assert main(["diagnose", "-q", "-w", str(ws), "--validation", "0:30", "--verify", "2"]) == 0
    assert "nothing flagged, nothing to retrain" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:  # the parser refuses it before any work
        main(["diagnose", "-q", "-w", str(ws), "--verify", "-1"])
    assert refused.value.code == 2 and "--verify: must be at least 0" in capsys.readouterr().err
    # the check itself, on two groups as if flagged
    dm = ddm.DistilledDatamodel(ws).load()
    data = ddm.data.load(dm.config.data)
    rows = list(range(30))
    diag = diagnose(dm, data.test[rows])
    v = verify(dm, data.train, data.test, rows, [7, 3], "loss", 2, diag.quality)
    assert v["groups"] == [3, 7] and v["orders"] == 2 and len(v["measured"]) == 2
    assert v["helped_in"] == sum(w < 0 for w in v["measured"])
    assert v["predicted"] == pytest.approx(float(diag.quality[[3, 7]].sum()))
    # the target's own data order, recomputed here: the target itself against a retrain without the two groups
    keep = ~torch.isin(dm.groups.assignment, torch.tensor([3, 7]))
    net = with_params(dm.model, dm.trajectory[0])
    train_model(net, data.train[torch.nonzero(keep).flatten()], dm.config.train)
    val = data.test[rows]
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy
        expected = float(ce(net(val.x), val.y, reduction="sum") - ce(dm.model(val.x), val.y, reduction="sum"))
    assert v["measured"][0] == pytest.approx(expected, abs=1e-3)
    # and on the rest of the test split, which chose no flag (the validation samples' change leans toward helping)
    rest = data.test[torch.arange(30, len(data.test))]
    with torch.no_grad():
        held = float(ce(net(rest.x), rest.y, reduction="sum") - ce(dm.model(rest.x), rest.y, reduction="sum"))
    h = v["held_out"]
    assert h["samples"] == len(data.test) - 30 and len(h["measured"]) == 2
    assert h["measured"][0] == pytest.approx(held, abs=1e-3) and h["helped_in"] == sum(w < 0 for w in h["measured"])
    monkeypatch.setattr(Diagnosis, "issues", lambda self, *a, **k: [3, 7])  # flagged, as if (cached retrains)
    assert main(["diagnose", "-q", "-w", str(ws), "--validation", "0:30", "--verify", "1"]) == 0
    said = capsys.readouterr().out
    assert "verification by exact retraining" in said
    assert f"on the other {len(data.test) - 30} test samples, which chose no flag: summed loss changed by" in said
    # the retrains are cached in the workspace: asking again retrains nothing
    monkeypatch.setattr(RetrainCache, "_retrain", lambda *a: pytest.fail("retrained again"))
    assert verify(dm, data.train, data.test, rows, [3, 7], "loss", 2, diag.quality) == v
    acc = verify(dm, data.train, data.test, rows, [3, 7], "accuracy", 1)
    assert -1 <= acc["measured"][0] <= 1 and "predicted" not in acc
    with pytest.raises(ddm.exceptions.ConfigError, match="nothing to verify"):
        verify(dm, data.train, data.test, rows, [], "loss", 2)


def test_the_default_threshold_follows_the_objective():
    from ddm.diagnosis import DEFAULT_THRESHOLDS

    q = torch.tensor([0.5, -2.0, 1.0, -0.1])
    loss, acc = Diagnosis(q, GROUPS, "loss"), Diagnosis(q, GROUPS, "accuracy")
    assert loss.default_threshold == DEFAULT_THRESHOLDS["loss"]
    assert acc.default_threshold == DEFAULT_THRESHOLDS["accuracy"]
    assert loss.issues() == [1] and acc.issues() == []  # group 1's score 0.0035 is above accuracy's 1e-5
    # no standard error: the score is a rank among groups, so the threshold stays the default; with one, the cut
    assert loss.default_fdr is None and acc.default_fdr is None and "threshold 0.1" in loss.default_rule
    with_error = _with_scores([0.04, 0.001, 0.9, 0.02])
    assert with_error.default_fdr == DEFAULT_FDR and "false discovery rate" in with_error.default_rule
    assert with_error.issues() == with_error.issues(fdr=DEFAULT_FDR) == [1, 3, 0]
    assert with_error.issues(0.01) == [1]


def test_diagnose_warns_when_its_flags_take_most_of_a_class(tmp_path, capsys, monkeypatch):
    import ddm
    from ddm.cli.common import mostly_removed as _mostly_removed

    # the helper: half or more of a class, and with whole=True a class removed entirely too
    assert _mostly_removed(GROUPS, [2]) == []  # 3 of class 1's 7 samples
    assert _mostly_removed(GROUPS, [3]) == [{"class": 1, "kept": 3, "of": 7}]
    assert _mostly_removed(GROUPS, [0]) == [{"class": 0, "kept": 1, "of": 3}]
    assert _mostly_removed(GROUPS, [0, 1]) == [] and _mostly_removed(GROUPS, [0, 1], whole=True) == [
        {"class": 0, "kept": 0, "of": 3}]
    ws = tmp_path / "ws"
    assert main(["run", "-q", "-w", str(ws), "--preset", "tiny", "--targets", "0:1", "--json"]) == 0
    capsys.readouterr()
    labels = ddm.DistilledDatamodel(ws).load().groups.labels
    own = torch.nonzero(labels == 0).flatten().tolist()  # every group of class 0, as if all were flagged
    monkeypatch.setattr(Diagnosis, "issues", lambda self, threshold=None, max_fraction=None, fdr=None: own)
    assert main(["diagnose", "-q", "-w", str(ws), "--validation", "0:10"]) == 0
    captured = capsys.readouterr()
    err = captured.err
    assert "the flagged groups hold half or more of the training samples of class 0" in err
    # the flags' predicted effect together, beside the validation loss they would change
    assert re.search(r"together they are predicted to lower the summed validation loss by -?[\d.e+-]+ \(it is "
                     r"[\d.e+-]+ now", captured.out)
    assert "--verify 3" in err
    n0 = int((ddm.data.load(ddm.DistilledDatamodel(ws).load().config.data).test.y[:10] == 0).sum())
    assert ("they are every training sample of class(es) 0: removing them together removes the class" in err
            and f"({n0} of class 0 among the 10)" in err)
    assert main(["diagnose", "-q", "-w", str(ws), "--validation", "0:10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["issues"] == own and [t["class"] for t in out["mostly_removed_classes"]] == [0]
    assert out["mostly_removed_classes"][0]["kept"] == 0
    monkeypatch.setattr(Diagnosis, "issues", lambda self, threshold=None, max_fraction=None, fdr=None: own[:1])
    assert main(["diagnose", "-q", "-w", str(ws), "--validation", "0:10"]) == 0
    err = capsys.readouterr().err
    assert len(own) < 2 or "half or more" not in err
    assert len(own) < 2 or "every training sample" not in err  # a class that keeps data is not said removed
