"""The agent's policy density and acting, checked on the agent itself (not on hand-built formulas)."""

import numpy as np
import pytest
import torch

from conftest import random_batch
from safehpo.agent import Agent
from safehpo.config import Config
from safehpo.hamiltonian import momentum_log_prob


def small_agent(algo, **changes):
    torch.manual_seed(0)
    cfg = Config(algo=algo, hidden=16, base_hidden=16, gate_hidden=8, **changes)
    return Agent(cfg, 3, np.array([-2.0, -0.5]), np.array([2.0, 0.5]), constrained=True, budget=1.0,
                 budget_discounted=1.0)


@pytest.mark.parametrize("algo,mode", [("sac-hpo", "gated"), ("hpo-conv", "conventional")])
def test_sample_log_density_is_the_change_of_variables_of_the_chain(algo, mode):
    """Agent.sample's log-density = log N(u_0) + log N(rho_0) - log|det d(a_K, rho_K)/d(u_0, rho_0)| - log N(rho_K)."""
    agent = small_agent(algo, momentum_std_train=0.7, leapfrog_eps=0.3)
    obs = torch.randn(1, 3)
    alpha, lam, std = torch.tensor(0.5), 0.3, 0.7
    torch.manual_seed(11)
    a, logp, (uK, rhoK, _, _) = agent.sample(obs, mode, std, alpha, lam)

    torch.manual_seed(11)  # the same draws: the base policy's noise, then the momentum
    mu, sigma = agent.actor.distribution(obs)
    u0 = (mu + sigma * torch.randn_like(mu)).detach()
    rho0 = std * torch.randn_like(u0)
    kick, _ = agent._kick(mode, obs, agent.critics, alpha, lam)

    def whole_map(z):
        from safehpo.hamiltonian import run_chain
        u, rho, _ = run_chain(z[:2].unsqueeze(0), z[2:].unsqueeze(0), kick, 0.3, agent.cfg.leapfrog_steps)
        return torch.cat([agent.actor.squash(u)[0], rho[0]])

    z0 = torch.cat([u0[0], rho0[0]]).double()
    agent.actor.double(), agent.critics.double()
    if agent.gated is not None:
        agent.gated.double()
    kick, _ = agent._kick(mode, obs.double(), agent.critics, alpha.double(), lam)
    jac = torch.autograd.functional.jacobian(whole_map, z0)
    a_map = whole_map(z0)
    base = torch.distributions.Normal(mu.double(), sigma.double()).log_prob(z0[:2].unsqueeze(0)).sum()
    expected = (base + momentum_log_prob(z0[2:].unsqueeze(0), std).sum() - torch.log(torch.linalg.det(jac).abs())
                - momentum_log_prob(a_map[2:].unsqueeze(0), std).sum())
    torch.testing.assert_close(a[0].double(), a_map[:2], rtol=1e-4, atol=1e-5)
    assert logp.item() == pytest.approx(expected.item(), abs=2e-3)


def test_gaussian_sample_log_density_is_the_squashed_gaussian():
    agent = small_agent("sac-lag")
    obs = torch.randn(64, 3)
    a, logp, chain = agent.sample(obs, "gaussian", 0.0, torch.tensor(1.0), 0.0)
    assert chain is None and ((a[:, 0].abs() <= 2) & (a[:, 1].abs() <= 0.5)).all()
    mu, sigma = agent.actor.distribution(obs)
    flow = torch.distributions.TransformedDistribution(torch.distributions.Normal(mu, sigma), [
        torch.distributions.TanhTransform(), torch.distributions.AffineTransform(agent.actor.bias, agent.actor.scale)])
    torch.testing.assert_close(logp, flow.log_prob(a).sum(-1), rtol=1e-3, atol=2e-3)


