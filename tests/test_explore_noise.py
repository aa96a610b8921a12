"""benchmarks/explore_noise.py: its rows are the policies `safehpo evaluate` plays, at the stds asked."""

from __future__ import annotations

from conftest import TINY, load_benchmark
from safehpo.config import Config, apply_overrides
from safehpo.evaluation import evaluate_run
from safehpo.train import train


def test_rows_replay_the_evaluations_and_the_std_changes_the_actions(torque_spec, tmp_path):
    cfg = apply_overrides(Config(env=torque_spec, algo="sac-hpo", seed=0, steps=250), TINY)
    run = train(cfg, tmp_path / "run", progress=False).out
    probe = load_benchmark("explore_noise")
    kind, rows = probe.play_rows(run, [cfg.momentum_std_explore, 0.0], episodes=2, filtered=True)
    assert kind == "average"
    assert [(r["policy"], r["std"]) for r in rows] == [
        ("deterministic", None), ("explore", 1.0), ("explore", 0.0),
        ("explore, filter on", 1.0), ("explore, filter on", 0.0)]
    # at the run's own std each row is the policy `safehpo evaluate` plays, on the same seeds and stream
    for row, kwargs in ((rows[0], {}), (rows[1], dict(stochastic=True)),
                        (rows[3], dict(stochastic=True, filtered=True))):
        played = evaluate_run(run, episodes=2, **kwargs).episodes
        assert row["returns"] == [e.ret for e in played]
        assert row["costs"] == [e.cost for e in played]
    # the torque cost grows with the momentum noise: without it the same policy costs less
    assert probe.row_cost(rows[2], kind) < probe.row_cost(rows[1], kind)
