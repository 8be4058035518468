"""Fan items out to a source's sinks and settle every one: stored everywhere, or dead-lettered.

Settled, an item may be let go of by its source (deleted from MNS, removed from the spool): every sink
accepted its receipt (already stored counts), or it went to the dead-letter sink (its body did not
decode, or a sink rejected it for good). An unavailable sink is retried for as long as it takes, with
:attr:`Dispatcher.healthy` cleared so the source pauses; only ``abandon`` (the drain deadline) ends the
wait, and then nothing of the call is settled: the items come again and their dedupe keys absorb it.

Stored receipts are counted once per dedupe key while it is remembered (the last :data:`COUNTED_KEYS`),
so a redelivery after a lost delete does not count twice (across restarts: close to once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TypeVar

from mns_consumer.delivery.settle import DEAD_LETTER_SINK, SinkRetry, write_until_settled
from mns_consumer.errors import Abandoned, DecodeError, SinkUnavailable
from mns_consumer.observe.events import Events
from mns_consumer.opt_out import OptOutMatcher
from mns_consumer.receipt_model import Receipt, Source
from mns_consumer.retry import Backoff
from mns_consumer.sinks.base import DeadLetter, DeadLetterSink, Sink, SinkResult
from mns_consumer.sinks.recent_keys import RecentKeys

COUNTED_KEYS = 20_000
"""Dedupe keys a dispatcher remembers as counted (about 2 MB), so a redelivered receipt counts once."""

T = TypeVar("T")


@dataclass(frozen=True)
class Item:
    """One message a source hands over: a decoded receipt, or a body that did not decode and why.

    Attributes:
        raw: The body exactly as the source received it (what a dead letter keeps).
        ref: Names it in log events: the MNS MessageId (also kept in dead letters), or a push's
            ``<spool entry>.<index>``.
        receipt: The decoded receipt; None when decoding failed (then ``error`` says why).
        dequeue_count: How often MNS delivered it, for dead letters; None for other sources.
    """

    raw: bytes
    ref: str
    receipt: Receipt | None = None
    error: DecodeError | None = None
    dequeue_count: int | None = None


class Dispatcher:
    """Writes one source's items (a queue, a push route, a backfill) to its sinks and the dead-letter sink.

    ``sink_attempts`` bounds the tries of an unavailable sink (then :class:`SinkUnavailable` is raised);
    None retries until ``abandon``. A backfill overrides the event methods to log and count as its own.
    """

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
        sink_attempts: int | None = None,
    ) -> None:
        self.queue = queue
        self.source: Source = source
        self.message_type = message_type
        self.sinks = list(sinks)
        self.dead_letter = dead_letter
        self.events = events
        self.abandon = abandon
        self.healthy = threading.Event()
        self.healthy.set()
        backoff = Backoff(retry_initial_seconds, retry_max_seconds)
        self._retry = SinkRetry(backoff, abandon, self._on_retry, attempts=sink_attempts)
        self._now = now
        # Replies are re-read with the configured keywords (decoders know only the defaults).
        self._opt_out = opt_out
        self._counted = RecentKeys(COUNTED_KEYS)

    def dispatch(self, items: Sequence[Item]) -> bool:
        """Store items with one write per sink (batches that queued up share its commit and fsync).

        Returns:
            True when every item is settled; False when all were abandoned (a sink bug, or the drain
            deadline passed while a sink was down): then the source must let go of none.
        """
        letters: list[DeadLetter] = []
        unique: dict[str, Receipt] = {}
        for item in items:
            if item.error is not None:
                self.events.decode_failed(self.queue, self.message_type, item.ref, item.error.field, item.error.reason)
                letters.append(self._letter(item, f"undecodable: {item.error}", None))
            if item.receipt is not None:
                unique.setdefault(item.receipt.dedupe_key, self._with_opt_out(item.receipt))
        refused: dict[str, tuple[str, str]] = {}
        try:
            for sink in self.sinks:
                for key, reason in self._write(sink, list(unique.values())).items():
                    refused.setdefault(key, (sink.name, reason))
            for item in items:
                if item.receipt is not None and item.receipt.dedupe_key in refused:
                    sink_name, reason = refused[item.receipt.dedupe_key]
                    self._rejected(item, sink_name, reason)
                    letters.append(self._letter(item, f"rejected by sink {sink_name!r}: {reason}", sink_name))
            if letters:
                self._guarded(
                    DEAD_LETTER_SINK, lambda: self._retry.retrying(DEAD_LETTER_SINK)(self.dead_letter.write, letters)
                )
                self._dead_lettered(len(letters))
                self.healthy.set()
        except Abandoned:
            return False
        self._count_stored([receipt for key, receipt in unique.items() if key not in refused])
        return True

    def _write(self, sink: Sink, receipts: list[Receipt]) -> dict[str, str]:
        def written(result: SinkResult, accepted: list[Receipt], rejected: dict[str, str], seconds: float) -> None:
            self.events.sink_written(self.queue, sink.name, len(result.accepted), len(result.rejected), seconds)

        rejected, attempts = self._guarded(sink.name, lambda: write_until_settled(sink, receipts, self._retry, written))
        if attempts > 1:
            self.events.sink_recovered(self.queue, sink.name, attempts)
        self.healthy.set()
        return rejected

    def _guarded(self, sink: str, call: Callable[[], T]) -> T:
        """A sink bug costs only this call (STYLE.md 7): logged, then abandoned like a drain."""
        try:
            return call()
        except (Abandoned, SinkUnavailable):
            raise
        except Exception as exc:
            self.events.sink_broken(self.queue, sink, exc)
            raise Abandoned from exc

    def _rejected(self, item: Item, sink: str, reason: str) -> None:
        self.events.receipt_rejected(self.queue, self.message_type, item.ref, sink, reason)

    def _dead_lettered(self, count: int) -> None:
        self.events.dead_lettered(self.queue, count)

    def _on_retry(self, sink: str, attempt: int, error: SinkUnavailable, delay: float) -> None:
        self.healthy.clear()
        self.events.sink_retry(self.queue, sink, attempt, error.reason, round(delay, 3))

    def _with_opt_out(self, receipt: Receipt) -> Receipt:
        """A reply flagged by the configured matcher (the decoders applied the default keywords)."""
        if self._opt_out is None or receipt.kind != "reply":
            return receipt
        flag = self._opt_out(receipt.content)
        return receipt if flag == receipt.opt_out else replace(receipt, opt_out=flag)

    def _count_stored(self, receipts: list[Receipt]) -> None:
        fresh = set(self._counted.unseen(receipt.dedupe_key for receipt in receipts))
        if fresh:
            self._counted.add_all(fresh)
            self.events.receipts_stored(self.queue, [receipt for receipt in receipts if receipt.dedupe_key in fresh])

    def _letter(self, item: Item, reason: str, sink: str | None) -> DeadLetter:
        return DeadLetter(
            message_type=self.message_type,
            source=self.source,
            queue=self.queue,
            raw=item.raw,
            reason=reason,
            failed_at=self._now(),
            message_id=item.ref if self.source == "mns" else None,
            dequeue_count=item.dequeue_count,
            sink=sink,
            dedupe_key=item.receipt.dedupe_key if item.receipt else None,
        )
