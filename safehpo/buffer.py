"""Replay buffer with costs: preallocated numpy arrays, a ring of `capacity` transitions."""

from __future__ import annotations

import numpy as np
import torch


class ReplayBuffer:
    """Stores (s, a, r, c, s', terminated). `sample` returns torch tensors on `device`."""

    FIELDS = ("obs", "act", "rew", "cost", "next_obs", "done")

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device | str = "cpu"):
        self.capacity = int(capacity)
        self.device = torch.device(device)
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.act = np.zeros((capacity, act_dim), dtype=np.float32)
        self.rew = np.zeros(capacity, dtype=np.float32)
        self.cost = np.zeros(capacity, dtype=np.float32)
        self.done = np.zeros(capacity, dtype=np.float32)
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, act, rew: float, cost: float, next_obs, terminated: bool) -> None:
        i = self.pos
        self.obs[i] = obs
        self.act[i] = act
        self.rew[i] = rew
        self.cost[i] = cost
        self.next_obs[i] = next_obs
        self.done[i] = float(terminated)
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        idx = rng.integers(0, self.size, size=batch_size)
        batch = {name: torch.from_numpy(getattr(self, name)[idx]) for name in self.FIELDS}
        if self.device.type != "cpu":
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        return batch

    def state_dict(self) -> dict:
        """The filled part only (a 20k-step run does not save a 1M-row buffer)."""
        n = self.size
        return {"pos": self.pos, "size": n, **{f: getattr(self, f)[:n].copy() for f in self.FIELDS}}

    def load_state_dict(self, state: dict) -> None:
        """A saved buffer into this one, which may be larger (a finished run extended with a larger
        `--steps` gets a larger buffer). A ring of the same size keeps its layout, so a resume samples
        the transitions an uninterrupted run would; a saved ring that was full (pos < size: pos is
        its oldest row) goes into a larger one in the order it was filled, oldest first, and new
        transitions follow it rather than overwriting its oldest rows."""
        n, pos = state["size"], state["pos"]
        if n > self.capacity:
            raise ValueError(f"a saved buffer of {n} transitions does not fit one of {self.capacity}")
        unroll = pos < n < self.capacity
        for f in self.FIELDS:
            getattr(self, f)[:n] = np.roll(state[f], -pos, axis=0) if unroll else state[f]
        self.pos, self.size = (n if unroll else pos) % self.capacity, n
