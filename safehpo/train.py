"""One run: collect, update, evaluate, log, checkpoint, resume (docs/outputs.md).

Reads top to bottom like the papers' Algorithm 1. Checkpoints are taken at episode
boundaries, so a resumed run restarts from a clean episode: the CSVs are cut back to the rows
they had at the checkpoint and every later episode is recomputed exactly once.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from . import runfolder
from .algos import check_algo
from .algorithm import Algorithm, make_agent
from .atomic import write_atomic
from .buffer import ReplayBuffer
from .cmdp import EnvSpec, episode_cost_measure, episode_seed, load_spec, make_env
from .config import Config, ConfigError, resolve_device, validate, writable_folder
from .evaluation import evaluation_row, evaluation_seed
from .runfolder import (CHECKPOINT_FILE, CHECKPOINT_FORMAT, CONFIG_FILE, EVAL_COLUMNS, EVAL_FILE, config_mismatch,
                        PROGRESS_COLUMNS, PROGRESS_FILE, RESUMABLE_CHANGES, STATUS_EVERY_S, CsvLog, git_revision,
                        package_versions, save_checkpoint, spec_summary)


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite."""


# ---- one run ----------------------------------------------------------------------------------
@dataclass
class RunResult:
    out: Path
    steps: int
    episodes: int
    wall_seconds: float
    state: str


def keep_freed_memory() -> None:
    """Ask glibc to keep freed blocks instead of returning them to the OS.

    Every update allocates the same few-hundred-kB activations; by default glibc serves them with
    fresh mmap pages, and the page faults cost ~10% of an update. No effect off glibc.
    """
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        libc.mallopt(m_mmap_threshold, 32 << 20)  # the most glibc accepts on 64-bit
        libc.mallopt(m_trim_threshold, 1 << 34)
        libc.mallopt(m_top_pad, 1 << 28)
    except (OSError, AttributeError):
        pass


def env_step(env, buffer: ReplayBuffer, obs: np.ndarray, action: np.ndarray):
    """One environment step, stored in the replay buffer: (next_obs, reward, cost, terminated, truncated)."""
    next_obs, reward, terminated, truncated, info = env.step(action)
    cost = float(info["cost"])
    buffer.add(obs, action, reward, cost, next_obs, terminated)
    return next_obs, float(reward), cost, terminated, truncated


def end_episode(agent: Algorithm, spec: EnvSpec, gamma: float, costs: np.ndarray, counts: bool, where: str) -> float:
    """What ends every episode: its cost J_C in the budget's kind, the multiplier's update (`counts`:
    the episode held no uniform warm-up step) and the check for NaN losses. Returns J_C."""
    ep_cost = episode_cost_measure(costs, spec.measure_kind, gamma)
    agent.episode_end(ep_cost, len(costs) / spec.max_episode_steps, counts)
    if not agent.healthy():
        raise TrainingDiverged(f"NaN or infinite loss {where}")
    return ep_cost


