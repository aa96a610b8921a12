"""A grid of runs, envs x algorithms x seeds, on local processes or Ray, then aggregation (docs/outputs.md).

A benchmark is data: a suite YAML in `benchmarks/` (or any file) names the envs, algorithms,
seeds, the step budget and hyperparameter overrides. `safehpo bench` resolves it with the
command-line flags, checks everything before the first run starts, and trains each run into
`OUT/<env>/<algo>/seed-<n>/` with `train(..., resume=True)`, so:

- a run whose status.json says done (with all its steps) is skipped,
- an unfinished one continues from its checkpoint (nothing lost or duplicated in its CSVs),
- the same command after a SIGKILL or a Ctrl-C continues where the grid stopped.

Each run trains single-threaded in its own spawned process (torch and fork do not mix well),
at most `workers` at a time, so N workers share N cores. A run that fails (an exception, NaN
losses, a crashed process) is reported in one line and recorded as failed in its status.json;
the other runs go on. A folder lock makes sure no two processes ever train the same folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shlex
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from .config import (Config, ConfigError, apply_overrides, check_keys, data_dir, parse_int, read_yaml,
                     writable_folder)

POLL_SECONDS = 2.0           # how often the progress bar reads the runs' files
STOP_SECONDS = 20.0          # how long a stopped worker may take to record its state before SIGKILL

# Fields of a suite file; those not in _REQUIRED default to Config's values (overrides: none).
SUITE_KEYS = ("name", "description", "envs", "algos", "seeds", "steps", "eval_interval", "eval_episodes",
              "learning_starts", "checkpoint_interval", "overrides")
_REQUIRED = ("name", "envs", "algos", "seeds", "steps")
# Config fields that a suite sets as its own fields (and that `overrides` may therefore not name)
_RUN_FIELDS = ("steps", "eval_interval", "eval_episodes", "learning_starts", "checkpoint_interval")
# Config fields that the grid sets for each run
_GRID_FIELDS = {"env": "envs", "algo": "algos", "seed": "seeds"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

# exit codes of a local worker process
_EXIT_RECORDED = 0           # the run's outcome (done or failed) is in its status.json
_EXIT_IN_USE = 3             # another process holds the run folder
_EXIT_INTERRUPTED = 130


# ---- suites -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Suite:
    """A benchmark: the grid envs x algos x seeds and what every run of it shares."""

    name: str
    envs: tuple[str, ...]                 # spec names, or paths to spec files
    algos: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int
    eval_interval: int = Config.eval_interval
    eval_episodes: int = Config.eval_episodes
    learning_starts: int = Config.learning_starts
    checkpoint_interval: int = Config.checkpoint_interval
    overrides: dict[str, Any] = field(default_factory=dict)   # other Config hyperparameters
    description: str = ""
    where: str = ""                       # the file it came from, as error messages name it

    def to_dict(self) -> dict[str, Any]:
        """The suite as a suite file holds it (what `OUT/<env>/suite.yaml` is written from)."""
        return {"name": self.name, "description": self.description, "envs": list(self.envs),
                "algos": list(self.algos), "seeds": list(self.seeds), "steps": self.steps,
                "eval_interval": self.eval_interval, "eval_episodes": self.eval_episodes,
                "learning_starts": self.learning_starts, "checkpoint_interval": self.checkpoint_interval,
                "overrides": dict(self.overrides)}

    def base_config(self) -> Config:
        """The Config every run of the suite starts from (env, algo and seed set per run)."""
        cfg = Config(steps=self.steps, eval_interval=self.eval_interval, eval_episodes=self.eval_episodes,
                     learning_starts=self.learning_starts, checkpoint_interval=self.checkpoint_interval,
                     threads=1)
        return apply_overrides(cfg, dict(self.overrides), f"{self.where}: field 'overrides'")


def suite_names() -> list[str]:
    """The suites shipped in benchmarks/ (the names `--preset` takes)."""
    return sorted(p.stem for p in data_dir("benchmarks").glob("*.yaml"))


def load_suite(name_or_path: str, flag: str = "--suite") -> Suite:
    """A shipped suite by name ("smoke") or a suite file by path; every field checked."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml") and len(path.parts) == 1:
        shipped = data_dir("benchmarks") / f"{name_or_path}.yaml"
        if not shipped.is_file():
            raise ConfigError(f"{flag}: unknown suite '{name_or_path}' (known: {', '.join(suite_names())})")
        path = shipped
    shipped_dir = data_dir("benchmarks").resolve()
    where = f"benchmarks/{path.name}" if path.resolve().parent == shipped_dir else str(path)
    return parse_suite(read_yaml(path, where), where, base_dir=path.resolve().parent)


