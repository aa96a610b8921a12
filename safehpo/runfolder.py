"""The run folder: what one (env, algo, seed) run leaves on disk, written and read back (docs/outputs.md).

A bench puts each run in `OUT/<env>/<algo>/seed-<n>/`; `safehpo train --out` in any folder.

- config.yaml    the run's Config, its spec, the cost critic's units, versions, git revision, command
- progress.csv   a row per finished training episode (PROGRESS_COLUMNS)
- eval.csv       a row per evaluation (EVAL_COLUMNS)
- status.json    {"state": running | done | failed | interrupted, "reason", "steps_done", "wall_seconds", ...}
- checkpoint.pt  everything a resumed run needs

Every file is written atomically (safehpo.atomic) except the CSVs, which are appended a row at a
time (fsync'd) and cut back to the checkpoint's rows on resume. Reading tolerates missing, empty
and cut-short files: a run that never started is still listed (see `safehpo.runrecord`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import yaml

from . import __version__
from .atomic import replace_atomically, write_atomic
from .algos import ALGOS, multiplier_rule

if TYPE_CHECKING:
    from .cmdp import EnvSpec

CONFIG_FILE, PROGRESS_FILE, EVAL_FILE = "config.yaml", "progress.csv", "eval.csv"
STATUS_FILE, CHECKPOINT_FILE = "status.json", "checkpoint.pt"
ACTIONS_FILE = "actions.png"   # `safehpo plot-actions` writes its figure here unless told otherwise
# beside the run folders of one env of a bench: the command that made them and the suite it ran
COMMAND_FILE, SUITE_FILE = "command.txt", "suite.yaml"

PROGRESS_COLUMNS = ["step", "episode", "return", "cost", "length", "violated", "lambda", "alpha",
                    "rejected", "leapfrog_steps", "unsafe_fallbacks", "sps"]
EVAL_COLUMNS = ["step", "return_mean", "return_std", "cost_mean", "cost_std",
                # the same episodes' starts with the Lyapunov filter on (the deployed policy of a
                # filtered algorithm; empty for the others) and the actions it rejected. Files
                # written before the filtered evaluation have only the first five columns.
                "filtered_return_mean", "filtered_return_std", "filtered_cost_mean", "filtered_cost_std",
                "filtered_rejected"]
TIMING_COLUMNS = {"sps"}   # the columns that differ between two runs of the same command

FINISHED = "done"          # the status.json state of a finished run


# ---- names -------------------------------------------------------------------------------------
_SEED_FOLDER = re.compile(r"^seed-(-?\d+)$")


def seed_folder(seed: int) -> str:
    """The folder name of a seed: 'seed-3'."""
    return f"seed-{seed}"


def parse_seed_folder(name: str) -> int | None:
    """The seed of a folder named 'seed-<n>', else None."""
    m = _SEED_FOLDER.match(name)
    return int(m.group(1)) if m else None


def env_folder_name(spec_id: str) -> str:
    """The folder of an env under OUT: its spec id ("safety:X" becomes "safety-X")."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", spec_id)


def run_name(env: str, algo: str, seed: int) -> str:
    """A run's folder relative to OUT: '<env>/<algo>/seed-<n>'."""
    return f"{env}/{algo}/{seed_folder(seed)}"


