"""report.md of an environment folder: the budget, which runs are finished, two headline tables
per algorithm (safety during training; the learned policy), the per-seed tables, the figures,
how the numbers were computed (`METHOD`) and the command (docs/outputs.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from .atomic import write_atomic
from .audit import AUDIT_FILE
from .bootstrap import MIN_SEEDS_FOR_CI, SeedStat
from .figures import FIGURE_FILES
from .config import Config
from .runfolder import (COMMAND_FILE, FINISHED, RESUMABLE_CHANGES, setting_text, unread_settings,
                        with_legacy_defaults)
from .runrecord import BUDGET_KIND_LABELS, RunRecord, collect_runs, env_budget, env_name
from .summary import SUMMARY_FILE, algo_table, summarise
from .tables import field_text, fixed_text, md_table, significant_text

REPORT_FILE = "report.md"
PER_STEP_NOTE = ("Average budget: an episode's cost is its own mean per env step, and the training "
                 "cost columns average episodes alike, so an episode that ends after 20 steps (an "
                 "ant that falls) weighs as much as a 1000-step one. The cost per step divides the last 10% of "
                 "episodes' summed cost by their summed length: the rate the multiplier drives to "
                 "the budget (docs/multiplier.md). Both are reported; neither replaces the other.")
METHOD_PARAGRAPHS = (
    "Safety during training comes from progress.csv: one row per finished training episode, acted "
    "as the run trained (the uniform-random warm-up, the stochastic exploration policy and, for "
    "filtered algorithms, the Lyapunov filter). A violation is a training episode whose cost, in "
    "the budget's kind, exceeded the budget; cumulative violations are their number, the violation "
    "rate their fraction of the run's episodes. Training cost is the mean episode cost over all "
    "episodes, and over the last 10% of training episodes (at least the last one); the training "
    "return over the last 10% describes those same episodes; for an average budget the cost per "
    "step of those episodes is their summed cost (each episode's per-step cost times its length) "
    "over their summed length. The training cost of the second half is over the episodes that end "
    "after half the run's planned steps, each episode's cost weighted by its length (for an "
    "average budget: their cost per env step; for episodes of equal length: their mean), as the "
    "multiplier weighs them: the level it holds once settled, around which the last 10% scatter. "
    "Rejected actions are the failed tests "
    "of the Lyapunov filter summed over all training episodes; per 1k steps divides by the env "
    "steps of those episodes. Final lambda and alpha are the values after the last training "
    "episode. Speed (sps) is the median of the per-episode env steps per second.",

    "The learned policy comes from the last row of eval.csv (the evaluation at the end of "
    "training for a finished run): each evaluation runs the policy deterministically on "
    "`eval_episodes` episodes of a separate environment with fixed reset seeds. Filter off is the "
    "same protocol for every algorithm: the base policy's mean action, refined by the Hamiltonian "
    "chain with zero momentum where the algorithm has one, without the Lyapunov filter. Filter on "
    "is the deployed policy of a filtered algorithm (sac-hpo, hpo-conv, hpo-explore, "
    "hpo-nomomentum in a constrained environment): Algorithm 3 of the Lyapunov filter started "
    "from the mean action; its rejections during those episodes are counted apart from "
    "training's. Evaluation costs are in the budget's kind. One evaluation is one moment of a "
    "policy that keeps changing: the per-seed column 'evaluations over budget, second half' counts, "
    "of the evaluations after half the run's planned steps, those whose mean cost (filter off) "
    "exceeded the budget, so a final evaluation can be read as typical of the run or not; "
    "`safehpo evaluate RUN_DIR --episodes N` plays a run's final policy for more episodes.",

    "Per algorithm, only finished runs (status.json state \"done\") enter the means; unfinished "
    "ones (running, interrupted, failed, not started) are listed in the per-seed tables with the "
    "steps they reached. If an algorithm has no finished run, its row averages its unfinished "
    "runs and is marked with a dagger. With 3 or more seeds the mean is shown with a 95% "
    "percentile-bootstrap confidence interval (10,000 resamples of the seeds, fixed random "
    "seed); with fewer, no interval is computed and the mean is followed by each seed's value.",

    "Learning curves smooth each seed's training episodes with a 5-episode moving average (fewer "
    "for runs of under 20 episodes) and interpolate them, and the evaluations, onto a common step "
    "grid; a point is drawn where at least one seed has data, with a 95% bootstrap band over 3 or "
    "more seeds, else with each seed's own thin line. The figures average the same runs as the "
    "tables; unfinished runs are drawn as dotted lines of their algorithm's colour, outside the "
    "means. Lambda and alpha are drawn unsmoothed.",

    "The audit cuts training into 20 equal step buckets. An episode covers the env steps "
    "(end - length, end]; its rejected actions, leapfrog steps and unsafe fallbacks are spread "
    "uniformly over those steps, each bucket receiving the share of its overlap with the "
    "episode, so bucket counts may be fractional (audit.csv writes them with 3 decimals; they "
    "sum to the run's totals). Rates per 1k steps divide by the env steps the run's episodes "
    "cover in the bucket. The `episodes` column counts the episodes that ended in the bucket.",
)
METHOD = "\n\n".join(METHOD_PARAGRAPHS)


def _stat_text(stat: SeedStat | None, digits: int, seed_digits: int | None = None) -> str:
    """'812.0 [790.0, 834.0]' (a CI), '812.0 (seeds: 790.0, 834.0)' or '790.0 (1 seed)'."""
    if stat is None:
        return "-"
    d = digits
    sd = digits if seed_digits is None else seed_digits
    if stat.has_ci:
        return f"{stat.mean:.{d}f} [{stat.low:.{d}f}, {stat.high:.{d}f}]"
    if stat.n == 1:
        return f"{stat.mean:.{d}f} (1 seed)"
    return f"{stat.mean:.{d}f} (seeds: " + ", ".join(f"{v:.{sd}f}" for v in stat.values) + ")"


DAGGER = "†"


def _seeds_cell(a: dict) -> str:
    """'3/3 done', '2/3 done (1 running)', '0/2 done (2 interrupted) †'."""
    text = f"{a['done']}/{a['seeds']} done"
    if a["states"]:
        text += " (" + ", ".join(f"{n} {state}" for state, n in a["states"].items()) + ")"
    return text + (f" {DAGGER}" if a["partial"] else "")


def _steps_cell(r: dict) -> str:
    """A run's steps; 'done of planned' for an unfinished run."""
    steps = field_text(r["steps"]) or "0"
    if r["status"] != FINISHED and r.get("planned_steps"):
        return f"{steps} of {r['planned_steps']}"
    return steps if r["steps"] is not None else "-"


