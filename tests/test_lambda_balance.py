"""benchmarks/lambda_balance.py: its replay of the ascent rule is the rule train.py ran, and a
stretch's mean cost is its target moved by lambda's rise less the floor's lift."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY
from safehpo.config import Config, apply_overrides
from safehpo.lagrange import GradientAscent
from safehpo.train import train

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "lambda_balance.py"


def load_script():
    spec = importlib.util.spec_from_file_location("lambda_balance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mean_and_prediction(b):
    mean = b["sum_wc"] / b["sum_w"]
    rise = b["lambda_end"] - b["lambda_start"]
    return mean, b["target"] * (1 + (rise - b["lift"]) / (b["eta"] * b["sum_w"]))


def test_identity_with_the_floor_binding():
    """Episodes of varied length and cost, lambda driven to its floor and off it again."""
    cfg = {"algo": "sac-lag", "lagrange": "paper", "lambda_units": "relative", "lambda_window": 1,
           "lambda_clip": math.inf, "lambda_lr": 0.1, "lambda_init": 0.0, "learning_starts": 0,
           "budget_margin": 0.2, "spec": {"budget": {"threshold": 10.0, "kind": "average"}, "max_episode_steps": 100}}
    rule = GradientAscent(8.0, lr=0.1, relative=True)
    rng = np.random.default_rng(0)
    rows, step = [], 0
    for i in range(60):
        length = int(rng.integers(10, 101))
        cost = float(rng.uniform(0, 12) if i % 20 < 10 else rng.uniform(0, 40))
        step += length
        rows.append({"step": step, "cost": cost, "length": length,
                     "lambda": rule.episode_end(cost, length / 100)})
    script = load_script()
    b = script.balance(cfg, rows, 0, math.inf)
    assert b["n"] == 60 and b["worst_replay_error"] < 1e-12
    assert b["lift"] > 0.05                      # the floor bound: the cheap stretches pull lambda to 0
    mean, predicted = mean_and_prediction(b)
    assert predicted == pytest.approx(mean, rel=1e-12)
    # the floor only ever pulls the mean under what lambda's rise alone would say
    assert mean < b["target"] * (1 + (b["lambda_end"] - b["lambda_start"]) / (b["eta"] * b["sum_w"]))


def test_replays_what_training_logged(speed_spec, tmp_path):
    cfg = apply_overrides(Config(env=speed_spec, algo="sac-lag", seed=0, steps=400),
                          TINY + ["budget_margin=0.25"])
    run = train(cfg, tmp_path / "run", progress=False).out
    script = load_script()
    run_cfg, rows = script.load(run)
    assert script.unsupported(run_cfg) is None
    b = script.balance(run_cfg, rows, 0, math.inf)
    assert b["target"] == pytest.approx(1.5)    # (1 - 0.25) * the sum budget of 2
    assert b["n"] == 6                          # 50-step episodes; the first two hold warm-up steps
    assert b["lambda_end"] > 0                  # the rule moved, so the replay is a check
    assert b["worst_replay_error"] < 1e-5       # progress.csv keeps 6 significant digits
    mean, predicted = mean_and_prediction(b)
    assert predicted == pytest.approx(mean, rel=1e-9)


def test_refuses_rules_without_the_identity():
    script = load_script()
    base = {"algo": "sac-lag", "lagrange": "paper", "lambda_units": "relative", "lambda_window": 1,
            "lambda_clip": math.inf, "spec": {"budget": {"threshold": 1.0, "kind": "sum"}}}
    assert script.unsupported(base) is None
    assert "pid" in script.unsupported({**base, "algo": "sac-pid"})
    assert "lambda_clip" in script.unsupported({**base, "lambda_clip": 1.0})
    assert "lambda_window" in script.unsupported({**base, "lambda_window": 10})
    assert "lambda_units" in script.unsupported({**base, "lambda_units": "paper"})
