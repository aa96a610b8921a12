"""Figures of a bench, per environment folder: return vs violation, learning curves, filter audit.

- return_vs_violation.png  final training return vs training cost (budget line) and vs cumulative
                           violations; a point per finished (algo, seed), per algo the mean (with
                           95% CI error bars for 3+ seeds)
- curves.png               over env steps: training return and cost, evaluation return and cost
                           (filter off solid, filter on dashed), lambda and alpha; mean over seeds
                           with a 95% CI band (3+ seeds) or each seed's line (fewer)
- audit.png                rejected actions and unsafe fallbacks per 1k env steps over training,
                           each episode's counts spread over the steps it covered

The numbers come from `safehpo.aggregate` (the same selection of runs, budget and buckets as
summary.csv, audit.csv and report.md); titles name the environment by its spec id. Each
algorithm keeps one colour and marker in every figure (see `algo_style`). PNGs are written
atomically: savefig to a temporary .png in the same folder, then os.replace. matplotlib (Agg
backend, set before pyplot is imported) loads on the first drawing, so importing this module for
its `plot` / `audit` commands stays cheap.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from safehpo.aggregate import (
    BUDGET_KIND_LABELS, FIGURE_FILES, MIN_SEEDS_FOR_CI, RunRecord, aggregate_all,
    audit_bucket_width, bootstrap_ci, bootstrap_ci_curve, bucket_run, budget_label, collect_runs,
    env_budget, env_name, find_env_dirs, format_audit, mean_selection, run_summary, select_runs,
)
from safehpo.atomic import replace_atomically

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _pyplot():
    """matplotlib.pyplot with the Agg backend, imported on first use: `safehpo` registers its
    `plot` command from this module, and other commands should not pay for matplotlib."""
    import sys

    import matplotlib
    if "matplotlib.pyplot" not in sys.modules:  # never switch the backend under a live pyplot
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


DPI = 150
SMOOTHING_EPISODES = 5   # moving window for the learning curves
CURVE_POINTS = 200       # common step grid the seeds are interpolated onto

# One colour and marker per algorithm, the same in every figure and every environment.
_KNOWN = {
    "sac-hpo": ("#d62728", "o"),
    "sac-lag": ("#1f77b4", "s"),
    "sac-pid": ("#2ca02c", "^"),
    "sac": ("#7f7f7f", "D"),
    "hpo-conv": ("#ff7f0e", "v"),
    "hpo-explore": ("#9467bd", "P"),
    "hpo-train": ("#8c564b", "X"),
    "hpo-nomomentum": ("#e377c2", "<"),
}
_SPARE_COLOURS = ("#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
_SPARE_MARKERS = ("h", ">", "p", "*", "d", "8", "H")

_STYLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8.5,
    "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.grid": True, "grid.alpha": 0.3,
    "grid.linewidth": 0.6, "axes.spines.top": False, "axes.spines.right": False,
    "legend.framealpha": 0.85,
}
_BUDGET_STYLE = dict(color="0.25", linestyle="--", linewidth=1.2, zorder=1)


def algo_style(algo: str) -> tuple[str, str]:
    """(colour, marker) of an algorithm: fixed for the known ones, from a hash of the name else."""
    if algo in _KNOWN:
        return _KNOWN[algo]
    h = zlib.crc32(algo.encode())
    return _SPARE_COLOURS[h % len(_SPARE_COLOURS)], _SPARE_MARKERS[h % len(_SPARE_MARKERS)]


def save_figure(fig: Figure, path: Path | str) -> Path:
    """savefig to a temporary .png in the same folder, then os.replace onto `path`; closes fig."""
    try:
        return replace_atomically(path, lambda tmp: fig.savefig(tmp, dpi=DPI, bbox_inches="tight"), suffix=".png")
    finally:
        _pyplot().close(fig)


def _steps_formatter() -> Any:
    """Tick labels for env steps: 2.5k, 1M."""
    from matplotlib.ticker import FuncFormatter

    def fmt(x: float, _pos: int) -> str:
        if abs(x) >= 1e6:
            return f"{x / 1e6:g}M"
        if abs(x) >= 1e3:
            return f"{x / 1e3:g}k"
        return f"{x:g}"
    return FuncFormatter(fmt)


def _kind_text(kind: str | None) -> str:
    return BUDGET_KIND_LABELS.get(kind or "", kind or "per episode")




def _no_data(ax: Axes, text: str = "no finished episodes") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def _runs(env_dir: Path, runs: Sequence[RunRecord] | None) -> list[RunRecord]:
    return list(runs) if runs is not None else collect_runs(env_dir)


# ----------------------------------------------------------------------------------------------
# Seeds: a band with 3 or more, each seed's line with fewer
# ----------------------------------------------------------------------------------------------

def _nan_mean(matrix: np.ndarray) -> np.ndarray:
    """Column means over the non-NaN entries (NaN where a column has none), without warnings."""
    have = ~np.isnan(matrix)
    count = have.sum(axis=0)
    total = np.where(have, matrix, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def draw_seeds(ax: Axes, x: np.ndarray, matrix: np.ndarray, colour: str, label: str | None,
               linestyle: str = "-", marker: str | None = None, band: bool = True) -> int:
    """The mean over seeds of matrix [seeds, points] (NaN: no data) against x.

    With MIN_SEEDS_FOR_CI or more seeds with data, a 95% bootstrap band around the mean (if
    `band`); with fewer, each seed's own thin line beside the mean, and no interval. A mean with
    one point is drawn as a marker. Returns the number of seeds with data.
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.size == 0:
        return 0
    m = m[~np.isnan(m).all(axis=1)]
    seeds = m.shape[0]
    if seeds == 0:
        return 0
    with_ci = seeds >= MIN_SEEDS_FOR_CI
    if with_ci:
        mean, low, high = bootstrap_ci_curve(m)
    else:
        mean, low, high = _nan_mean(m), None, None
        if seeds > 1:
            for row in m:
                ok = ~np.isnan(row)
                ax.plot(x[ok] if ok.sum() == 1 else x, row[ok] if ok.sum() == 1 else row,
                        color=colour, linestyle=linestyle, linewidth=0.8, alpha=0.5, zorder=2,
                        marker=marker if marker or ok.sum() == 1 else None, markersize=2.5)
    have = ~np.isnan(mean)
    if have.sum() == 1:
        i = int(np.flatnonzero(have)[0])
        yerr = [[mean[i] - low[i]], [high[i] - mean[i]]] if with_ci and band else None
        ax.errorbar([x[i]], [mean[i]], yerr=yerr, fmt=marker or "o", color=colour, capsize=3,
                    markerfacecolor="white" if linestyle != "-" else colour, label=label, zorder=3)
        return seeds
    ax.plot(x, mean, color=colour, linestyle=linestyle, linewidth=1.8, label=label, zorder=3,
            marker=marker, markersize=3.5)
    if with_ci and band:
        ax.fill_between(x, low, high, where=have, color=colour, alpha=0.2 if linestyle == "-" else 0.1,
                        linewidth=0, zorder=2)
    return seeds


