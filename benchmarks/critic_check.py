"""Are a run's critics honest? Their values against Monte-Carlo returns of the run's own policy.

    python benchmarks/critic_check.py RUN_FOLDER [--episodes 3] [--checkpoint FILE]

Loads the run's checkpoint, plays `--episodes` episodes with its training policy (stochastic
draws, unfiltered) and compares, on the first 500 steps of an episode that runs to the spec's
full length (what follows step 500 weighs less than gamma^500 ~ 0.7%) and on every step of one
that ends early:
- the cost critic Q_C(s_t, a_t) (the larger of twin cost critics) with the discounted sum of the
  cost it learns from step t on; both are shown as the per-step cost they amount to
  (value * (1 - gamma) in the spec's units, plus the offset of an average budget), next to the
  episode's measured cost per step;
- the reward critics' min(Q1, Q2) with the discounted return (without SAC's entropy bonus, which
  is small once alpha is).
After a termination the cost critic of an average budget bootstraps through it (the cost stream
goes on): its Monte-Carlo sum there continues the episode's own cost per step for ever, an
assumption the output states. Other budgets and the reward stop at a termination.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


def discounted(x: np.ndarray, gamma: float) -> np.ndarray:
    out, acc = np.zeros(len(x)), 0.0
    for i in range(len(x) - 1, -1, -1):
        acc = x[i] + gamma * acc
        out[i] = acc
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--checkpoint", type=Path, help="default: RUN/checkpoint.pt")
    p.add_argument("--seed", type=int, default=100, help="first episode's env seed")
    args = p.parse_args()
    torch.set_num_threads(1)
    from safehpo.actions import load_run
    from safehpo.cmdp import make_env
    from safehpo.config import ConfigError

    try:
        cfg, spec, agent, step, _ = load_run(args.run, "critic_check", args.checkpoint)
    except ConfigError as e:  # no such run, no checkpoint: one line
        print(e, file=sys.stderr)
        return 2
    env = make_env(spec)
    if not agent.uses_cost:
        print("this run has no cost critic")
        return 1
    g, units, T = cfg.gamma, agent.units, spec.max_episode_steps
    print(f"{args.run} at step {step}: lambda {agent.multiplier.value:.3g}, alpha {agent.alpha:.3g}, "
          f"{agent.cost_members} cost critic(s); budget {spec.budget.threshold:g} ({spec.budget.kind})")
    compared = {"qc": [], "mc_c": [], "q": [], "mc_r": []}
    for i in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + i)
        agent.episode_start(obs)
        states, actions, rewards, costs = [], [], [], []
        done = terminated = False
        while not done:
            a = agent.act(obs, filtered=False)
            states.append(obs)
            actions.append(a)
            obs, r, terminated, truncated, info = env.step(a)
            rewards.append(float(r))
            costs.append(float(info["cost"]))
            done = terminated or truncated
        n = len(costs)
        line = f"episode {i}: {n} steps, return {sum(rewards):.1f}, cost per step {np.mean(costs):.2f}"
        c = np.asarray(costs) - units.offset  # the critic's cost in the spec's units
        if terminated and units.rate:  # the episode's own cost per step for ever after
            c = np.append(c, c.mean() / (1 - g))
        k = n if terminated else min(500, n)
        s = torch.as_tensor(np.asarray(states[:k], dtype=np.float32))
        a = torch.as_tensor(np.asarray(actions[:k], dtype=np.float32))
        with torch.no_grad():
            q = agent.critics(s, a)
        qc = np.asarray([units.to_spec(float(v)) for v in agent.cost_q(q)])
        mc_c = discounted(c, g)[:k]  # a discounted sum of c - offset, spec units
        compared["qc"].append(qc)
        compared["mc_c"].append(mc_c)
        compared["q"].append(torch.minimum(q[0], q[1]).numpy())
        compared["mc_r"].append(discounted(np.asarray(rewards), g)[:k])
        print(line + f"; {'all' if terminated else 'first'} {k} steps: Q_C says {qc.mean() * (1 - g) + units.offset:.2f} per step, "
                     f"Monte-Carlo {mc_c.mean() * (1 - g) + units.offset:.2f}; min(Q1,Q2) {compared['q'][-1].mean():.1f}, "
                     f"Monte-Carlo return {compared['mc_r'][-1].mean():.1f}")
    if compared["qc"]:
        qc, mc = np.concatenate(compared["qc"]), np.concatenate(compared["mc_c"])
        q, mr = np.concatenate(compared["q"]), np.concatenate(compared["mc_r"])
        print(f"all compared steps ({len(qc)}): cost critic {qc.mean():.1f} vs Monte-Carlo {mc.mean():.1f} "
              f"(a discounted sum of c - {units.offset:g}; bias {qc.mean() - mc.mean():+.1f}, "
              f"i.e. {(qc.mean() - mc.mean()) * (1 - g):+.2f} per step); reward critics {q.mean():.1f} "
              f"vs {mr.mean():.1f} (bias {q.mean() - mr.mean():+.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
