"""`safehpo speed`: the JSON it writes, one result per (algo, env, K), one-line errors for bad flags."""

import json
import math

import pytest

from conftest import TINY, random_batch
from safehpo.cli import main

REQUIRED = {"machine", "torch", "threads", "device", "steps", "results"}
RESULT_KEYS = {"algo", "env", "k", "steps_per_s", "ms_per_update", "ms_per_step"}


@pytest.mark.slow
def test_speed_writes_one_positive_result_per_algo_env_k(tmp_path, capsys, monkeypatch, recompile_limit):
    import torch._dynamo
    recompile_limit(2)  # room for one configuration's graphs
    out = tmp_path / "tmp" / "speed.json"
    tiny = [a for item in TINY for a in ("--set", item)]
    code = main(["speed", "--steps", "20", "--warmup", "5", "--fill", "100", "--algos", "sac-lag,sac-hpo",
                 "--k", "1", "--envs", "halfcheetah-speed", "--device", "cpu", "--out", str(out), *tiny])
    assert code == 0
    doc = json.loads(out.read_text())
    assert REQUIRED <= set(doc)
    assert {"cpu", "cores", "platform"} <= set(doc["machine"])
    assert doc["threads"] == 1 and doc["steps"] == 20 and doc["device"] == "cpu"
    got = [(r["algo"], r["env"], r["k"]) for r in doc["results"]]
    assert got == [("sac-lag", "halfcheetah-speed", 0), ("sac-hpo", "halfcheetah-speed", 1)]
    for r in doc["results"]:
        assert RESULT_KEYS <= set(r)
        for key in ("steps_per_s", "ms_per_update", "ms_per_step"):
            assert math.isfinite(r[key]) and r[key] > 0, (r["algo"], key, r[key])
        # the update is part of the step, and the rate is the step time's inverse
        assert r["ms_per_update"] < r["ms_per_step"]
        assert r["ms_per_step"] == pytest.approx(1000.0 / r["steps_per_s"])
    # a chain multiplies more than a Gaussian policy (the counts per K: the gflop tests below); at the
    # measured matmul rate the work is a floor below the measured update
    gflop = [r["gflop_per_update"] for r in doc["results"]]
    assert 0 < gflop[0] < gflop[1]
    assert doc["matmul_gflops"] > 0
    # measured as a long run runs (compile=auto): sac-hpo compiled before the timed loop, sac-lag eager
    assert [(r["compiled"], r["compile_s"] is not None and r["compile_s"] > 0) for r in doc["results"]] == [
        (False, False), (True, True)]
    for r in doc["results"]:
        assert r["floor_ms"] == pytest.approx(1000.0 * r["gflop_per_update"] / doc["matmul_gflops"])
        assert 0 < r["floor_ms"] < r["ms_per_update"]
    captured = capsys.readouterr()
    table = captured.out
    assert "sac-hpo" in table and "ms/update" in table and "floor ms" in table
    # the progress bar says what stands still: sac-hpo's compile, then the timing; sac-lag only times
    assert "sac-hpo halfcheetah-speed K=1: compiling (torch.compile" in captured.err
    assert "sac-hpo halfcheetah-speed K=1: timing" in captured.err
    assert "sac-lag halfcheetah-speed: timing" in captured.err and "sac-lag halfcheetah-speed: compiling" not in captured.err
    assert not list(out.parent.glob(".*.tmp"))  # the atomic write left no temporary file