def _groups(runs: Sequence[RunRecord]) -> dict[str, tuple[list[RunRecord], list[RunRecord], bool]]:
    """Per algorithm (sorted): (the runs averaged: its finished ones, else its unfinished ones),
    (its other unfinished runs with data, drawn dotted outside the means), partial. The same
    selection as report.md's tables (`select_runs`); algorithms without data are left out."""
    by_algo: dict[str, list[RunRecord]] = {}
    for run in runs:
        by_algo.setdefault(run.algo, []).append(run)
    out = {}
    for algo, mine in sorted(by_algo.items()):
        chosen, others, partial = select_runs(mine)
        if chosen:
            out[algo] = (chosen, others, partial)
    return out


def _group_label(algo: str, chosen: Sequence[RunRecord], others: Sequence[RunRecord] = (),
                 partial: bool = False) -> str:
    """'sac-hpo (3 seeds)', 'sac-hpo (3 seeds; 1 unfinished, dotted)', 'sac-hpo (2 unfinished seeds)'."""
    n = len(chosen)
    text = f"{algo} ({n} {'unfinished ' if partial else ''}seed{'' if n == 1 else 's'}"
    return text + (f"; {len(others)} unfinished, dotted)" if others else ")")


def draw_unfinished(ax: Axes, x: np.ndarray, matrix: np.ndarray, colour: str,
                    marker: str | None = None) -> None:
    """Each row of matrix [runs, points] as a thin dotted line: unfinished runs, outside the means."""
    for row in np.asarray(matrix, dtype=float).reshape(-1, len(x)):
        ok = ~np.isnan(row)
        if ok.any():
            ax.plot(x[ok], row[ok], color=colour, linestyle=":", linewidth=1.0, alpha=0.8, zorder=2,
                    marker=marker if marker or ok.sum() == 1 else None, markersize=2.5)


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
    runs = _runs(env_dir, runs)
    threshold, kind = env_budget(runs)
    by_algo: dict[str, list[dict]] = {}
    for run in runs:
        by_algo.setdefault(run.algo, []).append(run_summary(run))
    groups = {}
    for algo, rows in sorted(by_algo.items()):
        chosen, partial = mean_selection(rows)
        if chosen:
            groups[algo] = (chosen, partial)
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    with plt.rc_context(_STYLE):
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
            ax_cost.axvline(threshold, label=budget_label(threshold, kind), **_BUDGET_STYLE)
            lo, hi = ax_cost.get_xlim()
            hi = max(hi, threshold * 1.05 if threshold > 0 else hi)
            ax_cost.axvspan(threshold, hi, color="#d62728", alpha=0.05, zorder=0, linewidth=0)
            ax_cost.set_xlim(lo, hi)
        if not groups:
            _no_data(ax_cost)
            _no_data(ax_viol)
        ax_cost.set_xlabel(f"training cost, last 10% of episodes ({_kind_text(kind)})")
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

