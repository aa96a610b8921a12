"""Constrained MDPs (docs/cmdps.md): a gymnasium env plus a per-step cost c_t >= 0 and a budget.

A spec is a YAML file in `envs/` (data, not code). `make_env` builds the base env with
`gymnasium.make` and wraps it in `CMDP`, which adds `info["cost"]` to every step and offers the
safety-gymnasium 6-tuple through `step6`. A bad spec raises `ConfigError` with one line naming
the file and the field.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from safehpo.config import ConfigError, check_keys, data_dir, read_yaml


@dataclass(frozen=True)
class CostSpec:
    kind: str                     # a key of COST_KINDS
    params: dict                  # that kind's parameters, defaults filled in


@dataclass(frozen=True)
class BudgetSpec:
    threshold: float              # d0, in the spec's cost units
    kind: str                     # average | sum | discounted


@dataclass(frozen=True)
class EnvSpec:
    id: str
    base: str                     # gymnasium id
    kwargs: dict                  # passed to gymnasium.make
    cost: CostSpec
    budget: BudgetSpec | None
    max_episode_steps: int
    description: str = ""
    source: str = ""
    path: str = ""                # the file it came from, as shown in error messages

    @property
    def measure_kind(self) -> str:
        """How an episode's cost is measured: the budget's kind, or the plain sum without a budget."""
        return self.budget.kind if self.constrained else "sum"

    @property
    def constrained(self) -> bool:
        return self.cost.kind != "none" and self.budget is not None


# ---------------------------------------------------------------------------------------------
# Cost functions: cost(env, action, info, **params) -> c_t, called after the base env's step.

def no_cost(env: gymnasium.Env, action: np.ndarray, info: dict) -> float:
    """Unconstrained specs: c_t = 0."""
    return 0.0


def torque_cost(env: gymnasium.Env, action: np.ndarray, info: dict, gear: Any = "auto") -> float:
    """Mean over motors of |applied torque|: mean_i |gear_i * clip(a_i, ctrlrange_i)| (ant-torque).

    MuJoCo clamps a control to its ctrlrange before applying it, so an action outside the box
    costs what its clipped value costs. gear "auto" reads the model's actuator gears.
    """
    model = env.unwrapped.model
    gear = model.actuator_gear[:, 0] if gear == "auto" else np.asarray(gear, dtype=np.float64)
    low, high = model.actuator_ctrlrange.T
    action = np.asarray(action, dtype=np.float64)
    ctrl = np.where(model.actuator_ctrllimited, np.clip(action, low, high), action)
    return float(np.mean(np.abs(gear * ctrl)))


def velocity_cost(env: gymnasium.Env, action: np.ndarray, info: dict,
                  measure: str, threshold: float) -> float:
    """Speed indicator 1[v > threshold] (Safety-Gymnasium velocity tasks, halfcheetah-speed).

    v is the signed x-velocity (`x`), its magnitude (`abs_x`) or the xy-norm (`xy`), read from
    the base env's info (torso velocity for Ant, centre of mass for Humanoid).
    """
    if measure == "x":
        v = info["x_velocity"]
    elif measure == "abs_x":
        v = abs(info["x_velocity"])
    else:
        v = math.hypot(info["x_velocity"], info["y_velocity"])
    return float(v > threshold)


def reported_cost(env: gymnasium.Env, action: np.ndarray, info: dict) -> float:
    """The base env reports its own cost in info["cost"] (Safety-Gymnasium tasks via `safety:`)."""
    return float(info["cost"])


COST_KINDS: dict[str, Callable[..., float]] = {
    "none": no_cost,
    "torque": torque_cost,
    "velocity": velocity_cost,
    "env": reported_cost,
}


def step_cost(cost: CostSpec, env: gymnasium.Env, action: np.ndarray, info: dict) -> float:
    """c_t of one step of `env` (the base env, after it stepped) under the cost spec."""
    return COST_KINDS[cost.kind](env, action, info, **cost.params)


# ---------------------------------------------------------------------------------------------
# Budgets (docs/cmdps.md)

BUDGET_KINDS = ("average", "sum", "discounted")


def discount_horizon(gamma: float, steps: int) -> float:
    """sum_{t<T} gamma^t = (1 - g^T) / (1 - g), and T when g = 1."""
    return float(steps) if gamma == 1.0 else (1.0 - gamma**steps) / (1.0 - gamma)


def discounted_budget(spec: EnvSpec, gamma: float) -> float:
    """The budget in the units of a discounted cost critic Q_C.

    discounted: d0; average: d0 (1-g^T)/(1-g); sum: (d0/T)(1-g^T)/(1-g), T = max_episode_steps.
    (A constant per-step cost that meets the budget exactly has this discounted sum.)
    """
    if spec.budget is None:
        raise ValueError(f"{spec.id}: unconstrained spec has no budget")
    d0, steps = spec.budget.threshold, spec.max_episode_steps
    if spec.budget.kind == "discounted":
        return d0
    if spec.budget.kind == "average":
        return d0 * discount_horizon(gamma, steps)
    if spec.budget.kind == "sum":
        return d0 / steps * discount_horizon(gamma, steps)
    raise ValueError(f"unknown budget kind '{spec.budget.kind}'")


def lagrangian_cost_units(spec: EnvSpec, gamma: float, relative: bool) -> tuple[float, float]:
    """(unit, offset) of the cost the cost critic learns: (c - offset) / unit (docs/multiplier.md).

    relative: unit is the per-step budget d_step = d0' / sum_{t<T} gamma^t (a constant cost of
    d_step per step meets the budget exactly: d0 for average, d0 / T for sum budgets), so lambda
    trades reward against cost in multiples of the budget on every kind; for an average budget
    the offset is d0: the constraint mean_t c_t <= d0 is sum_t (c_t - d0) <= 0 over the episode's
    own length, so ending an episode early earns nothing. paper: (1, 0), the spec's cost as it is.
    """
    if not relative:
        return 1.0, 0.0
    d_step = discounted_budget(spec, gamma) / discount_horizon(gamma, spec.max_episode_steps)
    unit = d_step if d_step > 0 else 1.0
    return unit, (spec.budget.threshold if spec.budget.kind == "average" else 0.0)


def episode_seed(seed: int, episode: int) -> int:
    """The reset seed of episode `episode` of a run seeded with `seed`."""
    return (seed * 1_000_003 + episode) % (2**31)


def episode_cost_measure(costs: np.ndarray, kind: str, gamma: float) -> float:
    """J_C of one finished episode in the budget's kind.

    average: mean per-step cost; sum: undiscounted sum; discounted: sum_t gamma^t c_t.
    """
    costs = np.asarray(costs, dtype=np.float64)
    if costs.size == 0:
        raise ValueError("an episode has at least one step")
    if kind == "average":
        return float(costs.mean())
    if kind == "sum":
        return float(costs.sum())
    if kind == "discounted":
        return float(np.sum(gamma ** np.arange(costs.size) * costs))
    raise ValueError(f"unknown budget kind '{kind}' (known: {', '.join(BUDGET_KINDS)})")


# ---------------------------------------------------------------------------------------------
# The wrapper

class CMDP(gymnasium.Wrapper):
    """A gymnasium env with a per-step cost: `info["cost"]` on every step; reward unchanged."""

    def __init__(self, env: gymnasium.Env, spec: EnvSpec):
        super().__init__(env)
        self.cmdp_spec = spec

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["cost"] = step_cost(self.cmdp_spec.cost, self.env, action, info)
        return obs, reward, terminated, truncated, info

    def step6(self, action):
        """Safety-gymnasium style: (obs, reward, cost, terminated, truncated, info)."""
        obs, reward, terminated, truncated, info = self.step(action)
        return obs, reward, info["cost"], terminated, truncated, info


_HARMLESS_MUJOCO_WARNINGS = ("compiler attribute 'settotalmass' is deprecated",)  # in gymnasium's own XML


def _route_mujoco_warnings() -> None:
    """Send MuJoCo's C-level warnings through Python's `warnings` instead of raw stderr, dropping
    the deprecation notice that gymnasium's HalfCheetah/Swimmer XML triggers on every build."""
    import mujoco

    def on_warning(message: str) -> None:
        if not message.startswith(_HARMLESS_MUJOCO_WARNINGS):
            warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)

    if getattr(mujoco, "set_mju_user_warning", None) and mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(on_warning)


