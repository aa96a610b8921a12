"""Benchmark grids: suite validation, grid expansion, skipping and resuming, failures, Ctrl-C,
SIGKILL, and the Ray backend. Runs are tiny (50-step episodes, 32-unit networks)."""

import csv
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import TINY, write_spec
from safehpo import backends, grid, runfolder
from safehpo.bench import run_grid
from safehpo.cli import main
from safehpo.config import Config, ConfigError, apply_overrides
from safehpo.grid import expand, portable
from safehpo.runfolder import TIMING_COLUMNS
from safehpo.suite import load_suite, resolve, suite_names
from safehpo.train import train

RUN_FILES = ["checkpoint.pt", "config.yaml", "eval.csv", "progress.csv", "status.json"]
TINY_SETS = [s for s in TINY if s.split("=")[0] not in ("eval_interval", "eval_episodes", "checkpoint_interval",
                                                    "learning_starts")]


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def without_timing(table):
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in table]


def write_suite(path, env, algos=("sac-lag",), seeds=1, steps=300, overrides=None, **extra):
    doc = {"name": "tiny", "description": "a test grid", "envs": [env], "algos": list(algos), "seeds": seeds,
           "steps": steps, "learning_starts": 100, "eval_interval": 150, "eval_episodes": 1,
           "checkpoint_interval": 100, "overrides": {} if overrides is None else overrides, **extra}
    if overrides is None:
        doc["overrides"] = dict(s.split("=") for s in TINY_SETS)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def layout(out):
    return sorted(str(p.relative_to(out)) for p in Path(out).rglob("*") if p.is_file())


# ---- suites -----------------------------------------------------------------------------------
def test_shipped_suites_load():
    assert {"smoke", "quick", "paper"} <= set(suite_names())
    for name in suite_names():
        suite = load_suite(name)
        assert suite.where == f"benchmarks/{name}.yaml" and suite.envs and suite.algos and suite.seeds
    smoke, paper = load_suite("smoke"), load_suite("paper")
    assert smoke.envs == ("halfcheetah-speed",) and smoke.algos == ("sac-lag", "sac-hpo") and len(smoke.seeds) == 2
    assert set(paper.envs) == {"ant-torque", "halfcheetah-speed"} and paper.seeds == (0, 1, 2, 3, 4)
    assert paper.steps == 1_000_000 and paper.algos == ("sac-lag", "sac-hpo")


