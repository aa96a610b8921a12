"""The throughput goals (docs/performance.md), measured the way README's Performance tables are.

    python benchmarks/goals.py --out DIR [--rounds 3] [--steps 400] [--sb3-python /tmp/sb3/bin/python]
    python benchmarks/goals.py --summarize DIR

Runs `--rounds` rounds of `safehpo speed --steps S --envs halfcheetah-speed,ant-torque --algos
sac-lag,sac-hpo --k 3` (DIR/r1.json, r2.json, ...), one after the other, then, given the Python of
a virtual environment with stable-baselines3 (benchmarks/README.md), `sb3_compare.py --steps S`
(DIR/sb3.json). It prints a Markdown table of the medians over the rounds and the two goal
ratios of those medians (sac-lag / SB3 SAC, goal >= 1.5; sac-hpo K = 3 / sac-lag per env, goal
>= 0.5, also per round). `--summarize DIR` only prints that summary of files already there (for
example results/speed/rounds). Do not run anything else on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ENVS = ("halfcheetah-speed", "ant-torque")
GOAL_SB3, GOAL_HPO = 1.5, 0.5


def run_rounds(out: Path, rounds: int, steps: int, sb3_python: str | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for i in range(1, rounds + 1):
        print(f"round {i}/{rounds}", flush=True)
        subprocess.run([sys.executable, "-m", "safehpo.cli", "speed", "--steps", str(steps), "--envs", ",".join(ENVS),
                        "--algos", "sac-lag,sac-hpo", "--k", "3", "--out", str(out / f"r{i}.json")], check=True)
    if sb3_python:
        script = Path(__file__).with_name("sb3_compare.py")
        subprocess.run([sb3_python, str(script), "--steps", str(steps), "--out", str(out / "sb3.json")], check=True)


def summarize(folder: Path) -> str:
    """Markdown: medians over the rounds r*.json (and sb3.json if present), then the goal ratios."""
    rounds = sorted(folder.glob("r[0-9]*.json"), key=lambda p: int(p.stem[1:]))
    if not rounds:
        raise SystemExit(f"goals: no r1.json, r2.json, ... in {folder}")
    by_key: dict[tuple[str, str], list[dict]] = {}
    for path in rounds:
        for r in json.loads(path.read_text())["results"]:
            by_key.setdefault((r["algo"], r["env"]), []).append(r)

    def med(rows: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    lines = [f"{len(rounds)} round(s) in {folder}, medians:", "",
             "| algo | env | K | steps/s | ms/update | ms act+env | GFLOP/update |", "|---|---|---:|---:|---:|---:|---:|"]
    for (algo, env), rows in by_key.items():
        compiled = " (compiled)" if all(r["compiled"] for r in rows) else ""
        gflop = rows[0]["gflop_per_update"]
        lines.append(f"| {algo}{compiled} | {env} | {rows[0]['k']} | {med(rows, 'steps_per_s'):.1f} | "
                     f"{med(rows, 'ms_per_update'):.2f} | {med(rows, 'ms_act_env'):.2f} | "
                     f"{'-' if gflop is None else f'{gflop:.3f}'} |")
    sb3_path = folder / "sb3.json"
    sb3 = json.loads(sb3_path.read_text())["results"][0] if sb3_path.exists() else None
    if sb3:
        lines.append(f"| SB3 SAC | {sb3['env']} | 0 | {sb3['steps_per_s']:.1f} | {sb3['ms_per_update']:.2f} | | |")
    lines.append("")
    lag_hc = by_key.get(("sac-lag", ENVS[0]))
    if sb3 and lag_hc:
        ratio = med(lag_hc, "steps_per_s") / sb3["steps_per_s"]
        lines.append(f"- sac-lag / SB3 SAC ({ENVS[0]}): {ratio:.2f}x (goal {GOAL_SB3}x: "
                     f"{'met' if ratio >= GOAL_SB3 else 'not met'})")
    for env in ENVS:
        hpo, lag = by_key.get(("sac-hpo", env)), by_key.get(("sac-lag", env))
        if hpo and lag and len(hpo) == len(lag):
            per_round = [h["steps_per_s"] / g["steps_per_s"] for h, g in zip(hpo, lag)]
            ratio = med(hpo, "steps_per_s") / med(lag, "steps_per_s")  # of the table's medians
            lines.append(f"- sac-hpo K=3 / sac-lag ({env}): {ratio:.3f}x (per round "
                         f"{' / '.join(f'{x:.3f}' for x in per_round)}; goal {GOAL_HPO}x: "
                         f"{'met' if ratio >= GOAL_HPO else 'not met'})")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="folder for r1.json ... and sb3.json")
    p.add_argument("--summarize", metavar="DIR", help="only summarize the files of an earlier run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--sb3-python", help="the Python of a venv with stable-baselines3 (benchmarks/README.md)")
    args = p.parse_args()
    if args.summarize:
        print(summarize(Path(args.summarize)))
        return 0
    if not args.out or args.rounds < 1 or args.steps < 1:
        p.error("give --out DIR (or --summarize DIR); --rounds and --steps must be >= 1")
    run_rounds(Path(args.out), args.rounds, args.steps, args.sb3_python)
    print(summarize(Path(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
