"""Guard for refactors: fixed-seed runs of every algorithm, and a column-by-column comparison.

    python benchmarks/same_behaviour.py run OUT_BEFORE       # with the code before the change
    python benchmarks/same_behaviour.py run OUT_AFTER        # with the code after it
    python benchmarks/same_behaviour.py compare OUT_BEFORE OUT_AFTER

`run` trains every algorithm of `safehpo algos` for a short while on two short-episode
HalfCheetah CMDPs (an average torque budget, the multiplier's rate path; a sum budget on speed),
eagerly on one thread, plus sac-lag in the paper's lambda units and a compiled sac-hpo run.
`compare` says, per run, whether progress.csv and eval.csv are identical in every column but
the timing ones (exit code 1 if any differs). A refactor that means to change no behaviour
must leave them identical; one that changes the random stream must say so.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

SPECS = {
    "torque": ("{kind: torque, params: {gear: auto}}", "{threshold: 20, kind: average}"),
    "speed": ("{kind: velocity, params: {measure: abs_x, threshold: 1.0}}", "{threshold: 5, kind: sum}"),
}
SIZES = ["hidden=64", "actor_hidden=64", "base_hidden=64", "gate_hidden=16", "batch_size=64",
         "learning_starts=300", "eval_interval=500", "eval_episodes=2", "checkpoint_interval=100000"]
STEPS = 1000
TIMING = {"sps"}


def write_spec(folder: Path, name: str) -> Path:
    cost, budget = SPECS[name]
    path = folder / f"cheetah-{name}.yaml"
    path.write_text(textwrap.dedent(f"""\
        id: cheetah-{name}
        base: HalfCheetah-v5
        cost: {cost}
        budget: {budget}
        max_episode_steps: 100
        description: a short-episode spec of the refactoring guard
        source: benchmarks/same_behaviour.py
        """))
    return path


def runs() -> list[tuple[str, str, list[str]]]:
    """(folder name, spec name, extra --set values) of every run."""
    from safehpo.algos import ALGOS
    out = [(f"{algo}-{spec}", spec, ["compile=never"]) for algo in ALGOS for spec in SPECS]
    out.append(("sac-lag-torque-paper-units", "torque", ["compile=never", "lambda_units=paper"]))
    out.append(("sac-lag-torque-one-cost-critic", "torque", ["compile=never", "cost_critics=1", "cost_floor=false"]))
    out.append(("sac-hpo-torque-compiled", "torque", ["compile=always"]))
    return out


def run(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    specs = {name: write_spec(out, name) for name in SPECS}
    for folder, spec, extra in runs():
        algo = folder.split("-torque")[0].split("-speed")[0]
        if (out / folder / "status.json").exists():
            continue
        cmd = [sys.executable, "-c", "import sys; from safehpo.cli import main; sys.exit(main())", "train", "--env", str(specs[spec]), "--algo", algo, "--seed", "3",
               "--steps", str(STEPS), "--out", str(out / folder), "--quiet"]
        for s in SIZES + extra:
            cmd += ["--set", s]
        print("safehpo " + " ".join(cmd[3:]), flush=True)
        subprocess.run(cmd, check=True)


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def compare(a: Path, b: Path) -> int:
    differ = 0
    for folder, _, _ in runs():
        verdicts = []
        states = [json.loads((d / folder / "status.json").read_text())["state"]
                  if (d / folder / "status.json").exists() else "missing" for d in (a, b)]
        if states != ["done", "done"]:
            print(f"{folder:32s} not finished in both ({states[0]}, {states[1]})")
            differ += 1
            continue
        for name in ("progress.csv", "eval.csv"):
            pa, pb = a / folder / name, b / folder / name
            if not (pa.exists() and pb.exists()):
                verdicts.append(f"{name} missing")
                differ += 1
                continue
            ra, rb = _rows(pa), _rows(pb)
            if ra == rb:
                verdicts.append(f"{name} identical ({len(ra)} rows)")
            else:
                first = next((i for i, (x, y) in enumerate(zip(ra, rb)) if x != y), min(len(ra), len(rb)))
                verdicts.append(f"{name} DIFFERS from row {first}")
                differ += 1
        print(f"{folder:32s} " + "; ".join(verdicts))
    return 1 if differ else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run").add_argument("out", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = p.parse_args()
    if args.cmd == "run":
        run(args.out)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
