"""Why does a run's Lyapunov filter reject? Its test (eq. 14) taken apart on the run's own episodes.

    python benchmarks/filter_check.py RUN_FOLDER [--episodes 3] [--checkpoint FILE]

Loads the run's checkpoint and plays `--episodes` episodes as training acts (Algorithm 3 from a
base-policy draw, docs/design.md), recording for every env step the test's reference
Q_C(s, pi_B(s)) and the Q_C of each candidate the chain proposed. The test passes a candidate when
Q_C(s, a) - Q_C(s, pi_B(s)) <= eps_L, eps_L = (1 - gamma) (d0' - Q_C(s_0, pi_B(s_0))). A filter that
falls back on most steps does so for one of two reasons, which this script separates:
- eps_L < 0: the cost critic puts the episode's start over the budget, so a candidate must cost
  less than the reference action (the base policy's mean) by |eps_L|;
- the candidates cost more than the reference: the chain starts from a noisy draw of the policy,
  not from its mean, and on a cost that grows with the action (torque) the noise alone costs.
Prints, per episode and over all steps: eps_L, the critic's cost per step at s_0 next to the
budget, the share of candidates cheaper than the reference, the share that pass, and the unsafe
fallbacks. Values are in the filter's units (a discounted sum of c - offset in the spec's units);
"per step" multiplies by (1 - gamma) and adds the offset of an average budget.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


class RecordingFilter:
    """The run's LyapunovFilter, recording eps_L, the reference Q_C and every candidate's Q_C."""

    def __init__(self, inner):
        self.inner, self.steps = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def select(self, start, advance, cost_of, qc_ref):
        costs = []

        def recorded(candidate):
            costs.append(cost_of(candidate))
            return costs[-1]
        chosen = self.inner.select(start, advance, recorded, qc_ref)
        self.steps.append((self.inner.eps_l, qc_ref, np.asarray(costs)))
        return chosen


def inspect(run: Path, checkpoint: Path | None = None, episodes: int = 3, seed: int = 100) -> dict:
    """Play `episodes` filtered training episodes from the run's checkpoint. Returns the header
    values (step, lambda, k_max, budget, d0', the per-step conversion), per episode its length and
    cost per step with the recorded filter steps (eps_L, the reference Q_C, the candidates' Q_C),
    and the filter's own audit summed over the episodes."""
    torch.set_num_threads(1)  # the agent draws from its own stream, seeded by the run: `seed` sets the env resets
    from safehpo.actions import load_run
    from safehpo.cmdp import make_env

    cfg, spec, agent, step, _ = load_run(run, "filter_check", checkpoint)
    env = make_env(spec)
    if agent.filter is None:
        raise SystemExit(f"{run}: this run has no Lyapunov filter")
    recorder = RecordingFilter(agent.filter)
    agent.filter = recorder
    g, offset = cfg.gamma, agent.units.offset
    out = dict(step=step, lam=agent.multiplier.value, k_max=cfg.k_max, budget=spec.budget,
               d0=recorder.budget, per_step=lambda q: q * (1 - g) + offset, gamma=g, episodes=[],
               audit=dict(rejected=0, leapfrog_steps=0, unsafe_fallbacks=0))
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        agent.episode_start(obs)
        first, costs, done = len(recorder.steps), [], False
        while not done:
            obs, r, terminated, truncated, info = env.step(agent.act(obs))
            costs.append(float(info["cost"]))
            done = terminated or truncated
        out["episodes"].append(dict(length=len(costs), cost=float(np.mean(costs)), steps=recorder.steps[first:]))
        for key in out["audit"]:
            out["audit"][key] += getattr(agent.audit, key)
    return out


def tests_apart(steps: list) -> dict:
    """Of recorded filter steps (eps_L, reference Q_C, candidates' Q_C): eps_L per step, each
    candidate's Q_C - Q_C(s, pi_B(s)) with its step's eps_L, and each step's cheapest candidate."""
    return dict(eps=np.asarray([e for e, _, _ in steps]),
                diffs=np.concatenate([c - ref for _, ref, c in steps]),
                eps_each=np.concatenate([np.full(len(c), e) for e, _, c in steps]),
                best=np.asarray([np.min(c - ref) for _, ref, c in steps]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--checkpoint", type=Path, help="default: RUN/checkpoint.pt")
    p.add_argument("--seed", type=int, default=100, help="first episode's env seed")
    args = p.parse_args()
    from safehpo.config import ConfigError
    try:
        r = inspect(args.run, args.checkpoint, args.episodes, args.seed)
    except ConfigError as e:  # no such run, no checkpoint: one line
        print(e, file=sys.stderr)
        return 2
    per_step, g = r["per_step"], r["gamma"]
    print(f"{args.run} at step {r['step']}: lambda {r['lam']:.3g}, k_max {r['k_max']}; "
          f"budget {r['budget'].threshold:g} ({r['budget'].kind}), d0' = {r['d0']:.1f} "
          f"({per_step(r['d0']):.2f} per step)")
    for i, e in enumerate(r["episodes"]):
        steps = e["steps"]
        if not steps:
            print(f"episode {i}: {e['length']} steps, none through the filter")
            continue
        t = tests_apart(steps)
        eps = t["eps"][0]
        print(f"episode {i}: {e['length']} steps, cost per step {e['cost']:.2f}; eps_L {eps:+.3f} "
              f"(the critic puts s_0 at {per_step(r['d0'] - eps / (1 - g)):.2f} per step); "
              f"candidates cheaper than the reference {np.mean(t['diffs'] < 0):.0%}, "
              f"passing {np.mean(t['diffs'] <= t['eps_each']):.0%}; "
              f"unsafe fallbacks on {np.mean(t['best'] > t['eps']):.0%} of steps")
    steps = [s for e in r["episodes"] for s in e["steps"]]
    if not steps:
        return 1
    t = tests_apart(steps)
    eps, diffs, eps_each, best = t["eps"], t["diffs"], t["eps_each"], t["best"]
    print(f"all {len(steps)} steps, {diffs.size} candidates: eps_L < 0 on {np.mean(eps < 0):.0%} of steps "
          f"(median {np.median(eps):+.3f}); Q_C(s, a) - Q_C(s, pi_B(s)) of a candidate: median {np.median(diffs):+.3f}, "
          f"cheaper than the reference {np.mean(diffs < 0):.0%}, passing {np.mean(diffs <= eps_each):.0%}; "
          f"the cheapest candidate of a step: median {np.median(best):+.3f}; "
          f"unsafe fallbacks on {np.mean(best > eps):.0%} of steps; "
          f"with eps_L = 0 they would be {np.mean(best > 0):.0%}"
          + (" at most (a step that passed a candidate with eps_L > 0 tested no later one)" if (eps > 0).any() else ""))
    a = r["audit"]
    print(f"the filter's own audit: {a['rejected']} rejected, {a['leapfrog_steps']} leapfrog steps, "
          f"{a['unsafe_fallbacks']} unsafe fallbacks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
