"""summary.csv and the per-algorithm statistics: a row per (algo, seed) of an environment folder,
and per algorithm the runs that enter its means and a `SeedStat` per metric (docs/outputs.md).

- safety during training comes from progress.csv, i.e. the training episodes as they were acted
  (exploration, uniform warm-up, the Lyapunov filter where the algorithm has one);
- the learned policy comes from the last row of eval.csv: the deterministic policy without the
  filter (the same protocol for every algorithm) and, for filtered algorithms, with it (the
  deployed policy). eval.csv files from before the filtered columns existed are read as well;
- per algorithm, only finished runs (status.json state "done") enter the means; with 3 or more
  of them a 95% percentile-bootstrap CI is shown, with fewer the per-seed values instead.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .atomic import write_atomic
from .bootstrap import seed_stat
from .runfolder import FINISHED
from .runrecord import RunRecord, as_float, collect_runs
from .tables import csv_text

SUMMARY_FILE = "summary.csv"
SUMMARY_COLUMNS = ("algo", "seed", "status", "reason", "final_return", "final_cost", "budget",
                   "budget_kind", "violation_rate", "cumulative_violations", "rejected",
                   "rejected_per_1k_steps", "steps", "wall_seconds", "sps",
                   # the headline tables' columns, after the first fifteen so readers of those keep working
                   "planned_steps", "episodes", "train_cost_mean", "final_lambda", "final_alpha",
                   "eval_step", "eval_episodes", "eval_return", "eval_cost",
                   "eval_filtered_return", "eval_filtered_cost", "eval_filtered_rejected",
                   "final_cost_per_step", "second_half_cost", "second_half_evals", "second_half_evals_over")
FINAL_FRACTION = 0.1   # final return/cost: mean over the last 10% of training episodes


def final_count(n: int, fraction: float) -> int:
    """How many of n episodes the last `fraction` holds (at least one)."""
    return max(1, int(math.ceil(fraction * n - 1e-9)))


def final_mean(values: np.ndarray, fraction: float = FINAL_FRACTION) -> float | None:
    """Mean of the last `fraction` of the values (at least the last one), NaNs ignored."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return None
    tail = v[-final_count(v.size, fraction):]
    tail = tail[~np.isnan(tail)]
    return float(tail.mean()) if tail.size else None


def final_step_mean(costs: np.ndarray, lengths: np.ndarray,
                    fraction: float = FINAL_FRACTION) -> float | None:
    """For an average budget: the cost per env step of the last `fraction` of the episodes (the
    same episodes as `final_mean`), i.e. their summed cost over their summed length. Each episode's
    cost is its own per-step average, so this weights an episode by its length where `final_mean`
    weights every episode alike; it is the rate the multiplier's length-share updates drive to the
    budget (docs/multiplier.md)."""
    c, n = np.asarray(costs, dtype=float), np.asarray(lengths, dtype=float)
    if c.size == 0 or c.size != n.size:
        return None
    k = final_count(c.size, fraction)
    c, n = c[-k:], n[-k:]
    keep = ~(np.isnan(c) | np.isnan(n))
    if not keep.any() or n[keep].sum() <= 0:
        return None
    return float((c[keep] * n[keep]).sum() / n[keep].sum())


def after_half(run: RunRecord, steps: np.ndarray) -> np.ndarray | None:
    """Which of `steps` lie in the second half of the run's planned steps (its steps reached where
    config.yaml has none); None without either."""
    horizon = run.planned_steps or run.steps
    return steps > horizon / 2 if horizon else None


def second_half_cost(run: RunRecord) -> float | None:
    """The training cost of the episodes that end in the second half of the run's planned steps
    (its steps reached where config.yaml has none), each episode's cost weighted by its length:
    the mean the default multiplier holds at the budget (it moves lambda by each episode's
    violation times its length share), for an average budget the cost per env step. Episodes of
    equal length (the halfcheetahs') make it their plain mean. Where the multiplier has settled by
    mid-run, this is the level it holds; the last 10% of episodes scatter around it
    (docs/multiplier.md). None before any episode ends there."""
    keep = after_half(run, run.column("step"))
    if keep is None or not keep.any():
        return None
    return final_step_mean(run.column("cost")[keep], run.column("length")[keep], fraction=1.0)