def test_filter_decisions_do_not_depend_on_cost_scale():
    """The cost critics learn c * cost_scale; the filter must test in the spec's units. eps_L < 0
    here, so the filter rejects some candidates and falls back on some actions."""
    decisions = []
    for scale in (1.0, 10.0):
        agent = small_agent("sac-hpo", cost_scale=scale)
        with torch.no_grad():  # the same critics in spec units: scale the cost members' last layer
            for net in (agent.critics, agent.critics_target):
                net.layers[-1].weight[2:] *= scale
                net.layers[-1].bias[2:] *= scale
        obs = np.zeros(3, dtype=np.float32)
        agent.filter.budget = agent.cost_value(torch.zeros(1, 3), agent.actor_prev.mean_action(
            torch.zeros(1, 3))) - 0.01 / (1 - agent.cfg.gamma)  # eps_L = -0.01 in spec units
        agent.episode_start(obs)
        torch.manual_seed(5)
        rng = np.random.default_rng(0)
        for _ in range(30):
            agent.act(rng.normal(size=3).astype(np.float32))
        decisions.append((round(agent.filter.eps_l, 6), agent.audit.rejected, agent.audit.unsafe_fallbacks))
    assert decisions[0] == decisions[1]
    assert 0 < decisions[0][2] < 30 < decisions[0][1]  # some rejections and fallbacks, not all actions


def test_unsafe_fallback_executes_the_lowest_cost_candidate_or_the_papers_last_one():
    """With eps_L far below anything a candidate reaches, every action falls back; both agents
    draw the same candidates, and the default's executed action never costs more than the last
    candidate's (filter_fallback="last", the paper's a_K)."""
    executed = {}
    for fallback in ("lowest-cost", "last"):
        agent = small_agent("sac-hpo", filter_fallback=fallback)
        assert agent.filter.fallback == agent.filter.for_evaluation().fallback == fallback
        agent.filter.budget = -1e9
        agent.episode_start(np.zeros(3, dtype=np.float32))
        rng = np.random.default_rng(0)
        costs = []
        for _ in range(20):
            s = rng.normal(size=3).astype(np.float32)
            a = agent.act(s)
            with torch.no_grad():
                costs.append(float(agent.target_cost(torch.as_tensor(s)[None], torch.as_tensor(a)[None])))
        assert agent.audit.unsafe_fallbacks == 20 and agent.audit.rejected == 20 * agent.cfg.k_max
        executed[fallback] = np.asarray(costs)
    assert (executed["lowest-cost"] <= executed["last"] + 1e-5).all()
    assert (executed["lowest-cost"] < executed["last"] - 1e-5).any()


@pytest.mark.parametrize("target, direction", [(1e6, 1.0), (-1e6, -1.0)])
def test_temperature_takes_one_adam_step_towards_the_target_entropy(target, direction):
    """Loss -log_alpha (log pi + target): its gradient is -(E log pi + target); Adam's first step
    moves log_alpha by exactly lr against the gradient's sign (up when the entropy is below target).
    The target is entropy_per_dim times the action's dimension (2 here)."""
    agent = small_agent("sac-lag", entropy_per_dim=target / 2)
    assert agent.target_entropy == target
    before = float(agent.log_alpha.detach())
    agent.update(random_batch(64, 3, 2))
    assert float(agent.log_alpha.detach()) - before == pytest.approx(direction * agent.cfg.lr, rel=1e-4)


def test_default_target_entropy_is_sacs_minus_the_action_dimension():
    assert small_agent("sac-lag").target_entropy == -2.0


def test_temperature_stays_without_autotune():
    agent = small_agent("sac-lag", autotune_alpha=False)
    before, actor_before = float(agent.log_alpha.detach()), agent.actor.head.weight.detach().clone()
    agent.update(random_batch(64, 3, 2))
    assert float(agent.log_alpha.detach()) == before
    assert not torch.equal(agent.actor.head.weight.detach(), actor_before)  # the policy did step


