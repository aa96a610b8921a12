"""Figures: each PNG is written, valid and readable back; degenerate benches still draw."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from safehpo import plots

# The synthetic bench generator lives in test_aggregate.py (loaded by path: no tests package).
_spec = importlib.util.spec_from_file_location("_safehpo_bench_fixture",
                                               Path(__file__).with_name("test_aggregate.py"))
_fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixture)
make_bench, write_run = _fixture.make_bench, _fixture.write_run

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


@pytest.mark.parametrize("draw,name", [(plots.plot_return_vs_violation, "return_vs_violation.png"),
                                       (plots.plot_curves, "curves.png"),
                                       (plots.plot_audit, "audit.png")])
def test_each_figure_is_a_valid_png(bench, draw, name):
    path = draw(bench)
    assert path == bench / name
    assert_png(path)
    assert not [p for p in bench.iterdir() if p.name.startswith(".")]  # no temp file left


def test_plot_all_on_parent_with_two_envs(tmp_path):
    make_bench(tmp_path / "a-velocity", env="a-velocity", seeds=2)
    make_bench(tmp_path / "b-torque", env="b-torque", seeds=2, budget=(25.0, "average"))
    paths = plots.plot_all(tmp_path)
    assert len(paths) == 6
    assert {p.parent.name for p in paths} == {"a-velocity", "b-torque"}
    for p in paths:
        assert_png(p)
    assert len(plots.plot_all(tmp_path / "a-velocity")) == 3
    with pytest.raises(FileNotFoundError):
        plots.plot_all(tmp_path / "missing")


def test_no_filter_bench_and_degenerate_runs_still_draw(tmp_path):
    make_bench(tmp_path, algos=("sac", "sac-lag"), seeds=2, filter_algos=())   # nothing rejected
    write_run(tmp_path, "sac-lag", 5, [], status={"state": "failed", "reason": "NaN",
                                                 "wall_seconds": 1.0, "steps_done": 0})
    write_run(tmp_path, "sac", 6, [dict(step=300, episode=0, length=300, cost=3.0, **{"return": 9.0})])
    for p in plots.plot_all(tmp_path):
        assert_png(p)


def test_bench_without_episodes_or_budget_still_draws(tmp_path):
    write_run(tmp_path, "sac-hpo", 0, [], budget=None)
    for p in plots.plot_all(tmp_path):
        assert_png(p)


def test_algorithm_colours_are_fixed_and_distinct():
    names = ["sac", "sac-lag", "sac-pid", "sac-hpo", "hpo-conv", "hpo-explore", "hpo-train",
             "hpo-nomomentum"]
    styles = [plots.algo_style(n) for n in names]
    assert len({c for c, _ in styles}) == len(names)
    assert plots.algo_style("my-algo") == plots.algo_style("my-algo")


def test_curve_helpers():
    v = np.array([0.0, 10.0, 20.0, 30.0, 40.0, 50.0])
    assert plots.moving_average(v, 3) == pytest.approx([5.0, 10.0, 20.0, 30.0, 40.0, 45.0])
    grid = np.array([0.0, 100.0, 150.0, 200.0, 300.0])
    out = plots.interpolate_seed(np.array([100.0, 200.0]), np.array([1.0, 3.0]), grid)
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
    assert "no runs found" in capsys.readouterr().err


def test_importing_plots_does_not_load_matplotlib():
    import subprocess
    import sys
    code = "import sys, safehpo.plots; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
