"""Regression guard: the stacked critics compute exactly what separate MLPs would (issue: speed work
may never change the math)."""

import pytest
import torch
from torch import nn

from safehpo.nets import PICK_MIN_ROWS, CriticStack, SquashedGaussianActor


def separate_copies(stack: CriticStack) -> list[nn.Sequential]:
    """One ordinary nn.Linear/ReLU MLP per member, with the member's weights."""
    nets = []
    for m in range(stack.members):
        layers = []
        for i, layer in enumerate(stack.layers):
            lin = nn.Linear(layer.weight.shape[1], layer.weight.shape[2])
            with torch.no_grad():
                lin.weight.copy_(layer.weight[m].T)
                lin.bias.copy_(layer.bias[m, 0])
            layers += [lin] + ([nn.ReLU()] if i < len(stack.layers) - 1 else [])
        nets.append(nn.Sequential(*layers))
    return nets


def test_stacked_critics_equal_separate_critics_values_and_gradients():
    torch.manual_seed(0)
    stack = CriticStack(3, 11, 4, hidden=64)
    nets = separate_copies(stack)
    obs, act = torch.randn(32, 11), torch.randn(32, 4)
    target = torch.randn(3, 32)

    q_stack = stack(obs, act)
    q_sep = torch.stack([net(torch.cat([obs, act], -1)).squeeze(-1) for net in nets])
    torch.testing.assert_close(q_stack, q_sep, rtol=1e-5, atol=1e-5)

    (q_stack - target).pow(2).mean(-1).sum().backward()
    (q_sep - target).pow(2).mean(-1).sum().backward()
    for i, layer in enumerate(stack.layers):
        for m, net in enumerate(nets):
            lin = net[2 * i]
            torch.testing.assert_close(layer.weight.grad[m], lin.weight.grad.T, rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(layer.bias.grad[m, 0], lin.bias.grad, rtol=1e-4, atol=1e-6)


def test_detached_parameters_pass_action_gradients_but_no_weight_gradients():
    torch.manual_seed(1)
    stack = CriticStack(2, 5, 3, hidden=16)
    nets = separate_copies(stack)
    obs = torch.randn(8, 5)
    a1 = torch.randn(8, 3, requires_grad=True)
    a2 = a1.detach().clone().requires_grad_(True)
    stack(obs, a1, detach_params=True).sum().backward()
    sum(net(torch.cat([obs, a2], -1)).sum() for net in nets).backward()
    torch.testing.assert_close(a1.grad, a2.grad, rtol=1e-5, atol=1e-6)
    assert all(p.grad is None for p in stack.parameters())


def test_squashed_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(2)
    low, high = torch.tensor([-0.4, -1.0]), torch.tensor([0.4, 2.0])
    actor = SquashedGaussianActor(6, 2, 16, 2, low, high)
    obs = torch.randn(64, 6)
    a, logp = actor.sample(obs)
    assert ((a >= low) & (a <= high)).all()
    mu, std = actor.distribution(obs)
    base = torch.distributions.Normal(mu, std)
    flow = torch.distributions.TransformedDistribution(base, [
        torch.distributions.TanhTransform(),
        torch.distributions.AffineTransform(actor.bias, actor.scale)])
    torch.testing.assert_close(logp, flow.log_prob(a).sum(-1), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("batch", [PICK_MIN_ROWS - 1, PICK_MIN_ROWS])
def test_hand_written_action_gradient_equals_autograd_of_separate_critics(batch):
    """CriticsAt (the chain's force): values and dv/da of v = min(Q1, Q2) - 0.7 Q_C equal autograd
    through ordinary MLPs, also where the twins tie in value but not in gradient (autograd's
    minimum gives each half), and for a slice of the stack; on every row (a small batch) and on
    the rows the minimum picks (picks=2, from PICK_MIN_ROWS rows on)."""
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
        v, dv = stack.at(obs).value_and_grad(act, combine, picks=2)
        a = act.clone().requires_grad_(True)
        q = [net(torch.cat([obs, a], -1)).squeeze(-1) for net in nets]
        v_ref = torch.minimum(q[0], q[1]) - 0.7 * q[2]
        (dv_ref,) = torch.autograd.grad(v_ref.sum(), a, retain_graph=True)
        assert bool((q[0] == q[1]).any()) == tied and not bool((q[0] == q[1]).all())
        torch.testing.assert_close(v, v_ref.detach(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dv, dv_ref, rtol=1e-5, atol=1e-6)
        sub = stack.at(obs, slice(2, 3))  # a slice of the stack: the cost member alone
        v_cost, dv_cost = sub.value_and_grad(act, lambda qs: (qs[0], torch.ones_like(qs)))
        torch.testing.assert_close(v_cost, q[2].detach(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dv_cost, torch.autograd.grad(q[2].sum(), a)[0], rtol=1e-5, atol=1e-6)
