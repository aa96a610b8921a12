"""benchmarks/window_spread.py: its windows are the final window as summary.csv measures it,
slid back over the run, in units of the run's own target."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

from conftest import load_benchmark
from safehpo.runrecord import collect_runs
from safehpo.summary import run_summary


def make_run(env_dir, algo, seed, kind, margin, costs, lengths, state="done"):
    run = env_dir / algo / f"seed-{seed}"
    run.mkdir(parents=True)
    config = {"algo": algo, "seed": seed, "budget_margin": margin,
              "spec": {"id": env_dir.name, "budget": {"threshold": 10.0, "kind": kind}, "max_episode_steps": 100}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    with open(run / "progress.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "episode", "return", "cost", "length"])
        step = 0
        for i, (c, n) in enumerate(zip(costs, lengths)):
            step += n
            writer.writerow([step, i, 0.0, c, n])
    (run / "status.json").write_text(json.dumps({"state": state, "steps_done": int(step)}))
    return run


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
    assert cells[1:5] == ["sac-lag", "0.5", "0", "28"]       # the unfinished seed 1 is left out
    ratios = np.array([np.mean(costs[i:i + 3]) / 5 for i in range(28)])
    assert cells[7] == f"{(ratios > 2).mean():.2f}"           # over d0 as run
    assert cells[8] == f"{(ratios > 1).mean():.2f}"           # had it aimed at d0 itself
    assert cells[9] == cells[7]


def test_bad_input_exits_2(tmp_path, capsys):
    script = load_benchmark("window_spread")
    assert script.main([str(tmp_path / "missing")]) == 2
    assert script.main([str(tmp_path)]) == 2
    assert "no finished run" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        script.main([str(tmp_path), "--margins", "0,1.2"])
    assert e.value.code == 2
