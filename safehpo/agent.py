"""The SAC family: SAC, SAC-Lagrangian, SAC-PID and SAC-HPO with its ablations (docs/design.md).

The readable reference of the family's losses, update step and acting: one `Agent` serves every
algorithm of the table below (an algorithm is a row of data, not a subclass), and implements
the interface the training loop uses (algorithm.Algorithm). Critics are one `CriticStack`:
members 0, 1 are the twin reward critics, members 2.. the cost critics (`cost_critics` of them:
one, or twins whose larger value is Q_C; none when the algorithm or the env has no cost). Every
gradient here comes from autograd where `fast_paths` is off; fast.py holds the hand-written
shortcuts and torch.compile, tested equal to this code.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math

import numpy as np
import torch
from torch import nn

from . import fast
from .algos import ALGOS, multiplier_rule
from .config import Config
from .hamiltonian import CriticForce, GatedKick, leapfrog, make_kick, momentum_log_prob, run_chain
from .lagrange import AdamLagrangian, CostUnits, make_multiplier
from .lyapunov import FilterAudit, LyapunovFilter
from .nets import CriticStack, SquashedGaussianActor
from .random_stream import RandomStream, own_stream


def adam(params, lr: float) -> torch.optim.Optimizer:
    """Adam with the fused kernel (one kernel for all tensors; CPU and CUDA since torch 2.4), else foreach."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


