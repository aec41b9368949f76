import pytest
import torch
from sklearn.metrics import f1_score, precision_score, recall_score

from ddm.attribution import AttributionMatrix, WeightedLeastSquares, fit_attribution
from ddm.attribution.fit import balance_classes
from ddm.cluster.groups import Groups
from ddm.emulate import sample_perturbations
from ddm.objectives import Dist1, Dist2, Dist3, Functionality, get, macro_prf


def test_wls_recovers_a_known_linear_datamodel():
    g = torch.Generator().manual_seed(0)
    K, D = 30, 4
    W = torch.randn(D, K, generator=g)
    b = torch.randn(D, generator=g)
    X = sample_perturbations(K, 100, 0.5, seed=2).float()
    Y = X @ W.T + b
    reg = WeightedLeastSquares().fit(X, Y, torch.rand(100, generator=g) + 0.1)
    assert torch.allclose(reg.coef_, W, atol=1e-4) and torch.allclose(reg.intercept_, b, atol=1e-4)
    assert torch.allclose(reg.predict(X), Y, atol=1e-4)


def test_wls_weights_and_ridge():
    X = torch.tensor([[0.0], [1.0], [1.0]])
    Y = torch.tensor([[0.0], [1.0], [3.0]])
    # weighted mean of the two x=1 points: (1*1 + 3*3)/(1+3) = 2.5
    reg = WeightedLeastSquares().fit(X, Y, torch.tensor([1.0, 1.0, 3.0]))
    assert reg.coef_.item() == pytest.approx(2.5, abs=1e-5) and reg.intercept_.item() == pytest.approx(0.0, abs=1e-5)
    shrunk = WeightedLeastSquares(ridge=10.0).fit(X, Y)
    assert abs(shrunk.coef_.item()) < abs(WeightedLeastSquares().fit(X, Y).coef_.item())


