"""Lagrange multiplier updaters (docs/design.md), shared by every Lagrangian algorithm.

- `GradientAscent`: the papers' rule (section II-B), applied once per finished episode:
  lambda <- [lambda + eta (J_C - d0)]_+ , J_C averaged over the last `window` episodes.
- `PIDLagrangian`: MCMC-PO 4.1 / Stooke et al. 2020, also once per episode:
  Delta = J - d0, I <- (I + Delta)_+, lambda <- (Kp s + Ki I + Kd (s - s_prev))_+, with s a
  moving average of Delta over episodes (`pid_ema`; OmniSafe's PID Lagrangian smooths likewise).
- `AdamLagrangian`: what OmniSafe and others do: one Adam step on lambda per gradient step,
  loss = -lambda (J_C - d0), lambda clamped at 0; used with the actor objective divided by
  (1 + lambda).

J_C is always measured in the spec's budget kind. What the rules act on is the *violation*
(docs/multiplier.md):
- relative (the default, `lambda_units=relative`): (J_C - d0) / d0, so one step size serves every
  cost and budget kind; by default J_C is each episode's own cost and the violation is not
  clipped, so wherever the ascent rule's lambda comes back to a value (its floor at 0 never
  binding in between), the length-weighted mean episode cost since was the budget (`lambda_clip`
  caps the violation, `lambda_window` averages J_C over episodes).
- paper (`lambda_units=paper`): J_C - d0 in the spec's units, the papers' literal rule.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CostUnits:
    """The units in which lambda meets the cost critic (docs/multiplier.md).

    The cost critic learns (c - offset) / unit * scale; Q_lambda subtracts lambda / scale times it,
    and the Lyapunov filter reads it back in the spec's units (a discounted sum of c - offset).
    rate: the budget bounds a rate (an average budget in relative units), so ending the episode does
    not end the cost stream and the cost critic bootstraps through termination.
    cmdp.lagrangian_cost_units gives (unit, offset) for a spec; scale is the run's cost_scale.
    """

    unit: float = 1.0
    offset: float = 0.0
    scale: float = 1.0
    rate: bool = False

    def learned(self, cost):
        """A cost in the critic's learning units."""
        return (cost - self.offset) * (self.scale / self.unit)

    def to_spec(self, q_learned: float) -> float:
        """A cost critic's value in the spec's units."""
        return q_learned * self.unit / self.scale

    def cost_coef(self, lam):
        """The coefficient of the learned Q_C in Q_lambda = min(Q1, Q2) - lambda Q_C."""
        return lam / self.scale


class GradientAscent:
    """lambda <- [lambda + eta (J_C - d0)]_+ once per episode (the papers' rule).

    `floor` (`lambda_min`, 0 by default) is where the projection holds lambda: never below it,
    and starting at it if `init` is lower. `by_length` (`lambda_weight=length`, the default):
    in relative units each update is weighted by its episode's length share; False weighs every
    episode alike, so the rule rests where the plain mean of the episodes' costs is the budget."""

    per_step = False

    def __init__(self, budget: float, lr: float = 0.1, init: float = 0.0, window: int = 1,
                 relative: bool = False, clip: float = float("inf"), floor: float = 0.0,
                 by_length: bool = True):
        self.budget, self.lr, self.relative, self.clip = budget, lr, relative, clip
        self.by_length = by_length
        self.floor = float(floor)
        self.value = max(self.floor, float(init))
        self.recent: deque[float] = deque(maxlen=window)

    def measured(self) -> float:
        """J_C: mean episode cost over the window (0 before the first episode)."""
        return sum(self.recent) / len(self.recent) if self.recent else 0.0

    def violation(self) -> float:
        """What the rule acts on: J_C - d0, or (J_C - d0) / d0 clipped to [-1, clip] when relative."""
        excess = self.measured() - self.budget
        if not self.relative:
            return excess
        return min(self.clip, max(-1.0, excess / self.budget)) if self.budget > 0 else (min(self.clip, 1.0) if excess > 0 else 0.0)

    def _weight(self, weight: float) -> float:
        return weight if self.relative and self.by_length else 1.0

    def episode_end(self, episode_cost: float, weight: float = 1.0) -> float:
        """After a finished episode; weight: the episode's share of a full-length one, which the
        relative units apply (a run of short episodes moves lambda no faster) unless `by_length`
        is False; paper units ignore it."""
        self.recent.append(float(episode_cost))
        self.value = max(self.floor, self.value + self.lr * self._weight(weight) * self.violation())
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value, "recent": list(self.recent)}

    def load_state_dict(self, state: dict) -> None:
        self.value = state["value"]
        self.recent.clear()
        self.recent.extend(state["recent"])


