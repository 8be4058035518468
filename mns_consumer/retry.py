"""Jittered exponential back-off: the one retry idiom, as a tenacity wait or as plain arithmetic.

A call retried until it works is a tenacity loop with ``wait=Backoff(...)``; a loop that does other
work between tries (a receiver, a restart timer) asks :meth:`Backoff.delay` and waits on its stop
event itself, so a stop always cuts the wait short.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tenacity import RetryCallState

MAX_RETRY_AFTER_SECONDS = 300.0
"""The longest wait a server's retry-after may impose (a sink's or Alibaba's throttling answer)."""


@dataclass(frozen=True)
class Backoff:
    """Delays that double from ``initial_seconds`` up to ``max_seconds``, with up to ``initial`` of jitter."""

    initial_seconds: float
    max_seconds: float

    def delay(self, attempt: int, retry_after_seconds: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (from 1); a retry-after is honoured up to 5 min."""
        exponential = self.initial_seconds * (1 << min(attempt - 1, 64))
        delay = min(exponential + random.uniform(0, self.initial_seconds), self.max_seconds)
        if retry_after_seconds is not None:
            delay = max(delay, min(retry_after_seconds, MAX_RETRY_AFTER_SECONDS))
        return delay

    def __call__(self, state: RetryCallState) -> float:
        """As tenacity's ``wait``: the failed attempt's ``retry_after_seconds``, if it has one, is honoured."""
        error = state.outcome.exception() if state.outcome is not None else None
        return self.delay(state.attempt_number, getattr(error, "retry_after_seconds", None))


def failed_attempt(state: RetryCallState) -> tuple[BaseException, float]:
    """In tenacity's ``before_sleep``: the attempt's exception and the seconds until the next one."""
    error = state.outcome.exception() if state.outcome is not None else None
    assert error is not None  # noqa: S101  (tenacity calls before_sleep only after a failure)
    assert state.next_action is not None  # noqa: S101  (and with the next wait set)
    return error, state.next_action.sleep
