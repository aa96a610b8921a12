"""The three figures of a bench, per environment folder: return vs violation, learning curves,
filter audit.

- return_vs_violation.png  final training return vs training cost (budget line) and vs cumulative
                           violations; a point per finished (algo, seed), per algo the mean (with
                           95% CI error bars for 3+ seeds)
- curves.png               over env steps: training return and cost, evaluation return and cost
                           (filter off solid, filter on dashed), lambda and alpha; mean over seeds
                           with a 95% CI band (3+ seeds) or each seed's line (fewer)
- audit.png                rejected actions and unsafe fallbacks per 1k env steps over training,
                           each episode's counts spread over the steps it covered

The numbers come from the same code as the tables (safehpo.summary, safehpo.audit: the same
selection of runs, budget and buckets as summary.csv, audit.csv and report.md); titles name the
environment by its spec id. How seeds, algorithms and unfinished runs are drawn is
safehpo.drawing's. matplotlib loads on the first drawing, so importing this module stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .audit import audit_bucket_width, bucket_run
from .bootstrap import MIN_SEEDS_FOR_CI, bootstrap_ci
from .drawing import (BUDGET_STYLE, SMOOTHING_EPISODES, STYLE, algo_groups, algo_style, draw_seeds,
                      draw_unfinished, group_label, interpolate_seed, kind_text, moving_average, no_data,
                      pyplot, runs_or_collect, save_figure, smoothing_window, steps_formatter)
from .runrecord import RunRecord, budget_label, env_budget, env_name, find_env_dirs
from .summary import mean_selection, run_summary

FIGURE_FILES = ("return_vs_violation.png", "curves.png", "audit.png")
CURVE_POINTS = 200       # common step grid the seeds are interpolated onto


# ----------------------------------------------------------------------------------------------
# return_vs_violation.png
# ----------------------------------------------------------------------------------------------

def plot_return_vs_violation(env_dir: Path | str, runs: Sequence[RunRecord] | None = None) -> Path:
    """Write `return_vs_violation.png`: final training return vs training cost (last 10%) and
    vs cumulative violations.

    The runs per algorithm are the report's (`mean_selection`: the finished ones, else the
    unfinished ones, labelled so). A small point per seed; a large marker per algo at the mean
    over seeds, with 95% bootstrap CI error bars in both axes when there are 3 or more seeds.
    The cost panel has a dashed vertical budget line.
    """
    env_dir = Path(env_dir)
    runs = runs_or_collect(env_dir, runs)
    threshold, kind = env_budget(runs)
    by_algo: dict[str, list[dict]] = {}
    for run in runs:
        by_algo.setdefault(run.algo, []).append(run_summary(run))
    groups = {}
    for algo, rows in sorted(by_algo.items()):
        chosen, partial = mean_selection(rows)
        if chosen:
            groups[algo] = (chosen, partial)
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator
    with plt.rc_context(STYLE):
        fig, (ax_cost, ax_viol) = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
        for algo, (rows, partial) in groups.items():
            colour, marker = algo_style(algo)
            ret = np.array([np.nan if r["final_return"] is None else r["final_return"] for r in rows])
            for ax, key in ((ax_cost, "final_cost"), (ax_viol, "cumulative_violations")):
                x = np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)
                ok = ~np.isnan(x) & ~np.isnan(ret)
                if not ok.any():
                    continue
                ax.scatter(x[ok], ret[ok], s=26, color=colour, marker=marker, alpha=0.45,
                           linewidths=0, zorder=2)
                n = int(ok.sum())
                label = f"{algo} (mean of {n} {'unfinished ' if partial else ''}seed{'' if n == 1 else 's'})"
                if n >= MIN_SEEDS_FOR_CI:
                    mx, lx, hx = bootstrap_ci(x[ok])
                    my, ly, hy = bootstrap_ci(ret[ok])
                    xerr, yerr = [[mx - lx], [hx - mx]], [[my - ly], [hy - my]]
                else:
                    mx, my, xerr, yerr = float(x[ok].mean()), float(ret[ok].mean()), None, None
                ax.errorbar([mx], [my], xerr=xerr, yerr=yerr, fmt=marker, color=colour, markersize=9,
                            markeredgecolor="black", markeredgewidth=0.8, elinewidth=1.4, capsize=4,
                            zorder=3, label=label, alpha=0.6 if partial else 1.0)
        for ax in (ax_cost, ax_viol):  # room around the markers at the data's edges
            ax.margins(x=0.08, y=0.1)
        if threshold is not None:
            ax_cost.axvline(threshold, label=budget_label(threshold, kind), **BUDGET_STYLE)
            lo, hi = ax_cost.get_xlim()
            hi = max(hi, threshold * 1.05 if threshold > 0 else hi)
            ax_cost.axvspan(threshold, hi, color="#d62728", alpha=0.05, zorder=0, linewidth=0)
            ax_cost.set_xlim(lo, hi)
        if not groups:
            no_data(ax_cost)
            no_data(ax_viol)
        ax_cost.set_xlabel(f"training cost, last 10% of episodes ({kind_text(kind)})")
        ax_cost.set_ylabel("training return, last 10% of episodes")
        ax_cost.set_title("return vs cost (training episodes)")
        ax_viol.set_xlabel("cumulative violations (training episodes over budget)")
        ax_viol.set_title("return vs cumulative violations")
        ax_viol.set_xlim(left=min(-0.5, ax_viol.get_xlim()[0]))
        ax_viol.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_viol.tick_params(labelleft=True)
        if groups or threshold is not None:
            ax_cost.legend(loc="best")
        fig.suptitle(f"{env_name(env_dir, runs)}: final training return vs constraint", fontsize=12)
        fig.text(0.5, -0.01, "small points: finished seeds; large markers: mean over seeds, with 95% "
                 f"bootstrap CI error bars for {MIN_SEEDS_FOR_CI}+ seeds (none with fewer); "
                 "final = mean of the last 10% of training episodes", ha="center", va="top",
                 fontsize=8, color="0.35")
        fig.tight_layout()
        return save_figure(fig, env_dir / FIGURE_FILES[0])


# ----------------------------------------------------------------------------------------------
# curves.png
# ----------------------------------------------------------------------------------------------

def _step_grid(groups: dict[str, list[RunRecord]]) -> np.ndarray:
    first, last = np.inf, 0.0
    for mine in groups.values():
        for run in mine:
            steps = run.column("step")
            steps = steps[~np.isnan(steps)]
            if steps.size:
                first, last = min(first, steps.min()), max(last, steps.max())
    if not np.isfinite(first):
        return np.zeros(0)
    return np.linspace(first, last, CURVE_POINTS) if last > first else np.array([first])


def _eval_grid(groups: dict[str, list[RunRecord]]) -> np.ndarray:
    """The evaluation steps of all runs (sorted, unique): evaluations share their steps."""
    steps = [run.eval_column("step") for mine in groups.values() for run in mine]
    steps = np.concatenate(steps) if steps else np.zeros(0)
    return np.unique(steps[~np.isnan(steps)])


def eval_matrix(mine: Sequence[RunRecord], key: str, grid: np.ndarray) -> np.ndarray:
    """[seeds, grid points] of an eval.csv column (NaN outside a seed's evaluations, and for a
    column the file lacks or leaves empty)."""
    return np.array([interpolate_seed(r.eval_column("step"), r.eval_column(key), grid)
                     for r in mine]).reshape(len(mine), grid.size)


def plot_curves(env_dir: Path | str, runs: Sequence[RunRecord] | None = None) -> Path:
    """Write `curves.png`: six panels over env steps, one colour per algorithm.

    Left column, training episodes (progress.csv): return and cost, each seed smoothed with a
    centred 5-episode moving average (narrower for runs of under 20 episodes, see
    `smoothing_window`) and interpolated onto a common step grid (NaN outside the seed's own
    range); then the Lagrange multiplier lambda after each episode. Right column, evaluations (eval.csv): return and cost of
    the deterministic policy without the filter (solid) and, for filtered algorithms, the deployed
    policy with the filter (dashed, same colour); then the temperature alpha. Every panel shows
    the mean over seeds: with 3 or more seeds a 95% bootstrap band, with fewer each seed's own
    thin line. Both cost panels carry the budget line. Unfinished runs are drawn up to their last
    episode and counted in the legend.
    """
    env_dir = Path(env_dir)
    runs = runs_or_collect(env_dir, runs)
    threshold, kind = env_budget(runs)
    groups = algo_groups(runs)
    every = {algo: chosen + others for algo, (chosen, others, _) in groups.items()}
    grid = _step_grid(every)
    egrid = _eval_grid(every)
    plt = pyplot()
    from matplotlib.lines import Line2D
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(3, 2, figsize=(12, 10.5), sharex=True)
        (ax_ret, ax_eret), (ax_cost, ax_ecost), (ax_lam, ax_alpha) = axes
        any_filtered, alphas = False, []
        def training(mine: Sequence[RunRecord], key: str, smooth: bool = True) -> np.ndarray:
            return np.array([interpolate_seed(r.column("step"),
                                              moving_average(r.column(key), smoothing_window(r.episodes))
                                              if smooth else r.column(key), grid)
                             for r in mine]).reshape(len(mine), grid.size)

        for algo, (mine, others, partial) in groups.items():
            colour, marker = algo_style(algo)
            label = group_label(algo, mine, others, partial)
            for ax, key in ((ax_ret, "return"), (ax_cost, "cost"), (ax_lam, "lambda"), (ax_alpha, "alpha")):
                smooth = key in ("return", "cost")
                matrix = training(mine, key, smooth)
                if draw_seeds(ax, grid, matrix, colour, label if key == "return" else None) and key == "alpha":
                    alphas.append(matrix[~np.isnan(matrix)])
                draw_unfinished(ax, grid, training(others, key, smooth), colour)
            if egrid.size:
                for ax, key in ((ax_eret, "return_mean"), (ax_ecost, "cost_mean")):
                    draw_seeds(ax, egrid, eval_matrix(mine, key, egrid), colour, None, marker=marker)
                    if draw_seeds(ax, egrid, eval_matrix(mine, f"filtered_{key}", egrid), colour, None,
                                  linestyle="--", marker=marker):
                        any_filtered = True
                    draw_unfinished(ax, egrid, eval_matrix(others, key, egrid), colour, marker)
        budget_lines = []
        if threshold is not None:
            for ax in (ax_cost, ax_ecost):
                budget_lines.append(ax.axhline(threshold, label=budget_label(threshold, kind),
                                               **BUDGET_STYLE))
        if not groups:
            for ax in axes.ravel():
                no_data(ax)
        elif not egrid.size:
            for ax in (ax_eret, ax_ecost):
                no_data(ax, "no evaluation recorded")
        values = np.concatenate(alphas) if alphas else np.zeros(0)
        if values.size and values.min() > 0 and values.max() > 10 * values.min():
            ax_alpha.set_yscale("log")   # alpha spans decades when autotuned over a long run
        ax_ret.set_ylabel("episode return (sum of rewards)")
        ax_ret.set_title("training episodes: return")
        ax_cost.set_ylabel(f"episode cost ({kind_text(kind)})")
        ax_cost.set_title("training episodes: cost")
        ax_eret.set_ylabel("episode return (sum of rewards)")
        ax_eret.set_title("evaluation (deterministic policy): return")
        ax_ecost.set_ylabel(f"episode cost ({kind_text(kind)})")
        ax_ecost.set_title("evaluation (deterministic policy): cost")
        ax_lam.set_ylabel("lambda")
        ax_lam.set_title("Lagrange multiplier lambda (after each training episode)")
        ax_alpha.set_ylabel("alpha")
        ax_alpha.set_title("entropy temperature alpha (after each training episode)")
        for ax in (ax_lam, ax_alpha):
            ax.set_xlabel("environment steps")
            ax.xaxis.set_major_formatter(steps_formatter())
            ax.tick_params(labelbottom=True)
        if groups:
            ax_ret.legend(loc="best")   # algorithms once, on top; colours are the same everywhere
        if egrid.size and groups:
            styles = [Line2D([], [], color="0.3", linewidth=1.8, label="filter off (every algorithm)")]
            if any_filtered:
                styles.append(Line2D([], [], color="0.3", linewidth=1.8, linestyle="--",
                                     label="filter on (deployed, filtered algorithms)"))
            ax_eret.legend(handles=styles, loc="best")
        if budget_lines:
            ax_cost.legend(handles=budget_lines[:1], loc="best")
            ax_ecost.legend(handles=budget_lines[1:], loc="best")
        fig.suptitle(f"{env_name(env_dir, runs)}: training and evaluation curves", fontsize=12)
        fig.text(0.5, -0.005, f"lines: mean over finished seeds; band: 95% bootstrap CI ({MIN_SEEDS_FOR_CI}+ seeds); "
                 f"thin lines: individual seeds (fewer than {MIN_SEEDS_FOR_CI}); dotted: unfinished runs, "
                 "not in the mean. Training: "
                 f"{SMOOTHING_EPISODES}-episode moving average of the training episodes (exploration "
                 "policy, with the filter where the algorithm has one). Evaluation: deterministic "
                 "policy on eval_episodes episodes per point.",
                 ha="center", va="top", fontsize=8, color="0.35", wrap=True)
        fig.tight_layout()
        return save_figure(fig, env_dir / FIGURE_FILES[1])


# ----------------------------------------------------------------------------------------------
# audit.png
# ----------------------------------------------------------------------------------------------

def _rate_matrix(mine: Sequence[RunRecord], width: int, key: str) -> tuple[np.ndarray, np.ndarray]:
    """[seeds, buckets] of 1000 * key / env steps the run's episodes cover in the bucket (the
    counters spread over their episodes' steps, see `bucket_run`); NaN where no step is covered."""
    buckets = [bucket_run(r, width) for r in mine]
    n = max((len(b["step"]) for b in buckets), default=0)
    matrix = np.full((len(buckets), n), np.nan)
    for i, b in enumerate(buckets):
        env_steps = b["env_steps"]
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(env_steps > 0, 1000.0 * b[key] / np.maximum(env_steps, 1e-12), np.nan)
        matrix[i, :len(rate)] = rate
    centres = (np.arange(n) + 0.5) * width
    return centres, matrix