@pytest.mark.parametrize("change, field", [
    ({"step": 300}, "'step'"),                                   # typo'd key
    ({"envs": ["halfcheetah-sped"]}, "field 'envs'"),            # unknown env
    ({"algos": ["sac-lag", "sac-hop"]}, "field 'algos'"),        # unknown algorithm
    ({"overrides": {"lr": "fast"}}, "field 'overrides'"),        # bad override type
    ({"overrides": {"learning_rate": 1e-3}}, "field 'overrides'"),  # unknown hyperparameter
    ({"overrides": {"seed": 3}}, "field 'overrides.seed'"),      # the grid sets it
    ({"seeds": 0}, "field 'seeds'"),
    ({"seeds": [1, 1]}, "field 'seeds'"),
    ({"steps": "many"}, "field 'steps'"),
    ({"eval_interval": 0}, "field 'eval_interval'"),
    ({"algos": "sac-lag"}, "field 'algos'"),                     # a list is expected
    ({"env_overrides": {"ant-torque": {"lambda_min": 0.1}}}, "field 'env_overrides.ant-torque'"),  # not an env
    ({"env_overrides": {"halfcheetah-speed": {"lambda_min": -1}}}, "field 'env_overrides.halfcheetah-speed'"),
    ({"env_overrides": {"halfcheetah-speed": {"seed": 1}}}, "field 'env_overrides.halfcheetah-speed.seed'"),
    ({"env_overrides": {"halfcheetah-speed": {"steps": 9}}}, "field 'env_overrides.halfcheetah-speed.steps'"),
    ({"env_overrides": ["halfcheetah-speed"]}, "field 'env_overrides'"),
    ({"env_overrides": []}, "field 'env_overrides'"),                  # empty, but not a mapping
    ({"env_overrides": {"halfcheetah-speed": 0}}, "field 'env_overrides.halfcheetah-speed'"),
    ({"overrides": []}, "field 'overrides'"),
    ({"algo_overrides": {"ant-torque": {"sac-lag": {"pid_kp": 1}}}}, "field 'algo_overrides.ant-torque'"),  # not an env
    ({"algo_overrides": {"halfcheetah-speed": {"sac-pid": {"pid_kp": 1}}}},
     "field 'algo_overrides.halfcheetah-speed.sac-pid'"),                # not one of the suite's algos
    ({"algo_overrides": {"halfcheetah-speed": {"sac-lag": {"pid_kp": -1}}}},
     "field 'algo_overrides.halfcheetah-speed.sac-lag'"),
    ({"algo_overrides": {"halfcheetah-speed": {"sac-lag": {"algo": "sac"}}}},
     "field 'algo_overrides.halfcheetah-speed.sac-lag.algo'"),          # the grid sets it
    ({"algo_overrides": {"halfcheetah-speed": ["sac-lag"]}}, "field 'algo_overrides.halfcheetah-speed'"),
    ({"algo_overrides": {"halfcheetah-speed": {"sac-lag": 1}}}, "field 'algo_overrides.halfcheetah-speed.sac-lag'"),
    ({"algo_overrides": []}, "field 'algo_overrides'"),
])
def test_bad_suite_is_one_line_naming_file_and_field(tmp_path, change, field):
    path = write_suite(tmp_path / "suite.yaml", "halfcheetah-speed")
    doc = yaml.safe_load(path.read_text())
    doc.update(change)
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as e:
        load_suite(str(path))
    message = str(e.value)
    assert "\n" not in message and str(path) in message and field in message, message


def test_bad_suite_on_the_command_line_exits_2_before_any_run(tmp_path, capsys):
    path = write_suite(tmp_path / "suite.yaml", "halfcheetah-speed", algos=["sac-lag", "sac-hop"])
    assert main(["bench", "--suite", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "sac-hop" in err and str(path) in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, needle", [
    (["--preset", "smok"], "--preset: unknown suite 'smok'"),
    (["--preset", "smoke", "--env", "nowhere"], "--env: unknown environment 'nowhere'"),
    (["--preset", "smoke", "--algos", "sac,nope"], "--algos: unknown algorithm 'nope'"),
    (["--preset", "smoke", "--steps", "0"], "--steps"),
    (["--preset", "smoke", "--workers", "0"], "--workers"),
    (["--preset", "smoke", "--set", "batch_size=big"], "--set: 'batch_size'"),
    (["--preset", "smoke", "--set", "seed=1"], "--set: 'seed' is set by the grid"),
    (["--preset", "smoke", "--out", "/proc/no/such/dir"], "--out: cannot write to"),
])
def test_bad_flags_exit_2_with_one_line(tmp_path, capsys, flags, needle):
    assert main(["bench", *flags] + ([] if "--out" in flags else ["--out", str(tmp_path / "out")])) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and err.count("\n") == 0, err


