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


@pytest.mark.parametrize("relative", [False, True])
@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_state_roundtrip_continues_identically(ema, relative):
    a = PIDLagrangian(budget=5.0, window=3, ema=ema, relative=relative)
    for c in (9.0, 27.0, 3.0):
        a.episode_end(c)
    b = PIDLagrangian(budget=5.0, window=3, ema=ema, relative=relative)
    b.load_state_dict(a.state_dict())
    assert [a.episode_end(x) for x in (8.0, 1.0, 30.0)] == [b.episode_end(x) for x in (8.0, 1.0, 30.0)]


def test_pid_resumes_a_paper_units_checkpoint_saved_before_the_smoothing():
    """Such a checkpoint kept J itself as `previous`; the smoothed rule keeps s = J - d0."""
    m = PIDLagrangian(budget=25.0, kp=0.1, ki=0.01, kd=0.01)
    m.episode_end(40.0)
    old = {k: v for k, v in m.state_dict().items() if k != "smoothed"}
    old["previous"] = 40.0
    resumed = PIDLagrangian(budget=25.0, kp=0.1, ki=0.01, kd=0.01)
    resumed.load_state_dict(old)
    assert resumed.episode_end(30.0) == pytest.approx(m.episode_end(30.0))


def test_no_multiplier_stays_zero():
    m = NoMultiplier()
    assert m.episode_end(1e6) == 0.0


def test_relative_violation_is_clipped_and_weighted_by_episode_length():
    m = GradientAscent(budget=10.0, lr=0.1, window=1, relative=True, clip=1.0)
    assert m.episode_end(400.0) == pytest.approx(0.1)              # 40x the budget moves it as 2x does
    assert m.episode_end(15.0, weight=0.5) == pytest.approx(0.1 + 0.1 * 0.5 * 0.5)
    assert m.episode_end(0.0) == pytest.approx(0.125 - 0.1)        # -1 at the least
    assert m.episode_end(0.0) == 0.0


def test_episode_weighting_counts_each_episode_alike():
    m = GradientAscent(budget=10.0, lr=0.1, window=1, relative=True, by_length=False)
    assert m.episode_end(40.0, weight=0.05) == pytest.approx(0.1 * 3.0)      # a short throw counts in full
    assert m.episode_end(5.0, weight=1.0) == pytest.approx(0.3 - 0.1 * 0.5)
    p = PIDLagrangian(budget=10.0, kp=0.5, ki=0.1, kd=0.0, window=1, relative=True, by_length=False)
    assert p.episode_end(14.0, weight=0.5) == pytest.approx(0.5 * 0.4 + 0.1 * 0.4)   # I = 0.4, unweighted


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


def test_pid_smoothed_in_relative_units_clips_p_and_d_at_one_hand_computed():
    m = PIDLagrangian(budget=10.0, kp=0.5, ki=0.1, kd=0.2, relative=True, ema=0.5)
    # 40: violation 3; I = 3; s starts at min(3, 1) = 1 -> 0.5*1 + 0.1*3 = 0.8
    assert m.episode_end(40.0) == pytest.approx(0.8)
    # 30: violation 2; I = 5; s = 0.5*1 + 0.5*min(2, 1) = 1; D = 0 -> 0.5 + 0.5 = 1.0
    assert m.episode_end(30.0) == pytest.approx(1.0)
    # 5: violation -0.5; I = 4.5; s = 0.5*1 + 0.5*-0.5 = 0.25; D = -0.75 -> 0.125 + 0.45 - 0.15
    assert m.episode_end(5.0) == pytest.approx(0.425)


def test_pid_smoothing_stops_the_every_episode_alternation():
    """Episodes alternating at 3x and 0.5x the budget (the integral off): with P and D on single
    episodes lambda jumps between Kp + 2 Kd and 0 every episode; smoothed, by a tenth of that."""
    from safehpo.config import Config
    from safehpo.lagrange import make_multiplier
    costs = [30.0, 5.0] * 20
    swings = {}
    for ema in (0.0, 0.9):
        m = make_multiplier("pid", 10.0, Config(pid_ema=ema, pid_ki=0.0, lambda_units="relative"))
        values = [m.episode_end(c) for c in costs]
        swings[ema] = max(abs(b - a) for a, b in zip(values[20:], values[21:]))
    assert swings[0.0] > 0.1 and swings[0.9] < 0.15 * swings[0.0]


