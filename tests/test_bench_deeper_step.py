"""The deeper-step diagnostic (`benchmarks/deeper_step.py`): its Jacobians, scopes and CG step do what it says."""


import torch
import torch.nn.functional as F
from torch import nn

from ddm.distill.scope import leading_eigenpairs


def _tiny(seed: int, n: int):
    """A two-layer MLP, ``n`` inputs and its parameters."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    return model, torch.randn(n, 6), {k: v.detach() for k, v in model.named_parameters()}


def test_the_step_solves_the_damped_gauss_newton_system_of_the_scope(bench):
    ds = bench("deeper_step")
    model, x, params = _tiny(0, 40)
    scope = ds.scopes(model)
    assert scope["head"] == ["3.weight", "3.bias"]
    assert scope["last block + head"] == ["1.weight", "1.bias", "3.weight", "3.bias"]
    J = ds.jacobian(model, params, scope["last block + head"], x, chunk=7)  # [N, C, P]
    assert J.shape == (40, 3, 5 * 6 + 5 + 3 * 5 + 3)
    # the Jacobian of the logits, against autograd one sample and one class at a time
    for n, c in ((0, 0), (13, 2), (39, 1)):
        model.zero_grad()
        model(x[n:n + 1])[0, c].backward()
        ref = torch.cat([model.get_parameter(k).grad.reshape(-1) for k in scope["last block + head"]])
        torch.testing.assert_close(J[n, c], ref)
    with torch.no_grad():
        probs = F.softmax(model(x), -1)
    G = torch.randn(4, J.shape[-1])
    U, lam = ds.steps(J, probs, G, 1e-2, weight_decay=1e-3)
    # the same system built explicitly: GGN = mean_i J_i^T (diag p_i - p_i p_i^T) J_i
    H = sum(J[i].T @ (torch.diag(probs[i]) - probs[i][:, None] * probs[i][None]) @ J[i] for i in range(40)) / 40
    top = torch.linalg.eigvalsh(H).max()
    assert abs(lam - (1e-2 * top + 1e-3)) < 1e-4 * top
    ref = torch.linalg.solve(H + lam * torch.eye(len(H)), G.T / 40)
    torch.testing.assert_close(U, ref, rtol=1e-3, atol=1e-6)


def test_the_truncated_step_keeps_the_leading_eigenvectors_of_the_gauss_newton_matrix(bench):
    ds = bench("deeper_step")
    model, x, params = _tiny(1, 30)
    J = ds.jacobian(model, params, ds.scopes(model)["full network"], x).double()
    with torch.no_grad():
        probs = F.softmax(model(x), -1).double()
    ggn, top = ds.gauss_newton(J, probs)
    P = J.shape[-1]
    H = ggn(torch.eye(P, dtype=J.dtype))
    s_ref, V_ref = torch.linalg.eigh(H)
    s_ref, V_ref = s_ref.flip(0), V_ref.flip(1)
    s, V = leading_eigenpairs(ggn, P, 4, iters=60, seed=1, dtype=J.dtype)
    torch.testing.assert_close(s, s_ref[:4], rtol=1e-6, atol=1e-9)
    assert abs(float(s[0]) - top) < 1e-6 * top
    G = torch.randn(3, P, dtype=J.dtype)
    lam = 1e-2 * top
    proj = V_ref[:, :4] @ V_ref[:, :4].T
    ref = proj @ torch.linalg.solve(H + lam * torch.eye(P, dtype=J.dtype), G.T / 30)
    torch.testing.assert_close(ds.truncated_steps((s, V), G, lam, 30, residual=False), ref)
    # with the residual: the rest of the gradient scaled by 1 / (s_4 + lambda)
    rest = (torch.eye(P, dtype=J.dtype) - proj) @ G.T / 30 / (s_ref[3] + lam)
    torch.testing.assert_close(ds.truncated_steps((s, V), G, lam, 30, residual=True), ref + rest)
    # with every eigenvector kept, the truncated step is the full one
    full = leading_eigenpairs(ggn, P, P, iters=2, seed=1, dtype=J.dtype)
    exact = torch.linalg.solve(H + lam * torch.eye(P, dtype=J.dtype), G.T / 30)
    torch.testing.assert_close(ds.truncated_steps(full, G, lam, 30, residual=False), exact, rtol=1e-5, atol=1e-9)
