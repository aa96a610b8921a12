"""Aggregation of a bench's runs: bootstrap CIs, summary.csv, audit.csv, report.md.

`make_bench` writes a small synthetic bench (the layout of docs/outputs.md); test_figures.py
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

from safehpo import audit, runrecord
from safehpo.aggregate import aggregate_all
from safehpo.audit import AUDIT_COLUMNS, audit_table, format_audit, write_audit
from safehpo.bootstrap import bootstrap_ci, bootstrap_ci_curve
from safehpo.config import Config
from safehpo.report import settings_text, write_report
from safehpo.runfolder import LEGACY_DEFAULTS
from safehpo.runrecord import collect_runs, find_env_dirs
from safehpo.summary import SUMMARY_COLUMNS, algo_table, final_mean, summarise, write_summary

PROGRESS_HEADER = "step,episode,return,cost,length,violated,lambda,alpha,rejected,leapfrog_steps,unsafe_fallbacks,sps"
EVAL_HEADER = ("step,return_mean,return_std,cost_mean,cost_std,filtered_return_mean,filtered_return_std,"
               "filtered_cost_mean,filtered_cost_std,filtered_rejected")
OLD_EVAL_HEADER = "step,return_mean,return_std,cost_mean,cost_std"   # eval.csv before the filtered columns


# ----------------------------------------------------------------------------------------------
# Synthetic bench
# ----------------------------------------------------------------------------------------------

def write_run(env_dir: Path, algo: str, seed: int, rows: list[dict] | None, *, env: str = "toy",
              steps: int = 10_000, budget: tuple[float, str] | None = (25.0, "average"),
              status: dict | None = None, eval_rows: list[dict] | None = None,
              eval_header: str = EVAL_HEADER, config: dict | None = None) -> Path:
    """One `<algo>/seed-<n>/` folder. rows=None: no progress.csv; [] : header only. An eval row's
    missing column is written empty (as train.py writes the filtered columns of an unfiltered
    algorithm). config: extra config.yaml entries."""
    run_dir = env_dir / algo / f"seed-{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    doc = {"env": env, "algo": algo, "seed": seed, "steps": steps,
           "budget": None if budget is None else {"threshold": budget[0], "kind": budget[1]},
           **(config or {})}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(doc))
    if rows is not None:
        cols = PROGRESS_HEADER.split(",")
        lines = [PROGRESS_HEADER] + [",".join(str(r.get(c, 0)) for c in cols) for r in rows]
        (run_dir / "progress.csv").write_text("\n".join(lines) + "\n")
    if eval_rows is not None:
        cols = eval_header.split(",")
        lines = [eval_header] + [",".join(str(r.get(c, "")) for c in cols) for r in eval_rows]
        (run_dir / "eval.csv").write_text("\n".join(lines) + "\n")
    if status is not None:
        (run_dir / "status.json").write_text(json.dumps(status))
    return run_dir


def make_bench(env_dir: Path, env: str = "toy-velocity", algos=("sac-lag", "sac-hpo"), seeds: int = 3,
               steps: int = 20_000, budget=(25.0, "sum"), filter_algos=("sac-hpo",),
               eval_header: str = EVAL_HEADER) -> Path:
    """Plausible runs: return rises, cost falls towards the budget, the filter rejects less with time.

    eval.csv every 5000 steps on 5 episodes: the unfiltered return and cost differ per algo and
    seed; filtered algorithms also have the filtered columns (lower return and cost)."""
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
            evals = []
            for s in range(5000, steps + 1, 5000):
                row = dict(step=s, return_mean=round(1000.0 + 200 * a + 37 * seed + s / 100, 3),
                           return_std=10.0, cost_mean=round(20.0 - 3 * a + 1.5 * seed - s / 5000, 4),
                           cost_std=1.0)
                if algo in filter_algos:
                    row.update(filtered_return_mean=row["return_mean"] - 50 - seed,
                               filtered_return_std=12.0, filtered_cost_mean=row["cost_mean"] - 4,
                               filtered_cost_std=0.5, filtered_rejected=7 + seed)
                evals.append(row)
            write_run(env_dir, algo, seed, rows, env=env, steps=steps, budget=budget, eval_rows=evals,
                      eval_header=eval_header, config={"eval_episodes": 5},
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


def test_average_budget_reports_the_cost_per_step_of_the_last_episodes(tmp_path):
    # 20 episodes, the last two (the last 10%): 1000 steps at 10 per step, then a fall after 20
    # steps at 80 per step. Episodes alike: (10 + 80) / 2 = 45; per step: 11,600 / 1,020.
    rows = [dict(step=1000 * (i + 1), episode=i, length=1000, cost=10.0) for i in range(19)]
    rows.append(dict(step=19_020, episode=19, length=20, cost=80.0, violated=1))
    write_run(tmp_path / "ant", "sac-lag", 0, rows, budget=(25.0, "average"),
              status={"state": "done", "reason": None, "steps_done": 19_020})
    write_run(tmp_path / "cheetah", "sac-lag", 0, rows, budget=(25.0, "sum"),
              status={"state": "done", "reason": None, "steps_done": 19_020})
    (ant,) = summarise(tmp_path / "ant")
    assert ant["final_cost"] == pytest.approx(45.0)
    assert ant["final_cost_per_step"] == pytest.approx((10 * 1000 + 80 * 20) / 1020)
    # the second half of the planned 10,000 steps (write_run's default): 14 episodes of 1000 steps
    # end after step 5,000 (at 6,000 to 19,000), then the fall
    assert ant["second_half_cost"] == pytest.approx((14 * 10 * 1000 + 80 * 20) / (14 * 1000 + 20))
    (cheetah,) = summarise(tmp_path / "cheetah")   # a sum budget: the per-step rate is not its unit
    assert cheetah["final_cost_per_step"] is None
    # weighted by length as the multiplier weighs episodes: the same number in the sum's units
    assert cheetah["second_half_cost"] == pytest.approx(ant["second_half_cost"])
    safety = section(write_report(tmp_path / "ant").read_text(), "Safety during training")
    assert "training cost per step, last 10%" in safety and "summed length" in safety
    assert "training cost per step, second half" in safety
    assert table_row(safety, "sac-lag")[5:8] == ["10.100 (1 seed)", "45.000 (1 seed)", "11.373 (1 seed)"]
    assert "cost per step" not in section(write_report(tmp_path / "cheetah").read_text(),
                                          "Safety during training")


def test_second_half_evaluations_over_the_budget(tmp_path):
    # evaluations every 2,000 of 10,000 planned steps: 6,000 to 10,000 are the second half; two of
    # those three exceed the budget of 25 (5,000 is not after half, 4,000's 90 is in the first half)
    evals = [dict(step=s, return_mean=1.0, return_std=0, cost_mean=c, cost_std=0)
             for s, c in [(2000, 90.0), (4000, 90.0), (5000, 30.0), (6000, 26.0), (8000, 25.0), (10000, 40.0)]]
    rows = [dict(step=1000 * (i + 1), episode=i, length=1000, cost=10.0) for i in range(10)]
    write_run(tmp_path / "toy", "sac-lag", 0, rows, eval_rows=evals,
              status={"state": "done", "reason": None, "steps_done": 10_000})
    write_run(tmp_path / "toy", "sac-lag", 1, rows, eval_rows=evals[:2],
              status={"state": "done", "reason": None, "steps_done": 10_000})
    first, second = summarise(tmp_path / "toy")
    assert (first["second_half_evals"], first["second_half_evals_over"]) == (3, 2)
    assert (second["second_half_evals"], second["second_half_evals_over"]) == (0, None)
    policy = section(write_report(tmp_path / "toy").read_text(), "Per seed: learned policy")
    assert "evaluations over budget, second half" in policy
    cells = {line.split("|")[2].strip(): line.strip(" |").split("|")[-1].strip()
             for line in policy.splitlines() if line.startswith("| sac-lag |")}
    assert cells == {"0": "2 of 3", "1": "-"}  # seed 1: no evaluation in the second half


def test_final_mean_takes_at_least_the_last_episode():
    assert final_mean(np.array([1.0, 2.0, 9.0])) == 9.0          # 10% of 3 -> 1
    assert final_mean(np.arange(15.0)) == pytest.approx(13.5)   # 10% of 15 -> 2
    assert final_mean(np.array([])) is None


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
    table = {a["algo"]: a for a in algo_table(summarise(tmp_path))}
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
        assert 1 <= len(mine) <= audit.AUDIT_BUCKETS
        assert [r["step"] for r in mine] == sorted(r["step"] for r in mine)
        for key in ("rejected", "leapfrog_steps", "unsafe_fallbacks"):   # spread, not lost
            assert sum(r[key] for r in mine) == pytest.approx(run.column(key).sum())
        assert sum(r["episodes"] for r in mine) == run.episodes
        assert sum(r["env_steps"] for r in mine) == run.steps
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
    totals = {t["algo"]: t for t in audit.audit_totals(collect_runs(tmp_path))}
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
    for a in algo_table(summary):   # per-algo mean and CI in the table (3 seeds)
        stat = a["final_return"]
        assert stat.has_ci and stat.low <= stat.mean <= stat.high
        assert f"{stat.mean:.1f} [{stat.low:.1f}, {stat.high:.1f}]" in text


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


# ----------------------------------------------------------------------------------------------
# The two headline tables: safety during training, the learned policy
# ----------------------------------------------------------------------------------------------

def section(text: str, heading: str) -> str:
    """The body of a `## heading` section of report.md (up to the next `## `)."""
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


def table_row(body: str, algo: str) -> list[str]:
    """The cells of the markdown table row of `algo` in a section."""
    (line,) = [ln for ln in body.splitlines() if ln.startswith(f"| {algo} |")]
    return [c.strip() for c in line.strip("|").split("|")]


def by_hand(run_dir: Path) -> dict:
    """A run's headline numbers straight from its CSV files (independent of safehpo.summary)."""
    progress = read_csv(run_dir / "progress.csv")
    evals = read_csv(run_dir / "eval.csv")
    costs = [float(r["cost"]) for r in progress]
    planned = yaml.safe_load((run_dir / "config.yaml").read_text())["steps"]
    late = [(float(r["cost"]), int(r["length"])) for r in progress if int(r["step"]) > planned / 2]
    last = evals[-1]
    k = max(1, math.ceil(0.1 * len(progress)))
    out = dict(violations=sum(int(r["violated"]) for r in progress), cost_all=sum(costs) / len(costs),
               cost_second_half=sum(c * n for c, n in late) / sum(n for _, n in late),
               cost_final=sum(costs[-k:]) / k, lam=float(progress[-1]["lambda"]),
               alpha=float(progress[-1]["alpha"]), eval_step=int(last["step"]),
               eval_return=float(last["return_mean"]), eval_cost=float(last["cost_mean"]))
    if last.get("filtered_return_mean"):
        out.update(filtered_return=float(last["filtered_return_mean"]),
                   filtered_cost=float(last["filtered_cost_mean"]),
                   filtered_rejected=int(float(last["filtered_rejected"])))
    return out


