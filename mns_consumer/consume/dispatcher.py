"""Fan a batch out to its queue's sinks, settle every message, and say which ones may be deleted.

A message is *settled*, and only then deletable, when either

* its receipt was accepted by every sink of the queue (already stored counts as accepted), or
* it went to the dead-letter sink: its body did not decode, or a sink rejected its receipt for good.

A sink that is unavailable is retried with exponential back-off for as long as it takes (nothing is
dead-lettered for an outage); meanwhile :attr:`Dispatcher.healthy` is cleared, which pauses the
queue's receiver, and the batch stays in flight with its visibility extended. Only the ``abandon``
event (the drain deadline) ends the wait, and then nothing of the batch is deleted: MNS hands the
messages out again later and their dedupe keys absorb the repeat.

Once a dispatch settles, the receipts every sink stored are counted (delivery outcomes, opt-outs),
each dedupe key once while the dispatcher remembers it (the last :data:`COUNTED_KEYS` keys): a
message redelivered after an abandoned dispatch was never counted, and one redelivered after a lost
delete is remembered. Beyond that window, across restarts, and between daemons sharing a queue, a
repeat counts again, so the counters are close to, not exactly, one per receipt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from mns_consumer.alicom.queue import ReceivedMessage
from mns_consumer.consume.backoff import Backoff
from mns_consumer.errors import DecodeError, SinkUnavailable
from mns_consumer.observe.events import Events
from mns_consumer.opt_out import OptOutMatcher
from mns_consumer.receipt_model import Receipt, Source
from mns_consumer.sinks.base import DeadLetter, DeadLetterSink, Sink, SinkResult
from mns_consumer.sinks.recent_keys import RecentKeys

DEAD_LETTER_SINK = "dead_letter"

COUNTED_KEYS = 20_000
"""Dedupe keys a dispatcher remembers as counted (about 2 MB), so a redelivered receipt counts once."""


@dataclass
class InFlight:
    """One received message while it is processed.

    Attributes:
        message: What MNS handed out.
        handle: The receipt handle to delete with; replaced when visibility is extended.
        receipt: The decoded receipt, or None when decoding failed.
        error: Why decoding failed.
    """

    message: ReceivedMessage
    handle: str
    receipt: Receipt | None = None
    error: DecodeError | None = None
    visible_until: float = 0.0
    """When MNS makes it visible again unless extended (the poller's clock); ``inf`` once it is gone."""


@dataclass
class Batch:
    """The messages of one receive, carried from receiver to dispatcher to deleter.

    Attributes:
        batch_id: Sequence number within the poller.
        messages: The messages, in the order MNS returned them.
        received_at: ``time.monotonic()`` of the receive.
        visibility_seconds: How long MNS keeps them invisible from ``visible_since``.
        visible_since: ``time.monotonic()`` of the receive or of the last visibility extension.
        lock: Held while a handle is replaced or used, so deletes never race extensions.
        settled: Set once dispatched: the messages to delete (possibly none).
        abandoned: Set when the batch is given up (nothing is deleted).
        receiver: Which of the queue's receivers took it (its in-flight slot is that receiver's).
        released: Set once it was held longer than ``max_hold_seconds`` and its visibility left to lapse.
    """

    batch_id: int
    messages: list[InFlight]
    received_at: float
    visibility_seconds: float
    visible_since: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    settled: list[InFlight] | None = None
    abandoned: bool = False
    receiver: int = 0
    released: bool = False


class Dispatcher:
    """Writes batches of one queue to that queue's sinks and the dead-letter sink."""

    def __init__(
        self,
        queue: str,
        message_type: str,
        sinks: Sequence[Sink],
        dead_letter: DeadLetterSink,
        events: Events,
        abandon: threading.Event,
        *,
        retry_initial_seconds: float = 0.5,
        retry_max_seconds: float = 30.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        source: Source = "mns",
        opt_out: OptOutMatcher | None = None,
    ) -> None:
        self.queue = queue
        # Dead letters of other sources (HTTP push) carry no MNS message id or dequeue count.
        self.source: Source = source
        self.message_type = message_type
        self.sinks = list(sinks)
        self.dead_letter = dead_letter
        self.events = events
        self.abandon = abandon
        self.healthy = threading.Event()
        self.healthy.set()
        self._backoff = Backoff(retry_initial_seconds, retry_max_seconds)
        self._now = now
        # Replies are re-read with the configured keywords (decoders know only the defaults).
        self._opt_out = opt_out
        self._counted = RecentKeys(COUNTED_KEYS)

    def dispatch(self, batch: Batch) -> list[InFlight] | None:
        """Store a batch and return the messages that may now be deleted.

        Returns:
            The settled messages, or None when the batch was abandoned (a sink bug, or the drain
            deadline passed while a sink was down): then nothing may be deleted.
        """
        return list(batch.messages) if self.dispatch_together([batch]) else None

    def dispatch_together(self, batches: Sequence[Batch]) -> bool:
        """Store several batches with one write per sink, so they share its commit and fsync.

        Returns:
            True when every message of every batch is settled and may be deleted; False when they were
            abandoned together (a sink bug, or the drain deadline passed while a sink was down).
        """
        messages = [item for batch in batches for item in batch.messages]
        letters: list[tuple[InFlight, DeadLetter]] = []
        for item in messages:
            if item.error is not None:
                self.events.decode_failed(
                    self.queue, self.message_type, item.message.message_id, item.error.field, item.error.reason
                )
                letters.append((item, self._letter(item, f"undecodable: {item.error}", None)))

        unique: dict[str, Receipt] = {}
        for item in messages:
            if item.receipt is not None:
                item.receipt = self._with_opt_out(item.receipt)
                unique.setdefault(item.receipt.dedupe_key, item.receipt)
        refused: dict[str, tuple[str, str]] = {}
        for sink in self.sinks:
            outcome = self._write_until_stored(sink, list(unique.values()))
            if outcome is None:
                return False
            for key, reason in outcome.items():
                refused.setdefault(key, (sink.name, reason))

        for item in messages:
            if item.receipt is not None and item.receipt.dedupe_key in refused:
                sink_name, reason = refused[item.receipt.dedupe_key]
                self.events.receipt_rejected(self.queue, self.message_type, item.message.message_id, sink_name, reason)
                letters.append((item, self._letter(item, f"rejected by sink {sink_name!r}: {reason}", sink_name)))
        if letters and not self._dead_letter_until_stored([letter for _, letter in letters]):
            return False
        self._count_stored([receipt for key, receipt in unique.items() if key not in refused])
        return True

    def _with_opt_out(self, receipt: Receipt) -> Receipt:
        """A reply flagged by the configured matcher (the decoders applied the default keywords)."""
        if self._opt_out is None or receipt.kind != "reply":
            return receipt
        flag = self._opt_out(receipt.content)
        return receipt if flag == receipt.opt_out else replace(receipt, opt_out=flag)

    def _count_stored(self, receipts: list[Receipt]) -> None:
        """Count what every sink stored, skipping the dedupe keys counted before (see the module docstring)."""
        fresh = set(self._counted.unseen(receipt.dedupe_key for receipt in receipts))
        if fresh:
            self._counted.add_all(fresh)
            self.events.receipts_stored(self.queue, [receipt for receipt in receipts if receipt.dedupe_key in fresh])

    def _write_until_stored(self, sink: Sink, receipts: list[Receipt]) -> dict[str, str] | None:
        """Write until every receipt is accepted or rejected; returns the rejections, None if abandoned."""

        def written(result: SinkResult, accepted: list[Receipt], rejected: dict[str, str], seconds: float) -> None:
            self.events.sink_written(self.queue, sink.name, len(result.accepted), len(result.rejected), seconds)

        try:
            outcome = write_until_settled(
                sink, receipts, lambda attempt, error: self._back_off(sink.name, attempt, error), written
            )
        except Exception as exc:  # noqa: BLE001  (a sink bug costs only this batch; see STYLE.md 7)
            self.events.sink_broken(self.queue, sink.name, exc)
            return None
        if outcome is None:
            return None
        rejected, attempts = outcome
        if attempts > 1:
            self.events.sink_recovered(self.queue, sink.name, attempts)
        self.healthy.set()
        return rejected

    def _dead_letter_until_stored(self, letters: list[DeadLetter]) -> bool:
        attempt = 0
        while True:
            attempt += 1
            try:
                self.dead_letter.write(letters)
            except SinkUnavailable as exc:
                if not self._back_off(DEAD_LETTER_SINK, attempt, exc):
                    return False
                continue
            except Exception as exc:  # noqa: BLE001  (as for sinks: the batch is abandoned, nothing lost)
                self.events.sink_broken(self.queue, DEAD_LETTER_SINK, exc)
                return False
            self.events.dead_lettered(self.queue, len(letters))
            self.healthy.set()
            return True

    def _back_off(self, sink: str, attempt: int, error: SinkUnavailable) -> bool:
        """Wait before the next attempt; False when the batch must be abandoned instead."""
        self.healthy.clear()
        delay = self._backoff.delay(attempt, error.retry_after_seconds)
        self.events.sink_retry(self.queue, sink, attempt, error.reason, round(delay, 3))
        return not self.abandon.wait(delay)

    def _letter(self, item: InFlight, reason: str, sink: str | None) -> DeadLetter:
        return DeadLetter(
            message_type=self.message_type,
            source=self.source,
            queue=self.queue,
            raw=item.message.body.encode("utf-8"),
            reason=reason,
            failed_at=self._now(),
            message_id=item.message.message_id if self.source == "mns" else None,
            dequeue_count=item.message.dequeue_count if self.source == "mns" else None,
            sink=sink,
            dedupe_key=item.receipt.dedupe_key if item.receipt else None,
        )


def write_until_settled(
    sink: Sink,
    receipts: Sequence[Receipt],
    back_off: Callable[[int, SinkUnavailable], bool],
    written: Callable[[SinkResult, list[Receipt], dict[str, str], float], None],
) -> tuple[dict[str, str], int] | None:
    """Write receipts to one sink until each is accepted or rejected: the daemon's and backfill's rule.

    An unavailable sink, or one that answers without settling every receipt (a contract breach), is
    treated alike: ``back_off(attempt, error)`` waits before the next try, or returns False to give up.
    Only the receipts still pending are written again.

    Args:
        sink: The sink.
        receipts: The receipts, one per dedupe key.
        back_off: Waits before the next attempt; False abandons the write.
        written: Called after each answer with the sink's result, the receipts it settled as accepted
            and as rejected (key to reason) in that answer, and the seconds the write took.

    Returns:
        The rejections (key to reason) and the number of attempts, or None when ``back_off`` gave up.
        Errors other than :class:`SinkUnavailable` propagate.
    """
    pending = {receipt.dedupe_key: receipt for receipt in receipts}
    rejected: dict[str, str] = {}
    attempt = 0
    while pending:
        attempt += 1
        started = time.monotonic()
        try:
            result = sink.write(list(pending.values()))
        except SinkUnavailable as exc:
            if not back_off(attempt, exc):
                return None
            continue
        accepted = [receipt for key in result.accepted if (receipt := pending.pop(key, None)) is not None]
        refused = {key: reason for key, reason in result.rejected.items() if pending.pop(key, None) is not None}
        rejected.update(refused)
        written(result, accepted, refused, time.monotonic() - started)
        if pending:
            # The sink answered without settling some receipts: treated as a transient failure, so
            # nothing unconfirmed counts as stored.
            breach = SinkUnavailable(sink.name, f"{len(pending)} receipt(s) neither accepted nor rejected")
            if not back_off(attempt, breach):
                return None
    return rejected, attempt
