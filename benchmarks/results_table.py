"""One markdown row per finished run of result folders, as the README's results tables show them.

    python benchmarks/results_table.py results/evidence ["results/evidence-one-cost-critic=, one cost critic"]

Each argument is a folder of environment folders (each with the summary.csv that `safehpo plot`
writes), optionally `=SUFFIX`, appended to the algorithm's name; `{settings}` in a suffix is each
run's own settings that differ from the defaults (the settings its report lists, here as e.g.
"lambda_min 0.15"), so a folder whose envs ran with different values labels each row with its
own. Columns: the training cost of the second half of the run (the episodes ending after half
its planned steps; per env step for an average budget, the level the multiplier holds), over
the last 10% of training episodes (for an average budget also per env step), the episodes over
budget, the final deterministic evaluation's return / cost, and how many of the run's
evaluations after half its planned steps were over the budget (whether the final one is typical).
Rows by environment, then folder, algorithm and seed.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from safehpo.algos import ALGOS
from safehpo.report import changed_settings
from safehpo.runfolder import read_config, seed_folder, setting_text

HEADER = ("| env (budget) | algo | seed | training cost, second half | training cost, last 10% | "
          "episodes over budget | evaluation: return / cost | evaluations over budget, second half |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|")
ALGO_ORDER = list(ALGOS)  # rows in safehpo's algorithm order, unknown names last


def rows(folders: list[tuple[Path, str]]) -> list[str]:
    envs = sorted({p.parent.name for folder, _ in folders for p in folder.glob("*/summary.csv")})
    out = []
    for env in envs:
        for folder, suffix in folders:
            path = folder / env / "summary.csv"
            if not path.is_file():
                continue
            with open(path, newline="") as f:
                done = [r for r in csv.DictReader(f) if r["status"] == "done"]
            done.sort(key=lambda r: (ALGO_ORDER.index(r["algo"]) if r["algo"] in ALGO_ORDER else len(ALGO_ORDER),
                                     r["algo"], int(r["seed"])))
            for r in done:
                cost = f"{float(r['final_cost']):.1f}"
                if r.get("final_cost_per_step"):
                    cost += f" ({float(r['final_cost_per_step']):.1f} per step)"
                half = f"{float(r['second_half_cost']):.1f}" if r.get("second_half_cost") else "-"
                if r.get("second_half_cost") and r["budget_kind"] == "average":
                    half += " per step"
                budget = f"{float(r['budget']):g} {r['budget_kind']}" if r["budget"] else "none"
                evaluation = (f"{float(r['eval_return']):.0f} / {float(r['eval_cost']):.1f}"
                              if r.get("eval_return") and r.get("eval_cost") else "-")
                # empty unless the run has second-half evaluations and a budget
                evals = (f"{r['second_half_evals_over']} of {r['second_half_evals']}"
                         if r.get("second_half_evals_over") else "-")
                label = suffix
                if "{settings}" in suffix:
                    run = folder / env / r["algo"] / seed_folder(int(r["seed"]))
                    label = suffix.replace("{settings}", run_settings(run))
                out.append(f"| {env} ({budget}) | {r['algo']}{label} | {r['seed']} | {half} | {cost} | "
                           f"{r['cumulative_violations']} of {r['episodes']} | {evaluation} | {evals} |")
    return out


def run_settings(run: Path) -> str:
    """A run's settings that differ from the defaults, "key value, ..." ("defaults" if none)."""
    config = read_config(run)
    if not config:
        return "settings unknown"
    changed = changed_settings(config)
    return ", ".join(f"{key} {setting_text(value)}" for key, value in changed.items()) or "defaults"


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    folders = []
    for arg in argv:
        path, _, suffix = arg.partition("=")
        if not Path(path).is_dir():
            print(f"results_table: {path}: no such folder", file=sys.stderr)
            return 2
        folders.append((Path(path), suffix))
    print("\n".join([HEADER, *rows(folders)]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