def test_summary_new_columns_on_hand_made_csv(tmp_path):
    rows = [dict(step=100 * (i + 1), episode=i, length=100, cost=[5.0, 30.0][i % 2],
                 violated=i % 2, **{"lambda": 0.1 * i}, alpha=1.0 / (i + 1)) for i in range(10)]
    evals = [dict(step=500, return_mean=1.0, return_std=0, cost_mean=2.0, cost_std=0,
                  filtered_return_mean=0.5, filtered_return_std=0, filtered_cost_mean=1.0,
                  filtered_cost_std=0, filtered_rejected=3),
             dict(step=1000, return_mean=10.0, return_std=0, cost_mean=20.0, cost_std=0,
                  filtered_return_mean=9.0, filtered_return_std=0, filtered_cost_mean=4.0,
                  filtered_cost_std=0, filtered_rejected=12)]
    write_run(tmp_path, "sac-hpo", 0, rows, eval_rows=evals, config={"eval_episodes": 4},
              status={"state": "done", "reason": None, "wall_seconds": 1.0, "steps_done": 1000})
    unfiltered = [dict(step=1000, return_mean=7.0, return_std=0, cost_mean=3.0, cost_std=0)]
    write_run(tmp_path, "sac-lag", 0, rows, eval_rows=unfiltered)          # filtered fields empty
    write_run(tmp_path, "sac-pid", 0, rows, eval_rows=unfiltered, eval_header=OLD_EVAL_HEADER)
    written = {r["algo"]: r for r in read_csv(write_summary(tmp_path))}
    for column in ("train_cost_mean", "final_lambda", "final_alpha", "eval_return", "eval_cost",
                   "eval_filtered_return", "eval_filtered_cost", "eval_step", "eval_episodes"):
        assert column in SUMMARY_COLUMNS
    hpo = written["sac-hpo"]
    assert float(hpo["train_cost_mean"]) == pytest.approx(17.5)      # (5 + 30) / 2
    assert float(hpo["final_cost"]) == pytest.approx(30.0)           # the last episode
    assert float(hpo["final_lambda"]) == pytest.approx(0.9) and float(hpo["final_alpha"]) == pytest.approx(0.1)
    assert (hpo["eval_step"], hpo["eval_episodes"]) == ("1000", "4")  # the last evaluation
    assert (float(hpo["eval_return"]), float(hpo["eval_cost"])) == (10.0, 20.0)
    assert (float(hpo["eval_filtered_return"]), float(hpo["eval_filtered_cost"])) == (9.0, 4.0)
    assert hpo["eval_filtered_rejected"] == "12"
    for algo in ("sac-lag", "sac-pid"):   # new format with empty fields, and the old 5-column file
        assert (written[algo]["eval_return"], written[algo]["eval_cost"]) == ("7", "3")
        assert written[algo]["eval_filtered_return"] == written[algo]["eval_filtered_cost"] == ""


