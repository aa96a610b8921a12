"""Multiplier updaters on hand-computed sequences (docs/design.md)."""

import pytest

from safehpo.lagrange import AdamLagrangian, GradientAscent, NoMultiplier, PIDLagrangian


def test_gradient_ascent_hand_computed():
    m = GradientAscent(budget=10.0, lr=0.1, window=2)
    # J_C is the mean of the last 2 episode costs
    assert m.episode_end(30.0) == pytest.approx(0.1 * (30 - 10))             # J=30 -> 2.0
    assert m.episode_end(20.0) == pytest.approx(2.0 + 0.1 * (25 - 10))      # J=25 -> 3.5
    assert m.episode_end(0.0) == pytest.approx(3.5 + 0.1 * (10 - 10))       # J=10 -> 3.5
    assert m.episode_end(0.0) == pytest.approx(3.5 + 0.1 * (0 - 10))        # J=0  -> 2.5
    for _ in range(5):
        m.episode_end(0.0)
    assert m.value == 0.0  # projected onto lambda >= 0


def test_gradient_ascent_rises_while_budget_exceeded():
    m = GradientAscent(budget=1.0, lr=0.1)
    values = [m.episode_end(5.0) for _ in range(20)]
    assert all(b > a for a, b in zip(values, values[1:]))


def test_pid_hand_computed():
    m = PIDLagrangian(budget=10.0, kp=0.5, ki=0.1, kd=0.2, window=1)
    # J=14: delta 4, I 4, no derivative yet -> 0.5*4 + 0.1*4 = 2.4
    assert m.episode_end(14.0) == pytest.approx(2.4)
    # J=12: delta 2, I 6, D = 12-14 = -2 -> 1.0 + 0.6 - 0.4 = 1.2
    assert m.episode_end(12.0) == pytest.approx(1.2)
    # J=0: delta -10, I max(0, -4) = 0, D = -12 -> negative, projected to 0
    assert m.episode_end(0.0) == 0.0
    assert m.integral == 0.0


def test_adam_lagrangian_steps_and_state_roundtrip():
    m = AdamLagrangian(budget=1.0, lr=0.1)
    m.episode_end(3.0)
    for _ in range(3):
        m.step()
    assert m.value == pytest.approx(0.3, abs=1e-6)  # Adam's first steps move by ~lr each
    clone = AdamLagrangian(budget=1.0, lr=0.1)
    clone.load_state_dict(m.state_dict())
    assert clone.step() == pytest.approx(m.step())


def test_state_roundtrip_continues_identically():
    a = PIDLagrangian(budget=5.0, window=3)
    for c in (9.0, 7.0, 3.0):
        a.episode_end(c)
    b = PIDLagrangian(budget=5.0, window=3)
    b.load_state_dict(a.state_dict())
    assert [a.episode_end(x) for x in (8.0, 1.0)] == [b.episode_end(x) for x in (8.0, 1.0)]


def test_no_multiplier_stays_zero():
    m = NoMultiplier()
    assert m.episode_end(1e6) == 0.0


def test_relative_violation_is_clipped_and_weighted_by_episode_length():
    m = GradientAscent(budget=10.0, lr=0.1, window=1, relative=True, clip=1.0)
    assert m.episode_end(400.0) == pytest.approx(0.1)              # 40x the budget moves it as 2x does
    assert m.episode_end(15.0, weight=0.5) == pytest.approx(0.1 + 0.1 * 0.5 * 0.5)
    assert m.episode_end(0.0) == pytest.approx(0.125 - 0.1)        # -1 at the least
    assert m.episode_end(0.0) == 0.0


def test_pid_on_relative_violation_integrates_weighted_steps():
    m = PIDLagrangian(budget=10.0, kp=0.5, ki=0.1, kd=0.2, window=1, relative=True, clip=1.0)
    assert m.episode_end(14.0, weight=0.5) == pytest.approx(0.5 * 0.4 + 0.1 * 0.2)   # I = 0.5 * 0.4
    assert m.episode_end(30.0) == pytest.approx(0.5 * 1.0 + 0.1 * 1.2 + 0.2 * 0.6)   # clipped to 1


def test_adam_takes_no_step_before_the_first_episode_that_counts():
    m = AdamLagrangian(budget=10.0, lr=0.1, init=1.0)
    assert m.step() == 1.0                       # nothing measured yet: no made-up J_C = 0
    m.episode_end(30.0)
    assert m.step() > 1.0


