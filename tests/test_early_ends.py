"""benchmarks/early_ends.py: each episode binned by the lambda logged on the row before it."""

from __future__ import annotations

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
    assert lam.tolist() == [0.2, 0.7, 0.3, 1.2, 0.4]
    assert early.tolist() == [True, False, False, True, False]
    assert cost.tolist() == [30.0, 6.0, 7.0, 20.0, 8.0]
    assert script.main([str(tmp_path / "env"), "--from", "100"]) == 0
    out = capsys.readouterr().out
    assert "| sac-pid | 0 to 0.5 | 3 | 1 | 33.3% | 15.0 |" in out     # played under 0.2, 0.3 and 0.4
    assert "| sac-pid | 0.5 to 1 | 1 | 0 | 0.0% | 6.0 |" in out
    assert "| sac-pid | 1 to 1.5 | 1 | 1 | 100.0% | 20.0 |" in out


def test_a_run_without_a_lambda_per_episode_is_one_line_and_exit_2(tmp_path, capsys):
    make_run(tmp_path / "env", "sac", 0, "average", 0.0, [5.0] * 3, [100] * 3, lambdas=[0.0] * 3)
    script = load_benchmark("early_ends")
    assert script.main([str(tmp_path / "env")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("early_ends: ") and "has no lambda per episode" in err and "\n" not in err
    assert script.main([str(tmp_path / "nowhere")]) == 2
