"""One pipelined consumer of one MNS queue: receive, decode, dispatch, delete, keep slow batches invisible.

Four threads, each with its own MNS connection (the SDK client is not thread-safe):

``receiver``
    Long-polls BatchReceiveMessage. It holds one of ``in_flight_batches`` slots per
    batch, so at most that many batches are between receive and delete, and it waits while the
    queue's sinks are failing, so an outage neither churns visibility nor fills the dead letters.
``dispatcher``
    Decodes batches and hands them, in order, to :class:`~mns_consumer.consume.dispatcher.Dispatcher`.
``deleter``
    BatchDeleteMessage of exactly the settled messages, with their newest handles.
``keeper``
    Extends the visibility of batches in flight longer than half their visibility timeout, and
    carries the new handles forward.

While the dispatcher stores batch k, the receiver already holds batch k+1 and the deleter removes
batch k-1: few long polls (one per queue, well under MNS's cap), and the speed comes from the overlap.
"""

from __future__ import annotations

import itertools
import queue as queue_module
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from mns_consumer.alicom.queue import MessageGone, MnsQueue, ReceivedMessage
from mns_consumer.alicom.tokens import TokenProvider
from mns_consumer.consume.backoff import Backoff
from mns_consumer.consume.dispatcher import Batch, Dispatcher, InFlight
from mns_consumer.errors import DecodeError, QueueAuthError, QueueNotFound, QueueUnavailable, TokenError
from mns_consumer.observe.events import Events
from mns_consumer.receipts import decode_mns_body

MIN_VISIBILITY_SECONDS = 1.0
"""The shortest visibility planned with; a measured value at or below zero means a skewed clock."""
KEEPER_TICK_SECONDS = 0.25
"""How often the keeper looks for batches to extend: a fraction of the shortest useful timeout."""
MAX_VISIBILITY_SECONDS = 43200.0
"""The MNS limit; longer measured values come from skewed clocks too."""
QUEUE_MISSING_RETRY_SECONDS = 60.0


@dataclass(frozen=True)
class PollerSettings:
    """How one poller behaves (from its ``queues[]`` entry and the top-level settings)."""

    message_type: str
    queue_name: str
    batch_size: int = 16
    wait_seconds: int = 30
    in_flight_batches: int = 4
    batch_linger_seconds: float = 0.0
    extend_visibility: bool = True
    visibility_timeout_seconds: float = 30.0
    visibility_extension_seconds: int = 60
    request_timeout_seconds: float = 10.0
    retry_initial_seconds: float = 0.5
    retry_max_seconds: float = 30.0