def test_wls_gives_the_minimum_norm_solution_when_rank_deficient_and_nan_for_nan_outputs():
    g = torch.Generator().manual_seed(0)
    X = sample_perturbations(30, 12, 0.5, seed=3).float()  # fewer perturbations than groups
    Y = torch.randn(12, 3, generator=g)
    reg = WeightedLeastSquares().fit(X, Y)
    A = torch.cat([X, torch.ones(12, 1)], 1).double()
    want = torch.linalg.pinv(A) @ Y.double()
    torch.testing.assert_close(reg.coef_, want[:30].T.float(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(reg.predict(X), Y, rtol=1e-4, atol=1e-4)  # interpolates
    # more perturbations than groups but two groups always removed together: still rank deficient, repeatably
    X2 = sample_perturbations(30, 80, 0.5, seed=4).float()
    X2[:, 5] = X2[:, 4]
    Y2 = torch.randn(80, 3, generator=g)
    A2 = torch.cat([X2, torch.ones(80, 1)], 1).double()
    want2 = (torch.linalg.pinv(A2) @ Y2.double())[:30].T.float()
    for _ in range(20):
        torch.testing.assert_close(WeightedLeastSquares().fit(X2, Y2).coef_, want2, rtol=1e-4, atol=1e-4)
    Y[0, 0] = float("nan")
    assert torch.isnan(WeightedLeastSquares().fit(X, Y).coef_).all()


def test_the_chunked_normal_equations_give_the_same_fit_as_the_direct_solve():
    """Large K (per-sample groups) takes the normal equations over chunks of perturbations: the same solution,
    weighted, with ridge, and minimum-norm when rank deficient; NaN stays NaN."""
    g = torch.Generator().manual_seed(1)
    cases = [(sample_perturbations(40, 400, 0.5, seed=5), 0.0), (sample_perturbations(40, 400, 0.5, seed=6), 3.0),
             (sample_perturbations(30, 12, 0.5, seed=3), 0.0)]  # the last: fewer perturbations than groups
    X2 = sample_perturbations(30, 80, 0.5, seed=4)
    X2[:, 5] = X2[:, 4]  # two groups always removed together
    cases.append((X2, 0.0))
    for X, ridge in cases:
        Y = torch.randn(len(X), 3, generator=g)
        w = torch.rand(len(X), generator=g) + 0.1
        direct = WeightedLeastSquares(ridge, gram_above=10 ** 12).fit(X, Y, w)
        chunked = WeightedLeastSquares(ridge, gram_above=0).fit(X, Y, w)
        torch.testing.assert_close(chunked.coef_, direct.coef_, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(chunked.intercept_, direct.intercept_, rtol=1e-4, atol=1e-4)
    from ddm.attribution import regression

    X = sample_perturbations(50, 300, 0.5, seed=7)
    Y = torch.randn(300, 2, generator=g)
    one = regression._normal_equations(X, Y.double(), torch.ones(300, dtype=torch.float64), 0.0, chunk_entries=51)
    many = regression._normal_equations(X, Y.double(), torch.ones(300, dtype=torch.float64), 0.0)
    torch.testing.assert_close(one, many)  # one row per chunk: the same sums
    Y[3, 1] = float("nan")
    assert torch.isnan(WeightedLeastSquares(gram_above=0).fit(X, Y).coef_).all()


def test_fit_attribution_axes_and_sign():
    K, T = 6, 3
    keep = sample_perturbations(K, 40, 0.5, seed=1)
    true_w = torch.zeros(T, K, 1)
    true_w[0, 2, 0] = -0.7  # keeping group 2 lowers target 0's loss: removing it raises the loss by 0.7
    true_w[1, 4, 0] = 0.3
    outputs = torch.einsum("pk,tko->pto", keep.float(), true_w) + 1.0
    groups = Groups(torch.arange(K).repeat_interleave(2), torch.arange(K) % 2)
    attr = fit_attribution(keep, outputs, Dist2(), groups, [10, 11, 12], num_classes=2)
    assert attr.weights.shape == (T, K, 1) and attr.axes == ("target", "group", "output")
    assert torch.allclose(attr.removal_effect, -true_w, atol=1e-4)
    top = attr.top(0, k=1)[0]
    assert top.group == 2 and top.score == pytest.approx(0.7, abs=1e-4) and top.members == [4, 5]
    assert attr.top(1, k=1)[0].group != 4  # removing group 4 *lowers* target 1's loss: not a top dist2 group
    assert torch.allclose(attr.predict(torch.ones(1, K)), outputs.new_tensor(1.0) + true_w.sum(1), atol=1e-4)


def test_an_objective_no_perturbation_moves_gets_zero_weights_not_rounding_noise_ranked():
    """Accuracy over a few targets can take one value under every perturbation: the exact fit is W = 0, and the
    summary says no group moves it, where the solver alone would leave ~1e-17 weights that rank groups."""
    K = 8
    keep = sample_perturbations(K, 60, 0.5, seed=2)
    moving = 0.3 * keep[:, 1].float() + 0.1 * keep[:, 5].float()
    outputs = torch.stack([torch.full((60,), 0.5), moving], 1)[:, :, None]  # [P, T, 1]; target 0 never moves
    groups = Groups(torch.arange(K).repeat_interleave(2), torch.arange(K) % 2)
    attr = fit_attribution(keep, outputs, Functionality("accuracy"), groups, [0, 1], num_classes=2)
    assert torch.equal(attr.weights[0], torch.zeros(K, 1)) and float(attr.bias[0, 0]) == 0.5
    assert torch.allclose(attr.weights[1, :, 0], torch.tensor([0, 0.3, 0, 0, 0, 0.1, 0, 0]), atol=1e-5)
    summary = attr.summary(k=2)
    assert summary[0]["unmoved"] and not summary[1]["unmoved"]
    assert [g["group"] for g in summary[1]["top"]] == [1, 5]


def test_objective_outputs_and_scores():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])  # P=1, N=2, C=2
    labels = torch.tensor([0, 0])
    p = logits.softmax(-1)
    assert torch.allclose(Dist1().outputs(logits, labels), p)
    assert torch.allclose(Dist2().outputs(logits, labels)[0, :, 0], -p[0, [0, 1], [0, 0]].log())
    effect = torch.tensor([[[0.3, -0.4], [0.0, 0.1]]])  # T=1, K=2, O=2
    assert torch.allclose(Dist1().score(effect), torch.tensor([[0.5, 0.1]]))
    assert torch.allclose(Dist3().score(effect), torch.tensor([[1 / 1.5, 1 / 1.1]]))
    acc = Functionality("accuracy").outputs(logits, labels)
    assert acc.shape == (1, 1, 1) and acc.item() == 0.5


def test_macro_precision_recall_f1_match_scikit_learn():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (50,), generator=g)
    pred = torch.randint(0, 4, (3, 50), generator=g)
    pred[2, :] = 1  # degenerate predictor: zero division cases
    prec, rec, f1 = macro_prf(pred, y, 5)
    for i in range(3):
        kw = dict(average="macro", zero_division=0)
        assert prec[i].item() == pytest.approx(precision_score(y, pred[i], **kw), abs=1e-6)
        assert rec[i].item() == pytest.approx(recall_score(y, pred[i], **kw), abs=1e-6)
        assert f1[i].item() == pytest.approx(f1_score(y, pred[i], **kw), abs=1e-6)


