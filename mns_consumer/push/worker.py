"""Drain one push route's spool into its sinks through the same :class:`Dispatcher` as the MNS path.

Each round takes the route's oldest entries (up to ``push.spool_batch_entries`` pushes holding at most
``push.spool_batch_receipts`` receipts, or one larger push alone), decodes every element
of their arrays, and hands them to the dispatcher as one batch, so the semantics are the MNS path's:
every sink must accept a receipt (already stored counts), outages are retried with back-off for as
long as it takes, and undecodable or permanently rejected receipts go to the dead-letter sink. The
entries are removed from the spool only once the dispatcher has settled all of them; until then they
stay, whatever happens to the process. Bounding a round by receipts bounds the worker's memory (a
decoded receipt costs a few kilobytes): a round of 64 pushes of 2,000 receipts once peaked at 613 MB,
and a round killed for memory would come back whole after the restart and never drain.

The dispatcher needs MNS-shaped messages; each element becomes an :class:`InFlight` whose message id
is ``<entry id>.<index>``, which appears in the log events of a bad element (dead letters of push
receipts carry no message id).
"""

from __future__ import annotations

import threading
import time

from mns_consumer.alicom.queue import ReceivedMessage
from mns_consumer.consume.backoff import Backoff
from mns_consumer.consume.dispatcher import Batch, Dispatcher, InFlight
from mns_consumer.errors import DecodeError
from mns_consumer.observe.events import Events
from mns_consumer.push.spool import Spool, SpoolEntry
from mns_consumer.receipts import decode_push

IDLE_WAIT_SECONDS = 1.0
"""Longest sleep of an idle worker; a stored push wakes it at once (:meth:`SpoolWorker.wake`)."""


class SpoolWorker:
    """One thread delivering one route's spooled pushes, oldest first.

    Args:
        route: The route's name (``push:<name>``), as stored in the spool.
        message_type: The route's MessageType, which its bodies are decoded as.
        spool: The opened spool.
        dispatcher: Writes to the route's sinks and the dead-letter sink; its ``abandon`` event ends
            a wait for a sink that is down.
        events: Where settled pushes and failures are logged and counted.
        batch_entries: Most entries handed to the sinks in one batch.
        batch_receipts: Most receipts in one batch (an entry holding more goes alone).
    """

    def __init__(
        self,
        route: str,
        message_type: str,
        spool: Spool,
        dispatcher: Dispatcher,
        events: Events,
        *,
        batch_entries: int = 64,
        batch_receipts: int = 10000,
        retry_initial_seconds: float = 0.5,
        retry_max_seconds: float = 30.0,
    ) -> None:
        self.route = route
        self.message_type = message_type
        self.spool = spool
        self.dispatcher = dispatcher
        self.events = events
        self.batch_entries = batch_entries
        self.batch_receipts = batch_receipts
        self.last_progress = time.monotonic()
        self._backoff = Backoff(retry_initial_seconds, retry_max_seconds)
        self._wake = threading.Event()
        self._finish = threading.Event()
        self._batches = 0
        self._thread = threading.Thread(target=self._run, name=f"spool-{route}", daemon=True)

    def start(self) -> SpoolWorker:
        """Start delivering in the background."""
        self._thread.start()
        return self

    def wake(self) -> None:
        """A push was stored: look at the spool now rather than after the idle wait."""
        self._wake.set()

    def finish(self) -> None:
        """Deliver what is spooled, then stop (the drain); :meth:`abandon` cuts it short."""
        self._finish.set()
        self._wake.set()

    def abandon(self) -> None:
        """Stop at once; a batch waiting for a sink is left in the spool for the next run."""
        self._finish.set()
        self.dispatcher.abandon.set()
        self._wake.set()

    def join(self, deadline: float) -> bool:
        """Wait for the thread until ``deadline`` (monotonic); True if it ended."""
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def alive(self) -> bool:
        """Whether the thread runs."""
        return self._thread.is_alive()

    def _run(self) -> None:
        failures = 0
        while not self.dispatcher.abandon.is_set():
            self.last_progress = time.monotonic()
            try:
                delivered = self._deliver_once()
            except Exception as exc:  # noqa: BLE001  (a sink bug or the spool's disk: retried, never lost)
                failures += 1
                delay = self._backoff.delay(failures)
                self.events.push_worker_failed(self.route, exc, round(delay, 3))
                if self.dispatcher.abandon.wait(delay):
                    return
                continue
            failures = 0
            if delivered:
                continue
            if self._finish.is_set():
                return
            self._wake.wait(IDLE_WAIT_SECONDS)
            self._wake.clear()

    def _deliver_once(self) -> bool:
        """Deliver the oldest entries; False when the route's spool is empty.

        Raises:
            SpoolUnavailable: If the spool cannot be read or the entries cannot be removed.
            RuntimeError: If the dispatcher gave the batch up although no drain asked it to (a sink bug).
        """
        entries = self.spool.take(self.route, self.batch_entries, self.batch_receipts)
        if not entries:
            return False
        self._batches += 1
        batch = self._batch(entries)
        settled = self.dispatcher.dispatch(batch)
        if settled is None:
            if self.dispatcher.abandon.is_set():
                return True
            raise RuntimeError("a sink failed unexpectedly (see the sink.bug event); the entries stay spooled")
        # If this fails they stay spooled although settled: delivered again, the dedupe keys absorb them.
        self.spool.remove(entries)
        self.events.push_settled(self.route, self.message_type, len(entries), len(batch.messages))
        return True

    def _batch(self, entries: list[SpoolEntry]) -> Batch:
        now = time.monotonic()
        items: list[InFlight] = []
        for entry in entries:
            try:
                results = decode_push(entry.message_type, entry.body, route=self.route)
            except DecodeError as exc:
                # The receiver checked the body is a JSON array, so only a spool from another version
                # (or a type no longer known) gets here; the whole body becomes one dead letter.
                results = [exc]
            for index, result in enumerate(results):
                message = _message(f"{entry.entry_id}.{index}", result.raw, entry.received_at)
                if isinstance(result, DecodeError):
                    items.append(InFlight(message=message, handle="", error=result))
                else:
                    items.append(InFlight(message=message, handle="", receipt=result))
        # The visibility fields only matter to MNS pollers; a spooled push is invisible to everyone else.
        return Batch(self._batches, items, received_at=now, visibility_seconds=0.0, visible_since=now)


def _message(message_id: str, raw: bytes, received_at: float) -> ReceivedMessage:
    received_ms = int(received_at * 1000)
    return ReceivedMessage(
        message_id=message_id,
        receipt_handle="",
        body=raw.decode("utf-8", "replace"),
        body_md5="",
        dequeue_count=1,
        enqueue_time_ms=received_ms,
        first_dequeue_time_ms=received_ms,
        next_visible_time_ms=received_ms,
        priority=8,
    )
