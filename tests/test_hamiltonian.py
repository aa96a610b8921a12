"""Property tests of the Hamiltonian chain (docs/design.md, eq. 8-13)."""

import pytest
import torch

from safehpo.hamiltonian import (CriticForce, GatedKick, leapfrog, make_kick, momentum_log_prob, normalise,
                                 run_chain)
from safehpo.nets import CriticStack, SquashedGaussianActor



@pytest.fixture(autouse=True)
def float64():
    """Property checks in float64 (restored afterwards so other test modules are unaffected)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def gaussian_force(center):
    """-grad U for U(u) = |u - center|^2 / 2 (a Gaussian target)."""
    return lambda u: -(u - center)


def flat_map(step_fn, d):
    """(u, rho) stacked -> (u', rho') stacked, for jacobians."""
    def f(z):
        u, rho = z[:d].unsqueeze(0), z[d:].unsqueeze(0)
        u2, rho2 = step_fn(u, rho)
        return torch.cat([u2[0], rho2[0]])
    return f


@pytest.mark.parametrize("gated", [False, True])
def test_leapfrog_has_unit_jacobian(gated):
    torch.manual_seed(0)
    d = 3
    center = torch.tensor([0.5, -1.0, 2.0])
    force = gaussian_force(center)
    obs = torch.randn(1, 4)
    kick_net = GatedKick(d, 4, hidden=16, state_input=True, init_gain=1.0) if gated else None
    kick = make_kick(force, kick_net, obs)

    def step(u, rho):
        u, rho, _ = leapfrog(u, rho, kick(u), kick, eps=0.3)
        return u, rho

    z = torch.randn(2 * d)
    jac = torch.autograd.functional.jacobian(flat_map(step, d), z)
    assert torch.linalg.det(jac).item() == pytest.approx(1.0, abs=1e-10)
    assert not torch.allclose(jac, torch.eye(2 * d))  # the step really moves things


def test_gated_kick_reading_rho_would_break_unit_jacobian():
    """The property the test above checks can fail: a kick that reads rho is not volume-preserving."""
    d = 2
    force = gaussian_force(torch.zeros(d))

    def bad_step(u, rho):
        rho = rho + 0.15 * (force(u) + torch.tanh(rho))
        u = u + 0.3 * rho
        return u, rho

    jac = torch.autograd.functional.jacobian(flat_map(bad_step, d), torch.randn(2 * d))
    assert abs(torch.linalg.det(jac).item() - 1.0) > 1e-3


def test_conventional_leapfrog_is_reversible():
    torch.manual_seed(1)
    force = gaussian_force(torch.tensor([1.0, -2.0]))
    u0, rho0 = torch.randn(5, 2), torch.randn(5, 2)
    uK, rhoK, _ = run_chain(u0, rho0, force, eps=0.2, steps=7)
    u_back, rho_back, _ = run_chain(uK, -rhoK, force, eps=0.2, steps=7)
    assert torch.allclose(u_back, u0, atol=1e-12)
    assert torch.allclose(-rho_back, rho0, atol=1e-12)


def test_leapfrog_conserves_energy_approximately():
    force = gaussian_force(torch.zeros(2))
    u0, rho0 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    uK, rhoK, _ = run_chain(u0, rho0, force, eps=0.05, steps=40)
    energy = lambda u, r: 0.5 * (u ** 2).sum() + 0.5 * (r ** 2).sum()
    assert energy(uK, rhoK).item() == pytest.approx(energy(u0, rho0).item(), rel=1e-3)


def test_normalise_is_finite_at_zero_and_unit_elsewhere():
    g = torch.tensor([[0.0, 0.0], [3.0, 4.0]], requires_grad=True)
    n = normalise(g)
    assert torch.isfinite(n).all() and n[0].abs().max() == 0
    assert n[1].norm().item() == pytest.approx(1.0, abs=1e-6)
    n.sum().backward()
    assert torch.isfinite(g.grad).all()


def test_chain_log_density_matches_numerical_change_of_variables():
    """log q(a_K, rho_K) = log N(u_0) + log N(rho_0) - log|det d(a_K, rho_K)/d(u_0, rho_0)|, with the
    Jacobian of the whole map (chain then squash) computed numerically."""
    torch.manual_seed(2)
    d, std = 2, 0.7
    actor = SquashedGaussianActor(3, d, 8, 1, -2 * torch.ones(d), 2 * torch.ones(d))
    obs = torch.randn(1, 3)
    kick_net = GatedKick(d, 3, hidden=8, state_input=True, init_gain=0.5)
    force = lambda u: -2.0 * (torch.tanh(u) - 0.3) * (1 - torch.tanh(u) ** 2) - 2 * torch.tanh(u)
    kick = make_kick(force, kick_net, obs)
    mu, sigma = actor.distribution(obs)
    u0, rho0 = torch.randn(1, d), std * torch.randn(1, d)

    def whole_map(z):
        uK, rhoK, _ = run_chain(z[:d].unsqueeze(0), z[d:].unsqueeze(0), kick, eps=0.25, steps=3)
        return torch.cat([actor.squash(uK)[0], rhoK[0]])

    jac = torch.autograd.functional.jacobian(whole_map, torch.cat([u0[0], rho0[0]]))
    base = torch.distributions.Normal(mu, sigma).log_prob(u0).sum() + momentum_log_prob(rho0, std).sum()
    numerical = base - torch.log(torch.abs(torch.linalg.det(jac)))
    uK, rhoK, _ = run_chain(u0, rho0, kick, eps=0.25, steps=3)
    emitted = base - actor.log_det_squash(uK).sum()  # the tanh correction at u_K
    assert emitted.item() == pytest.approx(numerical.item(), abs=1e-8)
    wrong = base - actor.log_det_squash(u0).sum()  # the trap: correcting at u_0
    assert abs(wrong.item() - numerical.item()) > 1e-4


def test_chain_moves_samples_towards_high_density():
    torch.manual_seed(3)
    center = torch.tensor([2.0, -1.0])
    force = gaussian_force(center)
    u0 = torch.randn(2000, 2) * 0.5 - 3.0
    rho0 = 0.3 * torch.randn(2000, 2)
    uK, _, _ = run_chain(u0, rho0, force, eps=0.2, steps=5)
    before = ((u0 - center) ** 2).sum(-1).mean()
    after = ((uK - center) ** 2).sum(-1).mean()
    assert after < 0.6 * before


def test_zero_steps_is_the_base_policy():
    torch.manual_seed(4)
    u0, rho0 = torch.randn(4, 3), torch.randn(4, 3)
    uK, rhoK, _ = run_chain(u0, rho0, gaussian_force(torch.ones(3)), eps=0.1, steps=0)
    assert torch.equal(uK, u0) and torch.equal(rhoK, rho0)


def test_actions_stay_inside_the_box():
    torch.manual_seed(5)
    actor = SquashedGaussianActor(3, 2, 8, 1, torch.tensor([-0.4, -1.0]), torch.tensor([0.4, 1.0]))
    push_out = lambda u: 50.0 * torch.ones_like(u)  # a potential pushing far outside the box
    uK, _, _ = run_chain(torch.zeros(64, 2), torch.randn(64, 2), push_out, eps=0.5, steps=10)
    a = actor.squash(uK)
    assert (a[:, 0].abs() <= 0.4).all() and (a[:, 1].abs() <= 1.0).all()


def test_first_order_force_gives_the_second_order_policy_gradient_for_relu_critics():
    """docs/design.md: with a ReLU critic, detaching dQ/da (keeping the squash factor) is exact."""
    torch.manual_seed(6)
    obs_dim, d, B = 4, 3, 16
    actor = SquashedGaussianActor(obs_dim, d, 16, 1, -torch.ones(d), torch.ones(d))
    critic = CriticStack(2, obs_dim, d, 32)
    obs = torch.randn(B, obs_dim)
    noise, rho0 = torch.randn(B, d), 0.1 * torch.randn(B, d)

    def policy_grad(second_order):
        actor.zero_grad()
        q_fn = lambda a: critic(obs, a, detach_params=True).min(0).values
        force = CriticForce(q_fn, actor.scale, 0.2, actor.squash, second_order)
        mu, std = actor.distribution(obs)
        uK, rhoK, _ = run_chain(mu + std * noise, rho0, force, eps=0.1, steps=3)
        q_fn(actor.squash(uK)).mean().backward()
        return torch.cat([p.grad.flatten() for p in actor.parameters()])

    g1, g2 = policy_grad(False), policy_grad(True)
    assert torch.allclose(g1, g2, rtol=1e-9, atol=1e-12)
    assert g1.abs().max() > 0


def test_reusing_the_last_force_evaluation_gives_the_same_objective_and_gradient():
    """The actor step reads Q_lambda(s, a_K) from the chain's last force call instead of a new pass."""
    torch.manual_seed(7)
    obs_dim, d, B = 4, 3, 16
    actor = SquashedGaussianActor(obs_dim, d, 16, 1, -torch.ones(d), torch.ones(d))
    kick_net = GatedKick(d, obs_dim, hidden=8, init_gain=0.5)
    critic = CriticStack(3, obs_dim, d, 32)
    obs = torch.randn(B, obs_dim)
    noise, rho0 = torch.randn(B, d), 0.1 * torch.randn(B, d)
    q_fn = lambda a: critic(obs, a, detach_params=True)[:2].min(0).values - 0.7 * critic(obs, a, detach_params=True)[2]

    def objective_and_grad(reuse):
        actor.zero_grad()
        kick_net.zero_grad()
        force = CriticForce(q_fn, actor.scale, 0.3, actor.squash)
        mu, std = actor.distribution(obs)
        uK, _, _ = run_chain(mu + std * noise, rho0, make_kick(force, kick_net, obs), eps=0.1, steps=3)
        a = actor.squash(uK)
        q = force.q_at_last(a) if reuse else q_fn(a)
        q.mean().backward()
        params = list(actor.parameters()) + list(kick_net.parameters())
        return q.detach(), torch.cat([p.grad.flatten() for p in params])

    (q1, g1), (q2, g2) = objective_and_grad(True), objective_and_grad(False)
    torch.testing.assert_close(q1, q2, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g1, g2, rtol=1e-9, atol=1e-12)
    assert g1.abs().max() > 0