@pytest.mark.parametrize("offset, rate", [(0.0, False), (2.0, True), (0.0, True)])
def test_cost_critic_target_in_lagrangian_units(offset, rate):
    """The cost critic learns (c - offset) / unit (times cost_scale); for a rate (an average budget)
    it bootstraps through termination, otherwise a terminal transition ends the sum. One cost
    critic (the papers'); the twins' target is tested below."""
    torch.manual_seed(0)
    cfg = Config(algo="sac-lag", hidden=16, actor_hidden=16, cost_scale=0.5, cost_critics=1, cost_floor=False)
    agent = Agent(cfg, 3, -np.ones(2, np.float32), np.ones(2, np.float32), constrained=True, budget=2.0,
                  budget_discounted=1.0, cost_unit=4.0, cost_offset=offset, cost_rate=rate)
    b = random_batch(8, 3, 2)
    b["done"] = torch.tensor([1.0, 0.0] * 4)
    alpha = torch.tensor(0.5)
    torch.manual_seed(1)
    loss = agent._critic_loss(b["obs"], b["act"], b["next_obs"], b["rew"], b["cost"], b["done"], alpha, 0.0)
    torch.manual_seed(1)  # the same next actions
    with torch.no_grad():
        next_a, next_logp, _ = agent.sample(b["next_obs"], "gaussian", 0.0, alpha, 0.0)
        qn = agent.critics_target(b["next_obs"], next_a)
        q = agent.critics(b["obs"], b["act"])
    y_reward = b["rew"] + cfg.gamma * (1 - b["done"]) * (torch.minimum(qn[0], qn[1]) - alpha * next_logp)
    cont = torch.ones(8) if rate else 1 - b["done"]
    y_cost = (b["cost"] - offset) * (0.5 / 4.0) + cfg.gamma * cont * qn[2]
    expected = sum(0.5 * (q[i] - y).pow(2).mean() for i, y in ((0, y_reward), (1, y_reward), (2, y_cost)))
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("floor", [False, True])
def test_twin_cost_critics_learn_the_pessimistic_target(floor):
    """cost_critics=2: both cost critics learn c + gamma max(Q_C1', Q_C2') (bootstrapped through
    termination for a rate), clamped at a zero cost's value for ever with cost_floor; Q_C read by
    the actor and the filter is the larger of the two."""
    torch.manual_seed(0)
    cfg = Config(algo="sac-lag", hidden=16, actor_hidden=16, cost_critics=2, cost_floor=floor)
    agent = Agent(cfg, 3, -np.ones(2, np.float32), np.ones(2, np.float32), constrained=True, budget=2.0,
                  budget_discounted=1.0, cost_unit=4.0, cost_offset=2.0, cost_rate=True)
    assert agent.critics.members == 4
    with torch.no_grad():  # the target cost twins far below a zero cost's value for ever: -0.5 / (1 - gamma) = -50
        agent.critics_target.layers[-1].bias[2:] -= 1000.0
    b = random_batch(8, 3, 2)
    b["cost"] = torch.zeros(8)
    alpha = torch.tensor(0.5)
    torch.manual_seed(1)
    loss = agent._critic_loss(b["obs"], b["act"], b["next_obs"], b["rew"], b["cost"], b["done"], alpha, 0.0)
    torch.manual_seed(1)
    with torch.no_grad():
        next_a, next_logp, _ = agent.sample(b["next_obs"], "gaussian", 0.0, alpha, 0.0)
        qn = agent.critics_target(b["next_obs"], next_a)
        q = agent.critics(b["obs"], b["act"])
    y_reward = b["rew"] + cfg.gamma * (1 - b["done"]) * (torch.minimum(qn[0], qn[1]) - alpha * next_logp)
    y_cost = -2.0 / 4.0 + cfg.gamma * torch.maximum(qn[2], qn[3])
    if floor:
        y_cost = y_cost.clamp(min=-0.5 / (1 - cfg.gamma))
    assert bool((y_cost < -100).all()) != floor
    expected = sum(0.5 * (q[i] - y).pow(2).mean() for i, y in ((0, y_reward), (1, y_reward), (2, y_cost), (3, y_cost)))
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-4)
    s, a = torch.randn(5, 3), torch.rand(5, 2) - 0.5
    qt = agent.critics_target(s, a)
    torch.testing.assert_close(agent.target_cost(s, a), torch.maximum(qt[2], qt[3]))
    q_lam = agent.q_lambda(agent.critics, s, a, 0.5)
    qo = agent.critics(s, a)
    torch.testing.assert_close(q_lam, (torch.minimum(qo[0], qo[1]) - 0.5 * torch.maximum(qo[2], qo[3])) / 1.5)


