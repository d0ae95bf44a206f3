"""The batching policy on its own: plain calls with hand-picked times, no threads."""

import pytest

from runtime.batching import BatchPolicy


def test_streams_take_turns_at_the_front():
    policy = BatchPolicy(batch_size=2, timeout_ms=10.0)
    streams = ["a", "b", "c"]
    fronts = [policy.order(streams, turn)[0] for turn in range(6)]
    assert fronts == ["a", "b", "c", "a", "b", "c"]  # each stream leads one batch in three
    assert policy.order(streams, 4) == ["b", "c", "a"]
    assert policy.order([], 3) == []


def test_a_batch_goes_when_full_or_when_its_first_frame_has_waited_the_timeout():
    policy = BatchPolicy(batch_size=4, timeout_ms=20.0)
    assert not policy.send_now(taken=0, running=3, first_at=None, now=5.0)  # nothing to send
    assert policy.send_now(taken=3, running=3, first_at=5.0, now=5.0)  # one frame from every stream
    assert not policy.send_now(taken=2, running=3, first_at=5.0, now=5.019)
    assert policy.send_now(taken=2, running=3, first_at=5.0, now=5.020)  # the timeout
    assert policy.send_now(taken=4, running=9, first_at=5.0, now=5.0)  # batch_size reached
    assert policy.room(3) and not policy.room(4)


def test_the_wait_is_what_is_left_of_the_timeout():
    policy = BatchPolicy(batch_size=2, timeout_ms=30.0)
    assert policy.wait_s(first_at=None, now=1.0, idle_s=0.05) == 0.05
    assert policy.wait_s(first_at=1.0, now=1.01, idle_s=0.05) == pytest.approx(0.02)
    assert policy.wait_s(first_at=1.0, now=2.0, idle_s=0.05) == 0.0


@pytest.mark.parametrize("size, timeout", [(0, 10.0), (2, -1.0)])
def test_bad_settings_are_refused(size, timeout):
    with pytest.raises(ValueError):
        BatchPolicy(size, timeout)
