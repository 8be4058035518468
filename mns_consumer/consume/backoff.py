"""Exponential back-off with jitter, from tenacity's wait strategy, for loops that retry on their own."""

from __future__ import annotations

from tenacity import RetryCallState, Retrying, wait_exponential_jitter

MAX_RETRY_AFTER_SECONDS = 300.0
"""The longest wait a server's retry-after may impose (a sink's or Alibaba's throttling answer)."""


class Backoff:
    """Delays that double from ``initial_seconds`` up to ``max_seconds``, with up to ``initial`` of jitter.

    The loops that use it wait with ``event.wait(delay)``, never ``time.sleep``, so a stop cuts the
    wait short.
    """

    def __init__(self, initial_seconds: float = 0.5, max_seconds: float = 30.0) -> None:
        self._wait = wait_exponential_jitter(multiplier=initial_seconds, max=max_seconds, jitter=initial_seconds)
        self._retrying = Retrying(wait=self._wait)

    def delay(self, attempt: int, retry_after_seconds: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (attempts count from 1).

        A ``retry_after_seconds`` the other side asked for is honoured: never less, but never more than
        :data:`MAX_RETRY_AFTER_SECONDS`.
        """
        state = RetryCallState(retry_object=self._retrying, fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        delay = float(self._wait(state))
        if retry_after_seconds is not None:
            delay = max(delay, min(retry_after_seconds, MAX_RETRY_AFTER_SECONDS))
        return delay
