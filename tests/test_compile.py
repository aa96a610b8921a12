"""torch.compile of the update (compile = auto | always | never): same math as eager, a clean fallback."""

import numpy as np
import pytest
import torch

from conftest import random_batch
from safehpo.agent import Agent
from safehpo.fast import COMPILE_MIN_UPDATES, compiles
from safehpo.config import Config, ConfigError, apply_overrides

pytestmark = pytest.mark.slow  # every test here compiles (tens of seconds cold)


def hpo_agent(compile_mode, **changes):
    torch.manual_seed(0)
    cfg = Config(algo="sac-hpo", hidden=16, base_hidden=16, gate_hidden=8, batch_size=32, leapfrog_steps=2,
                 compile=compile_mode, **changes)
    return Agent(cfg, 5, -np.ones(2, np.float32), np.ones(2, np.float32), constrained=True, budget=1.0,
                 budget_discounted=1.0)


def assert_same_parameters(agent, reference, rtol, atol):
    """Every network parameter and the temperature of `agent` as `reference`'s, to the tolerance."""
    def parameters(a):
        nets = [a.actor, a.gated, a.critics, a.critics_target]
        return [p.detach() for net in nets for p in net.parameters()] + [a.log_alpha.detach()]
    for p, q in zip(parameters(reference), parameters(agent), strict=True):
        torch.testing.assert_close(q, p, rtol=rtol, atol=atol)


def test_compile_auto_is_on_for_long_runs_where_it_was_measured_faster():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    long = Config(algo="sac-hpo", steps=1_000_000)
    assert compiles(long, cpu) and compiles(long, cuda)
    assert not compiles(long.replace(algo="sac-lag"), cpu)                 # measured slower compiled on CPU
    assert not compiles(long.replace(algo="sac-lag"), cuda)                # and no faster on CUDA
    assert not compiles(long.replace(algo="hpo-explore"), cpu)             # no chain in its update
    assert not compiles(long.replace(steps=5_000 + COMPILE_MIN_UPDATES - 1), cpu)  # too short to repay it
    for device in (cpu, cuda):
        assert not compiles(long.replace(second_order=True), device)      # autograd.grad splits the graph
    assert compiles(long.replace(algo="sac-lag", compile="always"), cpu)
    assert not compiles(long.replace(compile="never"), cpu)
    with pytest.raises(ConfigError, match="'compile' must be one of auto, always, never"):
        apply_overrides(Config(), ["compile=yes"])


def test_compiled_update_equals_eager_and_compiles_once_per_loss(recompile_limit):
    """Three updates with a new lambda each: the compiled agent ends with the eager
    agent's parameters (the compiled losses draw their random numbers as eager does, from the same
    seed), and each loss compiles once for all three lambdas (a recompile past the limit of 1 would
    raise and the agent would fall back to eager, which the last assert catches)."""
    import torch._dynamo
    recompile_limit(1)
    from torch._dynamo.utils import counters
    counters.clear()
    eager, compiled = hpo_agent("never"), hpo_agent("always")
    assert compiled.compiled and not eager.compiled
    batches = [random_batch(32, 5, 2) for _ in range(3)]
    for i, (batch, lam) in enumerate(zip(batches, (1.0, 0.6, 0.3))):
        for agent in (eager, compiled):
            agent.multiplier.value = lam  # as an episode end sets it
            torch.manual_seed(100 + i)
            agent.update(batch)
    assert compiled.compiled, "fell back to eager"
    assert counters["stats"]["unique_graphs"] >= 2, "nothing was compiled"
    assert_same_parameters(compiled, eager, rtol=1e-4, atol=1e-5)