def make_env(spec: EnvSpec, seed: int | None = None) -> CMDP:
    """gymnasium.make(base, max_episode_steps=..., **kwargs) wrapped in CMDP.

    With a seed, the env's RNG (by a first reset(seed=seed)) and its action space are seeded,
    so later unseeded resets and action_space.sample() are reproducible. Gymnasium's "v4 is out
    of date" warning is silenced: the velocity tasks wrap v4 on purpose.
    """
    where = spec.path or spec.id
    _route_mujoco_warnings()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is out of date", category=DeprecationWarning)
        try:
            env = gymnasium.make(spec.base, max_episode_steps=spec.max_episode_steps, **spec.kwargs)
        except (TypeError, ValueError) as e:
            if not spec.kwargs:
                raise
            raise ConfigError(f"{where}: field 'kwargs': {spec.base} rejects them: {_one_line(e)}") from None
        _check_cost_fits(spec, env, where)
    cmdp = CMDP(env, spec)
    if seed is not None:
        cmdp.reset(seed=seed)
        cmdp.action_space.seed(seed)
        cmdp.observation_space.seed(seed)
    return cmdp


def _check_cost_fits(spec: EnvSpec, env: gymnasium.Env, where: str) -> None:
    """Checks of the cost against the real env, at make time: gears, and the info keys it reads."""
    cost = spec.cost
    if cost.kind == "torque":
        model = getattr(env.unwrapped, "model", None)
        if model is None:
            raise ConfigError(f"{where}: field 'cost.kind': 'torque' needs a MuJoCo env, "
                              f"{spec.base} has no model")
        gear = cost.params["gear"]
        if isinstance(gear, list) and len(gear) != model.nu:
            raise ConfigError(f"{where}: field 'cost.params.gear': {len(gear)} gears "
                              f"for {model.nu} motors of {spec.base}")
    needed = ()
    if cost.kind == "velocity":
        needed = ("x_velocity", "y_velocity") if cost.params["measure"] == "xy" else ("x_velocity",)
    elif cost.kind == "env":
        needed = ("cost",)
    if needed:  # one step of a throwaway copy shows what the base env reports (~5 ms)
        info_keys = _step_info_keys(spec)
        missing = [key for key in needed if key not in info_keys]
        if missing:
            field = "cost.params.measure" if cost.kind == "velocity" else "cost.kind"
            raise ConfigError(f"{where}: field '{field}': {spec.base} reports no info['{missing[0]}'] "
                              f"(its info keys: {', '.join(info_keys)})")