def test_callable_objective():
    def margin(logits, labels):
        return logits.gather(1, labels.view(-1, 1))[:, 0] - logits.logsumexp(1)

    obj = get(margin)
    out = obj.outputs(torch.randn(4, 3, 5), torch.tensor([0, 1, 2]))
    assert out.shape == (4, 3, 1) and obj.name == "margin"


def test_matrix_save_and_load(tmp_path):
    groups = Groups(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 1]))
    m = AttributionMatrix(torch.randn(2, 3, 4), torch.randn(2, 4), torch.randn(2, 3), "dist1", "m", ["a"] * 4,
                          [5, 6], groups, torch.tensor([[True, False, True], [True, True, True]]), {"x": 1})
    m.save(tmp_path)
    again = AttributionMatrix.load(tmp_path)
    assert torch.equal(again.weights, m.weights) and again.target_ids == [5, 6]
    assert torch.equal(again.groups.assignment, groups.assignment)
    assert [g.group for g in again.top(0, k=5)] == [int(i) for i in m.ranking(0)[:2]]  # unevaluated group 1 skipped


def test_to_frame_has_one_row_per_target_and_ranked_group(tmp_path):
    pytest.importorskip("pandas")
    import ddm

    cfg = ddm.presets.tiny().with_overrides(["hierarchical=false"])
    data = ddm.data.load(cfg.data)
    dm = ddm.DistilledDatamodel(tmp_path, cfg).fit(ddm.models.build(cfg.model, data), data.train)
    attr = dm.attribute(data.test[:3], "dist2")
    df = attr.to_frame()
    assert len(df) == 3 * dm.groups.num_groups and list(df["target_id"].unique()) == data.test.index[:3].tolist()
    first = df[df.target == 0].sort_values("rank")
    assert first["group"].tolist() == attr.ranking(0).tolist() and first["score"].is_monotonic_decreasing
    assert first["members"].iloc[0] == dm.groups.member_ids(int(first["group"].iloc[0])).tolist()
    assert len(attr.to_frame(k=2)) == 6


