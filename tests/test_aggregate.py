"""Aggregation of a bench's runs: bootstrap CIs, summary.csv, audit.csv, report.md.

`make_bench` writes a small synthetic bench (the layout of DESIGN.md section 4); test_plots.py
reuses it.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from safehpo import aggregate
from safehpo.aggregate import (
    AUDIT_COLUMNS, SUMMARY_COLUMNS, aggregate_all, audit_table, bootstrap_ci, bootstrap_ci_curve,
    collect_runs, find_env_dirs, format_audit, summarise, write_audit, write_report, write_summary,
)

PROGRESS_HEADER = "step,episode,return,cost,length,violated,lambda,alpha,rejected,leapfrog_steps,unsafe_fallbacks,sps"
EVAL_HEADER = "step,return_mean,return_std,cost_mean,cost_std"


# ----------------------------------------------------------------------------------------------
# Synthetic bench
# ----------------------------------------------------------------------------------------------

def write_run(env_dir: Path, algo: str, seed: int, rows: list[dict] | None, *, env: str = "toy",
              steps: int = 10_000, budget: tuple[float, str] | None = (25.0, "average"),
              status: dict | None = None, eval_rows: list[dict] | None = None) -> Path:
    """One `<algo>/seed-<n>/` folder. rows=None: no progress.csv; [] : header only."""
    run_dir = env_dir / algo / f"seed-{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"env": env, "algo": algo, "seed": seed, "steps": steps,
              "budget": None if budget is None else {"threshold": budget[0], "kind": budget[1]}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    if rows is not None:
        cols = PROGRESS_HEADER.split(",")
        lines = [PROGRESS_HEADER] + [",".join(str(r.get(c, 0)) for c in cols) for r in rows]
        (run_dir / "progress.csv").write_text("\n".join(lines) + "\n")
    if eval_rows is not None:
        cols = EVAL_HEADER.split(",")
        lines = [EVAL_HEADER] + [",".join(str(r[c]) for c in cols) for r in eval_rows]
        (run_dir / "eval.csv").write_text("\n".join(lines) + "\n")
    if status is not None:
        (run_dir / "status.json").write_text(json.dumps(status))
    return run_dir


def make_bench(env_dir: Path, env: str = "toy-velocity", algos=("sac-lag", "sac-hpo"), seeds: int = 3,
               steps: int = 20_000, budget=(25.0, "sum"), filter_algos=("sac-hpo",)) -> Path:
    """Plausible runs: return rises, cost falls towards the budget, the filter rejects less with time."""
    env_dir = Path(env_dir)
    for a, algo in enumerate(algos):
        for seed in range(seeds):
            rng = np.random.default_rng(100 * a + seed)
            rows, step, episode = [], 0, 0
            while True:
                length = int(rng.integers(150, 251))
                if step + length > steps:
                    break
                step += length
                t = step / steps
                ret = (1500 + 600 * a) * (1 - math.exp(-3 * t)) + rng.normal(0, 60)
                cost = max(0.0, budget[0] * (2.2 - 1.4 * t - 0.2 * a) + rng.normal(0, 4))
                rejected = int(rng.poisson(40 * (1 - 0.7 * t))) if algo in filter_algos else 0
                rows.append(dict(step=step, episode=episode, **{"return": round(ret, 3)},
                                 cost=round(cost, 4), length=length,
                                 violated=int(cost > budget[0]), alpha=0.2,
                                 **{"lambda": round(0.1 * episode, 3)}, rejected=rejected,
                                 leapfrog_steps=int(rejected * 0.9),
                                 unsafe_fallbacks=int(rng.poisson(rejected / 40)) if rejected else 0,
                                 sps=round(float(rng.normal(120 - 50 * a, 5)), 2)))
                episode += 1
            evals = [dict(step=s, return_mean=1000.0, return_std=10.0, cost_mean=20.0, cost_std=1.0)
                     for s in range(5000, steps + 1, 5000)]
            write_run(env_dir, algo, seed, rows, env=env, steps=steps, budget=budget, eval_rows=evals,
                      status={"state": "done", "reason": None, "wall_seconds": 100.0 + seed,
                              "steps_done": steps})
    return env_dir


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------------------------
# Bootstrap
# ----------------------------------------------------------------------------------------------

def test_bootstrap_constant_sample_has_zero_width():
    assert bootstrap_ci([3.5] * 12) == pytest.approx((3.5, 3.5, 3.5))


def test_bootstrap_single_value_and_nan_and_empty():
    assert bootstrap_ci([7.0]) == (7.0, 7.0, 7.0)
    assert bootstrap_ci([1.0, float("nan"), 3.0])[0] == pytest.approx(2.0)
    assert all(math.isnan(x) for x in bootstrap_ci([]))


def test_bootstrap_normal_sample_matches_normal_theory():
    x = np.random.default_rng(1).normal(5.0, 2.0, size=1000)
    mean, low, high = bootstrap_ci(x, seed=3)
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert mean == pytest.approx(x.mean())
    assert (high - low) / 2 == pytest.approx(half, rel=0.10)
    assert (low + high) / 2 == pytest.approx(x.mean(), abs=0.2 * half)


def test_bootstrap_width_grows_with_confidence_and_is_deterministic():
    x = np.random.default_rng(2).exponential(1.0, size=40)
    widths = []
    for c in (0.5, 0.8, 0.9, 0.95, 0.99):
        _, low, high = bootstrap_ci(x, confidence=c)
        widths.append(high - low)
    assert all(a < b for a, b in zip(widths, widths[1:]))
    assert bootstrap_ci(x, seed=5) == bootstrap_ci(x, seed=5)
    assert bootstrap_ci(x, seed=5) != bootstrap_ci(x, seed=6)


def test_bootstrap_curve_per_point_and_missing_seeds():
    rng = np.random.default_rng(4)
    m = rng.normal(size=(5, 3))
    mean, low, high = bootstrap_ci_curve(m)
    for j in range(3):  # a full column equals the scalar bootstrap of that column
        assert (mean[j], low[j], high[j]) == pytest.approx(bootstrap_ci(m[:, j]))
    m2 = np.column_stack([m[:, 0], [1.0, np.nan, np.nan, np.nan, np.nan], np.full(5, np.nan)])
    mean, low, high = bootstrap_ci_curve(m2)
    assert (low[0], high[0]) == pytest.approx(bootstrap_ci(m[:, 0])[1:])
    assert mean[1] == low[1] == high[1] == 1.0      # one seed: zero width
    assert np.isnan([mean[2], low[2], high[2]]).all()  # no seed: nothing


# ----------------------------------------------------------------------------------------------
# summary.csv
# ----------------------------------------------------------------------------------------------

def test_summary_numbers_on_hand_made_csv(tmp_path):
    # 20 episodes of 100 steps: last 10% = the last 2 episodes.
    rows = [dict(step=100 * (i + 1), episode=i, length=100, sps=[50, 60, 70, 80][i % 4],
                 cost=30.0 if i % 5 == 0 else 10.0, violated=int(i % 5 == 0), rejected=i,
                 **{"return": float(i)}) for i in range(20)]
    write_run(tmp_path, "sac-hpo", 0, rows, budget=(25.0, "average"),
              status={"state": "done", "reason": None, "wall_seconds": 12.5, "steps_done": 2000})
    (row,) = summarise(tmp_path)
    assert row["final_return"] == pytest.approx((18 + 19) / 2)
    assert row["final_cost"] == pytest.approx(10.0)
    assert row["cumulative_violations"] == 4            # episodes 0, 5, 10, 15
    assert row["violation_rate"] == pytest.approx(4 / 20)
    assert row["rejected"] == sum(range(20))             # 190
    assert row["steps"] == 2000
    assert row["rejected_per_1k_steps"] == pytest.approx(1000 * 190 / 2000)
    assert row["sps"] == pytest.approx(65.0)             # median of 50, 60, 70, 80 (x5)
    assert row["budget"] == 25.0 and row["budget_kind"] == "average"
    assert row["wall_seconds"] == 12.5 and row["status"] == "done"

    path = write_summary(tmp_path)
    with open(path) as f:
        assert f.readline().strip() == ",".join(SUMMARY_COLUMNS)
    (written,) = read_csv(path)
    assert float(written["final_return"]) == pytest.approx(18.5)
    assert written["rejected_per_1k_steps"] == "95"
    assert written["reason"] == ""


def test_final_mean_takes_at_least_the_last_episode():
    assert aggregate.final_mean(np.array([1.0, 2.0, 9.0])) == 9.0          # 10% of 3 -> 1
    assert aggregate.final_mean(np.arange(15.0)) == pytest.approx(13.5)   # 10% of 15 -> 2
    assert aggregate.final_mean(np.array([])) is None


def test_failed_and_empty_runs_are_listed_not_crashing(tmp_path):
    make_bench(tmp_path, seeds=1)
    write_run(tmp_path, "sac-hpo", 7, [], status={"state": "failed", "reason": "NaN in actor loss",
                                                 "wall_seconds": 3.0, "steps_done": 120})
    empty = write_run(tmp_path, "sac-lag", 8, None)                       # never started
    (empty / "progress.csv").write_text("")                                # zero-byte file
    (empty / "status.json").write_text("{not json")                        # torn file
    cut = write_run(tmp_path, "sac-lag", 9, [dict(step=100, episode=0, length=100, cost=5.0,
                                                  **{"return": 2.0})])
    with open(cut / "progress.csv", "a") as f:                             # killed mid-line
        f.write("200,1,3.0,")

    rows = {(r["algo"], r["seed"]): r for r in read_csv(write_summary(tmp_path))}
    failed = rows[("sac-hpo", "7")]
    assert failed["status"] == "failed" and failed["reason"] == "NaN in actor loss"
    assert failed["final_return"] == "" and failed["violation_rate"] == "" and failed["steps"] == "120"
    assert rows[("sac-lag", "8")]["status"] == "not-started"
    assert rows[("sac-lag", "8")]["final_cost"] == ""
    assert rows[("sac-lag", "9")]["final_return"] == "2" and rows[("sac-lag", "9")]["steps"] == "100"
    # the failed run stays out of the per-algorithm means
    table = {a["algo"]: a for a in aggregate.algo_table(summarise(tmp_path))}
    assert table["sac-hpo"]["seeds"] == 2 and table["sac-hpo"]["usable"] == 1
    assert table["sac-hpo"]["failed"] == 1


def test_budget_is_read_from_config_or_its_spec_entry(tmp_path):
    run_dir = write_run(tmp_path, "sac-lag", 0, [dict(step=100, episode=0, length=100)], budget=None)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    del config["budget"]
    config["spec"] = {"id": "toy", "budget": {"threshold": 10.0, "kind": "discounted"}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (row,) = summarise(tmp_path)
    assert (row["budget"], row["budget_kind"]) == (10.0, "discounted")


def test_unconstrained_run_has_empty_budget(tmp_path):
    write_run(tmp_path, "sac", 0, [dict(step=100, episode=0, length=100, **{"return": 1.0})], budget=None)
    (row,) = read_csv(write_summary(tmp_path))
    assert row["budget"] == "" and row["budget_kind"] == ""


# ----------------------------------------------------------------------------------------------
# audit.csv
# ----------------------------------------------------------------------------------------------

def test_audit_buckets_sum_to_run_totals(tmp_path):
    make_bench(tmp_path)
    runs = collect_runs(tmp_path)
    rows = audit_table(tmp_path)
    assert rows and set(rows[0]) == set(AUDIT_COLUMNS)
    for run in runs:
        mine = [r for r in rows if (r["algo"], r["seed"]) == (run.algo, run.seed)]
        assert 1 <= len(mine) <= aggregate.AUDIT_BUCKETS
        assert [r["step"] for r in mine] == sorted(r["step"] for r in mine)
        for key in ("rejected", "leapfrog_steps", "unsafe_fallbacks"):
            assert sum(r[key] for r in mine) == int(run.column(key).sum())
        assert sum(r["episodes"] for r in mine) == run.episodes
    assert sum(r["rejected"] for r in rows if r["algo"] == "sac-hpo") > 0
    assert sum(r["rejected"] for r in rows if r["algo"] == "sac-lag") == 0

    written = read_csv(write_audit(tmp_path))
    assert len(written) == len(rows) and list(written[0]) == list(AUDIT_COLUMNS)


def test_audit_bucket_edges(tmp_path):
    # 1000 planned steps -> buckets of 50; an episode ending at step 50 is in the first bucket.
    rows = [dict(step=s, episode=i, length=50, rejected=1) for i, s in enumerate([50, 51, 100, 420])]
    write_run(tmp_path, "sac-hpo", 0, rows, steps=1000)
    table = audit_table(tmp_path)
    assert [r["step"] for r in table] == list(range(50, 451, 50))
    assert [r["episodes"] for r in table][:3] == [1, 2, 0]
    assert table[-1]["episodes"] == 1


def test_format_audit_table(tmp_path):
    make_bench(tmp_path)
    text = format_audit(tmp_path)
    totals = {t["algo"]: t for t in aggregate.audit_totals(collect_runs(tmp_path))}
    assert "sac-hpo" in text and "sac-lag" in text and "per 1k steps" in text
    assert str(totals["sac-hpo"]["rejected"]) in text
    assert totals["sac-lag"]["rejected"] == 0 and totals["sac-lag"]["leapfrog_per_rejection"] is None
    assert totals["sac-hpo"]["leapfrog_per_rejection"] == pytest.approx(0.9, abs=0.05)
    assert "no runs found" in format_audit(tmp_path / "nothing")


# ----------------------------------------------------------------------------------------------
# report.md, everything at once
# ----------------------------------------------------------------------------------------------

def test_report_contents(tmp_path):
    make_bench(tmp_path, env="toy-velocity", budget=(25.0, "sum"))
    (tmp_path / "command.txt").write_text("safehpo bench --env toy-velocity --seeds 3\n")
    (tmp_path / "curves.png").write_bytes(b"")  # a figure present on disk gets embedded
    text = write_report(tmp_path).read_text()
    assert text.startswith("# toy-velocity")
    assert "<= 25" in text and "sum per episode" in text
    assert "![" in text and "(curves.png)" in text and "(audit.png)" not in text
    assert "safehpo bench --env toy-velocity --seeds 3" in text
    assert "last 10% of training episodes" in text
    summary = summarise(tmp_path)
    for a in aggregate.algo_table(summary):   # per-algo mean and CI in the table
        mean, low, high = a["final_return"]
        assert low <= mean <= high
        assert f"{mean:.1f} [{low:.1f}, {high:.1f}]" in text


def test_aggregate_all_on_parent_folder_writes_everything_atomically(tmp_path):
    make_bench(tmp_path / "env-a", env="env-a", seeds=2)
    make_bench(tmp_path / "env-b", env="env-b", seeds=2, budget=(0.5, "average"))
    assert find_env_dirs(tmp_path) == [tmp_path / "env-a", tmp_path / "env-b"]
    assert find_env_dirs(tmp_path / "env-a") == [tmp_path / "env-a"]
    written = aggregate_all(tmp_path)
    for env in ("env-a", "env-b"):
        for name in ("summary.csv", "audit.csv", "report.md", "return_vs_violation.png",
                     "curves.png", "audit.png"):
            assert tmp_path / env / name in written
            assert (tmp_path / env / name).stat().st_size > 0
        leftovers = [p.name for p in (tmp_path / env).iterdir() if p.name.startswith(".")]
        assert leftovers == []
    with pytest.raises(FileNotFoundError):
        aggregate_all(tmp_path / "env-a" / "sac-lag")


def test_aggregate_does_not_import_matplotlib():
    import subprocess
    import sys
    code = "import sys, safehpo.aggregate; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
