"""What the training loop asks of an algorithm (train.py), and the agent a run trains.

An algorithm family is one module with a class that has the attributes and methods of
`Algorithm`; the training loop, evaluation and checkpoints use nothing else, so a new family (a TD3 with a
Langevin-flow policy, HMC with a KL multiplier) is a new module and a line in `make_agent`, and
the loop does not change. The SAC family (agent.py) is the one family today.
"""

from __future__ import annotations

from typing import ContextManager, Protocol

import numpy as np
import torch

from .agent import Agent
from .config import Config
from .lagrange import GradientAscent
from .lyapunov import FilterAudit, LyapunovFilter
from .random_stream import RandomStream


class Algorithm(Protocol):
    obs_dim: int
    act_dim: int
    device: torch.device
    multiplier: GradientAscent       # lambda (lagrange.py); NoMultiplier where nothing is constrained
    filter: LyapunovFilter | None    # the Lyapunov filter when acting, where the algorithm has one
    audit: FilterAudit               # the training episode's filter counters (zeros without a filter)
    compiled: bool                   # acting and losses through torch.compile
    filter_on: bool                  # filter is not None
    random: RandomStream             # every torch draw of the run (random_stream.py); checkpoints save it

    def act(self, obs: np.ndarray, deterministic: bool = False, filtered: bool | None = None,
            lyapunov: LyapunovFilter | None = None) -> np.ndarray:
        """One action for one state: a draw for training, the mean (deterministic) for evaluation;
        filtered by the run's filter (or `lyapunov`) by default where there is one."""

    def drawing_from(self, stream: RandomStream) -> ContextManager[None]:
        """Meanwhile the agent draws from `stream` (an evaluation's), not from the run's."""

    def episode_start(self, obs: np.ndarray, lyapunov: LyapunovFilter | None = None) -> None:
        """A new episode from its first state."""

    def episode_end(self, cost: float, share: float, counts: bool = True) -> None:
        """After a finished episode: its cost J_C in the budget's kind, its length share of a full
        episode, and whether it may move lambda (not while it held uniform warm-up steps)."""

    def update(self, batch: dict[str, torch.Tensor]) -> None:
        """One gradient step on a replay batch (buffer.ReplayBuffer.sample)."""

    def healthy(self) -> bool:
        """False once a loss since the last call was NaN or infinite."""

    def log(self) -> dict:
        """The values of a progress.csv row: lambda, alpha and the filter's counters."""

    def describe(self) -> dict:
        """What config.yaml records beside the hyperparameters (the budget's units)."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict, optimisers: bool = True) -> None: ...


def make_agent(cfg: Config, spec, env, device: torch.device | str = "cpu") -> Algorithm:
    """The agent of cfg.algo for a CMDP env built from `spec` (cmdp.make_env): every algorithm of
    algos.ALGOS is of the SAC family."""
    return Agent.for_env(cfg, spec, env, device)