def test_paper_units_ignore_the_episode_length_weight():
    m = GradientAscent(budget=10.0, lr=0.1, window=1)
    assert m.episode_end(30.0, weight=0.5) == pytest.approx(0.1 * (30 - 10))
    p = PIDLagrangian(budget=10.0, kp=0.5, ki=0.1, kd=0.2, window=1)
    assert p.episode_end(14.0, weight=0.5) == pytest.approx(0.5 * 4 + 0.1 * 4)


@pytest.mark.parametrize("clip, drift", [(1.0, "down"), (float("inf"), "none")])
def test_unclipped_relative_rule_rests_where_the_mean_cost_meets_the_budget(clip, drift):
    # one episode in four at 4 d0 and three at 0: the mean cost is exactly d0. Unclipped, each period of four episodes
    # moves lambda by 0.1 (3 - 1 - 1 - 1) = 0; clipped at 1 the over-budget episode counts as 1 and
    # the three at 0 as -1 each, so lambda sinks although the mean cost sits on the budget.
    m = GradientAscent(budget=10.0, lr=0.1, init=2.0, window=1, relative=True, clip=clip)
    for _ in range(5):
        for cost in (40.0, 0.0, 0.0, 0.0):
            m.episode_end(cost)
    if drift == "none":
        assert m.value == pytest.approx(2.0)
    else:
        assert m.value == pytest.approx(2.0 - 5 * 0.1 * 2)


@pytest.mark.parametrize("kind", ["paper", "pid", "adam"])
def test_every_rule_reads_the_configured_clip(kind):
    from safehpo.config import Config
    from safehpo.lagrange import make_multiplier
    clipped = make_multiplier(kind, 10.0, Config(lambda_clip=1.0))
    unclipped = make_multiplier(kind, 10.0, Config())
    for m in (clipped, unclipped):
        m.episode_end(50.0)                       # five times the budget: a violation of 4
    assert clipped.violation() == 1.0 and unclipped.violation() == 4.0
    if kind == "adam":                            # the same violation drives the gradient step
        clipped.step(), unclipped.step()
        assert clipped.param.grad.item() == -1.0 and unclipped.param.grad.item() == -4.0


def test_pid_integrates_the_unclipped_violation_but_bounds_its_p_and_d_terms():
    m = PIDLagrangian(budget=10.0, kp=0.1, ki=0.01, kd=0.01, window=1, relative=True)
    # 50: violation 4; I = 4; P and D see 1 (no D on the first episode)
    assert m.episode_end(50.0) == pytest.approx(0.1 * 1.0 + 0.01 * 4.0)
    # 0: violation -1; I = 3; D = -1 - 1
    assert m.episode_end(0.0) == pytest.approx(max(0.0, 0.1 * -1.0 + 0.01 * 3.0 + 0.01 * -2.0))
    assert m.integral == pytest.approx(3.0)


def test_pid_smooths_p_and_d_over_episodes_hand_computed():
    m = PIDLagrangian(budget=10.0, kp=0.5, ki=0.1, kd=0.2, window=1, ema=0.75)
    # J=14: delta 4, s starts at 4, I 4, no derivative -> 0.5*4 + 0.1*4 = 2.4
    assert m.episode_end(14.0) == pytest.approx(2.4)
    # J=6: delta -4, s = 0.75*4 + 0.25*-4 = 2, I 0, D = 2 - 4 -> 1.0 + 0 - 0.4 = 0.6
    assert m.episode_end(6.0) == pytest.approx(0.6)
    assert m.integral == 0.0 and m.previous == pytest.approx(2.0)


def test_pid_smoothing_stops_the_every_episode_alternation():
    """Episodes alternating at 3x and 0.5x the budget (mean 1.75x): with P and D on single episodes
    lambda jumps by Kp + 2 Kd every episode; smoothed, by a seventh of that (mostly the integral's
    own step) while it rises."""
    from safehpo.config import Config
    from safehpo.lagrange import make_multiplier
    costs = [30.0, 5.0] * 20
    swings = {}
    for ema in (0.0, 0.9):
        m = make_multiplier("pid", 10.0, Config(pid_ema=ema, lambda_units="relative"))
        values = [m.episode_end(c) for c in costs]
        swings[ema] = max(abs(b - a) for a, b in zip(values[20:], values[21:]))
        assert values[-1] > values[10]                       # the integral keeps rising: mean over budget
    assert swings[0.0] > 0.15 and swings[0.9] < 0.2 * swings[0.0]


def test_pid_ema_is_checked():
    from safehpo.config import Config, ConfigError, validate
    with pytest.raises(ConfigError, match="pid_ema"):
        validate(Config(pid_ema=1.0))