# ---- the CSVs ----------------------------------------------------------------------------------
class CsvLog:
    """Append-only CSV with a header; `truncate(n)` keeps the header and the first n rows."""

    def __init__(self, path: Path, columns: list[str]):
        self.path, self.columns = path, columns
        if not path.exists() or path.stat().st_size == 0:
            write_atomic(path, ",".join(columns) + "\n")
        self.rows = self._count()

    def _count(self) -> int:
        with open(self.path) as f:
            return max(0, sum(1 for line in f if line.endswith("\n")) - 1)

    def truncate(self, n: int) -> None:
        with open(self.path) as f:
            lines = [line for line in f if line.endswith("\n")]
        write_atomic(self.path, "".join(lines[: n + 1]))
        self.rows = n

    def append(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f, lineterminator="\n").writerow([_fmt(row[c]) for c in self.columns])
            f.flush()
            os.fsync(f.fileno())
        self.rows += 1


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def last_progress_step(folder: Path | str) -> int:
    """The step of progress.csv's last complete row (0 without one), from the file's last 4 kB:
    cheap enough to poll while the run appends."""
    try:
        with open(Path(folder) / PROGRESS_FILE, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = f.read().decode(errors="replace").split("\n")
    except OSError:
        return 0
    for line in reversed(lines[:-1]):  # lines[-1] is after the last newline: partial or empty
        head = line.split(",", 1)[0]
        if head.isdigit():
            return int(head)
    return 0


def read_csv_columns(path: Path | str) -> dict[str, np.ndarray]:
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


# ---- config.yaml -------------------------------------------------------------------------------
def read_config(folder: Path | str) -> dict:
    """config.yaml as a dict; {} if it is missing, unreadable or not a mapping."""
    try:
        data = yaml.safe_load((Path(folder) / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


# ---- status.json -------------------------------------------------------------------------------
# While a run trains, its status.json is rewritten at most this often (seconds) with the step it
# has reached (`step_reached`; `steps_done` stays the step a resume would start from), so a
# bench's progress bar moves within long episodes. A `step_reached` older than a few intervals is
# a dead process's, not counted.
STATUS_EVERY_S = 10.0
LIVE_STATUS_MAX_AGE_S = 6 * STATUS_EVERY_S


def write_status(folder: Path | str, state: str, reason: str | None, steps_done: int, wall_seconds: float,
                 **fields) -> Path:
    """status.json: the run's state, why it stopped (failed, interrupted), its steps and time so
    far; `fields` are further entries (train adds `compiled`)."""
    return write_atomic(Path(folder) / STATUS_FILE, json.dumps({
        "state": state, "reason": reason, "steps_done": steps_done, "wall_seconds": wall_seconds, **fields}))


def step_reached(folder: Path | str) -> int:
    """The step a running run reports having reached, if its status.json says so and is fresh; else 0."""
    path = Path(folder) / STATUS_FILE
    try:
        fresh = time.time() - path.stat().st_mtime <= LIVE_STATUS_MAX_AGE_S
    except OSError:
        return 0
    status = read_status(folder) or {}
    return int(status.get("step_reached", 0)) if fresh and status.get("state") == "running" else 0


def read_status(folder: Path | str) -> dict | None:
    """status.json as a dict; None if it is missing or unreadable."""
    try:
        status = json.loads((Path(folder) / STATUS_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def record_failure(folder: Path | str, reason: str) -> None:
    """status.json -> failed with the reason; steps_done and wall_seconds kept from the last status."""
    status = read_status(folder) or {}
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_status(folder, "failed", reason, status.get("steps_done", 0), status.get("wall_seconds", 0.0))


# ---- checkpoint.pt -----------------------------------------------------------------------------
def save_checkpoint(path: Path, state: dict) -> None:
    import torch
    replace_atomically(path, lambda tmp: torch.save(state, tmp))


# ---- provenance (config.yaml) ------------------------------------------------------------------
def git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        rev = out.stdout.strip()
        if rev:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                   cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5).stdout
            return rev + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def package_versions() -> dict[str, str]:
    import gymnasium
    import mujoco
    import torch
    return {"safehpo": __version__, "python": platform.python_version(), "torch": str(torch.__version__),
            "gymnasium": str(gymnasium.__version__), "mujoco": str(mujoco.__version__), "numpy": str(np.__version__)}


def spec_summary(spec: EnvSpec) -> dict:
    return {"id": spec.id, "base": spec.base, "kwargs": dict(spec.kwargs),
            "cost": {"kind": spec.cost.kind, "params": dict(spec.cost.params)},
            "budget": None if spec.budget is None else {"threshold": spec.budget.threshold, "kind": spec.budget.kind},
            "max_episode_steps": spec.max_episode_steps, "path": spec.path}


# ---- what a checkpoint and a resume accept ------------------------------------------------------
RESUMABLE_CHANGES = {"steps", "device", "threads", "compile", "fast_paths"}  # what a resumed run may change
CHECKPOINT_FORMAT = 2  # 2: one optimiser for the policy and the temperature (1: a separate alpha_opt)
# hyperparameters added since, with the value that runs saved without them had
LEGACY_DEFAULTS = {"lambda_units": "paper", "fast_paths": True, "cost_critics": 1, "cost_floor": False,
                   "lambda_clip": 1.0, "pid_ema": 0.0, "filter_fallback": "lowest-cost",
                   "budget_margin": 0.0, "lambda_min": 0.0, "entropy_per_dim": -1.0, "lambda_weight": "length"}


# hyperparameters only some algorithms read (algos.py): the rest never do, so a different value
# changes nothing in their runs, and reports and resumes leave them out (`unread_settings`)
PID_SETTINGS = ("pid_kp", "pid_ki", "pid_kd", "pid_ema")          # the PID rule's own
MULTIPLIER_SETTINGS = ("lagrange", "lambda_units", "lambda_init", "lambda_lr", "lambda_adam_lr", "lambda_window",
                       "lambda_weight", "lambda_clip", "lambda_min", "budget_margin", "cost_critics", "cost_floor",
                       "cost_scale") + PID_SETTINGS                  # the multiplier and the cost critics
RULE_SETTINGS = {"paper": ("lambda_lr", "lambda_weight"), "adam": ("lambda_adam_lr",),
                 "pid": PID_SETTINGS + ("lambda_weight",)}  # each rule's step
CHAIN_SETTINGS = ("base_hidden", "leapfrog_steps", "leapfrog_eps", "momentum_std_train", "momentum_std_explore",
                  "gate_hidden", "gate_state_input", "second_order", "target_chain")  # the Hamiltonian policy
FILTER_SETTINGS = ("k_max", "filter_fallback")                   # the Lyapunov filter


def with_legacy_defaults(saved: dict) -> dict:
    """A saved config.yaml read at the values its run ran with: the hyperparameters it lacks at
    LEGACY_DEFAULTS (a run saved before a hyperparameter existed ran with its old value)."""
    return {**LEGACY_DEFAULTS, **saved}


def unread_settings(config: dict) -> set[str]:
    """Hyperparameters the run of `config` never reads (so a different value changes nothing): an
    algorithm without a multiplier reads none of the multiplier's or cost critics' settings, a rule
    only its own step's (the PID gains, `lambda_lr` or `lambda_adam_lr`; `lagrange` only where the
    algorithm takes its rule from it), a Gaussian policy none of the chain's, a Hamiltonian one not
    `actor_hidden`, an algorithm without the filter none of the filter's. Empty for an unknown
    algorithm. tests/test_train.py trains each kind with every one of them changed."""
    algo = ALGOS.get(config.get("algo"))
    if algo is None:
        return set()
    rule = multiplier_rule(config["algo"], config.get("lagrange", "paper"))
    if rule == "none":
        unread = set(MULTIPLIER_SETTINGS)
    else:
        steps = {key for keys in RULE_SETTINGS.values() for key in keys}
        unread = steps - set(RULE_SETTINGS[rule]) | ({"lagrange"} if algo.multiplier != "lagrange" else set())
    unread |= {"actor_hidden"} if algo.hamiltonian else set(CHAIN_SETTINGS)
    return unread | (set() if algo.filter else set(FILTER_SETTINGS))


def setting_text(value: Any) -> str:
    """A hyperparameter's value as `--set` takes it (booleans in lower case)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def config_mismatch(saved: dict, asked: dict, may_change: Iterable[str],
                    missing_differs: bool = False) -> tuple[str, str, str] | None:
    """How a saved run's hyperparameters (read through `with_legacy_defaults`) differ from those
    asked for, outside `may_change` and the settings neither run reads (`unread_settings`):
    ('k=saved, ...', 'k=asked, ...', the flags that ask for the saved values: '--set k=saved ...',
    '--env E' for env, algo and seed), or None. A key the saved run
    lacks counts as different only with `missing_differs`, shown as not recorded, with no flag."""
    saved = with_legacy_defaults(saved)
    unread = unread_settings(saved) & unread_settings(asked)
    keys = [k for k in asked if k not in may_change and k not in unread and (k in saved or missing_differs)
            and saved.get(k) != asked[k]]
    if not keys:
        return None
    had = [f"{k}={setting_text(saved[k])}" if k in saved else f"{k} not recorded" for k in keys]
    flags = [f"--{k} {saved[k]}" if k in ("env", "algo", "seed") else f"--set {k}={setting_text(saved[k])}"
             for k in keys if k in saved]
    return ", ".join(had), ", ".join(f"{k}={setting_text(asked[k])}" for k in keys), " ".join(flags)
