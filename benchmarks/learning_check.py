"""Does training still learn? A short run that must clear a return far above a random policy's.

    python benchmarks/learning_check.py                 # sac, about 2 minutes on one core
    python benchmarks/learning_check.py --algo sac-hpo
    python benchmarks/learning_check.py --break-update  # the same run with a broken actor update: must fail

Trains one run of 10,000 steps on the `pendulum` spec (gymnasium's Pendulum-v1 swing-up, 200-step
episodes) with networks of 64 units, then compares its last evaluation (deterministic policy,
5 episodes) with a uniform random policy's return on the same episode starts (about -1000; doing
nothing is no better: the pendulum hangs down). The check asks for at least `--margin` (default
600) above it; a learned swing-up returns about -150. Exit code 0: learned; 1: did not.
Pendulum has no cost, so the check covers what every algorithm shares (critics, actor,
temperature, replay, and for the Hamiltonian algorithms the chain), not the multiplier: the
evidence suites (benchmarks/evidence*.yaml) show that.

--break-update flips the sign of the actor's objective (the policy then descends Q_lambda
instead of ascending it), the kind of mistake a refactor of the losses can make: the check
must then fail, which shows that it can.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from safehpo.agent import Agent
from safehpo.cmdp import load_spec, make_env
from safehpo.config import Config
from safehpo.evaluation import evaluation_seed
from safehpo.train import train

SPEC = "pendulum"


def broken_actor_loss(original):
    def loss(self, *args):
        value, logp = original(self, *args)
        return -value, logp
    return loss


def random_return(cfg: Config, episodes: int) -> float:
    """Mean return of a uniform random policy on the episode starts of the run's first evaluation."""
    env = make_env(load_spec(cfg.env))
    rng = np.random.default_rng(0)
    seed = evaluation_seed(cfg.seed, 0, episodes)  # the episode starts of the run's first evaluation
    returns = []
    for i in range(episodes):
        env.reset(seed=seed + i)
        done, ret = False, 0.0
        while not done:
            _, r, term, trunc, _ = env.step(rng.uniform(env.action_space.low, env.action_space.high))
            ret, done = ret + float(r), term or trunc
        returns.append(ret)
    env.close()
    return float(np.mean(returns))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", default="sac")
    p.add_argument("--steps", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--margin", type=float, default=600.0, help="return above the random policy's to pass")
    p.add_argument("--break-update", action="store_true", help="flip the actor objective's sign (must fail)")
    p.add_argument("--out", help="run folder (default: a temporary one)")
    args = p.parse_args(argv)
    if args.break_update:
        Agent._actor_loss = broken_actor_loss(Agent._actor_loss)
    cfg = Config(env=SPEC, algo=args.algo, seed=args.seed, steps=args.steps, hidden=64, actor_hidden=64,
                 base_hidden=64, learning_starts=1000, eval_interval=args.steps // 3, eval_episodes=5,
                 checkpoint_interval=args.steps, compile="never")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        t0 = time.perf_counter()
        train(cfg, out, progress=False)
        with open(out / "eval.csv") as f:
            evals = list(csv.DictReader(f))
        with open(out / "progress.csv") as f:
            episodes = list(csv.DictReader(f))
    last = evals[-1]
    ret = float(last["return_mean"])
    baseline = random_return(cfg, cfg.eval_episodes)
    threshold = baseline + args.margin
    tail = episodes[-max(1, len(episodes) // 10):]
    train_cost = sum(float(e["cost"]) for e in tail) / len(tail)
    print(f"{args.algo} on {SPEC}, {args.steps} steps in {time.perf_counter() - t0:.0f} s"
          f"{' (broken update)' if args.break_update else ''}")
    print("evaluations (step: return, cost): " + ", ".join(
        f"{int(e['step'])}: {float(e['return_mean']):.0f}, {float(e['cost_mean']):.1f}" for e in evals))
    budget = load_spec(SPEC).budget
    within = f"budget {budget.threshold:g}, {budget.kind}" if budget else "no budget"
    print(f"last 10% of training episodes: return {sum(float(e['return']) for e in tail) / len(tail):.0f}, "
          f"cost {train_cost:.1f} ({within}); final lambda {float(episodes[-1]['lambda']):.3g}")
    ok = ret >= threshold
    print(f"{'PASS' if ok else 'FAIL'}: last evaluation return {ret:.0f} {'>=' if ok else '<'} {threshold:.0f} "
          f"(a uniform random policy: {baseline:.0f}, + margin {args.margin:.0f})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
