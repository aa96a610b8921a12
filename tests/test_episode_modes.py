"""benchmarks/episode_modes.py: a run's settled episodes split at a multiple of the budget."""

from __future__ import annotations

import pytest

from conftest import load_benchmark, make_run
from safehpo.runrecord import collect_runs, finished_runs_by_source, finished_runs_in


def test_groups_shares_costs_returns_and_lambda_as_each_episode_began(tmp_path, capsys):
    # budget 10: episodes 0-4 (ending at steps <= 500) are before --from; after it a cycle of one
    # expensive episode (cost 45) and three cheap ones (cost 1)
    costs = [0.0] * 5 + [45.0, 1.0, 1.0, 1.0] * 5
    lam = [0.1 * (i % 4) for i in range(len(costs))]        # lambda after each episode
    make_run(tmp_path / "env", "sac-lag", 0, "sum", 0.0, costs, [100] * len(costs), lambdas=lam)
    script = load_benchmark("episode_modes")
    (record,) = collect_runs(tmp_path / "env")
    g = script.split(record, start=500, factor=2.0)
    assert g["n"] == 20 and g["expensive"]["count"] == 5 and g["cheap"]["count"] == 15
    assert g["expensive"]["cost"] == 45.0 and g["cheap"]["cost"] == 1.0
    # the expensive episodes are rows 5, 9, 13, ...; each began with the lambda logged after row 4, 8, ...
    assert g["expensive"]["lam"] == pytest.approx(0.0)
    assert g["cheap"]["lam"] == pytest.approx(0.2)           # rows 6, 7, 8 began at 0.1, 0.2, 0.3
    assert script.main([str(tmp_path), "--from", "500"]) == 0
    assert "| 20 | 25% / 45.0 / 0 / 0.000 | 1.0 / 0 / 0.200 |" in capsys.readouterr().out


def test_bad_input_exits_2(tmp_path, capsys):
    script = load_benchmark("episode_modes")
    assert script.main([str(tmp_path / "missing")]) == 2
    assert script.main([str(tmp_path)]) == 2
    make_run(tmp_path / "env", "sac-lag", 0, "sum", 0.0, [1.0] * 5, [100] * 5)
    assert script.main([str(tmp_path), "--split", "0"]) == 2
    assert script.main([str(tmp_path), "--from", "1000"]) == 2           # no episode ends after it
    assert "no finished run with episodes after step 1000" in capsys.readouterr().err


def test_finished_runs_in_names_each_finished_run_once(tmp_path):
    done = make_run(tmp_path / "env", "sac-lag", 0, "sum", 0.0, [1.0] * 5, [100] * 5)
    make_run(tmp_path / "env", "sac-lag", 1, "sum", 0.0, [1.0] * 5, [100] * 5, state="running")
    runs = finished_runs_in([tmp_path, tmp_path / "env", done])           # the same run three ways
    assert [run.path.resolve() for run in runs] == [done.resolve()]
    with pytest.raises(ValueError, match=r"^\S*missing: no such folder$"):
        finished_runs_in([tmp_path, tmp_path / "missing"])


def test_finished_runs_by_source_never_pools_two_results_folders(tmp_path, monkeypatch):
    for source in ("a", "b"):
        for seed in (0, 1):
            make_run(tmp_path / source / "env", "sac-lag", seed, "sum", 0.0, [1.0] * 5, [100] * 5)
    monkeypatch.chdir(tmp_path)
    groups = finished_runs_by_source([tmp_path / "a", tmp_path / "b" / "env", tmp_path / "a" / "env"])
    assert sorted(groups) == [("a", "env", "sac-lag"), ("b", "env", "sac-lag")]  # named relative to the cwd
    assert [run.seed for run in groups[("a", "env", "sac-lag")]] == [0, 1]         # each run once
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"^no finished run under \S*empty \(expected"):
        finished_runs_by_source([tmp_path / "empty"])
