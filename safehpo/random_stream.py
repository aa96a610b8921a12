"""A run's own torch random stream, so that a process can hold several runs at once.

Every torch draw of an agent (network initialisation, the policy's noise, the chain's momentum,
the filter's fresh momentum) comes from the run's `RandomStream`: a torch.Generator per device,
seeded with the run's seed. Inside `with stream:` the stream's state is torch's default
generator's (and put back into the stream on exit), so the draws need no `generator=`
argument: compiled graphs draw from the default generator (fast.Compiler's fallback_random) and
keep working, and a run's draws are the same as if it were alone in the process, seeded with
torch.manual_seed(seed). The numpy side of a run (warm-up actions, replay sampling) already is
a numpy Generator owned by the run (train.py).
"""

from __future__ import annotations

import functools

import torch


_ACTIVE: list["RandomStream"] = []  # the streams inside `with`, innermost last


class RandomStream:
    def __init__(self, seed: int, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.cpu = torch.Generator().manual_seed(seed)
        self.cuda = torch.Generator(self.device).manual_seed(seed) if self.device.type == "cuda" else None
        self._saved: tuple[torch.Tensor, torch.Tensor | None] | None = None  # torch's own states meanwhile
        self._depth = 0  # nested `with`: only the outermost swaps

    def __enter__(self) -> "RandomStream":
        if self._depth and _ACTIVE[-1] is not self:
            raise RuntimeError("a RandomStream entered again inside another stream: its draws would come from the other")
        self._depth += 1
        if self._depth == 1:
            _ACTIVE.append(self)
            cuda = torch.cuda.get_rng_state(self.device) if self.cuda is not None else None
            self._saved = (torch.get_rng_state(), cuda)
            torch.set_rng_state(self.cpu.get_state())
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda.get_state(), self.device)
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0:
            cpu, cuda = self._saved
            self.cpu.set_state(torch.get_rng_state())
            torch.set_rng_state(cpu)
            if self.cuda is not None:
                self.cuda.set_state(torch.cuda.get_rng_state(self.device))
                torch.cuda.set_rng_state(cuda, self.device)
            self._saved = None
            _ACTIVE.pop()

    def state_dict(self) -> dict:
        return {"cpu": self.cpu.get_state(), "cuda": self.cuda.get_state() if self.cuda is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.cpu.set_state(state["cpu"])
        if self.cuda is not None and state.get("cuda") is not None:
            self.cuda.set_state(state["cuda"])


def own_stream(method):
    """A method of an object with a `random` RandomStream (the agent), run inside that stream."""
    @functools.wraps(method)
    def with_own_stream(self, *args, **kwargs):
        with self.random:
            return method(self, *args, **kwargs)
    return with_own_stream
