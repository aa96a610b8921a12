"""One run end to end on real MuJoCo: files, determinism, SIGKILL + resume, multiplier, CLI errors."""

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import TINY, write_spec
from safehpo.cli import main
from safehpo.config import Config, ConfigError, apply_overrides
from safehpo.runfolder import (LEGACY_DEFAULTS, PROGRESS_COLUMNS, RESUMABLE_CHANGES, TIMING_COLUMNS, config_mismatch,
                               unread_settings)
from safehpo.train import train


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def without_timing(table):
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in table]


def tiny_cfg(spec, algo="sac-lag", steps=600, seed=0, extra=()):
    return apply_overrides(Config(env=spec, algo=algo, seed=seed, steps=steps), TINY + list(extra))


def test_run_writes_every_file_and_rows_per_episode(speed_spec, tmp_path):
    out = tmp_path / "run"
    result = train(tiny_cfg(speed_spec), out, progress=False)
    for name in ("config.yaml", "progress.csv", "eval.csv", "checkpoint.pt", "status.json"):
        assert (out / name).stat().st_size > 0, name
    progress = rows(out / "progress.csv")
    assert list(progress[0]) == PROGRESS_COLUMNS
    assert [int(r["episode"]) for r in progress] == list(range(12))  # 600 steps / 50-step episodes
    assert [int(r["step"]) for r in progress] == list(range(50, 601, 50))
    assert len(rows(out / "eval.csv")) == 3  # steps 200, 400, 600
    assert result.state == "done"
    config = (out / "config.yaml").read_text()  # plain YAML a reader can follow: no anchors or aliases
    assert "&id" not in config and "*id" not in config and "threshold:" in config


def test_same_seed_same_progress(speed_spec, tmp_path):
    torch.set_num_threads(1)
    a = train(tiny_cfg(speed_spec, steps=400), tmp_path / "a", progress=False).out
    b = train(tiny_cfg(speed_spec, steps=400), tmp_path / "b", progress=False).out
    c = train(tiny_cfg(speed_spec, steps=400, seed=1), tmp_path / "c", progress=False).out
    assert without_timing(rows(a / "progress.csv")) == without_timing(rows(b / "progress.csv"))
    assert rows(a / "eval.csv") == rows(b / "eval.csv")
    assert without_timing(rows(a / "progress.csv")) != without_timing(rows(c / "progress.csv"))


def test_lambda_rises_while_the_budget_is_exceeded(torque_spec, tmp_path):
    out = train(tiny_cfg(torque_spec, steps=400), tmp_path / "run", progress=False).out
    progress = rows(out / "progress.csv")
    assert all(r["violated"] == "1" for r in progress)
    warmup = [float(r["lambda"]) for r in progress if int(r["step"]) <= 100]   # learning_starts = 100
    lambdas = [float(r["lambda"]) for r in progress if int(r["step"]) > 100]
    assert warmup == [0.0, 0.0]  # uniform warm-up actions do not move the multiplier
    assert lambdas[0] > 0 and all(b > a for a, b in zip(lambdas, lambdas[1:]))


