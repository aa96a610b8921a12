"""Fast paths of the SAC family, kept beside the readable reference in agent.py (docs/performance.md).

Each is switched off by one setting, and tests/test_fast.py holds it equal to the reference:
- `fast_paths` (default true): the critics' action gradient written out by hand for the
  Hamiltonian chain's force (`q_lambda_and_grad`, no autograd graph), and the actor loss reading
  Q_lambda at a_K from the chain's last force evaluation (hamiltonian.CriticForce.q_at_last)
  instead of a new critic pass. Both rely on the critic being nets.CriticStack, an MLP with two
  ReLU hidden layers (its second derivative in the action is zero): a critic with another
  activation, a normalisation layer or another depth needs `fast_paths: false`, which takes every
  gradient from autograd.
- `compile` (auto | always | never): torch.compile of both losses and of acting (`Compiler`).
"""

from __future__ import annotations

import sys
from typing import Callable

import torch

from .algos import ALGOS
from .config import Config
from .nets import affine

PICK_MIN_ROWS = 32  # CriticsAt.value_and_grad: smaller batches (acting: one state) take every row


class CriticsAt:
    """Q_m(s, .) of a critic stack at fixed states, with a hand-written action gradient.

    The Hamiltonian chain evaluates the same states at several actions with detached weights: the
    states' share of the first layer, s W1_s + b1, is computed once; `value_and_grad` returns
    sum_m c_m Q_m and its gradient in a by the chain rule written out for the ReLU MLP,
    dQ_m/da = W1_a diag(1[h1 > 0]) W2 diag(1[h2 > 0]) w3, without an autograd graph.
    """

    def __init__(self, layers: list[tuple[torch.Tensor, torch.Tensor]], obs: torch.Tensor):
        """`layers`: the members' detached (weight, bias) of the three layers (nets.CriticStack.layers)."""
        (w1, b1), (w2, b2), (w3, b3) = layers
        obs_dim, m = obs.shape[-1], w1.shape[0]
        self.state_part = affine(obs.unsqueeze(0).expand(m, *obs.shape), w1[:, :obs_dim], b1)
        self.w1a, self.w2, self.b2, self.w3, self.b3 = w1[:, obs_dim:], w2, b2, w3, b3

    def _hidden(self, act: torch.Tensor):
        x = act.unsqueeze(0).expand(self.w1a.shape[0], *act.shape)
        h1 = torch.relu_(affine(x, self.w1a, self.state_part))
        h2 = torch.relu_(affine(h1, self.w2, self.b2))
        return h1, h2

    def value_and_grad(self, act: torch.Tensor, combine, min_members: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(v, dv/da) for v = combine(q): `combine` maps the [M', B] values to (v [B], c [M', B]),
        c = dv/dq (e.g. the twin minimum's indicator, -lambda for the cost member).

        `min_members`: how many leading members enter v through a minimum, so that their c is 0
        wherever another member is the smaller. On the CPU, for a batch of at least PICK_MIN_ROWS,
        only the rows a member is the minimum for go through its backward matmuls: for the twins
        that halves their [B, H] x [H, H] product (ties: both members' rows, half each, as autograd)."""
        h1, h2 = self._hidden(act)
        q = affine(h2, self.w3, self.b3).squeeze(-1)
        v, c = combine(q)
        if not (act.device.type == "cpu" and act.shape[0] >= PICK_MIN_ROWS):
            min_members = 0  # on a GPU the matmul is cheap and counting the rows would cost a host sync
        # dQ_m/da for every row, then weighted by c: the rows' weights commute with the matmuls,
        # so they scale the small [M', B, A] result instead of a [M', B, H] activation
        m0 = min_members
        g2 = torch.ops.aten.threshold_backward(self.w3.transpose(1, 2).expand_as(h2), h2, 0.0)
        g1 = torch.ops.aten.threshold_backward(torch.bmm(g2[m0:], self.w2[m0:].transpose(1, 2)), h1[m0:], 0.0)
        grad = (torch.bmm(g1, self.w1a[m0:].transpose(1, 2)) * c[m0:].unsqueeze(-1)).sum(0)
        for m in range(m0):  # the same, on the rows where member m is the minimum
            rows = c[m].nonzero().squeeze(1)
            g1 = torch.ops.aten.threshold_backward(g2[m].index_select(0, rows) @ self.w2[m].T,
                                                   h1[m].index_select(0, rows), 0.0)
            grad = grad.index_add(0, rows, (g1 @ self.w1a[m].T) * c[m].index_select(0, rows).unsqueeze(-1))
        return v, grad


def critics_at(critics, obs: torch.Tensor, members: slice = slice(None)) -> CriticsAt:
    """The selected members of a nets.CriticStack at the states `obs`, weights detached."""
    # the slicing stays here: dynamo cannot pass a slice to a constructor without a graph break
    return CriticsAt([(l.weight[members].detach(), l.bias[members].detach()) for l in critics.layers], obs)


def q_lambda_and_grad(critics, obs: torch.Tensor, members: slice, cost_coef, normalizer):
    """a -> (Q_lambda(s, a), dQ_lambda/da) at the states `obs`, as agent.Agent.q_lambda computes it.

    dQ_lambda/dq: the twin minimum's indicator (ties split in half, as autograd's minimum does)
    and -cost_coef for the cost member (present when `members` reaches it), or for twin cost
    members -cost_coef times their maximum's indicator; all divided by `normalizer` (1 + lambda in
    relative units; None: not divided).
    """
    cost_members = members.stop - 2
    at = critics_at(critics, obs, members)

    def combine(q: torch.Tensor):
        q1, q2 = q[0], q[1]
        tie = 0.5 * (q1 == q2)
        coef = [(q1 < q2) + tie, (q2 < q1) + tie]
        v = torch.minimum(q1, q2)
        if cost_members == 1:
            v = v - cost_coef * q[2]
            coef.append(torch.ones_like(q1) * -cost_coef)
        elif cost_members == 2:
            qc1, qc2 = q[2], q[3]
            tie_c = 0.5 * (qc1 == qc2)
            v = v - cost_coef * torch.maximum(qc1, qc2)
            coef += [((qc1 > qc2) + tie_c) * -cost_coef, ((qc2 > qc1) + tie_c) * -cost_coef]
        if cost_members:
            if normalizer is not None:
                v = v / normalizer
                coef = [c / normalizer for c in coef]
        return v, torch.stack(coef)

    return lambda act: at.value_and_grad(act, combine, min_members=2)


# compile=auto compiles a run's update and acting where it pays off (docs/performance.md): a
# Hamiltonian policy's, whose chains are many small ops that inductor fuses (per update 1.1-1.2x on
# CPU, 1.4-1.9x on an H100; acting 1.4-3x on CPU), in a run long enough to repay the first compile
# (about a minute on CPU for sac-hpo, seconds from inductor's on-disk cache). Gaussian updates are
# not faster compiled on CPU and not consistently faster on a GPU.
COMPILE_MIN_UPDATES = 20_000


def compiles(cfg: Config, device: torch.device) -> bool:
    """Whether a run compiles its losses and acting (cfg.compile: auto | always | never).

    auto: a Hamiltonian training loss on CPU or CUDA in a run long enough to repay the compile.
    auto never compiles second_order: autograd.grad inside the loss splits the graph and fails at
    run time (the Compiler then goes eager, with its one line)."""
    if cfg.compile != "auto":
        return cfg.compile == "always"
    return (ALGOS[cfg.algo].train != "gaussian" and device.type in ("cpu", "cuda") and not cfg.second_order
            and cfg.steps - cfg.learning_starts >= COMPILE_MIN_UPDATES)


class Compiler:
    """Calls fn(*args), a loss or an action of the agent, through torch.compile while `enabled`.

    Every function takes lambda last. Lambda != 0 reaches a compiled function as a 0-dim float64
    tensor (what torch.compile makes of a symbolic float): one graph for all its values. Passed as
    a float it would be compiled as a constant first and again as a symbolic float at its first
    change. Lambda = 0 stays a float: its graphs skip the cost critic (agent.Agent.q_lambda_members).

    If compiling fails (no C++ compiler, a torch that lacks what this needs, the recompile limit,
    an inductor error) it says so in one line on stderr and goes eager for good: the random-number
    state is put back and fn evaluated eagerly, so the result is the eager one (a genuine error of
    fn then shows as itself).
    """

    def __init__(self, enabled: bool, device: torch.device, fns: tuple[Callable, ...]):
        self.enabled, self.device, self.fns = enabled, device, fns
        self._compiled: dict | None = None  # built at the first call

    def __call__(self, fn: Callable, *args):
        if self.enabled:
            *args, lam = args
            args.append(lam if lam == 0.0 else torch.tensor(lam, dtype=torch.float64))
            rng = torch.get_rng_state()
            cuda_rng = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
            try:  # past the recompile limit, raise (and say so below) rather than run eagerly unsaid
                if self._compiled is None:
                    self._compiled = self._compile()
                # capture_dynamic_output_shape_ops: the rows a twin is the minimum for (CriticsAt)
                with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True,
                                                capture_dynamic_output_shape_ops=True):
                    return self._compiled[fn](*args)
            except Exception as e:  # noqa: BLE001 - whatever torch.compile raises
                self.enabled = False
                args[-1] = lam
                torch.set_rng_state(rng)
                if cuda_rng is not None:
                    torch.cuda.set_rng_state(cuda_rng, self.device)
                reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
                print(f"safehpo: torch.compile failed, training eagerly ({reason})", file=sys.stderr)
        return fn(*args)

    def _compile(self) -> dict:
        """torch.compile of every function; each compiles at its first call (one graph for lambda != 0,
        one more for lambda = 0).

        Compiled graphs are cached per function for the whole process, and every agent's count
        against the same recompile limit: a process trains one agent at a time (a bench worker, a
        Ray worker running one run after another, `safehpo speed`), so earlier agents' graphs are
        dropped here."""
        import torch._dynamo
        torch._dynamo.config.fail_on_recompile_limit_hit  # noqa: B018 - AttributeError on a torch without it
        torch._dynamo.reset()
        # fallback_random: random draws through aten, as eager makes them (one random stream for
        # eager and compiled runs; inductor's own CPU generator is also slower per draw).
        # cpp_wrapper (CPU): the graph's kernels are called from generated C++, not Python, which
        # saves ~1 ms per sac-hpo update (some 300 kernels and matmuls)
        options = {"fallback_random": True, "cpp_wrapper": self.device.type == "cpu"}
        return {fn: torch.compile(fn, options=options) for fn in self.fns}
