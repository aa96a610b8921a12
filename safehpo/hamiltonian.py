"""The Hamiltonian policy (SAC-HPO, eq. 8-13): leapfrog operators and the K-step chain.

The chain runs in the pre-tanh space u of the squashed-Gaussian base policy, a = squash(u):
- the target density in u is exp(Q_lambda(s, squash u)/alpha) |det squash'(u)|, so the
  potential is U(u) = -Q_lambda(s, squash u)/alpha - log|det squash'(u)| and its force
  -grad_u U = squash'(u) dQ_lambda/da / alpha - 2 tanh(u);
- actions never leave the box (tanh), and every kick depends on u alone, every drift on rho
  alone, so each step is a shear with unit Jacobian and the joint density is exact:
  log q(a_K, rho_K) = log N(u_0; mu, sigma) + log N(rho_0) - log|det squash'(u_K)|
  (the tanh correction at u_K, not u_0).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

Kick = Callable[[torch.Tensor], torch.Tensor]   # u -> kick at u (depends on u only)


def normalise(g: torch.Tensor, delta: float = 1e-3) -> torch.Tensor:
    """g / sqrt(|g|^2 + delta^2): a unit-length gradient that is finite (zero) at g = 0."""
    return g * torch.rsqrt(g.pow(2).sum(-1, keepdim=True) + delta * delta)


def leapfrog(u: torch.Tensor, rho: torch.Tensor, kick_u: torch.Tensor, kick: Kick, eps: float):
    """One leapfrog step (eq. 9; eq. 13 with the gated kick): half kick, drift, half kick.

    kick_u is the kick at u (carried over from the previous step, so each step costs one new
    kick evaluation). Returns (u', rho', kick at u'). Unit Jacobian: each line is a shear.
    """
    rho = rho + 0.5 * eps * kick_u
    u = u + eps * rho
    kick_new = kick(u)
    rho = rho + 0.5 * eps * kick_new
    return u, rho, kick_new


def run_chain(u0: torch.Tensor, rho0: torch.Tensor, kick: Kick, eps: float, steps: int):
    """K leapfrog steps from (u_0, rho_0). Returns (u_K, rho_K, kick at u_K)."""
    u, rho, k = u0, rho0, kick(u0)
    for _ in range(steps):
        u, rho, k = leapfrog(u, rho, k, kick, eps)
    return u, rho, k


def momentum_log_prob(rho: torch.Tensor, std: float) -> torch.Tensor:
    """log N(rho; 0, std^2 I), std = beta0^-1/2."""
    d = rho.shape[-1]
    return -0.5 * rho.pow(2).sum(-1) / std**2 - d * (math.log(std) + 0.5 * math.log(2 * math.pi))


class GatedKick(nn.Module):
    """The gated kick of eq. 13: sigma_h(x) * g + (1 - sigma_h(x)) * T_h(x), x = (s, a, g).

    g is the normalised force (-grad U). T_h (tanh output) and sigma_h (sigmoid output) are
    one-hidden-layer ELU MLPs reading tanh(u), g and optionally s, never rho (that would break
    the unit Jacobian). Initialised near the conventional kick: small output weights, so
    T_h ~ 0 and the gate ~ 0.5.
    """

    def __init__(self, act_dim: int, obs_dim: int = 0, hidden: int = 32, state_input: bool = False,
                 init_gain: float = 0.01):
        super().__init__()
        self.state_input = state_input
        in_dim = 2 * act_dim + (obs_dim if state_input else 0)
        self.transform = nn.Sequential(nn.Linear(in_dim, hidden), nn.ELU(), nn.Linear(hidden, act_dim))
        self.gate = nn.Sequential(nn.Linear(in_dim, hidden), nn.ELU(), nn.Linear(hidden, act_dim))
        for head in (self.transform[-1], self.gate[-1]):
            nn.init.uniform_(head.weight, -init_gain, init_gain)
            nn.init.zeros_(head.bias)

    def forward(self, obs: torch.Tensor | None, u: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
        g = normalise(force)
        parts = [torch.tanh(u), g] + ([obs] if self.state_input else [])
        x = torch.cat(parts, dim=-1)
        sigma = torch.sigmoid(self.gate(x))
        return sigma * g + (1.0 - sigma) * torch.tanh(self.transform(x))


class CriticForce:
    """force(u) = -grad_u U(u) = scale (1 - tanh^2 u) dQ_lambda/da / alpha - 2 tanh u  (eq. 8 in u).

    q_fn(a) -> [B] is Q_lambda(s, a) for the batch's states. First order (default): dQ/da is
    taken on a detached copy of a, without a graph; only the squash factor (1 - tanh^2 u) stays
    in the graph. For ReLU critics d^2Q/da^2 = 0, so this gives the same policy gradient as
    second order (create_graph=True), which is kept as an ablation. Works under no_grad too.
    `q_and_grad(a) -> (Q_lambda, dQ_lambda/da)`, where given, replaces autograd in first order
    (the agent passes the hand-written gradient of fast.CriticsAt).
    Remembers Q_lambda and dQ_lambda/da at the last point it was evaluated (see `q_at_last`).
    """

    def __init__(self, q_fn: Callable[[torch.Tensor], torch.Tensor], scale: torch.Tensor,
                 alpha: torch.Tensor | float, squash: Callable[[torch.Tensor], torch.Tensor],
                 second_order: bool = False,
                 q_and_grad: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None):
        self.q_fn, self.scale, self.alpha, self.squash, self.second_order = q_fn, scale, alpha, squash, second_order
        self.q_and_grad = q_and_grad
        self.last_u: torch.Tensor | None = None
        self.last_q: torch.Tensor | None = None
        self.last_dq_da: torch.Tensor | None = None

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        if self.q_and_grad is not None and not self.second_order:
            with torch.no_grad():
                q, dq_da = self.q_and_grad(self.squash(u.detach()))
        else:
            q, dq_da = self._autograd(u)
        self.last_u, self.last_q, self.last_dq_da = u, q.detach(), dq_da
        t = torch.tanh(u)
        return dq_da * self.scale * (1.0 - t * t) / self.alpha - 2.0 * t

    def _autograd(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            if self.second_order:
                u_in = u if u.requires_grad else u.detach().requires_grad_(True)
                a = self.squash(u_in)
                q = self.q_fn(a)
                (dq_da,) = torch.autograd.grad(q.sum(), a, create_graph=u.requires_grad)
            else:
                a = self.squash(u.detach()).requires_grad_(True)
                q = self.q_fn(a)
                (dq_da,) = torch.autograd.grad(q.sum(), a)
        return q, dq_da

    def q_at_last(self, a: torch.Tensor) -> torch.Tensor:
        """Q_lambda(s, a) at the last evaluated point a = squash(last_u), without a new critic pass.

        Value Q_lambda(s, a); gradient dQ_lambda/da . da/dtheta, the first-order surrogate. With
        detached critic weights and a ReLU critic this is exactly the gradient a fresh evaluation
        gives (a test checks it), and it saves one critic forward + backward per actor step.
        """
        return self.last_q + ((a - a.detach()) * self.last_dq_da.detach()).sum(-1)


def make_kick(force: Callable, gated: GatedKick | None, obs: torch.Tensor | None) -> Kick:
    """The kick at u: the raw force (conventional, eq. 9) or the gated kick (eq. 13)."""
    if gated is None:
        return force
    return lambda u: gated(obs, u, force(u))