def test_report_headline_tables_are_computed_from_the_files(tmp_path):
    make_bench(tmp_path, seeds=3)
    text = write_report(tmp_path).read_text()
    safety, policy = section(text, "Safety during training"), section(text, "The learned policy")
    assert text.index("## Safety during training") < text.index("## The learned policy")
    assert "progress.csv" in safety and "exploration" in safety and "Lyapunov filter" in safety
    assert "Deterministic evaluation" in policy and "N = 5 episodes per seed" in policy
    assert "step 20,000" in policy and "Filter off" in policy and "Filter on" in policy
    for algo in ("sac-lag", "sac-hpo"):
        hand = [by_hand(tmp_path / algo / f"seed-{s}") for s in range(3)]

        def cell(values, digits):
            mean, low, high = bootstrap_ci(values)
            return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
        row = table_row(safety, algo)
        assert row[1] == "3/3 done"
        assert row[2] == cell([h["violations"] for h in hand], 1)
        assert row[4] == cell([h["cost_all"] for h in hand], 3)
        assert row[5] == cell([h["cost_second_half"] for h in hand], 3)
        assert row[6] == cell([h["cost_final"] for h in hand], 3)
        row = table_row(policy, algo)
        assert row[2] == cell([h["eval_return"] for h in hand], 1)
        assert row[3] == cell([h["eval_cost"] for h in hand], 3)
        if algo == "sac-hpo":
            assert row[4] == cell([h["filtered_return"] for h in hand], 1)
            assert row[5] == cell([h["filtered_cost"] for h in hand], 3)
            assert row[6] == cell([h["filtered_rejected"] for h in hand], 1)
        else:   # no filter: nothing in the filter-on columns
            assert row[4:] == ["-", "-", "-"]
        # lambda and alpha of the last training episode, per seed
        per_seed = section(text, "Per seed: training")
        for s, h in enumerate(hand):
            cells = [c.strip() for c in [ln for ln in per_seed.splitlines()
                                         if ln.startswith(f"| {algo} | {s} |")][0].strip("|").split("|")]
            assert cells[8] == f"{h['cost_second_half']:.3f}"
            assert cells[13] == f"{h['lam']:.4g}" and cells[14] == f"{h['alpha']:.4g}"