def parse_suite(raw: Any, where: str, base_dir: Path | None = None) -> Suite:
    """Validate a suite mapping; each problem is a ConfigError naming `where` and the field.

    Env paths that are relative are looked up next to the suite file first (`base_dir`).
    """
    check_keys(raw, where, SUITE_KEYS, _REQUIRED)
    name = raw["name"]
    if not (isinstance(name, str) and _NAME.fullmatch(name)):
        raise ConfigError(f"{where}: field 'name': expected a name of letters, digits, '.', '_', '-', got {name!r}")
    description = raw.get("description") or ""
    if not isinstance(description, str):
        raise ConfigError(f"{where}: field 'description': expected text, got {description!r}")
    envs = _names(raw["envs"], where, "envs")
    envs = tuple(_near(env, base_dir) for env in envs)
    check_envs(envs, f"{where}: field 'envs'")
    algos = _names(raw["algos"], where, "algos")
    check_algos(algos, f"{where}: field 'algos'")
    seeds = parse_seeds(raw["seeds"], f"{where}: field 'seeds'")
    numbers = {key: parse_int(raw[key], f"{where}: field '{key}'", minimum=0 if key == "learning_starts" else 1)
               for key in _RUN_FIELDS if key in raw}
    overrides = raw.get("overrides") or {}
    if not (isinstance(overrides, dict) and all(isinstance(k, str) for k in overrides)):
        raise ConfigError(f"{where}: field 'overrides': expected a mapping of hyperparameters, got {overrides!r}")
    for key in overrides:
        if key in _GRID_FIELDS:
            raise ConfigError(f"{where}: field 'overrides.{key}': set by the grid; use the field '{_GRID_FIELDS[key]}'")
        if key in _RUN_FIELDS:
            raise ConfigError(f"{where}: field 'overrides.{key}': use the suite field '{key}'")
    suite = Suite(name=name, description=description.strip(), envs=envs, algos=algos, seeds=seeds,
                  overrides=dict(overrides), where=where, **numbers)
    cfg = suite.base_config()  # checks every override's key and value
    return _replace(suite, overrides={key: getattr(cfg, key) for key in suite.overrides})


def resolve(suite: Suite, envs: list[str] | None = None, algos: list[str] | None = None,
            seeds: str | int | list[int] | None = None, steps: int | None = None,
            sets: list[str] | None = None) -> Suite:
    """The suite with the command-line flags applied (flags win); every value checked.

    `sets` are `--set key=value` strings: a run field (steps, eval_interval, ...) replaces the
    suite's, any other hyperparameter joins the overrides.
    """
    changes: dict[str, Any] = {}
    if envs:
        check_envs(envs, "--env")
        changes["envs"] = _unique(envs, "--env")
    if algos:
        check_algos(algos, "--algos")
        changes["algos"] = _unique(algos, "--algos")
    if seeds is not None:
        changes["seeds"] = parse_seeds(seeds, "--seeds")
    if steps is not None:
        changes["steps"] = parse_int(steps, "--steps", minimum=1)
    suite = _replace(suite, **changes)
    if steps is not None and suite.description:  # the suite's own words may name its usual length
        suite = _replace(suite, description=f"{suite.description} [run here with --steps {suite.steps}]")
    if sets:
        for item in sets:
            key = item.split("=", 1)[0].strip()
            if key in _GRID_FIELDS:
                flag = {"env": "--env", "algo": "--algos", "seed": "--seeds"}[key]
                raise ConfigError(f"--set: '{key}' is set by the grid; use {flag}")
        cfg = apply_overrides(suite.base_config(), list(sets), "--set")
        keys = [item.split("=", 1)[0].strip() for item in sets]
        suite = _replace(suite, **{k: getattr(cfg, k) for k in keys if k in _RUN_FIELDS},
                         overrides={**suite.overrides, **{k: getattr(cfg, k) for k in keys if k not in _RUN_FIELDS}})
    suite.base_config()  # the merged result must still be a valid Config
    return suite


