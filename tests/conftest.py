"""Shared fixtures: tiny CMDP specs (short episodes) and tiny networks keep training tests fast."""

import csv
import importlib.util
import json
import textwrap
from pathlib import Path

import pytest
import yaml

# networks small enough that a few hundred updates take a second or two on one core
TINY = ["hidden=32", "actor_hidden=32", "base_hidden=32", "gate_hidden=8", "batch_size=32",
        "learning_starts=100", "eval_interval=200", "eval_episodes=1", "checkpoint_interval=150"]


def load_benchmark(name: str):
    """A script of benchmarks/ as a module (benchmarks/ is not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_batch(n, obs_dim, act_dim):
    """A replay batch of random transitions (Agent.update's input)."""
    import torch
    return {"obs": torch.randn(n, obs_dim), "act": torch.rand(n, act_dim) - 0.5, "next_obs": torch.randn(n, obs_dim),
            "rew": torch.randn(n), "cost": torch.rand(n), "done": torch.zeros(n)}


def write_spec(path, name, cost, budget, base="HalfCheetah-v5", steps=50):
    path.write_text(textwrap.dedent(f"""\
        id: {name}
        base: {base}
        cost: {cost}
        budget: {budget}
        max_episode_steps: {steps}
        description: a short-episode test spec
        source: safehpo tests
        """))
    return str(path)


@pytest.fixture
def speed_spec(tmp_path):
    """HalfCheetah with |v_x| > 1 costing 1, 50-step episodes, sum budget 2."""
    return write_spec(tmp_path / "cheetah-speed-short.yaml", "cheetah-speed-short",
                      "{kind: velocity, params: {measure: abs_x, threshold: 1.0}}", "{threshold: 2, kind: sum}")


@pytest.fixture
def torque_spec(tmp_path):
    """HalfCheetah with the torque cost and a budget no policy can meet (average <= 0)."""
    return write_spec(tmp_path / "cheetah-torque-short.yaml", "cheetah-torque-short",
                      "{kind: torque, params: {}}", "{threshold: 0, kind: average}")


@pytest.fixture
def recompile_limit():
    """recompile_limit(n): torch._dynamo's recompile limit for one test, through torch's own
    config.patch (pytest's monkeypatch deletes the attribute on undo from pytest 9.2 on)."""
    import contextlib

    import torch._dynamo
    with contextlib.ExitStack() as stack:
        yield lambda n: stack.enter_context(torch._dynamo.config.patch(recompile_limit=n))


def make_run(env_dir, algo, seed, kind, margin, costs, lengths, state="done", lambdas=None):
    """A finished run folder ENV/ALGO/seed-N of a bench with one progress.csv row per episode
    (costs and lengths given; lambda too if given), 100-step episodes at most, budget 10."""
    run = env_dir / algo / f"seed-{seed}"
    run.mkdir(parents=True)
    config = {"algo": algo, "seed": seed, "budget_margin": margin,
              "spec": {"id": env_dir.name, "budget": {"threshold": 10.0, "kind": kind}, "max_episode_steps": 100}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    with open(run / "progress.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "episode", "return", "cost", "length"] + (["lambda"] if lambdas is not None else []))
        step = 0
        for i, (c, n) in enumerate(zip(costs, lengths)):
            step += n
            writer.writerow([step, i, 0.0, c, n] + ([lambdas[i]] if lambdas is not None else []))
    (run / "status.json").write_text(json.dumps({"state": state, "steps_done": int(step)}))
    return run
