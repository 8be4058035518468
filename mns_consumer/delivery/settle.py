"""Writing to one sink until it settles every receipt: the retry rule every source shares.

An unavailable sink, or one that answers without settling every receipt (a contract breach), is
retried alike with jittered back-off, for as long as :class:`SinkRetry` allows: the daemon until its
drain deadline, a backfill a fixed number of tries. Nothing unconfirmed ever counts as stored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_never

from mns_consumer.errors import Abandoned, SinkUnavailable
from mns_consumer.receipt_model import Receipt
from mns_consumer.retry import Backoff, failed_attempt
from mns_consumer.sinks.base import Sink, SinkResult

DEAD_LETTER_SINK = "dead_letter"
"""The name the dead-letter sink goes by in retry events."""


@dataclass(frozen=True)
class SinkRetry:
    """How writes to unavailable sinks are retried.

    Attributes:
        backoff: The delays; a sink's ``retry_after_seconds`` is honoured.
        stop: Set to abandon at the next wait (the drain deadline, an interrupted backfill).
        on_retry: Called before each wait with the sink's name, the failed attempt, the error and the delay.
        attempts: Tries before the last :class:`SinkUnavailable` is raised; None retries until ``stop``.
    """

    backoff: Backoff
    stop: threading.Event
    on_retry: Callable[[str, int, SinkUnavailable, float], None]
    attempts: int | None = None

    def retrying(self, sink: str) -> Retrying:
        """A tenacity loop retrying :class:`SinkUnavailable` from ``sink``.

        Raises (from the loop): :class:`Abandoned` when ``stop`` is set during a wait; the last
        :class:`SinkUnavailable` after ``attempts`` tries; anything else the call raises, at once.
        """

        def before_sleep(state: RetryCallState) -> None:
            error, delay = failed_attempt(state)
            assert isinstance(error, SinkUnavailable)  # noqa: S101  (the only exception retried)
            self.on_retry(sink, state.attempt_number, error, delay)

        return Retrying(
            retry=retry_if_exception_type(SinkUnavailable),
            wait=self.backoff,
            stop=stop_never if self.attempts is None else stop_after_attempt(self.attempts),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )

    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise Abandoned


def write_until_settled(
    sink: Sink,
    receipts: Sequence[Receipt],
    retry: SinkRetry,
    written: Callable[[SinkResult, list[Receipt], dict[str, str], float], None],
) -> tuple[dict[str, str], int]:
    """Write receipts (one per dedupe key) to one sink until each is accepted or rejected.

    Only the receipts still pending are written again. After each answer ``written`` gets the sink's
    result, the receipts that answer accepted and rejected, and the seconds the write took.

    Returns:
        The rejections (dedupe key to reason) and the number of attempts.

    Raises:
        Abandoned: See :meth:`SinkRetry.retrying`.
        SinkUnavailable: See :meth:`SinkRetry.retrying`.
    """
    pending = {receipt.dedupe_key: receipt for receipt in receipts}
    rejected: dict[str, str] = {}
    attempts = 0

    def write_pending() -> None:
        nonlocal attempts
        attempts += 1
        started = time.monotonic()
        result = sink.write(list(pending.values()))
        accepted = [receipt for key in result.accepted if (receipt := pending.pop(key, None)) is not None]
        refused = {key: reason for key, reason in result.rejected.items() if pending.pop(key, None) is not None}
        rejected.update(refused)
        written(result, accepted, refused, time.monotonic() - started)
        if pending:
            raise SinkUnavailable(sink.name, f"{len(pending)} receipt(s) neither accepted nor rejected")

    if pending:
        retry.retrying(sink.name)(write_pending)
    return rejected, attempts
