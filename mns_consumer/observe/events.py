"""Every notable occurrence of the consumer is one method here, which logs it and counts it together.

Logs and counters therefore cannot drift apart, and tests can assert on either. Event names are
constant dotted strings; the data travels in keys, never formatted into the name. Phone numbers and
other receipt contents are never passed here except as the masked ``phone_number`` key, which the
logging pipeline masks; counters carry only queue, message type, sink and stage.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import structlog

log = structlog.get_logger("mns_consumer.consume")


class Events:
    """Logs and counts what the pollers, dispatcher and supervisor do.

    Attributes:
        totals: Counts by (event name, queue) for the summary line at exit and for tests.
    """

    def __init__(self) -> None:
        self.totals: Counter[tuple[str, str]] = Counter()
        self._said_once: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def _count(self, name: str, queue: str, amount: int = 1) -> None:
        with self._lock:
            self.totals[(name, queue)] += amount

    def total(self, name: str, queue: str | None = None) -> int:
        """How often ``name`` happened (for one queue, or in all)."""
        with self._lock:
            return sum(n for (event, q), n in self.totals.items() if event == name and (queue is None or q == queue))

    def once(self, name: str, queue: str) -> bool:
        """True the first time a (name, queue) pair is asked about: for warnings said only once."""
        with self._lock:
            if (name, queue) in self._said_once:
                return False
            self._said_once.add((name, queue))
            return True

    # -- receiving -------------------------------------------------------------------------------

    def batch_received(
        self, queue: str, message_type: str, batch_id: int, count: int, oldest_age_seconds: float
    ) -> None:
        """A receive returned ``count`` messages."""
        self._count("received", queue, count)
        log.debug(
            "batch.received",
            queue=queue,
            message_type=message_type,
            batch_id=batch_id,
            count=count,
            oldest_age_seconds=round(oldest_age_seconds, 3),
        )

    def receive_failed(self, queue: str, message_type: str, code: str, retry_in_seconds: float) -> None:
        """A receive failed; the poller backs off."""
        self._count("receive_failed", queue)
        log.warning(
            "receive.failed", queue=queue, message_type=message_type, code=code, retry_in_seconds=retry_in_seconds
        )

    def queue_missing(self, queue: str, message_type: str, retry_in_seconds: float) -> None:
        """MNS says the queue does not exist (wrong name, or a queue asleep after months of no sends)."""
        self._count("receive_failed", queue)
        log.error(
            "queue.not_found",
            queue=queue,
            message_type=message_type,
            retry_in_seconds=retry_in_seconds,
            hint="check queue_name against the SMS console; a queue idle for 3 months sleeps until sends resume",
        )

    def auth_refused(self, queue: str, message_type: str, code: str, operation: str) -> None:
        """MNS refused the token; it is refreshed at once."""
        self._count("auth_refused", queue)
        log.warning("token.refused_by_mns", queue=queue, message_type=message_type, code=code, operation=operation)

    def token_failed(self, queue: str, message_type: str, code: str, retry_in_seconds: float) -> None:
        """No valid token could be had; the poller waits."""
        self._count("token_failed", queue)
        log.error(
            "token.unavailable", queue=queue, message_type=message_type, code=code, retry_in_seconds=retry_in_seconds
        )

    # -- decoding and sinks ----------------------------------------------------------------------

    def decode_failed(self, queue: str, message_type: str, message_id: str, reason: str) -> None:
        """A body did not decode; it goes to the dead-letter sink."""
        self._count("decode_failed", queue)
        log.warning("receipt.undecodable", queue=queue, message_type=message_type, message_id=message_id, reason=reason)

    def sink_written(self, queue: str, sink: str, accepted: int, rejected: int, seconds: float) -> None:
        """A sink accepted (and maybe rejected) part of a batch."""
        self._count(f"accepted:{sink}", queue, accepted)
        log.debug(
            "sink.written", queue=queue, sink=sink, accepted=accepted, rejected=rejected, seconds=round(seconds, 4)
        )

    def sink_retry(self, queue: str, sink: str, attempt: int, reason: str, retry_in_seconds: float) -> None:
        """A sink is unavailable; the batch waits and receiving pauses."""
        self._count("sink_failed", queue)
        log.warning(
            "sink.unavailable",
            queue=queue,
            sink=sink,
            attempt=attempt,
            reason=reason,
            retry_in_seconds=retry_in_seconds,
        )

    def sink_recovered(self, queue: str, sink: str, attempts: int) -> None:
        """A sink that was failing accepted the batch."""
        log.info("sink.recovered", queue=queue, sink=sink, attempts=attempts)

    def sink_broken(self, queue: str, sink: str, error: BaseException) -> None:
        """A sink raised something other than SinkUnavailable: a bug; the batch is abandoned."""
        self._count("sink_failed", queue)
        log.critical("sink.bug", queue=queue, sink=sink, error=repr(error), exc_info=error)

    def receipt_rejected(self, queue: str, message_type: str, message_id: str, sink: str, reason: str) -> None:
        """A sink rejected a receipt permanently; it goes to the dead-letter sink."""
        self._count("rejected", queue)
        log.warning(
            "receipt.rejected", queue=queue, message_type=message_type, message_id=message_id, sink=sink, reason=reason
        )

    def dead_lettered(self, queue: str, count: int) -> None:
        """Messages were stored in the dead-letter sink."""
        self._count("dead_lettered", queue, count)
        log.info("receipts.dead_lettered", queue=queue, count=count)

    # -- deleting and visibility -----------------------------------------------------------------

    def receipts_deleted(self, queue: str, count: int, batch_id: int) -> None:
        """Messages every sink acknowledged were deleted from MNS."""
        self._count("deleted", queue, count)
        log.debug("receipts.deleted", queue=queue, count=count, batch_id=batch_id)

    def delete_failed(self, queue: str, count: int, code: str) -> None:
        """Some deletes failed; those messages come back and their dedupe keys absorb them."""
        self._count("delete_failed", queue, count)
        log.warning("receipts.delete_failed", queue=queue, count=count, code=code)

    def visibility_extended(self, queue: str, count: int, seconds: int) -> None:
        """A slow batch's messages were kept invisible longer."""
        self._count("visibility_extended", queue, count)
        log.info("visibility.extended", queue=queue, count=count, seconds=seconds)

    def visibility_not_allowed(self, queue: str, code: str) -> None:
        """The queue token may not change visibility: said once; duplicates are then left to dedupe."""
        self._count("visibility_denied", queue)
        if self.once("visibility_denied", queue):
            log.warning(
                "visibility.not_allowed",
                queue=queue,
                code=code,
                consequence="slow batches may be redelivered; dedupe keys absorb the duplicates",
            )

    # -- life cycle ------------------------------------------------------------------------------

    def poller_started(self, queue: str, message_type: str) -> None:
        """A poller started (or restarted)."""
        log.info("poller.started", queue=queue, message_type=message_type)

    def poller_crashed(self, queue: str, message_type: str, error: BaseException, restart_in_seconds: float) -> None:
        """A poller died of an unexpected error; it is restarted after a back-off."""
        self._count("poller_restarts", queue)
        log.error(
            "poller.crashed",
            queue=queue,
            message_type=message_type,
            error=repr(error),
            restart_in_seconds=restart_in_seconds,
            exc_info=error,
        )

    def drain(self, phase: str, **fields: Any) -> None:
        """A step of the shutdown sequence."""
        log.info(f"shutdown.{phase}", **fields)
