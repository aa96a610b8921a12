"""benchmarks/results_table.py: one markdown row per finished run, `{settings}` labelling each row
with its own run's non-default settings."""

import csv
import subprocess
import sys
from pathlib import Path

import yaml

from safehpo.config import Config

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "results_table.py"
COLUMNS = ["algo", "seed", "status", "budget", "budget_kind", "final_cost", "final_cost_per_step", "second_half_cost",
           "cumulative_violations", "episodes", "eval_return", "eval_cost", "second_half_evals", "second_half_evals_over"]


def write_env(root, env, settings, kind="sum"):
    (root / env).mkdir(parents=True)
    with open(root / env / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        for seed, (status, config) in enumerate(settings):
            writer.writerow({"algo": "sac-lag", "seed": seed, "status": status, "budget": 25, "budget_kind": kind,
                             "final_cost": 20 + seed, "final_cost_per_step": "", "second_half_cost": 21.04,
                             "cumulative_violations": 3, "episodes": 10, "eval_return": 1000.4, "eval_cost": 0,
                             "second_half_evals": 5, "second_half_evals_over": seed})
            run = root / env / "sac-lag" / f"seed-{seed}"
            run.mkdir(parents=True)
            (run / "config.yaml").write_text(yaml.safe_dump({**Config().to_dict(), "seed": seed, **config}))


def table(*args):
    done = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)
    return done.returncode, done.stdout.splitlines(), done.stderr


def test_each_row_carries_its_own_runs_settings(tmp_path):
    write_env(tmp_path / "tuned", "fast", [("done", {"lambda_min": 0.15}), ("running", {"lambda_min": 0.15})])
    write_env(tmp_path / "tuned", "slow", [("done", {"budget_margin": 0.1, "hidden": 64}), ("done", {})])
    rc, lines, err = table(f"{tmp_path / 'tuned'}=, {{settings}}")
    assert rc == 0, err
    assert lines[2:] == [
        "| fast (25 sum) | sac-lag, lambda_min 0.15 | 0 | 21.0 | 20.0 | 3 of 10 | 1000 / 0.0 | 0 of 5 |",  # seed 1 unfinished
        "| slow (25 sum) | sac-lag, hidden 64, budget_margin 0.1 | 0 | 21.0 | 20.0 | 3 of 10 | 1000 / 0.0 | 0 of 5 |",
        "| slow (25 sum) | sac-lag, defaults | 1 | 21.0 | 21.0 | 3 of 10 | 1000 / 0.0 | 1 of 5 |"]
    rc, lines, _ = table(f"{tmp_path / 'tuned'}=, fixed")
    assert {line.split(" | ")[1] for line in lines[2:]} == {"sac-lag, fixed"}


def test_a_missing_folder_is_one_line_and_exit_2(tmp_path):
    rc, lines, err = table(tmp_path / "nowhere")
    assert rc == 2 and err.strip().count("\n") == 0 and "no such folder" in err


def test_headline_counts_seeds_under_the_budget_per_algorithm(tmp_path):
    # final_cost 20 + seed against a budget of 25: seeds 0-5 at most the budget, seed 6 over; seed 7 unfinished
    write_env(tmp_path / "runs", "task", [("done", {})] * 7 + [("running", {})])
    rc, lines, err = table("--headline", tmp_path / "runs")
    assert rc == 0, err
    assert lines[0].startswith("| env (budget) | algo | seeds | last 10% under budget |")
    assert lines[2:] == ["| task (25 sum) | sac-lag | 7 | 6 of 7 | 7 of 7 | 7 of 7 | - | 1000 (1000 to 1000) |"]
