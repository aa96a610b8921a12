"""Aggregation of a bench's runs: bootstrap confidence intervals, summary.csv, audit.csv, report.md.

A bench writes, per environment, `OUT/<env>/<algo>/seed-<n>/` with config.yaml, progress.csv
(a row per finished episode), eval.csv and status.json (DESIGN.md section 4). This module reads
those folders and writes, next to them:

- summary.csv   a row per (algo, seed): final return and cost, violations, rejected actions, speed
- audit.csv     rejected actions, leapfrog steps and unsafe fallbacks per (algo, seed, step bucket)
- report.md     the per-algorithm table with 95% bootstrap CIs, the per-seed table, the figures

How the numbers are computed (the same text goes into report.md, see `METHOD`):
final return / final cost are the mean of the last 10% of a run's training episodes (at least the
last one) from progress.csv; both come from training episodes, so the cost is the one the
constraint was actually held to (with the Lyapunov filter acting) and return and cost describe
the same episodes. Confidence intervals over seeds are percentile bootstraps of the mean.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import yaml

from .atomic import write_atomic

PROGRESS_COLUMNS = ("step", "episode", "return", "cost", "length", "violated", "lambda", "alpha",
                    "rejected", "leapfrog_steps", "unsafe_fallbacks", "sps")
EVAL_COLUMNS = ("step", "return_mean", "return_std", "cost_mean", "cost_std")
SUMMARY_COLUMNS = ("algo", "seed", "status", "reason", "final_return", "final_cost", "budget",
                   "budget_kind", "violation_rate", "cumulative_violations", "rejected",
                   "rejected_per_1k_steps", "steps", "wall_seconds", "sps")
AUDIT_COLUMNS = ("algo", "seed", "step", "rejected", "leapfrog_steps", "unsafe_fallbacks",
                 "episodes")

FINAL_FRACTION = 0.1   # final return/cost: mean over the last 10% of training episodes
AUDIT_BUCKETS = 20     # training is cut into this many equal step buckets for the audit
CONFIDENCE = 0.95

# How each budget kind reads in a label: "budget 25 (average per step)".
BUDGET_KIND_LABELS = {
    "average": "average per step",
    "sum": "sum per episode",
    "discounted": "discounted sum per episode",
}

SUMMARY_FILE, AUDIT_FILE, REPORT_FILE = "summary.csv", "audit.csv", "report.md"
FIGURE_FILES = ("return_vs_violation.png", "curves.png", "audit.png")

METHOD = (
    "Final return and final cost of a run are the means over its last 10% of training episodes "
    "(at least the last one) from progress.csv, so both describe the same episodes, acted with the "
    "run's exploration policy and, where present, the Lyapunov filter; the cost is measured in the "
    "budget's kind. Violation rate is the fraction of training episodes whose cost exceeded the "
    "budget, cumulative violations their number. Rejected actions are the failed tests of the "
    "Lyapunov filter summed over all training episodes; per 1k steps divides by the env steps of "
    "those episodes. Speed (sps) is the median of the per-episode env steps per second. Per "
    "algorithm, the mean over seeds is shown with a 95% percentile-bootstrap confidence interval "
    "(10,000 resamples of the seeds, fixed random seed); runs that failed, or have no finished "
    "episode, are listed per seed but left out of the means and the figures. Learning curves "
    "smooth each seed's episodes with a 5-episode moving average (fewer for runs of under 20 "
    "episodes) and interpolate them onto a "
    "common step grid before the bootstrap; a point is drawn where at least one seed has data."
)


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
        """True if the run enters means and figures: not failed and at least one episode."""
        return self.state != "failed" and self.episodes > 0


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
    """The environment's name from the runs' config.yaml (`env`), else the folder's name."""
    for run in runs if runs is not None else collect_runs(env_dir):
        if isinstance(run.config.get("env"), str):
            return run.config["env"]
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