def test_ray_backend_without_ray_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError, match=r"--backend ray needs Ray: pip install 'safehpo\[ray\]'"):
        run_grid(load_suite("smoke"), tmp_path / "out", backend="ray", progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ---- grid expansion ---------------------------------------------------------------------------
def test_grid_is_envs_x_algos_x_seeds_and_flags_override(speed_spec, torque_spec, tmp_path):
    smoke = load_suite("smoke")
    runs = expand(smoke, tmp_path)
    # seed by seed: a grid stopped part-way holds the first seeds of every algorithm
    assert [r.name for r in runs] == ["halfcheetah-speed/sac-lag/seed-0", "halfcheetah-speed/sac-hpo/seed-0",
                                      "halfcheetah-speed/sac-lag/seed-1", "halfcheetah-speed/sac-hpo/seed-1"]
    assert all(r.config.steps == smoke.steps and r.config.threads == 1 for r in runs)

    suite = resolve(smoke, envs=[speed_spec, torque_spec], algos=["sac", "hpo-conv", "sac-pid"], seeds="0,4",
                    steps="2e3", sets=["hidden=32", "eval_interval=50"])
    runs = expand(suite, tmp_path / "out")
    assert len(runs) == 2 * 3 * 2
    assert {(r.env, r.algo, r.seed) for r in runs} == {(e, a, s) for e in ("cheetah-speed-short", "cheetah-torque-short")
                                                     for a in ("sac", "hpo-conv", "sac-pid") for s in (0, 4)}
    for r in runs:
        assert r.folder == (tmp_path / "out" / r.env / r.algo / f"seed-{r.seed}").resolve()
        assert (r.config.algo, r.config.seed, r.config.steps) == (r.algo, r.seed, 2000)
        assert r.config.hidden == 32 and r.config.eval_interval == 50  # --set, a run field and a hyperparameter
        assert r.config.learning_starts == smoke.learning_starts        # the suite's, not overridden
        assert Path(r.config.env).is_absolute()                          # a spec path works from any cwd
    assert suite.overrides == {"hidden": 32} and suite.eval_interval == 50
    assert resolve(smoke, seeds=3).seeds == (0, 1, 2)


def test_env_overrides_reach_only_their_env_and_flags_win(speed_spec, torque_spec, tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({
        "name": "per-env", "envs": [speed_spec, torque_spec], "algos": ["sac-lag"], "seeds": 1, "steps": 300, "learning_starts": 100,
        "overrides": {"hidden": 32, "lambda_min": 0.05},
        "env_overrides": {speed_spec: {"lambda_min": 0.15, "budget_margin": 0.1}}}))
    suite = load_suite(str(path))
    config = {r.env: r.config for r in expand(suite, tmp_path / "out")}
    speed, torque = config["cheetah-speed-short"], config["cheetah-torque-short"]
    assert (speed.lambda_min, speed.budget_margin, speed.hidden) == (0.15, 0.1, 32)   # its own win over overrides
    assert (torque.lambda_min, torque.budget_margin, torque.hidden) == (0.05, 0.0, 32)
    # one env's suite.yaml holds that env's values as plain overrides and reproduces its runs alone
    alone = suite.for_env(speed_spec)
    assert alone.overrides == {"hidden": 32, "lambda_min": 0.15, "budget_margin": 0.1} and not alone.env_overrides
    assert expand(alone, tmp_path / "out")[0].config == speed
    # --env keeps the picked env's own values; --set replaces a key everywhere, the rest stays
    assert expand(resolve(suite, envs=[speed_spec]), tmp_path)[0].config.lambda_min == 0.15
    assert expand(resolve(suite, envs=[torque_spec]), tmp_path)[0].config.lambda_min == 0.05
    flagged = {r.env: r.config for r in expand(resolve(suite, sets=["lambda_min=0.2"]), tmp_path)}
    assert flagged["cheetah-speed-short"].lambda_min == flagged["cheetah-torque-short"].lambda_min == 0.2
    assert flagged["cheetah-speed-short"].budget_margin == 0.1
    # a copy of the spec under another name has the same id: picked by it, the env keeps its values
    other = tmp_path / "elsewhere" / "same-speed.yaml"
    other.parent.mkdir()
    shutil.copy(speed_spec, other)
    picked = resolve(suite, envs=[str(other)])
    assert list(picked.env_overrides) == [str(other)] and expand(picked, tmp_path)[0].config.lambda_min == 0.15
    # the suite.yaml a bench writes for one env makes the same runs when loaded again
    out = tmp_path / "one-env.yaml"
    out.write_text(yaml.safe_dump(alone.to_dict(), sort_keys=False))
    assert expand(load_suite(str(out)), tmp_path / "out")[0].config == speed


def test_algo_overrides_reach_only_their_algo_on_their_env_and_flags_win(speed_spec, torque_spec, tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({
        "name": "per-algo", "envs": [speed_spec, torque_spec], "algos": ["sac-lag", "sac-pid"], "seeds": 1,
        "steps": 300, "learning_starts": 100, "overrides": {"hidden": 32},
        "env_overrides": {speed_spec: {"budget_margin": 0.1, "lambda_window": 2}},
        "algo_overrides": {speed_spec: {"sac-pid": {"budget_margin": 0.2, "pid_kp": 1.0}}}}))
    suite = load_suite(str(path))
    config = {(r.env, r.algo): r.config for r in expand(suite, tmp_path / "out")}
    pid = config["cheetah-speed-short", "sac-pid"]
    assert (pid.budget_margin, pid.pid_kp, pid.lambda_window, pid.hidden) == (0.2, 1.0, 2, 32)  # its own win
    lag = config["cheetah-speed-short", "sac-lag"]
    assert (lag.budget_margin, lag.pid_kp, lag.lambda_window) == (0.1, Config.pid_kp, 2)
    assert config["cheetah-torque-short", "sac-pid"].pid_kp == Config.pid_kp                  # another env's
    # the one-env suite.yaml a bench writes keeps the algorithm's own values and makes the same runs
    alone = suite.for_env(speed_spec)
    assert alone.algo_overrides == {speed_spec: {"sac-pid": {"budget_margin": 0.2, "pid_kp": 1.0}}}
    assert not suite.for_env(torque_spec).algo_overrides
    out = tmp_path / "one-env.yaml"
    out.write_text(yaml.safe_dump(alone.to_dict(), sort_keys=False))
    assert {r.algo: r.config for r in expand(load_suite(str(out)), tmp_path / "out")} == \
        {"sac-lag": lag, "sac-pid": pid}
    # --algos keeps a picked algorithm's own values (and drops those of the others); --env too;
    # --set replaces a key everywhere, the rest of the algorithm's values stay
    only_lag = resolve(suite, algos=["sac-lag"])
    assert not only_lag.algo_overrides and expand(only_lag, tmp_path)[0].config.budget_margin == 0.1
    picked = resolve(suite, envs=[speed_spec], algos=["sac-pid"])
    assert [r.config for r in expand(picked, tmp_path / "out")] == [pid]
    flagged = {(r.env, r.algo): r.config for r in expand(resolve(suite, sets=["budget_margin=0.3"]), tmp_path)}
    assert {c.budget_margin for c in flagged.values()} == {0.3}
    assert flagged["cheetah-speed-short", "sac-pid"].pid_kp == 1.0
    # an algorithm whose every own value a flag replaces keeps no (empty) entry
    assert not resolve(suite, sets=["budget_margin=0.3", "pid_kp=0.5"]).algo_overrides
    # a copy of the spec under another name has the same id: picked by it, sac-pid keeps its values
    other = tmp_path / "elsewhere" / "same-speed.yaml"
    other.parent.mkdir()
    shutil.copy(speed_spec, other)
    assert [r.config.pid_kp for r in expand(resolve(suite, envs=[str(other)], algos=["sac-pid"]), tmp_path)] == [1.0]


def test_the_env_suite_yaml_of_a_bench_keeps_algo_overrides_of_an_env_named_relative(speed_spec, tmp_path,
                                                                                     monkeypatch):
    """`--env spec.yaml` relative to the working directory: bench writes the env by its absolute
    path (grid.portable) and must key its algo_overrides the same way, or the file will not load."""
    shutil.copy(speed_spec, tmp_path / "spec.yaml")
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "envs": ["spec.yaml"], "algos": ["sac-lag", "sac-pid"],
                                    "seeds": 1, "steps": 300, "learning_starts": 100,
                                    "algo_overrides": {"spec.yaml": {"sac-pid": {"pid_kp": 1.0}, "sac-lag": None}}}))
    monkeypatch.chdir(tmp_path)
    suite = resolve(load_suite(str(path)), envs=["spec.yaml"])
    (env,) = suite.envs
    written = tmp_path / "one-env.yaml"
    written.write_text(yaml.safe_dump(suite.for_env(env, portable(env)).to_dict(), sort_keys=False))
    monkeypatch.chdir(tmp_path.parent)
    again = load_suite(str(written))
    assert again.envs == (str(tmp_path / "spec.yaml"),)
    assert {r.algo: r.config.pid_kp for r in expand(again, tmp_path / "out")} == {"sac-lag": Config.pid_kp,
                                                                                "sac-pid": 1.0}


