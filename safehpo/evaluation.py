"""Evaluating a policy: the episodes of train.py's evaluations and `safehpo evaluate` (docs/outputs.md).

One protocol for every algorithm: the deterministic policy (the base policy's mean action,
refined by the explore chain with rho_0 = 0 where the algorithm has one) on a separate env whose
resets are seeded by the evaluation, without the filter. For a filtered algorithm the deployed
policy is evaluated beside it: Algorithm 3 from (mean, rho_0 = 0) with the evaluation's own
filter and random stream, so training's eps_L, audit and draws do not depend on when or how long
it evaluates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .algorithm import Algorithm
from .cmdp import EnvSpec, episode_cost_measure, episode_seed, make_env
from .config import ConfigError
from .random_stream import RandomStream
from .runfolder import EVAL_COLUMNS
from .summary import final_step_mean
from .tables import text_table

EVAL_SEED_OFFSET = 7919  # evaluation resets come from a seed apart from the training episodes'


def evaluation_seed(run_seed: int, index: int, episodes: int) -> int:
    """The reset seed of the first episode of a run's evaluation number `index` (0: the first);
    its episode i resets with this seed + i."""
    return episode_seed(run_seed + EVAL_SEED_OFFSET, index * episodes)


@dataclass
class Episode:
    ret: float
    cost: float       # J_C in the budget's kind
    length: int
    rejected: int     # the filter's rejected actions (0 without the filter)


def play(agent: Algorithm, env, spec: EnvSpec, gamma: float, episodes: int, seed: int,
         deterministic: bool = True, filtered: bool = False) -> list[Episode]:
    """`episodes` episodes of the agent's policy, episode i reset with `seed` + i. filtered: through an
    evaluation's own Lyapunov filter (its momentum noise makes it stochastic)."""
    lyapunov = agent.filter.for_evaluation() if filtered else None  # neither the training's eps_L nor its audit
    played = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        if filtered:
            agent.episode_start(obs, lyapunov)
        rejected_before = lyapunov.audit.rejected if filtered else 0
        done, ret, step_costs = False, 0.0, []
        while not done:
            obs, r, term, trunc, info = env.step(agent.act(obs, deterministic=deterministic, filtered=filtered,
                                                           lyapunov=lyapunov))
            ret += float(r)
            step_costs.append(float(info["cost"]))
            done = term or trunc
        played.append(Episode(ret, episode_cost_measure(np.asarray(step_costs), spec.measure_kind, gamma),
                              len(step_costs), (lyapunov.audit.rejected - rejected_before) if filtered else 0))
    return played


def evaluate(agent: Algorithm, env, spec: EnvSpec, gamma: float, episodes: int, seed: int,
             filtered: bool = False) -> dict:
    """Mean and std of the deterministic policy's returns and costs (cost in the budget's kind);
    filtered: the deployed policy, with its rejected actions."""
    played = play(agent, env, spec, gamma, episodes, seed, filtered=filtered)
    returns, costs = [e.ret for e in played], [e.cost for e in played]
    row = {"return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)),
           "cost_mean": float(np.mean(costs)), "cost_std": float(np.std(costs))}
    if filtered:
        row["rejected"] = sum(e.rejected for e in played)
    return row


def evaluation_row(agent: Algorithm, env, spec: EnvSpec, gamma: float, episodes: int, seed: int) -> dict:
    """An eval.csv row: the unfiltered deterministic policy, and where the filter is on the same
    episode starts with it."""
    row = evaluate(agent, env, spec, gamma, episodes, seed)
    if agent.filter_on:
        # the filter's momentum noise from a stream of the evaluation's own seed: training's random
        # stream does not depend on when or how long it evaluates
        with agent.drawing_from(RandomStream(seed, agent.device)):
            filtered = evaluate(agent, env, spec, gamma, episodes, seed, True)
        row.update({f"filtered_{k}": v for k, v in filtered.items()})
    return {**{c: "" for c in EVAL_COLUMNS if c != "step"}, **row}


