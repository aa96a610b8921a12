"""`safehpo speed`: throughput of each algorithm's training loop in the update phase (docs/performance.md).

What one measurement runs is the training loop of `train.py` after `learning_starts`, nothing
else: a real CMDP env, a replay buffer first filled with uniform random transitions (not timed),
a warm-up of the real loop (not timed), then `steps` timed iterations of

    obs, ... = train.env_step(env, buffer, obs, agent.act(obs))   # (+ Lyapunov filter for sac-hpo)
    agent.update(buffer.sample(batch_size, rng))
    (on episode end: train.end_episode, reset, episode_start)

split into chunks. The multiplier starts at lambda = 1 (MEASURED_LAMBDA; `--set lambda_init=0`
measures the cheaper update of an unbinding constraint, which skips Q_C in the actor step).
Reported per (algo, env, K), each the median over the chunks: env steps/s, milliseconds per
`agent.update` call (timed alone, around the call only; CUDA is synchronised on both sides),
the rest of a step (act, env step, buffer, episode ends), and the process CPU time per step (on
a machine shared with other jobs, wall time includes waiting for a core; CPU time does not).
Also the matrix-multiply work of one update (GFLOP, counted by torch) and `floor_ms`, that work
at the device's measured rate for the critics' batched matmul: how far an update is from what
its arithmetic alone costs. Evaluation, CSV logging and checkpoints are not part of it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .agent import Agent
from .algos import ALGOS, check_algo
from .buffer import ReplayBuffer
from .cmdp import EnvSpec, load_spec, make_env
from .config import Config, ConfigError, apply_overrides, parse_int, resolve_device

DEFAULT_ALGOS = ("sac", "sac-lag", "sac-hpo")
DEFAULT_K = (1, 3, 5)
DEFAULT_ENVS = ("halfcheetah-speed", "ant-torque")
CHUNKS = 5
MEASURED_LAMBDA = 1.0  # the multiplier's starting value while measuring (see `plan`)


@dataclass
class SpeedResult:
    """One (algo, env, K) measurement. k is 0 for algorithms without a Hamiltonian chain."""

    algo: str
    env: str
    k: int
    steps_per_s: float      # env steps per second of the whole loop, median chunk
    ms_per_update: float    # one agent.update call, median over chunks
    ms_per_step: float      # 1000 / steps_per_s
    ms_act_env: float       # the rest of a step: act, env.step, buffer add + sample, episode ends (median)
    cpu_ms_per_step: float  # process CPU time per step (median): less sensitive than wall time to a shared machine
    gflop_per_update: float | None = None  # matrix-multiply work of one agent.update (torch's FlopCounterMode)
    floor_ms: float | None = None          # gflop_per_update at the measured matmul rate: no update is faster
    compiled: bool = False                 # update and acting through torch.compile (cfg.compile; fast.compiles)
    compile_s: float | None = None         # seconds of the untimed updates and actions that compiled them


def update_gflop(agent: Agent, batch: dict) -> float | None:
    """GFLOP of the matrix multiplies of one agent.update (forward and backward), counted by torch.

    Runs the update eagerly (an untimed warm-up step; a compiled update does the same matmuls).
    Elementwise work is not counted: it is the difference between the measured time and
    `floor_ms`. None where torch cannot count it (FlopCounterMode refuses `autograd.grad` on a
    leaf tensor, which an update may use).
    """
    from torch.utils.flop_counter import FlopCounterMode
    compiled = getattr(agent, "compiled", False)
    try:
        agent.compiled = False
        with FlopCounterMode(display=False) as counter:
            agent.update(batch)
    except RuntimeError as e:
        if "leaf node was passed" not in str(e):  # only the counter's known refusal means "unknown"
            raise
        return None
    finally:
        agent.compiled = compiled
    return counter.get_total_flops() / 1e9


def matmul_gflops(device: torch.device, members: int = 4, width: int = 256, batch: int = 256,
                  seconds: float = 0.3) -> float:
    """Measured GFLOP/s of the critic stack's hidden layer, [M, B, H] x [M, H, H] (batched matmul)."""
    x = torch.randn(members, batch, width, device=device)
    w = torch.randn(members, width, width, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(10):
        torch.bmm(x, w)
    sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(10):
            torch.bmm(x, w)
        n += 10
        sync()
    return 2.0 * members * batch * width * width * n / (time.perf_counter() - t0) / 1e9


def machine_info(device: torch.device) -> dict:
    """CPU model, core count and platform (and the GPU when measuring on CUDA)."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]  # others' jobs make timings noisy
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def measure(cfg: Config, spec: EnvSpec, steps: int, warmup: int = 100, fill: int = 1000,
            chunks: int = CHUNKS, gflops: float = 0.0, status=lambda phase: None) -> SpeedResult:
    """Time `steps` iterations of the update-phase training loop of cfg.algo on spec (see module doc).

    cfg.leapfrog_steps is the K of a Hamiltonian algorithm; cfg.threads, cfg.device and
    cfg.seed are used as a run would use them. `gflops`: the device's matmul rate (matmul_gflops),
    for floor_ms; 0 leaves it None. `status(phase)` is told each phase (for a progress bar).
    """
    from .train import end_episode, env_step, keep_freed_memory
    keep_freed_memory()  # as the training loop does
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    env = make_env(spec, seed=cfg.seed)
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    agent = Agent.for_env(cfg, spec, env, device)
    fill = max(fill, cfg.batch_size)
    buffer = ReplayBuffer(min(cfg.buffer_size, fill + warmup + steps), agent.obs_dim, len(low), device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    ep_costs: list[float] = []
    obs, _ = env.reset()
    status("filling the buffer")

    def next_episode() -> np.ndarray:
        """The training loop's episode end (train.end_episode, minus the CSV row), then a new episode."""
        end_episode(agent, spec, cfg.gamma, np.asarray(ep_costs), True, f"while measuring {cfg.algo} on {spec.id}")
        ep_costs.clear()
        new_obs, _ = env.reset()
        agent.episode_start(new_obs)
        return new_obs

    # learning_starts-like uniform random transitions: not timed
    for _ in range(fill):
        action = rng.uniform(low, high).astype(np.float32)
        obs, _, cost, terminated, truncated = env_step(env, buffer, obs, action)
        ep_costs.append(cost)  # the episode under way when the timing starts counts from its start
        if terminated or truncated:
            ep_costs.clear()
            obs, _ = env.reset()
    agent.episode_start(obs)

    def loop(n: int) -> float:
        """n iterations of the update-phase loop; returns the seconds spent inside agent.update."""
        nonlocal obs
        in_update = 0.0
        for _ in range(n):
            obs, _, cost, terminated, truncated = env_step(env, buffer, obs, agent.act(obs))
            ep_costs.append(cost)
            batch = buffer.sample(cfg.batch_size, rng)
            sync()
            t0 = time.perf_counter()
            agent.update(batch)
            sync()
            in_update += time.perf_counter() - t0
            if terminated or truncated:
                obs = next_episode()
        return in_update

    try:
        gflop = update_gflop(agent, buffer.sample(cfg.batch_size, rng))
        compile_s = None
        if agent.compiled:
            status("compiling (torch.compile, ~1 min cold)")
            compile_s = compile_update(agent, buffer.sample(cfg.batch_size, rng), obs)
        status("timing")
        loop(warmup)
        sizes = [len(c) for c in np.array_split(np.arange(steps), min(chunks, steps))]
        step_ms, update_ms, rest_ms, cpu_ms = [], [], [], []
        for n in sizes:
            t0, c0 = time.perf_counter(), time.process_time()
            in_update = loop(n)
            sync()
            wall = time.perf_counter() - t0
            cpu_ms.append(1000.0 * (time.process_time() - c0) / n)
            step_ms.append(1000.0 * wall / n)
            update_ms.append(1000.0 * in_update / n)
            rest_ms.append(1000.0 * (wall - in_update) / n)
    finally:
        env.close()
    ms_per_step = statistics.median(step_ms)  # with an odd chunk count: exactly the median chunk's
    k = cfg.leapfrog_steps if ALGOS[cfg.algo].hamiltonian else 0
    return SpeedResult(cfg.algo, spec.id, k, 1000.0 / ms_per_step, statistics.median(update_ms), ms_per_step,
                       statistics.median(rest_ms), statistics.median(cpu_ms), gflop,
                       1000.0 * gflop / gflops if gflop is not None and gflops > 0 else None,
                       agent.compiled, compile_s)


def compile_update(agent: Agent, batch: dict, obs: np.ndarray | None = None) -> float:
    """Compile, untimed, the graphs a long run ends up using (at lambda + 0.5, then at lambda's own
    value: from lambda = 0, the graphs with Q_C and those without) for the update and, given a
    state, for acting, the Lyapunov filter's steps included (an action that no candidate passes;
    its counts are left out of the audit). Seconds."""
    lam = agent.multiplier.value
    t0 = time.perf_counter()
    for value in (lam + 0.5, lam):  # ending at lambda's own value
        agent.multiplier.value = value
        agent.update(batch)
        if obs is not None:
            agent.act(obs)
            if agent.filter_on:
                rejecting = agent.filter.for_evaluation()
                rejecting.eps_l = -math.inf
                agent.act(obs, lyapunov=rejecting)
    agent.audit.reset()
    return time.perf_counter() - t0


# ---- the command ------------------------------------------------------------------------------
def _list_flag(flag: str, text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"{flag}: expected a comma-separated list, got '{text}'")
    return list(dict.fromkeys(items))


def plan(args) -> tuple[list[Config], dict[str, EnvSpec], dict]:
    """Check every flag (ConfigError naming it) and return the configurations to measure."""
    steps = parse_int(args.steps, "--steps", 1)
    warmup = parse_int(args.warmup, "--warmup", 0)
    threads = parse_int(args.threads, "--threads", 1)
    fill = parse_int(args.fill, "--fill", 1)
    if args.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device: must be one of auto, cpu, cuda, got '{args.device}'")
    algos = _list_flag("--algos", args.algos)
    for algo in algos:
        check_algo(algo, "--algos")
    ks = [parse_int(k, "--k", 0) for k in _list_flag("--k", args.k)]
    specs = {}
    for name in _list_flag("--envs", args.envs):
        try:
            specs[name] = load_spec(name)
        except ConfigError as e:
            raise ConfigError(f"--envs: {e}") from None
    # lambda > 0 unless --set says otherwise: a Lagrangian update then evaluates Q_C in the actor step
    # too (at lambda = 0 it skips it), the cost of an update while the constraint binds
    base = apply_overrides(Config(threads=threads, device=args.device, lambda_init=MEASURED_LAMBDA),
                           args.set or [])
    base = base.replace(threads=threads, device=args.device)  # the flags win over --set
    configs = []
    for name in specs:
        for algo in algos:
            for k in (ks if ALGOS[algo].hamiltonian else [0]):
                cfg = base.replace(env=name, algo=algo)
                configs.append(cfg.replace(leapfrog_steps=k) if ALGOS[algo].hamiltonian else cfg)
    return configs, specs, {"steps": steps, "warmup": warmup, "fill": fill}


def _num(x: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if x is None else f"{x:>{width}.{digits}f}"


def format_table(results: list[SpeedResult]) -> str:
    header = (f"{'algo':<16}{'env':<22}{'K':>3}{'compiled':>9}{'steps/s':>10}{'ms/update':>11}{'ms/act+env':>12}"
              f"{'cpu ms/step':>13}{'GFLOP/upd':>11}{'floor ms':>10}")
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.algo:<16}{r.env:<22}{r.k:>3}{'yes' if r.compiled else 'no':>9}{r.steps_per_s:>10.1f}{r.ms_per_update:>11.2f}"
                     f"{r.ms_act_env:>12.2f}{r.cpu_ms_per_step:>13.2f}{_num(r.gflop_per_update, 11, 3)}"
                     f"{_num(r.floor_ms, 10, 2)}")
    return "\n".join(lines)