def test_two_seeds_show_per_seed_values_not_a_ci(tmp_path):
    make_bench(tmp_path, seeds=2)
    text = write_report(tmp_path).read_text()
    safety, policy = section(text, "Safety during training"), section(text, "The learned policy")
    for body in (safety, policy):
        assert "confidence interval in brackets" not in body and "no confidence interval" in body
        for algo in ("sac-lag", "sac-hpo"):
            assert "[" not in " ".join(table_row(body, algo))
    hand = [by_hand(tmp_path / "sac-hpo" / f"seed-{s}") for s in range(2)]
    mean = (hand[0]["eval_return"] + hand[1]["eval_return"]) / 2
    assert table_row(policy, "sac-hpo")[2] == \
        f"{mean:.1f} (seeds: {hand[0]['eval_return']:.1f}, {hand[1]['eval_return']:.1f})"
    viol = [h["violations"] for h in hand]
    assert table_row(safety, "sac-hpo")[2] == f"{sum(viol) / 2:.1f} (seeds: {viol[0]}, {viol[1]})"
    method = section(text, "How the numbers were computed")
    assert "fewer than 3 seeds" in method and "no confidence interval" in method
    # one seed: the value and '(1 seed)'
    write_run(tmp_path / "one", "sac", 0, [dict(step=100, episode=0, length=100, cost=4.0)],
              status={"state": "done", "reason": None, "steps_done": 100})
    assert "4.000 (1 seed)" in table_row(section(write_report(tmp_path / "one").read_text(),
                                                 "Safety during training"), "sac")