def test_env_overrides_errors_name_the_env_as_the_file_writes_it(speed_spec, tmp_path):
    shutil.copy(speed_spec, tmp_path / "spec.yaml")   # a spec next to the suite, named relative to it
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "envs": ["spec.yaml"], "algos": ["sac-lag"], "seeds": 1,
                                    "steps": 300, "learning_starts": 100,
                                    "env_overrides": {"spec.yaml": {"lambda_min": -1}}}))
    with pytest.raises(ConfigError, match=r"field 'env_overrides\.spec\.yaml': 'lambda_min'") as e:
        load_suite(str(path))
    assert "\n" not in str(e.value)


# ---- running a grid ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_grid(tmp_path_factory):
    """A tiny grid of 2 runs trained once by the local backend: (suite, out, result)."""
    root = tmp_path_factory.mktemp("grid")
    spec = write_spec(root / "cheetah-speed-short.yaml", "cheetah-speed-short",
                      "{kind: velocity, params: {measure: abs_x, threshold: 1.0}}", "{threshold: 2, kind: sum}")
    suite = load_suite(str(write_suite(root / "suite.yaml", spec, seeds=2, steps=300)))
    out = root / "out"
    result = run_grid(suite, out, workers=2, progress=False, command="safehpo bench --suite tiny")
    return suite, out, result


