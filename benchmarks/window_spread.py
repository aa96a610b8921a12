"""How far does a run's end of training scatter around the budget it aimed at, and which
`budget_margin` would keep it under the budget?

    python benchmarks/window_spread.py FOLDER... [--from 50000] [--margins 0,0.1,0.2,0.3] [--per-episode]

A run is judged at its end by its last 10% of training episodes. The script measures a window
as summary.csv does: on an average budget per env step (final_cost_per_step), otherwise as the
mean of the episodes' own costs (final_cost); `--per-episode` takes that mean on an average
budget too, weighing a short episode as much as a full one. Once the multiplier has settled,
that window is one draw from all windows of as many consecutive episodes; `--from` says where
the settled stretch begins (every episode of a window ends after it; 50k by default, an
assumption the script does not check: a run still drifting there gives a trend, not a
frequency). For every finished run under
the folders given (run, algorithm, environment or results folders of a bench), the script takes
each such window's cost, measured as the final cost is, over the run's own target
`(1 - budget_margin) * d0`, pools these ratios per results folder, environment, algorithm and
margin (runs of two folders, which may differ in other settings, are never pooled; a run named
twice counts once), and prints

- how the ratios spread (mean, standard deviation, 90% and 95% quantiles);
- the share of the windows that were over the budget `d0` itself;
- for each candidate margin `m`, the share that would be over `d0` were the run to aim at
  `(1 - m) d0` with its ratios unchanged: ratio > 1 / (1 - m). That the ratios keep their spread
  when the target moves is an assumption; runs at two margins show how well it holds
  (docs/multiplier.md, "Aiming below the budget").

Windows overlap, so their shares are not independent draws: read them as how often the end of
a run would land over the budget, not as a confidence. Instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from safehpo.config import Config, ConfigError, apply_overrides
from safehpo.runfolder import with_legacy_defaults
from safehpo.runrecord import RunRecord, finished_runs_by_source
from safehpo.summary import FINAL_FRACTION, final_count, final_mean, final_step_mean

DEFAULT_MARGINS = (0.0, 0.1, 0.2, 0.3)


def window_ratios(run: RunRecord, start: int, per_episode: bool = False) -> tuple[float, np.ndarray]:
    """The run's target and, for every window of its final-window size whose episodes all end
    after `start`, the window's cost over that target (per env step on an average budget unless
    `per_episode`)."""
    threshold, kind = run.budget
    target = threshold * (1.0 - margin_of(run))
    cost, length, step = run.column("cost"), run.column("length"), run.column("step")
    k = final_count(run.episodes, FINAL_FRACTION)
    first = int(np.searchsorted(step, start, side="right"))   # the first episode ending after start
    ratios = []
    for end in range(first + k, run.episodes + 1):
        value = (final_step_mean(cost[end - k:end], length[end - k:end], fraction=1.0)
                 if kind == "average" and not per_episode
                 else final_mean(cost[end - k:end], fraction=1.0))
        if value is not None:   # a window of unreadable rows only is skipped
            ratios.append(value / target)
    return target, np.asarray(ratios)


def margin_of(run: RunRecord) -> float:
    """The run's budget_margin (0 for a run saved before it existed), checked as safehpo.config
    checks it. ValueError (one line) if it is not a number in [0, 1)."""
    value = with_legacy_defaults(run.config).get("budget_margin")
    try:
        return apply_overrides(Config(), {"budget_margin": value}, where=str(run.path / "config.yaml")).budget_margin
    except ConfigError as e:
        raise ValueError(str(e)) from None


def parse_margins(text: str) -> tuple[float, ...]:
    try:
        margins = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not margins or any(not 0 <= m < 1 for m in margins):
        raise argparse.ArgumentTypeError(f"margins must be in [0, 1): {text!r}")
    return margins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, metavar="FOLDER")
    parser.add_argument("--from", dest="start", type=int, default=50_000,
                        help="count windows whose episodes all end after this step (default 50000)")
    parser.add_argument("--margins", type=parse_margins, default=DEFAULT_MARGINS,
                        help="candidate budget margins, comma-separated (default 0,0.1,0.2,0.3)")
    parser.add_argument("--per-episode", action="store_true",
                        help="on an average budget, each window's mean episode cost, not its cost per env step")
    args = parser.parse_args(argv)

    # one row per results folder, environment, algorithm and margin: runs of different folders
    # (different settings) are never pooled, and a run named twice counts once
    groups: dict[tuple[str, str, str, float], list[tuple[RunRecord, np.ndarray]]] = {}
    try:
        for (source, env, algo), runs in finished_runs_by_source(args.folders).items():
            for run in runs:
                target, ratios = window_ratios(run, args.start, args.per_episode)
                groups.setdefault((source, env, algo, round(1 - target / run.budget[0], 6)), []).append((run, ratios))
    except ValueError as e:
        print(f"window_spread: {e}", file=sys.stderr)
        return 2
    if not any(ratios.size for members in groups.values() for _, ratios in members):
        print(f"window_spread: no run has a final-sized window of episodes all ending after step {args.start}",
              file=sys.stderr)
        return 2

    print(f"windows of the final 10% of episodes, every episode ending after step {args.start}; "
          "ratio = window cost / the run's target ("
          + ("the mean episode cost on every budget)" if args.per_episode else "per env step on an average budget)"))
    head = ("| folder | env (budget) | algo | margin | seeds | windows | ratio mean / std | q90 / q95 | over d0 | "
            + " | ".join(f"over d0 at m={m:g}" for m in args.margins) + " |")
    print(head)
    print("|" + "---|" * 4 + "---:|" * (head.count("|") - 5))
    for (source, env, algo, margin), members in sorted(groups.items()):
        runs = sorted(members, key=lambda member: member[0].seed)
        r = np.concatenate([ratios for _, ratios in runs])
        seeds = ",".join(str(run.seed) for run, _ in runs)
        threshold, kind = runs[0][0].budget
        label = f"| {source} | {env} ({threshold:g} {kind}) | {algo} | {margin:g} | {seeds} | {r.size} |"
        if r.size == 0:
            print(f"{label} no window of its final size lies wholly after step {args.start} |")
            continue
        over = (r > 1 / (1 - margin)).mean()
        predicted = " | ".join(f"{(r > 1 / (1 - m)).mean():.2f}" for m in args.margins)
        print(f"{label} {r.mean():.2f} / {r.std():.2f} | {np.quantile(r, 0.9):.2f} / {np.quantile(r, 0.95):.2f} | "
              f"{over:.2f} | {predicted} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