def second_half_evaluations(run: RunRecord, threshold: float | None) -> tuple[int, int | None]:
    """(evaluations taken in the second half of the run's planned steps, how many of them have a
    cost over the budget): the deterministic policy without the filter, as eval.csv records it.
    One evaluation is one moment of the policy; this says whether the last one is typical."""
    costs = run.eval_column("cost_mean")
    keep = after_half(run, run.eval_column("step"))
    if keep is None:
        return 0, None
    keep &= ~np.isnan(costs)
    n = int(keep.sum())
    return n, (int((costs[keep] > threshold).sum()) if threshold is not None and n else None)


def _nanmean(values: np.ndarray) -> float | None:
    v = values[~np.isnan(values)]
    return float(v.mean()) if v.size else None


def _last(values: np.ndarray) -> float | None:
    """The last value, if it is a number."""
    if values.size == 0 or math.isnan(values[-1]):
        return None
    return float(values[-1])


def run_summary(run: RunRecord) -> dict:
    """One summary.csv row as a dict of numbers (None where a value is missing).

    Training (progress.csv): final_return / final_cost: mean of the last 10% of training
    episodes (at least the last one); final_cost_per_step (average budgets only): those episodes'
    cost per env step, see `final_step_mean`; train_cost_mean: mean over all of them;
    second_half_cost: see `second_half_cost`; violation_rate:
    violated episodes / episodes; cumulative_violations: violated episodes; rejected: rejected
    actions over all episodes; rejected_per_1k_steps: 1000 * rejected / steps, steps = env steps
    at the end of the last finished episode; final_lambda / final_alpha: after the last episode;
    sps: median of the episodes' env steps per second.

    Learned policy (the last eval.csv row): eval_return / eval_cost: the deterministic policy
    without the filter; eval_filtered_*: with the filter (empty for unfiltered algorithms and for
    eval.csv files from before the filtered columns); eval_step: that row's step; eval_episodes:
    config.yaml's eval_episodes; second_half_evals / second_half_evals_over: see
    `second_half_evaluations`.

    The key eval_has_filtered (not a CSV column) says whether eval.csv has the filtered columns.
    """
    threshold, kind = run.budget
    eval_episodes = run.config.get("eval_episodes")
    row: dict[str, Any] = {c: None for c in SUMMARY_COLUMNS}
    row.update(algo=run.algo, seed=run.seed, status=run.state, reason=run.reason, budget=threshold,
               budget_kind=kind, steps=run.steps, planned_steps=run.planned_steps,
               episodes=run.episodes,
               wall_seconds=as_float((run.status or {}).get("wall_seconds")),
               eval_episodes=int(eval_episodes) if isinstance(eval_episodes, int)
               and not isinstance(eval_episodes, bool) else None,
               eval_has_filtered="filtered_return_mean" in run.evaluation)
    last_eval = run.last_evaluation
    if last_eval is not None:
        nan_none = lambda x: None if math.isnan(x) else x  # noqa: E731
        row.update(eval_step=int(last_eval["step"]), eval_return=last_eval["return_mean"],
                   eval_cost=nan_none(last_eval["cost_mean"]),
                   eval_filtered_return=nan_none(last_eval["filtered_return_mean"]),
                   eval_filtered_cost=nan_none(last_eval["filtered_cost_mean"]),
                   eval_filtered_rejected=nan_none(last_eval["filtered_rejected"]))
        if row["eval_filtered_rejected"] is not None:
            row["eval_filtered_rejected"] = int(round(row["eval_filtered_rejected"]))
        row["second_half_evals"], row["second_half_evals_over"] = second_half_evaluations(run, threshold)
    if run.episodes == 0:
        return row
    row["final_return"] = final_mean(run.column("return"))
    row["final_cost"] = final_mean(run.column("cost"))
    if kind == "average":
        row["final_cost_per_step"] = final_step_mean(run.column("cost"), run.column("length"))
    row["train_cost_mean"] = _nanmean(run.column("cost"))
    row["second_half_cost"] = second_half_cost(run)
    row["final_lambda"] = _last(run.column("lambda"))
    row["final_alpha"] = _last(run.column("alpha"))
    violated = run.column("violated")
    v = violated[~np.isnan(violated)]
    if v.size:
        row["cumulative_violations"] = int(round(v.sum()))
        row["violation_rate"] = float(v.sum() / v.size)
    rejected = run.total("rejected")
    if rejected is not None:
        row["rejected"] = int(round(rejected))
        if run.steps:
            row["rejected_per_1k_steps"] = 1000.0 * rejected / run.steps
    sps = run.column("sps")
    sps = sps[~np.isnan(sps)]
    if sps.size:
        row["sps"] = float(np.median(sps))
    return row


