"""Aggregation of a bench (`safehpo plot DIR`, and `safehpo bench` when its grid is done).

A bench writes, per environment, `OUT/<env>/<algo>/seed-<n>/` run folders (safehpo.runfolder).
Next to them, for each environment folder, this writes:

- summary.csv   a row per (algo, seed): safety during training, the learned policy, lambda,
                alpha, speed (safehpo.summary)
- audit.csv     the Lyapunov filter's counters per (algo, seed, step bucket) (safehpo.audit)
- the figures   return_vs_violation.png, curves.png, audit.png (safehpo.figures)
- report.md     the headline tables, the per-seed tables, the figures, the method (safehpo.report)

Every file is written atomically, so a crash or a concurrent reader never sees half a file.
matplotlib loads on the first figure drawn, not on import.
"""

from __future__ import annotations

from pathlib import Path

from .audit import write_audit
from .figures import plot_env
from .report import write_report
from .runrecord import collect_runs, find_env_dirs
from .summary import write_summary


def aggregate_all(path: Path | str) -> list[Path]:
    """Write summary.csv, audit.csv, the three figures and report.md for each environment folder.

    `path` is one environment folder (it has `<algo>/seed-<n>/` children) or a folder holding
    several. Returns the written paths. Raises FileNotFoundError if no run is found.
    """
    env_dirs = find_env_dirs(path)
    if not env_dirs:
        raise FileNotFoundError(f"no runs found under {path} (expected <env>/<algo>/seed-<n>/ folders)")
    written: list[Path] = []
    for env_dir in env_dirs:
        runs = collect_runs(env_dir)
        written.append(write_summary(env_dir, runs))
        written.append(write_audit(env_dir, runs))
        written += plot_env(env_dir, runs)
        written.append(write_report(env_dir, runs))
    return written