class PIDLagrangian(GradientAscent):
    """PID multiplier, once per episode (Stooke et al. 2020; MCMC-PO 4.1), on the violation v = J - d0:

        I <- (I + w v)_+ ;  s <- a s + (1 - a) v ;  lambda <- (Kp s + Ki I + Kd (s - s_prev))_+

    (w: the episode's length share, in relative units). The integral takes each episode's
    violation (in relative units clipped at `lambda_clip`, unclipped by default, so a steady
    integral means the mean cost is on the budget, as for the ascent rule). The proportional and
    derivative terms act on s, an exponential moving average of the violations with factor
    a = `ema` (OmniSafe's PID Lagrangian smooths them likewise); in relative units each violation
    enters s clipped at +1. With a = 0 they act on this episode alone
    (the papers' rule), and a single episode far over budget followed by one under it then moves
    lambda up and down again every episode (docs/multiplier.md). The arguments' defaults are the
    papers' rule (gains 0.1, 0.01, 0.01, a = 0); safehpo's defaults are those of config.py.
    """

    def __init__(self, budget: float, kp: float = 0.1, ki: float = 0.01, kd: float = 0.01,
                 init: float = 0.0, window: int = 1, relative: bool = False,
                 clip: float = float("inf"), ema: float = 0.0, floor: float = 0.0, by_length: bool = True):
        super().__init__(budget, 0.0, init, window, relative, clip, floor, by_length)
        self.kp, self.ki, self.kd, self.ema = kp, ki, kd, ema
        # the integral is held where its term Ki * I is the floor, so that Ki * I stays the ascent
        # rule's lambda with the same floor (0 by default)
        self.integral_floor = self.floor / ki if ki > 0 else 0.0
        self.integral = self.integral_floor
        self.previous: float | None = None   # s after the previous episode (None before the first)

    def episode_end(self, episode_cost: float, weight: float = 1.0) -> float:
        self.recent.append(float(episode_cost))
        delta = self.violation()
        self.integral = max(self.integral_floor, self.integral + self._weight(weight) * delta)
        if self.relative:
            delta = min(delta, 1.0)
        smoothed = delta if self.previous is None else self.ema * self.previous + (1.0 - self.ema) * delta
        derivative = 0.0 if self.previous is None else smoothed - self.previous
        self.previous = smoothed
        self.value = max(self.floor, self.kp * smoothed + self.ki * self.integral + self.kd * derivative)
        return self.value

    def state_dict(self) -> dict:
        return {**super().state_dict(), "integral": self.integral, "previous": self.previous, "smoothed": True}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.integral, self.previous = state["integral"], state["previous"]
        if not state.get("smoothed") and not self.relative and self.previous is not None:
            self.previous -= self.budget   # a checkpoint from before the smoothing kept J, not J - d0


class AdamLagrangian(GradientAscent):
    """One Adam step per gradient update on loss = -lambda (J_C - d0); lambda kept >= 0."""

    per_step = True

    def __init__(self, budget: float, lr: float = 0.1, init: float = 0.0, window: int = 1,
                 relative: bool = False, clip: float = float("inf"), floor: float = 0.0):
        super().__init__(budget, lr, init, window, relative, clip, floor)
        self.param = torch.nn.Parameter(torch.tensor(self.value))
        self.optimizer = torch.optim.Adam([self.param], lr=lr)

    def episode_end(self, episode_cost: float, weight: float = 1.0) -> float:
        self.recent.append(float(episode_cost))
        return self.value

    def step(self) -> float:
        """Called once per gradient update (J_C is the windowed episode measure); no step before
        the first episode that counts (an empty window is no measurement)."""
        if not self.recent:
            return self.value
        self.optimizer.zero_grad(set_to_none=True)
        loss = -self.param * self.violation()
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.param.clamp_(min=self.floor)
        self.value = float(self.param.detach())  # a CPU scalar: no device sync
        return self.value

    def state_dict(self) -> dict:
        return {**super().state_dict(), "param": self.param.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.param.copy_(state["param"])
        self.optimizer.load_state_dict(state["optimizer"])


class NoMultiplier(GradientAscent):
    """lambda fixed at 0 (unconstrained SAC, or an env without a budget)."""

    def __init__(self, budget: float = 0.0, window: int = 1):
        super().__init__(budget, 0.0, 0.0, window)

    def episode_end(self, episode_cost: float, weight: float = 1.0) -> float:
        self.recent.append(float(episode_cost))
        return 0.0


def make_multiplier(kind: str, budget: float, cfg) -> GradientAscent:
    """kind: 'none' | 'paper' | 'pid' | 'adam' (a dict would do; four cases read better inline)."""
    relative = cfg.lambda_units == "relative"
    by_length = cfg.lambda_weight == "length"
    if kind == "none":
        return NoMultiplier(budget, cfg.lambda_window)
    if kind == "paper":
        return GradientAscent(budget, cfg.lambda_lr, cfg.lambda_init, cfg.lambda_window, relative, cfg.lambda_clip,
                              cfg.lambda_min, by_length)
    if kind == "pid":
        return PIDLagrangian(budget, cfg.pid_kp, cfg.pid_ki, cfg.pid_kd, cfg.lambda_init, cfg.lambda_window,
                             relative, cfg.lambda_clip, cfg.pid_ema, cfg.lambda_min, by_length)
    if kind == "adam":
        return AdamLagrangian(budget, cfg.lambda_adam_lr, cfg.lambda_init, cfg.lambda_window, relative,
                              cfg.lambda_clip, cfg.lambda_min)
    raise ValueError(f"unknown multiplier '{kind}'")
