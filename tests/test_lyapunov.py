"""The Lyapunov filter's accept/reject logic (Algorithm 3, eq. 14-15)."""

import pytest

from safehpo.lyapunov import FilterAudit, accepts, epsilon_l, filter_action


def test_epsilon_l_eq15():
    assert epsilon_l(budget_discounted=10.0, qc_start_ref=4.0, gamma=0.99) == pytest.approx(0.06)


def test_accepts_eq14():
    assert accepts(5.0, 4.0, 1.0)
    assert not accepts(5.0001, 4.0, 1.0)


def test_first_step_that_passes_is_executed_and_the_start_is_never_tested():
    """Algorithm 3: one leapfrog step, then the test; a_0 itself is not tested."""
    audit = FilterAudit()
    tested = []
    out = filter_action(0, advance=lambda c: c + 1, cost_of=lambda c: tested.append(c) or 1.0,
                        qc_ref=1.0, eps_l=0.0, k_max=10, audit=audit)
    assert out == 1 and tested == [1]
    assert (audit.rejected, audit.leapfrog_steps, audit.unsafe_fallbacks, audit.filtered_steps) == (0, 1, 0, 1)


def test_rejections_counted_until_a_candidate_passes():
    audit = FilterAudit()
    # candidates 1, 2, ... have Q_C = 10 - 2 c; the test passes once Q_C - 5 <= 0.5, i.e. c = 3
    out = filter_action(0, advance=lambda c: c + 1, cost_of=lambda c: 10.0 - 2 * c,
                        qc_ref=5.0, eps_l=0.5, k_max=10, audit=audit)
    assert out == 3
    assert (audit.rejected, audit.leapfrog_steps, audit.unsafe_fallbacks) == (2, 3, 0)


def test_stops_at_k_max_and_falls_back_to_the_lowest_cost_candidate():
    audit = FilterAudit()
    costs = {1: 9.0, 2: 7.0, 3: 8.0}
    out = filter_action(0, advance=lambda c: c + 1, cost_of=lambda c: costs[c],
                        qc_ref=0.0, eps_l=1.0, k_max=3, audit=audit)
    assert out == 2  # lowest Q_C seen
    assert (audit.rejected, audit.leapfrog_steps, audit.unsafe_fallbacks) == (3, 3, 1)
    # the paper's fallback: the last candidate, a_{k_max}, with the same counts
    out = filter_action(0, advance=lambda c: c + 1, cost_of=lambda c: costs[c],
                        qc_ref=0.0, eps_l=1.0, k_max=3, audit=audit, fallback="last")
    assert out == 3
    assert (audit.rejected, audit.leapfrog_steps, audit.unsafe_fallbacks) == (6, 6, 2)
    audit.reset()
    assert audit == FilterAudit()