def train(cfg: Config, out: Path | str, resume: bool = False, progress: bool = True,
          command: str | None = None) -> RunResult:
    """Train one (env, algo, seed) run into `out`. With resume, continue from out/checkpoint.pt."""
    cfg = validate(cfg)
    check_algo(cfg.algo, "--algo")
    spec = load_spec(cfg.env)
    out = writable_folder(out, "--out")
    ckpt_path = out / CHECKPOINT_FILE
    if not resume and ((out / PROGRESS_FILE).exists() or ckpt_path.exists()):
        raise ConfigError(f"--out: '{out}' already holds a run (add --resume to continue it, or pick another --out)")

    device = resolve_device(cfg.device)
    keep_freed_memory()
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)  # numpy's draws of the run; torch's are the agent's (random_stream.py)
    env, eval_env = make_env(spec), make_env(spec)
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    constrained = spec.constrained
    budget = spec.budget.threshold if constrained else 0.0
    agent = make_agent(cfg, spec, env, device)
    buffer = ReplayBuffer(min(cfg.buffer_size, cfg.steps), agent.obs_dim, agent.act_dim, device)

    progress_log = CsvLog(out / PROGRESS_FILE, PROGRESS_COLUMNS)
    eval_log = CsvLog(out / EVAL_FILE, EVAL_COLUMNS)
    step, episode, n_evals, wall_before = 0, 0, 0, 0.0
    if resume and ckpt_path.exists():
        # on the CPU: random states must be CPU byte tensors; the loads below copy onto the device
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if state.get("format", 1) != CHECKPOINT_FORMAT:
            raise ConfigError(f"--resume: '{ckpt_path}' was written by another safehpo version (checkpoint format "
                              f"{state.get('format', 1)}, this one reads {CHECKPOINT_FORMAT}); start the run afresh "
                              f"in another --out")
        if state["step"] > cfg.steps:
            raise ConfigError(f"--steps {cfg.steps}: '{out}' holds a run of {state['step']} steps already "
                              f"(give --steps >= {state['step']}, or another --out)")
        mismatch = config_mismatch(state["config"], cfg.to_dict(), RESUMABLE_CHANGES, missing_differs=True)
        if mismatch:
            had, asked, sets = mismatch
            how = (f"add '{sets}' to continue it" if sets else  # only settings it never recorded
                   "no flag asks for a value it never recorded: train it afresh in another --out")
            raise ConfigError(f"--resume: '{out}' holds a run with {had}, this command asks {asked} (only "
                              f"{', '.join(sorted(RESUMABLE_CHANGES))} may change); {how}")
        agent.load_state_dict(state["agent"])
        buffer.load_state_dict(state["buffer"])
        rng.bit_generator.state = state["numpy_rng"]
        agent.random.load_state_dict({"cpu": state["torch_rng"], "cuda": state.get("cuda_rng")})
        step, episode, n_evals, wall_before = state["step"], state["episode"], state["evals"], state["wall_seconds"]
        progress_log.truncate(state["progress_rows"])
        eval_log.truncate(state["eval_rows"])
    elif progress_log.rows or eval_log.rows:  # resume asked, no checkpoint yet: start over cleanly
        progress_log.truncate(0)
        eval_log.truncate(0)

    summary = spec_summary(spec)
    config_doc = {**cfg.to_dict(), "spec": summary,
                  "budget": None if summary["budget"] is None else dict(summary["budget"]),  # a copy: no YAML alias
                  **agent.describe(),
                  "versions": package_versions(), "git_revision": git_revision(),
                  "command": command or " ".join(sys.argv)}
    write_atomic(out / CONFIG_FILE, yaml.safe_dump(config_doc, sort_keys=False))

    def write_status(state: str, reason: str | None = None, resumes_from: int | None = None) -> None:
        """status.json; with `resumes_from`, a run under way: `step_reached` is the step now and
        steps_done the step a resume would start from (its last checkpoint)."""
        live = {} if resumes_from is None else {"step_reached": step}
        runfolder.write_status(out, state, reason, step if resumes_from is None else resumes_from,
                               round(wall_before + time.perf_counter() - t_start, 2),
                               compiled=agent.compiled, **live)  # compiled: update and acting through torch.compile

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, {
            "format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "agent": agent.state_dict(), "buffer": buffer.state_dict(),
            "numpy_rng": rng.bit_generator.state, "torch_rng": agent.random.cpu.get_state(),
            "cuda_rng": agent.random.cuda.get_state() if agent.random.cuda is not None else None,
            "step": step, "episode": episode, "evals": n_evals,
            "wall_seconds": wall_before + time.perf_counter() - t_start,
            "progress_rows": progress_log.rows, "eval_rows": eval_log.rows,
        })

    t_start = time.perf_counter()
    if step >= cfg.steps:
        write_status("done")
        return RunResult(out, step, episode, wall_before, "done")
    write_status("running")

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.steps, initial=step, desc=f"{cfg.algo} {spec.id} s{cfg.seed}", unit="step",
                   dynamic_ncols=True, smoothing=0.05, mininterval=0.5)
    next_checkpoint = (step // cfg.checkpoint_interval + 1) * cfg.checkpoint_interval
    compiled_for: set[bool] = set()  # lambda != 0 of the update graphs compiled in this process
    ep_costs = np.zeros(spec.max_episode_steps + 1, dtype=np.float64)
    try:
        obs, _ = env.reset(seed=episode_seed(cfg.seed, episode))
        agent.episode_start(obs)
        ep_return, ep_len, ep_t0, shown, ep_first = 0.0, 0, time.perf_counter(), step, step
        status_at, saved_step = time.perf_counter(), step  # saved_step: where a resume would start
        while step < cfg.steps:
            # act: uniform warm-up, then the policy (Hamiltonian sampler + Lyapunov filter)
            if step < cfg.learning_starts:
                action = rng.uniform(low, high).astype(np.float32)
            else:
                action = agent.act(obs)
            obs, reward, cost, terminated, truncated = env_step(env, buffer, obs, action)
            ep_return += reward
            ep_costs[min(ep_len, spec.max_episode_steps)] = cost
            ep_len += 1
            step += 1

            if step >= cfg.learning_starts:
                # a compiled update compiles at its first call and at lambda's first move off 0 (the
                # graphs with Q_C): the bar stands still meanwhile, so it says why
                graphs = agent.multiplier.value != 0.0
                say_compiling = agent.compiled and bar is not None and graphs not in compiled_for
                if say_compiling:
                    bar.update(step - shown)
                    shown = step
                    bar.set_postfix_str("compiling the update (torch.compile, up to a minute cold)")
                agent.update(buffer.sample(cfg.batch_size, rng))
                compiled_for.add(graphs)
                if say_compiling:
                    bar.set_postfix_str("")

            if step % cfg.eval_interval == 0 or step == cfg.steps:
                row = evaluation_row(agent, eval_env, spec, cfg.gamma, cfg.eval_episodes,
                                     seed=evaluation_seed(cfg.seed, n_evals, cfg.eval_episodes))
                eval_log.append({"step": step, **row})
                n_evals += 1

            if terminated or truncated:
                ep_cost = end_episode(agent, spec, cfg.gamma, ep_costs[:ep_len], counts=ep_first >= cfg.learning_starts,
                                      where=f"in episode {episode} (step {step})")
                logged = agent.log()
                progress_log.append({
                    "step": step, "episode": episode, "return": ep_return, "cost": ep_cost, "length": ep_len,
                    "violated": int(constrained and ep_cost > budget), **logged,
                    "sps": ep_len / max(time.perf_counter() - ep_t0, 1e-9)})
                episode += 1
                if bar is not None:
                    bar.set_postfix_str(f"ret {ep_return:.0f} cost {ep_cost:.3g}/{budget:.3g} "
                                        f"lam {logged['lambda']:.3g} rej {logged['rejected']}", refresh=False)
                if step >= next_checkpoint and step < cfg.steps:
                    checkpoint()
                    saved_step = step
                    next_checkpoint = (step // cfg.checkpoint_interval + 1) * cfg.checkpoint_interval
                obs, _ = env.reset(seed=episode_seed(cfg.seed, episode))
                agent.episode_start(obs)
                ep_return, ep_len, ep_t0, ep_first = 0.0, 0, time.perf_counter(), step
            if bar is not None and step - shown >= 100:
                bar.update(step - shown)
                shown = step
            if step % 100 == 0 and step < cfg.steps and time.perf_counter() - status_at >= STATUS_EVERY_S:
                write_status("running", resumes_from=saved_step)
                status_at = time.perf_counter()
        if bar is not None:
            bar.update(step - shown)
        checkpoint()
        write_status("done")
    except TrainingDiverged as e:
        write_status("failed", str(e))
        raise
    except KeyboardInterrupt:
        write_status("interrupted", "stopped by the user; the same command again (with --resume for train) continues")
        raise
    finally:
        if bar is not None:
            bar.close()
        env.close()
        eval_env.close()
    wall = wall_before + time.perf_counter() - t_start
    return RunResult(out, step, episode, wall, "done")
