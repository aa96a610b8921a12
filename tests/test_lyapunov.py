"""The Lyapunov filter's accept/reject logic (Algorithm 3, eq. 14-15)."""

import pytest

from safehpo.lyapunov import FilterAudit, accepts, epsilon_l, filter_action


def test_epsilon_l_eq15():
    assert epsilon_l(budget_discounted=10.0, qc_start_ref=4.0, gamma=0.99) == pytest.approx(0.06)


def test_accepts_eq14():
    assert accepts(5.0, 4.0, 1.0)
    assert not accepts(5.0001, 4.0, 1.0)


def test_safe_action_accepted_without_any_leapfrog_step():
    audit = FilterAudit()
    advanced = []
    out = filter_action(0.0, cost_of=lambda c: 1.0, advance=lambda c: advanced.append(c) or c + 1,
                        qc_ref=1.0, eps_l=0.0, k_max=10, audit=audit)
    assert out == 0.0 and advanced == []
    assert (audit.rejected, audit.leapfrog_steps, audit.unsafe_fallbacks, audit.filtered_steps) == (0, 0, 0, 1)


def test_rejections_counted_until_a_candidate_passes():
    audit = FilterAudit()
    # candidates 0, 1, 2, ... have Q_C = 10 - 2 c; the test passes once Q_C - 5 <= 0.5, i.e. c = 3
    out = filter_action(0, cost_of=lambda c: 10.0 - 2 * c, advance=lambda c: c + 1,
                        qc_ref=5.0, eps_l=0.5, k_max=10, audit=audit)
    assert out == 3
    assert (audit.rejected, audit.leapfrog_steps, audit.unsafe_fallbacks) == (3, 3, 0)


def test_stops_at_k_max_and_falls_back_to_the_lowest_cost_candidate():
    audit = FilterAudit()
    costs = {0: 9.0, 1: 7.0, 2: 8.0, 3: 9.5}
    out = filter_action(0, cost_of=lambda c: costs[c], advance=lambda c: c + 1,
                        qc_ref=0.0, eps_l=1.0, k_max=3, audit=audit)
    assert out == 1  # lowest Q_C seen
    assert (audit.rejected, audit.leapfrog_steps, audit.unsafe_fallbacks) == (4, 3, 1)
    audit.reset()
    assert audit == FilterAudit()
