"""actions.png of one trained run (`safehpo plot-actions`, the paper's Fig. 7): at one state,
actions from the base Gaussian policy and after the Hamiltonian chain, over a contour of
Q_lambda on two action dims. The run's agent is rebuilt from config.yaml and checkpoint.pt on
the CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import yaml

from .agent import Agent
from .algos import check_algo
from .cmdp import load_spec, make_env
from .config import Config, ConfigError, apply_overrides
from .drawing import STYLE, pyplot, save_figure
from .runfolder import ACTIONS_FILE, CHECKPOINT_FILE, CONFIG_FILE, with_legacy_defaults

Q_GRID = 121   # points per axis of the Q_lambda contour


class LoadedRun(NamedTuple):
    cfg: Any        # Config
    spec: Any       # EnvSpec
    agent: Any      # Agent, on the CPU
    step: int       # env steps at the checkpoint
    evals: int      # evaluations the run had taken by then (eval.csv's rows at the checkpoint)


def load_run(run_dir: Path | str, where: str = "run", checkpoint: Path | str | None = None) -> LoadedRun:
    """A run folder's config.yaml rebuilt into a Config, and the agent built as `safehpo.train`
    builds it and loaded from checkpoint.pt (or `checkpoint`, a copy of one of the run's earlier
    checkpoints), on the CPU.

    Raises ConfigError (one line) if the folder, config.yaml or checkpoint.pt is missing or unreadable.
    """
    cfg, spec, ckpt_path = run_files(run_dir, where, checkpoint)
    state = read_checkpoint(ckpt_path)
    env = make_env(spec)
    cfg = cfg.replace(device="cpu", compile="never")  # a few hundred actions do not repay a compile
    agent = Agent.for_env(cfg, spec, env, "cpu")
    env.close()
    try:
        agent.load_state_dict(state["agent"], optimisers=False)  # plotting needs no optimiser state
    except (KeyError, RuntimeError, ValueError) as e:
        raise ConfigError(f"{ckpt_path}: does not match config.yaml ({type(e).__name__}: "
                          f"{str(e).splitlines()[0]})") from None
    return LoadedRun(cfg, spec, agent, int(state["step"]), int(state.get("evals", 0)))


def run_files(run_dir: Path | str, where: str = "run", checkpoint: Path | str | None = None) -> tuple[Any, Any, Path]:
    """A run folder's Config (config.yaml, missing hyperparameters at their legacy values), its
    EnvSpec and the path of its checkpoint (checkpoint.pt, or `checkpoint`), which must exist.

    Raises ConfigError (one line) if the folder, config.yaml or the checkpoint is missing or unreadable.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{where} {run_dir}: no such folder")
    config_path, ckpt_path = run_dir / CONFIG_FILE, Path(checkpoint or run_dir / CHECKPOINT_FILE)
    if not config_path.is_file():
        raise ConfigError(f"{where} {run_dir}: not a run folder (no config.yaml; expected the --out "
                          "folder of `safehpo train`)")
    try:
        doc = yaml.safe_load(config_path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{config_path}: unreadable YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{config_path}: expected a mapping of hyperparameters")
    known = Config().to_dict()
    doc = with_legacy_defaults(doc)
    cfg = apply_overrides(Config(), {k: v for k, v in doc.items() if k in known}, where=str(config_path))
    check_algo(cfg.algo, str(config_path))
    if not ckpt_path.is_file():
        raise ConfigError(f"{where} {run_dir}: no checkpoint.pt (the run has not reached its first checkpoint)"
                          if checkpoint is None else f"{where}: {ckpt_path}: no such file")
    try:
        spec = load_spec(cfg.env)
    except ConfigError:  # a spec given by a relative path: config.yaml keeps its resolved path
        saved = (doc.get("spec") or {}).get("path") if isinstance(doc.get("spec"), dict) else None
        if not saved or not Path(saved).is_file():
            raise
        spec = load_spec(saved)
    return cfg, spec, ckpt_path


def read_checkpoint(ckpt_path: Path) -> dict:
    """A checkpoint's saved state (agent, buffer, step, ...) on the CPU; a truncated or foreign file
    is a one-line ConfigError."""
    try:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        _ = state["agent"]  # every checkpoint holds the agent
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file is one line, not a traceback
        raise ConfigError(f"{ckpt_path}: unreadable checkpoint ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else 'no details'})") from None
    return state


def run_state(spec: Any, seed: int, index: int = 0) -> np.ndarray:
    """The state `index` uniform-random steps into the episode of make_env(spec) reset with `seed`
    (index 0: the episode's first state). The action space is seeded with `seed` too."""
    env = make_env(spec)
    try:
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        for step in range(index):
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if (terminated or truncated) and step + 1 < index:
                raise ConfigError(f"--state-index {index}: the episode ended after {step + 1} random steps")
    finally:
        env.close()
    return np.asarray(obs, dtype=np.float32)


def chain_mode(algo: Any) -> str:
    """The chain to plot: the algorithm's train-mode chain, or its explore chain when training is
    Gaussian (hpo-explore)."""
    return algo.train if algo.train != "gaussian" else algo.explore


def action_samples(agent: Any, obs: np.ndarray, samples: int, seed: int = 0) -> dict[str, Any]:
    """`samples` actions at one state from the base Gaussian policy and after the chain.

    Both draws start from the same torch seed, and `Agent.sample` draws u_0 first, so base
    sample n is the chain's starting action a_0 of sample n (paired: a_K - a_0 per sample).
    Returns base [N, A], chain [N, A], mean [A] (the base policy's mean action), lam, alpha, mode.
    """
    cfg = agent.cfg
    mode = chain_mode(agent.algo)
    std = cfg.momentum_std_train if mode == agent.algo.train else cfg.momentum_std_explore
    s = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0).expand(samples, -1)
    alpha, lam = agent.log_alpha.exp().detach(), agent.multiplier.value
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        base, _ = agent.actor.sample(s)
        torch.manual_seed(seed)
        chain, _, _ = agent.sample(s, mode, std, alpha, lam)
        mean = agent.actor.mean_action(s[:1])[0]
    return {"base": base.numpy(), "chain": chain.numpy(), "mean": mean.numpy(),
            "lam": float(lam), "alpha": float(alpha), "mode": mode,
            "momentum_std": std if agent.algo.momentum else 0.0}


