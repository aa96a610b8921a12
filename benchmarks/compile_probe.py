"""Does torch.compile pay off for the update step here? One agent's update, eager vs compiled.

    python benchmarks/compile_probe.py [--algo sac-lag] [--env halfcheetah-speed] [--device cpu] [--k 3]

Times `agent.update` on fixed random batches with the agent's two losses eager and through
torch.compile (what `--set compile=always` runs), in alternating blocks (so a noisy machine
slows both alike), and prints the median ms per update of each and the compile time.
compile=auto compiles only what this measured faster on CPU (fast.compiles; README,
Performance); rerun this on other hardware (a GPU, say) before changing that rule.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from safehpo.agent import Agent
from safehpo.cmdp import load_spec, make_env
from safehpo.config import Config, resolve_device
from safehpo.speed import compile_update


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algo", default="sac-lag")
    p.add_argument("--env", default="halfcheetah-speed")
    p.add_argument("--device", default="cpu")
    p.add_argument("--k", type=int, default=3, help="leapfrog steps of a Hamiltonian algorithm")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--blocks", type=int, default=10)
    p.add_argument("--updates", type=int, default=20, help="updates per timed block")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = resolve_device(args.device)
    cfg = Config(algo=args.algo, env=args.env, leapfrog_steps=args.k, lambda_init=1.0, device=args.device,
                 compile="always")
    spec = load_spec(args.env)
    env = make_env(spec, seed=0)
    agent = Agent.for_env(cfg, spec, env, device)
    b, d, a = cfg.batch_size, agent.obs_dim, agent.act_dim
    batches = [{"obs": torch.randn(b, d, device=device), "act": torch.rand(b, a, device=device) * 2 - 1,
                "next_obs": torch.randn(b, d, device=device), "rew": torch.randn(b, device=device),
                "cost": torch.rand(b, device=device), "done": torch.zeros(b, device=device)} for _ in range(8)]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    compile_s = compile_update(agent, batches[0])  # the graphs a run uses at lambda != 0 (lambda_init=1)
    sync()
    if not agent.compiled:
        print("torch.compile failed here (see the line above): nothing to compare")
        return 1
    for i in range(args.updates):  # warm both
        for agent.compiled in (False, True):
            agent.update(batches[i % 8])

    ms = {"eager": [], "compiled": []}
    for block in range(2 * args.blocks):
        name = "eager" if block % 2 == 0 else "compiled"
        agent.compiled = name == "compiled"
        sync()
        t0 = time.perf_counter()
        for i in range(args.updates):
            agent.update(batches[i % 8])
        sync()
        if name == "compiled" and not agent.compiled:
            print("torch.compile failed while timing (see the line above): no comparison")
            return 1
        ms[name].append(1000.0 * (time.perf_counter() - t0) / args.updates)
    eager, comp = statistics.median(ms["eager"]), statistics.median(ms["compiled"])
    print(f"{args.algo} on {args.env} ({device}, {args.threads} thread(s)): eager {eager:.2f} ms/update, "
          f"compiled {comp:.2f} ms/update ({eager / comp:.2f}x), compile {compile_s:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
