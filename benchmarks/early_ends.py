"""How often training episodes ended early, by the multiplier they were played under.

    python benchmarks/early_ends.py FOLDER... [--from 50000] [--width 0.5]

Would a higher `lambda` (a floor, `lambda_min`) keep a policy from the episodes that end early?
For every finished run under the folders given (run, algorithm, environment or results folders
of a bench) the script takes each training episode that ends after step `--from` and the
`lambda` it was played under: the value progress.csv logs on the episode before it (the
per-episode rules, `lagrange: paper` and `pid`, move `lambda` only when an episode ends; runs
with `lagrange: adam`, which moves it every gradient step, and runs without a multiplier are
refused). It pools the episodes
per results folder, environment and algorithm into bins of `lambda` of width `--width` and
prints, per bin, the episodes, how many ended before the time limit (an Ant thrown or fallen:
`benchmarks/terminations.py` says which), their share, and the mean episode cost.

Read it with care: `lambda` also answers the early ends (a spell of costly short episodes
raises it), so the bins above the usual level hold the episodes that came after a spell, not a
random draw of policies. Instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from safehpo.algos import ALGOS, multiplier_rule
from safehpo.runfolder import with_legacy_defaults
from safehpo.runrecord import RunRecord, finished_runs_by_source


def played_under(run: RunRecord, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lambda played under, ended early, cost) of every episode of `run` ending after `start`
    but its first (which has no row before it). ValueError (one line naming the run) for a run
    without a lambda per episode or without the episode length limit in its config.yaml."""
    if run.algo not in ALGOS:
        raise ValueError(f"{run.path}: unknown algorithm '{run.algo}'")
    rule = multiplier_rule(run.algo, with_legacy_defaults(run.config).get("lagrange", "paper"))
    if rule in ("adam", "none"):
        raise ValueError(f"{run.path}: {run.algo} with the rule '{rule}' has no lambda per episode")
    spec = run.config.get("spec")
    limit = spec.get("max_episode_steps") if isinstance(spec, dict) else None
    if not (isinstance(limit, int) and limit > 0):
        raise ValueError(f"{run.path / 'config.yaml'}: spec.max_episode_steps missing or not a positive integer")
    lam, step = run.column("lambda"), run.column("step")
    length, cost = run.column("length"), run.column("cost")
    keep = np.flatnonzero(step[1:] > start) + 1
    if np.isnan(lam[keep - 1]).any() or np.isnan(length[keep]).any():
        raise ValueError(f"{run.path / 'progress.csv'}: no lambda or length on some episodes after step {start}")
    return lam[keep - 1], length[keep] < limit, cost[keep]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, metavar="FOLDER")
    parser.add_argument("--from", dest="start", type=int, default=50_000,
                        help="count episodes ending after this step (default 50000)")
    parser.add_argument("--width", type=float, default=0.5, help="width of a lambda bin (default 0.5)")
    args = parser.parse_args(argv)
    if not args.width > 0:
        print(f"early_ends: --width must be positive, got {args.width:g}", file=sys.stderr)
        return 2

    try:
        groups = {key: [played_under(run, args.start) for run in runs]
                  for key, runs in finished_runs_by_source(args.folders).items()}
    except ValueError as e:
        print(f"early_ends: {e}", file=sys.stderr)
        return 2

    if not any(lam.size for members in groups.values() for lam, _, _ in members):
        print(f"early_ends: no episode ends after step {args.start}", file=sys.stderr)
        return 2
    print(f"training episodes ending after step {args.start}, by the lambda they were played under")
    print("| folder | env | algo | lambda | episodes | ended early | share | mean episode cost |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    for (source, env, algo), members in sorted(groups.items()):
        lam, early, cost = (np.concatenate(parts) for parts in zip(*members))
        bins = np.floor(lam / args.width).astype(int)
        for b in np.unique(bins):
            at = bins == b
            print(f"| {source} | {env} | {algo} | {b * args.width:g} to {(b + 1) * args.width:g} | {at.sum()} | "
                  f"{early[at].sum()} | {early[at].mean():.1%} | {cost[at].mean():.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
