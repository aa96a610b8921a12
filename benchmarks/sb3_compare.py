"""Stable-Baselines3 SAC's update-phase throughput, the reference of docs/performance.md.

Standalone: safehpo does not import this file and stable-baselines3 is not one of its
dependencies. Run it in its own virtual environment (see benchmarks/README.md):

    python -m venv /tmp/sb3
    /tmp/sb3/bin/pip install torch==2.13.0          # first: this pin resolves to the CPU wheel here
    /tmp/sb3/bin/pip install stable-baselines3 "gymnasium[mujoco]"
    /tmp/sb3/bin/python benchmarks/sb3_compare.py [--steps 500] [--out sb3_speed.json]

It trains SB3's SAC with safehpo's hyperparameters (batch 256, two hidden layers of 256 for
actor and critics, buffer 1e6, Adam 3e-4, tau 0.005, gamma 0.99, automatic temperature,
train_freq 1, gradient_steps 1, torch threads 1) for learning_starts + warmup + steps env
steps, and times only the last `steps`: a callback stamps the wall clock at every env step, so
one interval is one env step plus the one gradient step SB3 runs after it. As in
`safehpo speed`, the timed steps are split into chunks and the median chunk is reported, and
SAC.train is wrapped to time the gradient step alone (ms per update).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time


def machine_info() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="HalfCheetah-v5")
    p.add_argument("--steps", type=int, default=500, help="timed env steps, each with one gradient step")
    p.add_argument("--warmup", type=int, default=100, help="untimed steps after learning_starts")
    p.add_argument("--learning-starts", type=int, default=1000, help="uniform random steps first (no updates)")
    p.add_argument("--chunks", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="sb3_speed.json")
    args = p.parse_args()
    if min(args.steps, args.learning_starts, args.chunks, args.threads) <= 0 or args.warmup < 0:
        p.error("--steps, --learning-starts, --chunks and --threads must be > 0, --warmup >= 0")

    import gymnasium
    import stable_baselines3
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(args.threads)
    env = gymnasium.make(args.env)
    model = SAC("MlpPolicy", env, learning_rate=3e-4, buffer_size=1_000_000, learning_starts=args.learning_starts,
                batch_size=256, tau=0.005, gamma=0.99, train_freq=1, gradient_steps=1, ent_coef="auto",
                policy_kwargs={"net_arch": [256, 256]}, device="cpu", seed=args.seed, verbose=0)
    torch.set_num_threads(args.threads)  # after SB3's own setup, in case it changed it

    update_seconds: list[float] = []
    train = model.train

    def timed_train(*a, **kw):
        t0 = time.perf_counter()
        train(*a, **kw)
        update_seconds.append(time.perf_counter() - t0)

    model.train = timed_train

    class Stamps(BaseCallback):
        """The wall clock at every env step (SB3 calls _on_step once per env step)."""

        def __init__(self):
            super().__init__()
            self.stamps: list[tuple[int, float, float, int]] = []

        def _on_step(self) -> bool:
            self.stamps.append((self.num_timesteps, time.perf_counter(), time.process_time(), len(update_seconds)))
            return True

    stamps = Stamps()
    first_timed = args.learning_starts + args.warmup
    total = first_timed + args.steps
    model.learn(total_timesteps=total, callback=stamps)

    # stamp i is taken right after env step i (1-based), before the gradient step that follows it;
    # the interval between stamps i and i + 1 is gradient step after i + env step i + 1.
    by_step = {n: (t, c, u) for n, t, c, u in stamps.stamps}
    bounds = [first_timed + round(i * args.steps / args.chunks) for i in range(args.chunks + 1)]
    step_ms, update_ms, cpu_ms = [], [], []
    for a, b in zip(bounds, bounds[1:]):
        (t_a, c_a, u_a), (t_b, c_b, u_b) = by_step[a], by_step[b]
        step_ms.append(1000.0 * (t_b - t_a) / (b - a))
        cpu_ms.append(1000.0 * (c_b - c_a) / (b - a))
        update_ms.append(1000.0 * sum(update_seconds[u_a:u_b]) / max(u_b - u_a, 1))
    ms_per_step = statistics.median(step_ms)
    steps_per_s = 1000.0 / ms_per_step
    result = {"algo": "sb3-sac", "env": args.env, "k": 0, "steps_per_s": steps_per_s,
              "ms_per_update": statistics.median(update_ms), "ms_per_step": ms_per_step,
              "cpu_ms_per_step": statistics.median(cpu_ms)}
    doc = {"machine": machine_info(), "torch": str(torch.__version__),
           "stable_baselines3": stable_baselines3.__version__, "gymnasium": gymnasium.__version__,
           "threads": torch.get_num_threads(), "device": "cpu", "steps": args.steps, "warmup": args.warmup,
           "learning_starts": args.learning_starts, "chunks": args.chunks, "chunk_ms_per_step": step_ms,
           "results": [result]}
    out = os.path.abspath(args.out)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(out), prefix=".sb3_speed.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(tmp, out)
    print(f"SB3 SAC on {args.env}: {steps_per_s:.1f} env steps/s in the update phase "
          f"({result['ms_per_update']:.2f} ms per update, {result['cpu_ms_per_step']:.2f} CPU ms per step, "
          f"{args.threads} thread(s), median of {args.chunks} chunks "
          f"of {args.steps} timed steps) -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
