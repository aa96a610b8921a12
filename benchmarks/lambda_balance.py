"""Why did a stretch of training end over or under its budget? The ascent rule's own account.

    python benchmarks/lambda_balance.py RUN_FOLDER [--from STEP] [--to STEP]

For a run whose multiplier is the ascent rule in relative units with each episode's own,
unclipped cost (`lagrange: paper`, `lambda_units: relative`, `lambda_window: 1`, `lambda_clip:
inf`, safehpo's default; docs/multiplier.md), every episode that counts moves lambda by
eta * w * v (w its length share, or 1 with `lambda_weight: episode`; v = (J_C - target) / target)
and the floor (0, or `lambda_min`) adds back what would have taken lambda below it. Summed over
the episodes that end in (from, to]:

    lambda(to) - lambda(from) = eta * sum(w v) + lift,   lift >= 0 (the floor's total)

so their w-weighted mean cost (length-weighted, or each episode alike) is
target * (1 + (delta_lambda - lift) / (eta * sum w)): a stretch ends over its target exactly by
what lambda rose over it, less what the floor lifted. The script replays the rule on the run's
progress.csv (each episode's cost and length), refuses the run (exit code 2) unless the replay
gives the logged lambda, and prints the terms, the rise read off the log. `target` is the budget
the agent aimed at, (1 - budget_margin) * d0; the budget itself is printed beside it. A
config.yaml saved before a hyperparameter existed is read at the value that run had
(safehpo.runfolder.LEGACY_DEFAULTS).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import yaml


COLUMNS = ("step", "cost", "length", "lambda")
REPLAY_TOLERANCE = 1e-4   # progress.csv keeps lambda to 6 significant digits


def load(run: Path) -> tuple[dict, list[dict]]:
    """config.yaml (at the values the run had) and progress.csv's columns the rule needs.
    Raises ValueError (one line) for a file that is missing, unreadable or lacks a column."""
    from safehpo.runfolder import with_legacy_defaults
    try:
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        with open(run / "progress.csv", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise ValueError(f"progress.csv has no column {', '.join(missing)}")
            rows = [{k: float(r[k]) for k in COLUMNS} for r in reader]
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(str(e).splitlines()[0]) from None
    if not isinstance(cfg, dict):
        raise ValueError("config.yaml is not a mapping of hyperparameters")
    return with_legacy_defaults(cfg), rows


def unsupported(cfg: dict) -> str | None:
    """Why the identity does not hold for this run's multiplier, or None."""
    from safehpo.algos import ALGOS, multiplier_rule
    for key in ("algo", "lambda_lr", "learning_starts", "spec"):
        if key not in cfg:
            return f"config.yaml has no '{key}'"
    if cfg["algo"] not in ALGOS:
        return f"unknown algo '{cfg['algo']}'"
    rule = multiplier_rule(cfg["algo"], cfg.get("lagrange", "paper"))
    if rule != "paper":
        return f"the multiplier of {cfg['algo']} is '{rule}', not the ascent rule"
    spec = cfg["spec"] if isinstance(cfg["spec"], dict) else {}
    if spec.get("budget") is None:
        return "the env has no budget"
    if not float(spec["budget"].get("threshold", 0)) > 0 or not spec.get("max_episode_steps"):
        return "the budget is 0 (the relative violation is undefined) or the spec lacks max_episode_steps"
    if not float(cfg["lambda_lr"]) > 0:
        return "lambda_lr is 0: lambda never moves"
    wanted = {"lambda_units": "relative", "lambda_window": 1}
    for key, value in wanted.items():
        if cfg.get(key) != value:
            return f"{key} is {cfg.get(key)!r}, not {value!r}"
    if not math.isinf(float(cfg["lambda_clip"])):
        return f"lambda_clip is {cfg['lambda_clip']}, not inf"
    return None


