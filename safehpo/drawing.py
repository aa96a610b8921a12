"""How the figures draw a bench: matplotlib loaded on first use, one colour and marker per
algorithm, the house style, atomic PNGs, and the seeds of an algorithm drawn as a mean with a
95% bootstrap band (3 or more seeds) or beside each seed's own thin line (fewer); unfinished runs
dotted, outside the means; learning curves smoothed and put on a common step grid.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .atomic import replace_atomically
from .bootstrap import MIN_SEEDS_FOR_CI, bootstrap_ci_curve
from .runrecord import BUDGET_KIND_LABELS, RunRecord, collect_runs
from .summary import select_runs

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def pyplot():
    """matplotlib.pyplot with the Agg backend, imported on first use: commands that draw nothing
    (and `safehpo plot` until it draws) should not pay for matplotlib."""
    import sys

    import matplotlib
    if "matplotlib.pyplot" not in sys.modules:  # never switch the backend under a live pyplot
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


DPI = 150
SMOOTHING_EPISODES = 5   # moving window for the learning curves

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
    "hpo-nofilter": ("#17becf", ">"),
}
_SPARE_COLOURS = ("#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
_SPARE_MARKERS = ("h", "p", "*", "d", "8", "H")

STYLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8.5,
    "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.grid": True, "grid.alpha": 0.3,
    "grid.linewidth": 0.6, "axes.spines.top": False, "axes.spines.right": False,
    "legend.framealpha": 0.85,
}
BUDGET_STYLE = dict(color="0.25", linestyle="--", linewidth=1.2, zorder=1)


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
        pyplot().close(fig)


def steps_formatter() -> Any:
    """Tick labels for env steps: 2.5k, 1M."""
    from matplotlib.ticker import FuncFormatter

    def fmt(x: float, _pos: int) -> str:
        if abs(x) >= 1e6:
            return f"{x / 1e6:g}M"
        if abs(x) >= 1e3:
            return f"{x / 1e3:g}k"
        return f"{x:g}"
    return FuncFormatter(fmt)


def kind_text(kind: str | None) -> str:
    """How a budget kind reads in an axis label: 'average per step'."""
    return BUDGET_KIND_LABELS.get(kind or "", kind or "per episode")


def no_data(ax: Axes, text: str = "no finished episodes") -> None:
    """A grey note in the middle of an empty panel."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def runs_or_collect(env_dir: Path, runs: Sequence[RunRecord] | None) -> list[RunRecord]:
    """The runs given, else those of the folder."""
    return list(runs) if runs is not None else collect_runs(env_dir)


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


def algo_groups(runs: Sequence[RunRecord]) -> dict[str, tuple[list[RunRecord], list[RunRecord], bool]]:
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


def group_label(algo: str, chosen: Sequence[RunRecord], others: Sequence[RunRecord] = (),
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


def smoothing_window(episodes: int) -> int:
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