def summarise(env_dir: Path | str, runs: Sequence[RunRecord] | None = None) -> list[dict]:
    """A summary row (see `run_summary`) per (algo, seed) of an environment folder."""
    return [run_summary(r) for r in (runs if runs is not None else collect_runs(env_dir))]


def write_summary(env_dir: Path | str, runs: Sequence[RunRecord] | None = None) -> Path:
    """Write `summary.csv` (columns SUMMARY_COLUMNS, empty fields for missing values)."""
    env_dir = Path(env_dir)
    return write_atomic(env_dir / SUMMARY_FILE, csv_text(SUMMARY_COLUMNS, summarise(env_dir, runs)))


TRAIN_METRICS = ("cumulative_violations", "violation_rate", "train_cost_mean", "second_half_cost", "final_cost",
                 "final_cost_per_step", "final_return", "rejected_per_1k_steps", "final_lambda", "final_alpha")
POLICY_METRICS = ("eval_return", "eval_cost", "eval_filtered_return", "eval_filtered_cost",
                  "eval_filtered_rejected")
AGGREGATED = TRAIN_METRICS + POLICY_METRICS


def mean_selection(rows: Sequence[dict]) -> tuple[list[dict], bool]:
    """The summary rows (of one algorithm) that enter its means, and whether they are unfinished.

    The finished runs (state "done", at least one episode). If there is none, the unfinished
    runs that have at least one episode and did not fail, with partial=True (the report marks
    such a row); failed runs never enter a mean.
    """
    finished = [r for r in rows if r["status"] == FINISHED and r.get("episodes")]
    if finished:
        return finished, False
    partial = [r for r in rows if r["status"] != "failed" and r.get("episodes")]
    return partial, bool(partial)


def select_runs(runs: Sequence[RunRecord]) -> tuple[list[RunRecord], list[RunRecord], bool]:
    """`mean_selection` for the runs of one algorithm, as the figures use it: (the runs in the
    means, the other unfinished runs with data, partial). The figures average the first and draw
    the second apart (dotted), so a run that stops early never moves a mean."""
    finished = [r for r in runs if r.finished]
    unfinished = [r for r in runs if r.usable and not r.finished]
    if finished:
        return finished, unfinished, False
    return unfinished, [], bool(unfinished)


def algo_table(summary: Sequence[dict]) -> list[dict]:
    """Per algorithm: seed counts (seeds, done, usable = runs in the means, failed, states = the
    other states' counts), partial (the means are over unfinished runs, see `mean_selection`),
    and a SeedStat (or None) per metric in AGGREGATED over the runs in the means.
    """
    out = []
    for algo in sorted({r["algo"] for r in summary}):
        mine = [r for r in summary if r["algo"] == algo]
        chosen, partial = mean_selection(mine)
        states = Counter(r["status"] for r in mine if r["status"] != FINISHED)
        row: dict[str, Any] = dict(
            algo=algo, seeds=len(mine), done=sum(r["status"] == FINISHED for r in mine),
            usable=len(chosen), failed=states.get("failed", 0), states=dict(sorted(states.items())),
            partial=partial, chosen=chosen,
            filtered_recorded=any(r.get("eval_has_filtered") for r in chosen))
        for metric in AGGREGATED:
            row[metric] = seed_stat(r.get(metric) for r in chosen)
        out.append(row)
    return out
