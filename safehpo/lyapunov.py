"""The Lyapunov-filtered sampler (Algorithm 3, eq. 14-15) and its audit counters.

An action a is accepted at state s if
    Q_C(s, a) - Q_C(s, pi_B(s)) <= eps_L,   eps_L = (1 - gamma) (d0' - Q_C(s_0, pi_B(s_0)))   (eq. 14, 15)
with pi_B the policy before the last update (its mean action), s_0 the episode's first state,
d0' the budget in discounted units and Q_C the target cost critic, all in the spec's cost units.
The sampler draws a_0 ~ pi(.|s), rho_0 ~ N(0, 1/beta0) and takes one leapfrog step at a time,
testing each new action; after a failed test it adds fresh momentum noise N(0, 1/beta0) before the
next step, up to K_max steps. Every failed test is a *rejected action*. If no candidate passes
(an *unsafe fallback*) we execute the candidate with the lowest Q_C seen (the paper returns a_K;
the lowest-cost candidate is the safer documented choice).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, TypeVar

Candidate = TypeVar("Candidate")


def epsilon_l(budget_discounted: float, qc_start_ref: float, gamma: float) -> float:
    """eps_L = (1 - gamma) (d0' - Q_C(s_0, pi_B(s_0)))  (eq. 15)."""
    return (1.0 - gamma) * (budget_discounted - qc_start_ref)


def accepts(qc_action: float, qc_ref: float, eps_l: float) -> bool:
    """The Lyapunov condition Q_C(s, a) - Q_C(s, pi_B(s)) <= eps_L  (eq. 14)."""
    return qc_action - qc_ref <= eps_l


@dataclass
class FilterAudit:
    """Counters of one episode (and, summed, of a run)."""

    rejected: int = 0          # failed tests
    leapfrog_steps: int = 0    # leapfrog steps the filter took
    unsafe_fallbacks: int = 0  # env steps where no candidate passed
    filtered_steps: int = 0    # env steps that went through the filter

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)


def filter_action(start: Candidate, advance: Callable[[Candidate], Candidate],
                  cost_of: Callable[[Candidate], float], qc_ref: float, eps_l: float, k_max: int,
                  audit: FilterAudit, fallback: str = "lowest-cost") -> Candidate:
    """Algorithm 3: from the chain's start (a_0, rho_0), up to k_max leapfrog steps, each followed
    by the test of eq. 14; the first candidate that passes is returned.

    advance(c) -> the candidate one leapfrog step after c; from a tested (so rejected) candidate it
    first adds fresh momentum noise N(0, 1/beta0). cost_of(c) -> Q_C(s, a(c)). The start itself is not
    tested. On an unsafe fallback (no candidate passed) the candidate with the lowest Q_C is
    returned (fallback="lowest-cost"), or the last one, a_{k_max}, as the paper does
    (fallback="last").
    """
    audit.filtered_steps += 1
    candidate, best, best_qc = start, start, float("inf")
    for _ in range(k_max):
        candidate = advance(candidate)
        audit.leapfrog_steps += 1
        qc = cost_of(candidate)
        if accepts(qc, qc_ref, eps_l):
            return candidate
        audit.rejected += 1
        if qc < best_qc:
            best, best_qc = candidate, qc
    audit.unsafe_fallbacks += 1
    return candidate if fallback == "last" else best


class LyapunovFilter:
    """The filter of one run: its budget d0' (a discounted sum of c - offset in the spec's units,
    lagrange.CostUnits), gamma, k_max, the eps_L of the current episode and the audit.

    The agent supplies the candidates and Q_C (agent.Agent._filtered_action); this object decides.
    An evaluation uses its own filter (`for_evaluation`): its episodes neither change the training
    episode's eps_L nor count in the training audit.
    """

    def __init__(self, budget_discounted: float, gamma: float, k_max: int, fallback: str = "lowest-cost"):
        self.budget, self.gamma, self.k_max, self.fallback = budget_discounted, gamma, k_max, fallback
        self.eps_l = 0.0
        self.audit = FilterAudit()

    def for_evaluation(self) -> "LyapunovFilter":
        return LyapunovFilter(self.budget, self.gamma, self.k_max, self.fallback)

    def episode_start(self, qc_start_ref: float, reset_audit: bool = True) -> None:
        """eps_L from Q_C(s_0, pi_B(s_0)) of the episode's first state (eq. 15); a new episode's counters
        (an evaluation's audit keeps counting over its episodes: reset_audit=False)."""
        if reset_audit:
            self.audit.reset()
        self.eps_l = epsilon_l(self.budget, qc_start_ref, self.gamma)

    def select(self, start: Candidate, advance: Callable[[Candidate], Candidate],
               cost_of: Callable[[Candidate], float], qc_ref: float) -> Candidate:
        """Algorithm 3 from `start` (see filter_action)."""
        return filter_action(start, advance, cost_of, qc_ref, self.eps_l, self.k_max, self.audit, self.fallback)