def write_json_atomic(path: Path, doc: dict) -> None:
    """Temporary file in the same folder, then os.replace: a reader never sees half a file."""
    from .atomic import write_atomic
    write_atomic(path, json.dumps(doc, indent=2) + "\n")


def cmd_speed(args) -> int:
    configs, specs, n = plan(args)
    device = resolve_device(configs[0].device)
    out = Path(args.out)
    try:  # fail before minutes of measuring, not after
        out.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(out.parent, os.W_OK) or out.is_dir():
            raise OSError
    except OSError:
        raise ConfigError(f"--out: cannot write '{out}'") from None
    torch.set_num_threads(configs[0].threads)
    members = 2 + configs[0].cost_critics  # the critic stack of a constrained run: reward twins, cost critics
    gflops = matmul_gflops(device, members=members)
    results = []
    with tqdm(configs, desc="speed", unit="config", disable=args.quiet, dynamic_ncols=True) as bar:
        for cfg in bar:
            name = f"{cfg.algo} {cfg.env}" + (f" K={cfg.leapfrog_steps}" if ALGOS[cfg.algo].hamiltonian else "")
            results.append(measure(cfg, specs[cfg.env], n["steps"], n["warmup"], n["fill"], gflops=gflops,
                                   status=lambda phase, name=name: bar.set_postfix_str(f"{name}: {phase}")))
    print(format_table(results))
    print(f"floor ms = GFLOP/update at {gflops:.0f} GFLOP/s, this device's measured rate for the critic stack's "
          f"[{members}, 256, 256] x [{members}, 256, 256] batched matmul")
    from .runfolder import git_revision, package_versions
    doc = {"machine": machine_info(device), "torch": str(torch.__version__), "versions": package_versions(),
           "git_revision": git_revision(),
           "threads": configs[0].threads, "device": str(device), "matmul_gflops": gflops,
           "steps": n["steps"], "warmup": n["warmup"], "fill": n["fill"],
           "chunks": min(CHUNKS, n["steps"]), "lambda_init": configs[0].lambda_init,
           "overrides": list(args.set or []),
           "results": [asdict(r) for r in results]}
    write_json_atomic(out, doc)
    print(f"-> {out}")
    return 0


def register_cli(sub) -> None:
    s = sub.add_parser("speed", help="update-phase throughput of each algorithm (env steps/s, ms per update)",
                       description="Times the training loop after learning_starts (act, env step, buffer, "
                                   "update) for each algorithm, env and K; prints a table and writes JSON.")
    s.add_argument("--steps", default="500", help="timed loop iterations per configuration (default 500)")
    s.add_argument("--warmup", default="100", help="untimed loop iterations first (default 100)")
    s.add_argument("--fill", default="1000", help="uniform random transitions put in the buffer first (default 1000)")
    s.add_argument("--threads", default="1", help="torch intra-op threads (default 1)")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    s.add_argument("--algos", default=",".join(DEFAULT_ALGOS),
                   help=f"comma-separated (default {','.join(DEFAULT_ALGOS)})")
    s.add_argument("--k", default=",".join(map(str, DEFAULT_K)),
                   help="leapfrog steps K for the Hamiltonian algorithms (default 1,3,5)")
    s.add_argument("--envs", default=",".join(DEFAULT_ENVS), help=f"comma-separated (default {','.join(DEFAULT_ENVS)})")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyperparameter (repeatable)")
    s.add_argument("--out", default="speed.json", help="JSON file to write (default speed.json)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_speed)
