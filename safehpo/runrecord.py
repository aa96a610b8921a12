"""A bench's runs read back for reporting: one `RunRecord` per `<algo>/seed-<n>/` folder of an
environment folder, with what the tables and figures derive from it (state, budget, steps), and
the environment's name and budget for titles.

Missing or empty files are tolerated: a run that never started, or failed before its first
episode, is still listed with empty columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .runfolder import (EVAL_COLUMNS, EVAL_FILE, FINISHED, PROGRESS_FILE, parse_seed_folder, read_config,
                        read_csv_columns, read_status)

# How each budget kind reads in a label: "budget 25 (average per step)".
BUDGET_KIND_LABELS = {
    "average": "average per step",
    "sum": "sum per episode",
    "discounted": "discounted sum per episode",
}


def _rows(table: dict[str, np.ndarray]) -> int:
    return int(table["step"].size) if "step" in table else 0


def _column(table: dict[str, np.ndarray], name: str) -> np.ndarray:
    """One column of a CSV read by `read_csv_columns`; NaN in every row if the file lacks it."""
    return table[name] if name in table else np.full(_rows(table), np.nan)


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
        return _rows(self.progress)

    def column(self, name: str) -> np.ndarray:
        """A progress.csv column (an array of NaN if the file lacks it)."""
        return _column(self.progress, name)

    def total(self, name: str) -> float | None:
        """The sum of a progress.csv column's numbers; None if it has none."""
        v = self.column(name)
        v = v[~np.isnan(v)]
        return float(v.sum()) if v.size else None

    @property
    def evaluations(self) -> int:
        return _rows(self.evaluation)

    def eval_column(self, name: str) -> np.ndarray:
        """An eval.csv column (an array of NaN if the file lacks it, e.g. an old 5-column file)."""
        return _column(self.evaluation, name)

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
        threshold = as_float(b.get("threshold"))
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


def as_float(x: Any) -> float | None:
    """x as a float; None for None, a bool, NaN or what is not a number."""
    if x is None or isinstance(x, bool):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _seed_dirs(algo_dir: Path) -> list[tuple[int, Path]]:
    out = []
    for child in algo_dir.iterdir():
        seed = parse_seed_folder(child.name)
        if seed is not None and child.is_dir():
            out.append((seed, child))
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
        runs.extend(_read_run(algo_dir.name, seed, run_dir) for seed, run_dir in _seed_dirs(algo_dir))
    return runs


def _read_run(algo: str, seed: int, run_dir: Path) -> RunRecord:
    return RunRecord(algo=algo, seed=seed, path=run_dir, config=read_config(run_dir),
                     progress=read_csv_columns(run_dir / PROGRESS_FILE),
                     evaluation=read_csv_columns(run_dir / EVAL_FILE), status=read_status(run_dir))


def runs_in(folder: Path | str) -> list[RunRecord]:
    """The runs of a run folder (`<algo>/seed-<n>/`), an algorithm folder, an environment folder
    or a folder of environment folders (empty if it is none of these)."""
    folder = Path(folder).resolve()
    seed = parse_seed_folder(folder.name)
    if (folder / PROGRESS_FILE).is_file() and seed is not None:
        return [_read_run(folder.parent.name, seed, folder)]
    if folder.is_dir() and _seed_dirs(folder):
        return [_read_run(folder.name, seed, run_dir) for seed, run_dir in _seed_dirs(folder)]
    return [run for env_dir in find_env_dirs(folder) for run in collect_runs(env_dir)]


def finished_runs_in(folders: Sequence[Path | str]) -> list[RunRecord]:
    """The finished runs under each folder (`runs_in`), each once however often it is named, every
    one with a positive budget; a ValueError with one line ("FOLDER: no such folder", "RUN: the
    run has no positive budget") otherwise. The reading scripts of benchmarks/ start here."""
    runs, seen = [], set()
    for folder in folders:
        if not Path(folder).is_dir():
            raise ValueError(f"{folder}: no such folder")
        for run in runs_in(folder):
            if not run.finished or run.path.resolve() in seen:
                continue
            seen.add(run.path.resolve())
            threshold, _ = run.budget
            if threshold is None or not threshold > 0:
                raise ValueError(f"{run.path}: the run has no positive budget")
            runs.append(run)
    return runs


def finished_runs_by_source(folders: Sequence[Path | str]) -> dict[tuple[str, str, str], list[RunRecord]]:
    """`finished_runs_in(folders)` grouped by (results folder, environment name, algorithm): runs
    of two results folders, which may differ in their settings, never share a group. The results
    folder is named relative to the working directory where it lies under it. A ValueError (one
    line) as `finished_runs_in`'s, or if there is no finished run at all."""
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    cwd = Path.cwd().resolve()
    for run in finished_runs_in(folders):
        env_dir = run.path.parent.parent
        source = env_dir.parent.resolve()
        shown = str(source.relative_to(cwd)) if source.is_relative_to(cwd) else str(source)
        groups.setdefault((shown, env_name(env_dir, [run]), run.algo), []).append(run)
    if not groups:
        raise ValueError("no finished run under " + ", ".join(map(str, folders))
                         + " (expected run, algorithm, environment or results folders of a bench)")
    return groups


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
