"""Hyperparameters of one run (one typed dataclass, CleanRL style) and the error type for bad input.

Every bad input a user can give (a spec, a flag, a suite, a `--set key=value`) raises
`ConfigError` with one line that names the file or flag and the field; the CLI prints it and
exits with code 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """Bad user input. The message is one line naming the file/flag and the field."""


# Top-level folders that hold data (CMDP specs, benchmark suites). In a source checkout they sit
# next to the package; a wheel carries copies under safehpo/_data.
_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The folder `envs` or `benchmarks`: the checkout's copy if present, else the wheel's."""
    for candidate in (_PACKAGE_DIR.parent / name, _PACKAGE_DIR / "_data" / name):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"cannot find the '{name}' folder next to the safehpo package")


def read_yaml(path: Path, where: str) -> Any:
    """The YAML document at `path`; a missing file or bad syntax is one line naming `where`."""
    import yaml
    if not path.is_file():
        raise ConfigError(f"{where}: file not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML{line}: {problem}") from None


def parse_int(value: Any, where: str, minimum: int) -> int:
    """An integer >= minimum from YAML or a flag ("20_000", "1e6", 5.0 accepted); else one-line ConfigError."""
    number = value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value.replace("_", "")) if value.strip() else value
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number) \
            or not float(number).is_integer() or number < minimum:
        raise ConfigError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return int(number)


def writable_folder(path: Path | str, where: str) -> Path:
    """Create `path` if needed and prove it takes a file; else a one-line ConfigError naming `where`."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"{where}: cannot write to '{path}': {e.strerror or e}") from None
    return path


def check_keys(raw: Any, where: str, allowed: tuple[str, ...], required: tuple[str, ...]) -> dict:
    """A YAML document must be a mapping with known keys and the required ones (one-line errors)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of {', '.join(allowed)}, got {type(raw).__name__}")
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key '{key}' (allowed: {', '.join(allowed)})")
    for key in required:
        if key not in raw:
            raise ConfigError(f"{where}: field '{key}': missing (required)")
    return raw


@dataclass
class Config:
    """All hyperparameters of one run. Defaults follow docs/design.md: the papers' values, except the
    multiplier's units and the twin cost critics with their floor (docs/multiplier.md)."""

    env: str = "halfcheetah-speed"
    algo: str = "sac-lag"
    seed: int = 0
    steps: int = 1_000_000
    device: str = "auto"          # auto | cpu | cuda
    threads: int = 1              # torch intra-op threads (1: several runs share the cores best)
    compile: str = "auto"         # torch.compile update losses and acting: auto (fast.compiles) | always | never
    fast_paths: bool = True       # fast.py's hand-written critic gradient and Q reuse; false: plain autograd

    # SAC (common to every algorithm)
    learning_starts: int = 5_000  # uniform random actions before the first update
    batch_size: int = 256
    buffer_size: int = 1_000_000
    gamma: float = 0.99
    tau: float = 0.005
    lr: float = 3e-4
    hidden: int = 256             # critics: two hidden layers of this width
    actor_hidden: int = 256       # Gaussian actor of sac / sac-lag / sac-pid: two layers
    alpha_init: float = 1.0
    autotune_alpha: bool = True   # tune alpha to a target entropy of entropy_per_dim * |A|
    entropy_per_dim: float = -1.0  # the target entropy per action dimension (SAC's -|A|; lower: less action noise)
    cost_scale: float = 1.0       # the cost critic learns c * cost_scale; reports stay in spec units
    cost_critics: int = 2         # 2: twins, Q_C their larger value (docs/multiplier.md); 1: one cost critic (the papers')
    cost_floor: bool = True       # clamp the cost critic's target at a zero cost's value (every cost is >= 0)
    budget_margin: float = 0.0    # multiplier, cost critic and filter aim at (1 - this) * the budget; reports judge by the budget

    # Lagrange multiplier (lagrange.py)
    lagrange: str = "paper"       # paper: per-episode ascent | pid | adam: per-gradient-step Adam
    lambda_units: str = "relative"  # relative (default, docs/multiplier.md) | paper: the papers' literal units
    lambda_init: float = 0.0
    lambda_lr: float = 0.1        # eta of the per-episode ascent (the papers' rule)
    lambda_adam_lr: float = 1e-4  # Adam's lr for `adam` (a step per gradient update moves lambda ~lr)
    lambda_window: int = 1        # episodes averaged for J_C (1: each episode's own cost)
    lambda_weight: str = "length"  # relative units: an update weighs its episode's length share | episode: each alike
    lambda_clip: float = float("inf")  # relative units: (J_C - d0) / d0 capped at this (inf: unclipped)
    lambda_min: float = 0.0       # the floor lambda is projected onto (0: the papers' [.]_+; docs/multiplier.md)
    pid_kp: float = 0.1
    pid_ki: float = 0.1           # = lambda_lr: the integral term is the ascent rule's lambda (docs/multiplier.md)
    pid_kd: float = 0.01
    pid_ema: float = 0.9          # sac-pid: P and D act on an EMA of the episodes' violations (0: this episode's)

    # Hamiltonian policy (hamiltonian.py) and Lyapunov filter (lyapunov.py)
    base_hidden: int = 256        # HPO base policy: one hidden layer (paper's Ant row)
    leapfrog_steps: int = 3       # K
    leapfrog_eps: float = 0.1     # eps
    momentum_std_train: float = 0.1    # 1/sqrt(beta0_train)
    momentum_std_explore: float = 1.0  # 1/sqrt(beta0_explore)
    gate_hidden: int = 32         # h_n of T_h and sigma_h
    gate_state_input: bool = False
    second_order: bool = False    # differentiate through grad_a Q (create_graph); exact for ReLU critics either way
    k_max: int = 10               # most leapfrog steps (and tests) the Lyapunov filter takes per action
    filter_fallback: str = "lowest-cost"  # no candidate passed: the lowest-Q_C one, or "last" (the paper's a_K)
    target_chain: bool = True     # next actions of the critic target from the chain (exact); False: base policy

    # evaluation, logging, checkpoints
    eval_interval: int = 10_000
    eval_episodes: int = 5
    checkpoint_interval: int = 10_000

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_CHOICES = {
    "cost_critics": (1, 2),
    "device": ("auto", "cpu", "cuda"),
    "lagrange": ("paper", "pid", "adam"),
    "lambda_units": ("relative", "paper"),
    "lambda_weight": ("length", "episode"),
    "compile": ("auto", "always", "never"),
    "filter_fallback": ("lowest-cost", "last"),
}
_POSITIVE = {"steps", "batch_size", "buffer_size", "hidden", "actor_hidden", "base_hidden",
             "gate_hidden", "k_max", "eval_interval", "eval_episodes", "checkpoint_interval",
             "lambda_window", "lambda_clip", "threads", "leapfrog_eps", "lr", "cost_scale", "alpha_init"}
