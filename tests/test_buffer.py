"""The replay buffer's ring and its save and load, into a buffer of the same size or a larger one."""

import numpy as np
import pytest

from safehpo.buffer import ReplayBuffer


def add(buffer, i):
    """Transition i: obs [i + 1, -(i + 1)], cost 0.5 * i."""
    buffer.add([i + 1, -(i + 1)], [0.1 * i], float(i), 0.5 * i, [i + 2, -(i + 2)], False)


def filled(capacity, n):
    """A buffer of `capacity` after transitions 0 to n - 1."""
    buffer = ReplayBuffer(capacity, 2, 1)
    for i in range(n):
        add(buffer, i)
    return buffer


def stored(buffer):
    """The transition numbers the buffer holds, row by row."""
    return [int(v) - 1 for v in buffer.obs[:buffer.size, 0]]


def test_the_ring_keeps_the_latest_capacity_transitions():
    buffer = filled(5, 7)
    assert buffer.size == 5 and buffer.pos == 2
    assert stored(buffer) == [5, 6, 2, 3, 4]


@pytest.mark.parametrize("n", [3, 5, 7])
def test_a_buffer_loaded_into_one_of_its_size_keeps_its_layout(n):
    saved = filled(5, n)
    loaded = ReplayBuffer(5, 2, 1)
    loaded.load_state_dict(saved.state_dict())
    assert (loaded.pos, loaded.size) == (saved.pos, saved.size)
    for f in ReplayBuffer.FIELDS:
        np.testing.assert_array_equal(getattr(loaded, f), getattr(saved, f))
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
    a, b = saved.sample(8, rng_a), loaded.sample(8, rng_b)
    assert all((a[f] == b[f]).all() for f in ReplayBuffer.FIELDS)


@pytest.mark.parametrize("n", [3, 5, 7])
def test_a_buffer_loaded_into_a_larger_one_continues_after_its_newest_transition(n):
    """A full ring (n >= 5) goes in oldest first; new transitions follow and overwrite nothing, and
    no row the buffer samples from is unwritten."""
    saved = filled(5, n)
    held = sorted(stored(saved))
    larger = ReplayBuffer(9, 2, 1)
    larger.load_state_dict(saved.state_dict())
    assert stored(larger) == held
    new = list(range(n, n + 9 - len(held)))
    for i in new:
        add(larger, i)
    assert larger.size == 9
    assert stored(larger) == held + new
    np.testing.assert_allclose(larger.cost, 0.5 * np.array(stored(larger)))  # every field moved alike
    add(larger, new[-1] + 1)
    assert sorted(stored(larger)) == held[1:] + new + [new[-1] + 1]  # the oldest goes first


def test_a_buffer_does_not_load_into_a_smaller_one():
    with pytest.raises(ValueError, match="does not fit"):
        ReplayBuffer(4, 2, 1).load_state_dict(filled(5, 5).state_dict())
