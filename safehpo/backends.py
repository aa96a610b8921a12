"""Where the runs of a grid train: local processes or Ray tasks.

Local: each run trains single-threaded in its own spawned process (torch and fork do not mix
well), at most `workers` at a time, so N workers share N cores. A worker ignores Ctrl-C; the
bench stops it with SIGTERM, which train records as "interrupted", and it dies with the bench.
Ray: one task per run (num_cpus=1); OUT must be on a filesystem every node sees.

Both report each run's start and end to a GridWatch and return False if stopped by Ctrl-C.
A run whose worker dies (out of memory, a lost node) is recorded as failed in its status.json.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections import deque
from typing import TYPE_CHECKING

from .config import ConfigError
from .grid import Outcome, Run, run_one, shorten
from .runfolder import read_status, record_failure

if TYPE_CHECKING:
    from .gridwatch import GridWatch

POLL_SECONDS = 2.0           # how often the progress bar reads the runs' files
STOP_SECONDS = 20.0          # how long a stopped worker may take to record its state before SIGKILL


# exit codes of a local worker process
_EXIT_RECORDED = 0           # the run's outcome (done or failed) is in its status.json
_EXIT_IN_USE = 3             # another process holds the run folder
_EXIT_INTERRUPTED = 130


# ---- local processes: one spawned process per run ------------------------------------------------
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


def run_local(todo: list[Run], workers: int, command: str | None, watch: GridWatch) -> bool:
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


# ---- Ray backend: one task per run ---------------------------------------------------------------
def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'safehpo[ray]'") from None
    return ray


def _ray_task(config: dict, folder: str, command: str | None = None) -> dict:
    """A Ray task: one run (see run_one)."""
    _no_rendering()
    return run_one(config, folder, command)


def run_ray(todo: list[Run], workers: int, address: str | None, command: str | None,
             watch: GridWatch) -> bool:
    """The same runs as Ray tasks (num_cpus=1 each). OUT must be on a filesystem every node sees."""
    import logging
    ray = import_ray()
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
                        reason = shorten(f"its Ray task failed: {type(e).__name__}: {' '.join(str(e).split())}")
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