@pytest.mark.slow
def test_grid_writes_every_run_and_the_report(local_grid):
    suite, out, result = local_grid
    assert result.exit_code == 0 and not result.failed and not result.skipped
    env_dir = out / "cheetah-speed-short"
    for seed in (0, 1):
        run = env_dir / "sac-lag" / f"seed-{seed}"
        assert sorted(p.name for p in run.iterdir()) == RUN_FILES
        assert json.loads((run / "status.json").read_text())["state"] == "done"
        assert [int(r["episode"]) for r in rows(run / "progress.csv")] == list(range(6))  # 300 steps / 50
        assert yaml.safe_load((run / "config.yaml").read_text())["threads"] == 1
    assert (env_dir / "command.txt").read_text() == "safehpo bench --suite tiny\n"
    for name in ("summary.csv", "audit.csv", "report.md"):
        assert (env_dir / name).stat().st_size > 0, name
    assert result.reports == [env_dir / "report.md"]
    again = load_suite(str(env_dir / "suite.yaml"))  # the resolved suite reproduces the grid
    assert [r.config for r in expand(again, out)] == [r.config for r in result.runs]


@pytest.mark.slow
def test_rerun_skips_finished_runs(local_grid, capsys):
    suite, out, first = local_grid
    run_dir = out / "cheetah-speed-short" / "sac-lag" / "seed-0"
    before = {name: ((run_dir / name).stat().st_mtime_ns, (run_dir / name).read_bytes()) for name in RUN_FILES}
    t0 = time.perf_counter()
    result = run_grid(suite, out, workers=2, progress=False, aggregate=False)
    assert sorted(result.skipped) == sorted(r.name for r in first.runs) and result.exit_code == 0
    assert {name: ((run_dir / name).stat().st_mtime_ns, (run_dir / name).read_bytes()) for name in RUN_FILES} == before
    assert time.perf_counter() - t0 < 5  # nothing was started
    assert "2 already done, 0 to run" in capsys.readouterr().err


