"""The shared back-off: doubling delays with jitter, and a server's retry-after honoured up to five minutes."""

from __future__ import annotations

from mns_consumer.consume.backoff import MAX_RETRY_AFTER_SECONDS, Backoff


def test_delays_double_up_to_the_maximum_with_at_most_the_initial_delay_of_jitter() -> None:
    """Attempt n waits initial * 2**(n-1) plus up to ``initial`` of jitter, never beyond the maximum."""
    backoff = Backoff(0.5, 4.0)
    for attempt, base in ((1, 0.5), (2, 1.0), (3, 2.0)):
        assert base <= backoff.delay(attempt) <= base + 0.5
    assert backoff.delay(10) <= 4.0


def test_a_retry_after_lengthens_the_wait_but_never_past_five_minutes() -> None:
    """A longer retry-after wins, a shorter one changes nothing, and a huge one is capped."""
    backoff = Backoff(0.5, 4.0)
    assert backoff.delay(1, 20.0) == 20.0
    assert backoff.delay(1, 0.01) <= 1.0
    assert backoff.delay(1, 86400.0) == MAX_RETRY_AFTER_SECONDS