@pytest.mark.parametrize("algo, units, lagrange, normalized, adam_divides", [
    ("sac-lag", "relative", "paper", True, False),
    ("sac-lag", "paper", "paper", False, False),
    ("sac-lag", "paper", "adam", False, True),
    ("sac-pid", "paper", "adam", False, False),   # sac-pid's multiplier is PID whatever `lagrange` says
])
def test_which_objective_is_divided_by_one_plus_lambda(algo, units, lagrange, normalized, adam_divides):
    agent = small_agent(algo, lambda_units=units, lagrange=lagrange)
    assert (agent.normalized, agent.adam_divides) == (normalized, adam_divides)


def test_an_agent_draws_from_its_own_random_stream():
    """Two sac-hpo agents (seeds 0 and 1) stepped in turn in one process, with other draws from
    torch's global generator in between, initialise, learn and act exactly as each does alone."""
    torch.manual_seed(7)
    batches = [random_batch(32, 3, 2) for _ in range(3)]
    obs = np.array([0.1, -0.2, 0.3], dtype=np.float32)

    def step(agent):
        agent.update(batches[len(agent.trace)])
        agent.trace.append((agent.act(obs), agent.actor.head.weight.detach().clone()))

    alone = []
    for seed in (0, 1):
        agent = small_agent("sac-hpo", seed=seed, compile="never")
        agent.trace = []
        for _ in batches:
            step(agent)
        alone.append(agent.trace)
    torch.manual_seed(123)
    together = [small_agent("sac-hpo", seed=seed, compile="never") for seed in (0, 1)]
    for agent in together:
        agent.trace = []
    for _ in batches:
        for agent in together:
            torch.rand(5)  # another user of torch's generator
            step(agent)
    for mine, theirs in zip(alone, together):
        for (a1, w1), (a2, w2) in zip(mine, theirs.trace):
            np.testing.assert_array_equal(a1, a2)
            assert torch.equal(w1, w2)
    assert not np.array_equal(alone[0][0][0], alone[1][0][0])  # the seeds differ


def test_a_random_stream_cannot_be_entered_inside_another():
    """Entering stream A again inside stream B would draw from B's state: refused."""
    from safehpo.random_stream import RandomStream
    a, b = RandomStream(0), RandomStream(1)
    with a:
        with a:  # nested entry of the same stream: fine
            torch.rand(1)
        with b:
            with pytest.raises(RuntimeError):
                a.__enter__()
    with a:  # and a's stream went on where it was: one draw of 1, then these 3
        x = torch.rand(3)
    g = torch.Generator().manual_seed(0)
    torch.rand(1, generator=g)
    assert torch.equal(x, torch.rand(3, generator=g))


@pytest.mark.parametrize("kind,threshold", [("average", 20.0), ("sum", 4.0), ("discounted", 3.0)])
def test_budget_margin_gives_the_agent_the_lower_budget_and_nothing_else(tmp_path, kind, threshold):
    """budget_margin m: the multiplier, the cost critic's units and the filter see (1 - m) * d0,
    exactly as an agent built for a spec whose budget is (1 - m) * d0; the spec itself is unchanged."""
    from conftest import write_spec
    from safehpo.cmdp import load_spec, make_env

    def spec_with(name, d0):
        return load_spec(write_spec(tmp_path / f"{name}.yaml", name, "{kind: torque, params: {}}",
                                    f"{{threshold: {d0}, kind: {kind}}}"))

    def budgets(agent):
        return [agent.multiplier.budget, agent.filter.budget, agent.budget_discounted,
                agent.units.unit, agent.units.offset]

    spec = spec_with("full", threshold)
    env = make_env(spec)
    cfg = Config(algo="sac-hpo", hidden=16, base_hidden=16, gate_hidden=8)
    with_margin = Agent.for_env(cfg.replace(budget_margin=0.25), spec, env)
    aimed_lower = Agent.for_env(cfg, spec_with("lower", 0.75 * threshold), env)
    plain = Agent.for_env(cfg, spec, env)
    env.close()
    assert budgets(with_margin) == pytest.approx(budgets(aimed_lower))
    assert with_margin.multiplier.budget == pytest.approx(0.75 * plain.multiplier.budget)
    assert with_margin.budget_discounted == pytest.approx(0.75 * plain.budget_discounted)
    assert spec.budget.threshold == threshold
