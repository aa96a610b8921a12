"""The audit of the Lyapunov filter: rejected actions, leapfrog steps and unsafe fallbacks over
training, per (algo, seed, step bucket) in audit.csv and per algorithm in `safehpo audit`'s table.

Training is cut into AUDIT_BUCKETS equal step buckets. An episode covers the env steps
(end - length, end]; its counters are spread uniformly over those steps, each bucket receiving
the share of its overlap with the episode, so bucket counts may be fractional and sum to the
run's totals.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import write_atomic
from .runrecord import RunRecord, budget_label, collect_runs, env_budget, env_name, find_env_dirs
from .tables import csv_text, decimals_text, fixed_text, text_table

AUDIT_FILE = "audit.csv"
AUDIT_COLUMNS = ("algo", "seed", "step", "rejected", "leapfrog_steps", "unsafe_fallbacks",
                 "episodes", "env_steps", "rejected_per_1k_steps")
AUDIT_DECIMALS = 3     # spread counters are fractional: audit.csv writes them with 3 decimals


AUDIT_BUCKETS = 20     # training is cut into this many equal step buckets for the audit


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
                        csv_text(AUDIT_COLUMNS, audit_table(env_dir, runs),
                                 fmt=lambda value: decimals_text(value, AUDIT_DECIMALS)))


def audit_totals(runs: Sequence[RunRecord]) -> list[dict]:
    """Per algorithm: seeds, env steps, rejected actions (total and per 1k env steps), unsafe
    fallbacks (total and per 1k steps), leapfrog steps and leapfrog steps per rejection.
    """
    out = []
    for algo in sorted({r.algo for r in runs}):
        mine = [r for r in runs if r.algo == algo]
        steps = sum(r.steps or 0 for r in mine if r.episodes)
        rejected = sum(r.total("rejected") or 0.0 for r in mine)
        fallbacks = sum(r.total("unsafe_fallbacks") or 0.0 for r in mine)
        leapfrog = sum(r.total("leapfrog_steps") or 0.0 for r in mine)
        out.append(dict(
            algo=algo, seeds=len(mine), steps=steps, rejected=int(round(rejected)),
            rejected_per_1k_steps=(1000.0 * rejected / steps) if steps else None,
            unsafe_fallbacks=int(round(fallbacks)),
            unsafe_fallbacks_per_1k_steps=(1000.0 * fallbacks / steps) if steps else None,
            leapfrog_steps=int(round(leapfrog)),
            leapfrog_per_rejection=(leapfrog / rejected) if rejected else None,
        ))
    return out


def format_audit(path: Path | str) -> str:
    """The terminal table of `safehpo audit DIR`: per algorithm, total rejected actions, rejected
    per 1k env steps, unsafe fallbacks and mean leapfrog steps per rejection. DIR may be one
    environment folder or a folder of them (one table each).
    """
    blocks = []
    for env_dir in find_env_dirs(path):
        runs = collect_runs(env_dir)
        rows = [[t["algo"], str(t["seeds"]), str(t["steps"]), str(t["rejected"]),
                 fixed_text(t["rejected_per_1k_steps"], 2), str(t["unsafe_fallbacks"]),
                 fixed_text(t["leapfrog_per_rejection"], 2)] for t in audit_totals(runs)]
        threshold, kind = env_budget(runs)
        title = f"{env_name(env_dir, runs)} ({budget_label(threshold, kind)})  {env_dir}"
        blocks.append(title + "\n" + text_table(
            ["algo", "seeds", "env steps", "rejected", "per 1k steps", "unsafe fallbacks",
             "leapfrog/rejection"], rows))
    if not blocks:
        return f"no runs found under {path} (expected <env>/<algo>/seed-<n>/ folders)"
    return "\n\n".join(blocks)
