"""Figures: each PNG is written, valid and readable back; degenerate benches still draw."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import yaml

from safehpo import audit, drawing, figures, runrecord

# The synthetic bench generator lives in test_aggregate.py (loaded by path: no tests package).
_spec = importlib.util.spec_from_file_location("_safehpo_bench_fixture",
                                               Path(__file__).with_name("test_aggregate.py"))
_fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixture)
make_bench, write_run, read_csv = _fixture.make_bench, _fixture.write_run, _fixture.read_csv

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> np.ndarray:
    assert path.is_file() and path.suffix == ".png"
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300
    assert image[..., :3].std() > 0.01  # not a blank canvas
    return image


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    return make_bench(tmp_path_factory.mktemp("bench") / "toy-velocity")


@pytest.mark.parametrize("draw,name", [(figures.plot_return_vs_violation, "return_vs_violation.png"),
                                       (figures.plot_curves, "curves.png"),
                                       (figures.plot_audit, "audit.png")])
def test_each_figure_is_a_valid_png(bench, draw, name):
    path = draw(bench)
    assert path == bench / name
    assert_png(path)
    assert not [p for p in bench.iterdir() if p.name.startswith(".")]  # no temp file left


def test_plot_all_on_parent_with_two_envs(tmp_path):
    make_bench(tmp_path / "a-velocity", env="a-velocity", seeds=2)
    make_bench(tmp_path / "b-torque", env="b-torque", seeds=2, budget=(25.0, "average"))
    paths = figures.plot_all(tmp_path)
    assert len(paths) == 6
    assert {p.parent.name for p in paths} == {"a-velocity", "b-torque"}
    for p in paths:
        assert_png(p)
    assert len(figures.plot_all(tmp_path / "a-velocity")) == 3
    with pytest.raises(FileNotFoundError):
        figures.plot_all(tmp_path / "missing")


def test_no_filter_bench_and_degenerate_runs_still_draw(tmp_path):
    make_bench(tmp_path, algos=("sac", "sac-lag"), seeds=2, filter_algos=())   # nothing rejected
    write_run(tmp_path, "sac-lag", 5, [], status={"state": "failed", "reason": "NaN",
                                                 "wall_seconds": 1.0, "steps_done": 0})
    write_run(tmp_path, "sac", 6, [dict(step=300, episode=0, length=300, cost=3.0, **{"return": 9.0})])
    for p in figures.plot_all(tmp_path):
        assert_png(p)


def test_bench_without_episodes_or_budget_still_draws(tmp_path):
    write_run(tmp_path, "sac-hpo", 0, [], budget=None)
    for p in figures.plot_all(tmp_path):
        assert_png(p)


def test_algorithm_colours_are_fixed_and_distinct():
    names = ["sac", "sac-lag", "sac-pid", "sac-hpo", "hpo-conv", "hpo-explore", "hpo-train",
             "hpo-nomomentum", "hpo-nofilter"]
    styles = [drawing.algo_style(n) for n in names]
    assert len({c for c, _ in styles}) == len(names)
    assert drawing.algo_style("my-algo") == drawing.algo_style("my-algo")


def test_curve_helpers():
    v = np.array([0.0, 10.0, 20.0, 30.0, 40.0, 50.0])
    assert drawing.moving_average(v, 3) == pytest.approx([5.0, 10.0, 20.0, 30.0, 40.0, 45.0])
    grid = np.array([0.0, 100.0, 150.0, 200.0, 300.0])
    out = drawing.interpolate_seed(np.array([100.0, 200.0]), np.array([1.0, 3.0]), grid)
    assert np.isnan(out[[0, 4]]).all() and out[1:4] == pytest.approx([1.0, 2.0, 3.0])


def test_plot_and_audit_commands(tmp_path, capsys):
    from safehpo.cli import main
    make_bench(tmp_path / "toy-velocity", seeds=2)
    assert main(["plot", str(tmp_path)]) == 0
    for name in ("summary.csv", "audit.csv", "report.md", "curves.png"):
        assert (tmp_path / "toy-velocity" / name).is_file()
    assert main(["audit", str(tmp_path / "toy-velocity")]) == 0
    out = capsys.readouterr().out
    assert "sac-hpo" in out and "per 1k steps" in out
    assert main(["audit", str(tmp_path / "missing")]) == 2
    assert "missing: does not exist" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "toy-velocity" / "report.md")]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["plot", str(tmp_path / "empty")]) == 2
    assert "no runs found" in capsys.readouterr().err


def test_importing_figures_does_not_load_matplotlib():
    import subprocess
    import sys
    code = "import sys, safehpo.figures, safehpo.cli; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# ----------------------------------------------------------------------------------------------
# What the figures show (inspected on the matplotlib Figure before it is saved)
# ----------------------------------------------------------------------------------------------

@pytest.fixture
def drawn(monkeypatch) -> list:
    """The Figure objects the plot functions would save, in order (not rendered: faster)."""
    kept = []

    def keep(fig, path):
        kept.append(fig)
        drawing.pyplot().close(fig)
        return Path(path)
    monkeypatch.setattr(figures, "save_figure", keep)
    return kept


def _axes_by_title(fig) -> dict:
    return {ax.get_title(): ax for ax in fig.axes}


def _lines(ax, colour: str, linestyle: str | None = None, width: float | None = None) -> list:
    from matplotlib.colors import to_hex
    return [ln for ln in ax.get_lines() if to_hex(ln.get_color()) == colour
            and (linestyle is None or ln.get_linestyle() == linestyle)
            and (width is None or ln.get_linewidth() == pytest.approx(width))]


def test_curves_have_evaluation_panels_filtered_dashed_and_lambda(tmp_path, drawn):
    make_bench(tmp_path, seeds=2)
    figures.plot_curves(tmp_path)
    axes = _axes_by_title(drawn[-1])
    hpo, lag = drawing.algo_style("sac-hpo")[0], drawing.algo_style("sac-lag")[0]
    eval_ret = axes["evaluation (deterministic policy): return"]
    eval_cost = axes["evaluation (deterministic policy): cost"]
    lam = axes["Lagrange multiplier lambda (after each training episode)"]
    assert "entropy temperature alpha (after each training episode)" in axes
    for ax in (eval_ret, eval_cost):
        assert _lines(ax, hpo, "-") and _lines(ax, lag, "-")         # filter off: every algorithm
        assert _lines(ax, hpo, "--") and not _lines(ax, lag, "--")   # filter on: filtered ones only
    # the evaluation mean of sac-hpo at the last step is the mean of the seeds' eval.csv rows
    mean_line = _lines(eval_ret, hpo, "-", 1.8)[0]
    x, y = mean_line.get_data()
    last = [float(read_csv(tmp_path / "sac-hpo" / f"seed-{s}" / "eval.csv")[-1]["return_mean"]) for s in range(2)]
    assert x[-1] == 20_000 and y[-1] == pytest.approx(sum(last) / 2)
    # lambda over training, as logged (0.1 per episode in the bench)
    lx, ly = _lines(lam, hpo, "-", 1.8)[0].get_data()
    assert np.nanmax(ly) > 1.0 and np.nanmin(ly) == pytest.approx(0.0, abs=0.2)
    # two seeds: each seed's thin line, no bootstrap band
    assert len(_lines(axes["training episodes: return"], hpo, "-", 0.8)) == 2
    assert not axes["training episodes: return"].collections
    # budget line on both cost panels
    for title in ("training episodes: cost", "evaluation (deterministic policy): cost"):
        assert any(ln.get_linestyle() == "--" and np.allclose(ln.get_ydata(), 25.0)
                   for ln in axes[title].get_lines())


def test_curves_with_three_seeds_draw_bands_not_seed_lines(tmp_path, drawn):
    make_bench(tmp_path, seeds=3)
    figures.plot_curves(tmp_path)
    axes = _axes_by_title(drawn[-1])
    hpo = drawing.algo_style("sac-hpo")[0]
    for title in ("training episodes: return", "evaluation (deterministic policy): return"):
        assert axes[title].collections                            # fill_between: the CI band
        assert not _lines(axes[title], hpo, "-", 0.8)


def test_return_vs_violation_ci_only_with_three_seeds_and_finished_runs_only(tmp_path, drawn):
    from matplotlib.collections import PathCollection
    from matplotlib.container import ErrorbarContainer
    make_bench(tmp_path / "two", seeds=2)
    make_bench(tmp_path / "three", seeds=3)
    write_run(tmp_path / "three", "sac-hpo", 9, [dict(step=1000, episode=0, length=1000, cost=500.0,
                                                      **{"return": -5000.0})],
              status={"state": "running", "reason": None, "steps_done": 1000})
    for folder, with_ci in (("two", False), ("three", True)):
        figures.plot_return_vs_violation(tmp_path / folder)
        ax_cost = drawn[-1].axes[0]
        bars = [c for c in ax_cost.containers if isinstance(c, ErrorbarContainer)]
        assert len(bars) == 2 and all(c.has_xerr == with_ci and c.has_yerr == with_ci for c in bars)
        points = np.concatenate([c.get_offsets() for c in ax_cost.collections   # the seeds' scatter
                                 if isinstance(c, PathCollection)])
        assert len(points) == (4 if folder == "two" else 6)   # the running seed is not drawn
        assert points[:, 1].min() > -5000


def test_figure_titles_use_the_spec_id(tmp_path, drawn):
    spec_path = str(tmp_path / "specs" / "my-cheetah.yaml")
    config = {"spec": {"id": "cheetah-custom", "path": spec_path}}
    make_bench(tmp_path / "out", seeds=1)
    for run_dir in (tmp_path / "out").glob("*/seed-*"):   # as if the bench was given the YAML path
        doc = yaml.safe_load((run_dir / "config.yaml").read_text())
        (run_dir / "config.yaml").write_text(yaml.safe_dump({**doc, "env": spec_path, **config}))
    figures.plot_env(tmp_path / "out")
    assert len(drawn) == 3
    for fig in drawn:
        title = fig._suptitle.get_text()
        assert title.startswith("cheetah-custom:") and spec_path not in title and "yaml" not in title


def test_audit_rates_are_spread_over_long_episodes(tmp_path):
    # 1000-step episodes, 4000 planned steps -> 200-step buckets: every bucket has the episode's rate
    rows = [dict(step=1000 * (i + 1), episode=i, length=1000, rejected=100 * (i + 1)) for i in range(4)]
    write_run(tmp_path, "sac-hpo", 0, rows, steps=4000)
    runs = runrecord.collect_runs(tmp_path)
    centres, matrix = figures._rate_matrix(runs, audit.audit_bucket_width(runs), "rejected")
    assert len(centres) == 20
    assert matrix[0] == pytest.approx(np.repeat([100.0, 200.0, 300.0, 400.0], 5))


def test_plot_command_on_an_old_format_bench(tmp_path, capsys):
    """`safehpo plot` on a bench written before eval.csv had the filtered columns (as the
    committed results/halfcheetah-speed): everything is written, filter-on cells read n/r."""
    from safehpo.cli import main
    _fixture.make_bench(tmp_path / "halfcheetah-speed", env="halfcheetah-speed", seeds=2,
                        eval_header=_fixture.OLD_EVAL_HEADER)
    assert "filtered_return_mean" not in (tmp_path / "halfcheetah-speed" / "sac-hpo" / "seed-0" / "eval.csv").read_text()
    assert main(["plot", str(tmp_path)]) == 0
    for name in ("summary.csv", "audit.csv", "report.md", "return_vs_violation.png", "curves.png", "audit.png"):
        assert (tmp_path / "halfcheetah-speed" / name).stat().st_size > 0
    assert_png(tmp_path / "halfcheetah-speed" / "curves.png")
    text = (tmp_path / "halfcheetah-speed" / "report.md").read_text()
    assert text.startswith("# halfcheetah-speed\n")
    assert "## Safety during training" in text and "## The learned policy" in text
    assert "n/r: not recorded" in text and "(seeds: " in text


def test_curves_keep_unfinished_runs_out_of_the_mean(tmp_path, drawn):
    make_bench(tmp_path, algos=("sac-hpo",), seeds=3)
    write_run(tmp_path, "sac-hpo", 3, [dict(step=200 * (i + 1), episode=i, length=200, cost=900.0,
                                            **{"return": -5000.0, "lambda": 50.0}) for i in range(30)],
              steps=20_000, budget=(25.0, "sum"),
              eval_rows=[dict(step=5000, return_mean=-5000.0, return_std=0, cost_mean=900.0, cost_std=0)],
              status={"state": "interrupted", "reason": "stopped", "steps_done": 6000})
    figures.plot_curves(tmp_path)
    axes = _axes_by_title(drawn[-1])
    hpo = drawing.algo_style("sac-hpo")[0]
    for title, low in (("training episodes: return", -1000), ("evaluation (deterministic policy): return", 0),
                       ("Lagrange multiplier lambda (after each training episode)", -1)):
        ax = axes[title]
        (mean,) = _lines(ax, hpo, "-", 1.8)
        assert np.nanmin(mean.get_ydata()) > low and np.nanmax(np.abs(mean.get_ydata())) < 4000
        dotted = _lines(ax, hpo, ":")
        assert len(dotted) == 1 and np.nanmin(np.abs(dotted[0].get_ydata())) >= 50   # the unfinished run
    legend = [t.get_text() for t in axes["training episodes: return"].get_legend().get_texts()]
    assert legend == ["sac-hpo (3 seeds; 1 unfinished, dotted)"]
