"""How much of a run's training cost is its exploration noise? Its policy played at several momentum stds.

    python benchmarks/explore_noise.py RUN_FOLDER [--stds 1,0.3,0.1,0] [--episodes 3] [--filtered]

An algorithm that explores with a chain (sac-hpo and its variants) acts from a base-policy draw
a_0 and a momentum rho_0 ~ N(0, std^2 I), std = `momentum_std_explore` (1.0 by default), moved by
K leapfrog steps; a filtered one also adds fresh momentum of that std after each rejected
candidate (docs/design.md). On a cost that grows with the size of the action (the torque of
ant-torque) that noise has a price the multiplier cannot lower: the policy's parameters do not
set it. This script loads the run's checkpoint and plays `--episodes` episodes of the
deterministic policy (the evaluation's: the mean, refined with rho_0 = 0), then of the explore
policy as training acts, at each std of `--stds`: without the filter, and with `--filtered` also
through the Lyapunov filter (an evaluation's own, as `safehpo evaluate --filtered`). Every row
plays the same reset seeds from the same random stream (those of the run's last evaluation, as
`safehpo evaluate`). Prints per row the mean return, the cost in the budget's kind (for an
average budget over all the row's env steps, per step) and the episodes' lengths. About a minute
per 1000-step episode and row on one core.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch


def play_rows(run: Path, stds: list[float], episodes: int, filtered: bool = False,
              seed: int | None = None) -> tuple[str, list[dict]]:
    """The budget's kind and one row per policy: `deterministic`, then (`explore`, std) for each
    std and, with `filtered`, (`explore, filter on`, std). A row: policy, std, returns, costs (each
    episode's, in the budget's kind), lengths. Each row is `safehpo evaluate`'s play of the run
    (evaluation.evaluate_loaded) with the agent's `momentum_std_explore` set to its std."""
    torch.set_num_threads(1)
    from safehpo.actions import load_run
    from safehpo.evaluation import evaluate_loaded, require_filter

    where = f"explore_noise {run}"
    loaded = load_run(run, "explore_noise")
    if filtered:  # before minutes of unfiltered rows
        require_filter(loaded, where)
    cfg, agent = loaded.cfg, loaded.agent
    plays = [("deterministic", None, False)] + [("explore", s, False) for s in stds]
    if filtered:
        plays += [("explore, filter on", s, True) for s in stds]
    rows = []
    try:
        for policy, std, through_filter in plays:
            agent.cfg = cfg if std is None else dataclasses.replace(cfg, momentum_std_explore=std)
            played = evaluate_loaded(loaded, where, episodes, seed, stochastic=std is not None,
                                     filtered=through_filter).episodes
            rows.append(dict(policy=policy, std=std, returns=[e.ret for e in played],
                             costs=[e.cost for e in played], lengths=[e.length for e in played]))
    finally:
        agent.cfg = cfg
    return loaded.spec.measure_kind, rows


def row_cost(row: dict, kind: str) -> float:
    """The row's cost in the budget's kind: per env step over all its steps for an average budget
    (a fall's short episode counts by its length), the episodes' mean otherwise."""
    from safehpo.summary import final_step_mean
    costs, lengths = np.asarray(row["costs"]), np.asarray(row["lengths"])
    return float(final_step_mean(costs, lengths, fraction=1.0)) if kind == "average" else float(costs.mean())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--stds", default="1,0.3,0.1,0", help="momentum stds of the explore policy, comma-separated")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--filtered", action="store_true", help="also through the Lyapunov filter")
    p.add_argument("--seed", type=int, help="first episode's reset seed (default: the run's last evaluation's)")
    args = p.parse_args()
    from safehpo.config import ConfigError
    try:
        stds = [float(s) for s in args.stds.split(",")]
        if any(s < 0 for s in stds) or args.episodes < 1:
            raise ValueError
    except ValueError:
        print(f"explore_noise: --stds {args.stds!r} --episodes {args.episodes}: non-negative numbers and "
              "at least one episode", file=sys.stderr)
        return 2
    try:
        kind, rows = play_rows(args.run, stds, args.episodes, args.filtered, args.seed)
    except ConfigError as e:  # no such run, no checkpoint, no filter: one line
        print(e, file=sys.stderr)
        return 2
    print(f"{args.run}: {args.episodes} episodes per row; cost in the budget's kind ({kind}"
          f"{', per env step' if kind == 'average' else ''})")
    for r in rows:
        label = r["policy"] + ("" if r["std"] is None else f", momentum std {r['std']:g}")
        print(f"{label:36s} return {np.mean(r['returns']):8.1f}   cost {row_cost(r, kind):7.2f}   "
              f"lengths {r['lengths']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