def test_compiled_acting_picks_the_eager_actions(recompile_limit):
    """Acting (one state, no grad) runs compiled too: the Lyapunov filter's start (a draw, or the
    mean for a deterministic action) and its leapfrog steps, and the unfiltered deterministic
    action. From the same seed the compiled agent picks the eager agent's actions, as lambda
    changes (at most two graphs each, lambda = 0 and lambda != 0, or the agent would fall back
    to eager), also where the filter rejects every candidate and takes its K_max steps."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    recompile_limit(2)
    counters.clear()
    eager, compiled = hpo_agent("never"), hpo_agent("always")
    assert eager.filter_on and compiled.filter_on
    states = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    for i, lam in enumerate((0.0, 0.6, 0.3, 0.0)):  # lambda = 0 (Q_C skipped), two others, then 0 again
        actions = []
        for agent in (eager, compiled):
            agent.multiplier.value = lam
            agent.episode_start(states[0])
            if i % 2:
                agent.filter.eps_l = -1e6  # no candidate passes: the filter's kick and steps run K_max times
            torch.manual_seed(200 + i)
            drawn = [agent.act(s) for s in states]
            unfiltered = [agent.act(s, deterministic=True, filtered=False) for s in states]
            actions.append(np.stack(drawn + [agent.act(s, deterministic=True) for s in states] + unfiltered))
        np.testing.assert_allclose(actions[1], actions[0], rtol=1e-4, atol=1e-5)
        assert compiled.audit == eager.audit
        assert compiled.audit.filtered_steps == 2 * len(states)  # draws and deterministic actions
        if i % 2:
            assert compiled.audit.rejected == 2 * len(states) * compiled.cfg.k_max
    assert compiled.compiled, "fell back to eager"
    # the filter's start (drawn, mean), its step and the unfiltered deterministic action, each
    # compiled for lambda = 0 and lambda != 0
    assert counters["stats"]["unique_graphs"] >= 8, "acting was not compiled"


def test_a_failing_compile_falls_back_to_eager_with_one_line(monkeypatch, capsys):
    import safehpo.agent

    def broken_compile(fn, **kwargs):
        def call(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")
        return call

    monkeypatch.setattr(safehpo.agent.torch, "compile", broken_compile)
    eager, compiled = hpo_agent("never"), hpo_agent("always")
    batch = random_batch(32, 5, 2)
    for agent in (eager, compiled):
        torch.manual_seed(1)
        agent.update(batch)
    assert not compiled.compiled
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["safehpo: torch.compile failed, training eagerly (InvalidCxxCompiler: No working C++ compiler found)"]
    assert_same_parameters(compiled, eager, rtol=0, atol=0)


def test_past_the_recompile_limit_an_agent_says_it_updates_eagerly(recompile_limit, capsys):
    """torch's answer to a recompile past its limit is to run the function eagerly without a word;
    the agent must not then report `compiled`. With a limit of 1, lambda's fall to 0 (a graph
    without Q_C) is past it."""
    import torch._dynamo
    recompile_limit(1)
    agent = hpo_agent("always")
    batch = random_batch(32, 5, 2)
    agent.multiplier.value = 1.0
    agent.update(batch)
    assert agent.compiled and capsys.readouterr().err == ""
    agent.multiplier.value = 0.5
    agent.update(batch)
    assert agent.compiled and capsys.readouterr().err == ""  # any lambda != 0: the same graph
    agent.multiplier.value = 0.0
    agent.update(batch)
    assert not agent.compiled
    assert "torch.compile failed, training eagerly" in capsys.readouterr().err


def test_a_compiled_loss_that_fails_while_running_leaves_the_eager_update(capsys):
    """Second order under torch.compile: autograd.grad splits the loss into pieces that run (and draw
    random numbers) before the failure. The agent puts the random state back and updates eagerly, so
    its update is the eager one (and a resumed run equals an uninterrupted one)."""
    eager = hpo_agent("never", second_order=True)
    compiled = hpo_agent("always", second_order=True)
    batch = random_batch(32, 5, 2)
    for agent in (eager, compiled):
        torch.manual_seed(3)
        agent.update(batch)
        agent.update(batch)
    assert not compiled.compiled
    assert capsys.readouterr().err.count("torch.compile failed, training eagerly") == 1
    assert_same_parameters(compiled, eager, rtol=0, atol=0)
