"""Benchmark suites: a suite YAML in `benchmarks/` (or any file) names the envs, algorithms,
seeds, the step budget and hyperparameter overrides of a grid (`overrides` for every run,
`env_overrides` for the runs of one env, e.g. a task's own multiplier floor, `algo_overrides`
for one algorithm's runs on one env, each on top of the ones before). Loading checks
every field (a bad file is one line naming the file and the field); `resolve` applies the
command-line flags. A benchmark is data, not a script.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Config, ConfigError, apply_overrides, check_keys, data_dir, parse_int, read_yaml
from .runfolder import env_folder_name

# Fields of a suite file; those not in _REQUIRED default to Config's values (overrides: none).
SUITE_KEYS = ("name", "description", "envs", "algos", "seeds", "steps", "eval_interval", "eval_episodes",
              "learning_starts", "checkpoint_interval", "overrides", "env_overrides", "algo_overrides")
_REQUIRED = ("name", "envs", "algos", "seeds", "steps")
# Config fields that a suite sets as its own fields (and that `overrides` may therefore not name)
_RUN_FIELDS = ("steps", "eval_interval", "eval_episodes", "learning_starts", "checkpoint_interval")
# Config fields that the grid sets for each run
_GRID_FIELDS = {"env": "envs", "algo": "algos", "seed": "seeds"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


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
    env_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # env (as in envs) -> its own
    algo_overrides: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # env -> algo -> its own
    description: str = ""
    where: str = ""                       # the file it came from, as error messages name it

    def to_dict(self) -> dict[str, Any]:
        """The suite as a suite file holds it (what `OUT/<env>/suite.yaml` is written from)."""
        doc = {"name": self.name, "description": self.description, "envs": list(self.envs),
               "algos": list(self.algos), "seeds": list(self.seeds), "steps": self.steps,
               "eval_interval": self.eval_interval, "eval_episodes": self.eval_episodes,
               "learning_starts": self.learning_starts, "checkpoint_interval": self.checkpoint_interval,
               "overrides": dict(self.overrides)}
        if self.env_overrides:
            doc["env_overrides"] = {env: dict(values) for env, values in self.env_overrides.items()}
        if self.algo_overrides:
            doc["algo_overrides"] = {env: {algo: dict(values) for algo, values in by_algo.items()}
                                     for env, by_algo in self.algo_overrides.items()}
        return doc

    def for_env(self, env: str, written: str | None = None) -> Suite:
        """The one-env suite of `env`, named `written` (default: as it is): its env_overrides merged
        into `overrides`, its algo_overrides kept (what its folder's suite.yaml holds, so that file
        alone reproduces that env's runs)."""
        written = written or env
        own = {written: dict(self.algo_overrides[env])} if self.algo_overrides.get(env) else {}
        return _replace(self, envs=(written,), overrides={**self.overrides, **self.env_overrides.get(env, {})},
                        env_overrides={}, algo_overrides=own)

    def base_config(self, env: str | None = None, algo: str | None = None) -> Config:
        """The Config every run of the suite (of `env`, with its env_overrides, and of `algo` there,
        with its algo_overrides) starts from; env, algo and seed are set per run."""
        cfg = Config(steps=self.steps, eval_interval=self.eval_interval, eval_episodes=self.eval_episodes,
                     learning_starts=self.learning_starts, checkpoint_interval=self.checkpoint_interval,
                     threads=1)
        cfg = apply_overrides(cfg, dict(self.overrides), f"{self.where}: field 'overrides'")
        if env in self.env_overrides:
            cfg = apply_overrides(cfg, dict(self.env_overrides[env]), f"{self.where}: field 'env_overrides.{env}'")
        if algo in self.algo_overrides.get(env, {}):
            cfg = apply_overrides(cfg, dict(self.algo_overrides[env][algo]),
                                  f"{self.where}: field 'algo_overrides.{env}.{algo}'")
        return cfg


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
    overrides = _overrides(raw.get("overrides"), where, "overrides")
    suite = Suite(name=name, description=description.strip(), envs=envs, algos=algos, seeds=seeds,
                  overrides=overrides, where=where, **numbers)
    cfg = suite.base_config()  # checks every override's key and value
    env_overrides = _per_env(raw, suite, "env_overrides", "hyperparameters",
                             lambda env, values, name: _own(cfg, values, where, name))
    suite = _replace(suite, overrides={key: getattr(cfg, key) for key in overrides}, env_overrides=env_overrides)

    def algos_of(env: str, by_algo: Any, name: str) -> dict[str, dict[str, Any]]:
        by_algo = _mapping(by_algo, where, name, "algo -> hyperparameters")
        for algo in by_algo:
            if algo not in algos:
                raise ConfigError(f"{where}: field '{name}.{algo}': not one of the suite's algos ({', '.join(algos)})")
        env_cfg = suite.base_config(env)
        return {algo: _own(env_cfg, values, where, f"{name}.{algo}") for algo, values in by_algo.items()}
    return _replace(suite, algo_overrides=_nonempty(_per_env(raw, suite, "algo_overrides", "algo -> hyperparameters",
                                                             algos_of)))


def _per_env(raw: dict, suite: Suite, field_name: str, what: str, each) -> dict[str, Any]:
    """A field keyed by the suite's envs as `envs` writes them, each value read by
    `each(env, value, its field name)`; the result keyed by the env as loaded."""
    by_written = _mapping(raw.get(field_name), suite.where, field_name, f"env -> {what}")
    result = {}
    for written, value in by_written.items():
        if written not in raw["envs"]:
            raise ConfigError(f"{suite.where}: field '{field_name}.{written}': not one of the suite's envs "
                              f"({', '.join(raw['envs'])})")
        env = suite.envs[raw["envs"].index(written)]
        result[env] = each(env, value, f"{field_name}.{written}")
    return result


def _own(cfg: Config, raw: Any, where: str, field_name: str) -> dict[str, Any]:
    """Hyperparameters of part of the grid, checked on top of `cfg`, typed as Config types them."""
    values = _overrides(raw, where, field_name)
    own = apply_overrides(cfg, values, f"{where}: field '{field_name}'")
    return {key: getattr(own, key) for key in values}


def _mapping(value: Any, where: str, field_name: str, what: str) -> dict:
    """A mapping with text keys; an absent or empty (`key:` with nothing after it) field is {}, anything
    else is checked as written (so `[]` or `0` is refused, not read as nothing)."""
    value = {} if value is None else value
    if not (isinstance(value, dict) and all(isinstance(k, str) for k in value)):
        raise ConfigError(f"{where}: field '{field_name}': expected a mapping of {what}, got {value!r}")
    return value


def _overrides(raw: Any, where: str, field_name: str) -> dict[str, Any]:
    """A mapping of Config hyperparameters other than those the grid or the suite's fields set."""
    raw = _mapping(raw, where, field_name, "hyperparameters")
    for key in raw:
        if key in _GRID_FIELDS:
            raise ConfigError(f"{where}: field '{field_name}.{key}': set by the grid; use the field "
                              f"'{_GRID_FIELDS[key]}'")
        if key in _RUN_FIELDS:
            raise ConfigError(f"{where}: field '{field_name}.{key}': use the suite field '{key}'")
    return dict(raw)


def resolve(suite: Suite, envs: list[str] | None = None, algos: list[str] | None = None,
            seeds: str | int | list[int] | None = None, steps: int | None = None,
            sets: list[str] | None = None) -> Suite:
    """The suite with the command-line flags applied (flags win); every value checked.

    `sets` are `--set key=value` strings: a run field (steps, eval_interval, ...) replaces the
    suite's, any other hyperparameter joins the overrides and replaces that key in every env's
    env_overrides and algo_overrides. An env picked with `envs` keeps the env_overrides and
    algo_overrides of the suite's env with its id; algorithms picked with `algos` keep theirs.
    """
    changes: dict[str, Any] = {}
    if envs:
        check_envs(envs, "--env")
        changes["envs"] = _unique(envs, "--env")
        changes["env_overrides"] = _by_id(suite.env_overrides, changes["envs"])
        changes["algo_overrides"] = _by_id(suite.algo_overrides, changes["envs"])
    if algos:
        check_algos(algos, "--algos")
        changes["algos"] = _unique(algos, "--algos")
        by_env = changes.get("algo_overrides", suite.algo_overrides)
        changes["algo_overrides"] = _nonempty({env: {a: v for a, v in by_algo.items() if a in changes["algos"]}
                                               for env, by_algo in by_env.items()})
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
                         overrides={**suite.overrides, **{k: getattr(cfg, k) for k in keys if k not in _RUN_FIELDS}},
                         env_overrides={env: {k: v for k, v in values.items() if k not in keys}
                                        for env, values in suite.env_overrides.items()},
                         algo_overrides=_nonempty({env: {algo: {k: v for k, v in values.items() if k not in keys}
                                                         for algo, values in by_algo.items()}
                                                   for env, by_algo in suite.algo_overrides.items()}))
    try:
        for env in (None, *suite.envs):  # the merged result must still be a valid Config for every run
            for algo in (None, *suite.algos):
                suite.base_config(env, algo)
    except ConfigError as e:
        raise ConfigError(f"{e} (with {' '.join('--set ' + item for item in sets)})" if sets else str(e)) from None
    return suite


def _nonempty(algo_overrides: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """algo_overrides without the algorithms left with no values of their own (and envs with none)."""
    kept = {env: {algo: values for algo, values in by_algo.items() if values}
            for env, by_algo in algo_overrides.items()}
    return {env: by_algo for env, by_algo in kept.items() if by_algo}


def _by_id(by_env: dict[str, Any], picked) -> dict[str, Any]:
    """Each picked env -> the values of the suite's env with its id (a spec may be named by another path)."""
    own = {env_id(env): values for env, values in by_env.items()}
    ids = {env: env_id(env) for env in picked}
    return {env: own[i] for env, i in ids.items() if i in own}


def env_id(env: str) -> str:
    """An env's folder name under OUT: its spec's id, made safe as a folder name."""
    from .cmdp import load_spec
    return env_folder_name(load_spec(env).id)


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
    from .algos import check_algo
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