def test_pid_integral_term_is_the_ascent_rule_with_ki_equal_to_its_step():
    """With Kp = Kd = 0 and Ki = lambda_lr, the PID rule's lambda is the ascent rule's, as long as
    neither is held at 0 (costs over budget at first, so both rise before they fall)."""
    from safehpo.config import Config
    from safehpo.lagrange import make_multiplier
    cfg = Config(pid_kp=0.0, pid_kd=0.0)
    assert cfg.pid_ki == cfg.lambda_lr
    pid, ascent = make_multiplier("pid", 10.0, cfg), make_multiplier("paper", 10.0, cfg)
    for cost, share in [(30.0, 1.0), (12.0, 0.5), (4.0, 1.0), (25.0, 0.2), (9.0, 1.0)]:
        assert pid.episode_end(cost, share) == pytest.approx(ascent.episode_end(cost, share))
    assert pid.value > 0


def test_pid_ema_is_checked():
    from safehpo.config import Config, ConfigError, validate
    for bad in (1.0, -0.1):
        with pytest.raises(ConfigError, match="pid_ema"):
            validate(Config(pid_ema=bad))


@pytest.mark.parametrize("kind", ["paper", "pid", "adam"])
def test_every_rule_holds_lambda_at_or_above_lambda_min(kind):
    from safehpo.config import Config
    from safehpo.lagrange import make_multiplier
    floored = make_multiplier(kind, 10.0, Config(lambda_min=0.15))
    plain = make_multiplier(kind, 10.0, Config())
    assert floored.value == 0.15 and plain.value == 0.0           # starts at the floor (lambda_init 0 < it)
    for cost in [50.0] * 3 + [0.0] * 40:                          # up, then far below the budget for long
        for m in (floored, plain):
            m.episode_end(cost)
            if kind == "adam":
                m.step()
        assert floored.value >= 0.15
    assert plain.value == 0.0 and floored.value == pytest.approx(0.15)
    if kind == "paper":                                           # above the floor it is the same rule
        a, b = GradientAscent(10.0, 0.1, init=1.0, relative=True, floor=0.15), GradientAscent(10.0, 0.1, init=1.0, relative=True)
        for cost in (20.0, 0.0, 5.0):
            assert a.episode_end(cost) == b.episode_end(cost)
        assert a.value == pytest.approx(1.0 + 0.1 * (1.0 - 1.0 - 0.5))


def test_pid_integral_term_with_a_floor_is_the_ascent_rule_with_that_floor():
    """Ki * I stays the ascent rule's lambda under lambda_min: off the floor at the first violation."""
    pid = PIDLagrangian(10.0, kp=0.0, ki=0.1, kd=0.0, relative=True, floor=0.15)
    ascent = GradientAscent(10.0, 0.1, relative=True, floor=0.15)
    for cost in [0.0] * 10 + [15.0] * 5 + [2.0] * 3 + [30.0]:
        assert pid.episode_end(cost) == pytest.approx(ascent.episode_end(cost))
    assert ascent.value > 0.15
    pid = PIDLagrangian(10.0, kp=0.1, ki=0.1, kd=0.01, relative=True, ema=0.9, floor=0.15)
    for cost in [0.0] * 10:
        pid.episode_end(cost)
    assert pid.value == 0.15 and pid.integral == pytest.approx(1.5)   # held at floor / Ki
    pid.episode_end(15.0)
    assert pid.integral == pytest.approx(1.5 + 0.5)  # rose from its floor at once (the P term may still hold lambda)


@pytest.mark.parametrize("value", ["nan", "inf", "-0.1"])
def test_lambda_min_must_be_a_finite_non_negative_number(value):
    from safehpo.config import Config, ConfigError, apply_overrides
    with pytest.raises(ConfigError, match="lambda_min"):
        apply_overrides(Config(), [f"lambda_min={value}"])


@pytest.mark.parametrize("kind", ["paper", "pid"])
def test_lambda_weight_reaches_the_rule(kind):
    from safehpo.config import Config
    from safehpo.lagrange import make_multiplier
    assert make_multiplier(kind, 10.0, Config()).by_length
    assert not make_multiplier(kind, 10.0, Config(lambda_weight="episode")).by_length