def balance(cfg: dict, rows: list[dict], start: float, end: float) -> dict:
    """Replay the rule (safehpo.lagrange.GradientAscent, as training built it) over every counted
    episode; sum its terms over those ending in (start, end]. lambda_end: the replay's lambda
    leaving the stretch; logged_start / logged_end: lambda entering and leaving it as progress.csv
    has it (what the run actually had)."""
    from safehpo.lagrange import GradientAscent
    spec = cfg["spec"]
    d0 = float(spec["budget"]["threshold"])
    target = (1.0 - float(cfg.get("budget_margin", 0.0))) * d0
    eta, horizon = float(cfg["lambda_lr"]), float(spec["max_episode_steps"])
    by_length = cfg.get("lambda_weight", "length") == "length"
    rule = GradientAscent(target, lr=eta, init=float(cfg.get("lambda_init", 0.0)), relative=True,
                          floor=float(cfg.get("lambda_min", 0.0)))
    logged = rule.value
    out = dict(d0=d0, target=target, eta=eta, by_length=by_length,
               n=0, sum_w=0.0, sum_wc=0.0, lift=0.0,
               lambda_end=None, logged_start=None, logged_end=None, worst_replay_error=0.0)
    for r in rows:
        if r["step"] - r["length"] < cfg["learning_starts"]:
            continue                                 # an episode with a warm-up step does not count
        w = r["length"] / horizon if by_length else 1.0
        before = rule.value
        rule.episode_end(r["cost"], w)
        if start < r["step"] <= end:
            if out["n"] == 0:
                out["logged_start"] = logged
            out["n"] += 1
            out["sum_w"] += w
            out["sum_wc"] += w * r["cost"]
            out["lift"] += rule.value - (before + eta * w * rule.violation())   # the floor's share
            out["lambda_end"], out["logged_end"] = rule.value, r["lambda"]
        logged = r["lambda"]
        out["worst_replay_error"] = max(out["worst_replay_error"], abs(rule.value - logged))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a run folder (config.yaml, progress.csv)")
    p.add_argument("--from", dest="start", type=float, default=50_000, help="stretch start, env steps (excl.)")
    p.add_argument("--to", dest="end", type=float, default=math.inf, help="stretch end, env steps (incl.)")
    args = p.parse_args()
    try:
        cfg, rows = load(args.run)
        why = unsupported(cfg)
    except (KeyError, TypeError, ValueError) as e:
        print(f"lambda_balance: cannot read {args.run}: {e}", file=sys.stderr)
        return 2
    if why:
        print(f"lambda_balance: {args.run}: {why}; the identity holds for the ascent rule only", file=sys.stderr)
        return 2
    b = balance(cfg, rows, args.start, args.end)
    if b["n"] == 0:
        print(f"lambda_balance: {args.run}: no counted episode ends in ({args.start:g}, {args.end:g}]", file=sys.stderr)
        return 2
    if b["worst_replay_error"] > REPLAY_TOLERANCE * max(1.0, max(r["lambda"] for r in rows)):
        print(f"lambda_balance: {args.run}: the replayed rule misses the logged lambda by up to "
              f"{b['worst_replay_error']:.3g}; this run's multiplier is not the rule its config.yaml names",
              file=sys.stderr)
        return 2
    delta = b["logged_end"] - b["logged_start"]
    mean = b["sum_wc"] / b["sum_w"]
    predicted = b["target"] * (1.0 + (delta - b["lift"]) / (b["eta"] * b["sum_w"]))
    print(f"{args.run}: {b['n']} episodes ending in ({args.start:g}, {args.end:g}], summed "
          f"{'length share' if b['by_length'] else 'weight (1 each)'} {b['sum_w']:.2f}")
    print(f"  budget {b['d0']:g}, aimed at {b['target']:g} ({cfg['spec']['budget']['kind']})")
    print(f"  {'length-weighted' if b['by_length'] else 'per-episode'} mean cost {mean:.3f}  "
          f"({100 * (mean / b['d0'] - 1):+.1f}% against the budget)")
    print(f"  lambda {b['logged_start']:.4f} -> {b['logged_end']:.4f} (rise {delta:+.4f}), floor lift {b['lift']:.4f}")
    print(f"  target * (1 + (rise - lift) / (eta * sum w)) = {predicted:.3f}")
    print(f"  replay against the logged lambda: largest difference {b['worst_replay_error']:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