def test_the_class_balance_scales_other_classes_groups_and_keeps_the_full_data_prediction():
    K, T = 4, 3
    g = torch.Generator().manual_seed(0)
    weights, bias = torch.randn(T, K, 2, generator=g), torch.randn(T, 2, generator=g)
    # groups 0, 1: class 0; group 2: class 1; group 3: three samples of class 1 and one of class 2
    groups = Groups(torch.tensor([0, 0, 1, 2, 2, 3, 3, 3, 3]), torch.tensor([0, 0, 1, 1]),
                    class_counts=torch.tensor([[2, 0, 0], [1, 0, 0], [0, 2, 0], [0, 3, 1]]))
    labels = torch.tensor([0, 1, 2])
    w, b = balance_classes(weights, bias, groups, labels, 0.5)
    want = torch.tensor([[1, 1, 0.5, 0.5], [0.5, 0.5, 1, 0.5 + 0.5 * 0.75], [0.5, 0.5, 0.5, 0.5 + 0.5 * 0.25]])
    torch.testing.assert_close(w, weights * want[..., None])
    torch.testing.assert_close(w.sum(1) + b, weights.sum(1) + bias)  # every group kept: the same prediction
    assert torch.equal(balance_classes(weights, bias, groups, labels, 1.0)[0], weights)
    # through fit_attribution: the ranking within the target's class and within the others is the fitted one
    keep = sample_perturbations(K, 60, 0.5, seed=1)
    outputs = torch.einsum("pk,tko->pto", keep.float(), weights[..., :1]) + 1.0
    plain = fit_attribution(keep, outputs, Dist2(), groups, [0, 1, 2], 3)
    balanced = fit_attribution(keep, outputs, Dist2(), groups, [0, 1, 2], 3, labels=labels, other_class_scale=0.5)
    torch.testing.assert_close(balanced.weights, plain.weights * want[..., None], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(balanced.predict(torch.ones(1, K)), plain.predict(torch.ones(1, K)))


def test_the_linearised_fit_matches_the_regression_on_logits_linear_in_the_deletions():
    """fit_linearised: W from the objective's mean Jacobian times each group's logit shift, without the regression
    over [P, K]. Exact for an objective linear in the logits; close to the regression for dist1/dist2 with shifts
    of the Newton emulation's size; the class balance applies as in fit_attribution."""
    from ddm.attribution.fit import fit_linearised
    from ddm.objectives.custom import CallableObjective

    g = torch.Generator().manual_seed(0)
    K, N, C = 30, 6, 4
    z = 3 * torch.randn(N, C, generator=g)
    S = 0.05 * torch.randn(K, N, C, generator=g)
    labels = torch.randint(0, C, (N,), generator=g)
    keep = sample_perturbations(K, 3000, 0.5, seed=1)
    logits = z[None] + ((~keep).float() @ S.reshape(K, -1)).reshape(-1, N, C)
    groups = Groups(torch.arange(K) % C, torch.arange(K) % C, "kmeans")
    linear = CallableObjective(lambda lg, y: lg[:, :2] - 0.5 * lg[:, 3:], "linear")
    for obj, tol in ((linear, 1e-4), (Dist2(), 0.02), (Dist1(), 0.02)):
        reg = fit_attribution(keep, obj.outputs(logits, labels), obj, groups, list(range(N)), C, labels=labels)
        lin = fit_linearised(z, S, keep, obj, labels, groups, list(range(N)), C)
        rel = float((lin.weights - reg.weights).norm() / reg.weights.norm())
        assert rel < tol, (obj.name, rel)
        torch.testing.assert_close(lin.bias, reg.bias, atol=tol * float(reg.bias.abs().max()) + 1e-4, rtol=0)
    # with the class balance and a subset of the groups perturbed (the hierarchical attribution's)
    cols = torch.tensor([0, 4, 8, 12])
    sub = sample_perturbations(4, 500, 0.5, seed=2)
    lgs = z[None] + ((~sub).float() @ S[cols].reshape(4, -1)).reshape(-1, N, C)
    reg = fit_attribution(sub, Dist2().outputs(lgs, labels), Dist2(), groups, list(range(N)), C, labels=labels,
                          other_class_scale=0.5, columns=cols)
    lin = fit_linearised(z, S, sub, Dist2(), labels, groups, list(range(N)), C, other_class_scale=0.5,
                         columns=cols)
    assert lin.weights.shape == reg.weights.shape == (N, 4, 1)
    assert float((lin.weights - reg.weights).norm() / reg.weights.norm()) < 0.02


def test_the_true_label_loss_stays_exact_for_confident_predictions():
    import torch.nn.functional as F

    from ddm.evaluation.metrics import dist_metrics
    from ddm.objectives.influence import true_label_loss

    g = torch.Generator().manual_seed(0)
    z, y = 3 * torch.randn(6, 5, 4, generator=g), torch.randint(0, 4, (5,), generator=g)
    # the same number as cross-entropy wherever that one is exact
    want = F.cross_entropy(z.transpose(1, 2), y.expand(6, -1), reduction="none")
    torch.testing.assert_close(true_label_loss(z, y.expand(6, -1)), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(Dist2().outputs(z, y)[..., 0], want, rtol=1e-5, atol=1e-6)
    # a confident prediction: single precision's log_softmax rounds these losses to 0 and cannot rank them
    sure = torch.tensor([[20.0, 0.0, -5.0], [25.0, 1.0, 0.0], [30.0, 2.0, 0.0]])
    labels = torch.zeros(3, dtype=torch.long)
    assert (F.cross_entropy(sure, labels, reduction="none") == 0).all()
    exact = torch.log1p(torch.exp(sure.double()[:, 1:] - sure.double()[:, :1]).sum(1))  # log(1 + sum_j e^(z_j - z_y))
    got = true_label_loss(sure, labels)
    assert got.dtype == torch.float32 and (got > 0).all() and bool((got[:-1] > got[1:]).all())
    torch.testing.assert_close(got.double(), exact, rtol=1e-5, atol=0)
    torch.testing.assert_close(dist_metrics(sure, sure, labels)["dist2"].double(), exact, rtol=1e-5, atol=0)
    # a single class: no competitor, no loss
    assert true_label_loss(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long)).eq(0).all()