class Poller:
    """Consumes one queue until stopped; see the module docstring for its threads."""

    def __init__(
        self,
        settings: PollerSettings,
        tokens: TokenProvider,
        dispatcher: Dispatcher,
        events: Events,
        make_client: Callable[[], MnsQueue],
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.dispatcher = dispatcher
        self.events = events
        self._make_client = make_client
        self.stopping = threading.Event()
        """Set to stop receiving; batches already received are still finished."""
        self.abandon = dispatcher.abandon
        """Set to give up on everything in flight at once (the drain deadline, or a crash)."""
        self.crashed: BaseException | None = None
        self.crashed_traceback = ""
        self.last_progress = time.monotonic()
        """When the receive loop last completed an iteration (for the systemd watchdog)."""
        self._slots = threading.BoundedSemaphore(settings.in_flight_batches)
        self._to_dispatch: queue_module.SimpleQueue[Batch | None] = queue_module.SimpleQueue()
        self._to_delete: queue_module.SimpleQueue[Batch | None] = queue_module.SimpleQueue()
        self._in_flight: dict[int, Batch] = {}
        self._in_flight_lock = threading.Lock()
        self._receiver_client: MnsQueue | None = None
        self._threads: list[threading.Thread] = []
        self._batch_ids = itertools.count(1)
        self._backoff = Backoff(settings.retry_initial_seconds, settings.retry_max_seconds)
        self._can_extend = settings.extend_visibility
        self._done = threading.Event()
        self._latest_receive_age_seconds = 0.0

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the four threads."""
        name = self.settings.queue_name
        for role, target in (
            ("receiver", self._receive_loop),
            ("dispatcher", self._dispatch_loop),
            ("deleter", self._delete_loop),
            ("keeper", self._keep_loop),
        ):
            thread = threading.Thread(target=self._guarded, args=(target,), name=f"{role}:{name}", daemon=True)
            self._threads.append(thread)
        for thread in self._threads:
            thread.start()
        self.events.poller_started(name, self.settings.message_type)

    def stop_receiving(self) -> None:
        """Stop taking new batches and interrupt a long poll in progress; in-flight batches go on."""
        self.stopping.set()
        client = self._receiver_client
        if client is not None:
            client.abort()

    def join(self, deadline: float) -> bool:
        """Wait until every thread ended or ``time.monotonic()`` passes ``deadline``; True if all ended."""
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def give_up(self) -> None:
        """Abandon everything in flight now (nothing more is deleted) and stop every thread."""
        self.stop_receiving()
        self.abandon.set()
        self._to_dispatch.put(None)
        self._to_delete.put(None)

    @property
    def in_flight(self) -> int:
        """Batches received and not yet deleted or abandoned."""
        with self._in_flight_lock:
            return len(self._in_flight)

    def in_flight_messages(self) -> tuple[int, int]:
        """Batches and messages received and not yet deleted or abandoned (what an exit now leaves to MNS)."""
        with self._in_flight_lock:
            batches = [batch for batch in self._in_flight.values() if not batch.abandoned]
        return len(batches), sum(len(batch.messages) for batch in batches)

    def oldest_message_age_seconds(self) -> float:
        """The queue's lag as far as this poller knows it, computed when asked (at scrape time).

        It is the larger of two ages:

        * the age, at that receive, of the oldest message in the latest receive (0 when it came back
          empty): MNS hands out roughly oldest first, so while receives flow this is the queue's head
          as last seen;
        * the age *now* of the oldest message this poller holds in flight (received, not yet deleted):
          it is still in the queue, and its EnqueueTime comes from MNS itself, so the queue's oldest
          message is at least that old.

        The second is what keeps the gauge honest while receiving pauses for a failing sink: the
        batch that met the outage stays in flight (its visibility extended), so the gauge grows by a
        second every second until the sink recovers, instead of repeating the last receive's value.
        Time since the last delete would grow on an idle queue too, and ageing the last receive's
        value would count messages that were deleted since, so neither is used. When MNS itself
        cannot be reached nothing new is learnt; ``mns_consumer_seconds_since_last_receive`` says so.
        """
        with self._in_flight_lock:
            held = [batch.messages for batch in self._in_flight.values() if not batch.abandoned]
        oldest_ms = min((item.message.enqueue_time_ms for items in held for item in items), default=None)
        if oldest_ms is None:
            return self._latest_receive_age_seconds
        held_age = time.time() - oldest_ms / 1000
        return max(self._latest_receive_age_seconds, held_age, 0.0)

    def _guarded(self, target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001  (any death of a thread is a crash of the poller)
            self.crashed = exc
            self.crashed_traceback = traceback.format_exc()
            self.give_up()

    # -- receiver --------------------------------------------------------------------------------

    def _receive_loop(self) -> None:
        client = self._make_client()
        self._receiver_client = client
        failures = 0
        try:
            while not self.stopping.is_set():
                self.last_progress = time.monotonic()
                if not self._acquire_slot() or not self._wait_until_sinks_healthy():
                    continue
                started = time.monotonic()
                try:
                    messages = client.receive(self.settings.batch_size, self.settings.wait_seconds)
                except (QueueUnavailable, QueueAuthError, QueueNotFound, TokenError) as exc:
                    self._slots.release()
                    failures += 1
                    if not self.stopping.is_set():
                        self._after_receive_failure(exc, failures)
                    continue
                failures = 0
                self._latest_receive_age_seconds = _oldest_age_seconds(messages)
                self.events.receive_finished(self.settings.queue_name, time.monotonic() - started)
                if not messages:
                    self._slots.release()
                    if self.settings.wait_seconds == 0:
                        self.stopping.wait(1.0)
                    continue
                self._hand_over(messages)
                if len(messages) < self.settings.batch_size and self.settings.batch_linger_seconds > 0:
                    # A partial batch means the queue is keeping up with its producer: let a few more
                    # messages arrive rather than pay a request (and a delete) for every one or two.
                    self.stopping.wait(self.settings.batch_linger_seconds)
        finally:
            self._receiver_client = None
            client.close()
            self._to_dispatch.put(None)

    def _acquire_slot(self) -> bool:
        while not self.stopping.is_set():
            if self._slots.acquire(timeout=0.5):
                return True
            self.last_progress = time.monotonic()
        return False

    def _wait_until_sinks_healthy(self) -> bool:
        while not self.dispatcher.healthy.wait(0.5):
            self.last_progress = time.monotonic()
            if self.stopping.is_set():
                self._slots.release()
                return False
        return True

    def _after_receive_failure(self, error: Exception, failures: int) -> None:
        queue, message_type = self.settings.queue_name, self.settings.message_type
        delay = self._backoff.delay(failures)
        if isinstance(error, QueueAuthError):
            self.events.auth_refused(queue, message_type, error.code, "BatchReceiveMessage")
            self.tokens.invalidate(self.tokens.current())
            # The first retry after a refresh is immediate: the usual cause is a token that just expired.
            delay = 0.0 if failures == 1 else delay
        elif isinstance(error, QueueNotFound):
            delay = QUEUE_MISSING_RETRY_SECONDS
            self.events.queue_missing(queue, message_type, delay)
        elif isinstance(error, TokenError):
            self.events.token_failed(queue, message_type, error.code, round(delay, 3))
        else:
            code = error.code if isinstance(error, QueueUnavailable) else type(error).__name__
            self.events.receive_failed(queue, message_type, code, round(delay, 3))
        self._pause(delay)

    def _pause(self, seconds: float) -> None:
        """Wait out a back-off in slices, marking progress: a loop that backs off is alive (watchdog)."""
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set() and (remaining := deadline - time.monotonic()) > 0:
            self.stopping.wait(min(1.0, remaining))
            self.last_progress = time.monotonic()

    def _hand_over(self, messages: list[ReceivedMessage]) -> None:
        now = time.monotonic()
        batch_id = next(self._batch_ids)
        # Decoding is the dispatcher's (see _decode): the receiver goes straight back to MNS.
        items = [InFlight(message=message, handle=message.receipt_handle) for message in messages]
        wall_ms = time.time() * 1000
        oldest = min(m.enqueue_time_ms for m in messages)
        batch = Batch(
            batch_id=batch_id,
            messages=items,
            received_at=now,
            visibility_seconds=self._measured_visibility(messages, wall_ms),
            visible_since=now,
        )
        with self._in_flight_lock:
            self._in_flight[batch_id] = batch
        self.events.batch_received(
            self.settings.queue_name,
            self.settings.message_type,
            batch_id,
            len(items),
            max(0.0, (wall_ms - oldest) / 1000),
        )
        self._to_dispatch.put(batch)

    def _measured_visibility(self, messages: list[ReceivedMessage], wall_ms: float) -> float:
        """Seconds until the batch turns visible again, read from NextVisibleTime (reference 3.5)."""
        remaining = (min(m.next_visible_time_ms for m in messages) - wall_ms) / 1000
        if 0 < remaining <= MAX_VISIBILITY_SECONDS:
            # Short timeouts are real (a queue may use 1-5 s); plan with at least a second.
            return max(MIN_VISIBILITY_SECONDS, remaining)
        # A clock far off MNS's: fall back to the configured timeout rather than a nonsense value.
        return self.settings.visibility_timeout_seconds

    # -- dispatcher ------------------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        try:
            while batches := self._next_batches():
                if self.abandon.is_set() or not self._store(batches):
                    for batch in batches:
                        self._drop(batch)
                    continue
                for batch in batches:
                    batch.settled = list(batch.messages)
                    self._to_delete.put(batch)
        finally:
            self._to_delete.put(None)

    def _store(self, batches: list[Batch]) -> bool:
        """Decode the batches and write them to the sinks together; True when every message is settled."""
        for batch in batches:
            self._decode(batch)
        return self.dispatcher.dispatch_together(batches)

    def _decode(self, batch: Batch) -> None:
        """Decode a batch's bodies here rather than in the receiver, which then spends its time on receives.

        One receiver bounds a queue's throughput (its receives are sequential), so each millisecond of
        decoding moved off it is one more for receiving; the dispatcher's own time goes mostly to
        sink I/O, during which it holds no lock the receiver needs.
        """
        message_type, queue = self.settings.message_type, self.settings.queue_name
        for item in batch.messages:
            try:
                item.receipt = decode_mns_body(message_type, item.message.body, queue=queue)
            except DecodeError as exc:
                item.error = exc

    def _next_batches(self) -> list[Batch]:
        """The next batch, waiting for it, and every other one already waiting; [] once the receiver ended.

        Batches that queued up while the sinks were busy are written together: one commit and fsync
        for all of them instead of one each, which is what lets a slow sink catch up.
        """
        batch = self._to_dispatch.get()
        if batch is None:
            return []
        batches = [batch]
        while True:
            try:
                more = self._to_dispatch.get_nowait()
            except queue_module.Empty:
                return batches
            if more is None:
                # The receiver's end marker: put it back for the next call, after these are dispatched.
                self._to_dispatch.put(None)
                return batches
            batches.append(more)

    # -- deleter ---------------------------------------------------------------------------------

    def _delete_loop(self) -> None:
        client = self._make_client()
        try:
            while (batch := self._to_delete.get()) is not None:
                if not self.abandon.is_set() and batch.settled:
                    self._delete(client, batch, batch.settled)
                self._finish(batch)
        finally:
            client.close()
            self._done.set()

    def _delete(self, client: MnsQueue, batch: Batch, settled: list[InFlight]) -> None:
        queue = self.settings.queue_name
        attempt = 0
        while True:
            attempt += 1
            error: QueueAuthError | QueueUnavailable | TokenError | None = None
            with batch.lock:
                handles = [item.handle for item in settled]
                try:
                    failed = client.delete(handles)
                except (QueueAuthError, QueueUnavailable, TokenError) as exc:
                    error = exc
            if error is None:
                break
            delay = self._backoff.delay(attempt)
            if isinstance(error, QueueAuthError):
                self.events.auth_refused(queue, self.settings.message_type, error.code, "BatchDeleteMessage")
                self.tokens.invalidate(self.tokens.current())
                delay = 0.0 if attempt == 1 else delay
            # Retrying is worth it while the handles are live (the keeper extends them); after that the
            # messages come back on their own and their dedupe keys absorb the repeat.
            remaining = batch.visible_since + batch.visibility_seconds - time.monotonic()
            if remaining <= delay or self.abandon.wait(delay):
                self.events.delete_failed(queue, len(handles), error.code)
                return
        deleted = len(handles) - len(failed)
        if deleted:
            now = datetime.now(UTC)
            delays = [
                (now - when).total_seconds()
                for item in settled
                if item.handle not in failed
                and item.receipt is not None
                and (when := item.receipt.reported_at or item.receipt.sent_at) is not None
            ]
            self.events.receipts_deleted(queue, deleted, batch.batch_id, delays)
        if failed:
            # Typically ReceiptHandleError: the message turned visible and went out again; its
            # dedupe key absorbs the redelivery (reference pitfall 11).
            self.events.delete_failed(queue, len(failed), sorted(set(failed.values()))[0])

    def _finish(self, batch: Batch) -> None:
        with self._in_flight_lock:
            self._in_flight.pop(batch.batch_id, None)
        self._slots.release()

    def _drop(self, batch: Batch) -> None:
        batch.abandoned = True
        self._finish(batch)

    # -- keeper ----------------------------------------------------------------------------------

    def _keep_loop(self) -> None:
        client: MnsQueue | None = None
        try:
            while not self._done.wait(KEEPER_TICK_SECONDS):
                if not self._can_extend:
                    continue
                now = time.monotonic()
                with self._in_flight_lock:
                    batches = [b for b in self._in_flight.values() if not b.abandoned]
                for batch in batches:
                    if now - batch.visible_since < batch.visibility_seconds / 2:
                        continue
                    client = client or self._make_client()
                    self._extend(client, batch)
        finally:
            if client is not None:
                client.close()

    def _extend(self, client: MnsQueue, batch: Batch) -> None:
        seconds = max(self.settings.visibility_extension_seconds, int(batch.visibility_seconds))
        extended = 0
        with batch.lock:
            started = time.monotonic()
            for item in batch.messages:
                try:
                    item.handle, _ = client.change_visibility(item.handle, seconds)
                    extended += 1
                except MessageGone:
                    continue
                except QueueAuthError as exc:
                    if exc.code == "AccessDenied":
                        self._can_extend = False
                        self.events.visibility_not_allowed(self.settings.queue_name, exc.code)
                        return
                    self.tokens.invalidate(self.tokens.current())
                    return
                except (QueueUnavailable, TokenError):
                    return
            batch.visible_since = started
            batch.visibility_seconds = float(seconds)
        if extended:
            self.events.visibility_extended(self.settings.queue_name, extended, seconds)


def _oldest_age_seconds(messages: list[ReceivedMessage]) -> float:
    """Age of the oldest message of a receive, from its EnqueueTime; 0 for an empty receive."""
    if not messages:
        return 0.0
    return max(0.0, time.time() - min(m.enqueue_time_ms for m in messages) / 1000)
