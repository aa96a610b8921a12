"""benchmarks/lambda_balance.py: its replay of the ascent rule is the rule train.py ran, and a
stretch's mean cost is its target moved by lambda's rise less the floor's lift."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import TINY, load_benchmark
from safehpo.config import Config, apply_overrides
from safehpo.lagrange import GradientAscent
from safehpo.train import train


def measured_mean(rows, start, learning_starts, by_length=True):
    """The length-weighted (or plain, each episode alike) mean cost of the counted episodes ending
    after `start`, from the rows."""
    kept = [r for r in rows if r["step"] > start and r["step"] - r["length"] >= learning_starts]
    weights = [r["length"] if by_length else 1.0 for r in kept]
    return sum(r["cost"] * w for r, w in zip(kept, weights)) / sum(weights)


def predicted_mean(b):
    """The identity, with lambda's rise read off the log."""
    rise = b["logged_end"] - b["logged_start"]
    return b["target"] * (1 + (rise - b["lift"]) / (b["eta"] * b["sum_w"]))


@pytest.mark.parametrize("weight", ["length", "episode"])
@pytest.mark.parametrize("floor", [0.0, 0.2])
def test_identity_with_the_floor_binding(floor, weight):
    """Episodes of varied length and cost, lambda driven to its floor (0, or lambda_min) and off it
    again; each episode's update weighted by its length share or (lambda_weight=episode) alike."""
    cfg = {"algo": "sac-lag", "lagrange": "paper", "lambda_units": "relative", "lambda_window": 1,
           "lambda_clip": math.inf, "lambda_lr": 0.1, "lambda_init": 0.0, "learning_starts": 0, "lambda_min": floor,
           "budget_margin": 0.2, "lambda_weight": weight,
           "spec": {"budget": {"threshold": 10.0, "kind": "average"}, "max_episode_steps": 100}}
    by_length = weight == "length"
    rule = GradientAscent(8.0, lr=0.1, relative=True, floor=floor, by_length=by_length)
    rng = np.random.default_rng(0)
    rows, step = [], 0
    for i in range(60):
        length = int(rng.integers(10, 101))
        cost = float(rng.uniform(0, 12) if i % 20 < 10 else rng.uniform(0, 40))
        step += length
        rows.append({"step": step, "cost": cost, "length": length,
                     "lambda": rule.episode_end(cost, length / 100)})
    script = load_benchmark("lambda_balance")
    for start in (0, rows[29]["step"]):          # the whole run, and a stretch entered with lambda > 0
        b = script.balance(cfg, rows, start, math.inf)
        assert b["worst_replay_error"] < 1e-12
        if start == 0:
            assert b["lift"] > 0.05              # the floor bound: the cheap stretches pull lambda to 0
        else:
            assert b["logged_start"] > floor
        mean = measured_mean(rows, start, 0, by_length)
        assert predicted_mean(b) == pytest.approx(mean, rel=1e-12)
        assert mean != pytest.approx(measured_mean(rows, start, 0, not by_length), rel=1e-3)
        # the floor only ever pulls the mean under what lambda's rise alone would say
        rise_alone = b["target"] * (1 + (b["logged_end"] - b["logged_start"]) / (b["eta"] * b["sum_w"]))
        assert mean < rise_alone if b["lift"] > 0 else mean == pytest.approx(rise_alone, rel=1e-12)
    assert b["n"] == 30


def test_replays_what_training_logged(speed_spec, tmp_path):
    cfg = apply_overrides(Config(env=speed_spec, algo="sac-lag", seed=0, steps=400),
                          TINY + ["budget_margin=0.25"])
    run = train(cfg, tmp_path / "run", progress=False).out
    script = load_benchmark("lambda_balance")
    run_cfg, rows = script.load(run)
    assert script.unsupported(run_cfg) is None
    b = script.balance(run_cfg, rows, 0, math.inf)
    assert b["target"] == pytest.approx(1.5)    # (1 - 0.25) * the sum budget of 2
    assert b["n"] == 6                          # 50-step episodes; the first two hold warm-up steps
    assert b["lambda_end"] > 0                  # the rule moved, so the replay is a check
    assert b["worst_replay_error"] < 1e-5       # progress.csv keeps 6 significant digits
    assert predicted_mean(b) == pytest.approx(measured_mean(rows, 0, 100), rel=1e-5)


def test_exits_2_when_the_log_is_not_the_rule(speed_spec, tmp_path, capsys, monkeypatch):
    cfg = apply_overrides(Config(env=speed_spec, algo="sac-lag", seed=0, steps=300), TINY)
    run = train(cfg, tmp_path / "run", progress=False).out
    script = load_benchmark("lambda_balance")

    def run_main(path):
        monkeypatch.setattr("sys.argv", ["lambda_balance.py", str(path), "--from", "0"])
        return script.main()

    assert run_main(run) == 0
    progress = run / "progress.csv"
    text = progress.read_text().splitlines()
    header = text[0].split(",")
    col = header.index("lambda")
    last = text[-1].split(",")
    last[col] = str(float(last[col]) + 0.01)   # a lambda the rule did not produce
    progress.write_text("\n".join(text[:-1] + [",".join(last)]) + "\n")
    assert run_main(run) == 2
    assert "misses the logged lambda" in capsys.readouterr().err
    # a config.yaml saved before lambda_clip existed: that run clipped at +1
    config = run / "config.yaml"
    config.write_text("\n".join(l for l in config.read_text().splitlines() if not l.startswith("lambda_clip")))
    assert run_main(run) == 2
    assert "lambda_clip is 1.0" in capsys.readouterr().err


def test_refuses_rules_without_the_identity():
    script = load_benchmark("lambda_balance")
    base = {"algo": "sac-lag", "lagrange": "paper", "lambda_units": "relative", "lambda_window": 1,
            "lambda_clip": math.inf, "lambda_lr": 0.1, "learning_starts": 0,
            "spec": {"budget": {"threshold": 1.0, "kind": "sum"}, "max_episode_steps": 10}}
    assert script.unsupported(base) is None
    assert "pid" in script.unsupported({**base, "algo": "sac-pid"})
    assert "lambda_clip" in script.unsupported({**base, "lambda_clip": 1.0})
    assert "lambda_window" in script.unsupported({**base, "lambda_window": 10})
    assert "lambda_units" in script.unsupported({**base, "lambda_units": "paper"})
    assert "budget is 0" in script.unsupported({**base, "spec": {**base["spec"], "budget": {"threshold": 0}}})
    assert "lambda_lr is 0" in script.unsupported({**base, "lambda_lr": 0})
    assert "no 'algo'" in script.unsupported({k: v for k, v in base.items() if k != "algo"})