@pytest.mark.slow
@pytest.mark.parametrize("algo, compile_mode", [("sac-lag", "never"), ("sac-hpo", "always")])
def test_sigkill_then_resume_equals_an_uninterrupted_run(speed_spec, tmp_path, capfd, algo, compile_mode):
    """Also through torch.compile: the resumed process compiles afresh, at the checkpoint's lambda."""
    args = ["--env", speed_spec, "--algo", algo, "--seed", "3", "--steps", "900", "--quiet"]
    args += [x for s in TINY + [f"compile={compile_mode}"] for x in ("--set", s)]
    reference = tmp_path / "reference"
    assert main(["train", *[a for a in args if a != "--quiet"], "--out", str(reference)]) == 0
    # its progress bar says why it stands still at learning_starts where the run compiles
    reference_stderr = capfd.readouterr().err
    assert ("compiling the update (torch.compile" in reference_stderr) == (compile_mode == "always")

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "safehpo.cli", "train", *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (killed / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # let it run past the checkpoint, so there is work to lose
    proc.send_signal(signal.SIGKILL)
    killed_stderr = proc.communicate()[1]
    status = (killed / "status.json").read_text()
    assert '"running"' in status, "the run finished before it could be killed; the test proves nothing"
    ckpt = torch.load(killed / "checkpoint.pt", weights_only=False)

    assert main(["train", *args, "--out", str(killed), "--resume"]) == 0
    progress = rows(killed / "progress.csv")
    assert [int(r["episode"]) for r in progress] == list(range(18))  # each episode exactly once
    assert without_timing(progress) == without_timing(rows(reference / "progress.csv"))
    assert rows(killed / "eval.csv") == rows(reference / "eval.csv")
    assert ckpt["buffer"]["size"] == ckpt["step"]  # the buffer saved with the checkpoint is whole
    # compiled where asked, in all three processes (the killed one included), eager otherwise
    assert "torch.compile failed" not in reference_stderr + killed_stderr + capfd.readouterr().err
    assert json.loads((killed / "status.json").read_text())["compiled"] == (compile_mode == "always")


def test_resume_of_a_finished_run_does_nothing(speed_spec, tmp_path):
    out = train(tiny_cfg(speed_spec, steps=200), tmp_path / "run", progress=False).out
    before = (out / "progress.csv").read_bytes()
    result = train(tiny_cfg(speed_spec, steps=200), out, resume=True, progress=False)
    assert result.state == "done" and (out / "progress.csv").read_bytes() == before


def test_a_finished_run_extended_trains_on_every_transition_it_made(speed_spec, tmp_path):
    """A larger --steps gives the run a larger buffer: the transitions of its first part stay in
    the order made, and the new ones follow them (no unwritten row is ever sampled)."""
    out = train(tiny_cfg(speed_spec, steps=200), tmp_path / "run", progress=False).out
    first = torch.load(out / "checkpoint.pt", weights_only=False)["buffer"]
    assert (first["size"], first["pos"]) == (200, 0)  # a full ring: the buffer held min(buffer_size, steps)
    train(tiny_cfg(speed_spec, steps=350), out, resume=True, progress=False)
    extended = torch.load(out / "checkpoint.pt", weights_only=False)["buffer"]
    assert (extended["size"], extended["pos"]) == (350, 0)
    for f in ("obs", "act", "next_obs"):
        assert (extended[f][:200] == first[f]).all(), f
        assert (abs(extended[f][200:]).sum(axis=1) > 0).all(), f  # real transitions, not unwritten rows
    assert [int(r["step"]) for r in rows(out / "progress.csv")][-1] == 350


def test_resume_with_other_hyperparameters_is_refused(speed_spec, tmp_path):
    out = train(tiny_cfg(speed_spec, steps=200), tmp_path / "run", progress=False).out
    proc = run_cli("train", "--env", speed_spec, "--algo", "sac-lag", "--steps", "400", "--resume", "--quiet",
                   *[x for s in TINY + ["lr=0.001"] for x in ("--set", s)], "--out", str(out))
    assert proc.returncode == 2 and "lr=0.0003" in proc.stderr and "lr=0.001" in proc.stderr


def test_resume_of_a_checkpoint_of_another_format_is_refused(speed_spec, tmp_path):
    out = train(tiny_cfg(speed_spec, steps=200), tmp_path / "run", progress=False).out
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    del state["format"]  # as written before the format was recorded
    torch.save(state, out / "checkpoint.pt")
    before = (out / "progress.csv").read_bytes()
    proc = run_cli("train", "--env", speed_spec, "--algo", "sac-lag", "--steps", "400", "--resume", "--quiet",
                   *[x for s in TINY for x in ("--set", s)], "--out", str(out))
    assert proc.returncode == 2 and "checkpoint format 1, this one reads 2" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and (out / "progress.csv").read_bytes() == before


def test_hpo_filter_rejects_and_counts(torque_spec, tmp_path):
    """With a budget no action can meet, eps_L < 0 and the Lyapunov filter must reject."""
    out = train(tiny_cfg(torque_spec, algo="sac-hpo", steps=300, extra=["k_max=3"]), tmp_path / "run",
                progress=False).out
    progress = rows(out / "progress.csv")
    learned = [r for r in progress if int(r["step"]) > 100]
    assert sum(int(r["rejected"]) for r in learned) > 0
    assert sum(int(r["leapfrog_steps"]) for r in learned) > 0
    for r in learned:  # at most k_max + 1 tests, k_max leapfrog steps per env step
        assert int(r["rejected"]) <= 4 * int(r["length"])
        assert int(r["leapfrog_steps"]) <= 3 * int(r["length"])
        assert int(r["unsafe_fallbacks"]) <= int(r["length"])


@pytest.mark.parametrize("algo", ["sac", "sac-pid", "hpo-conv", "hpo-explore", "hpo-train", "hpo-nomomentum",
                                  "hpo-nofilter"])
def test_every_algorithm_trains(speed_spec, tmp_path, algo):
    out = train(tiny_cfg(speed_spec, algo=algo, steps=200), tmp_path / algo, progress=False).out
    progress = rows(out / "progress.csv")
    assert len(progress) == 4 and all(float(r["alpha"]) > 0 for r in progress)
    if algo == "sac":
        assert all(float(r["lambda"]) == 0 for r in progress)


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "safehpo.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.mark.parametrize("args,needle", [
    (["train", "--env", "no-such-env", "--algo", "sac-lag"], "no-such-env"),
    (["train", "--env", "halfcheetah-speed", "--algo", "sac-lag", "--steps", "-5"], "--steps"),
    (["train", "--env", "halfcheetah-speed", "--algo", "no-such-algo"], "no-such-algo"),
    (["train", "--env", "halfcheetah-speed", "--algo", "sac-lag", "--set", "gamma=2"], "gamma"),
    (["train", "--env", "halfcheetah-speed", "--algo", "sac-lag", "--set", "stepz=2"], "stepz"),
    (["train", "--env", "halfcheetah-speed", "--algo", "sac-lag", "--set", "env=ant-torque"], "use --env"),
    (["train", "--env", "halfcheetah-speed", "--algo", "sac-lag", "--set", "seed=3"], "use --seed"),
    (["train", "--env", "halfcheetah-speed", "--algo", "sac-lag", "--steps", "3000"], "never update"),
    (["train", "--env", "envs", "--algo", "sac-lag"], "is a folder"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle, tmp_path, capsys):
    """In this process, through cli.main (the typo test below goes through a real `python -m`)."""
    import signal
    handler = signal.getsignal(signal.SIGTERM)
    try:
        code = main([*args, "--out", str(tmp_path / "x")])
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    finally:
        signal.signal(signal.SIGTERM, handler)
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err


def test_typo_in_a_spec_file_is_one_line_and_exit_2(tmp_path):
    spec = tmp_path / "typo.yaml"
    spec.write_text("id: typo\nbase: HalfCheetah-v5\ncost: {kind: none, params: {}}\nbudgte: null\n"
                    "max_episode_steps: 50\n")
    proc = run_cli("train", "--env", str(spec), "--algo", "sac-lag", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "typo.yaml" in proc.stderr and "budgte" in proc.stderr


def _shipped_specs():
    from safehpo.config import data_dir
    return sorted(p.stem for p in data_dir("envs").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("name", _shipped_specs())
def test_every_shipped_spec_trains_with_a_gaussian_and_a_hamiltonian_algorithm(name, tmp_path):
    """Each spec in envs/, its episodes cut to 30 steps, trains a few updates with sac-lag (sac where
    it has no budget) and sac-hpo, evaluates and writes its files: no shipped spec breaks unseen."""
    import yaml

    from safehpo.cmdp import load_spec
    from safehpo.config import data_dir
    raw = yaml.safe_load((data_dir("envs") / f"{name}.yaml").read_text())
    raw["max_episode_steps"] = 30
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    constrained = load_spec(str(path)).constrained
    for algo in ("sac-lag" if constrained else "sac", "sac-hpo"):
        cfg = apply_overrides(Config(env=str(path), algo=algo, steps=60), TINY + [
            "learning_starts=20", "eval_interval=60", "checkpoint_interval=60", "compile=never"])
        out = train(cfg, tmp_path / algo, progress=False).out
        assert len(rows(out / "progress.csv")) >= 2 and len(rows(out / "eval.csv")) == 1, (name, algo)
        assert json.loads((out / "status.json").read_text())["state"] == "done"


def test_an_episode_with_a_warm_up_step_never_moves_lambda(torque_spec, tmp_path):
    """50-step episodes, learning_starts 125: the episode of steps 100-149 holds 25 uniform actions;
    lambda moves first at the end of the episode that starts at step 150 (the budget, 0, is always
    exceeded)."""
    out = train(tiny_cfg(torque_spec, steps=300, extra=["learning_starts=125"]), tmp_path / "run", progress=False).out
    lam = {int(r["step"]): float(r["lambda"]) for r in rows(out / "progress.csv")}
    assert lam[50] == lam[100] == lam[150] == 0.0
    assert 0.0 < lam[200] < lam[250] < lam[300]


def test_sigterm_stops_a_run_as_ctrl_c_does_and_it_resumes(speed_spec, tmp_path):
    """kill, timeout, Slurm and docker stop send SIGTERM: the run records 'interrupted' with its
    steps, exits 130 with one line, and the same command with --resume finishes it."""
    out = tmp_path / "run"
    args = ["train", "--env", speed_spec, "--algo", "sac-lag", "--steps", "5000", "--quiet", "--out", str(out)]
    args += [x for s in TINY + ["checkpoint_interval=100"] for x in ("--set", s)]
    proc = subprocess.Popen([sys.executable, "-m", "safehpo.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1].startswith("safehpo: interrupted")
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "interrupted" and 0 < status["steps_done"] < 5000
    assert main([*args[:6], "600", *args[7:], "--resume"]) == 0
    assert json.loads((out / "status.json").read_text())["state"] == "done"


def test_the_filtered_evaluation_leaves_the_training_stream_alone(torque_spec, tmp_path):
    """sac-hpo's filtered evaluation draws momentum noise from its own seed: training episodes do
    not depend on how many evaluation episodes run."""
    one = train(tiny_cfg(torque_spec, algo="sac-hpo", steps=400, extra=["compile=never"]), tmp_path / "a",
                progress=False).out
    two = train(tiny_cfg(torque_spec, algo="sac-hpo", steps=400, extra=["compile=never", "eval_episodes=2"]),
                tmp_path / "b", progress=False).out
    assert without_timing(rows(one / "progress.csv")) == without_timing(rows(two / "progress.csv"))
    assert all(r["filtered_return_mean"] != "" for r in rows(two / "eval.csv"))


def test_resume_with_fewer_steps_than_done_is_one_line(speed_spec, tmp_path):
    out = tmp_path / "run"
    train(tiny_cfg(speed_spec, steps=300), out, progress=False)
    with pytest.raises(ConfigError, match="holds a run of 300 steps already"):
        train(tiny_cfg(speed_spec, steps=200), out, resume=True, progress=False)
    assert len(rows(out / "progress.csv")) == 6  # untouched


def test_resume_with_other_hyperparameters_names_them_all_and_the_flags(speed_spec, tmp_path):
    """A run made with other hyperparameters (here the papers' single cost critic) is refused in
    one line naming every difference and the --set flags that continue it; with them it resumes."""
    out = tmp_path / "run"
    single = ["cost_critics=1", "cost_floor=false"]
    train(tiny_cfg(speed_spec, steps=300, extra=single), out, progress=False)
    with pytest.raises(ConfigError, match=r"holds a run with cost_critics=1, cost_floor=false, this command asks "
                                          r"cost_critics=2, cost_floor=true .*add '--set cost_critics=1 --set "
                                          r"cost_floor=false' to continue it"):
        train(tiny_cfg(speed_spec, steps=400), out, resume=True, progress=False)
    assert len(rows(out / "progress.csv")) == 6  # untouched
    train(tiny_cfg(speed_spec, steps=400, extra=single), out, resume=True, progress=False)
    assert len(rows(out / "progress.csv")) == 8


def test_resume_of_a_run_lacking_a_setting_without_a_legacy_value_says_to_train_afresh(speed_spec, tmp_path):
    out = tmp_path / "run"
    train(tiny_cfg(speed_spec, steps=300), out, progress=False)
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    del state["config"]["lr"]  # as if saved before `lr` existed, which LEGACY_DEFAULTS does not know
    torch.save(state, out / "checkpoint.pt")
    with pytest.raises(ConfigError, match=r"holds a run with lr not recorded, this command asks lr=0.0003 .*; "
                                          r"no flag asks for a value it never recorded: train it afresh"):
        train(tiny_cfg(speed_spec, steps=400), out, resume=True, progress=False)


def test_every_setting_added_since_a_committed_run_has_the_value_that_run_had():
    """A run saved before a hyperparameter existed resumes only if LEGACY_DEFAULTS holds the value
    it ran with: every Config field a committed run's config.yaml lacks (outside what a resume may
    change) must be there, or `safehpo train --resume` refuses every such run."""
    fields = set(Config().to_dict()) - RESUMABLE_CHANGES - set(LEGACY_DEFAULTS)
    saved = sorted((Path(__file__).resolve().parents[1] / "results").rglob("config.yaml"))
    assert saved  # the committed runs are there to check
    for path in saved:
        missing = fields - set(yaml.safe_load(path.read_text()))
        assert not missing, f"{path}: no legacy value for {sorted(missing)}"


def test_config_mismatch_reads_missing_keys_at_their_legacy_values():
    asked = Config().to_dict()
    assert config_mismatch(dict(asked), asked, ()) is None
    old = {k: v for k, v in asked.items() if k not in ("cost_critics", "cost_floor", "lambda_units", "lr")}
    had, now, sets = config_mismatch(old, asked, ("lambda_units",))
    assert had == "cost_critics=1, cost_floor=false" and now == "cost_critics=2, cost_floor=true"
    assert sets == "--set cost_critics=1 --set cost_floor=false"
    had, _, sets = config_mismatch(old, asked, ("lambda_units",), missing_differs=True)  # lr: no legacy value
    assert had == "lr not recorded, cost_critics=1, cost_floor=false"
    assert sets == "--set cost_critics=1 --set cost_floor=false"  # no flag can ask for a value never recorded
    _, _, flags = config_mismatch({**asked, "seed": 3, "env": "envs/x.yaml"}, asked, ())
    assert flags == "--env envs/x.yaml --seed 3"  # train's own flags, not --set (which refuses them)


def test_pid_settings_differ_only_where_the_pid_rule_reads_them():
    asked = Config().to_dict()
    old = {k: v for k, v in asked.items() if k != "pid_ema"}       # saved before pid_ema existed
    for algo, lagrange in [("sac-lag", "paper"), ("sac-hpo", "adam"), ("sac", "pid")]:
        saved = {**old, "pid_ki": 0.01, "algo": algo, "lagrange": lagrange}
        assert config_mismatch(saved, {**asked, "algo": algo, "lagrange": lagrange}, ()) is None
    had, now, sets = config_mismatch({**old, "pid_ki": 0.01, "algo": "sac-pid"}, {**asked, "algo": "sac-pid"}, ())
    assert (had, now) == ("pid_ki=0.01, pid_ema=0.0", "pid_ki=0.1, pid_ema=0.9")
    assert sets == "--set pid_ki=0.01 --set pid_ema=0.0"
    had, _, _ = config_mismatch({**old, "algo": "sac-hpo", "lagrange": "pid"}, {**asked, "algo": "sac-hpo", "lagrange": "pid"}, ())
    assert had == "pid_ema=0.0"
    # a resume accepts a setting the run never reads, and refuses it where the run reads it
    assert config_mismatch({**asked, "algo": "sac", "budget_margin": 0.3}, {**asked, "algo": "sac"}, ()) is None
    assert config_mismatch({**asked, "algo": "sac-lag", "budget_margin": 0.3}, {**asked, "algo": "sac-lag"}, ())


def test_output_files_take_the_umask_mode(speed_spec, tmp_path):
    import os
    old = os.umask(0o022)
    try:
        out = train(tiny_cfg(speed_spec, steps=150), tmp_path / "run", progress=False).out
    finally:
        os.umask(old)
    for name in ("config.yaml", "progress.csv", "eval.csv", "status.json", "checkpoint.pt"):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name


# a valid value other than the default for every setting only some algorithms read
OTHER_VALUES = {"lagrange": "adam", "lambda_units": "paper", "lambda_init": 0.5, "lambda_lr": 0.3,
                "lambda_adam_lr": 0.01, "lambda_window": 3, "lambda_weight": "episode", "lambda_clip": 1.0, "lambda_min": 0.2,
                "budget_margin": 0.3, "cost_critics": 1, "cost_floor": False, "cost_scale": 2.0,
                "pid_kp": 0.3, "pid_ki": 0.3, "pid_kd": 0.1, "pid_ema": 0.5, "actor_hidden": 16,
                "base_hidden": 16, "leapfrog_steps": 2, "leapfrog_eps": 0.2, "momentum_std_train": 0.2,
                "momentum_std_explore": 0.5, "gate_hidden": 4, "gate_state_input": True, "second_order": True,
                "target_chain": False, "k_max": 4, "filter_fallback": "last"}


@pytest.mark.parametrize("algo, lagrange", [("sac", "paper"), ("sac-lag", "paper"), ("sac-pid", "paper"),
                                            ("sac-hpo", "adam"), ("hpo-nofilter", "paper")])
def test_a_setting_reports_leave_out_changes_nothing_in_a_run(tmp_path, algo, lagrange):
    torch.set_num_threads(1)
    # a torque budget a random policy exceeds several times: the margin, the clip and the window all act
    spec = write_spec(tmp_path / "torque.yaml", "cheetah-torque-half", "{kind: torque, params: {}}",
                      "{threshold: 0.5, kind: average}")
    base = tiny_cfg(spec, algo=algo, steps=300, extra=[f"lagrange={lagrange}"])
    unread = unread_settings({**base.to_dict()})
    assert unread and unread <= set(OTHER_VALUES)
    changed = base.replace(**{key: OTHER_VALUES[key] for key in unread})
    # a setting the run reads, changed, moves it: the check can fail
    read = [key for key in OTHER_VALUES if key not in unread and getattr(base, key) != OTHER_VALUES[key]]
    moved = base.replace(**{read[0]: OTHER_VALUES[read[0]]})
    runs = {name: train(cfg, tmp_path / name, progress=False).out
            for name, cfg in [("base", base), ("changed", changed), ("moved", moved)]}
    progress = {name: without_timing(rows(out / "progress.csv")) for name, out in runs.items()}
    evals = {name: rows(out / "eval.csv") for name, out in runs.items()}
    assert progress["changed"] == progress["base"] and evals["changed"] == evals["base"], sorted(unread)
    assert progress["moved"] != progress["base"] or evals["moved"] != evals["base"], read[0]