def test_old_eval_csv_is_read_and_filtered_marked_not_recorded(tmp_path):
    make_bench(tmp_path, seeds=2, eval_header=OLD_EVAL_HEADER)
    text = write_report(tmp_path).read_text()
    policy = section(text, "The learned policy")
    hand = [by_hand(tmp_path / "sac-hpo" / f"seed-{s}") for s in range(2)]
    assert table_row(policy, "sac-hpo")[2].startswith(f"{(hand[0]['eval_return'] + hand[1]['eval_return']) / 2:.1f}")
    assert table_row(policy, "sac-hpo")[4:] == ["n/r", "n/r", "n/r"]
    assert "n/r: not recorded" in policy


def test_unfinished_runs_are_not_averaged(tmp_path):
    make_bench(tmp_path, seeds=3)
    # a fourth seed still running, with absurd numbers that would move any mean it entered
    write_run(tmp_path, "sac-hpo", 3, [dict(step=1000 * (i + 1), episode=i, length=1000, cost=900.0,
                                            violated=1, **{"return": -9999.0}) for i in range(4)],
              steps=20_000, budget=(25.0, "sum"),
              eval_rows=[dict(step=2000, return_mean=-9999.0, return_std=0, cost_mean=900.0, cost_std=0)],
              status={"state": "running", "reason": None, "steps_done": 4100})
    # an algorithm none of whose runs finished
    write_run(tmp_path, "sac-pid", 0, [dict(step=500, episode=0, length=500, cost=12.0, **{"return": 3.0})],
              steps=20_000, status={"state": "interrupted", "reason": "stopped", "steps_done": 600})
    summary = summarise(tmp_path)
    table = {a["algo"]: a for a in algo_table(summary)}
    hpo = table["sac-hpo"]
    assert (hpo["seeds"], hpo["done"], hpo["usable"], hpo["partial"]) == (4, 3, 3, False)
    done = [r for r in summarise(tmp_path) if r["algo"] == "sac-hpo" and r["status"] == "done"]
    assert sorted(hpo["train_cost_mean"].values) == sorted(r["train_cost_mean"] for r in done)
    assert sorted(hpo["eval_return"].values) == sorted(r["eval_return"] for r in done)
    assert table["sac-pid"]["partial"] and table["sac-pid"]["usable"] == 1

    text = write_report(tmp_path).read_text()
    assert "Runs: 6 of 8 finished." in text
    assert "sac-hpo seed 3 (running, 4000 of 20000 steps)" in text
    safety = section(text, "Safety during training")
    row = table_row(safety, "sac-hpo")
    assert row[1] == "3/4 done (1 running)"
    assert "9999" not in " ".join(row) and "900" not in row[4]
    assert table_row(safety, "sac-pid")[1] == "0/1 done (1 interrupted) †"
    assert "† No finished run" in safety
    per_seed = section(text, "Per seed: training")
    (line,) = [ln for ln in per_seed.splitlines() if ln.startswith("| sac-hpo | 3 |")]
    assert "**running** (unfinished)" in line and "4000 of 20000" in line


def test_custom_spec_is_titled_by_its_id(tmp_path):
    spec_path = "/home/someone/specs/my-cheetah.yaml"
    config = {"spec": {"id": "cheetah-custom", "path": spec_path,
                       "budget": {"threshold": 5.0, "kind": "sum"}}}
    write_run(tmp_path, "sac-hpo", 0, [dict(step=100, episode=0, length=100, cost=1.0)],
              env=spec_path, budget=None, config=config,
              status={"state": "done", "reason": None, "steps_done": 100})
    assert runrecord.env_name(tmp_path) == "cheetah-custom"
    text = write_report(tmp_path).read_text()
    assert text.startswith("# cheetah-custom\n")
    assert spec_path not in text.splitlines()[0]
    assert format_audit(tmp_path).startswith("cheetah-custom (budget 5 (sum per episode))")
    # without a spec entry, a path's file name (not the path)
    write_run(tmp_path / "old", "sac", 0, [dict(step=100, episode=0, length=100)], env=spec_path)
    assert runrecord.env_name(tmp_path / "old") == "my-cheetah"


# ----------------------------------------------------------------------------------------------
# The audit spreads each episode over the steps it covered
# ----------------------------------------------------------------------------------------------

