"""safehpo evaluate: a finished run's checkpoint replays eval.csv's last row (unfiltered and
deployed), more episodes extend it, and bad input is one line with exit code 2."""

from __future__ import annotations

import csv

import pytest

from conftest import TINY, write_spec
from safehpo.cli import main
from safehpo.config import Config, apply_overrides
from safehpo.evaluation import evaluate_run
from safehpo.train import train


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    """50-step HalfCheetah episodes with a speed limit (a sum budget)."""
    return write_spec(tmp_path_factory.mktemp("spec") / "cheetah-speed-short.yaml", "cheetah-speed-short",
                      "{kind: velocity, params: {measure: abs_x, threshold: 1.0}}", "{threshold: 2, kind: sum}")


def tiny_run(spec, out, algo: str, steps: int = 250, resume: bool = False, extra: tuple = ()):
    cfg = apply_overrides(Config(env=spec, algo=algo, seed=3, steps=steps), [*TINY, "eval_episodes=2", *extra])
    return train(cfg, out, resume=resume, progress=False).out


@pytest.fixture(scope="module")
def hpo_run(tmp_path_factory):
    """sac-hpo under a budget no policy meets (torque, average <= 0): its filter rejects. lambda held
    at 1: the chain reads lambda, and the last episode's update comes after the last evaluation."""
    torque = write_spec(tmp_path_factory.mktemp("spec") / "cheetah-torque-short.yaml", "cheetah-torque-short",
                        "{kind: torque, params: {}}", "{threshold: 0, kind: average}")
    return tiny_run(torque, tmp_path_factory.mktemp("hpo") / "run", "sac-hpo",
                    extra=("lambda_init=1", "lambda_lr=0"))


@pytest.fixture(scope="module")
def lag_run(spec, tmp_path_factory):
    return tiny_run(spec, tmp_path_factory.mktemp("lag") / "run", "sac-lag")


def last_eval_row(run) -> dict:
    with open(run / "eval.csv") as f:
        return list(csv.DictReader(f))[-1]


@pytest.mark.parametrize("filtered", [False, True])
def test_replays_the_last_evaluation(hpo_run, filtered):
    row = last_eval_row(hpo_run)  # eval.csv keeps 6 significant digits
    assert row["step"] == "250"
    prefix = "filtered_" if filtered else ""
    evaluation = evaluate_run(hpo_run, filtered=filtered)
    played = evaluation.episodes
    assert "at step 250" in evaluation.what and len(played) == 2
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    assert mean([e.ret for e in played]) == pytest.approx(float(row[prefix + "return_mean"]), rel=1e-5)
    assert mean([e.cost for e in played]) == pytest.approx(float(row[prefix + "cost_mean"]), rel=1e-5)
    assert all(e.length == 50 for e in played)
    if filtered:
        assert int(float(row["filtered_rejected"])) > 0
        assert sum(e.rejected for e in played) == int(float(row["filtered_rejected"]))
        assert all(e.cost > 0 for e in played)


def test_replays_the_last_evaluation_of_an_extended_run(spec, tmp_path):
    # 250 steps (evaluations at 200 and 250), then resumed to 400 (a third at 400): the last row
    # is the third evaluation, though 400 // 200 would say the second
    run = tiny_run(spec, tmp_path / "run", "sac-lag")
    tiny_run(spec, run, "sac-lag", steps=400, resume=True)
    row = last_eval_row(run)
    assert row["step"] == "400"
    played = evaluate_run(run).episodes
    assert sum(e.ret for e in played) / 2 == pytest.approx(float(row["return_mean"]), rel=1e-5)


def test_more_episodes_extend_the_evaluation(lag_run):
    five = evaluate_run(lag_run, episodes=5).episodes
    two = evaluate_run(lag_run).episodes
    assert [e.ret for e in five[:2]] == [e.ret for e in two]
    elsewhere = evaluate_run(lag_run, episodes=2, seed=123).episodes
    assert [e.ret for e in elsewhere] != [e.ret for e in two]


def test_stochastic_is_reproducible_and_differs(lag_run):
    a = evaluate_run(lag_run, stochastic=True).episodes
    b = evaluate_run(lag_run, stochastic=True).episodes
    det = evaluate_run(lag_run).episodes
    assert [e.ret for e in a] == [e.ret for e in b]
    assert [e.ret for e in a] != [e.ret for e in det]


def test_cli_prints_each_episode_and_the_budget(lag_run, capsys):
    assert main(["evaluate", str(lag_run), "--episodes", "3"]) == 0
    out = capsys.readouterr().out
    assert "sac-lag seed 3 at step 250: deterministic, filter off, 3 episodes" in out
    assert "cost (sum)" in out
    assert " of 3 episodes over the budget (2 sum)" in out
    assert len([line for line in out.splitlines() if line[:1].isdigit()]) == 3


def test_filtered_needs_a_filter(lag_run, capsys):
    assert main(["evaluate", str(lag_run), "--filtered"]) == 2
    err = capsys.readouterr().err
    assert "sac-lag has no Lyapunov filter" in err and len(err.strip().splitlines()) == 1


def test_episodes_must_be_positive(lag_run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(lag_run), "--episodes", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "expected a positive integer" in err and len(err.strip().splitlines()) == 1


def test_not_a_run_folder(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a run folder" in err and len(err.strip().splitlines()) == 1

