"""safehpo: safe-RL benchmarking around the Hamiltonian policy (SAC-HPO)."""

__version__ = "0.1.0"