_NON_NEGATIVE = {"seed", "learning_starts", "leapfrog_steps", "lambda_init", "lambda_min", "lambda_lr", "lambda_adam_lr",
                 "momentum_std_train", "momentum_std_explore", "pid_kp", "pid_ki", "pid_kd"}
_UNIT_INTERVAL = {"gamma", "tau"}
_FRACTIONS = {"pid_ema", "budget_margin"}


def _coerce(name: str, typ: type, value: Any, where: str) -> Any:
    if isinstance(value, str):
        text = value.strip()
        try:
            if typ is bool:
                if text.lower() in ("1", "true", "yes", "on"):
                    return True
                if text.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if typ is int:
                try:
                    return int(text)
                except ValueError:
                    number = float(text)  # accepts 1e6 and 20_000.0
                    if not number.is_integer():
                        raise
                    return int(number)
            if typ is float:
                return float(text)
            return text
        except ValueError:
            raise ConfigError(f"{where}: '{name}' expects {typ.__name__}, got '{value}'") from None
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: '{name}' expects {typ.__name__}, got {value!r}")
    return value


_TYPES = {f.name: (f.type if isinstance(f.type, type) else eval(f.type)) for f in fields(Config)}  # noqa: S307


def validate(cfg: Config, where: str = "config") -> Config:
    """Check ranges and choices; raise ConfigError naming the field."""
    for name, allowed in _CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise ConfigError(f"{where}: '{name}' must be one of {', '.join(map(str, allowed))}, got '{getattr(cfg, name)}'")
    for name in _POSITIVE:
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"{where}: '{name}' must be > 0, got {getattr(cfg, name)}")
    for name in _NON_NEGATIVE:
        if not 0 <= getattr(cfg, name) < math.inf:   # NaN and inf fail too
            raise ConfigError(f"{where}: '{name}' must be a finite number >= 0, got {getattr(cfg, name)}")
    for name in _UNIT_INTERVAL:
        if not 0.0 < getattr(cfg, name) <= 1.0:
            raise ConfigError(f"{where}: '{name}' must be in (0, 1], got {getattr(cfg, name)}")
    for name in _FRACTIONS:
        if not 0.0 <= getattr(cfg, name) < 1.0:
            raise ConfigError(f"{where}: '{name}' must be in [0, 1), got {getattr(cfg, name)}")
    if cfg.steps <= cfg.learning_starts:
        raise ConfigError(f"{where}: 'steps' ({cfg.steps}) <= 'learning_starts' ({cfg.learning_starts}): the run "
                          f"would only take uniform random actions and never update (lower learning_starts)")
    if cfg.batch_size > cfg.buffer_size:
        raise ConfigError(f"{where}: 'batch_size' ({cfg.batch_size}) exceeds 'buffer_size' ({cfg.buffer_size})")
    return cfg


def apply_overrides(cfg: Config, overrides: dict[str, Any] | list[str], where: str = "--set") -> Config:
    """Return cfg with `key=value` strings (or a mapping) applied, each key and value checked."""
    if isinstance(overrides, list):
        pairs: dict[str, Any] = {}
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"{where}: expected key=value, got '{item}'")
            key, value = item.split("=", 1)
            pairs[key.strip()] = value
        overrides = pairs
    changes = {}
    for key, value in overrides.items():
        if key not in _TYPES:
            raise ConfigError(f"{where}: unknown hyperparameter '{key}' (see `safehpo algos --params`)")
        changes[key] = _coerce(key, _TYPES[key], value, where)
    return validate(cfg.replace(**changes), where)


def resolve_device(name: str):
    """The torch.device of `--device` (auto: CUDA where there is one); ConfigError for cuda without one."""
    import torch
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return torch.device(name)
