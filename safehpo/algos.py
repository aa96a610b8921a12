"""The algorithms safehpo trains, each a row of options of the SAC family (agent.py; `safehpo algos`)."""

from __future__ import annotations

from dataclasses import dataclass

from .config import ConfigError


@dataclass(frozen=True)
class Algo:
    explore: str        # gaussian | gated | conventional: how actions are drawn when acting
    train: str          # gaussian | gated | conventional: the policy the actor loss optimises
    filter: bool        # Lyapunov filter when acting (in constrained envs)
    multiplier: str     # none | lagrange (cfg.lagrange: paper, pid, adam) | pid
    momentum: bool = True
    summary: str = ""

    @property
    def hamiltonian(self) -> bool:
        return self.explore != "gaussian" or self.train != "gaussian"


ALGOS: dict[str, Algo] = {
    "sac": Algo("gaussian", "gaussian", False, "none", summary="SAC, cost ignored"),
    "sac-lag": Algo("gaussian", "gaussian", False, "lagrange", summary="SAC-Lagrangian"),
    "sac-pid": Algo("gaussian", "gaussian", False, "pid", summary="SAC with a PID-Lagrangian multiplier"),
    "sac-hpo": Algo("gated", "gated", True, "lagrange", summary="Hamiltonian policy: gated HMC, Lyapunov filter"),
    "hpo-conv": Algo("conventional", "conventional", True, "lagrange", summary="conventional leapfrog, Lyapunov filter"),
    "hpo-explore": Algo("conventional", "gaussian", True, "lagrange", summary="HMC for exploration only"),
    "hpo-train": Algo("gaussian", "gated", False, "lagrange", summary="gated HMC in the loss only, no filter"),
    "hpo-nomomentum": Algo("gated", "gated", True, "lagrange", momentum=False, summary="gated chain with rho = 0"),
    "hpo-nofilter": Algo("gated", "gated", False, "lagrange", summary="Hamiltonian policy without the Lyapunov filter"),
}


def multiplier_rule(algo: str, lagrange: str) -> str:
    """The rule of `algo`'s multiplier: none | paper | pid | adam (lagrange: the run's `lagrange`)."""
    return {"none": "none", "lagrange": lagrange, "pid": "pid"}[ALGOS[algo].multiplier]


def check_algo(name: str, where: str) -> None:
    """An algorithm name must be a row of ALGOS (one-line ConfigError naming `where`)."""
    if name not in ALGOS:
        raise ConfigError(f"{where}: unknown algorithm '{name}' (known: {', '.join(ALGOS)})")