def check_envs(envs, where: str) -> None:
    """Every env must load as a spec and build (bad kwargs, missing info keys) before any run starts."""
    from .cmdp import load_spec, make_env
    ids: dict[str, str] = {}
    for env in envs:
        try:
            spec = load_spec(env)
            make_env(spec).close()
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        folder = env_folder_name(spec.id)
        if folder in ids and ids[folder] != env:
            raise ConfigError(f"{where}: '{ids[folder]}' and '{env}' both have the id '{spec.id}'")
        ids[folder] = env


def check_algos(algos, where: str) -> None:
    from .agent import check_algo
    for algo in algos:
        check_algo(algo, where)


def parse_seeds(value: Any, where: str) -> tuple[int, ...]:
    """A count N (seeds 0..N-1) or a list of distinct seeds; on the command line "3" or "0,4,7"."""
    if isinstance(value, str) and "," in value:
        value = [part for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"{where}: expected a count or a non-empty list of seeds, got []")
        seeds = tuple(parse_int(v, where, minimum=0) for v in value)
        return _unique(seeds, where)
    return tuple(range(parse_int(value, where, minimum=1)))


def env_folder_name(spec_id: str) -> str:
    """The folder of an env under OUT: its spec id ("safety:X" becomes "safety-X")."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", spec_id)


def _names(value: Any, where: str, field_name: str) -> tuple[str, ...]:
    if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
        raise ConfigError(f"{where}: field '{field_name}': expected a non-empty list of names, got {value!r}")
    return _unique(value, f"{where}: field '{field_name}'")


def _unique(values, where: str) -> tuple:
    seen = []
    for v in values:
        if v in seen:
            raise ConfigError(f"{where}: '{v}' is listed twice")
        seen.append(v)
    return tuple(seen)


def _near(env: str, base_dir: Path | None) -> str:
    """A relative spec path in a suite file means next to the suite file, if such a file exists."""
    path = Path(env)
    looks_like_path = path.suffix in (".yaml", ".yml") or len(path.parts) > 1
    if looks_like_path and not path.is_absolute() and base_dir is not None and (base_dir / path).is_file():
        return str(base_dir / path)
    return env


def _replace(suite: Suite, **changes: Any) -> Suite:
    return dataclasses.replace(suite, **changes)


# ---- the grid ---------------------------------------------------------------------------------
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
        return f"{self.env}/{self.algo}/seed-{self.seed}"


@dataclass
class Outcome:
    state: str               # done | failed | interrupted | queued
    reason: str | None = None
    skipped: bool = False    # already finished before this bench started


@dataclass
class GridResult:
    out: Path
    runs: list[Run]
    outcomes: dict[str, Outcome]        # by Run.name
    reports: list[Path] = field(default_factory=list)
    interrupted: bool = False
    aggregation_errors: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> list[str]:
        return [name for name, o in self.outcomes.items() if o.skipped]

    @property
    def failed(self) -> dict[str, str]:
        return {name: o.reason or "" for name, o in self.outcomes.items() if o.state == "failed"}

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.failed or self.aggregation_errors else 0


def expand(suite: Suite, out: Path | str) -> list[Run]:
    """envs x algos x seeds, each with its Config (threads=1) and folder, in the order they start:
    seed by seed, and within a seed algorithm by algorithm, so a grid stopped part-way holds every
    algorithm's first seeds (a comparison) rather than all seeds of the first algorithm."""
    out = Path(out).resolve()
    base = suite.base_config()
    runs = []
    folders = env_folders(suite)
    for seed in suite.seeds:
        for algo in suite.algos:
            for env, folder in folders.items():
                cfg = base.replace(env=_portable(env), algo=algo, seed=seed)
                runs.append(Run(folder, algo, seed, cfg, out / folder / algo / f"seed-{seed}"))
    return runs


def env_folders(suite: Suite) -> dict[str, str]:
    """Each env of the suite (as written) -> its folder name under OUT (its spec id)."""
    from .cmdp import load_spec
    return {env: env_folder_name(load_spec(env).id) for env in suite.envs}


