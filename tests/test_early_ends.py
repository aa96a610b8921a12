"""benchmarks/early_ends.py: each episode binned by the lambda logged on the row before it."""

from __future__ import annotations

import pytest
import yaml

from conftest import load_benchmark, make_run
from safehpo.runrecord import collect_runs


def test_each_episode_counts_under_the_lambda_of_the_row_before_it(tmp_path, capsys):
    # lambda logged after each episode; episode i is played under lambdas[i - 1]
    lambdas = [0.2, 0.7, 0.3, 1.2, 0.4, 0.6]
    lengths = [100, 30, 100, 100, 40, 100]
    costs = [5.0, 30.0, 6.0, 7.0, 20.0, 8.0]
    make_run(tmp_path / "env", "sac-pid", 0, "average", 0.0, costs, lengths, lambdas=lambdas)
    script = load_benchmark("early_ends")
    (run,) = collect_runs(tmp_path / "env")
    lam, early, cost = script.played_under(run, start=100)  # episodes ending after step 100: 1 to 5
    assert script.played_under(run, start=99)[0].tolist() == [0.2, 0.7, 0.3, 1.2, 0.4]  # the first has no row before
    assert script.played_under(run, start=130)[0].tolist() == [0.7, 0.3, 1.2, 0.4]    # ending at 130: not after it
    assert lam.tolist() == [0.2, 0.7, 0.3, 1.2, 0.4]
    assert early.tolist() == [True, False, False, True, False]
    assert cost.tolist() == [30.0, 6.0, 7.0, 20.0, 8.0]
    assert script.main([str(tmp_path / "env"), "--from", "100"]) == 0
    out = capsys.readouterr().out
    assert "| sac-pid | 0 to 0.5 | 3 | 1 | 33.3% | 15.0 |" in out     # played under 0.2, 0.3 and 0.4
    assert "| sac-pid | 0.5 to 1 | 1 | 0 | 0.0% | 6.0 |" in out
    assert "| sac-pid | 1 to 1.5 | 1 | 1 | 100.0% | 20.0 |" in out


@pytest.mark.parametrize("algo, config, needle", [
    ("sac", {}, "sac with the rule 'none' has no lambda per episode"),
    ("sac-lag", {"lagrange": "adam"}, "sac-lag with the rule 'adam' has no lambda per episode"),
    ("sac-lag", {"spec": {"id": "env", "budget": {"threshold": 10.0, "kind": "average"}}},
     "spec.max_episode_steps missing or not a positive integer"),
    ("sac-lag", "no lambda", "progress.csv: no lambda or length on some episodes after step 0"),
])
def test_a_run_it_cannot_read_is_one_line_and_exit_2(tmp_path, capsys, algo, config, needle):
    run = make_run(tmp_path / "env", algo, 0, "average", 0.0, [5.0] * 3, [100] * 3,
                   lambdas=None if config == "no lambda" else [0.0] * 3)
    if isinstance(config, dict):
        saved = yaml.safe_load((run / "config.yaml").read_text())
        (run / "config.yaml").write_text(yaml.safe_dump({**saved, **config}))
    script = load_benchmark("early_ends")
    assert script.main([str(tmp_path / "env"), "--from", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("early_ends: ") and needle in err and "\n" not in err


def test_no_run_or_no_episode_after_from_is_one_line_and_exit_2(tmp_path, capsys):
    script = load_benchmark("early_ends")
    assert script.main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("early_ends: ") and "nowhere: no such folder" in err and "\n" not in err
    make_run(tmp_path / "env", "sac-pid", 0, "average", 0.0, [5.0] * 3, [100] * 3, lambdas=[0.0] * 3)
    assert script.main([str(tmp_path / "env"), "--from", "300"]) == 2
    assert capsys.readouterr().err.strip() == "early_ends: no episode ends after step 300"