def moving_average(values: np.ndarray, window: int = SMOOTHING_EPISODES) -> np.ndarray:
    """Centred moving average over `window` episodes; the window shrinks at the ends; NaN-aware."""
    v = np.asarray(values, dtype=float)
    if v.size == 0 or window <= 1:
        return v.copy()
    ok = ~np.isnan(v)
    kernel = np.ones(window)
    start = (window - 1) // 2  # "full" convolution sliced to the centre: any length works
    total = np.convolve(np.where(ok, v, 0.0), kernel)[start:start + v.size]
    count = np.convolve(ok.astype(float), kernel)[start:start + v.size]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _window(episodes: int) -> int:
    """The smoothing window: SMOOTHING_EPISODES, narrower for runs under 4 windows long, so a
    short run is not flattened into a constant."""
    return max(1, min(SMOOTHING_EPISODES, episodes // 4))


def interpolate_seed(steps: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A seed's (smoothed) episode values on the grid; NaN outside the steps it has data for."""
    ok = ~np.isnan(steps) & ~np.isnan(values)
    out = np.full(grid.shape, np.nan)
    if not ok.any():
        return out
    s, v = steps[ok], values[ok]
    order = np.argsort(s, kind="stable")
    s, v = s[order], v[order]
    inside = (grid >= s[0]) & (grid <= s[-1])
    out[inside] = np.interp(grid[inside], s, v)
    return out


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
    centred 5-episode moving average (narrower for runs of under 20 episodes, see `_window`) and
    interpolated onto a common step grid (NaN outside the seed's own range); then the Lagrange
    multiplier lambda after each episode. Right column, evaluations (eval.csv): return and cost of
    the deterministic policy without the filter (solid) and, for filtered algorithms, the deployed
    policy with the filter (dashed, same colour); then the temperature alpha. Every panel shows
    the mean over seeds: with 3 or more seeds a 95% bootstrap band, with fewer each seed's own
    thin line. Both cost panels carry the budget line. Unfinished runs are drawn up to their last
    episode and counted in the legend.
    """
    env_dir = Path(env_dir)
    runs = _runs(env_dir, runs)
    threshold, kind = env_budget(runs)
    groups = _groups(runs)
    every = {algo: chosen + others for algo, (chosen, others, _) in groups.items()}
    grid = _step_grid(every)
    egrid = _eval_grid(every)
    plt = _pyplot()
    from matplotlib.lines import Line2D
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(3, 2, figsize=(12, 10.5), sharex=True)
        (ax_ret, ax_eret), (ax_cost, ax_ecost), (ax_lam, ax_alpha) = axes
        any_filtered, alphas = False, []
        def training(mine: Sequence[RunRecord], key: str, smooth: bool = True) -> np.ndarray:
            return np.array([interpolate_seed(r.column("step"), moving_average(r.column(key), _window(r.episodes))
                                              if smooth else r.column(key), grid)
                             for r in mine]).reshape(len(mine), grid.size)

        for algo, (mine, others, partial) in groups.items():
            colour, marker = algo_style(algo)
            label = _group_label(algo, mine, others, partial)
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
                                               **_BUDGET_STYLE))
        if not groups:
            for ax in axes.ravel():
                _no_data(ax)
        elif not egrid.size:
            for ax in (ax_eret, ax_ecost):
                _no_data(ax, "no evaluation recorded")
        values = np.concatenate(alphas) if alphas else np.zeros(0)
        if values.size and values.min() > 0 and values.max() > 10 * values.min():
            ax_alpha.set_yscale("log")   # alpha spans decades when autotuned over a long run
        ax_ret.set_ylabel("episode return (sum of rewards)")
        ax_ret.set_title("training episodes: return")
        ax_cost.set_ylabel(f"episode cost ({_kind_text(kind)})")
        ax_cost.set_title("training episodes: cost")
        ax_eret.set_ylabel("episode return (sum of rewards)")
        ax_eret.set_title("evaluation (deterministic policy): return")
        ax_ecost.set_ylabel(f"episode cost ({_kind_text(kind)})")
        ax_ecost.set_title("evaluation (deterministic policy): cost")
        ax_lam.set_ylabel("lambda")
        ax_lam.set_title("Lagrange multiplier lambda (after each training episode)")
        ax_alpha.set_ylabel("alpha")
        ax_alpha.set_title("entropy temperature alpha (after each training episode)")
        for ax in (ax_lam, ax_alpha):
            ax.set_xlabel("environment steps")
            ax.xaxis.set_major_formatter(_steps_formatter())
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
    runs = _runs(env_dir, runs)
    groups = _groups(runs)
    width = audit_bucket_width(runs)
    any_rejected = any(np.nansum(r.column("rejected")) > 0
                       for chosen, others, _ in groups.values() for r in chosen + others)
    plt = _pyplot()
    with plt.rc_context(_STYLE):
        fig, (ax_rej, ax_fb) = plt.subplots(2, 1, figsize=(8, 6.2), sharex=True)
        if any_rejected:
            for algo, (mine, others, partial) in groups.items():
                colour, marker = algo_style(algo)
                none = not any(np.nansum(r.column("rejected")) > 0 for r in mine + others)
                label = _group_label(algo, mine, others, partial) + (" - none rejected" if none else "")
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
        ax_fb.xaxis.set_major_formatter(_steps_formatter())
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
    runs = _runs(env_dir, runs)
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


# ----------------------------------------------------------------------------------------------
# Commands: `safehpo plot DIR`, `safehpo audit DIR` (registered by safehpo.cli)
# ----------------------------------------------------------------------------------------------

def _existing_dir(args: Any) -> Path:
    from safehpo.config import ConfigError
    path = Path(args.dir)
    if not path.exists():
        raise ConfigError(f"{args.command} {path}: does not exist")
    if not path.is_dir():
        raise ConfigError(f"{args.command} {path}: not a folder (give a bench's --out folder or one of its env folders)")
    if not find_env_dirs(path):
        raise ConfigError(f"{args.command} {path}: no runs found (expected <env>/<algo>/seed-<n>/ "
                          "folders in it or in its subfolders)")
    return path


def cmd_plot(args: Any) -> int:
    """Write summary.csv, audit.csv, the figures and report.md of every environment folder."""
    for p in aggregate_all(_existing_dir(args)):
        print(p)
    return 0


def cmd_audit(args: Any) -> int:
    """Print the rejected-action table per algorithm."""
    print(format_audit(_existing_dir(args)))
    return 0


def register_cli(sub: Any) -> None:
    """Add the `plot`, `audit` and `plot-actions` commands to the `safehpo` subparsers."""
    p = sub.add_parser("plot", help="redraw figures and rewrite summary.csv, audit.csv, report.md")
    p.add_argument("dir", help="an environment folder of a bench (OUT/<env>) or a folder of them")
    p.set_defaults(func=cmd_plot)
    a = sub.add_parser("audit", help="print the Lyapunov filter's rejected-action table")
    a.add_argument("dir", help="an environment folder of a bench (OUT/<env>) or a folder of them")
    a.set_defaults(func=cmd_audit)
    from safehpo.cli import _non_negative_int, _positive_int
    pa = sub.add_parser("plot-actions", help="scatter base-policy and Hamiltonian-chain actions at one "
                        "state over Q_lambda (the paper's Fig. 7)")
    pa.add_argument("run_dir", help="a run folder (the --out of `safehpo train`: config.yaml, checkpoint.pt)")
    pa.add_argument("--state-index", type=_non_negative_int, default=0, metavar="N",
                    help="the state N random steps into the episode reset with the run's seed "
                    "(default 0: its first state)")
    pa.add_argument("--dims", default=None, metavar="I,J",
                    help="the two action dims to plot (default: the two the chain moves most)")
    pa.add_argument("--samples", type=_positive_int, default=1000, help="actions drawn per policy (default 1000)")
    pa.add_argument("--out", default=None, metavar="FILE", help=f"PNG to write (default RUN_DIR/{ACTIONS_FILE})")
    pa.set_defaults(func=cmd_plot_actions)


# ----------------------------------------------------------------------------------------------
# actions.png: base policy vs Hamiltonian chain at one state (the paper's Fig. 7)
# ----------------------------------------------------------------------------------------------

ACTIONS_FILE = "actions.png"
Q_GRID = 121   # points per axis of the Q_lambda contour


def load_run(run_dir: Path | str, where: str = "run") -> tuple[Any, Any, Any]:
    """(Config, EnvSpec, Agent) of a run folder: config.yaml rebuilt into a Config, the agent
    built as `safehpo.train` builds it and loaded from checkpoint.pt, on the CPU.

    Raises ConfigError (one line) if the folder, config.yaml or checkpoint.pt is missing or unreadable.
    """
    import torch
    import yaml

    from safehpo.agent import Agent, check_algo
    from safehpo.cmdp import load_spec, make_env
    from safehpo.config import Config, ConfigError, apply_overrides

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{where} {run_dir}: no such folder")
    config_path, ckpt_path = run_dir / "config.yaml", run_dir / "checkpoint.pt"
    if not config_path.is_file():
        raise ConfigError(f"{where} {run_dir}: not a run folder (no config.yaml; expected the --out "
                          "folder of `safehpo train`)")
    try:
        doc = yaml.safe_load(config_path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{config_path}: unreadable YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{config_path}: expected a mapping of hyperparameters")
    from .train import LEGACY_DEFAULTS
    known = Config().to_dict()
    doc = {**LEGACY_DEFAULTS, **doc}  # a run saved before a hyperparameter existed ran with its old value
    cfg = apply_overrides(Config(), {k: v for k, v in doc.items() if k in known}, where=str(config_path))
    check_algo(cfg.algo, str(config_path))
    if not ckpt_path.is_file():
        raise ConfigError(f"{where} {run_dir}: no checkpoint.pt (the run has not reached its first checkpoint)")
    try:
        spec = load_spec(cfg.env)
    except ConfigError:  # a spec given by a relative path: config.yaml keeps its resolved path
        saved = (doc.get("spec") or {}).get("path") if isinstance(doc.get("spec"), dict) else None
        if not saved or not Path(saved).is_file():
            raise
        spec = load_spec(saved)
    try:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        agent_state = state["agent"]
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file is one line, not a traceback
        raise ConfigError(f"{ckpt_path}: unreadable checkpoint ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else 'no details'})") from None
    env = make_env(spec)
    cfg = cfg.replace(device="cpu")
    agent = Agent.for_env(cfg, spec, env, "cpu")
    env.close()
    try:
        agent.load_state_dict(agent_state, optimisers=False)  # plotting needs no optimiser state
    except (KeyError, RuntimeError, ValueError) as e:
        raise ConfigError(f"{ckpt_path}: does not match config.yaml ({type(e).__name__}: "
                          f"{str(e).splitlines()[0]})") from None
    return cfg, spec, agent


def run_state(spec: Any, seed: int, index: int = 0) -> np.ndarray:
    """The state `index` uniform-random steps into the episode of make_env(spec) reset with `seed`
    (index 0: the episode's first state). The action space is seeded with `seed` too."""
    from safehpo.cmdp import make_env
    from safehpo.config import ConfigError

    env = make_env(spec)
    try:
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        for step in range(index):
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if (terminated or truncated) and step + 1 < index:
                raise ConfigError(f"--state-index {index}: the episode ended after {step + 1} random steps")
    finally:
        env.close()
    return np.asarray(obs, dtype=np.float32)


def chain_mode(algo: Any) -> str:
    """The chain to plot: the algorithm's train-mode chain, or its explore chain when training is
    Gaussian (hpo-explore)."""
    return algo.train if algo.train != "gaussian" else algo.explore


def action_samples(agent: Any, obs: np.ndarray, samples: int, seed: int = 0) -> dict[str, Any]:
    """`samples` actions at one state from the base Gaussian policy and after the chain.

    Both draws start from the same torch seed, and `Agent.sample` draws u_0 first, so base
    sample n is the chain's starting action a_0 of sample n (paired: a_K - a_0 per sample).
    Returns base [N, A], chain [N, A], mean [A] (the base policy's mean action), lam, alpha, mode.
    """
    import torch

    cfg = agent.cfg
    mode = chain_mode(agent.algo)
    std = cfg.momentum_std_train if mode == agent.algo.train else cfg.momentum_std_explore
    s = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0).expand(samples, -1)
    alpha, lam = agent.log_alpha.exp().detach(), agent.multiplier.value
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        base, _ = agent.actor.sample(s)
        torch.manual_seed(seed)
        chain, _, _ = agent.sample(s, mode, std, alpha, lam)
        mean = agent.actor.mean_action(s[:1])[0]
    return {"base": base.numpy(), "chain": chain.numpy(), "mean": mean.numpy(),
            "lam": float(lam), "alpha": float(alpha), "mode": mode,
            "momentum_std": std if agent.algo.momentum else 0.0}


def moved_dims(base: np.ndarray, chain: np.ndarray) -> tuple[int, int]:
    """The two action dims where the chain moves samples most (mean |a_K - a_0|), in index order;
    (0, 1) if it moves none."""
    moved = np.abs(chain - base).mean(axis=0)
    if not np.any(moved > 0):
        return 0, 1
    i, j = np.argsort(-moved, kind="stable")[:2]
    return int(min(i, j)), int(max(i, j))


def q_lambda_grid(agent: Any, obs: np.ndarray, dims: tuple[int, int], anchor: np.ndarray,
                  points: int = Q_GRID) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q_lambda(s, a) = min(Q1, Q2) - lambda Q_C on a points x points grid over action dims `dims`
    across the action box; the other dims fixed at `anchor`. Returns (x [P], y [P], Q [P, P])."""
    import torch

    i, j = dims
    x = np.linspace(agent.act_low[i], agent.act_high[i], points, dtype=np.float32)
    y = np.linspace(agent.act_low[j], agent.act_high[j], points, dtype=np.float32)
    xx, yy = np.meshgrid(x, y)
    acts = np.repeat(anchor[None, :].astype(np.float32), xx.size, axis=0)
    acts[:, i], acts[:, j] = xx.ravel(), yy.ravel()
    s = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0).expand(xx.size, -1)
    with torch.no_grad():
        q = agent.q_lambda(agent.critics, s, torch.as_tensor(acts), agent.multiplier.value)
    return x, y, q.reshape(points, points).numpy()


def _parse_dims(text: str | None, act_dim: int) -> tuple[int, int] | None:
    from safehpo.config import ConfigError
    if text is None:
        return None
    try:
        dims = tuple(int(p) for p in text.split(","))
    except ValueError:
        dims = ()
    if len(dims) != 2 or dims[0] == dims[1] or not all(0 <= d < act_dim for d in dims):
        raise ConfigError(f"--dims: expected two different action dims i,j in 0..{act_dim - 1}, got '{text}'")
    return dims  # type: ignore[return-value]


def plot_actions(run_dir: Path | str, state_index: int = 0, dims: str | tuple[int, int] | None = None,
                 samples: int = 1000, out: Path | str | None = None) -> Path:
    """Write `actions.png` of a trained Hamiltonian run (the paper's Fig. 7).

    At one state (the first of the episode reset with the run's seed, or `state_index` random
    steps into it), `samples` actions from the base Gaussian policy (left) and after the K-step
    chain (right), over a filled contour of Q_lambda on two action dims, the other dims at the
    base policy's mean action. Both panels share the colour scale. Raises ConfigError for a
    Gaussian algorithm (no chain), a folder that is not a run, or bad dims.
    """
    from safehpo.config import ConfigError

    run_dir = Path(run_dir)
    cfg, spec, agent = load_run(run_dir, "plot-actions")
    if not agent.algo.hamiltonian:
        raise ConfigError(f"plot-actions {run_dir}: {cfg.algo} is a Gaussian policy, there is no "
                          "Hamiltonian chain to plot")
    if agent.act_dim < 2:
        raise ConfigError(f"plot-actions {run_dir}: {spec.id} has one action dim; the figure needs two")
    if samples < 1:
        raise ConfigError(f"--samples: expected a positive integer, got {samples}")
    if isinstance(dims, str) or dims is None:
        dims = _parse_dims(dims, agent.act_dim)
    else:
        dims = _parse_dims(",".join(str(d) for d in dims), agent.act_dim)
    obs = run_state(spec, cfg.seed, state_index)
    drawn = action_samples(agent, obs, samples, seed=cfg.seed)
    base, chain = drawn["base"], drawn["chain"]
    auto_dims = dims is None
    i, j = dims if dims is not None else moved_dims(base, chain)
    x, y, q = q_lambda_grid(agent, obs, (i, j), drawn["mean"])
    moved = np.abs(chain - base).mean(axis=0)
    out = Path(out) if out is not None else run_dir / ACTIONS_FILE
    if not out.parent.is_dir():
        raise ConfigError(f"--out: folder '{out.parent}' does not exist")

    plt = _pyplot()
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    levels = MaxNLocator(nbins=14).tick_values(float(q.min()), float(q.max()))
    if len(levels) < 3:  # a flat Q (untrained critic): still a valid scale
        levels = np.linspace(float(q.min()) - 0.5, float(q.max()) + 0.5, 5)
    colour_base, colour_chain = "#e8e8e8", "#ff2d2d"
    k = cfg.leapfrog_steps
    which = "train-mode" if drawn["mode"] == agent.algo.train else "explore-mode"
    with plt.rc_context({**_STYLE, "axes.grid": False, "axes.spines.top": True,
                         "axes.spines.right": True}):
        fig = plt.figure(figsize=(11, 6.2))
        grid = fig.add_gridspec(1, 3, width_ratios=[1, 1, 0.045], left=0.07, right=0.93, top=0.85,
                                bottom=0.2, wspace=0.14)
        axes = [fig.add_subplot(grid[0])]
        axes.append(fig.add_subplot(grid[1], sharex=axes[0], sharey=axes[0]))
        axes[1].tick_params(labelleft=False)
        panels = ((axes[0], base, colour_base, "base policy  a_0 ~ pi(a|s)"),
                  (axes[1], chain, colour_chain, f"after K = {k} {drawn['mode']} leapfrog steps  a_K"))
        filled = None
        for ax, acts, colour, title in panels:
            filled = ax.contourf(x, y, q, levels=levels, cmap="viridis", zorder=0)
            ax.contour(x, y, q, levels=levels, colors="black", linewidths=0.35, alpha=0.35, zorder=1)
            if acts is chain:  # each sample's path from its start a_0 (a chord, not the curved path)
                ax.add_collection(LineCollection(np.stack([base[:, [i, j]], chain[:, [i, j]]], axis=1),
                                                 colors="white", linewidths=0.6, alpha=0.6, zorder=2))
            ax.scatter(acts[:, i], acts[:, j], s=7, color=colour, alpha=0.7,
                       edgecolors="black", linewidths=0.2, zorder=3)
            ax.plot(drawn["mean"][i], drawn["mean"][j], marker="*", markersize=14, color="#ffd21f",
                    markeredgecolor="black", markeredgewidth=0.9, linestyle="none", zorder=4)
            ax.set_title(title)
            ax.set_xlabel(f"action[{i}]")
            ax.set_xlim(x[0], x[-1])
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
            ax.yaxis.set_major_locator(MaxNLocator(nbins=8))
            ax.set_ylim(y[0], y[-1])
        axes[0].set_ylabel(f"action[{j}]")
        handles = [
            Line2D([], [], marker="o", linestyle="none", markersize=5, color=colour_base,
                   markeredgecolor="black", markeredgewidth=0.4, label=f"base policy ({samples} samples)"),
            Line2D([], [], marker="o", linestyle="none", markersize=5, color=colour_chain,
                   markeredgecolor="black", markeredgewidth=0.4, label=f"after the chain ({samples} samples)"),
            Line2D([], [], color="0.6", linewidth=1.2, label="a_0 -> a_K (per sample)"),
            Line2D([], [], marker="*", linestyle="none", markersize=11, color="#ffd21f",
                   markeredgecolor="black", markeredgewidth=0.8, label="base policy's mean action"),
        ]
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.105), ncol=4, frameon=False)
        bar = fig.colorbar(filled, cax=fig.add_subplot(grid[2]))
        bar.set_label("Q_lambda(s, a)")
        state = ("first state of the episode" if state_index == 0
                 else f"state after {state_index} random steps") + f" (reset seed {cfg.seed})"
        momentum = (f"momentum std {drawn['momentum_std']:g}" if drawn["momentum_std"] > 0
                    else "no momentum (rho = 0)")
        fig.suptitle(f"{cfg.algo} on {spec.id}: actions at one state, {which} chain K = {k}, eps = {cfg.leapfrog_eps:g}, "
                     f"{momentum}\n{state}; lambda = {drawn['lam']:.3g}, "
                     f"alpha = {drawn['alpha']:.3g}", fontsize=11, y=0.98)
        others = [d for d in range(agent.act_dim) if d not in (i, j)]
        note = (f"dims {i}, {j}: {'the two the chain moves most' if auto_dims else 'chosen'} "
                f"(mean |a_K - a_0| {moved[i]:.3g}, {moved[j]:.3g}; over all dims: "
                + ", ".join(f"{m:.2g}" for m in moved) + ")\n"
                "Q_lambda = min(Q1, Q2) - lambda Q_C of the trained critics, "
                + (f"on the slice with action{others} at the mean action (the samples vary in every dim)"
                   if others else "over the whole action box"))
        fig.text(0.5, 0.025, note, ha="center", va="top", fontsize=8, color="0.35")
        return save_figure(fig, out)


def cmd_plot_actions(args: Any) -> int:
    """Write the actions figure of one run folder and print its path."""
    print(plot_actions(args.run_dir, state_index=args.state_index, dims=args.dims,
                       samples=args.samples, out=args.out))
    return 0