class Agent:
    """Networks, optimisers, multiplier and the Lyapunov filter of one run."""

    def __init__(self, cfg: Config, obs_dim: int, act_low: np.ndarray, act_high: np.ndarray,
                 constrained: bool, budget: float = 0.0, budget_discounted: float = 0.0,
                 device: torch.device | str = "cpu", cost_unit: float = 1.0, cost_offset: float = 0.0,
                 filter_budget: float | None = None, cost_rate: bool = False):
        """cost_unit, cost_offset: the cost critic learns (c - cost_offset) / cost_unit * cost_scale
        (cmdp.lagrangian_cost_units); filter_budget: the budget of the Lyapunov filter in the units of
        a discounted sum of c - cost_offset (budget_discounted when there is no offset); cost_rate:
        the budget bounds a rate (an average budget in relative units), so the cost critic bootstraps
        through termination (docs/multiplier.md)."""
        self.cfg, self.algo = cfg, ALGOS[cfg.algo]
        self.device = torch.device(device)
        self.obs_dim, self.act_dim = obs_dim, len(act_low)
        act_dim = self.act_dim
        self.uses_cost = constrained and self.algo.multiplier != "none"
        self.budget_discounted = budget_discounted
        self.units = CostUnits(cost_unit, cost_offset, cfg.cost_scale, cost_rate)
        self.filter_budget = budget_discounted if filter_budget is None else filter_budget
        # the Lyapunov filter when acting (Algorithm 3), where the algorithm has one and the env a budget
        self.filter = LyapunovFilter(self.filter_budget, cfg.gamma, cfg.k_max, cfg.filter_fallback) if constrained and self.algo.filter \
            else None
        self.audit = self.filter.audit if self.filter else FilterAudit()  # the training episode's counters
        low = torch.as_tensor(act_low, dtype=torch.float32)
        high = torch.as_tensor(act_high, dtype=torch.float32)
        self.act_low, self.act_high = act_low.astype(np.float32), act_high.astype(np.float32)

        self.random = RandomStream(cfg.seed, self.device)  # every torch draw of the run (random_stream.py)
        with self.random:
            if self.algo.hamiltonian:  # the paper's base policy: one hidden layer
                self.actor = SquashedGaussianActor(obs_dim, act_dim, cfg.base_hidden, 1, low, high)
            else:
                self.actor = SquashedGaussianActor(obs_dim, act_dim, cfg.actor_hidden, 2, low, high)
            gated = "gated" in (self.algo.explore, self.algo.train)
            self.gated = GatedKick(act_dim, obs_dim, cfg.gate_hidden, cfg.gate_state_input) if gated else None
            self.cost_members = cfg.cost_critics if self.uses_cost else 0
            self.critics = CriticStack(2 + self.cost_members, obs_dim, act_dim, cfg.hidden)
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.actor_prev = copy.deepcopy(self.actor).requires_grad_(False)  # pi_B of the filter
        self.log_alpha = nn.Parameter(torch.tensor(math.log(cfg.alpha_init)))
        self.to(self.device)

        # one optimiser step per network group: critics; policy (actor, leapfrog nets) with the
        # temperature, whose loss is separate but whose Adam step is per parameter all the same
        policy_params = list(self.actor.parameters()) + (list(self.gated.parameters()) if self.gated else [])
        self.actor_opt = adam(policy_params + [self.log_alpha], cfg.lr)
        self.critic_opt = adam(self.critics.parameters(), cfg.lr)
        self.target_entropy = cfg.entropy_per_dim * act_dim

        kind = multiplier_rule(cfg.algo, cfg.lagrange) if self.uses_cost else "none"
        self.multiplier = make_multiplier(kind, budget, cfg)
        # relative units: Q_lambda (the actor's objective and the chain's potential) divided by 1 + lambda;
        # paper units with the Adam rule: the whole actor objective divided by 1 + lambda, as OmniSafe does
        self.normalized = cfg.lambda_units == "relative"
        self.adam_divides = not self.normalized and isinstance(self.multiplier, AdamLagrangian)
        self.loss_sum = torch.zeros((), device=self.device)   # losses since the last `healthy()`: NaN/inf shows here
        self._critic_params = list(self.critics.parameters())
        self._target_params = list(self.critics_target.parameters())
        self._actor_params = list(self.actor.parameters())
        self._actor_prev_params = list(self.actor_prev.parameters())
        self.fast = cfg.fast_paths and not cfg.second_order  # fast.py's hand-written force and Q reuse
        # every function that may run compiled (fast.Compiler), called through self._call
        self._call = fast.Compiler(fast.compiles(cfg, self.device), self.device,
                                   (self._critic_loss, self._actor_loss, self._explore, self._refined_mean,
                                    self._filter_start, self._filter_start_mean, self._filter_step))

    @classmethod
    def for_env(cls, cfg: Config, spec, env, device: torch.device | str = "cpu") -> "Agent":
        """The agent for a CMDP env built from `spec` (cmdp.make_env): dimensions, box, budget."""
        from .cmdp import discount_horizon, discounted_budget, lagrangian_cost_units
        low = env.action_space.low.astype(np.float32)
        high = env.action_space.high.astype(np.float32)
        constrained = spec.constrained
        if not constrained:
            return cls(cfg, int(np.prod(env.observation_space.shape)), low, high, False, device=device)
        relative = cfg.lambda_units == "relative"
        if cfg.budget_margin > 0:  # the agent aims below the budget; the run is still judged by the budget
            spec = dataclasses.replace(spec, budget=dataclasses.replace(
                spec.budget, threshold=spec.budget.threshold * (1.0 - cfg.budget_margin)))
        unit, offset = lagrangian_cost_units(spec, cfg.gamma, relative)
        d0 = discounted_budget(spec, cfg.gamma)
        return cls(cfg, int(np.prod(env.observation_space.shape)), low, high, True, spec.budget.threshold, d0,
                   device, unit, offset, d0 - offset * discount_horizon(cfg.gamma, spec.max_episode_steps),
                   cost_rate=relative and spec.budget.kind == "average")

    @property
    def filter_on(self) -> bool:
        return self.filter is not None

    @property
    def compiled(self) -> bool:
        """Whether losses and acting go through torch.compile (False for good after a failed compile)."""
        return self._call.enabled

    @compiled.setter
    def compiled(self, value: bool) -> None:
        self._call.enabled = value

    @contextlib.contextmanager
    def drawing_from(self, stream: RandomStream):
        """Meanwhile the agent draws from `stream` (an evaluation's), not from the run's."""
        run_stream, self.random = self.random, stream
        try:
            yield
        finally:
            self.random = run_stream

    def describe(self) -> dict:
        """The budget's units, for the run's config.yaml (docs/multiplier.md)."""
        return {"budget_discounted": self.budget_discounted,
                "cost_critic": {"unit": self.units.unit, "offset": self.units.offset,
                                "filter_budget": self.filter_budget}}

    def to(self, device: torch.device) -> "Agent":
        for net in (self.actor, self.critics, self.critics_target, self.actor_prev, self.gated):
            if net is not None:
                net.to(device)
        self.log_alpha.data = self.log_alpha.data.to(device)
        return self

    # ---- the policy ---------------------------------------------------------------------------
    def q_lambda(self, critics: CriticStack, obs: torch.Tensor, act: torch.Tensor, lam,
                 detach_params: bool = True) -> torch.Tensor:
        """Q_lambda = min(Q1, Q2) - lambda Q_C, divided by 1 + lambda where `normalized`.

        Q_C is in the Lagrangian's cost units (self.units, docs/multiplier.md). While lambda = 0
        the cost critic is not evaluated at all. `lam`: a float, or under torch.compile a 0-dim
        tensor standing for a nonzero lambda (fast.Compiler).
        """
        members = self.q_lambda_members(lam)
        q = critics(obs, act, detach_params=detach_params, members=members)
        q_lam = torch.minimum(q[0], q[1])
        if members.stop > 2:
            q_lam = q_lam - self.units.cost_coef(lam) * self.cost_q(q[2:])
            if self.normalized:
                q_lam = q_lam / (1.0 + lam)
        return q_lam

    def q_lambda_members(self, lam) -> slice:
        """The critic members Q_lambda reads: the twins, and Q_C only while it counts (lambda != 0;
        a lambda passed as a tensor is a nonzero one, see fast.Compiler)."""
        counts = isinstance(lam, torch.Tensor) or lam != 0.0
        return slice(0, 2 + self.cost_members if counts else 2)

    @staticmethod
    def cost_q(qc: torch.Tensor) -> torch.Tensor:
        """Q_C from the cost critics' values [cost_critics, B]: the one critic's, or the larger of the
        twins' (pessimistic, as the twin minimum is for reward: the actor cannot exploit one
        critic's underestimate of the cost)."""
        return qc[0] if qc.shape[0] == 1 else torch.maximum(qc[0], qc[1])

    def target_cost(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """[B] Q_C(s, a) of the target cost critic (the filter's), in its learning units."""
        return self.cost_q(self.critics_target(obs, act, members=slice(2, 2 + self.cost_members)))

    def cost_value(self, obs: torch.Tensor, act: torch.Tensor) -> float:
        """Q_C(s, a) of the target cost critic, one state, in the spec's units (the filter's test)."""
        return self.units.to_spec(float(self.target_cost(obs, act)[0]))

    def _kick(self, mode: str, obs: torch.Tensor, critics: CriticStack, alpha, lam):
        """(kick, force) of the chain driven by Q_lambda of `critics` (conventional or gated kick)."""
        q_and_grad = None
        if self.fast:
            members = self.q_lambda_members(lam)
            q_and_grad = fast.q_lambda_and_grad(critics, obs, members, self.units.cost_coef(lam),
                                                (1.0 + lam) if self.normalized else None)
        force = CriticForce(lambda a: self.q_lambda(critics, obs, a, lam), self.actor.scale, alpha,
                             self.actor.squash, self.cfg.second_order, q_and_grad)
        return make_kick(force, self.gated if mode == "gated" else None, obs), force

    def _momentum_std(self, std: float) -> float:
        """The chain's momentum std: 0 for an algorithm without momentum (hpo-nomomentum)."""
        return std if self.algo.momentum else 0.0

    def sample(self, obs: torch.Tensor, mode: str, momentum_std: float, alpha, lam: float):
        """a ~ policy(mode) and its log-density estimate, with the chain (u_K, rho_K, kick, force).

        Gaussian: log pi(a|s). Hamiltonian (eq. 12): log N(u_0) - log|squash'(u_K)| + log N(rho_0)
        - log N(rho_K) = log q(a_K, rho_K) - log r(rho_K), the auxiliary-momentum bound whose
        expectation gives the objective's -alpha log pi(a_0|s) - alpha beta0/2 |rho_K|^2 term
        (equal to log pi(a|s) when K = 0).
        """
        u0, log_prob = self.actor.sample_pre_tanh(obs)
        if mode == "gaussian":
            return self.actor.squash(u0), log_prob - self.actor.log_det_squash(u0), None
        std = self._momentum_std(momentum_std)
        rho0 = std * torch.randn_like(u0) if std > 0 else torch.zeros_like(u0)
        kick, force = self._kick(mode, obs, self.critics, alpha, lam)
        u, rho, k = run_chain(u0, rho0, kick, self.cfg.leapfrog_eps, self.cfg.leapfrog_steps)
        log_prob = log_prob - self.actor.log_det_squash(u)
        if std > 0:
            log_prob = log_prob + momentum_log_prob(rho0, std) - momentum_log_prob(rho, std)
        return self.actor.squash(u), log_prob, (u, rho, k, force)

    # ---- acting -------------------------------------------------------------------------------
    @torch.no_grad()
    def episode_start(self, obs: np.ndarray, lyapunov: LyapunovFilter | None = None) -> None:
        """A new episode from `obs`: the filter's eps_L from its first state (eq. 15) and new episode
        counters. `lyapunov`: an evaluation's filter (LyapunovFilter.for_evaluation), whose audit
        keeps counting over its episodes; by default the run's."""
        lf = lyapunov or self.filter
        if lf is None:
            return
        s0 = torch.as_tensor(obs, dtype=torch.float32, device=self.device).unsqueeze(0)
        lf.episode_start(self.cost_value(s0, self.actor_prev.mean_action(s0)), reset_audit=lyapunov is None)

    def episode_end(self, cost: float, share: float, counts: bool = True) -> None:
        """After a finished episode: the multiplier's update with its cost J_C (in the budget's kind)
        and its length share of a full episode; counts=False (an episode with uniform warm-up steps)
        leaves lambda alone."""
        if counts:
            self.multiplier.episode_end(cost, share)

    def log(self) -> dict:
        """The values a progress.csv row records at an episode's end."""
        return {"lambda": self.multiplier.value, "alpha": self.alpha, "rejected": self.audit.rejected,
                "leapfrog_steps": self.audit.leapfrog_steps, "unsafe_fallbacks": self.audit.unsafe_fallbacks}

    @torch.no_grad()
    @own_stream
    def act(self, obs: np.ndarray, deterministic: bool = False, filtered: bool | None = None,
            lyapunov: LyapunovFilter | None = None) -> np.ndarray:
        """One action for one state.

        Unfiltered: the base policy's draw (or its mean, deterministic), refined by the explore
        chain of K leapfrog steps where the algorithm has one. Filtered (the default where the
        Lyapunov filter is on): Algorithm 3 from (a_0, rho_0) = the base draw and fresh momentum
        (deterministic: the mean and rho_0 = 0), by `lyapunov` (the run's filter by default).
        """
        s = torch.as_tensor(obs, dtype=torch.float32, device=self.device).unsqueeze(0)
        alpha, lam = self.log_alpha.exp(), self.multiplier.value
        if filtered is None:
            filtered = self.filter_on
        if filtered:
            return self._filtered_action(s, alpha, lam, deterministic, lyapunov or self.filter)
        if deterministic:
            if self.algo.explore == "gaussian":
                return self.actor.mean_action(s)[0].cpu().numpy()
            return self._call(self._refined_mean, s, alpha, lam)[0].cpu().numpy()
        if self.algo.explore == "gaussian":  # a few ops (hpo-train): eager, compiled or not
            a = self._explore(s, alpha, lam)
        else:
            a = self._call(self._explore, s, alpha, lam)
        return a[0].cpu().numpy()

    def _filtered_action(self, s: torch.Tensor, alpha, lam, deterministic: bool,
                         lyapunov: LyapunovFilter) -> np.ndarray:
        """Algorithm 3 (lyapunov.filter_action): a candidate is (u, rho, kick at u, Q_C in spec units).
        The chain runs on the target critics' potential, whose Q_C also judges every candidate."""
        start = self._filter_start_mean if deterministic else self._filter_start
        u, rho, kick_u, qc_ref = self._call(start, s, alpha, lam)
        # the start's tensors may be views of the actor's output (strides of [1, 2 |A|]), and
        # `_filter_step` is compiled for the strides of its own outputs: a view would compile a second graph
        u, rho, kick_u = (x.clone(memory_format=torch.contiguous_format) for x in (u, rho, kick_u))
        std = self._momentum_std(self.cfg.momentum_std_explore)

        def advance(c):
            rho = c[1]
            if c[3] is not None and std > 0:  # a rejected candidate: fresh momentum noise first
                rho = rho + std * torch.randn_like(rho)
            u_, rho_, kick_, qc_ = self._call(self._filter_step, s, c[0], rho, c[2], alpha, lam)
            return u_, rho_, kick_, self.units.to_spec(float(qc_))

        chosen = lyapunov.select((u, rho, kick_u, None), advance, lambda c: c[3], self.units.to_spec(float(qc_ref)))
        return self.actor.squash(chosen[0])[0].cpu().numpy()

    def _filter_start(self, s: torch.Tensor, alpha, lam: float):
        """The filter chain's start: u_0 ~ pi(.|s) (pre-tanh), rho_0 ~ N(0, 1/beta0_explore), the
        kick at u_0 and the test's reference Q_C(s, pi_B(s)) in learning units (tensors only)."""
        u0, _ = self.actor.sample_pre_tanh(s)
        std = self._momentum_std(self.cfg.momentum_std_explore)
        rho0 = std * torch.randn_like(u0) if std > 0 else torch.zeros_like(u0)
        return self._chain_start(s, u0, rho0, alpha, lam)

    def _filter_start_mean(self, s: torch.Tensor, alpha, lam: float):
        """As `_filter_start` from the base policy's mean and rho_0 = 0 (the deterministic action)."""
        mu, _ = self.actor.distribution(s)
        return self._chain_start(s, mu, torch.zeros_like(mu), alpha, lam)

    def _chain_start(self, s, u0, rho0, alpha, lam):
        kick, _ = self._kick(self.algo.explore, s, self.critics_target, alpha, lam)
        return u0, rho0, kick(u0), self.target_cost(s, self.actor_prev.mean_action(s))

    def _filter_step(self, s: torch.Tensor, u: torch.Tensor, rho: torch.Tensor, kick_u: torch.Tensor, alpha,
                     lam: float):
        """The filter's next candidate (Algorithm 3): one leapfrog step on the target critics'
        potential from (u, rho), kick_u the kick at u. Returns u', rho', the kick at u' and
        Q_C(s, squash u') in learning units (tensors only, as `_explore`)."""
        kick, _ = self._kick(self.algo.explore, s, self.critics_target, alpha, lam)
        u, rho, kick_u = leapfrog(u, rho, kick_u, kick, self.cfg.leapfrog_eps)
        return u, rho, kick_u, self.target_cost(s, self.actor.squash(u))

    def _refined_mean(self, s: torch.Tensor, alpha, lam: float) -> torch.Tensor:
        """The deterministic action: the base policy's mean refined by the explore chain with
        rho_0 = 0 (a tensor only, like `_explore`)."""
        mu, _ = self.actor.distribution(s)
        kick, _ = self._kick(self.algo.explore, s, self.critics, alpha, lam)
        u, _, _ = run_chain(mu, torch.zeros_like(mu), kick, self.cfg.leapfrog_eps, self.cfg.leapfrog_steps)
        return self.actor.squash(u)

    def _explore(self, s: torch.Tensor, alpha, lam: float) -> torch.Tensor:
        """The explore policy's action at one state without the filter: the base draw refined by the
        K-step chain on the online critics where the algorithm has one (a tensor only, so that it
        compiles as one graph)."""
        a, _, _ = self.sample(s, self.algo.explore, self.cfg.momentum_std_explore, alpha, lam)
        return a

    # ---- learning -----------------------------------------------------------------------------
    @own_stream
    def update(self, batch: dict[str, torch.Tensor]) -> None:
        """One gradient step of critics, policy (+ leapfrog nets) and temperature; Polyak targets."""
        cfg, lam = self.cfg, self.multiplier.value
        alpha = self.log_alpha.exp().detach()

        critic_loss = self._call(self._critic_loss, batch["obs"], batch["act"], batch["next_obs"],
                                 batch["rew"], batch["cost"], batch["done"], alpha, lam)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        actor_loss, logp_mean = self._call(self._actor_loss, batch["obs"], alpha, lam)
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()  # alpha enters detached: log_alpha.grad stays None here
        if cfg.autotune_alpha:  # temperature loss -log_alpha E[log pi + target entropy]: its gradient
            self.log_alpha.grad = -(logp_mean + self.target_entropy)
        if self.filter_on:  # pi_B: the policy before this update
            torch._foreach_copy_(self._actor_prev_params, [p.detach() for p in self._actor_params])
        self.actor_opt.step()  # policy and temperature (a None gradient is skipped)

        if isinstance(self.multiplier, AdamLagrangian):
            self.multiplier.step()

        with torch.no_grad():
            torch._foreach_lerp_(self._target_params, self._critic_params, cfg.tau)
            self.loss_sum += critic_loss.detach() + actor_loss.detach()

    def _critic_loss(self, obs, act, next_obs, rew, cost, done, alpha, lam: float) -> torch.Tensor:
        """Squared TD errors: soft Bellman targets for Q1, Q2; a plain TD target for the cost critics."""
        cfg = self.cfg
        not_done = 1.0 - done
        with torch.no_grad():
            target_mode = self.algo.train if cfg.target_chain else "gaussian"
            next_a, next_logp, _ = self.sample(next_obs, target_mode, cfg.momentum_std_train, alpha, lam)
            q_next = self.critics_target(next_obs, next_a)
            v_next = torch.minimum(q_next[0], q_next[1]) - alpha * next_logp
            y_reward = rew + cfg.gamma * not_done * v_next
            targets = [y_reward, y_reward]
            if self.uses_cost:
                # an average budget bounds a rate: ending the episode does not end the cost stream
                # (docs/multiplier.md), so the cost critic bootstraps through termination
                qc_next = self.cost_q(q_next[2:])
                y_cost = self.units.learned(cost) + cfg.gamma * (qc_next if self.units.rate else not_done * qc_next)
                if cfg.cost_floor:  # no cost is negative: no value lies below a zero cost's for ever
                    y_cost = y_cost.clamp(min=self.units.learned(0.0) / (1.0 - cfg.gamma))
                targets += [y_cost] * self.cost_members
            y = torch.stack(targets)
        return 0.5 * (self.critics(obs, act) - y).pow(2).mean(-1).sum()

    def _actor_loss(self, obs, alpha, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        """-E[Q_lambda(s, a) - alpha log q(a|s)] (eq. 12 for the Hamiltonian modes), and E[log q] detached."""
        a, logp, chain = self.sample(obs, self.algo.train, self.cfg.momentum_std_train, alpha, lam)
        if chain is not None and self.fast and chain[3].last_u is chain[0]:
            q_lam = chain[3].q_at_last(a)  # fast path: the chain's last force already evaluated Q_lambda at a_K
        else:
            q_lam = self.q_lambda(self.critics, obs, a, lam)
        objective = q_lam - alpha * logp
        if self.adam_divides:
            objective = objective / (1.0 + lam)
        return -objective.mean(), logp.detach().mean()

    def healthy(self) -> bool:
        """False once any loss since the last call was NaN or infinite (one sync per call)."""
        ok = bool(torch.isfinite(self.loss_sum))
        self.loss_sum.zero_()
        return ok

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    # ---- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(), "actor_prev": self.actor_prev.state_dict(),
            "gated": self.gated.state_dict() if self.gated else None,
            "critics": self.critics.state_dict(), "critics_target": self.critics_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
            "multiplier": self.multiplier.state_dict(),
        }

    def load_state_dict(self, state: dict, optimisers: bool = True) -> None:
        """Restore a state_dict(); optimisers=False restores the networks, temperature and multiplier
        only (enough to act or plot, and readable from checkpoints of any format)."""
        self.actor.load_state_dict(state["actor"])
        self.actor_prev.load_state_dict(state["actor_prev"])
        if self.gated:
            self.gated.load_state_dict(state["gated"])
        self.critics.load_state_dict(state["critics"])
        self.critics_target.load_state_dict(state["critics_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.multiplier.load_state_dict(state["multiplier"])
        if optimisers:
            self.actor_opt.load_state_dict(state["actor_opt"])
            self.critic_opt.load_state_dict(state["critic_opt"])
