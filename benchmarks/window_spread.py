"""How far does a run's end of training scatter around the budget it aimed at, and which
`budget_margin` would keep it under the budget?

    python benchmarks/window_spread.py FOLDER... [--from 50000] [--margins 0,0.1,0.2,0.3]

A run is judged at its end by its last 10% of training episodes (summary.csv's final_cost; per
env step on an average budget). Once the multiplier has settled (by default: every episode of
the window ends after step 50k), that window is one draw from all windows of as many
consecutive episodes. For every finished run under the folders given (run folders, environment
folders or a results folder), the script takes each such window's cost, measured as the final
cost is, over the run's own target `(1 - budget_margin) * d0`, pools these ratios per
environment, algorithm and margin, and prints

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

from safehpo.runfolder import PROGRESS_FILE, with_legacy_defaults
from safehpo.runrecord import collect_runs, find_env_dirs, RunRecord, env_name
from safehpo.summary import FINAL_FRACTION, final_count

DEFAULT_MARGINS = (0.0, 0.1, 0.2, 0.3)


def runs_under(folder: Path) -> list[RunRecord]:
    """The runs of a run folder (`<algo>/seed-<n>/`), an environment folder or a folder of them."""
    if (folder / PROGRESS_FILE).is_file():
        return [run for run in collect_runs(folder.parent.parent)
                if run.path.resolve() == folder.resolve()]
    return [run for env_dir in find_env_dirs(folder) for run in collect_runs(env_dir)]


def window_ratios(run: RunRecord, start: int) -> tuple[float, np.ndarray]:
    """The run's target and, for every window of its final-window size whose episodes all end
    after `start`, the window's cost over that target."""
    threshold, kind = run.budget
    margin = float(with_legacy_defaults(run.config).get("budget_margin", 0.0))
    target = threshold * (1.0 - margin)
    cost, length, step = run.column("cost"), run.column("length"), run.column("step")
    k = final_count(run.episodes, FINAL_FRACTION)
    first = int(np.searchsorted(step, start, side="right"))   # the first episode ending after start
    ratios = []
    for end in range(first + k, run.episodes + 1):
        c, n = cost[end - k:end], length[end - k:end]
        value = (c * n).sum() / n.sum() if kind == "average" else c.mean()
        ratios.append(value / target)
    return target, np.asarray(ratios)


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
    args = parser.parse_args(argv)

    groups: dict[tuple[str, str, float], list[tuple[RunRecord, np.ndarray]]] = {}
    budgets: dict[str, tuple[float, str]] = {}
    for folder in args.folders:
        if not folder.is_dir():
            print(f"window_spread: {folder}: no such folder", file=sys.stderr)
            return 2
        for run in runs_under(folder):
            if not run.finished:
                continue
            threshold, kind = run.budget
            if threshold is None or not threshold > 0:
                print(f"window_spread: {run.path}: the run has no positive budget", file=sys.stderr)
                return 2
            target, ratios = window_ratios(run, args.start)
            env = env_name(run.path.parent.parent, [run])
            budgets[env] = (threshold, kind)
            groups.setdefault((env, run.algo, round(1 - target / threshold, 6)), []).append((run, ratios))
    if not groups:
        print("window_spread: no finished run under " + ", ".join(map(str, args.folders)), file=sys.stderr)
        return 2

    print(f"windows of the final 10% of episodes, every episode ending after step {args.start}; "
          "ratio = window cost / the run's target (per env step on an average budget)")
    head = ("| env (budget) | algo | margin | seeds | windows | ratio mean / std | q90 / q95 | over d0 | "
            + " | ".join(f"over d0 at m={m:g}" for m in args.margins) + " |")
    print(head)
    print("|" + "---|" * 3 + "---:|" * (head.count("|") - 4))
    for (env, algo, margin), members in sorted(groups.items()):
        r = np.concatenate([ratios for _, ratios in members])
        seeds = ",".join(str(run.seed) for run, _ in members)
        threshold, kind = budgets[env]
        if r.size == 0:
            print(f"| {env} ({threshold:g} {kind}) | {algo} | {margin:g} | {seeds} | 0 | no window ends after "
                  f"step {args.start} |")
            continue
        over = (r > 1 / (1 - margin)).mean()
        predicted = " | ".join(f"{(r > 1 / (1 - m)).mean():.2f}" for m in args.margins)
        print(f"| {env} ({threshold:g} {kind}) | {algo} | {margin:g} | {seeds} | {r.size} | "
              f"{r.mean():.2f} / {r.std():.2f} | {np.quantile(r, 0.9):.2f} / {np.quantile(r, 0.95):.2f} | "
              f"{over:.2f} | {predicted} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