def run_summary(run: RunRecord) -> dict:
    """One summary.csv row as a dict of numbers (None where a value is missing).

    final_return / final_cost: mean of the last 10% of training episodes (at least the last
    one) of progress.csv. violation_rate: violated episodes / episodes; cumulative_violations:
    violated episodes; rejected: rejected actions over all episodes; rejected_per_1k_steps:
    1000 * rejected / steps, steps = env steps at the end of the last finished episode;
    sps: median of the episodes' env steps per second.
    """
    threshold, kind = run.budget
    row: dict[str, Any] = dict(algo=run.algo, seed=run.seed, status=run.state, reason=run.reason,
                               final_return=None, final_cost=None, budget=threshold,
                               budget_kind=kind, violation_rate=None, cumulative_violations=None,
                               rejected=None, rejected_per_1k_steps=None, steps=run.steps,
                               wall_seconds=_as_float((run.status or {}).get("wall_seconds")),
                               sps=None)
    if run.episodes == 0:
        return row
    row["final_return"] = final_mean(run.column("return"))
    row["final_cost"] = final_mean(run.column("cost"))
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


def _csv_text(columns: Sequence[str], rows: Iterable[dict]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_fmt(row.get(c)) for c in columns])
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
        planned = run.config.get("steps")
        if isinstance(planned, (int, float)) and not isinstance(planned, bool):
            total = max(total, int(planned))
        total = max(total, run.steps or 0)
    return max(1, int(math.ceil(total / buckets))) if total else 1


def bucket_run(run: RunRecord, width: int) -> dict[str, np.ndarray]:
    """Sum a run's audit counters over step buckets of `width` env steps.

    An episode counts in the bucket that holds its last step: bucket b covers steps
    (b*width, (b+1)*width]. Returns arrays over the buckets up to the run's last one: `step`
    (the bucket's upper edge), `rejected`, `leapfrog_steps`, `unsafe_fallbacks`, `episodes` and
    `env_steps` (the summed lengths of those episodes, for rates per env step).
    """
    keys = ("rejected", "leapfrog_steps", "unsafe_fallbacks", "episodes", "env_steps")
    steps = run.column("step")
    ok = ~np.isnan(steps)
    if not ok.any():
        return {"step": np.zeros(0, dtype=int), **{k: np.zeros(0) for k in keys}}
    index = np.maximum(np.ceil(steps[ok] / width).astype(int) - 1, 0)
    n = int(index.max()) + 1
    out = {"step": (np.arange(n) + 1) * width}

    def summed(values: np.ndarray) -> np.ndarray:
        return np.bincount(index, weights=np.nan_to_num(values[ok]), minlength=n)

    out["rejected"] = summed(run.column("rejected"))
    out["leapfrog_steps"] = summed(run.column("leapfrog_steps"))
    out["unsafe_fallbacks"] = summed(run.column("unsafe_fallbacks"))
    out["episodes"] = np.bincount(index, minlength=n).astype(float)
    out["env_steps"] = summed(run.column("length"))
    return out


def audit_table(env_dir: Path | str, runs: Sequence[RunRecord] | None = None,
                buckets: int = AUDIT_BUCKETS) -> list[dict]:
    """audit.csv rows: per (algo, seed, step bucket) the summed rejected actions, leapfrog steps,
    unsafe fallbacks and number of episodes. Buckets are `buckets` equal slices of the longest
    run; `step` is a bucket's upper edge; a run's buckets stop at its last finished episode.
    """
    runs = list(runs) if runs is not None else collect_runs(env_dir)
    width = audit_bucket_width(runs, buckets)
    rows = []
    for run in runs:
        b = bucket_run(run, width)
        for i in range(len(b["step"])):
            rows.append(dict(algo=run.algo, seed=run.seed, step=int(b["step"][i]),
                             rejected=int(b["rejected"][i]),
                             leapfrog_steps=int(b["leapfrog_steps"][i]),
                             unsafe_fallbacks=int(b["unsafe_fallbacks"][i]),
                             episodes=int(b["episodes"][i])))
    return rows


def write_audit(env_dir: Path | str, runs: Sequence[RunRecord] | None = None) -> Path:
    """Write `audit.csv` (columns AUDIT_COLUMNS)."""
    env_dir = Path(env_dir)
    return write_atomic(env_dir / AUDIT_FILE, _csv_text(AUDIT_COLUMNS, audit_table(env_dir, runs)))


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
# report.md
# ----------------------------------------------------------------------------------------------

AGGREGATED = ("final_return", "final_cost", "violation_rate", "rejected_per_1k_steps")