@dataclass
class Evaluation:
    """What `safehpo evaluate` played: the policy, where, and its episodes."""
    what: str                  # the run, its checkpoint's step, the policy and the episodes' seeds
    episodes: list[Episode]
    kind: str                  # the budget's kind (the episodes' cost is in it)
    budget: float | None       # d0, None for an unconstrained spec
    filtered: bool

    def format(self) -> str:
        """The episodes as a table, then their mean and std and how many are over the budget."""
        cols = ["episode", "return", f"cost ({self.kind})", "length"] + (["rejected"] if self.filtered else [])
        rows = [[str(i), f"{e.ret:.1f}", f"{e.cost:.3g}", str(e.length)] + ([str(e.rejected)] if self.filtered else [])
                for i, e in enumerate(self.episodes)]
        returns, costs = np.array([e.ret for e in self.episodes]), np.array([e.cost for e in self.episodes])
        summary = f"return {returns.mean():.1f} +- {returns.std():.1f}, cost {costs.mean():.3g} +- {costs.std():.3g}"
        if self.budget is not None:
            summary += (f", {int((costs > self.budget).sum())} of {len(costs)} episodes over the budget "
                        f"({self.budget:g} {self.kind})")
        lines = [self.what, text_table(cols, rows), summary]
        if self.kind == "average":  # a fallen ant's short episode counts by its length
            per_step = final_step_mean(costs, np.array([e.length for e in self.episodes]), fraction=1.0)
            lines.append(f"cost per env step over all episodes: {per_step:.3g}")
        return "\n".join(lines)


def evaluate_run(run_dir: Path | str, episodes: int | None = None, seed: int | None = None,
                 stochastic: bool = False, filtered: bool = False) -> Evaluation:
    """`safehpo evaluate`: the policy of a run folder's checkpoint, played `episodes` episodes
    (default: the run's eval_episodes) from `seed` (default: the first reset seed of the last
    evaluation the run took before its checkpoint; for a finished run, eval.csv's last row, whose
    episodes the first eval_episodes replay when the run trained on the CPU)."""
    from .actions import load_run  # the agent rebuilt on the CPU
    return evaluate_loaded(load_run(run_dir, "evaluate"), f"evaluate {run_dir}", episodes, seed, stochastic,
                           filtered)


def require_filter(run, where: str) -> None:
    """One line (ConfigError) if the loaded run's algorithm has no Lyapunov filter to play through."""
    if not run.agent.filter_on:
        raise ConfigError(f"{where}: --filtered: {run.cfg.algo} has no Lyapunov filter")


def evaluate_loaded(run, where: str, episodes: int | None = None, seed: int | None = None,
                    stochastic: bool = False, filtered: bool = False) -> Evaluation:
    """`evaluate_run` on a run already loaded (actions.load_run: cfg, spec, agent, step, evals), with
    the agent as it is now; `where` starts its one-line error."""
    cfg, spec, agent, step, evals = run
    if filtered:
        require_filter(run, where)
    episodes = episodes or cfg.eval_episodes
    if seed is None:
        seed = evaluation_seed(cfg.seed, max(evals - 1, 0), cfg.eval_episodes)
    env = make_env(spec)
    try:
        # every draw (the policy's noise, the filter's momentum) from a stream of the evaluation's seed
        with agent.drawing_from(RandomStream(seed, agent.device)):
            played = play(agent, env, spec, cfg.gamma, episodes, seed, deterministic=not stochastic,
                          filtered=filtered)
    finally:
        env.close()
    policy = ("stochastic" if stochastic else "deterministic") + (", filter on (deployed)" if filtered else ", filter off")
    what = (f"{spec.id} {cfg.algo} seed {cfg.seed} at step {step}: {policy}, {episodes} episodes "
            f"reset with seeds {seed}..{seed + episodes - 1}")
    return Evaluation(what, played, spec.measure_kind, spec.budget.threshold if spec.constrained else None, filtered)
