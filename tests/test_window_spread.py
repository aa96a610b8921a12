"""benchmarks/window_spread.py: its windows are the final window as summary.csv measures it,
slid back over the run, in units of the run's own target."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from conftest import load_benchmark, make_run
from safehpo.runrecord import collect_runs
from safehpo.summary import run_summary


@pytest.mark.parametrize("kind", ["average", "sum"])
def test_last_window_is_the_summary_final_cost(tmp_path, kind):
    rng = np.random.default_rng(1)
    costs, lengths = rng.uniform(0, 20, 45), rng.integers(10, 101, 45)
    make_run(tmp_path / "env", "sac-lag", 0, kind, 0.2, costs, lengths)
    script = load_benchmark("window_spread")
    (run,) = collect_runs(tmp_path / "env")
    target, ratios = script.window_ratios(run, start=0)
    assert target == pytest.approx(8.0)                       # (1 - 0.2) * 10
    k = 5                                                     # the last 10% of 45 episodes
    assert ratios.size == 45 - k + 1
    row = run_summary(run)
    final = row["final_cost_per_step"] if kind == "average" else row["final_cost"]
    assert ratios[-1] * target == pytest.approx(final)
    c, n = costs[:k], lengths[:k]
    first = (c * n).sum() / n.sum() if kind == "average" else c.mean()
    assert ratios[0] * target == pytest.approx(first)


def test_from_skips_windows_that_start_before_it(tmp_path):
    make_run(tmp_path / "env", "sac-lag", 0, "sum", 0.0, [40.0] * 10 + [10.0] * 20, [100] * 30)
    script = load_benchmark("window_spread")
    (run,) = collect_runs(tmp_path / "env")
    _, ratios = script.window_ratios(run, start=1000)        # episodes 11-30 end after step 1000
    assert ratios.size == 20 - 3 + 1 and np.all(ratios == 1.0)
    _, ratios = script.window_ratios(run, start=0)
    assert ratios.max() == pytest.approx(4.0)


def test_table_counts_over_budget_per_margin(tmp_path, capsys):
    # aimed at 5 (margin 0.5): windows at 1.0x, 1.5x and 2.5x the target, i.e. 0.5, 0.75, 1.25 d0
    costs = [5.0] * 10 + [7.5] * 10 + [12.5] * 10
    make_run(tmp_path / "env", "sac-lag", 0, "sum", 0.5, costs, [100] * 30)
    make_run(tmp_path / "env", "sac-lag", 1, "sum", 0.5, [99.0] * 30, [100] * 30, state="running")
    script = load_benchmark("window_spread")
    assert script.main([str(tmp_path), "--from", "0", "--margins", "0,0.5"]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if "| sac-lag |" in line]
    cells = [c.strip() for c in row[0].strip("|").split("|")]
    assert cells[2:6] == ["sac-lag", "0.5", "0", "28"]       # the unfinished seed 1 is left out
    ratios = np.array([np.mean(costs[i:i + 3]) / 5 for i in range(28)])
    assert cells[8] == f"{(ratios > 2).mean():.2f}"           # over d0 as run
    assert cells[9] == f"{(ratios > 1).mean():.2f}"           # had it aimed at d0 itself
    assert cells[10] == cells[8]


def test_a_window_at_the_budget_is_not_over_it(tmp_path, capsys):
    """As an episode at its budget is not violated (train.py: cost > budget)."""
    make_run(tmp_path / "env", "sac-lag", 0, "sum", 0.0, [10.0] * 20, [100] * 20)
    script = load_benchmark("window_spread")
    (row,) = table_rows(script, capsys, tmp_path, "--from", "0", "--margins", "0,0.1")
    assert row[8:11] == ["0.00", "0.00", "0.00"]   # at d0 as run and had it aimed at it; under at m = 0.1


def table_rows(script, capsys, *argv):
    assert script.main([str(a) for a in argv]) == 0
    return [[c.strip() for c in line.strip("|").split("|")]
            for line in capsys.readouterr().out.splitlines() if "| sac-" in line]


def test_folders_are_never_pooled_and_a_run_counts_once(tmp_path, capsys):
    for folder, cost in (("a", 5.0), ("b", 20.0)):
        make_run(tmp_path / folder / "env", "sac-lag", 0, "sum", 0.0, [cost] * 20, [100] * 20)
    script = load_benchmark("window_spread")
    run_a = tmp_path / "a" / "env" / "sac-lag" / "seed-0"
    rows = table_rows(script, capsys, tmp_path / "a", tmp_path / "b", run_a, run_a.parent, "--from", "0")
    assert len(rows) == 2 and [r[5] for r in rows] == ["19", "19"]      # a's run once, not three times
    assert {r[0].split("/")[-1]: r[6] for r in rows} == {"a": "0.50 / 0.00", "b": "2.00 / 0.00"}


def test_a_run_folder_given_alone(tmp_path, capsys):
    make_run(tmp_path / "env", "sac-lag", 0, "sum", 0.0, [5.0] * 20, [100] * 20)
    make_run(tmp_path / "env", "sac-lag", 1, "sum", 0.0, [50.0] * 20, [100] * 20)
    script = load_benchmark("window_spread")
    (row,) = table_rows(script, capsys, tmp_path / "env" / "sac-lag" / "seed-1", "--from", "0")
    assert row[4:9] == ["1", "19", "5.00 / 0.00", "5.00 / 5.00", "1.00"]


def test_bad_input_exits_2(tmp_path, capsys):
    script = load_benchmark("window_spread")
    assert script.main([str(tmp_path / "missing")]) == 2
    assert script.main([str(tmp_path)]) == 2
    assert "no finished run" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        script.main([str(tmp_path), "--margins", "0,1.2"])
    assert e.value.code == 2
    capsys.readouterr()
    run = make_run(tmp_path / "env", "sac-lag", 0, "sum", 0.0, [5.0] * 20, [100] * 20)
    assert script.main([str(tmp_path), "--from", "10000"]) == 2            # no window lies after it
    assert "no run has a final-sized window" in capsys.readouterr().err
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "budget_margin": "lots"}))
    assert script.main([str(tmp_path)]) == 2
    assert "'budget_margin' expects float, got 'lots'" in capsys.readouterr().err
    del config["spec"]["budget"]
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert script.main([str(tmp_path)]) == 2
    assert "no positive budget" in capsys.readouterr().err


def test_per_episode_weighs_each_episode_alike_on_an_average_budget(tmp_path, capsys):
    # 19 full episodes at 5 and a short one at 50; the final window is the last two episodes:
    # per env step (500 + 500) / 110 = 9.09, under the budget of 10; per episode 27.5, over it
    costs, lengths = [5.0] * 19 + [50.0], [100] * 19 + [10]
    make_run(tmp_path / "env", "sac-lag", 0, "average", 0.0, costs, lengths)
    script = load_benchmark("window_spread")
    (run,) = collect_runs(tmp_path / "env")
    _, per_step = script.window_ratios(run, start=0)
    _, per_episode = script.window_ratios(run, start=0, per_episode=True)
    assert per_step.size == per_episode.size == 19
    assert per_step[-1] == pytest.approx(1000 / 110 / 10)
    assert per_episode[-1] == pytest.approx(2.75)
    assert np.all(per_episode[:-1] == 0.5)
    for flag, over in (([], "0.00"), (["--per-episode"], "0.05")):   # 1 of 19 windows over d0
        assert script.main([str(tmp_path), "--from", "0", *flag]) == 0
        row = [line for line in capsys.readouterr().out.splitlines() if "| sac-lag |" in line]
        assert [c.strip() for c in row[0].strip("|").split("|")][8] == over
