"""One pipelined consumer of one MNS queue: receive, decode, dispatch, delete, keep slow batches invisible.

Threads, each with its own MNS connection (the SDK client is not thread-safe): receiver 0 long-polls;
while receives come back full and the sinks keep up, :class:`~mns_consumer.consume.concurrency.ReceiverControl`
adds receivers that do not wait (so they never count against MNS's cap of long polls) and retires them
once the backlog is gone. One ``dispatcher`` hands batches in order to the
:class:`~mns_consumer.delivery.Dispatcher`; one ``deleter`` per receiver deletes the settled messages with
their newest handles; the ``keeper`` extends batches past half their visibility timeout, for at most
``max_hold_seconds``. Only overlap hides each call's round trip: while batch k is stored, batch k+1 is
received and batch k-1 deleted.

Receiving pauses while the sinks fail, so an outage neither churns visibility nor fills the dead letters.
A 429 is backpressure: retried after a jittered pause while the receivers halve, never dead-lettered.
"""

from __future__ import annotations

import itertools
import math
import queue as queue_module
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from mns_consumer.alicom.queue import MnsQueue, ReceivedMessage
from mns_consumer.alicom.tokens import TokenProvider
from mns_consumer.consume.concurrency import MessageBudget, ReceiptRate, ReceiverControl
from mns_consumer.delivery import Dispatcher, Item
from mns_consumer.errors import (
    AlicomError,
    DecodeError,
    MessageGone,
    QueueAuthError,
    QueueNotFound,
    QueueThrottled,
    QueueUnavailable,
    TokenError,
)
from mns_consumer.observe.events import Events
from mns_consumer.receipt_model import Receipt
from mns_consumer.receipts import decode_mns_body
from mns_consumer.retry import Backoff

MIN_VISIBILITY_SECONDS = 1.0
"""The shortest visibility planned with; a measured value at or below zero means a skewed clock."""
KEEPER_TICK_SECONDS = 0.25
"""How often the keeper looks for batches to extend: a fraction of the shortest useful timeout."""
KEEPER_CONNECTIONS = 4
"""Extensions the keeper makes at once, each on its own connection (a client holds its own TLS trust store)."""
MAX_VISIBILITY_SECONDS = 43200.0
"""The MNS limit; longer measured values come from skewed clocks too."""
QUEUE_MISSING_RETRY_SECONDS = 60.0
THROTTLE_RETRY_INITIAL_SECONDS = 0.25
"""First pause after a 429 (jittered, doubling while they persist): MNS already held the call ~0.5 s."""
THROTTLE_RETRY_MAX_SECONDS = 4.0
"""Longest pause after a 429: fewer receivers is what relieves the limiter; long sleeps only stall the drain."""
EXTRA_RECEIVER_IDLE_SECONDS = 0.05
"""How long an extra receiver (no long poll) waits after an empty answer before it asks again."""
EXTRA_RECEIVER_KEEP_SECONDS = 5.0
"""How long an extra receiver stays parked above the target before it ends. Near one long poll's capacity
the target moves several times a second, and a receiver started anew is a thread and a new connection
(on the real network a TLS handshake, two round trips before its first receive)."""


@dataclass
class InFlight:
    """One received message; the keeper replaces its handle and ``visible_until`` (``inf`` once gone)."""

    message: ReceivedMessage
    handle: str
    visible_until: float
    receipt: Receipt | None = None


@dataclass
class Batch:
    """The messages of one receive, from receiver to dispatcher to deleter (times on the poller's clock).

    ``lock`` is held while a handle is replaced or used, so deletes never race extensions; ``receiver``
    owns the in-flight slot; ``released`` means held past ``max_hold_seconds`` and left to lapse.
    """

    batch_id: int
    messages: list[InFlight]
    received_at: float
    visibility_seconds: float
    receiver: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    abandoned: bool = False
    released: bool = False

    def visible_until(self) -> float:
        """The earliest time any of its messages turns visible again (``inf`` once all are gone)."""
        return min((item.visible_until for item in self.messages), default=math.inf)


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
    retry_initial_seconds: float = 0.5
    retry_max_seconds: float = 30.0
    max_receivers: int = 1
    max_in_flight_messages: int = 512
    max_receipts_per_second: float | None = None
    max_hold_seconds: float = 600.0


