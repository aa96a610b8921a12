"""`safehpo bench`: a suite's grid of runs, envs x algorithms x seeds, trained on local processes
or Ray, then aggregated (docs/outputs.md).

`run_grid` checks everything before the first run starts, writes each env folder's command.txt
and suite.yaml, trains every unfinished run into `OUT/<env>/<algo>/seed-<n>/` (safehpo.grid:
finished runs are skipped, unfinished ones resume; safehpo.backends: where they train), shows the
progress (safehpo.gridwatch) and aggregates each env folder (safehpo.aggregate). The same command
after a SIGKILL or a Ctrl-C continues where the grid stopped. A run that fails is reported in one
line; the other runs go on.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .atomic import write_atomic
from .backends import import_ray, run_local, run_ray
from .config import ConfigError, parse_int, writable_folder
from .grid import Outcome, Run, check_existing, env_folders, expand, is_finished, portable
from .gridwatch import GridWatch
from .runfolder import COMMAND_FILE, SUITE_FILE
from .suite import Suite, load_suite, resolve

@dataclass
class GridResult:
    """What `run_grid` did: every run's outcome, the reports written, and how it ended."""

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


def default_workers() -> int:
    """The CPU cores this process may run on."""
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
        import_ray()
    out = Path(out).resolve()
    writable_folder(out, "--out")
    runs = expand(suite, out)
    check_existing(runs)
    command = command or "safehpo bench (python API)"

    folders = env_folders(suite)
    env_dirs = [out / folder for folder in folders.values()]
    for env, folder in folders.items():
        (out / folder).mkdir(parents=True, exist_ok=True)
        write_atomic(out / folder / COMMAND_FILE, command + "\n")
        env_suite = suite.for_env(env, portable(env)).to_dict()
        write_atomic(out / folder / SUITE_FILE, yaml.safe_dump(env_suite, sort_keys=False))

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
            finished = run_local(todo, min(workers, len(todo)), command, watch)
        elif todo:
            finished = run_ray(todo, workers, address, command, watch)
        else:
            finished = True
    finally:
        watch.close()
    result = GridResult(out, runs, outcomes, interrupted=not finished)
    if not finished:
        print(f"safehpo: interrupted after {_duration(time.perf_counter() - t0)}; finished runs and checkpoints "
              f"are kept. To continue, run the same command again:\n  {command}", file=sys.stderr)
        return result

    if aggregate:  # the reporting modules load once a grid has run, not for every command line
        from .aggregate import aggregate_all
        from .report import REPORT_FILE
        for env_dir in env_dirs:
            try:
                aggregate_all(env_dir)
                result.reports.append(env_dir / REPORT_FILE)
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
