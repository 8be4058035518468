"""The shared back-off: doubling delays with jitter, and a server's retry-after honoured up to five minutes."""

from __future__ import annotations

from tenacity import Retrying, retry_if_exception_type

from mns_consumer.errors import SinkUnavailable
from mns_consumer.retry import MAX_RETRY_AFTER_SECONDS, Backoff


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


def test_as_a_tenacity_wait_it_honours_the_failed_attempts_retry_after() -> None:
    """A tenacity loop with ``wait=Backoff`` waits what the error's retry_after_seconds asks, else the back-off."""
    sleeps: list[float] = []
    errors = iter([SinkUnavailable("s", "throttled", retry_after_seconds=20.0), SinkUnavailable("s", "down")])

    def write() -> str:
        error = next(errors, None)
        if error is not None:
            raise error
        return "stored"

    retrying = Retrying(wait=Backoff(0.5, 4.0), sleep=sleeps.append, retry=retry_if_exception_type(SinkUnavailable))
    assert retrying(write) == "stored"
    assert sleeps[0] == 20.0
    assert 1.0 <= sleeps[1] <= 1.5