def plot_audit(env_dir: Path | str, runs: Sequence[RunRecord] | None = None) -> Path:
    """Write `audit.png`: rejected actions and unsafe fallbacks per 1k env steps over training.

    Training is cut into the same step buckets as audit.csv, each episode's counters spread over
    the steps it covered; in each bucket the rate is 1000 * count / env steps covered. The mean
    over seeds, with a 95% bootstrap band for 3 or more seeds, else each seed's own thin line.
    If nothing was rejected, the axes carry a note instead.
    """
    env_dir = Path(env_dir)
    runs = runs_or_collect(env_dir, runs)
    groups = algo_groups(runs)
    width = audit_bucket_width(runs)
    any_rejected = any(np.nansum(r.column("rejected")) > 0
                       for chosen, others, _ in groups.values() for r in chosen + others)
    plt = pyplot()
    with plt.rc_context(STYLE):
        fig, (ax_rej, ax_fb) = plt.subplots(2, 1, figsize=(8, 6.2), sharex=True)
        if any_rejected:
            for algo, (mine, others, partial) in groups.items():
                colour, marker = algo_style(algo)
                none = not any(np.nansum(r.column("rejected")) > 0 for r in mine + others)
                label = group_label(algo, mine, others, partial) + (" - none rejected" if none else "")
                for ax, key in ((ax_rej, "rejected"), (ax_fb, "unsafe_fallbacks")):
                    centres, matrix = _rate_matrix(mine, width, key)
                    draw_seeds(ax, centres, matrix, colour, label, marker=marker)
                    if others:
                        centres, matrix = _rate_matrix(others, width, key)
                        draw_unfinished(ax, centres, matrix, colour, marker)
            ax_rej.legend(loc="best")   # colours are the same in both panels
            for ax in (ax_rej, ax_fb):  # a little room below 0, so zero lines stay visible
                top = max(ax.get_ylim()[1], 1.0)
                ax.set_ylim(-0.03 * top, top)
        else:
            note = ("no actions rejected (no Lyapunov filter in these algorithms)" if groups
                    else "no finished episodes")
            ax_rej.text(0.5, 0.5, note, transform=ax_rej.transAxes, ha="center", va="center",
                        color="0.3", fontsize=10)
            ax_fb.text(0.5, 0.5, "no unsafe fallbacks", transform=ax_fb.transAxes, ha="center",
                       va="center", color="0.3", fontsize=10)
            total = width * 20
            ax_fb.set_xlim(0, total)
            ax_rej.set_ylim(0, 1)
            ax_fb.set_ylim(0, 1)
        ax_rej.set_ylabel("rejected actions\nper 1k env steps")
        ax_rej.set_title("actions rejected by the Lyapunov filter (training)")
        ax_fb.set_ylabel("unsafe fallbacks\nper 1k env steps")
        ax_fb.set_title("steps where no candidate passed the filter (unsafe fallback)")
        ax_fb.set_xlabel(f"environment steps (buckets of {width:,} steps; each episode's counts "
                         "spread over its steps)")
        ax_fb.xaxis.set_major_formatter(steps_formatter())
        fig.suptitle(f"{env_name(env_dir, runs)}: Lyapunov filter audit (mean over finished seeds; 95% "
                     f"bootstrap CI with {MIN_SEEDS_FOR_CI}+ seeds, else each seed; dotted: unfinished)",
                     fontsize=11)
        fig.tight_layout()
        return save_figure(fig, env_dir / FIGURE_FILES[2])


# ----------------------------------------------------------------------------------------------
# All figures
# ----------------------------------------------------------------------------------------------

def plot_env(env_dir: Path | str, runs: Sequence[RunRecord] | None = None) -> list[Path]:
    """The three figures of one environment folder."""
    env_dir = Path(env_dir)
    runs = runs_or_collect(env_dir, runs)
    return [plot_return_vs_violation(env_dir, runs), plot_curves(env_dir, runs),
            plot_audit(env_dir, runs)]


def plot_all(path: Path | str) -> list[Path]:
    """The three figures of every environment folder: `path` itself or its children.

    Raises FileNotFoundError if no `<env>/<algo>/seed-<n>/` folder is found.
    """
    env_dirs = find_env_dirs(path)
    if not env_dirs:
        raise FileNotFoundError(f"no runs found under {path} (expected <env>/<algo>/seed-<n>/ folders)")
    return [p for env_dir in env_dirs for p in plot_env(env_dir)]
