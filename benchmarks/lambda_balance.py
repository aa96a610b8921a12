"""Why did a stretch of training end over or under its budget? The ascent rule's own account.

    python benchmarks/lambda_balance.py RUN_FOLDER [--from STEP] [--to STEP]

For a run whose multiplier is the ascent rule in relative units with each episode's own,
unclipped cost (`lagrange: paper`, `lambda_units: relative`, `lambda_window: 1`, `lambda_clip:
inf`, safehpo's default; docs/multiplier.md), every episode that counts moves lambda by
eta * w * v (w its length share, v = (J_C - target) / target) and the floor at 0 adds back what
would have taken lambda below it. Summed over the episodes that end in (from, to]:

    lambda(to) - lambda(from) = eta * sum(w v) + lift,   lift >= 0 (the floor's total)

so their length-weighted mean cost is target * (1 + (delta_lambda - lift) / (eta * sum w)): a
stretch ends over its target exactly by what lambda rose over it, and the floor can only pull it
under. The script replays the rule on the run's progress.csv (each episode's cost and length),
checks that the replay gives the logged lambda, and prints the terms. `target` is the budget the
agent aimed at, (1 - budget_margin) * d0; the budget itself is printed beside it.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import yaml


def load(run: Path) -> tuple[dict, list[dict]]:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    with open(run / "progress.csv", newline="") as fh:
        rows = [{k: float(v) for k, v in r.items() if k in ("step", "cost", "length", "lambda")}
                for r in csv.DictReader(fh)]
    return cfg, rows


def unsupported(cfg: dict) -> str | None:
    """Why the identity does not hold for this run's multiplier, or None."""
    from safehpo.algos import ALGOS, multiplier_rule
    if cfg["algo"] not in ALGOS:
        return f"unknown algo '{cfg['algo']}'"
    rule = multiplier_rule(cfg["algo"], cfg.get("lagrange", "paper"))
    if rule != "paper":
        return f"the multiplier of {cfg['algo']} is '{rule}', not the ascent rule"
    if cfg.get("spec", {}).get("budget") is None:
        return "the env has no budget"
    wanted = {"lambda_units": "relative", "lambda_window": 1}
    for key, value in wanted.items():
        if cfg.get(key) != value:
            return f"{key} is {cfg.get(key)!r}, not {value!r}"
    if not math.isinf(float(cfg.get("lambda_clip", math.inf))):
        return f"lambda_clip is {cfg['lambda_clip']}, not inf"
    return None


def balance(cfg: dict, rows: list[dict], start: float, end: float) -> dict:
    """Replay the rule over every counted episode; sum its terms over those ending in (start, end]."""
    spec = cfg["spec"]
    d0 = float(spec["budget"]["threshold"])
    target = (1.0 - float(cfg.get("budget_margin", 0.0))) * d0
    eta, horizon = float(cfg["lambda_lr"]), float(spec["max_episode_steps"])
    lam = float(cfg.get("lambda_init", 0.0))
    out = dict(d0=d0, target=target, eta=eta, n=0, sum_w=0.0, sum_wv=0.0, sum_wc=0.0, lift=0.0,
               lambda_start=None, lambda_end=None, worst_replay_error=0.0)
    for r in rows:
        first = r["step"] - r["length"]
        if first >= cfg["learning_starts"]:          # an episode with a warm-up step does not count
            w = r["length"] / horizon
            v = max(-1.0, (r["cost"] - target) / target)
            moved = lam + eta * w * v
            lifted = max(0.0, moved)
            if start < r["step"] <= end:
                if out["lambda_start"] is None:
                    out["lambda_start"] = lam
                out["n"] += 1
                out["sum_w"] += w
                out["sum_wv"] += w * v
                out["sum_wc"] += w * r["cost"]
                out["lift"] += lifted - moved
                out["lambda_end"] = lifted
            lam = lifted
        # the log rounds lambda to 6 significant digits
        out["worst_replay_error"] = max(out["worst_replay_error"], abs(lam - r["lambda"]))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a run folder (config.yaml, progress.csv)")
    p.add_argument("--from", dest="start", type=float, default=50_000, help="stretch start, env steps (excl.)")
    p.add_argument("--to", dest="end", type=float, default=math.inf, help="stretch end, env steps (incl.)")
    args = p.parse_args()
    try:
        cfg, rows = load(args.run)
    except (OSError, yaml.YAMLError, KeyError, ValueError) as e:
        print(f"lambda_balance: cannot read {args.run}: {e}", file=sys.stderr)
        return 2
    why = unsupported(cfg)
    if why:
        print(f"lambda_balance: {args.run}: {why}; the identity holds for the ascent rule only", file=sys.stderr)
        return 2
    b = balance(cfg, rows, args.start, args.end)
    if b["n"] == 0:
        print(f"lambda_balance: {args.run}: no counted episode ends in ({args.start:g}, {args.end:g}]", file=sys.stderr)
        return 2
    delta = b["lambda_end"] - b["lambda_start"]
    mean = b["sum_wc"] / b["sum_w"]
    predicted = b["target"] * (1.0 + (delta - b["lift"]) / (b["eta"] * b["sum_w"]))
    print(f"{args.run}: {b['n']} episodes ending in ({args.start:g}, {args.end:g}], summed length share {b['sum_w']:.2f}")
    print(f"  budget {b['d0']:g}, aimed at {b['target']:g} ({cfg['spec']['budget']['kind']})")
    print(f"  length-weighted mean cost {mean:.3f}  ({100 * (mean / b['d0'] - 1):+.1f}% against the budget)")
    print(f"  lambda {b['lambda_start']:.4f} -> {b['lambda_end']:.4f} (rise {delta:+.4f}), floor lift {b['lift']:.4f}")
    print(f"  target * (1 + (rise - lift) / (eta * sum w)) = {predicted:.3f}")
    print(f"  replay against the logged lambda: largest difference {b['worst_replay_error']:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