@pytest.mark.slow
def test_other_hyperparameters_on_existing_runs_stop_before_any_run(local_grid, capsys):
    suite, out, _ = local_grid
    before = layout(out)
    with pytest.raises(ConfigError, match=r"--out: '.*seed-0' holds a run with hidden=32, this grid asks for hidden=64"):
        run_grid(resolve(suite, sets=["hidden=64"]), out, workers=2, progress=False)
    assert layout(out) == before


@pytest.mark.slow
def test_more_steps_resume_finished_runs(local_grid, tmp_path, capsys):
    suite, out, _ = local_grid
    shutil.copytree(out, tmp_path / "out")
    result = run_grid(resolve(suite, steps=400, seeds=1), tmp_path / "out", workers=1, progress=True, aggregate=False)
    assert result.exit_code == 0 and not result.skipped
    progress = rows(tmp_path / "out" / "cheetah-speed-short" / "sac-lag" / "seed-0" / "progress.csv")
    assert [int(r["episode"]) for r in progress] == list(range(8))  # episodes 0-5 kept, 6-7 added once
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert any("300/400" in line for line in bar)        # the bar starts from the steps already done
    assert any("400/400" in line and "runs: 1 done, 0 running, 0 queued, 0 failed" in line for line in bar)


@pytest.mark.slow
def test_a_diverged_run_is_recorded_and_the_others_finish(torque_spec, tmp_path, capsys):
    """lambda_lr = 1e300 drives the multiplier to infinity on a budget no policy meets: sac-lag's
    losses become NaN, while sac (no multiplier) trains on."""
    overrides = {**dict(s.split("=") for s in TINY_SETS), "lambda_lr": 1e300}
    suite = load_suite(str(write_suite(tmp_path / "suite.yaml", torque_spec, algos=["sac-lag", "sac"], steps=200,
                                       overrides=overrides)))
    out = tmp_path / "out"
    result = run_grid(suite, out, workers=2, progress=False)
    assert {name: o.state for name, o in result.outcomes.items()} == {
        "cheetah-torque-short/sac-lag/seed-0": "failed", "cheetah-torque-short/sac/seed-0": "done"}
    assert result.exit_code == 1
    status = json.loads((out / "cheetah-torque-short" / "sac-lag" / "seed-0" / "status.json").read_text())
    assert status["state"] == "failed" and "NaN" in status["reason"]
    assert len(rows(out / "cheetah-torque-short" / "sac" / "seed-0" / "progress.csv")) == 4
    err = capsys.readouterr().err
    assert "1 done" in err and "1 failed" in err
    assert "failed: cheetah-torque-short/sac-lag/seed-0: training diverged: NaN" in err
    assert (out / "cheetah-torque-short" / "report.md").exists()  # aggregated all the same


def test_any_exception_of_a_run_is_recorded_not_raised(speed_spec, tmp_path):
    cfg = apply_overrides(Config(env=speed_spec, algo="sac-lag", steps=150), TINY)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
    outcome = grid.run_one(cfg.to_dict(), str(run_dir))
    status = json.loads((run_dir / "status.json").read_text())
    assert outcome["state"] == status["state"] == "failed"
    assert outcome["reason"] == status["reason"] and "\n" not in status["reason"] and "Error" in status["reason"]


