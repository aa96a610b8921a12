"""benchmarks/terminations.py: every early end of an Ant episode found in the buffer, by the torso's height."""

from __future__ import annotations

import csv

import torch
from conftest import TINY, load_benchmark
from safehpo.config import Config, apply_overrides
from safehpo.train import train


def test_each_early_episode_end_is_a_termination_outside_the_healthy_height(tmp_path, capsys):
    cfg = apply_overrides(Config(env="ant-torque", algo="sac-lag", seed=0, steps=400), TINY)
    run = train(cfg, tmp_path / "run", progress=False).out
    with open(run / "progress.csv", newline="") as f:
        episodes = [(int(r["step"]), int(r["length"])) for r in csv.DictReader(f)]
    ended_early = [(step, length) for step, length in episodes if length < 1000]
    assert ended_early  # Ant under near-random actions ends episodes early: something to find
    script = load_benchmark("terminations")
    buffer = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["buffer"]
    rows = script.terminations(buffer, dict(episodes), 0)
    assert [(r["step"], r["length"]) for r in rows] == ended_early
    assert all(not 0.2 <= r["height"] <= 1.0 for r in rows)  # Ant-v5 ends an episode only there
    assert script.main([str(run), "--from", "0"]) == 0
    out = capsys.readouterr().out
    assert f"terminations after step 0: {len(rows)} " in out and "inside (another cause): 0;" in out


def test_a_run_not_on_ant_is_one_line_and_exit_2(torque_spec, tmp_path, capsys):
    cfg = apply_overrides(Config(env=torque_spec, algo="sac-lag", seed=0, steps=200), TINY)
    run = train(cfg, tmp_path / "run", progress=False).out
    script = load_benchmark("terminations")
    assert script.main([str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("terminations: cheetah-torque-short is not Ant") and "\n" not in err
    assert script.main([str(tmp_path / "nowhere")]) == 2
