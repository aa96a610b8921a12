"""CMDP specs, costs and budgets (docs/cmdps.md)."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import yaml

from safehpo.cmdp import (
    BudgetSpec,
    CostSpec,
    EnvSpec,
    discounted_budget,
    episode_cost_measure,
    list_specs,
    load_spec,
    make_env,
    velocity_cost,
)
from safehpo.config import ConfigError

SHIPPED = {
    "ant", "ant-torque", "ant-velocity", "halfcheetah", "halfcheetah-speed", "halfcheetah-velocity",
    "hopper", "hopper-velocity", "humanoid", "humanoid-velocity", "pendulum", "swimmer-velocity", "walker2d",
    "walker2d-velocity",
}

# Safety-Gymnasium Safety<X>Velocity-v1: base v4 env, velocity measure, threshold
SAFETY_VELOCITY = {
    "ant-velocity": ("Ant-v4", "xy", 2.6222),
    "halfcheetah-velocity": ("HalfCheetah-v4", "x", 3.2096),
    "hopper-velocity": ("Hopper-v4", "x", 0.7402),
    "walker2d-velocity": ("Walker2d-v4", "x", 2.3415),
    "swimmer-velocity": ("Swimmer-v4", "x", 0.2282),
    "humanoid-velocity": ("Humanoid-v4", "xy", 1.4149),
}


def _spec(budget: BudgetSpec | None, steps: int = 1000) -> EnvSpec:
    return EnvSpec(id="t", base="Hopper-v5", kwargs={}, cost=CostSpec("velocity", {"measure": "x", "threshold": 1.0}),
                   budget=budget, max_episode_steps=steps)


# --- shipped specs ---------------------------------------------------------------------------

def test_every_shipped_spec_loads_makes_and_steps():
    specs = list_specs()
    assert [s.id for s in specs] == sorted(SHIPPED)
    for spec in specs:
        assert spec.path == f"envs/{spec.id}.yaml"
        assert load_spec(spec.id) == spec
        assert spec.constrained == (spec.cost.kind != "none")
        env = make_env(spec, seed=0)
        env.reset()
        _, _, cost, _, _, info = env.step6(env.action_space.sample())
        assert isinstance(cost, float) and cost >= 0 and info["cost"] == cost
        env.close()


@pytest.mark.parametrize("name", sorted(SAFETY_VELOCITY))
def test_velocity_specs_follow_safety_gymnasium_v1(name):
    base, measure, threshold = SAFETY_VELOCITY[name]
    spec = load_spec(name)
    assert (spec.base, spec.kwargs, spec.max_episode_steps) == (base, {}, 1000)
    assert spec.cost == CostSpec("velocity", {"measure": measure, "threshold": threshold})
    assert spec.budget == BudgetSpec(25.0, "sum")


def test_paper_specs():
    torque, speed = load_spec("ant-torque"), load_spec("halfcheetah-speed")
    assert (torque.base, torque.cost, torque.budget) == ("Ant-v5", CostSpec("torque", {"gear": "auto"}),
                                                         BudgetSpec(25.0, "average"))
    assert (speed.base, speed.cost.params, speed.budget) == ("HalfCheetah-v5", {"measure": "abs_x", "threshold": 1.0},
                                                             BudgetSpec(10.0, "discounted"))


def test_v4_out_of_date_warning_is_silenced():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_env(load_spec("hopper-velocity")).close()
    assert not [w for w in caught if "out of date" in str(w.message)]


# --- budgets ---------------------------------------------------------------------------------

def test_discounted_budget_on_hand_computed_numbers():
    g_t = 0.99**1000  # 4.317e-5
    assert discounted_budget(_spec(BudgetSpec(25, "average")), 0.99) == pytest.approx(25 * (1 - g_t) / 0.01)
    assert discounted_budget(_spec(BudgetSpec(25, "average")), 0.99) == pytest.approx(2499.8921, abs=1e-4)
    assert discounted_budget(_spec(BudgetSpec(25, "sum")), 0.99) == pytest.approx(0.025 * (1 - g_t) / 0.01)
    assert discounted_budget(_spec(BudgetSpec(10, "discounted")), 0.99) == 10
    # T = 2, gamma = 0.5: 1 + 0.5 = 1.5 discounted steps
    assert discounted_budget(_spec(BudgetSpec(1, "average"), steps=2), 0.5) == pytest.approx(1.5)
    assert discounted_budget(_spec(BudgetSpec(1, "sum"), steps=2), 0.5) == pytest.approx(0.75)
    assert discounted_budget(_spec(BudgetSpec(3, "sum"), steps=10), 1.0) == pytest.approx(3)
    with pytest.raises(ValueError):
        discounted_budget(_spec(None), 0.99)


@pytest.mark.parametrize("kind, per_step", [("average", lambda d0, T: d0), ("sum", lambda d0, T: d0 / T)])
def test_constant_cost_at_the_budget_has_the_converted_discounted_sum(kind, per_step):
    spec, gamma = _spec(BudgetSpec(7.0, kind), steps=300), 0.97
    costs = np.full(300, per_step(7.0, 300))
    assert episode_cost_measure(costs, kind, gamma) == pytest.approx(7.0)
    assert episode_cost_measure(costs, "discounted", gamma) == pytest.approx(discounted_budget(spec, gamma))


def test_episode_cost_measure_on_a_hand_made_episode():
    costs = np.array([1.0, 0.0, 2.0])
    assert episode_cost_measure(costs, "average", 0.5) == pytest.approx(1.0)
    assert episode_cost_measure(costs, "sum", 0.5) == pytest.approx(3.0)
    assert episode_cost_measure(costs, "discounted", 0.5) == pytest.approx(1.0 + 0.0 + 2.0 * 0.25)
    with pytest.raises(ValueError):
        episode_cost_measure(costs, "mean", 0.5)


# --- costs on the real MuJoCo envs -----------------------------------------------------------

def test_ant_torque_cost_is_mean_absolute_applied_torque():
    env = make_env(load_spec("ant-torque"), seed=0)
    env.reset()
    model, data = env.unwrapped.model, env.unwrapped.data
    assert list(model.actuator_gear[:, 0]) == [150.0] * 8
    action = np.random.default_rng(0).uniform(-1, 1, 8)
    _, _, _, _, info = env.step(action)
    assert info["cost"] == pytest.approx(np.mean(np.abs(150 * action)))
    # the simulator's own actuator forces (gain 1) times the gears are the same torques
    assert info["cost"] == pytest.approx(np.mean(np.abs(150 * data.actuator_force)))
    # outside the box the action is clipped: 2*sign(a) costs what sign(a) costs, 150
    for outside in (2 * np.sign(action), 5 * action):
        _, _, _, _, info = env.step(outside)
        assert info["cost"] == pytest.approx(np.mean(np.abs(150 * np.clip(outside, -1, 1))))
        assert info["cost"] == pytest.approx(np.mean(np.abs(150 * data.actuator_force)))
    _, _, _, _, info = env.step(2 * np.sign(action))
    assert info["cost"] == pytest.approx(150.0)


def test_halfcheetah_speed_cost_is_abs_x_velocity_above_one():
    env = make_env(load_spec("halfcheetah-speed"), seed=0)
    env.reset()
    costs = []
    for _ in range(300):
        _, reward, _, _, info = env.step(env.action_space.sample())
        assert info["cost"] == float(abs(info["x_velocity"]) > 1.0)
        assert reward == pytest.approx(info["reward_forward"] + info["reward_ctrl"])  # unchanged
        costs.append(info["cost"])
    assert set(costs) == {0.0, 1.0}


def test_step6_is_step_with_the_cost_moved_out_of_info():
    spec = load_spec("halfcheetah-speed")
    a, b = make_env(spec, seed=3), make_env(spec, seed=3)
    a.reset(), b.reset()
    for action in np.random.default_rng(1).uniform(-1, 1, (50, 6)):
        obs, reward, terminated, truncated, info = a.step(action)
        obs6, reward6, cost6, terminated6, truncated6, info6 = b.step6(action)
        np.testing.assert_array_equal(obs, obs6)
        assert (reward, info["cost"], terminated, truncated) == (reward6, cost6, terminated6, truncated6)
        assert info6["cost"] == cost6


@pytest.mark.parametrize("name, threshold", [("ant-velocity", 2.6222), ("humanoid-velocity", 1.4149)])
def test_ant_and_humanoid_velocity_costs_use_the_xy_norm(name, threshold):
    """Thrown sideways at 4 m/s (x-velocity ~0): cost 1, where a signed-x cost would be 0."""
    env = make_env(load_spec(name), seed=0)
    env.reset()
    sim = env.unwrapped
    qpos, qvel = sim.data.qpos.copy(), np.zeros_like(sim.data.qvel)
    qpos[2] += 0.15                      # lift it off the floor (still healthy)
    qvel[1] = 4.0                        # root moves along +y
    sim.set_state(qpos, qvel)
    _, _, terminated, _, info = env.step(np.zeros(env.action_space.shape))
    assert not terminated
    assert abs(info["x_velocity"]) < threshold < math.hypot(info["x_velocity"], info["y_velocity"])
    assert info["cost"] == 1.0
    env.reset()
    _, _, _, _, info = env.step(np.zeros(env.action_space.shape))
    assert info["cost"] == 0.0


def test_velocity_measures():
    info = {"x_velocity": -2.0, "y_velocity": 1.5}
    assert velocity_cost(None, None, info, "x", 1.0) == 0.0
    assert velocity_cost(None, None, info, "abs_x", 1.0) == 1.0
    assert velocity_cost(None, None, info, "xy", 2.4) == 1.0   # norm 2.5
    assert velocity_cost(None, None, info, "xy", 2.5) == 0.0   # strictly greater


def test_user_written_spec_works_without_code_changes(tmp_path):
    path = tmp_path / "hopper-fast.yaml"
    path.write_text(yaml.safe_dump({
        "id": "hopper-fast", "base": "Hopper-v5", "max_episode_steps": 200,
        "cost": {"kind": "velocity", "params": {"measure": "x", "threshold": 0.5}},
        "budget": {"threshold": 10, "kind": "sum"},
    }))
    spec = load_spec(str(path))
    assert spec.id == "hopper-fast" and spec.constrained and spec.path == str(path)
    env = make_env(spec, seed=0)
    env.reset()
    for _ in range(20):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert info["cost"] == float(info["x_velocity"] > 0.5)
        if terminated or truncated:
            env.reset()
    assert env.spec.max_episode_steps == 200


# --- bad specs -------------------------------------------------------------------------------

GOOD = {
    "id": "good", "base": "Hopper-v5", "max_episode_steps": 1000,
    "cost": {"kind": "velocity", "params": {"measure": "x", "threshold": 1.0}},
    "budget": {"threshold": 25, "kind": "sum"},
}


def _with(change):
    spec = yaml.safe_load(yaml.safe_dump(GOOD))
    change(spec)
    return spec


BAD = {  # case: (change to GOOD, text the message must contain besides the file name)
    "unknown key": (lambda s: s.update(budgte=3), "unknown key 'budgte' (allowed: id, base"),
    "negative budget": (lambda s: s["budget"].update(threshold=-3), "field 'budget.threshold': expected a number >= 0, got -3"),
    "bool budget": (lambda s: s["budget"].update(threshold=True), "field 'budget.threshold'"),
    "text budget": (lambda s: s["budget"].update(threshold="25"), "field 'budget.threshold'"),
    "budget kind": (lambda s: s["budget"].update(kind="mean"), "field 'budget.kind'"),
    "budget key": (lambda s: s["budget"].update(limit=3), "field 'budget': unknown key 'limit'"),
    "unknown base": (lambda s: s.update(base="Antt-v5"), "field 'base': unknown gymnasium env 'Antt-v5'"),
    "missing base": (lambda s: s.pop("base"), "field 'base': missing"),
    "cost kind": (lambda s: s["cost"].update(kind="torqe"),
                  "field 'cost.kind': unknown cost kind 'torqe' (known: none, torque, velocity"),
    "unknown cost param": (lambda s: s["cost"]["params"].update(treshold=1), "field 'cost.params': unknown parameter 'treshold'"),
    "missing cost param": (lambda s: s["cost"]["params"].pop("threshold"), "field 'cost.params.threshold': missing"),
    "bad measure": (lambda s: s["cost"]["params"].update(measure="y"), "field 'cost.params.measure'"),
    "bool threshold": (lambda s: s["cost"]["params"].update(threshold=False), "field 'cost.params.threshold'"),
    "bad gear": (lambda s: s.update(cost={"kind": "torque", "params": {"gear": [150, "x"]}}), "field 'cost.params.gear'"),
    "negative gear": (lambda s: s.update(cost={"kind": "torque", "params": {"gear": -3}}),
                      "field 'cost.params.gear': expected 'auto', a number > 0"),
    "budget without cost": (lambda s: s.update(cost={"kind": "none"}), "field 'budget': a spec with cost kind 'none'"),
    "steps zero": (lambda s: s.update(max_episode_steps=0), "field 'max_episode_steps': expected an integer > 0"),
    "steps float": (lambda s: s.update(max_episode_steps=1000.5), "field 'max_episode_steps'"),
    "steps bool": (lambda s: s.update(max_episode_steps=True), "field 'max_episode_steps'"),
    "kwargs list": (lambda s: s.update(kwargs=[1, 2]), "field 'kwargs'"),
    "bad id": (lambda s: s.update(id="my env/1"), "field 'id'"),
    "description type": (lambda s: s.update(description=3), "field 'description'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_is_one_line_naming_file_and_field(tmp_path, case):
    change, expected = BAD[case]
    path = tmp_path / "foo.yaml"
    path.write_text(yaml.safe_dump(_with(change)))
    with pytest.raises(ConfigError) as err:
        load_spec(str(path))
    message = str(err.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_good_spec_passes(tmp_path):  # so that the failures above are due to the change alone
    path = tmp_path / "foo.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    assert load_spec(str(path)).cost.params == {"measure": "x", "threshold": 1.0}


@pytest.mark.parametrize("text, expected", [
    ("id: x\nbase: [Hopper-v5\n", "invalid YAML at line"),
    ("- a\n- b\n", "expected a mapping"),
    ("", "expected a mapping"),
])
def test_unreadable_spec_file(tmp_path, text, expected):
    path = tmp_path / "foo.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{path}: {expected}"):
        load_spec(str(path))


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(ConfigError, match=rf"^{tmp_path}/nope.yaml: file not found$"):
        load_spec(str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match=r"^unknown environment 'no-such-env' \(known: ant, ant-torque, ant-velocity, "):
        load_spec("no-such-env")


@pytest.mark.parametrize("spec, expected", [
    ({"cost": {"kind": "velocity", "params": {"measure": "xy", "threshold": 1}}},
     "field 'cost.params.measure': Hopper-v5 reports no info['y_velocity']"),
    ({"cost": {"kind": "torque", "params": {"gear": [1, 2]}}}, "field 'cost.params.gear': 2 gears for 3 motors"),
    ({"cost": {"kind": "env"}}, "field 'cost.kind': Hopper-v5 reports no info['cost']"),
    ({"kwargs": {"no_such_argument": 1}}, "field 'kwargs': Hopper-v5 rejects them"),
])
def test_cost_that_does_not_fit_the_env_fails_at_make_time(tmp_path, spec, expected):
    path = tmp_path / "foo.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **spec}))
    loaded = load_spec(str(path))
    with pytest.raises(ConfigError) as err:
        make_env(loaded)
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value) and "\n" not in str(err.value)


def test_safety_gymnasium_task_needs_the_package():
    try:
        import safety_gymnasium  # noqa: F401
    except Exception:
        with pytest.raises(ConfigError, match=r"^safety:SafetyAntVelocity-v1: safety-gymnasium is not importable here"):
            load_spec("safety:SafetyAntVelocity-v1")
    else:
        spec = load_spec("safety:SafetyAntVelocity-v1")
        env = make_env(spec, seed=0)
        env.reset()
        assert "cost" in env.step(env.action_space.sample())[4]


def test_a_folder_given_as_env_is_named_as_one(tmp_path):
    with pytest.raises(ConfigError, match="is a folder; give a spec file"):
        load_spec(str(tmp_path))


@pytest.mark.parametrize("kind, d0, unit, offset", [
    ("average", 25.0, 25.0, 25.0),              # the per-step budget is d0; the critic learns (c - d0) / d0
    ("sum", 25.0, 25.0 / 1000, 0.0),            # d0 / T per step
    ("discounted", 10.0, None, 0.0),            # d0 (1 - g) / (1 - g^T)
])
def test_lagrangian_cost_units_put_the_budget_at_one_per_step(kind, d0, unit, offset):
    from safehpo.cmdp import BudgetSpec, discount_horizon, lagrangian_cost_units
    spec = dataclasses.replace(load_spec("halfcheetah-speed"), budget=BudgetSpec(d0, kind))
    got_unit, got_offset = lagrangian_cost_units(spec, 0.99, relative=True)
    expected = unit if unit is not None else d0 / discount_horizon(0.99, 1000)
    assert got_unit == pytest.approx(expected) and got_offset == offset
    # a constant cost of one unit per step spends exactly the budget in discounted units
    assert got_unit * discount_horizon(0.99, 1000) == pytest.approx(discounted_budget(spec, 0.99))
    assert lagrangian_cost_units(spec, 0.99, relative=False) == (1.0, 0.0)


def test_envs_lists_every_spec_and_cuts_sources_at_a_word(capsys):
    from safehpo.cli import main
    assert main(["envs"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert sorted(line.split()[0] for line in lines) == sorted(SHIPPED)
    for line in lines:
        source = line.split("  ")[-1]
        assert len(source) <= 64 and (not source.endswith(" ...") or source[-5] != " ")
