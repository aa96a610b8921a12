"""Networks: a stack of critics evaluated as one batched matmul, and the squashed-Gaussian actor.

Every critic network is a *member* of a `CriticStack`: weights carry a leading member
dimension, so the twin reward critics and the cost critic (and later, several seeds) cost one
`baddbmm` per layer instead of one matmul per network.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def _compiling() -> bool:
    is_compiling = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3
    return bool(is_compiling and is_compiling())


def affine(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x_m W_m + b_m for every member m: [M, B, I] x [M, I, O] + [M, 1 or B, O].

    Eager: one baddbmm. Under torch.compile: the matmul, then the bias added by the elementwise
    kernel that follows (baddbmm would first copy the bias into its output: one more pass over
    [M, B, O]); a layer with one output (O = 1) as a row-wise dot product fused with that kernel.
    """
    if not _compiling():
        return torch.baddbmm(b, x, w)
    if w.shape[-1] == 1:
        return (x * w.transpose(1, 2)).sum(-1, keepdim=True) + b
    return torch.bmm(x, w) + b


class StackedLinear(nn.Module):
    """M independent affine maps y_m = x_m W_m + b_m as one batched matmul: [M,B,I] -> [M,B,O]."""

    def __init__(self, members: int, in_features: int, out_features: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default initialisation
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return affine(x, self.weight, self.bias)


class CriticStack(nn.Module):
    """M critics Q_m(s, a), each an MLP with two ReLU hidden layers; returns [M, B].

    Member order used by the agent: 0, 1 = twin reward critics, 2.. = cost critics (`cost_critics` of them).
    `forward(..., detach_params=True)` evaluates with detached weights: gradients reach the
    inputs (the action) but no weight gradient is computed, as the actor step needs.
    """

    def __init__(self, members: int, obs_dim: int, act_dim: int, hidden: int = 256):
        super().__init__()
        self.members = members
        self.layers = nn.ModuleList([
            StackedLinear(members, obs_dim + act_dim, hidden),
            StackedLinear(members, hidden, hidden),
            StackedLinear(members, hidden, 1),
        ])

    def forward(self, obs: torch.Tensor, act: torch.Tensor, detach_params: bool = False,
                members: slice = slice(None)) -> torch.Tensor:
        """[M', B] values of the selected members (a slice of the stack: no copy, less work)."""
        x = torch.cat([obs, act], dim=-1)
        layers = self.layers
        whole = members == slice(None) or members == slice(0, self.members)
        params = [(l.weight, l.bias) if whole else (l.weight[members], l.bias[members]) for l in layers]
        x = x.unsqueeze(0).expand(params[0][0].shape[0], *x.shape)
        last = len(layers) - 1
        for i, (w, b) in enumerate(params):
            if detach_params:
                w, b = w.detach(), b.detach()
            x = affine(x, w, b)
            if i < last:
                x = torch.relu_(x)  # in place: one buffer less to stream through the cache
        return x.squeeze(-1)


class SquashedGaussianActor(nn.Module):
    """pi(a|s): u ~ N(mu(s), sigma(s)), a = scale * tanh(u) + bias (SAC's squashed Gaussian).

    Works in pre-tanh space so the Hamiltonian chain can continue from u (hamiltonian.py).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, layers: int,
                 low: torch.Tensor, high: torch.Tensor):
        super().__init__()
        trunk: list[nn.Module] = []
        d = obs_dim
        for _ in range(layers):  # `layers` ReLU hidden layers, then the (mu, log_std) head
            trunk += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        self.trunk = nn.Sequential(*trunk)
        self.head = nn.Linear(d, 2 * act_dim)
        self.register_buffer("scale", (high - low) / 2.0)
        self.register_buffer("bias", (high + low) / 2.0)
        self.log_scale_sum = float(torch.log(self.scale).sum())

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, std) of the pre-tanh Gaussian."""
        mu, log_std = self.head(self.trunk(obs)).chunk(2, dim=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1.0)
        return mu, log_std.exp()

    def squash(self, u: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.tanh(u) + self.bias

    def log_det_squash(self, u: torch.Tensor) -> torch.Tensor:
        """log |det d squash / du| = sum_i log(scale_i (1 - tanh(u_i)^2)), computed stably."""
        return (2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))).sum(-1) + self.log_scale_sum

    def sample_pre_tanh(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """u ~ N(mu, std) (reparameterised) and log N(u; mu, std) summed over action dims."""
        mu, std = self.distribution(obs)
        noise = torch.randn_like(mu)
        u = mu + std * noise
        log_prob = (-0.5 * noise.pow(2) - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        return u, log_prob

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a ~ pi(.|s) and log pi(a|s) with the tanh change of variables."""
        u, log_prob = self.sample_pre_tanh(obs)
        return self.squash(u), log_prob - self.log_det_squash(u)

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        mu, _ = self.distribution(obs)
        return self.squash(mu)