def _status_cell(r: dict) -> str:
    if r["status"] == FINISHED:
        return FINISHED
    return f"**{r['status']}** (unfinished)" + (f": {r['reason']}" if r["reason"] else "")


def _filtered_cell(a: dict, metric: str, digits: int, seed_digits: int | None = None) -> str:
    """A filter-on cell: the statistic; 'n/r' when no eval.csv of the algorithm has the filtered
    columns (written before they existed) and it has evaluations; '-' otherwise."""
    if a[metric] is not None:
        return _stat_text(a[metric], digits, seed_digits)
    if not a["filtered_recorded"] and a["eval_return"] is not None:
        return "n/r"
    return "-"


def _ci_sentence(table: Sequence[dict]) -> str:
    counts = {a["usable"] for a in table if a["usable"]}
    with_ci = any(n >= MIN_SEEDS_FOR_CI for n in counts)
    few = any(n < MIN_SEEDS_FOR_CI for n in counts)
    if with_ci and not few:
        return ("Each cell: the mean over the algorithm's finished seeds with a 95% bootstrap "
                "confidence interval in brackets.")
    if few and not with_ci:
        return ("Each cell: the mean over the algorithm's finished seeds, followed by each seed's "
                f"value; with fewer than {MIN_SEEDS_FOR_CI} seeds no confidence interval is computed.")
    return ("Each cell: the mean over the algorithm's finished seeds, with a 95% bootstrap "
            f"confidence interval in brackets where there are {MIN_SEEDS_FOR_CI} or more seeds, "
            "else followed by each seed's value (no interval).")