def _portable(env: str) -> str:
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
        try:
            old = yaml.safe_load((run.folder / "config.yaml").read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        new = run.config.to_dict()
        status = read_status(run.folder) or {}
        if status.get("steps_done", 0) > run.config.steps:
            raise ConfigError(f"--steps {run.config.steps}: '{run.folder}' holds a run of {status['steps_done']} "
                              f"steps already; ask for at least as many, or use another --out")
        for key, value in new.items():
            if key not in _MAY_CHANGE and key in old and old[key] != value:
                raise ConfigError(f"--out: '{run.folder}' holds a run with {key}={old[key]}, this grid asks for "
                                  f"{key}={value}; use another --out, or remove that run to retrain it")


def read_status(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / "status.json").read_text())
    except (OSError, ValueError):
        return None


def is_finished(run: Run) -> bool:
    """status.json says done and the run has all the steps the grid asks for."""
    status = read_status(run.folder)
    return bool(status) and status.get("state") == "done" and status.get("steps_done", 0) >= run.config.steps


def steps_done(run: Run) -> int:
    """Env steps the run has finished: all if done, else the step of its last progress.csv row."""
    if is_finished(run):
        return run.config.steps
    return min(_last_progress_step(run.folder / "progress.csv"), run.config.steps)


def _last_progress_step(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = f.read().decode(errors="replace").split("\n")
    except OSError:
        return 0
    for line in reversed(lines[:-1]):  # lines[-1] is after the last newline: partial or empty
        head = line.split(",", 1)[0]
        if head.isdigit():
            return int(head)
    return 0


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
    with _folder_lock(out) as locked:
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
            reason = _shorten(" ".join(reason.split()))
            record_failure(out, reason)
            return {"state": "failed", "reason": reason, "in_use": False}


def _shorten(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def record_failure(folder: Path, reason: str) -> None:
    """status.json -> failed with the reason; steps_done and wall_seconds kept from the last status."""
    from .atomic import write_atomic
    status = read_status(folder) or {}
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_atomic(Path(folder) / "status.json", json.dumps({
        "state": "failed", "reason": reason, "steps_done": status.get("steps_done", 0),
        "wall_seconds": status.get("wall_seconds", 0.0)}))


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[bool]:
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


# ---- local backend: one spawned process per run -----------------------------------------------
def _local_worker(config: dict, folder: str, command: str | None, parent_pid: int) -> None:
    """Entry point of a local worker process. It ignores Ctrl-C (the bench stops it with SIGTERM,
    which train sees as KeyboardInterrupt and records as "interrupted") and dies with the bench."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent while it started us
    signal.signal(signal.SIGTERM, _interrupt)
    _die_with_parent(parent_pid)
    _no_rendering()
    try:
        outcome = run_one(config, folder, command)
    except KeyboardInterrupt:
        sys.exit(_EXIT_INTERRUPTED)
    sys.exit(_EXIT_IN_USE if outcome.get("in_use") else _EXIT_RECORDED)


def _no_rendering() -> None:
    """Workers never render: without an OpenGL backend, importing mujoco skips glfw's probe (a
    subprocess, 0.3-2.5 s per worker). Only if the user has not chosen a backend."""
    os.environ.setdefault("MUJOCO_GL", "disable")


def _ray_task(config: dict, folder: str, command: str | None = None) -> dict:
    """A Ray task: one run (see run_one)."""
    _no_rendering()
    return run_one(config, folder, command)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _die_with_parent(parent_pid: int) -> None:
    """Linux: SIGKILL this process when the bench dies (a SIGKILL'd bench leaves no orphan training)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the bench died before prctl took effect
        os._exit(1)


def _run_local(todo: list[Run], workers: int, command: str | None, watch: "GridWatch") -> bool:
    """Train `todo`, at most `workers` at a time. Returns False if stopped by Ctrl-C."""
    import multiprocessing
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("spawn")
    queue, live = deque(todo), {}
    try:
        while queue or live:
            while queue and len(live) < workers:
                run = queue.popleft()
                proc = ctx.Process(target=_local_worker, name=f"safehpo {run.name}",
                                   args=(run.config.to_dict(), str(run.folder), command, os.getpid()))
                # the child inherits SIG_IGN for Ctrl-C; a Ctrl-C meanwhile is held (blocked), not lost,
                # and reaches this process's own handler once the child has started
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
                previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
                try:
                    proc.start()
                finally:
                    signal.signal(signal.SIGINT, previous)
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
                live[proc.sentinel] = (run, proc)
                watch.started(run)
            for sentinel in wait(list(live), timeout=POLL_SECONDS):
                run, proc = live.pop(sentinel)
                proc.join()
                watch.finished(run, _local_outcome(run, proc.exitcode))
            watch.refresh()
    except KeyboardInterrupt:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            watch.say(f"interrupted: stopping {len(live)} running run(s) at their current step ...")
            for _, proc in live.values():
                proc.terminate()
            deadline = time.monotonic() + STOP_SECONDS
            for run, proc in live.values():
                proc.join(max(0.0, deadline - time.monotonic()))
                if proc.is_alive():
                    proc.kill()
                    proc.join()
                watch.finished(run, Outcome("interrupted", "stopped by the user"))
        finally:
            signal.signal(signal.SIGINT, previous)
        return False
    return True


def _local_outcome(run: Run, exitcode: int | None) -> Outcome:
    if exitcode == _EXIT_IN_USE:
        return Outcome("failed", "its folder is in use by another process (another bench on the same --out?)")
    if exitcode == _EXIT_INTERRUPTED:
        return Outcome("interrupted", "stopped")
    status = read_status(run.folder) or {}
    if exitcode == _EXIT_RECORDED and status.get("state") in ("done", "failed"):
        return Outcome(status["state"], status.get("reason"))
    if exitcode is not None and exitcode < 0:
        how = f"killed by {signal.Signals(-exitcode).name}"
    else:
        how = f"exit code {exitcode}"
    reason = f"its worker process died ({how}; out of memory?)"
    record_failure(run.folder, reason)
    return Outcome("failed", reason)


# ---- Ray backend: one task per run ------------------------------------------------------------
def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'safehpo[ray]'") from None
    return ray


def _run_ray(todo: list[Run], workers: int, address: str | None, command: str | None,
             watch: "GridWatch") -> bool:
    """The same runs as Ray tasks (num_cpus=1 each). OUT must be on a filesystem every node sees."""
    import logging
    ray = _import_ray()
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    pending: dict = {}
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_ray_task)
        for run in todo:
            pending[task.remote(run.config.to_dict(), str(run.folder), command)] = run
            watch.started(run, queued=True)
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
                for ref in ready:
                    run = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                        outcome = Outcome(result["state"], result["reason"])
                    except Exception as e:  # noqa: BLE001 - a crashed worker, a lost node
                        reason = _shorten(f"its Ray task failed: {type(e).__name__}: {' '.join(str(e).split())}")
                        record_failure(run.folder, reason)
                        outcome = Outcome("failed", reason)
                    watch.finished(run, outcome)
                watch.refresh()
        except KeyboardInterrupt:
            watch.say(f"interrupted: cancelling {len(pending)} Ray task(s) ...")
            for ref in pending:
                ray.cancel(ref)                  # KeyboardInterrupt in the task: train records it
            ray.wait(list(pending), num_returns=len(pending), timeout=STOP_SECONDS)
            for ref, run in pending.items():
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
                watch.finished(run, Outcome("interrupted", "stopped by the user"))
            return False
    finally:
        ray.shutdown()
    return True


# ---- progress ---------------------------------------------------------------------------------
class GridWatch:
    """One progress bar over the env steps of the whole grid, fed by the runs' files every
    POLL_SECONDS, with run counts (done / running / queued / failed) and the ETA."""

    def __init__(self, runs: list[Run], outcomes: dict[str, Outcome], show: bool):
        self.runs, self.outcomes = runs, outcomes
        self.running: set[str] = set()
        self.since = time.time()
        self.total = sum(r.config.steps for r in runs)
        self.bar = None
        if show:
            from tqdm import tqdm
            done = sum(steps_done(r) for r in runs)
            self.bar = tqdm(total=self.total, initial=done, unit="step", desc="bench", dynamic_ncols=True,
                            smoothing=0.1, mininterval=1.0)
            self._postfix()

    def started(self, run: Run, queued: bool = False) -> None:
        """A run handed to a worker; `queued`: to a scheduler (Ray), which starts it later."""
        if not queued:
            self.running.add(run.name)
        self._postfix()

    def finished(self, run: Run, outcome: Outcome) -> None:
        self.running.discard(run.name)
        self.outcomes[run.name] = outcome
        if outcome.state == "failed":
            self.say(f"failed: {run.name}: {outcome.reason}")
        self._postfix()

    def refresh(self) -> None:
        if self.bar is None:
            return
        done = sum(steps_done(r) for r in self.runs)
        if done >= self.bar.n:
            self.bar.update(done - self.bar.n)
        else:  # a resumed run cut its CSV back to its checkpoint
            self.bar.n = done
            self.bar.refresh()
        for run in self.runs:  # runs a scheduler has started: their status.json says so, freshly
            if self.outcomes[run.name].state == "queued" and run.name not in self.running:
                with contextlib.suppress(OSError):
                    fresh = (run.folder / "status.json").stat().st_mtime >= self.since
                    if fresh and (read_status(run.folder) or {}).get("state") == "running":
                        self.running.add(run.name)
        self._postfix()

    def say(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.refresh()
            self.bar.close()

    def _postfix(self) -> None:
        if self.bar is None:
            return
        states = [o.state for o in self.outcomes.values()]
        queued = states.count("queued") - len(self.running)
        self.bar.set_postfix_str(f"runs: {states.count('done')} done, {len(self.running)} running, "
                                 f"{max(queued, 0)} queued, {states.count('failed')} failed", refresh=False)


# ---- the bench --------------------------------------------------------------------------------
def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_grid(suite: Suite, out: Path | str = "runs", workers: int | None = None, backend: str = "local",
             address: str | None = None, progress: bool = True, command: str | None = None,
             aggregate: bool = True) -> GridResult:
    """Run every unfinished run of the suite's grid into OUT/<env>/<algo>/seed-<n>/, then aggregate.

    Checks first (no run starts on bad input): workers > 0, the backend (Ray importable), OUT
    writable. Finished runs are skipped, unfinished ones resume from their checkpoints.
    Runs start in `expand`'s order, seed by seed, so a grid stopped part-way holds a comparison.
    """
    workers = default_workers() if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers: expected a positive integer, got {workers!r}")
    if backend not in ("local", "ray"):
        raise ConfigError(f"--backend: expected local or ray, got '{backend}'")
    if backend == "ray":
        _import_ray()
    out = Path(out).resolve()
    writable_folder(out, "--out")
    runs = expand(suite, out)
    check_existing(runs)
    command = command or "safehpo bench (python API)"

    from .atomic import write_atomic
    folders = env_folders(suite)
    env_dirs = [out / folder for folder in folders.values()]
    for env, folder in folders.items():
        (out / folder).mkdir(parents=True, exist_ok=True)
        write_atomic(out / folder / "command.txt", command + "\n")
        env_suite = {**suite.to_dict(), "envs": [_portable(env)]}
        write_atomic(out / folder / "suite.yaml", yaml.safe_dump(env_suite, sort_keys=False))

    outcomes = {run.name: Outcome("done", None, skipped=True) if is_finished(run) else Outcome("queued")
                for run in runs}
    todo = [run for run in runs if not outcomes[run.name].skipped]
    where = f"{workers} local worker(s)" if backend == "local" else \
        (f"Ray at {address}" if address else f"a local Ray with {workers} CPU(s)")
    print(f"bench {suite.name}: {len(suite.envs)} env(s) x {len(suite.algos)} algo(s) x {len(suite.seeds)} seed(s)"
          f" = {len(runs)} runs of {suite.steps} steps; {len(runs) - len(todo)} already done, {len(todo)} to run"
          f" on {where} -> {out}", file=sys.stderr)

    watch = GridWatch(runs, outcomes, progress)
    t0 = time.perf_counter()
    try:
        if todo and backend == "local":
            finished = _run_local(todo, min(workers, len(todo)), command, watch)
        elif todo:
            finished = _run_ray(todo, workers, address, command, watch)
        else:
            finished = True
    finally:
        watch.close()
    result = GridResult(out, runs, outcomes, interrupted=not finished)
    if not finished:
        print(f"safehpo: interrupted after {_duration(time.perf_counter() - t0)}; finished runs and checkpoints "
              f"are kept. To continue, run the same command again:\n  {command}", file=sys.stderr)
        return result

    if aggregate:
        from .aggregate import aggregate_all
        for env_dir in env_dirs:
            try:
                aggregate_all(env_dir)
                result.reports.append(env_dir / "report.md")
            except Exception as e:  # noqa: BLE001 - the runs are safe; say what went wrong and go on
                result.aggregation_errors.append(f"{env_dir}: {type(e).__name__}: {e}")
    _print_summary(result, time.perf_counter() - t0)
    return result


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _print_summary(result: GridResult, seconds: float) -> None:
    states = [o.state for o in result.outcomes.values()]
    print(f"bench: {len(result.runs)} runs: {states.count('done')} done ({len(result.skipped)} skipped as already "
          f"done), {states.count('failed')} failed, in {_duration(seconds)}", file=sys.stderr)
    for name, reason in result.failed.items():
        print(f"  failed: {name}: {reason}", file=sys.stderr)
    if result.failed:
        print("  (rerun the same command to retry the failed runs; finished ones are skipped)", file=sys.stderr)
    for error in result.aggregation_errors:
        print(f"  aggregation failed: {error}", file=sys.stderr)
    for report in result.reports:
        print(f"report: {report}")


# ---- command line -----------------------------------------------------------------------------
def register_cli(sub) -> None:
    b = sub.add_parser("bench", help="run a grid of envs x algorithms x seeds, then aggregate",
                       description="Run a benchmark grid (envs x algorithms x seeds) into OUT/<env>/<algo>/seed-<n>/, "
                       "skipping finished runs and resuming unfinished ones, then write summary.csv, the figures "
                       "and report.md per env. The same command again continues an interrupted grid.")
    b.add_argument("--env", action="append", metavar="E",
                   help="environment (repeatable; default: the suite's envs)")
    which = b.add_mutually_exclusive_group()
    which.add_argument("--suite", metavar="FILE", help="suite YAML file (see benchmarks/)")
    which.add_argument("--preset", metavar="NAME",
                       help="a shipped suite: smoke (minutes), quick (~1 h per env on 2 cores), paper "
                            "(default: quick)")
    b.add_argument("--algos", metavar="A,B", help="comma-separated algorithms (default: the suite's; sac-lag,sac-hpo)")
    b.add_argument("--seeds", metavar="N", help="number of seeds (0..N-1), or a list like 0,3,7")
    b.add_argument("--steps", metavar="S", help="env steps per run")
    b.add_argument("--out", default="runs", help="output folder (default: runs/; results/ holds the committed results)")
    b.add_argument("--workers", metavar="N", help="runs at a time (default: number of CPU cores)")
    b.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local processes, or Ray tasks (OUT must be on a filesystem every Ray node sees)")
    b.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: start a local Ray)")
    b.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyperparameter (repeatable)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    suite = load_suite(args.suite, "--suite") if args.suite else load_suite(args.preset or "quick", "--preset")
    algos = [a.strip() for a in args.algos.split(",") if a.strip()] if args.algos else None
    if args.algos is not None and not algos:
        raise ConfigError(f"--algos: expected a comma-separated list of algorithms, got '{args.algos}'")
    suite = resolve(suite, envs=args.env, algos=algos, seeds=args.seeds, steps=args.steps, sets=args.set)
    workers = None if args.workers is None else parse_int(args.workers, "--workers", minimum=1)
    if args.address and args.backend != "ray":
        raise ConfigError("--address: only with --backend ray")
    command = "safehpo " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["bench"] \
        else "safehpo bench " + " ".join(shlex.quote(a) for a in _argv_of(args))
    result = run_grid(suite, args.out, workers=workers, backend=args.backend, address=args.address,
                      progress=not args.quiet, command=command)
    return result.exit_code


def _argv_of(args) -> list[str]:
    """The bench flags back as a command line (when called as cli.main([...]) rather than from a shell)."""
    argv: list[str] = []
    for env in args.env or []:
        argv += ["--env", env]
    for flag in ("suite", "preset", "algos", "seeds", "steps", "out", "workers", "backend", "address"):
        value = getattr(args, flag)
        if value is not None and not (flag == "backend" and value == "local"):
            argv += [f"--{flag}", str(value)]
    for item in args.set or []:
        argv += ["--set", item]
    if args.quiet:
        argv.append("--quiet")
    return argv
