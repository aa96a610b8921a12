"""One markdown row per finished run of result folders, as results/README.md's table shows them.

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

    python benchmarks/results_table.py --headline "results/evidence-tuned=, {settings}"

`--headline`: one row per environment, folder and algorithm (with its label) instead, over its
finished seeds: how many ended the last 10% of training under the budget (for an average budget
per episode, and per env step in brackets), how many held it over the second half, how many final
deterministic evaluations are within it (filter off; in brackets the deployed policy's, with the
filter, where the algorithm has one), and the mean (lowest to highest) training return over the last
10% and final evaluation return. "Under" is at most the budget.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from safehpo.algos import ALGOS
from safehpo.report import changed_settings
from safehpo.runfolder import read_config, seed_folder, setting_text

HEADLINE_HEADER = ("| env (budget) | algo | seeds | last 10% under budget | second half under budget | "
                   "final evaluation within budget | training return, last 10% | evaluation return |\n"
                   "|---|---|---:|---:|---:|---:|---:|---:|")
HEADER = ("| env (budget) | algo | seed | training cost, second half | training cost, last 10% | "
          "episodes over budget | evaluation: return / cost | evaluations over budget, second half |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|")
ALGO_ORDER = list(ALGOS)  # rows in safehpo's algorithm order, unknown names last


def finished(folders: list[tuple[Path, str]]):
    """(env, folder, suffix, the env's finished rows of summary.csv in algorithm and seed order)."""
    envs = sorted({p.parent.name for folder, _ in folders for p in folder.glob("*/summary.csv")})
    for env in envs:
        for folder, suffix in folders:
            path = folder / env / "summary.csv"
            if not path.is_file():
                continue
            with open(path, newline="") as f:
                done = [r for r in csv.DictReader(f) if r["status"] == "done"]
            done.sort(key=lambda r: (ALGO_ORDER.index(r["algo"]) if r["algo"] in ALGO_ORDER else len(ALGO_ORDER),
                                     r["algo"], int(r["seed"])))
            yield env, folder, suffix, done


def budget_text(r: dict) -> str:
    return f"{float(r['budget']):g} {r['budget_kind']}" if r["budget"] else "none"


def label(folder: Path, env: str, suffix: str, r: dict) -> str:
    if "{settings}" not in suffix:
        return suffix
    return suffix.replace("{settings}", run_settings(folder / env / r["algo"] / seed_folder(int(r["seed"]))))


def rows(folders: list[tuple[Path, str]]) -> list[str]:
    out = []
    for env, folder, suffix, done in finished(folders):
        for r in done:
            cost = f"{float(r['final_cost']):.1f}"
            if r.get("final_cost_per_step"):
                cost += f" ({float(r['final_cost_per_step']):.1f} per step)"
            half = f"{float(r['second_half_cost']):.1f}" if r.get("second_half_cost") else "-"
            if r.get("second_half_cost") and r["budget_kind"] == "average":
                half += " per step"
            budget = budget_text(r)
            evaluation = (f"{float(r['eval_return']):.0f} / {float(r['eval_cost']):.1f}"
                          if r.get("eval_return") and r.get("eval_cost") else "-")
            # empty unless the run has second-half evaluations and a budget
            evals = (f"{r['second_half_evals_over']} of {r['second_half_evals']}"
                     if r.get("second_half_evals_over") else "-")
            out.append(f"| {env} ({budget}) | {r['algo']}{label(folder, env, suffix, r)} | {r['seed']} | {half} | {cost} | "
                       f"{r['cumulative_violations']} of {r['episodes']} | {evaluation} | {evals} |")
    return out


def headline_rows(folders: list[tuple[Path, str]]) -> list[str]:
    out = []
    for env, folder, suffix, done in finished(folders):
        groups: dict[str, list[dict]] = {}
        for r in done:
            groups.setdefault(f"{r['algo']}{label(folder, env, suffix, r)}", []).append(r)
        for name, runs in groups.items():
            if not runs[0]["budget"]:
                continue
            budget = float(runs[0]["budget"])

            def under(column: str) -> str:
                values = column_values(runs, column)
                return f"{sum(v <= budget for v in values)} of {len(values)}" if values else "-"

            last = under("final_cost")
            if runs[0]["budget_kind"] == "average" and any(r.get("final_cost_per_step") for r in runs):
                last += f" ({under('final_cost_per_step')} per step)"
            evaluation = under("eval_cost")
            if any(r.get("eval_filtered_cost") for r in runs):
                evaluation += f" ({under('eval_filtered_cost')} deployed)"
            out.append(f"| {env} ({budget_text(runs[0])}) | {name} | {len(runs)} | {last} | {under('second_half_cost')} | "
                       f"{evaluation} | {spread(runs, 'final_return')} | {spread(runs, 'eval_return')} |")
    return out


def column_values(runs: list[dict], column: str) -> list[float]:
    """A summary.csv column's values over runs, the runs where it is empty left out."""
    return [float(r[column]) for r in runs if r.get(column)]


def spread(runs: list[dict], column: str) -> str:
    """Mean (lowest to highest) of a column over runs; the value alone for one run."""
    values = column_values(runs, column)
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.0f}"
    return f"{sum(values) / len(values):.0f} ({min(values):.0f} to {max(values):.0f})"


def run_settings(run: Path) -> str:
    """A run's settings that differ from the defaults, "key value, ..." ("defaults" if none)."""
    config = read_config(run)
    if not config:
        return "settings unknown"
    changed = changed_settings(config)
    return ", ".join(f"{key} {setting_text(value)}" for key, value in changed.items()) or "defaults"


def main(argv: list[str]) -> int:
    headline = "--headline" in argv
    argv = [arg for arg in argv if arg != "--headline"]
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
    if headline:
        print("\n".join([HEADLINE_HEADER, *headline_rows(folders)]))
    else:
        print("\n".join([HEADER, *rows(folders)]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