def _range_text(values: Iterable[Any], unit: str = "") -> str | None:
    v = sorted({int(x) for x in values if x is not None})
    if not v:
        return None
    return f"{v[0]:,}{unit}" if len(v) == 1 else f"{v[0]:,}-{v[-1]:,}{unit}"


# Config fields that name the run, or change its speed and rounding but not the algorithm
# (what a resume may change): never listed as settings.
_NOT_SETTINGS = {"env", "algo", "seed"} | RESUMABLE_CHANGES


def changed_settings(config: dict) -> dict[str, Any]:
    """The hyperparameters of a run's config.yaml that differ from the defaults of this code
    (safehpo/config.py) and that the run reads (`unread_settings`), in Config's order."""
    config = with_legacy_defaults(config)
    unread = unread_settings(config)
    return {key: config[key] for key, default in Config().to_dict().items()
            if key not in _NOT_SETTINGS and key not in unread and key in config and config[key] != default}


def settings_text(runs: Sequence[RunRecord]) -> str:
    """'Settings: ...': per algorithm, the hyperparameters of its runs' config.yaml that differ from
    the defaults of this code (safehpo/config.py) and that the run reads (`unread_settings`); a
    value some seeds share names those seeds. A run without a readable config.yaml (one that failed
    before writing it) is left out."""
    lines = []
    for algo in sorted({r.algo for r in runs}):
        own = sorted((r for r in runs if r.algo == algo and r.config), key=lambda r: r.seed)
        differ: dict[str, dict[Any, list[int]]] = {}
        for r in own:
            for key, value in changed_settings(r.config).items():
                differ.setdefault(key, {}).setdefault(value, []).append(r.seed)
        if not differ:
            continue
        items = []
        for key, values in differ.items():
            for value, seeds in values.items():
                text = f"{key}={setting_text(value)}"
                if len(seeds) < len(own):
                    text += f" (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})"
                items.append(text)
        lines.append(f"{algo}: `{'`, `'.join(items)}`")
    if not lines:
        return "Settings: the defaults of safehpo/config.py for every algorithm."
    return ("Settings that differ from the defaults of safehpo/config.py (config.yaml of each run): "
            + "; ".join(lines) + ".")


def _evals_over_cell(r: dict) -> str:
    """'k of n': of a run's evaluations in the second half, those over the budget (filter off)."""
    n, over = r.get("second_half_evals"), r.get("second_half_evals_over")
    return f"{over} of {n}" if n and over is not None else "-"


def method_text(table: Sequence[dict]) -> str:
    """METHOD, its confidence-interval paragraph worded for this report's seed counts."""
    counts = {a["usable"] for a in table if a["usable"]}
    paragraphs = list(METHOD_PARAGRAPHS)
    if counts and max(counts) < MIN_SEEDS_FOR_CI:
        paragraphs[2] = (
            "Per algorithm, only finished runs (status.json state \"done\") enter the means; "
            "unfinished ones (running, interrupted, failed, not started) are listed in the "
            "per-seed tables with the steps they reached. If an algorithm has no finished run, "
            "its row averages its unfinished runs and is marked with a dagger. Every algorithm "
            f"here has fewer than {MIN_SEEDS_FOR_CI} seeds in its mean, so no confidence interval "
            "is computed (a bootstrap over one or two seeds says nothing): each cell shows the "
            "mean followed by each seed's value. With 3 or more seeds the report shows a 95% "
            "percentile-bootstrap interval instead.")
    return "\n\n".join(paragraphs)


