"""Aggregation of a bench's runs: bootstrap confidence intervals, summary.csv, audit.csv, report.md.

A bench writes, per environment, `OUT/<env>/<algo>/seed-<n>/` with config.yaml, progress.csv
(a row per finished episode), eval.csv and status.json (docs/outputs.md). This module reads
those folders and writes, next to them:

- summary.csv   a row per (algo, seed): safety during training (violations, training cost, rejected
                actions), the learned policy (last evaluation, filter off and on), lambda, alpha, speed
- audit.csv     rejected actions, leapfrog steps and unsafe fallbacks per (algo, seed, step bucket)
- report.md     two headline tables per algorithm (safety during training; the learned policy),
                the per-seed tables, the figures, the method

How the numbers are computed (the same text goes into report.md, see `METHOD`):

- safety during training comes from progress.csv, i.e. the training episodes as they were acted
  (exploration, uniform warm-up, the Lyapunov filter where the algorithm has one);
- the learned policy comes from the last row of eval.csv: the deterministic policy without the
  filter (the same protocol for every algorithm) and, for filtered algorithms, with it (the
  deployed policy). eval.csv files from before the filtered columns existed are read as well;
- per algorithm, only finished runs (status.json state "done") enter the means; with 3 or more
  of them a 95% percentile-bootstrap CI is shown, with fewer the per-seed values instead;
- the audit spreads each episode's counters uniformly over the env steps it covered.

Every file is written atomically (a temporary file in the same folder, then `os.replace`), so a
crash or a concurrent reader never sees half a CSV. Missing or empty files are tolerated: a run
that never started, or failed before its first episode, is still listed with empty fields.

This module does not import matplotlib; `aggregate_all` imports `safehpo.plots` only when asked
to draw.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import yaml

from .atomic import write_atomic

PROGRESS_COLUMNS = ("step", "episode", "return", "cost", "length", "violated", "lambda", "alpha",
                    "rejected", "leapfrog_steps", "unsafe_fallbacks", "sps")
# eval.csv (safehpo.train.EVAL_COLUMNS). Files written before the filtered evaluation have only
# the first five columns; the missing ones read as empty.
EVAL_COLUMNS = ("step", "return_mean", "return_std", "cost_mean", "cost_std",
                "filtered_return_mean", "filtered_return_std", "filtered_cost_mean",
                "filtered_cost_std", "filtered_rejected")
SUMMARY_COLUMNS = ("algo", "seed", "status", "reason", "final_return", "final_cost", "budget",
                   "budget_kind", "violation_rate", "cumulative_violations", "rejected",
                   "rejected_per_1k_steps", "steps", "wall_seconds", "sps",
                   # added with the two headline tables; appended so older readers keep working
                   "planned_steps", "episodes", "train_cost_mean", "final_lambda", "final_alpha",
                   "eval_step", "eval_episodes", "eval_return", "eval_cost",
                   "eval_filtered_return", "eval_filtered_cost", "eval_filtered_rejected")
AUDIT_COLUMNS = ("algo", "seed", "step", "rejected", "leapfrog_steps", "unsafe_fallbacks",
                 "episodes", "env_steps", "rejected_per_1k_steps")
AUDIT_DECIMALS = 3     # spread counters are fractional: audit.csv writes them with 3 decimals

FINAL_FRACTION = 0.1   # final return/cost: mean over the last 10% of training episodes
AUDIT_BUCKETS = 20     # training is cut into this many equal step buckets for the audit
CONFIDENCE = 0.95
MIN_SEEDS_FOR_CI = 3   # fewer seeds: per-seed values instead of a bootstrap interval
FINISHED = "done"      # the status.json state of a finished run

# How each budget kind reads in a label: "budget 25 (average per step)".
BUDGET_KIND_LABELS = {
    "average": "average per step",
    "sum": "sum per episode",
    "discounted": "discounted sum per episode",
}

SUMMARY_FILE, AUDIT_FILE, REPORT_FILE = "summary.csv", "audit.csv", "report.md"
FIGURE_FILES = ("return_vs_violation.png", "curves.png", "audit.png")

METHOD_PARAGRAPHS = (
    "Safety during training comes from progress.csv: one row per finished training episode, acted "
    "as the run trained (the uniform-random warm-up, the stochastic exploration policy and, for "
    "filtered algorithms, the Lyapunov filter). A violation is a training episode whose cost, in "
    "the budget's kind, exceeded the budget; cumulative violations are their number, the violation "
    "rate their fraction of the run's episodes. Training cost is the mean episode cost over all "
    "episodes, and over the last 10% of training episodes (at least the last one); the training "
    "return over the last 10% describes those same episodes. Rejected actions are the failed tests "
    "of the Lyapunov filter summed over all training episodes; per 1k steps divides by the env "
    "steps of those episodes. Final lambda and alpha are the values after the last training "
    "episode. Speed (sps) is the median of the per-episode env steps per second.",

    "The learned policy comes from the last row of eval.csv (the evaluation at the end of "
    "training for a finished run): each evaluation runs the policy deterministically on "
    "`eval_episodes` episodes of a separate environment with fixed reset seeds. Filter off is the "
    "same protocol for every algorithm: the base policy's mean action, refined by the Hamiltonian "
    "chain with zero momentum where the algorithm has one, without the Lyapunov filter. Filter on "
    "is the deployed policy of a filtered algorithm (sac-hpo, hpo-conv, hpo-explore, "
    "hpo-nomomentum in a constrained environment): Algorithm 3 of the Lyapunov filter started "
    "from the mean action; its rejections during those episodes are counted apart from "
    "training's. Evaluation costs are in the budget's kind.",

    "Per algorithm, only finished runs (status.json state \"done\") enter the means; unfinished "
    "ones (running, interrupted, failed, not started) are listed in the per-seed tables with the "
    "steps they reached. If an algorithm has no finished run, its row averages its unfinished "
    "runs and is marked with a dagger. With 3 or more seeds the mean is shown with a 95% "
    "percentile-bootstrap confidence interval (10,000 resamples of the seeds, fixed random "
    "seed); with fewer, no interval is computed and the mean is followed by each seed's value.",

    "Learning curves smooth each seed's training episodes with a 5-episode moving average (fewer "
    "for runs of under 20 episodes) and interpolate them, and the evaluations, onto a common step "
    "grid; a point is drawn where at least one seed has data, with a 95% bootstrap band over 3 or "
    "more seeds, else with each seed's own thin line. The figures average the same runs as the "
    "tables; unfinished runs are drawn as dotted lines of their algorithm's colour, outside the "
    "means. Lambda and alpha are drawn unsmoothed.",

    "The audit cuts training into 20 equal step buckets. An episode covers the env steps "
    "(end - length, end]; its rejected actions, leapfrog steps and unsafe fallbacks are spread "
    "uniformly over those steps, each bucket receiving the share of its overlap with the "
    "episode, so bucket counts may be fractional (audit.csv writes them with 3 decimals; they "
    "sum to the run's totals). Rates per 1k steps divide by the env steps the run's episodes "
    "cover in the bucket. The `episodes` column counts the episodes that ended in the bucket.",
)
METHOD = "\n\n".join(METHOD_PARAGRAPHS)


# ----------------------------------------------------------------------------------------------
# Bootstrap
# ----------------------------------------------------------------------------------------------

_BOOTSTRAP_CHUNK_ELEMENTS = 4_000_000  # resampled values held in memory at once


def _bootstrap_means(matrix: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `n_resamples` resamples (with replacement) of the rows of matrix [n, points]."""
    n, points = matrix.shape
    chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // max(1, n * points))
    out = np.empty((n_resamples, points))
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = matrix[idx].mean(axis=1)
    return out


