"""plot-actions: a trained Hamiltonian run gives a valid actions PNG; Gaussian runs and folders that
are not runs exit 2; the base and chain samples are paired; the Q grid is the agent's Q_lambda."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
import torch

from conftest import TINY, write_spec
from safehpo import actions
from safehpo.cli import main
from safehpo.config import Config, apply_overrides
from safehpo.train import train

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny_run(spec: str, out, algo: str, steps: int):
    cfg = apply_overrides(Config(env=spec, algo=algo, seed=0, steps=steps), TINY)
    return train(cfg, out, progress=False).out


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    """The conftest `speed_spec` (50-step HalfCheetah episodes), shared by the module's runs."""
    return write_spec(tmp_path_factory.mktemp("spec") / "cheetah-speed-short.yaml", "cheetah-speed-short",
                      "{kind: velocity, params: {measure: abs_x, threshold: 1.0}}", "{threshold: 2, kind: sum}")


@pytest.fixture(scope="module")
def hpo_run(spec, tmp_path_factory):
    return tiny_run(spec, tmp_path_factory.mktemp("hpo") / "run", "sac-hpo", steps=250)


def assert_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 400 and image.shape[1] > 800  # two panels side by side
    assert image[..., :3].std() > 0.05  # a filled contour, not a blank canvas


def test_plot_actions_writes_a_png(hpo_run, capsys):
    assert main(["plot-actions", str(hpo_run), "--samples", "300"]) == 0
    path = hpo_run / "actions.png"
    assert capsys.readouterr().out.strip() == str(path)
    assert_png(path)
    assert not [p for p in hpo_run.iterdir() if p.name.startswith(".actions")]  # no temp file left


def test_plot_actions_options(hpo_run, tmp_path):
    out = tmp_path / "mine.png"
    assert main(["plot-actions", str(hpo_run), "--state-index", "7", "--dims", "4,1",
                 "--samples", "200", "--out", str(out)]) == 0
    assert_png(out)


@pytest.mark.parametrize("args,needle", [(["--dims", "0,0"], "--dims"), (["--dims", "0,9"], "--dims"),
                                         (["--state-index", "60"], "--state-index")])
def test_bad_options_exit_2(hpo_run, tmp_path, capsys, args, needle):
    assert main(["plot-actions", str(hpo_run), "--out", str(tmp_path / "x.png"), *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()


def test_gaussian_run_exits_2(spec, tmp_path, capsys):
    run = tiny_run(spec, tmp_path / "lag", "sac-lag", steps=120)
    assert main(["plot-actions", str(run)]) == 2
    err = capsys.readouterr().err
    assert "no Hamiltonian chain" in err and err.count("\n") == 1
    assert not (run / "actions.png").exists()


def test_not_a_run_exits_2(hpo_run, tmp_path, capsys):
    assert main(["plot-actions", str(tmp_path)]) == 2            # an empty folder
    assert main(["plot-actions", str(tmp_path / "missing")]) == 2  # no folder at all
    half = tmp_path / "half"                                     # config.yaml without checkpoint
    half.mkdir()
    (half / "config.yaml").write_text((hpo_run / "config.yaml").read_text())
    assert main(["plot-actions", str(half)]) == 2
    (half / "checkpoint.pt").write_bytes(b"not a checkpoint")    # an unreadable checkpoint
    assert main(["plot-actions", str(half)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and all(line.startswith("safehpo: error:") for line in lines)
    assert "no checkpoint.pt" in lines[2] and "unreadable checkpoint" in lines[3]


def test_load_run_restores_the_trained_agent(hpo_run):
    cfg, spec, agent, step, _ = actions.load_run(hpo_run)
    state = torch.load(hpo_run / "checkpoint.pt", map_location="cpu", weights_only=False)
    saved = state["agent"]
    assert step == state["step"] == 250                  # the step the checkpoint was written at
    assert cfg.algo == "sac-hpo" and cfg.hidden == 32 and cfg.steps == 250
    for name, value in saved["critics"].items():
        assert torch.equal(agent.critics.state_dict()[name], value)
    assert agent.multiplier.value == saved["multiplier"]["value"]
    assert float(agent.log_alpha.detach()) == float(saved["log_alpha"]) != 0.0  # alpha_init 1: log 0 before training


def test_load_run_reads_a_checkpoint_of_the_previous_format(hpo_run, tmp_path):
    """Format 1 stepped the temperature with its own optimiser: the policy optimiser's state has one
    parameter less. Plotting loads no optimiser state, so such a run still actions."""
    import shutil
    old = tmp_path / "run"
    shutil.copytree(hpo_run, old)
    state = torch.load(old / "checkpoint.pt", weights_only=False)
    del state["format"]
    opt = state["agent"]["actor_opt"]
    last = opt["param_groups"][0]["params"].pop()  # log_alpha, the group's last parameter
    state["agent"]["alpha_opt"] = {"state": {0: opt["state"].pop(last)}, "param_groups": [
        {**opt["param_groups"][0], "params": [0]}]}
    torch.save(state, old / "checkpoint.pt")
    cfg, _, agent, *_ = actions.load_run(old)
    assert cfg.algo == "sac-hpo"
    assert float(agent.log_alpha.detach()) == float(state["agent"]["log_alpha"])
    with pytest.raises(ValueError):  # the optimisers themselves do not fit: resume refuses the format
        agent.load_state_dict(state["agent"])


def test_samples_are_paired_and_the_chain_moves_them(hpo_run):
    cfg, spec, agent, *_ = actions.load_run(hpo_run)
    obs = actions.run_state(spec, cfg.seed)
    drawn = actions.action_samples(agent, obs, 256)
    moved = np.abs(drawn["chain"] - drawn["base"]).mean(0)
    assert moved.max() > 1e-3                      # K = 3 leapfrog steps move the actions
    i, j = actions.moved_dims(drawn["base"], drawn["chain"])
    assert {i, j} == set(np.argsort(-moved)[:2].tolist())
    assert np.all(np.abs(drawn["chain"]) <= 1.0)   # inside HalfCheetah's action box
    agent.cfg = agent.cfg.replace(leapfrog_steps=0)  # K = 0: the chain returns its start a_0
    still = actions.action_samples(agent, obs, 256)
    np.testing.assert_allclose(still["chain"], still["base"], atol=1e-6)


def test_q_grid_is_the_agents_q_lambda(hpo_run):
    cfg, spec, agent, *_ = actions.load_run(hpo_run)
    agent.multiplier.value = 0.7  # a nonzero multiplier: the cost critic enters Q_lambda
    obs = actions.run_state(spec, cfg.seed, 3)
    anchor = np.linspace(-0.5, 0.5, agent.act_dim).astype(np.float32)
    x, y, q = actions.q_lambda_grid(agent, obs, (1, 4), anchor, points=5)
    a = anchor.copy()
    a[1], a[4] = x[3], y[2]
    s = torch.as_tensor(obs).unsqueeze(0)
    with torch.no_grad():
        values = agent.critics(s, torch.as_tensor(a).unsqueeze(0))[:, 0]
    q1, q2, qc = values[0], values[1], values[2:].max()  # Q_C: the larger cost critic (one or twins)
    # relative units (the default): Q_C in budget units, Q_lambda divided by 1 + lambda
    assert cfg.lambda_units == "relative"
    expected = float((torch.minimum(q1, q2) - 0.7 / cfg.cost_scale * qc) / 1.7)
    assert q[2, 3] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert (x[0], x[-1], y[0], y[-1]) == (-1.0, 1.0, -1.0, 1.0)
