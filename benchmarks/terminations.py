"""How a run's Ant episodes ended: each termination in its checkpoint's replay buffer, with the torso's height.

    python benchmarks/terminations.py RUN_FOLDER [--from STEP] [--checkpoint FILE]

Ant (gymnasium's Ant-v5) ends an episode when the torso's height leaves its healthy range,
`healthy_z_range` (0.2 to 1.0 unless the spec's kwargs say otherwise): below it the ant has
fallen, above it the ant has thrown itself up. With Ant's default observation (the x-y position
left out) observation 0 is that height, so a terminal transition's next observation says which
end it left by. For every terminal transition stored after env step STEP (default: half the
run's planned steps) the script prints its env step, the episode's length, the height after it
and the mean cost of the episode's last five steps; then how many left the range at each end,
against the mean cost per step of every transition stored after STEP. Needs the run's
checkpoint (it holds the replay buffer); `benchmarks/critic_check.py` shows what the critics
make of such episodes.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch

ANT_HEALTHY_Z = (0.2, 1.0)  # Ant-v5's default healthy_z_range
LAST = 5  # steps before a termination whose cost is shown


def terminations(buffer: dict, lengths: dict[int, int], start: int) -> list[dict]:
    """The terminal transitions of a replay buffer's state dict stored after env step `start`:
    env step (buffer row i is step i + 1), episode length (progress.csv's, by its end step), the
    height after the step (next observation 0) and the mean cost of the episode's last LAST steps."""
    rows = []
    for i in np.flatnonzero(buffer["done"][start:]) + start:
        step = int(i) + 1
        length = lengths.get(step, 0)
        first = max(int(i) - min(LAST, length or LAST) + 1, 0)
        rows.append({"step": step, "length": length, "height": float(buffer["next_obs"][i, 0]),
                     "last_cost": float(np.mean(buffer["cost"][first:i + 1]))})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--from", dest="start", type=int, help="env step after which to look (default: half the run)")
    p.add_argument("--checkpoint", type=Path, help="default: RUN/checkpoint.pt")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from safehpo.actions import read_checkpoint, run_files
    from safehpo.config import ConfigError

    where = "terminations"
    try:
        cfg, spec, path = run_files(args.run, where, args.checkpoint)  # one-line errors: no run, no checkpoint
        if not spec.base.startswith("Ant-") or spec.kwargs.get("exclude_current_positions_from_observation") is False:
            raise ConfigError(f"{where}: {spec.id} is not Ant with its default observation "
                              f"(observation 0 the torso's height)")
        state = read_checkpoint(path)
        buffer = state["buffer"]
        if buffer["size"] != state["step"]:  # more steps than rows: the oldest were overwritten
            raise ConfigError(f"{where}: {path}: the replay buffer wrapped around; its rows are no longer env steps")
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    start = cfg.steps // 2 if args.start is None else args.start
    with open(args.run / "progress.csv", newline="") as f:
        lengths = {int(r["step"]): int(r["length"]) for r in csv.DictReader(f)}
    low, high = spec.kwargs.get("healthy_z_range", ANT_HEALTHY_Z)
    rows = terminations(buffer, lengths, start)
    print(f"{args.run}: terminations after step {start}: {len(rows)} (healthy torso height {low:g} to {high:g})")
    for r in rows:
        print(f"step {r['step']}: episode of {r['length']} steps, torso at {r['height']:.2f} after it, "
              f"last {LAST} steps' cost {r['last_cost']:.1f} per step")
    heights = np.asarray([r["height"] for r in rows])
    print(f"above {high:g}: {int((heights > high).sum())}, below {low:g}: {int((heights < low).sum())}, "
          f"inside (another cause): {int(((heights >= low) & (heights <= high)).sum())}; their last {LAST} steps' "
          f"cost {np.mean([r['last_cost'] for r in rows]) if rows else float('nan'):.1f} per step, every "
          f"transition's after step {start} {buffer['cost'][start:].mean():.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
