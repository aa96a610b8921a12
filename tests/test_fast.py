"""The fast paths (fast.py) equal the readable reference (agent.py, nets.py) they stand in for.

`fast_paths: false` turns the hand-written force and the actor loss's reuse of the chain's last
critic pass off; these tests also say what the fast paths assume: critics that are
nets.CriticStack (two ReLU hidden layers), whose action gradient CriticsAt writes out.
"""

import numpy as np
import pytest
import torch

from conftest import random_batch
from safehpo.agent import Agent
from safehpo.config import Config
from safehpo.fast import PICK_MIN_ROWS, critics_at, q_lambda_and_grad
from safehpo.nets import CriticStack
from test_nets import separate_copies


def small_agent(algo, **changes):
    torch.manual_seed(0)
    cfg = Config(algo=algo, hidden=16, base_hidden=16, gate_hidden=8, **changes)
    return Agent(cfg, 3, np.array([-2.0, -0.5]), np.array([2.0, 0.5]), constrained=True, budget=1.0,
                 budget_discounted=1.0)


@pytest.mark.parametrize("batch", [PICK_MIN_ROWS - 1, PICK_MIN_ROWS])
def test_hand_written_action_gradient_equals_autograd_of_separate_critics(batch):
    """CriticsAt (the chain's force): values and dv/da of v = min(Q1, Q2) - 0.7 Q_C equal autograd
    through ordinary MLPs, also where the twins tie in value but not in gradient (autograd's
    minimum gives each half), and for a slice of the stack; on every row (a small batch) and on
    the rows where a twin is the minimum (min_members=2, from PICK_MIN_ROWS rows on)."""
    torch.manual_seed(3)
    stack = CriticStack(3, 7, 4, hidden=32)
    obs = torch.randn(batch, 7)

    def combine(q):
        tie = 0.5 * (q[0] == q[1])
        return (torch.minimum(q[0], q[1]) - 0.7 * q[2],
                torch.stack([(q[0] < q[1]) + tie, (q[1] < q[0]) + tie, torch.full_like(q[0], -0.7)]))

    for tied in (False, True):
        act = torch.randn(batch, 4)
        if tied:  # twin 2 = twin 1 but for its action weights: at a = 0 the values tie, the gradients differ
            with torch.no_grad():
                for layer in stack.layers:
                    layer.weight[1].copy_(layer.weight[0])
                    layer.bias[1].copy_(layer.bias[0])
                stack.layers[0].weight[1, 7:] += torch.randn(4, 32)
            act = torch.zeros(batch, 4)
            act[: batch // 2] = torch.randn(batch // 2, 4)  # and rows that do not tie
        nets = separate_copies(stack)
        v, dv = critics_at(stack, obs).value_and_grad(act, combine, min_members=2)
        a = act.clone().requires_grad_(True)
        q = [net(torch.cat([obs, a], -1)).squeeze(-1) for net in nets]
        v_ref = torch.minimum(q[0], q[1]) - 0.7 * q[2]
        (dv_ref,) = torch.autograd.grad(v_ref.sum(), a, retain_graph=True)
        assert bool((q[0] == q[1]).any()) == tied and not bool((q[0] == q[1]).all())
        torch.testing.assert_close(v, v_ref.detach(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dv, dv_ref, rtol=1e-5, atol=1e-6)
        sub = critics_at(stack, obs, slice(2, 3))  # a slice of the stack: the cost member alone
        v_cost, dv_cost = sub.value_and_grad(act, lambda qs: (qs[0], torch.ones_like(qs)))
        torch.testing.assert_close(v_cost, q[2].detach(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dv_cost, torch.autograd.grad(q[2].sum(), a)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lam", [0.0, 0.8])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("cost_critics", [1, 2])
def test_hand_written_q_lambda_gradient_equals_autograd(lam, tied, cost_critics):
    """The chain's fast force (no autograd): value and dQ_lambda/da equal autograd of the reference
    Agent.q_lambda, also where the twins tie (autograd's minimum, and maximum of twin cost critics,
    give each half the gradient)."""
    agent = small_agent("sac-hpo", cost_scale=0.5, cost_critics=cost_critics)
    obs, act = torch.randn(32, 3), torch.rand(32, 2) - 0.5
    if tied:  # twin 2 = twin 1 but for its action weights; at a = 0 the values tie, the gradients differ
        with torch.no_grad():
            for first, second in ((0, 1), (2, 3))[:cost_critics]:  # the reward twins, and the cost twins
                for layer in agent.critics.layers:
                    layer.weight[second].copy_(layer.weight[first])
                    layer.bias[second].copy_(layer.bias[first])
                agent.critics.layers[0].weight[second, 3:] += torch.randn(2, 16)
        act = torch.zeros(32, 2)
    members = agent.q_lambda_members(lam)
    v, dv = q_lambda_and_grad(agent.critics, obs, members, agent.units.cost_coef(lam), 1.0 + lam)(act)
    a = act.clone().requires_grad_(True)
    v_ref = agent.q_lambda(agent.critics, obs, a, lam)
    (dv_ref,) = torch.autograd.grad(v_ref.sum(), a)
    torch.testing.assert_close(v, v_ref.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dv, dv_ref, rtol=1e-5, atol=1e-6)
    if tied:
        q = agent.critics(obs, act)
        assert bool((q[0] == q[1]).all())


@pytest.mark.parametrize("algo, cost_critics", [("sac-hpo", 1), ("sac-hpo", 2), ("hpo-conv", 1), ("hpo-train", 2),
                                                ("hpo-nomomentum", 1)])
@pytest.mark.parametrize("lam", [0.0, 0.6])
def test_fast_update_equals_the_reference_update(algo, cost_critics, lam):
    """Two updates and then actions (filtered where the algorithm filters), with the fast paths and
    with plain autograd, from the same seed: the same parameters and actions, to float tolerance
    (the sums run in another order)."""
    results = []
    for fast_paths in (True, False):
        agent = small_agent(algo, fast_paths=fast_paths, compile="never", cost_critics=cost_critics)
        agent.multiplier.value = lam
        torch.manual_seed(1)
        batch = random_batch(64, 3, 2)
        agent.update(batch)
        agent.update(batch)
        torch.manual_seed(2)
        obs = np.random.default_rng(0).normal(size=3).astype(np.float32)
        agent.episode_start(obs)
        actions = np.stack([agent.act(obs), agent.act(obs, deterministic=True)])
        policy = list(agent.actor.parameters()) + (list(agent.gated.parameters()) if agent.gated else [])
        results.append((agent, policy, actions))
    (fast, fast_policy, a_fast), (ref, ref_policy, a_ref) = results
    assert fast.fast and not ref.fast
    for p, q in zip(fast.critics.parameters(), ref.critics.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    for p, q in zip(fast_policy, ref_policy):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a_fast, a_ref, rtol=1e-4, atol=1e-5)


def test_fast_paths_assume_relu_critics():
    """The hand-written gradient is the ReLU MLP's: for a critic with another activation it is
    wrong, which is why such a critic needs `fast_paths: false` (if CriticsAt ever stops assuming
    ReLU, this test fails and should be rewritten with what it does assume)."""
    torch.manual_seed(3)
    stack = CriticStack(1, 5, 2, hidden=16)
    obs, act = torch.randn(40, 5), torch.randn(40, 2)
    _, dv_fast = critics_at(stack, obs).value_and_grad(act, lambda q: (q[0], torch.ones_like(q)))
    a = act.clone().requires_grad_(True)
    x = torch.cat([obs, a], -1)
    (w1, b1), (w2, b2), (w3, b3) = [(layer.weight[0], layer.bias[0]) for layer in stack.layers]
    silu = torch.nn.functional.silu
    relu_q = (torch.relu(torch.relu(x @ w1 + b1) @ w2 + b2) @ w3 + b3).squeeze(-1)
    silu_q = (silu(silu(x @ w1 + b1) @ w2 + b2) @ w3 + b3).squeeze(-1)
    torch.testing.assert_close(dv_fast, torch.autograd.grad(relu_q.sum(), a)[0], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(dv_fast, torch.autograd.grad(silu_q.sum(), a)[0], rtol=1e-2, atol=1e-3)
