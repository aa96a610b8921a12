"""benchmarks/filter_check.py: what it records of the Lyapunov filter is what the filter decided."""

from __future__ import annotations

import numpy as np

from conftest import TINY, load_benchmark
from safehpo.config import Config, apply_overrides
from safehpo.train import train


def test_recorded_tests_reproduce_the_filters_audit(speed_spec, tmp_path):
    cfg = apply_overrides(Config(env=speed_spec, algo="sac-hpo", seed=0, steps=250), TINY)
    run = train(cfg, tmp_path / "run", progress=False).out
    r = load_benchmark("filter_check").inspect(run, episodes=2, seed=3)
    steps = [s for e in r["episodes"] for s in e["steps"]]
    assert len(steps) == sum(e["length"] for e in r["episodes"]) == 100   # two 50-step episodes
    # eq. 14 recomputed from the recorded values: every candidate before the chosen one failed,
    # the chosen one passed unless the step fell back
    rejected = fallbacks = 0
    for eps, ref, costs in steps:
        assert 1 <= len(costs) <= r["k_max"]
        passed = costs - ref <= eps
        assert not passed[:-1].any()
        rejected += int((~passed).sum())
        if not passed[-1]:
            fallbacks += 1
            assert len(costs) == r["k_max"]
    assert rejected == r["audit"]["rejected"]
    assert fallbacks == r["audit"]["unsafe_fallbacks"]
    assert sum(len(c) for _, _, c in steps) == r["audit"]["leapfrog_steps"]
    # eps_L is one number per episode (eq. 15, from its first state)
    for e in r["episodes"]:
        assert len({eps for eps, _, _ in e["steps"]}) == 1
    assert np.isfinite([ref for _, ref, _ in steps]).all()