def test_audit_spreads_an_episode_over_its_steps(tmp_path):
    # 4000 planned steps -> buckets of 200. Episode 0 covers (0, 1000]: its 500 rejections are
    # 100 per bucket, not 500 in the bucket ending at 1000. Episode 1 covers (1000, 1300].
    rows = [dict(step=1000, episode=0, length=1000, rejected=500, leapfrog_steps=1000, unsafe_fallbacks=10),
            dict(step=1300, episode=1, length=300, rejected=30, leapfrog_steps=0, unsafe_fallbacks=1)]
    write_run(tmp_path, "sac-hpo", 0, rows, steps=4000)
    table = audit_table(tmp_path)
    assert [r["step"] for r in table] == [200, 400, 600, 800, 1000, 1200, 1400]
    assert [r["rejected"] for r in table] == pytest.approx([100, 100, 100, 100, 100, 20, 10])
    assert [r["leapfrog_steps"] for r in table][:5] == pytest.approx([200] * 5)
    assert [r["unsafe_fallbacks"] for r in table] == pytest.approx([2, 2, 2, 2, 2, 2 / 3, 1 / 3])
    assert [r["env_steps"] for r in table] == [200, 200, 200, 200, 200, 200, 100]
    assert [r["episodes"] for r in table] == [0, 0, 0, 0, 1, 0, 1]      # where episodes ended
    assert [r["rejected_per_1k_steps"] for r in table] == pytest.approx([500] * 5 + [100, 100])
    written = read_csv(write_audit(tmp_path))
    assert [r["unsafe_fallbacks"] for r in written][-2:] == ["0.667", "0.333"]   # 3 decimals
    assert [r["rejected"] for r in written][:2] == ["100", "100"]


def test_audit_spread_without_lengths_uses_the_previous_end(tmp_path):
    rows = [dict(step=400, episode=0, length="", rejected=4), dict(step=800, episode=1, length="", rejected=8)]
    write_run(tmp_path, "sac-hpo", 0, rows, steps=800)   # buckets of 40
    table = audit_table(tmp_path)
    assert [r["rejected"] for r in table] == pytest.approx([0.4] * 10 + [0.8] * 10)


def test_report_names_the_settings_that_differ_from_the_defaults(tmp_path):
    """A run's config.yaml is compared with Config(): a differing hyperparameter is listed per
    algorithm, with the seeds when only some have it; a field missing from an old config.yaml
    counts at its LEGACY_DEFAULTS value; the run's name, length and speed settings never count,
    nor settings the run does not read, nor a run without a config.yaml."""
    current = Config().to_dict()
    rows = [dict(step=1000, episode=0, cost=1.0, length=1000)]
    write_run(tmp_path, "sac-lag", 0, rows, config={**current, "cost_critics": 1, "threads": 4, "compile": "never"})
    write_run(tmp_path, "sac-lag", 1, rows, config={**current, "cost_critics": 1, "lr": 0.001, "pid_kp": 0.5})
    write_run(tmp_path, "sac-hpo", 0, rows, config=current)
    old = {k: v for k, v in current.items() if k not in LEGACY_DEFAULTS}
    write_run(tmp_path, "sac-pid", 0, rows, config={**old, "algo": "sac-pid"})
    text = settings_text(collect_runs(tmp_path))
    assert "sac-lag: `cost_critics=1`, `lr=0.001 (seed 1)`" in text
    assert "sac-hpo" not in text and "threads" not in text and "compile" not in text
    assert "pid_kp" not in text   # sac-lag never reads the PID gains
    legacy = {k: v for k, v in LEGACY_DEFAULTS.items() if current[k] != v}
    assert legacy  # the old defaults differ from today's in something, or this test tests nothing
    for key, value in legacy.items():
        assert f"{key}={str(value).lower() if isinstance(value, bool) else value}" in text.split("sac-pid: ")[1]
    (tmp_path / "only").mkdir()
    write_run(tmp_path / "only", "sac-hpo", 0, rows, config=current)
    assert settings_text(collect_runs(tmp_path / "only")) == \
        "Settings: the defaults of safehpo/config.py for every algorithm."
    failed = write_run(tmp_path / "only", "sac-lag", 1, rows)  # failed before writing its config.yaml
    (failed / "config.yaml").unlink()
    assert settings_text(collect_runs(tmp_path / "only")) == \
        "Settings: the defaults of safehpo/config.py for every algorithm."
    assert settings_text(collect_runs(tmp_path)) in write_report(tmp_path).read_text()