@pytest.mark.parametrize("flags, names", [
    (["--algos", "sac-lag,nope"], "--algos"),
    (["--envs", "no-such-env"], "--envs"),
    (["--k", "-1"], "--k"),
    (["--k", "x"], "--k"),
    (["--steps", "0"], "--steps"),
    (["--steps", "-5"], "--steps"),
    (["--warmup", "-1"], "--warmup"),
    (["--threads", "0"], "--threads"),
    (["--device", "tpu"], "--device"),
    (["--set", "hidden=0"], "hidden"),
])
def test_bad_flags_exit_2_with_one_line(flags, names, tmp_path, capsys):
    out = tmp_path / "speed.json"
    assert main(["speed", "--steps", "5", "--quiet", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and names in err, err
    assert not out.exists()


@pytest.mark.parametrize("cost_critics", [1, 2])
@pytest.mark.parametrize("lam", [1.0, 0.0])
def test_update_gflop_is_the_matmul_work_the_design_counts(lam, cost_critics):
    """One sac-lag update multiplies exactly: the critic target (actor on s', every target critic:
    two reward critics and `cost_critics` cost critics), the critic loss (forward, weight
    gradients, input gradients of layers 2-3), the actor step (actor, then the critics with
    detached weights: input gradients only, the cost critics only while lambda > 0) and the
    actor's backward. Extra work (say, critic weight gradients in the actor step) fails this."""
    import numpy as np

    from safehpo.agent import Agent
    from safehpo.config import Config
    from safehpo.speed import update_gflop

    d, A, H, Ha, B = 5, 2, 16, 12, 32
    cfg = Config(algo="sac-lag", hidden=H, actor_hidden=Ha, batch_size=B, lambda_init=lam,
                 cost_critics=cost_critics)
    agent = Agent(cfg, d, -np.ones(A, np.float32), np.ones(A, np.float32), constrained=True, budget=1.0)
    batch = random_batch(B, d, A)
    critic = 2 * B * ((d + A) * H + H * H + H)           # one member's forward
    critic_input_grads = 2 * B * (H + H * H + H * (d + A))
    actor = 2 * B * (d * Ha + Ha * Ha + Ha * 2 * A)
    actor_input_grads = 2 * B * (Ha * Ha + Ha * 2 * A)     # layers 2 and 3 (s needs no gradient)
    n = 2 + cost_critics                                   # critic members
    actor_step_members = n if lam > 0 else 2
    expected = (actor + n * critic                                     # target
                + n * critic + n * critic + n * (2 * B * (H * H + H))  # loss: forward, weight grads, input grads
                + actor + actor_step_members * (critic + critic_input_grads)
                + actor + actor_input_grads)                            # actor backward
    assert update_gflop(agent, batch) * 1e9 == pytest.approx(expected, rel=1e-9)


def test_work_torch_cannot_count_is_reported_as_unknown():
    """FlopCounterMode refuses autograd.grad on a leaf; speed then reports '-', not a traceback."""
    import torch

    from safehpo.speed import SpeedResult, format_table, update_gflop

    class LeafGrad:  # dQ/da of a module at a leaf action, as a critic force through autograd does
        net = torch.nn.Linear(3, 1)

        def update(self, batch):
            a = torch.randn(4, 3, requires_grad=True)
            torch.autograd.grad(self.net(a).sum(), a)

    assert update_gflop(LeafGrad(), {}) is None
    row = format_table([SpeedResult("sac-hpo", "halfcheetah-speed", 3, 30.0, 29.0, 33.3, 2.6, 31.0)]).splitlines()[-1]
    assert row.split()[-2:] == ["-", "-"]


@pytest.mark.parametrize("cost_critics", [1, 2])
@pytest.mark.parametrize("k, lam", [(1, 1.0), (3, 1.0), (3, 0.0)])
def test_sac_hpo_update_gflop_is_two_chains_of_force_evaluations(k, lam, cost_critics):
    """sac-hpo's update multiplies: the critic target (base actor on s', a chain on s', every
    target critic), the critic loss (as sac-lag's), the actor chain on s, and the backward through
    the chain's gated-kick networks and the base actor. Each chain computes the states' share of
    the first layer once, then K + 1 force evaluations: forward of the critic members of Q_lambda
    (the cost critics only while lambda > 0), input-backward of the twin each row's minimum picks
    (no tie in random critics) and of every cost critic, and the two kick networks."""
    import numpy as np

    from safehpo.agent import Agent
    from safehpo.config import Config
    from safehpo.speed import update_gflop

    d, A, H, Hb, Hg, B = 5, 2, 16, 12, 8, 32
    cfg = Config(algo="sac-hpo", hidden=H, base_hidden=Hb, gate_hidden=Hg, batch_size=B, lambda_init=lam,
                 leapfrog_steps=k, cost_critics=cost_critics)
    agent = Agent(cfg, d, -np.ones(A, np.float32), np.ones(A, np.float32), constrained=True, budget=1.0)
    batch = random_batch(B, d, A)

    def mm(i, o):
        return 2 * B * i * o

    n = 2 + cost_critics                                 # critic members
    m = n if lam > 0 else 2                              # members of Q_lambda
    critic = mm(d + A, H) + mm(H, H) + mm(H, 1)          # one member's forward
    actor = mm(d, Hb) + mm(Hb, 2 * A)                     # the base policy: one hidden layer
    force = m * (mm(A, H) + mm(H, H) + mm(H, 1)) + (m - 1) * (mm(H, H) + mm(H, A))
    kick_nets = 2 * (mm(2 * A, Hg) + mm(Hg, A))          # T_h and sigma_h
    chain = m * mm(d, H) + (k + 1) * (force + kick_nets)
    expected = (actor + chain + n * critic                              # target
                + n * critic + n * critic + n * (mm(H, H) + mm(H, 1))    # loss, as sac-lag's
                + actor + chain                                          # actor step
                + (k + 1) * 2 * kick_nets + actor + mm(Hb, 2 * A))        # backward: kicks, base actor
    assert update_gflop(agent, batch) * 1e9 == pytest.approx(expected, rel=1e-9)