@pytest.mark.slow
def test_a_crashed_worker_is_recorded_as_failed(tmp_path):
    run = grid.Run("e", "sac", 0, Config(), tmp_path)
    (tmp_path / "status.json").write_text(json.dumps({"state": "running", "reason": None, "steps_done": 100,
                                                      "wall_seconds": 3.0}))
    outcome = backends._local_outcome(run, -signal.SIGKILL)
    assert outcome.state == "failed" and "SIGKILL" in outcome.reason
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "failed" and "SIGKILL" in status["reason"] and status["steps_done"] == 100


@pytest.mark.slow
def test_a_run_folder_in_use_is_not_touched(speed_spec, tmp_path):
    """A second bench on the same folders must not train (or mark) a run another process trains."""
    cfg = apply_overrides(Config(env=speed_spec, algo="sac-lag", steps=150), TINY)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    fd = os.open(run_dir, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        outcome = grid.run_one(cfg.to_dict(), str(run_dir))
    finally:
        os.close(fd)
    assert outcome["state"] == "failed" and outcome["in_use"] and "in use" in outcome["reason"]
    assert list(run_dir.iterdir()) == []
    assert "in use" in backends._local_outcome(grid.Run("e", "sac", 0, cfg, run_dir), backends._EXIT_IN_USE).reason
    assert list(run_dir.iterdir()) == []


# ---- stopping a grid --------------------------------------------------------------------------
def _bench(suite_path, out):
    """The bench as started from a terminal: Ctrl-C (SIGINT) not ignored, even where these tests
    run in a background job, whose children inherit an ignored SIGINT from the shell."""
    return subprocess.Popen([sys.executable, "-m", "safehpo.cli", "bench", "--suite", str(suite_path),
                             "--out", str(out), "--workers", "1", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_rows(path, n, proc, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and len(rows(path)) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never had {n} rows (bench exit code {proc.poll()})")


@pytest.mark.slow
def test_ctrl_c_then_sigkill_then_rerun_loses_and_repeats_nothing(speed_spec, tmp_path):
    """Ctrl-C: exit 130, the run says interrupted. SIGKILL of the bench (workers die with it).
    Then the same command finishes the grid: every episode once, as in an uninterrupted run."""
    steps = 1000
    suite_path = write_suite(tmp_path / "suite.yaml", speed_spec, seeds=[3], steps=steps)
    out = tmp_path / "out"
    run_dir = out / "cheetah-speed-short" / "sac-lag" / "seed-3"

    proc = _bench(suite_path, out)
    _wait_for_rows(run_dir / "progress.csv", 5, proc)     # past the first checkpoints
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again" in err
    assert json.loads((run_dir / "status.json").read_text())["state"] == "interrupted"
    stopped_at = len(rows(run_dir / "progress.csv"))

    proc = _bench(suite_path, out)
    _wait_for_rows(run_dir / "progress.csv", stopped_at + 4, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "running", "finished before the kill"

    result = run_grid(load_suite(str(suite_path)), out, workers=1, progress=False, aggregate=False)
    assert result.exit_code == 0, result.failed  # "in use" here would mean an orphaned worker survived
    progress = rows(run_dir / "progress.csv")
    assert [int(r["episode"]) for r in progress] == list(range(steps // 50))
    reference = train(result.runs[0].config, tmp_path / "reference", progress=False).out
    assert without_timing(progress) == without_timing(rows(reference / "progress.csv"))
    assert rows(run_dir / "eval.csv") == rows(reference / "eval.csv")


# ---- Ray --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ray_backend_gives_the_same_files_and_numbers(local_grid, tmp_path):
    pytest.importorskip("ray")
    suite, local_out, _ = local_grid
    out = tmp_path / "out"
    result = run_grid(suite, out, workers=2, backend="ray", progress=False, command="safehpo bench --suite tiny")
    assert result.exit_code == 0 and not result.failed
    assert layout(out) == layout(local_out)
    for run in result.runs:
        local = local_out / run.env / run.algo / f"seed-{run.seed}"
        assert without_timing(rows(run.folder / "progress.csv")) == without_timing(rows(local / "progress.csv"))
    again = run_grid(suite, out, backend="ray", progress=False, aggregate=False)  # skips without starting Ray work
    assert len(again.skipped) == len(result.runs)


def test_fewer_steps_than_runs_already_have_is_refused_and_the_suite_says_its_length(tmp_path):
    """A bench asking 2000 steps of a folder whose runs have 3000 refuses before any run (it would
    otherwise count them done and rewrite suite.yaml); a suite run with --steps says so."""
    smoke = resolve(load_suite("smoke"), steps=3000)
    assert smoke.description.endswith("[run here with --steps 3000]")
    run = expand(smoke, tmp_path)[0]
    run.folder.mkdir(parents=True)
    (run.folder / "config.yaml").write_text(yaml.safe_dump(run.config.to_dict()))
    (run.folder / "status.json").write_text(json.dumps({"state": "done", "steps_done": 3000}))
    with pytest.raises(ConfigError, match="holds a run of 3000 steps already"):
        run_grid(resolve(load_suite("smoke"), steps=2000), tmp_path, workers=1, progress=False)
    assert not (tmp_path / "halfcheetah-speed" / "suite.yaml").exists()


def test_the_bar_counts_a_running_runs_status_between_episode_ends(tmp_path):
    """grid.steps_done: the last progress.csv row, or the later step a running run's fresh
    status.json has reached; not a stopped run's or a stale one's (a dead process); never more
    than the run asks for."""
    run = expand(resolve(load_suite("smoke"), steps=3000), tmp_path)[0]
    run.folder.mkdir(parents=True)
    (run.folder / "progress.csv").write_text("step,episode\n1000,0\n")
    status = run.folder / "status.json"
    def write(state, reached):
        status.write_text(json.dumps({"state": state, "steps_done": 0, "step_reached": reached}))
    write("running", 1400)
    assert grid.steps_done(run) == 1400
    write("running", 600)  # behind its episodes: the episodes count
    assert grid.steps_done(run) == 1000
    write("interrupted", 1400)  # stopped: only its episodes count
    assert grid.steps_done(run) == 1000
    write("running", 9000)
    assert grid.steps_done(run) == 3000
    write("running", 1400)
    old = time.time() - 2 * runfolder.LIVE_STATUS_MAX_AGE_S
    os.utime(status, (old, old))  # a "running" status nobody has rewritten for minutes
    assert grid.steps_done(run) == 1000


@pytest.mark.parametrize("every,expected", [(0.0, [(0, 100), (0, 200), (250, 300)]), (1e9, [])])
def test_train_reports_the_step_reached_within_an_episode(tmp_path, monkeypatch, every, expected):
    """With a 0-second interval, a running run's status.json says every 100 steps the step it has
    reached, inside episodes of 250 steps too, and where a resume would start (its checkpoint at
    the end of episode 0, step 250); with a long interval it writes none; the last word is "done"."""
    from safehpo import train as train_module
    spec = write_spec(tmp_path / "long.yaml", "cheetah-long", "{kind: velocity, params: {measure: abs_x, threshold: 1.0}}",
                      "{threshold: 2, kind: sum}", steps=250)
    seen = []
    real = runfolder.write_status
    def spy(folder, state, reason, steps_done, *args, **kwargs):
        seen.append((state, steps_done, kwargs.get("step_reached")))
        return real(folder, state, reason, steps_done, *args, **kwargs)
    monkeypatch.setattr(runfolder, "write_status", spy)
    monkeypatch.setattr(train_module, "STATUS_EVERY_S", every)
    train(apply_overrides(Config(env=spec, algo="sac-lag", seed=0, steps=320, device="cpu"), TINY),
          tmp_path / "run", progress=False)
    assert [(done, reached) for state, done, reached in seen if reached is not None] == expected
    assert all(state == "running" for state, _, reached in seen if reached is not None)
    assert seen[0] == ("running", 0, None) and seen[-1] == ("done", 320, None)