_INFO_KEYS: dict[str, tuple[str, ...]] = {}  # (base, kwargs, steps) -> info keys of one step


def _step_info_keys(spec: EnvSpec) -> tuple[str, ...]:
    """The info keys of one step of a throwaway copy of the base env (built once per process)."""
    key = repr((spec.base, sorted(spec.kwargs.items()), spec.max_episode_steps))
    if key not in _INFO_KEYS:
        probe = gymnasium.make(spec.base, max_episode_steps=spec.max_episode_steps, **spec.kwargs)
        probe.reset(seed=0)
        info = probe.step(probe.action_space.sample())[4]
        probe.close()
        _INFO_KEYS[key] = tuple(sorted(info))
    return _INFO_KEYS[key]


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


# ---------------------------------------------------------------------------------------------
# Specs: loading and validation

_KEYS = ("id", "base", "kwargs", "cost", "budget", "max_episode_steps", "description", "source")
_REQUIRED = ("id", "base", "cost", "max_episode_steps")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MEASURES = ("x", "abs_x", "xy")
_NO_DEFAULT = object()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_gear(value: Any) -> str | None:
    if value == "auto" or (_is_number(value) and value > 0):
        return None
    if isinstance(value, list) and value and all(_is_number(g) and g > 0 for g in value):
        return None
    return "expected 'auto', a number > 0 or a list of numbers > 0"


