"""Does a run time-share between two kinds of episode? Its settled stretch split at a cost.

    python benchmarks/episode_modes.py FOLDER... [--from 50000] [--split 2]

A Lagrangian run whose policy has two modes, one cheap and one far over the budget with a higher
return, meets the budget on average by alternating them: `lambda` rises after an expensive
episode and decays through the cheap ones until the policy switches again (docs/multiplier.md,
"Two modes: halfcheetah-speed"). For every finished run under the folders (run, algorithm,
environment or results folders of a bench), the episodes ending after `--from` are split at
`--split` times the budget `d0` (an episode over the split is "expensive"); the script prints per
run both groups' share, mean cost and mean return, and `lambda` as the episode began (after the
previous episode's update), as the median of each group. Costs in the budget's kind (per step on
an average budget, each episode's own). Instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from safehpo.runrecord import finished_runs_in


def split(run, start: int, factor: float) -> dict | None:
    """The two groups of the run's episodes ending after `start`, or None if none does."""
    threshold, _ = run.budget
    step, cost, ret, lam = (run.column(c) for c in ("step", "cost", "return", "lambda"))
    lam_before = np.concatenate([[np.nan], lam[:-1]])      # lambda the episode was acted with
    late = (step > start) & ~np.isnan(cost)               # an unreadable cost is in neither group
    if not late.any():
        return None
    hi = late & (cost > factor * threshold)
    lo = late & (cost <= factor * threshold)
    out = {"n": int(late.sum())}
    for name, mask in (("expensive", hi), ("cheap", lo)):
        out[name] = dict(count=int(mask.sum()),
                         cost=float(np.nanmean(cost[mask])) if mask.any() else None,
                         ret=float(np.nanmean(ret[mask])) if mask.any() else None,
                         lam=float(np.nanmedian(lam_before[mask])) if mask.any() else None)
    return out


def _num(x: float | None, digits: int) -> str:
    return "-" if x is None or np.isnan(x) else f"{x:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, metavar="FOLDER")
    parser.add_argument("--from", dest="start", type=int, default=50_000,
                        help="episodes ending after this step (default 50000)")
    parser.add_argument("--split", type=float, default=2.0,
                        help="an episode costing more than this times the budget is expensive (default 2)")
    args = parser.parse_args(argv)
    if not args.split > 0:
        print(f"episode_modes: --split must be > 0, got {args.split}", file=sys.stderr)
        return 2
    try:
        runs = finished_runs_in(args.folders)
    except ValueError as e:
        print(f"episode_modes: {e}", file=sys.stderr)
        return 2
    rows = [(run, groups) for run in runs if (groups := split(run, args.start, args.split)) is not None]
    if not rows:
        print("episode_modes: no finished run with episodes after step "
              f"{args.start} under " + ", ".join(map(str, args.folders)), file=sys.stderr)
        return 2
    print(f"episodes ending after step {args.start}, expensive: cost > {args.split:g} x budget; "
          "lambda: the median as the episodes began")
    print("| run | episodes | expensive: share / cost / return / lambda | cheap: cost / return / lambda |")
    print("|---|---:|---:|---:|")
    for run, g in rows:
        hi, lo = g["expensive"], g["cheap"]
        name = "/".join(run.path.resolve().parts[-4:])
        print(f"| {name} | {g['n']} | {hi['count'] / g['n']:.0%} / {_num(hi['cost'], 1)} / {_num(hi['ret'], 0)} / "
              f"{_num(hi['lam'], 3)} | {_num(lo['cost'], 1)} / {_num(lo['ret'], 0)} / {_num(lo['lam'], 3)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
