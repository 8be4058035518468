"""Drain one push route's spool into its sinks through the delivery core, oldest entries first.

Each round takes up to ``push.spool_batch_entries`` pushes holding at most ``push.spool_batch_receipts``
receipts (or one larger push alone: a round killed for memory would come back whole and never drain),
and hands every element to the :class:`~mns_consumer.delivery.Dispatcher` at once, so the MNS path's
rules hold. The entries leave the spool only once all are settled.
"""

from __future__ import annotations

import threading
import time

from tenacity import RetryCallState, Retrying, retry_if_exception

from mns_consumer.delivery import Abandoned, Dispatcher, Item
from mns_consumer.errors import DecodeError
from mns_consumer.push.spool import Spool, SpoolEntry
from mns_consumer.receipts import decode_push
from mns_consumer.retry import Backoff, failed_attempt

IDLE_WAIT_SECONDS = 1.0
"""Longest sleep of an idle worker; a stored push wakes it at once (:meth:`SpoolWorker.wake`)."""


class SpoolWorker:
    """One thread delivering one route's spooled pushes: the dispatcher's ``queue`` is the route's name as
    stored in the spool, its ``abandon`` event ends a wait for a sink that is down.
    """

    def __init__(
        self,
        spool: Spool,
        dispatcher: Dispatcher,
        *,
        batch_entries: int = 64,
        batch_receipts: int = 10000,
        retry_initial_seconds: float = 0.5,
        retry_max_seconds: float = 30.0,
    ) -> None:
        self.route, self.message_type, self.events = dispatcher.queue, dispatcher.message_type, dispatcher.events
        self.spool = spool
        self.dispatcher = dispatcher
        self.batch_entries = batch_entries
        self.batch_receipts = batch_receipts
        # A sink bug or the spool's disk: retried until it works or the drain gives up, never lost.
        self._retrying = Retrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, Exception) and not isinstance(exc, Abandoned)),
            wait=Backoff(retry_initial_seconds, retry_max_seconds),
            sleep=self._sleep,
            before_sleep=self._failed,
            reraise=True,
        )
        self._wake = threading.Event()
        self._finish = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"spool-{self.route}", daemon=True)

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
        self.dispatcher.abandon.set()
        self.finish()

    def join(self, deadline: float) -> bool:
        """Wait for the thread until ``deadline`` (monotonic); True if it ended."""
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def alive(self) -> bool:
        """Whether the thread runs."""
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self.dispatcher.abandon.is_set():
            try:
                delivered = self._retrying(self._deliver_once)
            except Abandoned:
                return
            if not delivered:
                if self._finish.is_set():
                    return
                self._wake.wait(IDLE_WAIT_SECONDS)
                self._wake.clear()

    def _sleep(self, seconds: float) -> None:
        if self.dispatcher.abandon.wait(seconds):
            raise Abandoned

    def _failed(self, state: RetryCallState) -> None:
        error, delay = failed_attempt(state)
        self.events.push_worker_failed(self.route, error, round(delay, 3))

    def _deliver_once(self) -> bool:
        """Deliver the oldest entries; False when the route's spool is empty.

        Raises:
            Abandoned: If the drain gave up on a sink that is down (the entries stay spooled).
            SpoolUnavailable: If the spool cannot be read or the entries cannot be removed.
            RuntimeError: If the dispatcher gave the batch up although no drain asked it to (a sink bug).
        """
        entries = self.spool.take(self.route, self.batch_entries, self.batch_receipts)
        if not entries:
            return False
        items = [item for entry in entries for item in self._items(entry)]
        if not self.dispatcher.dispatch(items):
            if self.dispatcher.abandon.is_set():
                raise Abandoned
            raise RuntimeError("a sink failed unexpectedly (see the sink.bug event); the entries stay spooled")
        # If this fails they stay spooled although settled: delivered again, the dedupe keys absorb them.
        self.spool.remove(entries)
        self.events.push_settled(self.route, self.message_type, len(entries), len(items))
        return True

    def _items(self, entry: SpoolEntry) -> list[Item]:
        """The elements of one push, named ``<entry id>.<index>`` in log events."""
        try:
            results = decode_push(entry.message_type, entry.body, route=self.route)
        except DecodeError as exc:
            # Only a spool from another version (or a type no longer known): one dead letter for the body.
            results = [exc]
        return [
            Item(result.raw, f"{entry.entry_id}.{index}", error=result)
            if isinstance(result, DecodeError)
            else Item(result.raw, f"{entry.entry_id}.{index}", result)
            for index, result in enumerate(results)
        ]