# kind -> {parameter: (default, check)}; check(value) returns what was expected, or None if fine
_COST_PARAMS: dict[str, dict[str, tuple[Any, Callable[[Any], str | None]]]] = {
    "none": {},
    "torque": {"gear": ("auto", _check_gear)},
    "velocity": {
        "measure": (_NO_DEFAULT,
                    lambda v: None if v in _MEASURES else f"expected one of {', '.join(_MEASURES)}"),
        "threshold": (_NO_DEFAULT, lambda v: None if _is_number(v) else "expected a number"),
    },
    "env": {},
}


def _mapping(value: Any, allowed: tuple[str, ...], where: str, field: str) -> dict:
    """value must be a mapping whose keys are among `allowed`."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: field '{field}': expected a mapping, got {value!r}")
    for key in value:
        if key not in allowed:
            raise ConfigError(f"{where}: field '{field}': unknown key '{key}' "
                              f"(allowed: {', '.join(allowed)})")
    return value


def _parse_cost(raw: Any, where: str) -> CostSpec:
    raw = _mapping(raw, ("kind", "params"), where, "cost")
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in COST_KINDS:
        got = "missing" if kind is None else f"unknown cost kind {kind!r}"
        raise ConfigError(f"{where}: field 'cost.kind': {got} (known: {', '.join(COST_KINDS)})")
    schema = _COST_PARAMS[kind]
    given = {} if raw.get("params") is None else raw["params"]
    if not isinstance(given, dict):
        raise ConfigError(f"{where}: field 'cost.params': expected a mapping, got {given!r}")
    for name in given:
        if name not in schema:
            allowed = ", ".join(schema) or "none"
            raise ConfigError(f"{where}: field 'cost.params': unknown parameter '{name}' "
                              f"for cost kind '{kind}' (allowed: {allowed})")
    params = {}
    for name, (default, check) in schema.items():
        if name not in given and default is _NO_DEFAULT:
            raise ConfigError(f"{where}: field 'cost.params.{name}': missing (cost kind '{kind}' needs it)")
        value = given.get(name, default)
        problem = check(value)
        if problem:
            raise ConfigError(f"{where}: field 'cost.params.{name}': {problem}, got {value!r}")
        params[name] = value
    return CostSpec(kind, params)


def _parse_budget(raw: Any, where: str) -> BudgetSpec | None:
    if raw is None:
        return None
    raw = _mapping(raw, ("threshold", "kind"), where, "budget")
    threshold, kind = raw.get("threshold"), raw.get("kind")
    if not (_is_number(threshold) and threshold >= 0):
        raise ConfigError(f"{where}: field 'budget.threshold': expected a number >= 0, got {threshold!r}")
    if kind not in BUDGET_KINDS:
        raise ConfigError(f"{where}: field 'budget.kind': expected one of {', '.join(BUDGET_KINDS)}, "
                          f"got {kind!r}")
    return BudgetSpec(float(threshold), kind)


def _parse_spec(raw: Any, where: str) -> EnvSpec:
    """Validate one spec mapping; every problem is a ConfigError naming `where` and the field."""
    check_keys(raw, where, _KEYS, _REQUIRED)
    if not (isinstance(raw["id"], str) and _ID.fullmatch(raw["id"])):
        raise ConfigError(f"{where}: field 'id': expected a name of letters, digits, '.', '_', '-', "
                          f"got {raw['id']!r}")
    base = raw["base"]
    if not isinstance(base, str) or base not in gymnasium.registry:
        raise ConfigError(f"{where}: field 'base': unknown gymnasium env {base!r}")
    kwargs = {} if raw.get("kwargs") is None else raw["kwargs"]
    if not (isinstance(kwargs, dict) and all(isinstance(k, str) for k in kwargs)):
        raise ConfigError(f"{where}: field 'kwargs': expected a mapping of argument names, got {kwargs!r}")
    steps = raw["max_episode_steps"]
    if not (isinstance(steps, int) and not isinstance(steps, bool) and steps > 0):
        raise ConfigError(f"{where}: field 'max_episode_steps': expected an integer > 0, got {steps!r}")
    for key in ("description", "source"):
        if not isinstance(raw.get(key, ""), str):
            raise ConfigError(f"{where}: field '{key}': expected text, got {raw[key]!r}")
    cost, budget = _parse_cost(raw["cost"], where), _parse_budget(raw.get("budget"), where)
    if cost.kind == "none" and budget is not None:
        raise ConfigError(f"{where}: field 'budget': a spec with cost kind 'none' has nothing to budget "
                          f"(remove the budget, or give a cost)")
    return EnvSpec(id=raw["id"], base=base, kwargs=dict(kwargs), cost=cost, budget=budget, max_episode_steps=steps,
                   description=raw.get("description", "").strip(), source=raw.get("source", "").strip(),
                   path=where)


def _read_spec(path: Path) -> EnvSpec:
    if path.is_dir():
        raise ConfigError(f"--env: '{path}' is a folder; give a spec file (.yaml) or a spec name")
    envs = data_dir("envs").resolve()
    shipped = path.resolve().parent == envs
    where = f"envs/{path.name}" if shipped else str(path)
    spec = _parse_spec(read_yaml(path, where), where)
    if shipped and spec.id != path.stem:
        raise ConfigError(f"{where}: field 'id': '{spec.id}' differs from the file name '{path.stem}'")
    return spec


def list_specs() -> list[EnvSpec]:
    """Every spec in envs/, sorted by id."""
    return sorted((_read_spec(p) for p in data_dir("envs").glob("*.yaml")), key=lambda s: s.id)


def load_spec(name_or_path: str) -> EnvSpec:
    """A shipped spec by id ("ant-torque"), a YAML file by path, or "safety:<TaskId>"."""
    if name_or_path.startswith("safety:"):
        return _safety_spec(name_or_path)
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or len(path.parts) > 1 or path.is_dir():
        return _read_spec(path)
    shipped = data_dir("envs") / f"{name_or_path}.yaml"
    if not shipped.is_file():
        known = sorted(p.stem for p in data_dir("envs").glob("*.yaml"))
        raise ConfigError(f"unknown environment '{name_or_path}' (known: {', '.join(known)})")
    return _read_spec(shipped)


def _safety_spec(name: str) -> EnvSpec:
    """A Safety-Gymnasium task, through the gymnasium-API ids it registers (cost in info["cost"])."""
    task = name.split(":", 1)[1]
    try:
        import safety_gymnasium  # noqa: F401  (registers its tasks with gymnasium)
    except Exception:  # ImportError, or a broken install
        raise ConfigError(f"{name}: safety-gymnasium is not importable here "
                          "(pip install safety-gymnasium; it needs Python <= 3.10)") from None
    env_name, _, version = task.partition("-")
    base = f"{env_name}Gymnasium-{version}"
    if base not in gymnasium.registry:
        raise ConfigError(f"{name}: unknown Safety-Gymnasium task '{task}'")
    return EnvSpec(id=name, base=base, kwargs={}, cost=CostSpec("env", {}),
                   budget=BudgetSpec(25.0, "sum"),
                   max_episode_steps=gymnasium.registry[base].max_episode_steps or 1000,
                   description=f"Safety-Gymnasium task {task}, its own cost; budget sum <= 25",
                   source="Safety-Gymnasium (PKU-Alignment); budget 25 is the common default", path=name)
