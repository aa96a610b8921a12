"""The `safehpo` command (docs/outputs.md). Bad input: one line on stderr, exit code 2."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path

from . import __version__
from .config import Config, ConfigError, apply_overrides, validate
from .runfolder import ACTIONS_FILE, CHECKPOINT_FILE, seed_folder

EXIT_USAGE = 2


def _positive_int(text: str) -> int:
    try:
        value = int(float(text)) if float(text).is_integer() else None
    except ValueError:
        value = None
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got '{text}'")
    return value


def cmd_envs(args) -> int:
    from .cmdp import list_specs
    rows = [("id", "base", "cost", "budget", "source")]
    for s in list_specs():
        params = ", ".join(f"{k}={v}" for k, v in s.cost.params.items())
        cost = s.cost.kind + (f" ({params})" if params else "")
        budget = f"{s.budget.kind} <= {s.budget.threshold:g}" if s.budget else "-"
        source = " ".join((s.source or "").split())
        if len(source) > 60:  # cut at a word, marked
            source = source[:60].rsplit(" ", 1)[0] + " ..."
        rows.append((s.id, s.base, cost, budget, source))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    return 0


def cmd_algos(args) -> int:
    from .algos import ALGOS
    print(f"{'name':<16}{'explore':<14}{'train':<14}{'filter':<8}{'multiplier':<12}summary")
    for name, a in ALGOS.items():
        explore = a.explore + ("" if a.momentum else " (rho=0)")
        print(f"{name:<16}{explore:<14}{a.train:<14}{'yes' if a.filter else 'no':<8}{a.multiplier:<12}{a.summary}")
    if args.params:
        print("\nhyperparameters (--set key=value):")
        for key, value in Config().to_dict().items():
            print(f"  {key} = {value}")
    return 0


def cmd_train(args) -> int:
    from .algos import check_algo
    from .cmdp import load_spec
    from .train import train
    check_algo(args.algo, "--algo")
    spec = load_spec(args.env)
    cfg = Config(env=args.env, algo=args.algo, seed=args.seed, device=args.device)
    if args.steps is not None:
        cfg = cfg.replace(steps=args.steps)
    refuse_flag_overrides(args.set or [], {"env": "--env", "algo": "--algo", "seed": "--seed", "steps": "--steps",
                                           "device": "--device"})
    cfg = apply_overrides(cfg, args.set or [])
    validate(cfg, "train")
    out = Path(args.out) if args.out else Path("runs") / spec.id / args.algo / seed_folder(args.seed)
    if args.resume and not (out / CHECKPOINT_FILE).exists():
        print(f"safehpo: '{out}' holds no checkpoint yet: starting the run from the beginning", file=sys.stderr)
    result = train(cfg, out, resume=args.resume, progress=not args.quiet,
                   command="safehpo " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    print(f"{result.state}: {result.steps} steps, {result.episodes} episodes in {result.wall_seconds:.0f} s -> {out}")
    return 0


def _bench_folder(args) -> Path:
    """`plot` and `audit`'s DIR: a bench's --out folder or one of its env folders, with runs in it."""
    from .runrecord import find_env_dirs
    path = Path(args.dir)
    if not path.exists():
        raise ConfigError(f"{args.command} {path}: does not exist")
    if not path.is_dir():
        raise ConfigError(f"{args.command} {path}: not a folder (give a bench's --out folder or one of its env folders)")
    if not find_env_dirs(path):
        raise ConfigError(f"{args.command} {path}: no runs found (expected <env>/<algo>/seed-<n>/ "
                          "folders in it or in its subfolders)")
    return path


def cmd_plot(args) -> int:
    """Write summary.csv, audit.csv, the figures and report.md of every environment folder."""
    from .aggregate import aggregate_all
    for p in aggregate_all(_bench_folder(args)):
        print(p)
    return 0


def cmd_audit(args) -> int:
    """Print the rejected-action table per algorithm."""
    from .audit import format_audit
    print(format_audit(_bench_folder(args)))
    return 0


def cmd_plot_actions(args) -> int:
    """Write the actions figure of one run folder and print its path."""
    from .actions import plot_actions
    print(plot_actions(args.run_dir, state_index=args.state_index, dims=args.dims,
                       samples=args.samples, out=args.out))
    return 0


def cmd_evaluate(args) -> int:
    """Play a trained run's policy and print each episode's return and cost."""
    from .evaluation import evaluate_run
    print(evaluate_run(args.run_dir, episodes=args.episodes, seed=args.seed, stochastic=args.stochastic,
                       filtered=args.filtered).format())
    return 0


def refuse_flag_overrides(items: list[str], flags: dict[str, str]) -> None:
    """`--set key=value` must not set what a flag of its own sets (one would silently win)."""
    for item in items:
        key = item.split("=", 1)[0].strip()
        if key in flags:
            raise ConfigError(f"--set {key}=...: use {flags[key]} instead")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), not the usage block."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="safehpo", description="Safe-RL benchmark: SAC-Lagrangian and the "
                                "Hamiltonian policy (SAC-HPO) on constrained MuJoCo tasks.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("envs", help="list the CMDP specs").set_defaults(func=cmd_envs)
    a = sub.add_parser("algos", help="list the algorithms")
    a.add_argument("--params", action="store_true", help="also list every hyperparameter and its default")
    a.set_defaults(func=cmd_algos)

    t = sub.add_parser("train", help="train one run")
    t.add_argument("--env", required=True, help="spec name (see `safehpo envs`) or path to a YAML spec")
    t.add_argument("--algo", required=True, help="algorithm (see `safehpo algos`)")
    t.add_argument("--seed", type=_non_negative_int, default=0, help="random seed of the run (default 0)")
    t.add_argument("--steps", type=_positive_int, default=None, help="env steps (default 1e6)")
    t.add_argument("--out", default=None, help="run folder (default runs/<env>/<algo>/seed-<n>)")
    t.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyperparameter (repeatable)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    from . import bench, speed  # each adds its own subcommand
    for module in (bench, speed):
        module.register_cli(sub)

    pl = sub.add_parser("plot", help="redraw figures and rewrite summary.csv, audit.csv, report.md")
    pl.add_argument("dir", help="an environment folder of a bench (OUT/<env>) or a folder of them")
    pl.set_defaults(func=cmd_plot)
    au = sub.add_parser("audit", help="print the Lyapunov filter's rejected-action table")
    au.add_argument("dir", help="an environment folder of a bench (OUT/<env>) or a folder of them")
    au.set_defaults(func=cmd_audit)
    pa = sub.add_parser("plot-actions", help="scatter base-policy and Hamiltonian-chain actions at one "
                        "state over Q_lambda (the paper's Fig. 7)")
    pa.add_argument("run_dir", help="a run folder (the --out of `safehpo train`: config.yaml, checkpoint.pt)")
    pa.add_argument("--state-index", type=_non_negative_int, default=0, metavar="N",
                    help="the state N random steps into the episode reset with the run's seed "
                    "(default 0: its first state)")
    pa.add_argument("--dims", default=None, metavar="I,J",
                    help="the two action dims to plot (default: the two the chain moves most)")
    pa.add_argument("--samples", type=_positive_int, default=1000, help="actions drawn per policy (default 1000)")
    pa.add_argument("--out", default=None, metavar="FILE", help=f"PNG to write (default RUN_DIR/{ACTIONS_FILE})")
    pa.set_defaults(func=cmd_plot_actions)
    ev = sub.add_parser("evaluate", help="play a trained run's policy for more episodes: each episode's "
                        "return, cost and length")
    ev.add_argument("run_dir", help="a run folder (the --out of `safehpo train`: config.yaml, checkpoint.pt)")
    ev.add_argument("--episodes", type=_positive_int, default=None,
                    help="episodes to play (default: the run's eval_episodes)")
    ev.add_argument("--seed", type=_non_negative_int, default=None,
                    help="reset seed of the first episode, i + seed of episode i (default: that of the "
                    "run's last evaluation before its checkpoint; for a finished run eval.csv's last row)")
    ev.add_argument("--stochastic", action="store_true",
                    help="draw each action from the policy instead of taking its mean")
    ev.add_argument("--filtered", action="store_true",
                    help="through the Lyapunov filter: the deployed policy of a filtered algorithm")
    ev.set_defaults(func=cmd_evaluate)
    return p


def _terminated(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM (kill, timeout, Slurm, docker stop) stops a command as Ctrl-C does: a run records
    # "interrupted" and resumes with the same command
    signal.signal(signal.SIGTERM, _terminated)
    try:
        return args.func(args) or 0
    except ConfigError as e:
        print(f"safehpo: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("safehpo: interrupted; rerun the same command (with --resume for `train`) to continue", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a diverged run is a clear one-line failure too
        from .train import TrainingDiverged
        if isinstance(e, TrainingDiverged):
            print(f"safehpo: error: training diverged: {e}", file=sys.stderr)
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
