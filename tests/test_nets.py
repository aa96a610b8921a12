"""Regression guard: the stacked critics compute exactly what separate MLPs would (issue: speed work
may never change the math)."""

import torch
from torch import nn

from safehpo.nets import CriticStack, SquashedGaussianActor


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