class Poller:
    """Consumes one queue until stopped; see the module docstring for its threads."""

    def __init__(
        self,
        settings: PollerSettings,
        tokens: TokenProvider,
        dispatcher: Dispatcher,
        events: Events,
        make_client: Callable[[], MnsQueue],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` times batches, visibility and holds (tests tie it to the emulator's clock)."""
        self.settings = settings
        self.tokens = tokens
        self.dispatcher = dispatcher
        self.events = events
        self._make_client = make_client
        self._clock = clock
        self.stopping = threading.Event()
        """Set to stop receiving; batches already received are still finished."""
        self.abandon = dispatcher.abandon
        """Set to give up on everything in flight at once (the drain deadline, or a crash)."""
        self.crashed: BaseException | None = None
        self.last_progress = time.monotonic()
        """When receiver 0's loop last completed an iteration (for the systemd watchdog)."""
        self.control = ReceiverControl(settings.max_receivers, settings.batch_size, on_change=self._receivers_changed)
        self.budget = MessageBudget(settings.max_in_flight_messages)
        self._rate = ReceiptRate(settings.max_receipts_per_second) if settings.max_receipts_per_second else None
        self._slots: dict[int, threading.BoundedSemaphore] = {}
        """Per receiver index: its batches in flight (kept when it retires, for the batches it left)."""
        self._to_dispatch: queue_module.SimpleQueue[Batch | None] = queue_module.SimpleQueue()
        self._to_delete: queue_module.SimpleQueue[Batch | None] = queue_module.SimpleQueue()
        self._in_flight: dict[int, Batch] = {}
        self._in_flight_lock = threading.Lock()
        self._receiver_clients: set[MnsQueue] = set()
        self._threads: list[threading.Thread] = []
        self._threads_lock = threading.Lock()
        self._target_moved = threading.Condition(self._threads_lock)
        """Notified when the receiver target moves or receiving stops: parked receivers wait on it."""
        self._receivers_running: set[int] = set()
        self._deleters = 0
        """Deleters running: one per receiver, until the end marker (one per retired receiver)."""
        self._batch_ids = itertools.count(1)
        self._backoff = Backoff(settings.retry_initial_seconds, settings.retry_max_seconds)
        self._throttle_backoff = Backoff(
            THROTTLE_RETRY_INITIAL_SECONDS, min(THROTTLE_RETRY_MAX_SECONDS, settings.retry_max_seconds)
        )
        self._throttled_runs: dict[int, int] = {}
        """429s in a row, per receiver (each receiver's own run sets its pause)."""
        self._can_extend = settings.extend_visibility
        self._done = threading.Event()
        self._receive_ages: dict[int, float] = {}
        self._undispatched = 0
        """Batches received and not yet through the sinks (waiting for the dispatcher, or being written)."""

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start receiver 0, the dispatcher, one deleter and the keeper; more receivers start on demand."""
        name = self.settings.queue_name
        self._start_receivers()
        for role, target in (("dispatcher", self._dispatch_loop), ("keeper", self._keep_loop)):
            self._spawn(f"{role}:{name}", target)
        self.events.poller_started(name, self.settings.message_type)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=self._guarded, args=(target,), name=name, daemon=True)
        with self._threads_lock:
            # Retired receivers' threads are dropped, so receivers coming and going leave no trace.
            self._threads = [alive for alive in self._threads if alive.is_alive()] + [thread]
        thread.start()

    def _start_receivers(self) -> None:
        """Start every receiver the target asks for that is not running, each with a deleter.

        Taken under the lock that a retiring receiver leaves under: no index runs twice or is missed.
        """
        with self._threads_lock:
            if self.stopping.is_set():
                return
            missing = [index for index in range(self.control.target) if index not in self._receivers_running]
            self._receivers_running.update(missing)
            self._deleters += len(missing)
            for index in missing:
                self._slots.setdefault(index, threading.BoundedSemaphore(self.settings.in_flight_batches))
        for index in missing:
            suffix = f"-{index}" if index else ""
            self._spawn(f"receiver{suffix}:{self.settings.queue_name}", partial(self._receive_loop, index))
            self._spawn(f"deleter{suffix}:{self.settings.queue_name}", self._delete_loop)

    def _receivers_changed(self, receivers: int, reason: str) -> None:
        """The target moved: start the receivers it asks for (those above it retire by themselves)."""
        self.events.receivers_changed(self.settings.queue_name, receivers, reason)
        with self._target_moved:
            self._target_moved.notify_all()
        self._start_receivers()

    def _retiring(self, index: int) -> bool:
        """Whether receiver ``index`` ends (then it no longer counts as running).

        Above the target it parks, keeping its thread and connection, and ends only once it stayed above
        for :data:`EXTRA_RECEIVER_KEEP_SECONDS`; False at once when the target reaches it again or on a stop.
        It sleeps until one of those happens: a drain leaves up to 15 parked receivers a queue.
        """
        keep_until = time.monotonic() + EXTRA_RECEIVER_KEEP_SECONDS
        with self._target_moved:
            while not self.stopping.is_set():
                if index < self.control.target:
                    return False
                # Parked, its latest receive no longer says where the queue is (oldest_message_age_seconds).
                self._receive_ages.pop(index, None)
                remaining = keep_until - time.monotonic()
                if remaining <= 0:
                    self._receivers_running.discard(index)
                    return True
                self._target_moved.wait(remaining)
        return False

    def stop_receiving(self) -> None:
        """Stop taking new batches and interrupt the receives in progress; in-flight batches go on."""
        self.stopping.set()
        with self._target_moved:
            self._target_moved.notify_all()
        for client in list(self._receiver_clients):
            client.abort()

    def join(self, deadline: float) -> bool:
        """Wait until every thread ended or ``time.monotonic()`` passes ``deadline``; True if all ended."""
        with self._threads_lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._threads_lock:
            threads = list(self._threads)
        return not any(thread.is_alive() for thread in threads)

    def give_up(self) -> None:
        """Abandon everything in flight now (nothing more is deleted) and stop every thread."""
        self.stop_receiving()
        self.abandon.set()
        self._to_dispatch.put(None)
        with self._threads_lock:
            deleters = self._deleters
        for _ in range(deleters):
            self._to_delete.put(None)

    @property
    def receivers(self) -> int:
        """Receivers running now: 1 (the long poll) unless a backlog brought more."""
        return self.control.target

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
        """The queue's lag as this poller knows it: the oldest message's age at the latest receive, or more.

        More when a message held in flight (still in the queue) is older now: the gauge keeps growing
        while receiving pauses for a failing sink, instead of repeating a stale value.
        """
        with self._in_flight_lock:
            held = [batch.messages for batch in self._in_flight.values() if not batch.abandoned]
        # Each running receiver's latest receive: the largest is the head of the queue as last seen (an
        # extra receiver's empty answer under load must not hide what another just found).
        latest = max(self._receive_ages.values(), default=0.0)
        oldest_ms = min((item.message.enqueue_time_ms for items in held for item in items), default=None)
        return max(latest, 0.0 if oldest_ms is None else time.time() - oldest_ms / 1000, 0.0)

    def _guarded(self, target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001  (any death of a thread is a crash of the poller)
            self.crashed = exc
            self.give_up()

    # -- receiver --------------------------------------------------------------------------------

    def _receive_loop(self, index: int) -> None:
        """One receiver: ``index`` 0 long-polls and always runs; the others run while the backlog lasts."""
        client = self._make_client()
        self._receiver_clients.add(client)
        failures, retired = 0, False
        slot, size = self._slots[index], self.settings.batch_size
        try:
            while not self.stopping.is_set() and not (retired := index > 0 and self._retiring(index)):
                if index == 0:
                    self.last_progress = time.monotonic()
                if not self._wait(index, lambda: slot.acquire(timeout=0.5)):
                    continue
                # Receiving pauses while a sink fails, and while the budget or the rate is spent.
                healthy = self._wait(index, lambda: self.dispatcher.healthy.wait(0.5))
                if not healthy or not self._wait(index, lambda: self.budget.reserve(size, 0.5)):
                    slot.release()
                    continue
                if not self._wait(index, self._rate_allows):
                    self.budget.release(size)
                    slot.release()
                    continue
                failures = self._receive_once(client, index, failures)
        finally:
            self._receiver_clients.discard(client)
            self._receive_ages.pop(index, None)
            client.close()
            with self._threads_lock:
                if not retired:  # (a retired index may already run again)
                    self._receivers_running.discard(index)
                last = not self._receivers_running
            if last:
                # The dispatcher ends after the last receiver: every receiver's batches are dispatched.
                self._to_dispatch.put(None)
            elif retired:
                self._to_delete.put(None)  # one deleter goes with it

    def _receive_once(self, client: MnsQueue, index: int, failures: int) -> int:
        """One receive with its slot and budget already held; returns the receiver's failures in a row."""
        primary = index == 0
        wait_seconds = self.settings.wait_seconds if primary else 0
        batch_size = self.settings.batch_size
        started = time.monotonic()
        try:
            messages = client.receive(batch_size, wait_seconds)
        except (QueueUnavailable, QueueAuthError, QueueNotFound, TokenError) as exc:
            self._slots[index].release()
            self.budget.release(batch_size)
            if self.stopping.is_set():
                return failures
            if isinstance(exc, QueueThrottled):
                run = self._throttled_runs[index] = self._throttled_runs.get(index, 0) + 1
                self._back_off(index, self._throttled("BatchReceiveMessage", run))
                return failures
            self._after_receive_failure(exc, failures + 1, index)
            return failures + 1
        self._throttled_runs[index] = 0
        self.budget.release(batch_size - len(messages))
        if self._rate is not None:
            self._rate.spend(len(messages))
        wall_ms = time.time() * 1000
        oldest_ms = min((m.enqueue_time_ms for m in messages), default=wall_ms)
        age = self._receive_ages[index] = max(0.0, (wall_ms - oldest_ms) / 1000)
        self.events.receive_finished(self.settings.queue_name, time.monotonic() - started)
        target = self.control.observe(len(messages), room_for_more=self._room_for_more())
        if not messages:
            self._slots[index].release()
            if not primary:
                self.stopping.wait(EXTRA_RECEIVER_IDLE_SECONDS)
            elif wait_seconds == 0:
                self.stopping.wait(1.0)
            return 0
        self._hand_over(messages, index, age)
        if len(messages) < batch_size and target == 1 and self.settings.batch_linger_seconds > 0:
            # A partial batch means the queue is keeping up with its producer: let a few more
            # messages arrive rather than pay a request (and a delete) for every one or two.
            self.stopping.wait(self.settings.batch_linger_seconds)
        return 0

    def _room_for_more(self) -> bool:
        """Whether another receiver would help: a batch's worth of budget free and the sinks keeping up.

        They keep up while no more batches wait for (or are in) the dispatcher than receivers run: a slow
        or stalled sink stops the growth before more batches pile up behind it.
        """
        with self._in_flight_lock:
            undispatched = self._undispatched
        return self.budget.available() >= self.settings.batch_size and undispatched <= self.control.target

    def _wait(self, index: int, ready: Callable[[], bool]) -> bool:
        """Call ``ready`` (which waits a little) until it holds; False on a stop.

        Receiver 0 marks progress meanwhile: a loop that waits for its sinks or budget is alive (watchdog).
        """
        while not self.stopping.is_set():
            if ready():
                return True
            if index == 0:
                self.last_progress = time.monotonic()
        return False

    def _rate_allows(self) -> bool:
        """Whether ``max_receipts_per_second`` allows a receive now; else wait up to half a second."""
        seconds = 0.0 if self._rate is None else self._rate.seconds_to_wait()
        if seconds <= 0:
            return True
        self.stopping.wait(min(seconds, 0.5))
        return False

    def _throttled(self, operation: str, run: int) -> float:
        """A 429 is backpressure: fewer receivers, and a jittered pause that grows while the 429s persist."""
        delay = self._throttle_backoff.delay(run)
        self.control.throttled()
        self.events.throttled(self.settings.queue_name, operation, round(delay, 3))
        return delay

    def _auth_refused(self, code: str, operation: str, attempt: int, delay: float) -> float:
        """Refresh the token; the first retry after that is immediate (the usual cause: it just expired)."""
        self.events.auth_refused(self.settings.queue_name, self.settings.message_type, code, operation)
        self.tokens.invalidate(self.tokens.current())
        return 0.0 if attempt == 1 else delay

    def _after_receive_failure(self, error: Exception, failures: int, index: int) -> None:
        queue, message_type = self.settings.queue_name, self.settings.message_type
        delay = self._backoff.delay(failures)
        if isinstance(error, QueueAuthError):
            delay = self._auth_refused(error.code, "BatchReceiveMessage", failures, delay)
        elif isinstance(error, QueueNotFound):
            delay = QUEUE_MISSING_RETRY_SECONDS
            self.events.queue_missing(queue, message_type, delay)
        elif isinstance(error, TokenError):
            self.events.token_failed(queue, message_type, error.code, round(delay, 3))
        else:
            code = error.code if isinstance(error, QueueUnavailable) else type(error).__name__
            self.events.receive_failed(queue, message_type, code, round(delay, 3))
        self._back_off(index, delay)

    def _back_off(self, index: int, seconds: float) -> None:
        """Wait out a back-off; receiver 0 in slices, marking progress (a loop that backs off is alive)."""
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set() and (remaining := deadline - time.monotonic()) > 0:
            self.stopping.wait(min(1.0, remaining) if index == 0 else remaining)
            if index == 0:
                self.last_progress = time.monotonic()

    def _hand_over(self, messages: list[ReceivedMessage], receiver: int, age: float) -> None:
        """Queue a received batch for the dispatcher; ``age`` is its oldest message's, in seconds."""
        now = self._clock()
        batch_id = next(self._batch_ids)
        visibility = self._measured_visibility(messages, time.time() * 1000)
        items = [
            InFlight(message=message, handle=message.receipt_handle, visible_until=now + visibility)
            for message in messages
        ]
        batch = Batch(batch_id, items, received_at=now, visibility_seconds=visibility, receiver=receiver)
        with self._in_flight_lock:
            self._in_flight[batch_id] = batch
            self._undispatched += 1
        self.events.batch_received(self.settings.queue_name, self.settings.message_type, batch_id, len(items), age)
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
        """Settle batches in order until the last receiver's end marker.

        Batches that queued up while the sinks were busy are written together: one commit and fsync
        for all of them instead of one each, which is what lets a slow sink catch up.
        """
        try:
            ended = False
            while not ended:
                waiting = [self._to_dispatch.get()]
                while waiting[-1] is not None and not self._to_dispatch.empty():
                    waiting.append(self._to_dispatch.get())
                batches = [batch for batch in waiting if batch is not None]
                ended = len(batches) < len(waiting)
                stored = bool(batches) and not self.abandon.is_set() and self._store(batches)
                with self._in_flight_lock:
                    self._undispatched -= len(batches)
                for batch in batches:
                    batch.abandoned = not stored
                    if stored:
                        self._to_delete.put(batch)
                    else:
                        self._finish(batch)
        finally:
            # No receiver is left to start a deleter, so this count is final.
            with self._threads_lock:
                deleters = self._deleters
            for _ in range(deleters):
                self._to_delete.put(None)

    def _store(self, batches: list[Batch]) -> bool:
        """Decode the batches and write them to the sinks together; True when every message is settled.

        Decoded here, not in the receiver, whose sequential receives bound a queue's throughput.
        """
        message_type, queue = self.settings.message_type, self.settings.queue_name
        items: list[Item] = []
        for held in (held for batch in batches for held in batch.messages):
            message, error = held.message, None
            try:
                held.receipt = decode_mns_body(message_type, message.body, queue=queue)
            except DecodeError as exc:
                error = exc
            raw = message.body.encode("utf-8")
            items.append(Item(raw, message.message_id, held.receipt, error, message.dequeue_count))
        return self.dispatcher.dispatch(items)

    # -- deleter ---------------------------------------------------------------------------------

    def _delete_loop(self) -> None:
        client = self._make_client()
        try:
            while (batch := self._to_delete.get()) is not None:
                if not self.abandon.is_set():  # (only stored batches come here)
                    self._delete(client, batch)
                self._finish(batch)
        finally:
            client.close()
            with self._threads_lock:
                self._deleters -= 1
                last = self._deleters == 0
            if last:
                self._done.set()

    def _delete(self, client: MnsQueue, batch: Batch) -> None:
        queue, settled = self.settings.queue_name, batch.messages
        attempt = throttled = 0
        while True:
            with batch.lock:
                try:
                    failed = client.delete([item.handle for item in settled])
                    break
                except (QueueAuthError, QueueUnavailable, TokenError) as exc:
                    error = exc
            if isinstance(error, QueueThrottled):
                # Backpressure, not a failure: retried for as long as the handles live, counted apart.
                throttled += 1
                delay = self._throttled("BatchDeleteMessage", throttled)
            else:
                attempt += 1
                delay = self._backoff.delay(attempt)
            if isinstance(error, QueueAuthError):
                delay = self._auth_refused(error.code, "BatchDeleteMessage", attempt, delay)
            # Retrying is worth it while the handles are live (the keeper extends them); after that the
            # messages come back on their own and their dedupe keys absorb the repeat.
            remaining = batch.visible_until() - self._clock()
            if remaining <= delay or self.abandon.wait(delay):
                self.events.delete_failed(queue, len(settled), error.code)
                return
        deleted = len(settled) - len(failed)
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
            known = self._in_flight.pop(batch.batch_id, None) is not None
        if known:
            self.budget.release(len(batch.messages))
        self._slots[batch.receiver].release()

    # -- keeper ----------------------------------------------------------------------------------

    def _keep_loop(self) -> None:
        """Extend each batch past half its window, :data:`KEEPER_CONNECTIONS` messages at a time."""
        idle: queue_module.SimpleQueue[MnsQueue] = queue_module.SimpleQueue()
        pool = ThreadPoolExecutor(KEEPER_CONNECTIONS, f"keeper:{self.settings.queue_name}")
        try:
            while not self._done.wait(KEEPER_TICK_SECONDS):
                now = self._clock()
                with self._in_flight_lock:
                    batches = [b for b in self._in_flight.values() if not b.abandoned and not b.released]
                for batch in batches:
                    if not self._can_extend or batch.visible_until() - batch.visibility_seconds / 2 > now:
                        continue
                    if now - batch.received_at >= self.settings.max_hold_seconds:
                        self._release(batch, now)
                    else:
                        self._extend(pool, idle, batch)
        finally:
            pool.shutdown()
            while not idle.empty():
                idle.get().close()

    def _release(self, batch: Batch, now: float) -> None:
        """Stop extending a batch held past ``max_hold_seconds``: MNS makes its messages visible again.

        Held undeleted for 30 minutes, a message trips MNS's abnormal-consumption rule (receives slow down
        sharply, reference 3.9) however often it was extended. So a batch stuck behind a sink outage is let
        go well before: it is redelivered once the sinks are back, and its dedupe keys absorb the repeat.
        """
        batch.released = True
        self.events.visibility_released(self.settings.queue_name, len(batch.messages), now - batch.received_at)

    def _extend(self, pool: ThreadPoolExecutor, idle: queue_module.SimpleQueue[MnsQueue], batch: Batch) -> None:
        """Extend the messages of the batch due for it, in parallel.

        A message whose extension fails (429, 5xx, network, token) does not stop the others: it stays
        due and is retried on the next tick. ``AccessDenied`` means the queue token may never extend.
        """
        queue = self.settings.queue_name
        seconds = max(self.settings.visibility_extension_seconds, int(batch.visibility_seconds))

        def extend(item: InFlight) -> AlicomError | None:
            try:
                client = idle.get_nowait()
            except queue_module.Empty:
                client = self._make_client()
            started = self._clock()
            try:
                item.handle, _ = client.change_visibility(item.handle, seconds)
                item.visible_until = started + seconds
            except MessageGone as exc:
                item.visible_until = math.inf
                return exc
            except (QueueAuthError, QueueUnavailable, TokenError) as exc:
                return exc
            finally:
                idle.put(client)
            return None

        with batch.lock:
            now = self._clock()
            # Not due: extended on an earlier tick (after a partial failure), or gone.
            due = [item for item in batch.messages if item.visible_until - now < batch.visibility_seconds / 2]
            errors = list(pool.map(extend, due))
            extended = errors.count(None)
            if extended:
                batch.visibility_seconds = float(seconds)
        if extended:
            self.events.visibility_extended(queue, extended, seconds)
        failed = [error for error in errors if error is not None and not isinstance(error, MessageGone)]
        for error in failed:
            if isinstance(error, QueueThrottled):
                self.control.throttled()
                self.events.throttled(queue, "ChangeMessageVisibility", KEEPER_TICK_SECONDS)
        if any(isinstance(error, QueueAuthError) and error.code == "AccessDenied" for error in failed):
            self._can_extend = False
            self.events.visibility_not_allowed(queue, "AccessDenied")
            return
        if any(isinstance(error, QueueAuthError) for error in failed):
            self.tokens.invalidate(self.tokens.current())
        other = [error.code for error in failed if not isinstance(error, QueueThrottled)]
        if other:
            self.events.visibility_failed(queue, len(other), other[0])
