"""The runs of a grid: envs x algos x seeds, each with its Config and its folder
`OUT/<env>/<algo>/seed-<n>/`; whether a run is finished, how far it got, and training one run
under an exclusive lock on its folder (in whatever process a backend calls `run_one`).

A run whose status.json says done (with all its steps) is skipped; an unfinished one continues
from its checkpoint (`train(..., resume=True)`), so nothing is lost or duplicated in its CSVs.
A run that fails is recorded as failed in its status.json and never stops the others.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .config import Config, ConfigError
from .runfolder import (config_mismatch, last_progress_step, read_config, read_status, record_failure,
                        run_name, seed_folder, step_reached)
from .suite import Suite, env_id

@dataclass(frozen=True)
class Run:
    """One (env, algo, seed) of a grid, its full Config and its folder OUT/<env>/<algo>/seed-<n>."""

    env: str                 # folder name of the env (its spec id)
    algo: str
    seed: int
    config: Config
    folder: Path

    @property
    def name(self) -> str:
        return run_name(self.env, self.algo, self.seed)


@dataclass
class Outcome:
    state: str               # done | failed | interrupted | queued
    reason: str | None = None
    skipped: bool = False    # already finished before this bench started


def expand(suite: Suite, out: Path | str) -> list[Run]:
    """envs x algos x seeds, each with its Config (threads=1) and folder, in the order they start:
    seed by seed, and within a seed algorithm by algorithm, so a grid stopped part-way holds every
    algorithm's first seeds (a comparison) rather than all seeds of the first algorithm."""
    out = Path(out).resolve()
    base = {(env, algo): suite.base_config(env, algo) for env in suite.envs for algo in suite.algos}
    runs = []
    folders = env_folders(suite)
    for seed in suite.seeds:
        for algo in suite.algos:
            for env, folder in folders.items():
                cfg = base[env, algo].replace(env=portable(env), algo=algo, seed=seed)
                runs.append(Run(folder, algo, seed, cfg, out / folder / algo / seed_folder(seed)))
    return runs


def env_folders(suite: Suite) -> dict[str, str]:
    """Each env of the suite (as written) -> its folder name under OUT (its spec id)."""
    return {env: env_id(env) for env in suite.envs}


def portable(env: str) -> str:
    """A spec path made absolute, so a worker with another working directory finds it."""
    path = Path(env)
    if (path.suffix in (".yaml", ".yml") or len(path.parts) > 1) and not env.startswith("safety:"):
        return str(path.resolve())
    return env


# Config fields a run may change between sessions of a grid: more steps extend it; threads and
# device change speed, not the algorithm. Any other difference would mix two experiments in one run.
_MAY_CHANGE = ("steps", "threads", "device", "env", "algo", "seed")


def check_existing(runs: list[Run]) -> None:
    """Runs already in OUT must have been started with the same hyperparameters as the grid asks."""
    for run in runs:
        old = read_config(run.folder)  # {} when missing, unreadable or not a mapping: nothing to compare
        status = read_status(run.folder) or {}
        if status.get("steps_done", 0) > run.config.steps:
            raise ConfigError(f"--steps {run.config.steps}: '{run.folder}' holds a run of {status['steps_done']} "
                              f"steps already; ask for at least as many, or use another --out")
        if not old:
            continue
        mismatch = config_mismatch(old, run.config.to_dict(), _MAY_CHANGE)
        if mismatch:
            had, asked, sets = mismatch
            raise ConfigError(f"--out: '{run.folder}' holds a run with {had}, this grid asks for {asked}; add "
                              f"'{sets}' to continue it, use another --out, or remove that run to retrain it")


def is_finished(run: Run) -> bool:
    """status.json says done and the run has all the steps the grid asks for."""
    status = read_status(run.folder)
    return bool(status) and status.get("state") == "done" and status.get("steps_done", 0) >= run.config.steps


def steps_done(run: Run) -> int:
    """Env steps the run has finished: all if done, else the step of its last progress.csv row or,
    while it runs, the later step its status.json reports (`runfolder.step_reached`)."""
    if is_finished(run):
        return run.config.steps
    return min(max(last_progress_step(run.folder), step_reached(run.folder)), run.config.steps)


def run_one(config: dict, folder: str, command: str | None = None) -> dict:
    """Train one run of a grid into `folder` (resuming it), in whatever process this is called.

    Returns {"state": "done" | "failed", "reason", "in_use"}. Any exception is recorded as a
    failure in status.json (TrainingDiverged already is, by train) and returned, never raised,
    so one run's failure does not stop the others. KeyboardInterrupt is raised (train has
    then recorded "interrupted").
    """
    from .train import TrainingDiverged, train
    cfg = Config(**config)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out) as locked:
        if not locked:
            return {"state": "failed", "in_use": True,
                    "reason": "its folder is in use by another process (another bench on the same --out?)"}
        try:
            result = train(cfg, out, resume=True, progress=False, command=command)
            return {"state": result.state, "reason": None, "in_use": False}
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - every failure of a run is recorded, none stops the grid
            if isinstance(e, TrainingDiverged):
                reason = f"training diverged: {e}"
            elif isinstance(e, ConfigError):
                reason = str(e)
            else:
                reason = f"{type(e).__name__}: {e}"
            reason = shorten(" ".join(reason.split()))
            record_failure(out, reason)
            return {"state": "failed", "reason": reason, "in_use": False}


def shorten(text: str, limit: int = 400) -> str:
    """A failure's reason cut to `limit` characters, so status.json and the summary stay readable."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[bool]:
    """An exclusive flock on the run folder for as long as a process trains it (released by the OS
    when that process dies, even by SIGKILL). Yields False if another process holds it. Where
    flock is not available (Windows, some network filesystems) it yields True and locks nothing."""
    try:
        import fcntl
        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        except OSError:
            pass  # no flock here: go on unlocked
        yield True
    finally:
        os.close(fd)