def write_report(env_dir: Path | str, runs: Sequence[RunRecord] | None = None) -> Path:
    """Write `report.md`: env (the spec's id), budget, which runs are finished, the two headline
    tables per algorithm (safety during training; the learned policy), the per-seed tables, the
    figures present in the folder, the method and the command (command.txt).
    """
    env_dir = Path(env_dir)
    runs = list(runs) if runs is not None else collect_runs(env_dir)
    summary = summarise(env_dir, runs)
    threshold, kind = env_budget(runs)
    name = env_name(env_dir, runs)
    kind_text = BUDGET_KIND_LABELS.get(kind or "", kind or "")
    table = algo_table(summary)

    parts = [f"# {name}", ""]
    if threshold is None:
        parts.append("Budget: none (unconstrained).")
    else:
        parts.append(f"Budget: episode cost ({kind_text}) <= {threshold:g}.")
    spec_paths = sorted({str(r.config["env"]) for r in runs  # a custom spec given by its path
                         if isinstance(r.config.get("env"), str) and r.spec_id
                         and r.config["env"] != r.spec_id})
    if spec_paths:
        parts.append(f"Spec file: `{'`, `'.join(spec_paths)}`.")
    done = sum(r["status"] == FINISHED for r in summary)
    unfinished = [r for r in summary if r["status"] != FINISHED]
    line = f"Runs: {done} of {len(summary)} finished."
    if unfinished:
        line += " Unfinished, not in the means: " + "; ".join(
            f"{r['algo']} seed {r['seed']} ({r['status']}, {_steps_cell(r)} steps)" for r in unfinished) + "."
    parts += ["", line, "", settings_text(runs), ""]
    daggers = any(a["partial"] for a in table)
    dagger_note = (f"{DAGGER} No finished run: the mean is over the unfinished runs (partial "
                   "training, up to their last episode); see the per-seed tables.")

    # (a) safety during training
    parts += ["## Safety during training", "",
              "Training episodes as they were acted (progress.csv, every episode of each run): the "
              "uniform-random warm-up, the stochastic exploration policy and, for filtered "
              "algorithms, the Lyapunov filter. "
              + ("A violation is a training episode whose cost exceeded the budget; costs are "
                 f"measured in the budget's kind ({kind_text or kind}). " if threshold is not None
                 else "The environment has no budget: no episode counts as a violation. ")
              + _ci_sentence(table), ""]
    per_step = kind == "average"  # episodes of unequal length: also their cost per env step
    rows = [[a["algo"], _seeds_cell(a), _stat_text(a["cumulative_violations"], 1, 0),
             _stat_text(a["violation_rate"], 3), _stat_text(a["train_cost_mean"], 3),
             _stat_text(a["second_half_cost"], 3), _stat_text(a["final_cost"], 3)]
            + ([_stat_text(a["final_cost_per_step"], 3)] if per_step else [])
            + [_stat_text(a["final_return"], 1), _stat_text(a["rejected_per_1k_steps"], 2)]
            for a in table]
    parts += [md_table(["algo", "seeds", "cumulative violations", "violation rate",
                         "training cost, all episodes",
                         "training cost per step, second half" if per_step else "training cost, second half",
                         "training cost, last 10%"]
                        + (["training cost per step, last 10%"] if per_step else [])
                        + ["training return, last 10%", "rejected / 1k steps"], rows), ""]
    if per_step:
        parts += [PER_STEP_NOTE, ""]
    if daggers:
        parts += [dagger_note, ""]

    # (b) the learned policy
    chosen = [r for a in table for r in a["chosen"]]
    at_steps = _range_text(r["eval_step"] for r in chosen)
    n_eval = _range_text(r["eval_episodes"] for r in chosen)
    parts += ["## The learned policy", ""]
    if at_steps is None:
        parts += ["No evaluation recorded (eval.csv missing or empty).", ""]
    else:
        parts += [f"Deterministic evaluation at each run's last evaluation (step {at_steps}), on "
                  f"{'N = ' + n_eval if n_eval else 'eval_episodes'} episode{'' if n_eval == '1' else 's'} per seed of a "
                  "separate environment with fixed reset seeds (eval.csv). Filter off: the base "
                  "policy's mean action, refined by the Hamiltonian chain with zero momentum where "
                  "the algorithm has one, without the Lyapunov filter; the same protocol for every "
                  "algorithm. Filter on: the deployed policy of a filtered algorithm (Algorithm 3 "
                  "of the Lyapunov filter started from the mean action), with the actions the filter "
                  "rejected during those episodes; '-' for algorithms without the filter. "
                  + _ci_sentence(table), ""]
        rows = [[a["algo"], _seeds_cell(a), _stat_text(a["eval_return"], 1),
                 _stat_text(a["eval_cost"], 3), _filtered_cell(a, "eval_filtered_return", 1),
                 _filtered_cell(a, "eval_filtered_cost", 3),
                 _filtered_cell(a, "eval_filtered_rejected", 1, 0)] for a in table]
        parts += [md_table(["algo", "seeds", "return, filter off", "cost, filter off",
                             "return, filter on (deployed)", "cost, filter on (deployed)",
                             "rejected in evaluation, filter on"], rows), ""]
        notes = []
        if any(_filtered_cell(a, "eval_filtered_return", 1) == "n/r" for a in table):
            notes.append("n/r: not recorded; these runs' eval.csv predates the filtered "
                         "evaluation (5 columns), so only the unfiltered policy was evaluated.")
        if daggers:
            notes.append(dagger_note)
        for note in notes:
            parts += [note, ""]

    # per seed
    parts += ["## Per seed: training", "",
              "Unfinished runs (in bold) are not in the means above (unless marked "
              f"{DAGGER}); their steps read 'reached of planned'. Final lambda and alpha: after "
              "the last training episode.", ""]
    seed_rows = [[r["algo"], str(r["seed"]), _status_cell(r), _steps_cell(r),
                  field_text(r["episodes"]) or "-", field_text(r["cumulative_violations"]) or "-",
                  fixed_text(r["violation_rate"], 3), fixed_text(r["train_cost_mean"], 3),
                  fixed_text(r["second_half_cost"], 3), fixed_text(r["final_cost"], 3)]
                 + ([fixed_text(r["final_cost_per_step"], 3)] if per_step else [])
                 + [fixed_text(r["final_return"], 1), field_text(r["rejected"]) or "-",
                  fixed_text(r["rejected_per_1k_steps"], 2), significant_text(r["final_lambda"]),
                  significant_text(r["final_alpha"]), fixed_text(r["wall_seconds"], 0), fixed_text(r["sps"], 1)]
                 for r in summary]
    parts += [md_table(["algo", "seed", "status", "steps", "episodes", "violations",
                         "violation rate", "cost, all",
                         "cost per step, second half" if per_step else "cost, second half", "cost, last 10%"]
                        + (["cost per step, last 10%"] if per_step else [])
                        + ["return, last 10%",
                         "rejected", "rejected / 1k steps", "final lambda", "final alpha",
                         "wall s", "sps"], seed_rows, right_from=3), ""]
    parts += ["## Per seed: learned policy", ""]
    def filtered(r: dict, text: str) -> str:  # n/r: an eval.csv from before the filtered columns
        return text if r.get("eval_has_filtered") or r["eval_step"] is None else "n/r"
    seed_rows = [[r["algo"], str(r["seed"]), _status_cell(r), field_text(r["eval_step"]) or "-",
                  field_text(r["eval_episodes"]) or "-", fixed_text(r["eval_return"], 1),
                  fixed_text(r["eval_cost"], 3), filtered(r, fixed_text(r["eval_filtered_return"], 1)),
                  filtered(r, fixed_text(r["eval_filtered_cost"], 3)),
                  filtered(r, field_text(r["eval_filtered_rejected"]) or "-"),
                  _evals_over_cell(r)] for r in summary]
    parts += [md_table(["algo", "seed", "status", "eval step", "episodes", "return, filter off",
                         "cost, filter off", "return, filter on", "cost, filter on",
                         "rejected, filter on", "evaluations over budget, second half"], seed_rows,
                       right_from=3), ""]

    captions = {
        "return_vs_violation.png": "Final training return vs training cost and vs cumulative violations",
        "curves.png": "Training and evaluation return and cost, lambda and alpha over training",
        "audit.png": "Rejected actions and unsafe fallbacks over training",
    }
    present = [f for f in FIGURE_FILES if (env_dir / f).exists()]
    if present:
        parts += ["## Figures", ""]
        for f in present:
            parts += [f"![{captions[f]}]({f})", ""]

    parts += ["## How the numbers were computed", "", method_text(table), "",
              f"Per-seed numbers are in `{SUMMARY_FILE}`; the audit per step bucket in `{AUDIT_FILE}`.", ""]
    command = env_dir / COMMAND_FILE
    if command.is_file():
        text = command.read_text(errors="replace").strip()
        if text:
            parts += ["## Command", "", "```", text, "```", ""]
    return write_atomic(env_dir / REPORT_FILE, "\n".join(parts))