def algo_table(summary: Sequence[dict]) -> list[dict]:
    """Per algorithm, over its usable seeds (not failed, at least one episode): for each metric in
    AGGREGATED, (mean, low, high) of a 95% percentile-bootstrap CI; plus seed counts.
    """
    out = []
    for algo in sorted({r["algo"] for r in summary}):
        mine = [r for r in summary if r["algo"] == algo]
        usable = [r for r in mine if r["status"] != "failed" and r["final_return"] is not None]
        row: dict[str, Any] = dict(algo=algo, seeds=len(mine), usable=len(usable),
                                   failed=sum(r["status"] == "failed" for r in mine))
        for metric in AGGREGATED:
            values = [r[metric] for r in usable if r[metric] is not None]
            row[metric] = bootstrap_ci(values) if values else None
        out.append(row)
    return out


def _ci_text(ci: tuple[float, float, float] | None, digits: int) -> str:
    if ci is None:
        return "-"
    mean, low, high = ci
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], right_from: int = 1) -> str:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(" ".join(c.split()).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_report(env_dir: Path | str, runs: Sequence[RunRecord] | None = None) -> Path:
    """Write `report.md`: env, budget, the per-algorithm table (mean and 95% CI over seeds), the
    per-seed table, the figures present in the folder, the method and the command (command.txt).
    """
    env_dir = Path(env_dir)
    runs = list(runs) if runs is not None else collect_runs(env_dir)
    summary = summarise(env_dir, runs)
    threshold, kind = env_budget(runs)
    name = env_name(env_dir, runs)
    kind_text = BUDGET_KIND_LABELS.get(kind or "", kind or "")

    parts = [f"# {name}", ""]
    if threshold is None:
        parts.append("Budget: none (unconstrained).")
    else:
        parts.append(f"Budget: episode cost ({kind_text}) <= {threshold:g}.")
    parts.append("")

    parts += ["## Per algorithm", "",
              "Mean over seeds with a 95% bootstrap confidence interval in brackets.", ""]
    rows = [[a["algo"], f"{a['usable']}/{a['seeds']}" + (f" ({a['failed']} failed)" if a["failed"] else ""),
             _ci_text(a["final_return"], 1), _ci_text(a["final_cost"], 3),
             _ci_text(a["violation_rate"], 3), _ci_text(a["rejected_per_1k_steps"], 2)]
            for a in algo_table(summary)]
    parts += [_md_table(["algo", "seeds", "final return", f"final cost ({kind_text or 'cost'})",
                         "violation rate", "rejected / 1k steps"], rows), ""]

    parts += ["## Per seed", ""]
    seed_rows = [[r["algo"], str(r["seed"]), r["status"] + (f": {r['reason']}" if r["reason"] else ""),
                  _num(r["final_return"], 1), _num(r["final_cost"], 3), _num(r["violation_rate"], 3),
                  _fmt(r["cumulative_violations"]) or "-", _fmt(r["rejected"]) or "-",
                  _num(r["rejected_per_1k_steps"], 2), _fmt(r["steps"]) or "-",
                  _num(r["wall_seconds"], 0), _num(r["sps"], 1)] for r in summary]
    parts += [_md_table(["algo", "seed", "status", "final return", "final cost", "violation rate",
                         "violations", "rejected", "rejected / 1k steps", "steps", "wall s", "sps"],
                        seed_rows, right_from=3), ""]

    captions = {
        "return_vs_violation.png": "Final return vs final cost and vs cumulative violations",
        "curves.png": "Return and cost over training",
        "audit.png": "Rejected actions and unsafe fallbacks over training",
    }
    present = [f for f in FIGURE_FILES if (env_dir / f).exists()]
    if present:
        parts += ["## Figures", ""]
        for f in present:
            parts += [f"![{captions[f]}]({f})", ""]

    parts += ["## How the numbers were computed", "", METHOD, "",
              f"Per-seed numbers are in `{SUMMARY_FILE}`; the audit per step bucket in `{AUDIT_FILE}`.", ""]
    command = env_dir / "command.txt"
    if command.is_file():
        text = command.read_text(errors="replace").strip()
        if text:
            parts += ["## Command", "", "```", text, "```", ""]
    return write_atomic(env_dir / REPORT_FILE, "\n".join(parts))


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