def bootstrap_ci_curve(matrix: Any, confidence: float = CONFIDENCE, n_resamples: int = 10_000,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile bootstrap of the mean along axis 0 of matrix [seeds, points].

    Returns (mean, low, high), each of shape [points]. NaN marks a seed without data at a point:
    each point is bootstrapped over the seeds that have data there (points sharing the same set
    of seeds are resampled together), and a point where no seed has data is NaN in all three.
    One seed at a point gives a zero-width interval. Deterministic for a given seed.
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim == 1:
        m = m[:, None]
    if m.ndim != 2:
        raise ValueError(f"bootstrap_ci_curve expects a [seeds, points] matrix, got shape {m.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    points = m.shape[1]
    mean, low, high = (np.full(points, np.nan) for _ in range(3))
    if m.shape[0] == 0 or points == 0:
        return mean, low, high
    have = ~np.isnan(m)
    masks, group_of = np.unique(have.T, axis=0, return_inverse=True)
    group_of = np.asarray(group_of).reshape(-1)
    tail = 100.0 * (1.0 - confidence) / 2.0
    for g, mask in enumerate(masks):
        if not mask.any():
            continue
        cols = np.flatnonzero(group_of == g)
        sub = m[np.ix_(mask, cols)]
        mean[cols] = sub.mean(axis=0)
        if sub.shape[0] == 1:
            low[cols] = high[cols] = sub[0]
            continue
        rng = np.random.default_rng(seed)
        means = _bootstrap_means(sub, n_resamples, rng)
        low[cols], high[cols] = np.percentile(means, [tail, 100.0 - tail], axis=0)
    return mean, low, high


def bootstrap_ci(values: Iterable[float], confidence: float = CONFIDENCE, n_resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float, float]:
    """Percentile bootstrap of the mean: (mean, low, high) of a `confidence` interval.

    Resamples the values with replacement `n_resamples` times (vectorised numpy, seeded, so
    the same input gives the same interval), and takes the (1-c)/2 and (1+c)/2 percentiles of
    the resampled means. NaNs are dropped; one value v gives (v, v, v); no value gives NaNs.
    """
    v = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean, low, high = bootstrap_ci_curve(v[:, None], confidence, n_resamples, seed)
    return float(mean[0]), float(low[0]), float(high[0])


# ----------------------------------------------------------------------------------------------
# Reading runs
# ----------------------------------------------------------------------------------------------

_SEED_DIR = re.compile(r"^seed-(-?\d+)$")


@dataclass
class RunRecord:
    """Everything a bench left in one `<algo>/seed-<n>/` folder.

    progress / evaluation map each column name to a float array (NaN for an unreadable field;
    empty arrays when the file is missing or has no rows). status is status.json as a dict, or
    None when it is missing or unreadable.
    """

    algo: str
    seed: int
    path: Path
    config: dict = field(default_factory=dict)
    progress: dict[str, np.ndarray] = field(default_factory=dict)
    evaluation: dict[str, np.ndarray] = field(default_factory=dict)
    status: dict | None = None

    @property
    def episodes(self) -> int:
        return int(self.progress["step"].size) if "step" in self.progress else 0

    def column(self, name: str) -> np.ndarray:
        """A progress.csv column (an array of NaN if the file lacks it)."""
        if name in self.progress:
            return self.progress[name]
        return np.full(self.episodes, np.nan)

    @property
    def evaluations(self) -> int:
        return int(self.evaluation["step"].size) if "step" in self.evaluation else 0

    def eval_column(self, name: str) -> np.ndarray:
        """An eval.csv column (an array of NaN if the file lacks it, e.g. an old 5-column file)."""
        if name in self.evaluation:
            return self.evaluation[name]
        return np.full(self.evaluations, np.nan)

    @property
    def last_evaluation(self) -> dict[str, float] | None:
        """The last eval.csv row with a finite step and return_mean, as {column: value}
        (NaN for an empty or missing field); None without one."""
        steps, returns = self.eval_column("step"), self.eval_column("return_mean")
        ok = np.flatnonzero(~np.isnan(steps) & ~np.isnan(returns))
        if ok.size == 0:
            return None
        i = int(ok[-1])
        return {name: float(self.eval_column(name)[i]) for name in EVAL_COLUMNS}

    @property
    def spec_id(self) -> str | None:
        """The environment spec's id from config.yaml (`spec: {id: ...}`), else None."""
        spec = self.config.get("spec")
        if isinstance(spec, dict) and isinstance(spec.get("id"), str) and spec["id"]:
            return spec["id"]
        return None

    @property
    def planned_steps(self) -> int | None:
        """config.yaml's `steps`: the env steps the run was asked for."""
        planned = self.config.get("steps")
        if isinstance(planned, (int, float)) and not isinstance(planned, bool):
            return int(planned)
        return None

    @property
    def state(self) -> str:
        """status.json's state; without the file: 'not-started' (no episodes) or 'unknown'."""
        if self.status and isinstance(self.status.get("state"), str):
            return self.status["state"]
        return "not-started" if self.episodes == 0 else "unknown"

    @property
    def reason(self) -> str | None:
        reason = (self.status or {}).get("reason")
        return None if reason in (None, "") else str(reason)

    @property
    def budget(self) -> tuple[float | None, str | None]:
        """(threshold, kind) from config.yaml's `budget` (else the `spec` entry's `budget`), or
        (None, None) for an unconstrained run."""
        b = self.config.get("budget")
        spec = self.config.get("spec")
        if not isinstance(b, dict) and isinstance(spec, dict):
            b = spec.get("budget")
        if not isinstance(b, dict):
            return None, None
        threshold = _as_float(b.get("threshold"))
        kind = b.get("kind")
        return threshold, (str(kind) if kind is not None else None)

    @property
    def steps(self) -> int | None:
        """Env steps covered by the finished episodes (last progress step), else status steps_done."""
        if self.episodes:
            last = self.progress["step"][-1]
            if not math.isnan(last):
                return int(last)
        done = (self.status or {}).get("steps_done")
        return int(done) if isinstance(done, (int, float)) and not isinstance(done, bool) else None

    @property
    def usable(self) -> bool:
        """True if the run has data for the curves: not failed and at least one episode."""
        return self.state != "failed" and self.episodes > 0

    @property
    def finished(self) -> bool:
        """True if status.json says the run is done and it has at least one episode: only such
        runs enter the per-algorithm means (see `mean_selection`)."""
        return self.state == FINISHED and self.episodes > 0


def _as_float(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def read_csv_columns(path: Path) -> dict[str, np.ndarray]:
    """A CSV with a header as {column: float array}. Missing or empty file -> {}.

    A row with the wrong number of fields (e.g. a line cut short by a kill) is skipped; a field
    that is not a number becomes NaN. A header without rows gives empty arrays.
    """
    try:
        text = Path(path).read_text()
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
        return {}
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return {}
    header = [h.strip() for h in rows[0]]
    values: list[list[float]] = []
    for row in rows[1:]:
        if len(row) != len(header):
            continue
        parsed = []
        for x in row:
            try:
                parsed.append(float(x))
            except ValueError:
                parsed.append(math.nan)
        values.append(parsed)
    table = np.array(values, dtype=float).reshape(len(values), len(header))
    return {name: table[:, i].copy() for i, name in enumerate(header)}


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _seed_dirs(algo_dir: Path) -> list[tuple[int, Path]]:
    out = []
    for child in algo_dir.iterdir():
        m = _SEED_DIR.match(child.name)
        if m and child.is_dir():
            out.append((int(m.group(1)), child))
    return sorted(out)


def is_env_dir(path: Path | str) -> bool:
    """True if `path` has `<algo>/seed-<n>/` children (the output folder of one environment)."""
    p = Path(path)
    if not p.is_dir():
        return False
    return any(child.is_dir() and _seed_dirs(child) for child in p.iterdir())


def find_env_dirs(path: Path | str) -> list[Path]:
    """`path` itself if it is an environment folder, else its children that are (sorted)."""
    p = Path(path)
    if is_env_dir(p):
        return [p]
    if not p.is_dir():
        return []
    return sorted(child for child in p.iterdir() if is_env_dir(child))


def collect_runs(env_dir: Path | str) -> list[RunRecord]:
    """Read every `<algo>/seed-<n>/` folder of an environment folder, sorted by algo then seed.

    Missing or empty files are tolerated: a run with no rows (or no files at all) is still listed.
    """
    env_dir = Path(env_dir)
    runs = []
    if not env_dir.is_dir():
        return runs
    for algo_dir in sorted(p for p in env_dir.iterdir() if p.is_dir()):
        for seed, run_dir in _seed_dirs(algo_dir):
            runs.append(RunRecord(
                algo=algo_dir.name, seed=seed, path=run_dir,
                config=_read_yaml(run_dir / "config.yaml"),
                progress=read_csv_columns(run_dir / "progress.csv"),
                evaluation=read_csv_columns(run_dir / "eval.csv"),
                status=_read_json(run_dir / "status.json"),
            ))
    return runs


def env_name(env_dir: Path | str, runs: Sequence[RunRecord] | None = None) -> str:
    """The environment's name for titles: the spec's id from the runs' config.yaml
    (`spec: {id: ...}`), else their `env` (for a spec given as a YAML path, the file's name
    without .yaml), else the folder's name."""
    runs = list(runs) if runs is not None else collect_runs(env_dir)
    for run in runs:
        if run.spec_id:
            return run.spec_id
    for run in runs:
        env = run.config.get("env")
        if isinstance(env, str) and env:
            if env.endswith((".yaml", ".yml")) or "/" in env or "\\" in env:
                return Path(env).stem
            return env
    return Path(env_dir).resolve().name


def env_budget(runs: Sequence[RunRecord]) -> tuple[float | None, str | None]:
    """The budget (threshold, kind) of the first run that has one; (None, None) if none has."""
    for run in runs:
        threshold, kind = run.budget
        if threshold is not None:
            return threshold, kind
    return None, None


def budget_label(threshold: float | None, kind: str | None) -> str:
    """'budget 25 (average per step)', or 'no budget'."""
    if threshold is None:
        return "no budget"
    kind_text = BUDGET_KIND_LABELS.get(kind or "", kind or "unknown kind")
    return f"budget {threshold:g} ({kind_text})"


# ----------------------------------------------------------------------------------------------
# summary.csv
# ----------------------------------------------------------------------------------------------

def final_mean(values: np.ndarray, fraction: float = FINAL_FRACTION) -> float | None:
    """Mean of the last `fraction` of the values (at least the last one), NaNs ignored."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return None
    k = max(1, int(math.ceil(fraction * v.size - 1e-9)))
    tail = v[-k:]
    tail = tail[~np.isnan(tail)]
    return float(tail.mean()) if tail.size else None


def _nansum(values: np.ndarray) -> float | None:
    v = values[~np.isnan(values)]
    return float(v.sum()) if v.size else None


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
    episodes (at least the last one); train_cost_mean: mean over all of them; violation_rate:
    violated episodes / episodes; cumulative_violations: violated episodes; rejected: rejected
    actions over all episodes; rejected_per_1k_steps: 1000 * rejected / steps, steps = env steps
    at the end of the last finished episode; final_lambda / final_alpha: after the last episode;
    sps: median of the episodes' env steps per second.

    Learned policy (the last eval.csv row): eval_return / eval_cost: the deterministic policy
    without the filter; eval_filtered_*: with the filter (empty for unfiltered algorithms and for
    eval.csv files from before the filtered columns); eval_step: that row's step; eval_episodes:
    config.yaml's eval_episodes.

    The key eval_has_filtered (not a CSV column) says whether eval.csv has the filtered columns.
    """
    threshold, kind = run.budget
    eval_episodes = run.config.get("eval_episodes")
    row: dict[str, Any] = {c: None for c in SUMMARY_COLUMNS}
    row.update(algo=run.algo, seed=run.seed, status=run.state, reason=run.reason, budget=threshold,
               budget_kind=kind, steps=run.steps, planned_steps=run.planned_steps,
               episodes=run.episodes,
               wall_seconds=_as_float((run.status or {}).get("wall_seconds")),
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
    if run.episodes == 0:
        return row
    row["final_return"] = final_mean(run.column("return"))
    row["final_cost"] = final_mean(run.column("cost"))
    row["train_cost_mean"] = _nanmean(run.column("cost"))
    row["final_lambda"] = _last(run.column("lambda"))
    row["final_alpha"] = _last(run.column("alpha"))
    violated = run.column("violated")
    v = violated[~np.isnan(violated)]
    if v.size:
        row["cumulative_violations"] = int(round(v.sum()))
        row["violation_rate"] = float(v.sum() / v.size)
    rejected = _nansum(run.column("rejected"))
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


def _fmt(value: Any) -> str:
    """A CSV field: '' for missing, integers as integers, floats with 6 significant digits."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{float(value):.6g}"
    return str(value)


def _fmt_decimals(value: Any, decimals: int = AUDIT_DECIMALS) -> str:
    """A CSV field with at most `decimals` decimals and no exponent: 133.333, 200, 0.5."""
    if isinstance(value, (float, np.floating)) and not math.isnan(value):
        text = f"{float(value):.{decimals}f}"
        text = text.rstrip("0").rstrip(".") if "." in text else text
        return "0" if text in ("-0", "") else text
    return _fmt(value)


def _csv_text(columns: Sequence[str], rows: Iterable[dict], fmt=_fmt) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([fmt(row.get(c)) for c in columns])
    return buf.getvalue()


def write_summary(env_dir: Path | str, runs: Sequence[RunRecord] | None = None) -> Path:
    """Write `summary.csv` (columns SUMMARY_COLUMNS, empty fields for missing values)."""
    env_dir = Path(env_dir)
    return write_atomic(env_dir / SUMMARY_FILE, _csv_text(SUMMARY_COLUMNS, summarise(env_dir, runs)))


# ----------------------------------------------------------------------------------------------
# audit.csv
# ----------------------------------------------------------------------------------------------

def audit_bucket_width(runs: Sequence[RunRecord], buckets: int = AUDIT_BUCKETS) -> int:
    """Width in env steps of the audit's buckets: the longest run (planned or done) / buckets."""
    total = 0
    for run in runs:
        total = max(total, run.planned_steps or 0, run.steps or 0)
    return max(1, int(math.ceil(total / buckets))) if total else 1


def episode_spans(run: RunRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, start, end) of a run's episodes, sorted by end: episode `rows[i]` of progress.csv
    covers the env steps (start[i], end[i]]. end is the `step` column, start = end - length,
    clipped so that episodes do not overlap; without a usable length the episode starts where
    the previous one ended (0 for the first). Rows without a step are left out."""
    ends = run.column("step")
    rows = np.flatnonzero(~np.isnan(ends))
    rows = rows[np.argsort(ends[rows], kind="stable")]
    end = ends[rows]
    length = run.column("length")[rows]
    previous = np.concatenate([[0.0], end[:-1]])
    start = np.where(np.isnan(length) | (length <= 0), previous, end - np.nan_to_num(length))
    start = np.minimum(np.maximum(start, previous), end)
    return rows, start, end


def spread_over_buckets(start: np.ndarray, end: np.ndarray, values: np.ndarray,
                        edges: np.ndarray) -> np.ndarray:
    """Sum over episodes of value * |(start, end] & bucket| / (end - start), per bucket
    (edges[b], edges[b + 1]]: each episode's value spread uniformly over the steps it covered.

    Episodes must be sorted and not overlap (see `episode_spans`). A zero-length episode puts its
    whole value in the bucket holding its end. NaN values count as 0. The buckets sum to the total
    of the values that lie inside (edges[0], edges[-1]].
    """
    buckets = len(edges) - 1
    out = np.zeros(max(buckets, 0))
    if buckets <= 0 or start.size == 0:
        return out
    v = np.nan_to_num(np.asarray(values, dtype=float))
    span = end > start
    if span.any():
        # the cumulative count is piecewise linear in the step: rises by v over each episode
        s, e, vv = start[span], end[span], v[span]
        cum = np.concatenate([[0.0], np.cumsum(vv)])
        xp = np.empty(2 * s.size)
        fp = np.empty(2 * s.size)
        xp[0::2], xp[1::2] = s, e
        fp[0::2], fp[1::2] = cum[:-1], cum[1:]
        out += np.diff(np.interp(edges, xp, fp))
    if (~span).any():
        b = np.clip(np.searchsorted(edges, end[~span], side="left") - 1, 0, buckets - 1)
        out += np.bincount(b, weights=v[~span], minlength=buckets)
    return out


def bucket_run(run: RunRecord, width: int) -> dict[str, np.ndarray]:
    """A run's audit counters over step buckets of `width` env steps.

    Bucket b covers steps (b*width, (b+1)*width]. Each episode's rejected actions, leapfrog
    steps and unsafe fallbacks are spread uniformly over the steps (end - length, end] it
    covered (see `spread_over_buckets`), so a bucket holds the share of its overlap; counts are
    fractional, and sum to the run's totals. Returns arrays over the buckets up to the one holding
    the run's last step: `step` (the bucket's upper edge), `rejected`, `leapfrog_steps`,
    `unsafe_fallbacks`, `env_steps` (steps of finished episodes inside the bucket, for rates per
    env step) and `episodes` (episodes that ended in the bucket).
    """
    keys = ("rejected", "leapfrog_steps", "unsafe_fallbacks", "episodes", "env_steps")
    rows, start, end = episode_spans(run)
    if rows.size == 0:
        return {"step": np.zeros(0, dtype=int), **{k: np.zeros(0) for k in keys}}
    n = max(1, int(math.ceil(end.max() / width)))
    edges = np.arange(n + 1, dtype=float) * width
    out: dict[str, np.ndarray] = {"step": (np.arange(n) + 1) * width}
    for key in ("rejected", "leapfrog_steps", "unsafe_fallbacks"):
        out[key] = spread_over_buckets(start, end, run.column(key)[rows], edges)
    out["env_steps"] = spread_over_buckets(start, end, end - start, edges)
    ending = np.clip(np.searchsorted(edges, end, side="left") - 1, 0, n - 1)
    out["episodes"] = np.bincount(ending, minlength=n).astype(float)
    return out


def audit_table(env_dir: Path | str, runs: Sequence[RunRecord] | None = None,
                buckets: int = AUDIT_BUCKETS) -> list[dict]:
    """audit.csv rows: per (algo, seed, step bucket) the rejected actions, leapfrog steps and
    unsafe fallbacks spread over the steps their episodes covered (floats), the episodes that
    ended in the bucket, the env steps covered and rejected actions per 1k of them. Buckets are
    `buckets` equal slices of the longest run; `step` is a bucket's upper edge; a run's buckets
    stop at its last finished episode.
    """
    runs = list(runs) if runs is not None else collect_runs(env_dir)
    width = audit_bucket_width(runs, buckets)
    rows = []
    for run in runs:
        b = bucket_run(run, width)
        for i in range(len(b["step"])):
            env_steps = float(b["env_steps"][i])
            rows.append(dict(algo=run.algo, seed=run.seed, step=int(b["step"][i]),
                             rejected=float(b["rejected"][i]),
                             leapfrog_steps=float(b["leapfrog_steps"][i]),
                             unsafe_fallbacks=float(b["unsafe_fallbacks"][i]),
                             episodes=int(b["episodes"][i]), env_steps=int(round(env_steps)),
                             rejected_per_1k_steps=(1000.0 * float(b["rejected"][i]) / env_steps
                                                    if env_steps > 0 else None)))
    return rows


def write_audit(env_dir: Path | str, runs: Sequence[RunRecord] | None = None) -> Path:
    """Write `audit.csv` (columns AUDIT_COLUMNS; spread counters with 3 decimals)."""
    env_dir = Path(env_dir)
    return write_atomic(env_dir / AUDIT_FILE,
                        _csv_text(AUDIT_COLUMNS, audit_table(env_dir, runs), fmt=_fmt_decimals))


def audit_totals(runs: Sequence[RunRecord]) -> list[dict]:
    """Per algorithm: seeds, env steps, rejected actions (total and per 1k env steps), unsafe
    fallbacks (total and per 1k steps), leapfrog steps and leapfrog steps per rejection.
    """
    out = []
    for algo in sorted({r.algo for r in runs}):
        mine = [r for r in runs if r.algo == algo]
        steps = sum(r.steps or 0 for r in mine if r.episodes)
        rejected = sum(_nansum(r.column("rejected")) or 0.0 for r in mine)
        fallbacks = sum(_nansum(r.column("unsafe_fallbacks")) or 0.0 for r in mine)
        leapfrog = sum(_nansum(r.column("leapfrog_steps")) or 0.0 for r in mine)
        out.append(dict(
            algo=algo, seeds=len(mine), steps=steps, rejected=int(round(rejected)),
            rejected_per_1k_steps=(1000.0 * rejected / steps) if steps else None,
            unsafe_fallbacks=int(round(fallbacks)),
            unsafe_fallbacks_per_1k_steps=(1000.0 * fallbacks / steps) if steps else None,
            leapfrog_steps=int(round(leapfrog)),
            leapfrog_per_rejection=(leapfrog / rejected) if rejected else None,
        ))
    return out


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def format_audit(path: Path | str) -> str:
    """The terminal table of `safehpo audit DIR`: per algorithm, total rejected actions, rejected
    per 1k env steps, unsafe fallbacks and mean leapfrog steps per rejection. DIR may be one
    environment folder or a folder of them (one table each).
    """
    blocks = []
    for env_dir in find_env_dirs(path):
        runs = collect_runs(env_dir)
        rows = [[t["algo"], str(t["seeds"]), str(t["steps"]), str(t["rejected"]),
                 _num(t["rejected_per_1k_steps"], 2), str(t["unsafe_fallbacks"]),
                 _num(t["leapfrog_per_rejection"], 2)] for t in audit_totals(runs)]
        threshold, kind = env_budget(runs)
        title = f"{env_name(env_dir, runs)} ({budget_label(threshold, kind)})  {env_dir}"
        blocks.append(title + "\n" + _text_table(
            ["algo", "seeds", "env steps", "rejected", "per 1k steps", "unsafe fallbacks",
             "leapfrog/rejection"], rows))
    if not blocks:
        return f"no runs found under {path} (expected <env>/<algo>/seed-<n>/ folders)"
    return "\n\n".join(blocks)


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


# ----------------------------------------------------------------------------------------------
# Per-algorithm statistics
# ----------------------------------------------------------------------------------------------

TRAIN_METRICS = ("cumulative_violations", "violation_rate", "train_cost_mean", "final_cost",
                 "final_return", "rejected_per_1k_steps", "final_lambda", "final_alpha")
POLICY_METRICS = ("eval_return", "eval_cost", "eval_filtered_return", "eval_filtered_cost",
                  "eval_filtered_rejected")
AGGREGATED = TRAIN_METRICS + POLICY_METRICS


@dataclass(frozen=True)
class SeedStat:
    """A metric over an algorithm's seeds: the mean, a bootstrap CI (low, high) when there are
    at least MIN_SEEDS_FOR_CI values, else low = high = None, and the per-seed values."""

    mean: float
    low: float | None
    high: float | None
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def has_ci(self) -> bool:
        return self.low is not None


def seed_stat(values: Iterable[Any], min_seeds: int = MIN_SEEDS_FOR_CI) -> SeedStat | None:
    """SeedStat of the values (None and NaN dropped); None if no value is left."""
    v = [float(x) for x in values if x is not None and not math.isnan(float(x))]
    if not v:
        return None
    if len(v) >= min_seeds:
        mean, low, high = bootstrap_ci(v)
        return SeedStat(mean, low, high, tuple(v))
    return SeedStat(float(np.mean(v)), None, None, tuple(v))


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


# ----------------------------------------------------------------------------------------------
# report.md
# ----------------------------------------------------------------------------------------------

def _stat_text(stat: SeedStat | None, digits: int, seed_digits: int | None = None) -> str:
    """'812.0 [790.0, 834.0]' (a CI), '812.0 (seeds: 790.0, 834.0)' or '790.0 (1 seed)'."""
    if stat is None:
        return "-"
    d = digits
    sd = digits if seed_digits is None else seed_digits
    if stat.has_ci:
        return f"{stat.mean:.{d}f} [{stat.low:.{d}f}, {stat.high:.{d}f}]"
    if stat.n == 1:
        return f"{stat.mean:.{d}f} (1 seed)"
    return f"{stat.mean:.{d}f} (seeds: " + ", ".join(f"{v:.{sd}f}" for v in stat.values) + ")"



def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], right_from: int = 1) -> str:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(" ".join(c.split()).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


DAGGER = "†"


def _seeds_cell(a: dict) -> str:
    """'3/3 done', '2/3 done (1 running)', '0/2 done (2 interrupted) †'."""
    text = f"{a['done']}/{a['seeds']} done"
    if a["states"]:
        text += " (" + ", ".join(f"{n} {state}" for state, n in a["states"].items()) + ")"
    return text + (f" {DAGGER}" if a["partial"] else "")


def _steps_cell(r: dict) -> str:
    """A run's steps; 'done of planned' for an unfinished run."""
    steps = _fmt(r["steps"]) or "0"
    if r["status"] != FINISHED and r.get("planned_steps"):
        return f"{steps} of {r['planned_steps']}"
    return steps if r["steps"] is not None else "-"


def _status_cell(r: dict) -> str:
    if r["status"] == FINISHED:
        return FINISHED
    return f"**{r['status']}** (unfinished)" + (f": {r['reason']}" if r["reason"] else "")


def _filtered_cell(a: dict, metric: str, digits: int, seed_digits: int | None = None) -> str:
    """A filter-on cell: the statistic; 'n/r' when no eval.csv of the algorithm has the filtered
    columns (written before they existed) and it has evaluations; '-' otherwise."""
    if a[metric] is not None:
        return _stat_text(a[metric], digits, seed_digits)
    if not a["filtered_recorded"] and a["eval_return"] is not None:
        return "n/r"
    return "-"


def _ci_sentence(table: Sequence[dict]) -> str:
    counts = {a["usable"] for a in table if a["usable"]}
    with_ci = any(n >= MIN_SEEDS_FOR_CI for n in counts)
    few = any(n < MIN_SEEDS_FOR_CI for n in counts)
    if with_ci and not few:
        return ("Each cell: the mean over the algorithm's finished seeds with a 95% bootstrap "
                "confidence interval in brackets.")
    if few and not with_ci:
        return ("Each cell: the mean over the algorithm's finished seeds, followed by each seed's "
                f"value; with fewer than {MIN_SEEDS_FOR_CI} seeds no confidence interval is computed.")
    return ("Each cell: the mean over the algorithm's finished seeds, with a 95% bootstrap "
            f"confidence interval in brackets where there are {MIN_SEEDS_FOR_CI} or more seeds, "
            "else followed by each seed's value (no interval).")


def _range_text(values: Iterable[Any], unit: str = "") -> str | None:
    v = sorted({int(x) for x in values if x is not None})
    if not v:
        return None
    return f"{v[0]:,}{unit}" if len(v) == 1 else f"{v[0]:,}-{v[-1]:,}{unit}"


def method_text(table: Sequence[dict]) -> str:
    """METHOD, its confidence-interval paragraph worded for this report's seed counts."""
    counts = {a["usable"] for a in table if a["usable"]}
    paragraphs = list(METHOD_PARAGRAPHS)
    if counts and max(counts) < MIN_SEEDS_FOR_CI:
        paragraphs[2] = (
            "Per algorithm, only finished runs (status.json state \"done\") enter the means; "
            "unfinished ones (running, interrupted, failed, not started) are listed in the "
            "per-seed tables with the steps they reached. If an algorithm has no finished run, "
            "its row averages its unfinished runs and is marked with a dagger. Every algorithm "
            f"here has fewer than {MIN_SEEDS_FOR_CI} seeds in its mean, so no confidence interval "
            "is computed (a bootstrap over one or two seeds says nothing): each cell shows the "
            "mean followed by each seed's value. With 3 or more seeds the report shows a 95% "
            "percentile-bootstrap interval instead.")
    return "\n\n".join(paragraphs)


def write_report(env_dir: Path | str, runs: Sequence[RunRecord] | None = None) -> Path:
    """Write `report.md`: env (the spec's id), budget, which runs are finished, the two headline
    tables per algorithm (safety during training; the learned policy), the per-seed tables, the
    figures present in the folder, the method and the command (command.txt).
    """
    env_dir = Path(env_dir)
    runs = list(runs) if runs is not None else collect_runs(env_dir)
    summary = summarise(env_dir, runs)
    threshold, kind = env_budget(runs)
    name = env_name(env_dir, runs)
    kind_text = BUDGET_KIND_LABELS.get(kind or "", kind or "")
    table = algo_table(summary)

    parts = [f"# {name}", ""]
    if threshold is None:
        parts.append("Budget: none (unconstrained).")
    else:
        parts.append(f"Budget: episode cost ({kind_text}) <= {threshold:g}.")
    spec_paths = sorted({str(r.config["env"]) for r in runs  # a custom spec given by its path
                         if isinstance(r.config.get("env"), str) and r.spec_id
                         and r.config["env"] != r.spec_id})
    if spec_paths:
        parts.append(f"Spec file: `{'`, `'.join(spec_paths)}`.")
    done = sum(r["status"] == FINISHED for r in summary)
    unfinished = [r for r in summary if r["status"] != FINISHED]
    line = f"Runs: {done} of {len(summary)} finished."
    if unfinished:
        line += " Unfinished, not in the means: " + "; ".join(
            f"{r['algo']} seed {r['seed']} ({r['status']}, {_steps_cell(r)} steps)" for r in unfinished) + "."
    parts += ["", line, ""]
    daggers = any(a["partial"] for a in table)
    dagger_note = (f"{DAGGER} No finished run: the mean is over the unfinished runs (partial "
                   "training, up to their last episode); see the per-seed tables.")

    # (a) safety during training
    parts += ["## Safety during training", "",
              "Training episodes as they were acted (progress.csv, every episode of each run): the "
              "uniform-random warm-up, the stochastic exploration policy and, for filtered "
              "algorithms, the Lyapunov filter. "
              + ("A violation is a training episode whose cost exceeded the budget; costs are "
                 f"measured in the budget's kind ({kind_text or kind}). " if threshold is not None
                 else "The environment has no budget: no episode counts as a violation. ")
              + _ci_sentence(table), ""]
    rows = [[a["algo"], _seeds_cell(a), _stat_text(a["cumulative_violations"], 1, 0),
             _stat_text(a["violation_rate"], 3), _stat_text(a["train_cost_mean"], 3),
             _stat_text(a["final_cost"], 3), _stat_text(a["final_return"], 1),
             _stat_text(a["rejected_per_1k_steps"], 2)] for a in table]
    parts += [_md_table(["algo", "seeds", "cumulative violations", "violation rate",
                         "training cost, all episodes", "training cost, last 10%",
                         "training return, last 10%", "rejected / 1k steps"], rows), ""]
    if daggers:
        parts += [dagger_note, ""]

    # (b) the learned policy
    chosen = [r for a in table for r in a["chosen"]]
    at_steps = _range_text(r["eval_step"] for r in chosen)
    n_eval = _range_text(r["eval_episodes"] for r in chosen)
    parts += ["## The learned policy", ""]
    if at_steps is None:
        parts += ["No evaluation recorded (eval.csv missing or empty).", ""]
    else:
        parts += [f"Deterministic evaluation at each run's last evaluation (step {at_steps}), on "
                  f"{'N = ' + n_eval if n_eval else 'eval_episodes'} episode{'' if n_eval == '1' else 's'} per seed of a "
                  "separate environment with fixed reset seeds (eval.csv). Filter off: the base "
                  "policy's mean action, refined by the Hamiltonian chain with zero momentum where "
                  "the algorithm has one, without the Lyapunov filter; the same protocol for every "
                  "algorithm. Filter on: the deployed policy of a filtered algorithm (Algorithm 3 "
                  "of the Lyapunov filter started from the mean action), with the actions the filter "
                  "rejected during those episodes; '-' for algorithms without the filter. "
                  + _ci_sentence(table), ""]
        rows = [[a["algo"], _seeds_cell(a), _stat_text(a["eval_return"], 1),
                 _stat_text(a["eval_cost"], 3), _filtered_cell(a, "eval_filtered_return", 1),
                 _filtered_cell(a, "eval_filtered_cost", 3),
                 _filtered_cell(a, "eval_filtered_rejected", 1, 0)] for a in table]
        parts += [_md_table(["algo", "seeds", "return, filter off", "cost, filter off",
                             "return, filter on (deployed)", "cost, filter on (deployed)",
                             "rejected in evaluation, filter on"], rows), ""]
        notes = []
        if any(_filtered_cell(a, "eval_filtered_return", 1) == "n/r" for a in table):
            notes.append("n/r: not recorded; these runs' eval.csv predates the filtered "
                         "evaluation (5 columns), so only the unfiltered policy was evaluated.")
        if daggers:
            notes.append(dagger_note)
        for note in notes:
            parts += [note, ""]

    # per seed
    parts += ["## Per seed: training", "",
              "Unfinished runs (in bold) are not in the means above (unless marked "
              f"{DAGGER}); their steps read 'reached of planned'. Final lambda and alpha: after "
              "the last training episode.", ""]
    seed_rows = [[r["algo"], str(r["seed"]), _status_cell(r), _steps_cell(r),
                  _fmt(r["episodes"]) or "-", _fmt(r["cumulative_violations"]) or "-",
                  _num(r["violation_rate"], 3), _num(r["train_cost_mean"], 3),
                  _num(r["final_cost"], 3), _num(r["final_return"], 1), _fmt(r["rejected"]) or "-",
                  _num(r["rejected_per_1k_steps"], 2), _sig(r["final_lambda"]),
                  _sig(r["final_alpha"]), _num(r["wall_seconds"], 0), _num(r["sps"], 1)]
                 for r in summary]
    parts += [_md_table(["algo", "seed", "status", "steps", "episodes", "violations",
                         "violation rate", "cost, all", "cost, last 10%", "return, last 10%",
                         "rejected", "rejected / 1k steps", "final lambda", "final alpha",
                         "wall s", "sps"], seed_rows, right_from=3), ""]
    parts += ["## Per seed: learned policy", ""]
    def filtered(r: dict, text: str) -> str:  # n/r: an eval.csv from before the filtered columns
        return text if r.get("eval_has_filtered") or r["eval_step"] is None else "n/r"
    seed_rows = [[r["algo"], str(r["seed"]), _status_cell(r), _fmt(r["eval_step"]) or "-",
                  _fmt(r["eval_episodes"]) or "-", _num(r["eval_return"], 1),
                  _num(r["eval_cost"], 3), filtered(r, _num(r["eval_filtered_return"], 1)),
                  filtered(r, _num(r["eval_filtered_cost"], 3)),
                  filtered(r, _fmt(r["eval_filtered_rejected"]) or "-")] for r in summary]
    parts += [_md_table(["algo", "seed", "status", "eval step", "episodes", "return, filter off",
                         "cost, filter off", "return, filter on", "cost, filter on",
                         "rejected, filter on"], seed_rows, right_from=3), ""]

    captions = {
        "return_vs_violation.png": "Final training return vs training cost and vs cumulative violations",
        "curves.png": "Training and evaluation return and cost, lambda and alpha over training",
        "audit.png": "Rejected actions and unsafe fallbacks over training",
    }
    present = [f for f in FIGURE_FILES if (env_dir / f).exists()]
    if present:
        parts += ["## Figures", ""]
        for f in present:
            parts += [f"![{captions[f]}]({f})", ""]

    parts += ["## How the numbers were computed", "", method_text(table), "",
              f"Per-seed numbers are in `{SUMMARY_FILE}`; the audit per step bucket in `{AUDIT_FILE}`.", ""]
    command = env_dir / "command.txt"
    if command.is_file():
        text = command.read_text(errors="replace").strip()
        if text:
            parts += ["## Command", "", "```", text, "```", ""]
    return write_atomic(env_dir / REPORT_FILE, "\n".join(parts))


def _sig(value: float | None, digits: int = 4) -> str:
    """A number with `digits` significant digits ('-' if missing): lambda and alpha span decades."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}g}"


# ----------------------------------------------------------------------------------------------
# Everything at once (`safehpo plot DIR`)
# ----------------------------------------------------------------------------------------------

def aggregate_all(path: Path | str) -> list[Path]:
    """Write summary.csv, audit.csv, the three figures and report.md for each environment folder.

    `path` is one environment folder (it has `<algo>/seed-<n>/` children) or a folder holding
    several. Returns the written paths. Raises FileNotFoundError if no run is found.
    """
    env_dirs = find_env_dirs(path)
    if not env_dirs:
        raise FileNotFoundError(f"no runs found under {path} (expected <env>/<algo>/seed-<n>/ folders)")
    from safehpo import plots  # matplotlib only when drawing

    written: list[Path] = []
    for env_dir in env_dirs:
        runs = collect_runs(env_dir)
        written.append(write_summary(env_dir, runs))
        written.append(write_audit(env_dir, runs))
        written += plots.plot_env(env_dir, runs)
        written.append(write_report(env_dir, runs))
    return written
