"""Does training still learn? A short run that must clear a return far above a random policy's.

    python benchmarks/learning_check.py                 # sac-lag, ~3 minutes on one core
    python benchmarks/learning_check.py --algo sac-hpo
    python benchmarks/learning_check.py --break-update  # the same run with a broken actor update: must fail

Trains one run on inverted-pendulum-torque (envs/): InvertedPendulum-v5 with a torque budget,
with networks of 64 units, then reads its last evaluation (deterministic policy, 5 episodes).
A uniform random policy returns ~5-10 (the pole falls within ~10 steps); the check asks for
`--threshold` (default 500 of the maximum 1000) and prints the evaluation and the training
episodes' cost against the budget. Exit code 0: learned; 1: did not.

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

from safehpo.agent import Agent
from safehpo.config import Config
from safehpo.train import train

SPEC = "inverted-pendulum-torque"


def broken_actor_loss(original):
    def loss(self, *args):
        value, logp = original(self, *args)
        return -value, logp
    return loss


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", default="sac-lag")
    p.add_argument("--steps", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threshold", type=float, default=500.0)
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
    tail = episodes[-max(1, len(episodes) // 10):]
    train_cost = sum(float(e["cost"]) for e in tail) / len(tail)
    print(f"{args.algo} on {SPEC}, {args.steps} steps in {time.perf_counter() - t0:.0f} s"
          f"{' (broken update)' if args.break_update else ''}")
    print("evaluations (step: return, cost): " + ", ".join(
        f"{int(e['step'])}: {float(e['return_mean']):.0f}, {float(e['cost_mean']):.1f}" for e in evals))
    print(f"last 10% of training episodes: cost {train_cost:.1f} (budget 60, average per step); "
          f"final lambda {float(episodes[-1]['lambda']):.3g}")
    ok = ret >= args.threshold
    print(f"{'PASS' if ok else 'FAIL'}: last evaluation return {ret:.0f} {'>=' if ok else '<'} {args.threshold:.0f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