def moved_dims(base: np.ndarray, chain: np.ndarray) -> tuple[int, int]:
    """The two action dims where the chain moves samples most (mean |a_K - a_0|), in index order;
    (0, 1) if it moves none."""
    moved = np.abs(chain - base).mean(axis=0)
    if not np.any(moved > 0):
        return 0, 1
    i, j = np.argsort(-moved, kind="stable")[:2]
    return int(min(i, j)), int(max(i, j))


def q_lambda_grid(agent: Any, obs: np.ndarray, dims: tuple[int, int], anchor: np.ndarray,
                  points: int = Q_GRID) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q_lambda(s, a) = min(Q1, Q2) - lambda Q_C on a points x points grid over action dims `dims`
    across the action box; the other dims fixed at `anchor`. Returns (x [P], y [P], Q [P, P])."""
    i, j = dims
    x = np.linspace(agent.act_low[i], agent.act_high[i], points, dtype=np.float32)
    y = np.linspace(agent.act_low[j], agent.act_high[j], points, dtype=np.float32)
    xx, yy = np.meshgrid(x, y)
    acts = np.repeat(anchor[None, :].astype(np.float32), xx.size, axis=0)
    acts[:, i], acts[:, j] = xx.ravel(), yy.ravel()
    s = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0).expand(xx.size, -1)
    with torch.no_grad():
        q = agent.q_lambda(agent.critics, s, torch.as_tensor(acts), agent.multiplier.value)
    return x, y, q.reshape(points, points).numpy()


def _parse_dims(text: str | None, act_dim: int) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        dims = tuple(int(p) for p in text.split(","))
    except ValueError:
        dims = ()
    if len(dims) != 2 or dims[0] == dims[1] or not all(0 <= d < act_dim for d in dims):
        raise ConfigError(f"--dims: expected two different action dims i,j in 0..{act_dim - 1}, got '{text}'")
    return dims  # type: ignore[return-value]


def plot_actions(run_dir: Path | str, state_index: int = 0, dims: str | tuple[int, int] | None = None,
                 samples: int = 1000, out: Path | str | None = None) -> Path:
    """Write `actions.png` of a trained Hamiltonian run (the paper's Fig. 7).

    At one state (the first of the episode reset with the run's seed, or `state_index` random
    steps into it), `samples` actions from the base Gaussian policy (left) and after the K-step
    chain (right), over a filled contour of Q_lambda on two action dims, the other dims at the
    base policy's mean action. Both panels share the colour scale. Raises ConfigError for a
    Gaussian algorithm (no chain), a folder that is not a run, or bad dims.
    """
    run_dir = Path(run_dir)
    cfg, spec, agent, *_ = load_run(run_dir, "plot-actions")
    if not agent.algo.hamiltonian:
        raise ConfigError(f"plot-actions {run_dir}: {cfg.algo} is a Gaussian policy, there is no "
                          "Hamiltonian chain to plot")
    if agent.act_dim < 2:
        raise ConfigError(f"plot-actions {run_dir}: {spec.id} has one action dim; the figure needs two")
    if samples < 1:
        raise ConfigError(f"--samples: expected a positive integer, got {samples}")
    if isinstance(dims, str) or dims is None:
        dims = _parse_dims(dims, agent.act_dim)
    else:
        dims = _parse_dims(",".join(str(d) for d in dims), agent.act_dim)
    obs = run_state(spec, cfg.seed, state_index)
    drawn = action_samples(agent, obs, samples, seed=cfg.seed)
    base, chain = drawn["base"], drawn["chain"]
    auto_dims = dims is None
    i, j = dims if dims is not None else moved_dims(base, chain)
    x, y, q = q_lambda_grid(agent, obs, (i, j), drawn["mean"])
    moved = np.abs(chain - base).mean(axis=0)
    out = Path(out) if out is not None else run_dir / ACTIONS_FILE
    if not out.parent.is_dir():
        raise ConfigError(f"--out: folder '{out.parent}' does not exist")

    plt = pyplot()
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    levels = MaxNLocator(nbins=14).tick_values(float(q.min()), float(q.max()))
    if len(levels) < 3:  # a flat Q (untrained critic): still a valid scale
        levels = np.linspace(float(q.min()) - 0.5, float(q.max()) + 0.5, 5)
    colour_base, colour_chain = "#e8e8e8", "#ff2d2d"
    k = cfg.leapfrog_steps
    which = "train-mode" if drawn["mode"] == agent.algo.train else "explore-mode"
    with plt.rc_context({**STYLE, "axes.grid": False, "axes.spines.top": True,
                         "axes.spines.right": True}):
        fig = plt.figure(figsize=(11, 6.2))
        grid = fig.add_gridspec(1, 3, width_ratios=[1, 1, 0.045], left=0.07, right=0.93, top=0.85,
                                bottom=0.2, wspace=0.14)
        axes = [fig.add_subplot(grid[0])]
        axes.append(fig.add_subplot(grid[1], sharex=axes[0], sharey=axes[0]))
        axes[1].tick_params(labelleft=False)
        panels = ((axes[0], base, colour_base, "base policy  a_0 ~ pi(a|s)"),
                  (axes[1], chain, colour_chain, f"after K = {k} {drawn['mode']} leapfrog steps  a_K"))
        filled = None
        for ax, acts, colour, title in panels:
            filled = ax.contourf(x, y, q, levels=levels, cmap="viridis", zorder=0)
            ax.contour(x, y, q, levels=levels, colors="black", linewidths=0.35, alpha=0.35, zorder=1)
            if acts is chain:  # each sample's path from its start a_0 (a chord, not the curved path)
                ax.add_collection(LineCollection(np.stack([base[:, [i, j]], chain[:, [i, j]]], axis=1),
                                                 colors="white", linewidths=0.6, alpha=0.6, zorder=2))
            ax.scatter(acts[:, i], acts[:, j], s=7, color=colour, alpha=0.7,
                       edgecolors="black", linewidths=0.2, zorder=3)
            ax.plot(drawn["mean"][i], drawn["mean"][j], marker="*", markersize=14, color="#ffd21f",
                    markeredgecolor="black", markeredgewidth=0.9, linestyle="none", zorder=4)
            ax.set_title(title)
            ax.set_xlabel(f"action[{i}]")
            ax.set_xlim(x[0], x[-1])
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
            ax.yaxis.set_major_locator(MaxNLocator(nbins=8))
            ax.set_ylim(y[0], y[-1])
        axes[0].set_ylabel(f"action[{j}]")
        handles = [
            Line2D([], [], marker="o", linestyle="none", markersize=5, color=colour_base,
                   markeredgecolor="black", markeredgewidth=0.4, label=f"base policy ({samples} samples)"),
            Line2D([], [], marker="o", linestyle="none", markersize=5, color=colour_chain,
                   markeredgecolor="black", markeredgewidth=0.4, label=f"after the chain ({samples} samples)"),
            Line2D([], [], color="0.6", linewidth=1.2, label="a_0 -> a_K (per sample)"),
            Line2D([], [], marker="*", linestyle="none", markersize=11, color="#ffd21f",
                   markeredgecolor="black", markeredgewidth=0.8, label="base policy's mean action"),
        ]
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.105), ncol=4, frameon=False)
        bar = fig.colorbar(filled, cax=fig.add_subplot(grid[2]))
        bar.set_label("Q_lambda(s, a)")
        state = ("first state of the episode" if state_index == 0
                 else f"state after {state_index} random steps") + f" (reset seed {cfg.seed})"
        momentum = (f"momentum std {drawn['momentum_std']:g}" if drawn["momentum_std"] > 0
                    else "no momentum (rho = 0)")
        fig.suptitle(f"{cfg.algo} on {spec.id}: actions at one state, {which} chain K = {k}, eps = {cfg.leapfrog_eps:g}, "
                     f"{momentum}\n{state}; lambda = {drawn['lam']:.3g}, "
                     f"alpha = {drawn['alpha']:.3g}", fontsize=11, y=0.98)
        others = [d for d in range(agent.act_dim) if d not in (i, j)]
        note = (f"dims {i}, {j}: {'the two the chain moves most' if auto_dims else 'chosen'} "
                f"(mean |a_K - a_0| {moved[i]:.3g}, {moved[j]:.3g}; over all dims: "
                + ", ".join(f"{m:.2g}" for m in moved) + ")\n"
                "Q_lambda = min(Q1, Q2) - lambda Q_C of the trained critics, "
                + (f"on the slice with action{others} at the mean action (the samples vary in every dim)"
                   if others else "over the whole action box"))
        fig.text(0.5, 0.025, note, ha="center", va="top", fontsize=8, color="0.35")
        return save_figure(fig, out)
