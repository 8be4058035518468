"""MNS queue semantics: visibility, receipt handles, priorities, delays, retention and long polls.

Pure state with no HTTP in it; :mod:`mns_consumer.emulator.mns_api` puts the wire around it. Each
operation raises :class:`MnsFault` with the code and status the real service uses (reference 3.3),
and every rule here cites the part of reference section 3 it reproduces.

Time comes from the shared :class:`~mns_consumer.emulator.clock.Clock`. Visibility is evaluated
lazily: a message whose ``NextVisibleTime`` has passed is active again the next time anyone looks, and
its old receipt handle is dead from that instant.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import itertools
import re
import secrets
import threading
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from mns_consumer.emulator.clock import Clock
from mns_consumer.emulator.settings import QueueDefaults

MAX_BATCH = 16
MAX_WAIT_SECONDS = 30
MAX_BATCH_SEND_BYTES = 65536
MAX_VISIBILITY_SECONDS = 43200
MAX_DELAY_SECONDS = 604800
DELETION_LOG = 200_000
"""How many deletions (enqueue ms, delete ms) a queue remembers, for enqueue-to-delete latency."""
QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,119}$")

State = Literal["active", "inactive", "delayed"]


class MnsFault(Exception):  # noqa: N818  (a wire-level answer, named as MNS names it)
    """An MNS error answer: the code, the HTTP status and the message the service would send."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.status = status
        self.message = message


def queue_not_exist(name: str) -> MnsFault:
    """The answer for an unknown queue."""
    return MnsFault("QueueNotExist", 404, f"The queue name you provided is not exist: {name}.")


def message_not_exist() -> MnsFault:
    """The answer for an empty receive (the idle path of every long poll) and for gone messages."""
    return MnsFault("MessageNotExist", 404, "Message not exist.")


def receipt_handle_error() -> MnsFault:
    """The answer for a receipt handle that is unknown, stale or already used."""
    return MnsFault("ReceiptHandleError", 400, "The receipt handle you provide is not valid.")


def invalid_argument(name: str, low: int, high: int, unit: str = "") -> MnsFault:
    """The answer for a value out of its range, worded as MNS words it."""
    suffix = f" {unit}" if unit else ""
    return MnsFault("InvalidArgument", 400, f"The value of {name} should between {low} and {high}{suffix}.")


def body_md5(body: str) -> str:
    """``MessageBodyMD5``: upper-case hex MD5 of the body string as stored (reference 3.5)."""
    return hashlib.md5(body.encode("utf-8"), usedforsecurity=False).hexdigest().upper()


@dataclass(frozen=True)
class QueueAttributes:
    """The settable attributes of a queue (reference 3.4, CreateQueue ranges)."""

    delay_seconds: int = 0
    maximum_message_size: int = 65536
    message_retention_period: int = 345600
    visibility_timeout: int = 30
    polling_wait_seconds: int = 0
    logging_enabled: bool = False

    @classmethod
    def from_defaults(cls, defaults: QueueDefaults) -> QueueAttributes:
        """The attributes of a receipt queue created from emulator settings."""
        return cls(
            delay_seconds=defaults.delay_seconds,
            maximum_message_size=defaults.maximum_message_bytes,
            message_retention_period=defaults.message_retention_seconds,
            visibility_timeout=defaults.visibility_timeout_seconds,
            polling_wait_seconds=defaults.polling_wait_seconds,
        )

    def validate(self) -> QueueAttributes:
        """Check every attribute against its MNS range.

        Raises:
            MnsFault: ``InvalidArgument`` naming the first attribute out of range.
        """
        ranges = (
            ("DelaySeconds", self.delay_seconds, 0, MAX_DELAY_SECONDS, "seconds"),
            ("MaximumMessageSize", self.maximum_message_size, 1024, 65536, "bytes"),
            ("MessageRetentionPeriod", self.message_retention_period, 60, 604800, "seconds"),
            ("VisibilityTimeout", self.visibility_timeout, 1, MAX_VISIBILITY_SECONDS, "seconds"),
            ("PollingWaitSeconds", self.polling_wait_seconds, 0, MAX_WAIT_SECONDS, "seconds"),
        )
        for name, value, low, high, unit in ranges:
            if not low <= value <= high:
                raise invalid_argument(name, low, high, unit)
        return self


@dataclass
class StoredMessage:
    """One message as the queue holds it."""

    message_id: str
    body: str
    body_md5: str
    priority: int
    enqueue_ms: int
    visible_at_ms: int
    state: State
    sequence: int
    first_dequeue_ms: int = 0
    dequeue_count: int = 0
    receipt_handle: str = ""
    version: int = 0
    issued_handles: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Delivery:
    """A message as one receive (or peek) hands it out: a snapshot, safe to render outside the lock."""

    message_id: str
    body: str
    body_md5: str
    enqueue_ms: int
    first_dequeue_ms: int
    dequeue_count: int
    priority: int
    receipt_handle: str = ""
    next_visible_ms: int = 0


@dataclass(frozen=True)
class SendResult:
    """What SendMessage answers for one message."""

    message_id: str
    body_md5: str
    receipt_handle: str = ""


@dataclass(frozen=True)
class Consumption:
    """How a queue's consumers receive and delete: what the flow limiter's per-queue rules read (reference 3.9).

    Attributes:
        received_not_deleted: Messages a receive handed out that are neither deleted nor visible again.
        received_not_deleted_max: The most there have been at once since the queue was created.
        received_total: Messages handed out by receives, ever.
        deleted_total: Messages deleted by a consumer (DeleteMessage, BatchDeleteMessage), ever.
        oldest_received_ms: When the receive that handed out the longest-held of them ran (ms), or None.
            A visibility change does not restart it: the consumer still holds the message.
        short_batches: BatchReceiveMessage answers cut short (fewer messages than were visible).
    """

    received_not_deleted: int
    received_not_deleted_max: int
    received_total: int
    deleted_total: int
    oldest_received_ms: int | None
    short_batches: int


ShortBatch = Callable[[int], "int | None"]
"""Given how many messages a batch receive could take, how many it takes instead (fewer), or None for all."""


@dataclass(frozen=True)
class QueueCounts:
    """Message counts by state, for GetQueueAttributes."""

    active: int
    inactive: int
    delayed: int


class _DeletionLog:
    """The latest ``capacity`` deletions as (EnqueueTime, delete time) in ms, oldest first.

    Two arrays used as a ring: 17 bytes a deletion, where a deque of tuples of ints takes 136 (tracemalloc
    at 200,000 entries); the log is always on, and a long-running emulator fills it.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._enqueued = array("q")
        self._deleted = array("q")
        self._next = 0  # where the next deletion goes once the arrays are full

    def add(self, enqueued_ms: int, deleted_ms: int) -> None:
        if len(self._enqueued) < self._capacity:
            self._enqueued.append(enqueued_ms)
            self._deleted.append(deleted_ms)
            return
        self._enqueued[self._next] = enqueued_ms
        self._deleted[self._next] = deleted_ms
        self._next = (self._next + 1) % self._capacity

    def items(self) -> list[tuple[int, int]]:
        order = [*range(self._next, len(self._enqueued)), *range(self._next)]
        return [(self._enqueued[i], self._deleted[i]) for i in order]

    def clear(self) -> None:
        self._enqueued = array("q")
        self._deleted = array("q")
        self._next = 0


@dataclass
class _LongPollGate:
    waiting: int = 0


@dataclass
class Queue:
    """One MNS queue with its messages; every method is safe to call from many threads."""

    name: str
    attributes: QueueAttributes
    clock: Clock
    created_s: int
    modified_s: int
    max_long_polls: int
    _lock: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _messages: dict[str, StoredMessage] = field(default_factory=dict, repr=False)
    _handles: dict[str, str] = field(default_factory=dict, repr=False)
    _ready: list[tuple[int, int, str, int]] = field(default_factory=list, repr=False)
    _timers: list[tuple[int, int, str, int]] = field(default_factory=list, repr=False)
    _by_age: deque[tuple[int, str]] = field(default_factory=deque, repr=False)
    _gate: _LongPollGate = field(default_factory=_LongPollGate, repr=False)
    # Kept with every state change, so GetQueueAttributes and the admin state cost O(1), as on MNS.
    _state_counts: dict[State, int] = field(
        default_factory=lambda: {"active": 0, "inactive": 0, "delayed": 0}, repr=False
    )
    _deletions: _DeletionLog = field(default_factory=lambda: _DeletionLog(DELETION_LOG), repr=False)
    _first_received_ms: int | None = field(default=None, repr=False)
    # Message id -> when the receive that handed it out ran, in receive (so time) order: the oldest is first.
    _held: dict[str, int] = field(default_factory=dict, repr=False)
    _held_max: int = field(default=0, repr=False)
    _received_total: int = field(default=0, repr=False)
    _deleted_total: int = field(default=0, repr=False)
    _short_batches: int = field(default=0, repr=False)
    _sequence: Iterator[int] = field(default_factory=itertools.count, repr=False)
    _id_prefix: str = field(default_factory=lambda: secrets.token_hex(8).upper(), repr=False)

    # -- producing -------------------------------------------------------------------------------

    def send(self, body: str, *, priority: int | None = None, delay_seconds: int | None = None) -> SendResult:
        """Enqueue one message (SendMessage).

        Raises:
            MnsFault: ``InvalidArgument`` for a priority, delay or body size out of range.
        """
        self._check_message(body, priority, delay_seconds)
        with self._lock:
            result = self._enqueue(body, priority, delay_seconds)
            self._lock.notify_all()
            return result

    def send_batch(self, items: list[tuple[str, int | None, int | None]]) -> list[SendResult | MnsFault]:
        """Enqueue several messages (BatchSendMessage); each item is (body, priority, delay_seconds).

        Items that break a per-message limit fail alone; the others are enqueued.

        Raises:
            MnsFault: ``InvalidArgument`` when the batch is empty, has more than 16 messages or more
                than 64 KB of bodies (the whole request fails, reference 3.4).
        """
        if not 1 <= len(items) <= MAX_BATCH:
            raise MnsFault("InvalidArgument", 400, f"The count of message should between 1 and {MAX_BATCH}.")
        if sum(len(body.encode("utf-8")) for body, _, _ in items) > MAX_BATCH_SEND_BYTES:
            raise MnsFault(
                "InvalidArgument", 400, f"The total size of messages should not be larger than {MAX_BATCH_SEND_BYTES}."
            )
        results: list[SendResult | MnsFault] = []
        with self._lock:
            for body, priority, delay in items:
                try:
                    self._check_message(body, priority, delay)
                except MnsFault as fault:
                    results.append(fault)
                    continue
                results.append(self._enqueue(body, priority, delay))
            self._lock.notify_all()
        return results

    # -- consuming -------------------------------------------------------------------------------

    def receive(
        self,
        count: int,
        wait_seconds: int | None,
        *,
        should_stop: threading.Event,
        short_batch: ShortBatch | None = None,
    ) -> list[Delivery]:
        """Receive up to ``count`` messages, long-polling up to ``wait_seconds`` (None: the queue's default).

        Each message handed out turns inactive for the queue's VisibilityTimeout, gets a new receipt
        handle, and counts one more dequeue (reference 3.5). A message sent while a receive waits is
        returned at once. When ``max_long_polls`` receives already wait on this queue, a further one
        that would have to wait gets MessageNotExist immediately, as the real service does.

        ``short_batch``, when given, may cut the answer short whenever messages are visible, as SMQ's
        data nodes do (reference 3.10): it is asked with the number the receive could take and answers
        a smaller one, or None to take them all. Cut to none, the receive answers MessageNotExist at once.

        Raises:
            MnsFault: ``InvalidArgument`` for count or wait out of range; ``MessageNotExist`` when
                nothing arrived in time.
        """
        if not 1 <= count <= MAX_BATCH:
            raise invalid_argument("numOfMessages", 1, MAX_BATCH)
        if wait_seconds is None:
            wait_seconds = self.attributes.polling_wait_seconds
        if not 0 <= wait_seconds <= MAX_WAIT_SECONDS:
            raise invalid_argument("waitseconds", 0, MAX_WAIT_SECONDS, "seconds")
        deadline = self.clock.now() + wait_seconds
        with self._lock:
            deliveries = self._take(count, short_batch)
            if deliveries or wait_seconds == 0:
                return self._or_empty(deliveries)
            if self._gate.waiting >= self.max_long_polls:
                raise message_not_exist()
            self._gate.waiting += 1
            try:
                while not deliveries and not should_stop.is_set():
                    remaining = deadline - self.clock.now()
                    if remaining <= 0:
                        break
                    self._lock.wait(min(remaining, self._seconds_to_next_timer(), 1.0))
                    deliveries = self._take(count, short_batch)
            finally:
                self._gate.waiting -= 1
            return self._or_empty(deliveries)

    def peek(self, count: int) -> list[Delivery]:
        """Look at up to ``count`` active messages without changing anything (PeekMessage).

        Raises:
            MnsFault: ``InvalidArgument`` for count out of range; ``MessageNotExist`` when none is active.
        """
        if not 1 <= count <= MAX_BATCH:
            raise invalid_argument("numOfMessages", 1, MAX_BATCH)
        with self._lock:
            self._promote()
            entries = heapq.nsmallest(count, (e for e in self._ready if self._is_current(e)))
            return self._or_empty([self._snapshot(self._messages[e[2]]) for e in entries])

    def delete(self, receipt_handle: str) -> None:
        """Delete the message a live receipt handle points at (DeleteMessage).

        Raises:
            MnsFault: ``ReceiptHandleError`` when the handle is unknown, already used, or stale because
                the message became visible again or got a newer handle (reference 3.4, pitfall 11).
        """
        with self._lock:
            self._promote()
            message = self._live_message(receipt_handle)
            self._remove(message)
            self._deleted_total += 1
            self._deletions.add(message.enqueue_ms, self.clock.now_ms())

    def delete_batch(self, receipt_handles: list[str]) -> list[tuple[str, MnsFault]]:
        """Delete several messages (BatchDeleteMessage); returns only the handles that failed.

        Raises:
            MnsFault: ``InvalidArgument`` for an empty batch or more than 16 handles.
        """
        if not 1 <= len(receipt_handles) <= MAX_BATCH:
            raise MnsFault("InvalidArgument", 400, f"The count of receipt handles should between 1 and {MAX_BATCH}.")
        failures: list[tuple[str, MnsFault]] = []
        with self._lock:
            self._promote()
            now = self.clock.now_ms()
            for handle in receipt_handles:
                try:
                    message = self._live_message(handle)
                except MnsFault as fault:
                    failures.append((handle, fault))
                    continue
                self._remove(message)
                self._deleted_total += 1
                self._deletions.add(message.enqueue_ms, now)
        return failures

    def change_visibility(self, receipt_handle: str, visibility_timeout: int) -> tuple[str, int]:
        """Make a received message invisible for ``visibility_timeout`` seconds from now.

        Returns the new receipt handle, which replaces the old one, and the new NextVisibleTime in ms
        (reference 3.4, ChangeMessageVisibility).

        Raises:
            MnsFault: ``InvalidArgument`` for a timeout out of 1..43200; ``MessageNotExist`` when the
                message is gone; ``ReceiptHandleError`` for a stale handle of a message still there.
        """
        if not 1 <= visibility_timeout <= MAX_VISIBILITY_SECONDS:
            raise invalid_argument("VisibilityTimeout", 1, MAX_VISIBILITY_SECONDS, "seconds")
        with self._lock:
            self._promote()
            message_id = self._handles.get(receipt_handle)
            message = self._messages.get(message_id) if message_id else None
            if message is None:
                raise message_not_exist()
            if message.receipt_handle != receipt_handle or message.state != "inactive":
                raise receipt_handle_error()
            now = self.clock.now_ms()
            message.receipt_handle = self._new_handle(message, now)
            self._schedule(message, "inactive", now + visibility_timeout * 1000)
            return message.receipt_handle, message.visible_at_ms

    # -- inspection ------------------------------------------------------------------------------

    def counts(self) -> QueueCounts:
        """How many messages are active, inactive and delayed right now."""
        with self._lock:
            self._promote()
            counts = self._state_counts
            return QueueCounts(counts["active"], counts["inactive"], counts["delayed"])

    def deletions(self, *, clear: bool = False) -> list[tuple[int, int]]:
        """(EnqueueTime, delete time) in ms of the latest messages deleted by a consumer, oldest first.

        Up to :data:`DELETION_LOG` are kept; ``clear`` forgets them after reading.
        """
        with self._lock:
            taken = self._deletions.items()
            if clear:
                self._deletions.clear()
            return taken

    def first_received_ms(self) -> int | None:
        """When a receive first handed out a message of this queue (ms, emulator clock); None before.

        A consumer's throughput is timed from here: it excludes the consumer's own start-up, as a
        client timing itself from its first request would.
        """
        with self._lock:
            return self._first_received_ms

    def consumption(self) -> Consumption:
        """How this queue is being consumed right now (received and not deleted, totals, short batches)."""
        with self._lock:
            self._promote()
            oldest = next(iter(self._held.values()), None)
            return Consumption(
                received_not_deleted=len(self._held),
                received_not_deleted_max=self._held_max,
                received_total=self._received_total,
                deleted_total=self._deleted_total,
                oldest_received_ms=oldest,
                short_batches=self._short_batches,
            )

    def waiting_polls(self) -> int:
        """How many long polls are waiting on this queue right now."""
        with self._lock:
            return self._gate.waiting

    def set_attributes(self, attributes: QueueAttributes) -> None:
        """Replace the queue's attributes (SetQueueAttributes)."""
        attributes.validate()
        with self._lock:
            self.attributes = attributes
            self.modified_s = int(self.clock.now())

    def wake(self) -> None:
        """Wake every waiting long poll so it re-reads the clock (after the clock moved)."""
        with self._lock:
            self._lock.notify_all()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the queue's lock (fault injection uses it to rewrite message bodies in place)."""
        with self._lock:
            yield

    def rewrite_body(self, message_id: str, body: str) -> None:
        """Replace a stored body (the ``malformed`` fault); the MD5 follows."""
        with self._lock:
            message = self._messages.get(message_id)
            if message is not None:
                message.body = body
                message.body_md5 = body_md5(body)

    def message_ids(self) -> list[str]:
        """Ids of every message still in the queue, whatever its state."""
        with self._lock:
            self._promote()
            return list(self._messages)

    # -- internals (caller holds the lock) -------------------------------------------------------

    def _check_message(self, body: str, priority: int | None, delay_seconds: int | None) -> None:
        if not body:
            raise MnsFault("InvalidArgument", 400, "The MessageBody should not be empty.")
        if len(body.encode("utf-8")) > self.attributes.maximum_message_size:
            raise MnsFault(
                "InvalidArgument",
                400,
                f"The length of message should not be larger than MaximumMessageSize "
                f"({self.attributes.maximum_message_size} bytes).",
            )
        if priority is not None and not 1 <= priority <= 16:
            raise invalid_argument("Priority", 1, 16)
        if delay_seconds is not None and not 0 <= delay_seconds <= MAX_DELAY_SECONDS:
            raise invalid_argument("DelaySeconds", 0, MAX_DELAY_SECONDS, "seconds")

    def _enqueue(self, body: str, priority: int | None, delay_seconds: int | None) -> SendResult:
        now = self.clock.now_ms()
        sequence = next(self._sequence)
        delay = self.attributes.delay_seconds if delay_seconds is None else delay_seconds
        # Shaped like the documented ids: <host>-<partition>-<hex enqueue ms>-<sequence>.
        message_id = f"{self._id_prefix}-1-{now:X}-{sequence + 1:09d}"
        message = StoredMessage(
            message_id=message_id,
            body=body,
            body_md5=body_md5(body),
            priority=8 if priority is None else priority,
            enqueue_ms=now,
            visible_at_ms=now,
            state="active",
            sequence=sequence,
        )
        self._messages[message_id] = message
        self._state_counts["active"] += 1
        self._by_age.append((now, message_id))
        if delay > 0:
            # Delayed messages come back with a handle in the docs (reference 3.4, SendMessage).
            message.receipt_handle = self._new_handle(message, now)
            self._schedule(message, "delayed", now + delay * 1000)
            return SendResult(message_id, message.body_md5, message.receipt_handle)
        self._activate(message)
        return SendResult(message_id, message.body_md5)

    def _take(self, count: int, short_batch: ShortBatch | None = None) -> list[Delivery]:
        self._promote()
        now = self.clock.now_ms()
        if short_batch is not None:
            could_take = min(count, self._state_counts["active"])
            cut = short_batch(could_take) if could_take else None
            if cut is not None and cut < could_take:
                self._short_batches += 1
                if cut <= 0:
                    # The data node this receive reached held none of the visible messages (reference 3.10).
                    raise message_not_exist()
                count = cut
        taken: list[Delivery] = []
        while self._ready and len(taken) < count:
            entry = heapq.heappop(self._ready)
            if not self._is_current(entry):
                continue
            message = self._messages[entry[2]]
            if self._expired(message, now):
                self._remove(message)
                continue
            message.dequeue_count += 1
            if not message.first_dequeue_ms:
                message.first_dequeue_ms = now
            message.receipt_handle = self._new_handle(message, now)
            self._schedule(message, "inactive", now + self.attributes.visibility_timeout * 1000)
            self._held[message.message_id] = now
            taken.append(self._snapshot(message))
        if taken:
            self._received_total += len(taken)
            self._held_max = max(self._held_max, len(self._held))
            if self._first_received_ms is None:
                self._first_received_ms = now
        return taken

    def _promote(self) -> None:
        """Drop messages past retention, and turn inactive or delayed ones whose time has come active."""
        now = self.clock.now_ms()
        # Enqueue order is age order, so expired messages are always at the front, whatever their state.
        horizon = now - self.attributes.message_retention_period * 1000
        while self._by_age and self._by_age[0][0] < horizon:
            _, message_id = self._by_age.popleft()
            expired = self._messages.get(message_id)
            if expired is not None:
                self._remove(expired)
        while self._timers and self._timers[0][0] <= now:
            entry = heapq.heappop(self._timers)
            if not self._is_current(entry):
                continue
            message = self._messages[entry[2]]
            if self._expired(message, now):
                self._remove(message)
                continue
            # The message is visible again: whatever handle it had is stale from now on.
            message.receipt_handle = ""
            self._held.pop(message.message_id, None)
            self._activate(message)

    def _set_state(self, message: StoredMessage, state: State) -> None:
        self._state_counts[message.state] -= 1
        self._state_counts[state] += 1
        message.state = state

    def _activate(self, message: StoredMessage) -> None:
        message.version += 1
        self._set_state(message, "active")
        message.visible_at_ms = self.clock.now_ms()
        heapq.heappush(self._ready, (message.priority, message.sequence, message.message_id, message.version))

    def _schedule(self, message: StoredMessage, state: State, at_ms: int) -> None:
        message.version += 1
        self._set_state(message, state)
        message.visible_at_ms = at_ms
        heapq.heappush(self._timers, (at_ms, message.sequence, message.message_id, message.version))

    def _is_current(self, entry: tuple[int, int, str, int]) -> bool:
        message = self._messages.get(entry[2])
        return message is not None and message.version == entry[3]

    def _expired(self, message: StoredMessage, now_ms: int) -> bool:
        return now_ms - message.enqueue_ms > self.attributes.message_retention_period * 1000

    def _live_message(self, receipt_handle: str) -> StoredMessage:
        message_id = self._handles.get(receipt_handle)
        message = self._messages.get(message_id) if message_id else None
        if message is None or message.receipt_handle != receipt_handle or message.state == "active":
            raise receipt_handle_error()
        return message

    def _remove(self, message: StoredMessage) -> None:
        for handle in message.issued_handles:
            self._handles.pop(handle, None)
        del self._messages[message.message_id]
        self._held.pop(message.message_id, None)
        self._state_counts[message.state] -= 1
        # Heap entries of a removed message are skipped lazily by _is_current.

    def _new_handle(self, message: StoredMessage, now_ms: int) -> str:
        # Shaped like the documented handles: "1-" + base64("<seq>-<unix s>-<n>-<n>"); opaque to clients.
        raw = f"{message.sequence + 8589934592}-{now_ms // 1000}-{message.dequeue_count}-{secrets.randbelow(10**6)}"
        handle = "1-" + base64.b64encode(raw.encode("ascii")).decode("ascii")
        # Old handles stay known until the message goes, so a stale one is told apart from a gone message.
        self._handles[handle] = message.message_id
        message.issued_handles.append(handle)
        return handle

    def _seconds_to_next_timer(self) -> float:
        if not self._timers:
            return float(MAX_WAIT_SECONDS)
        return max(0.0, (self._timers[0][0] - self.clock.now_ms()) / 1000) + 0.001

    def _snapshot(self, message: StoredMessage) -> Delivery:
        return Delivery(
            message_id=message.message_id,
            body=message.body,
            body_md5=message.body_md5,
            enqueue_ms=message.enqueue_ms,
            first_dequeue_ms=message.first_dequeue_ms,
            dequeue_count=message.dequeue_count,
            priority=message.priority,
            receipt_handle=message.receipt_handle,
            next_visible_ms=message.visible_at_ms,
        )

    @staticmethod
    def _or_empty(deliveries: list[Delivery]) -> list[Delivery]:
        if not deliveries:
            raise message_not_exist()
        return deliveries


class QueueStore:
    """Every queue of the emulated MNS account, by name."""

    def __init__(self, clock: Clock, max_long_polls_per_queue: int) -> None:
        self._clock = clock
        self._max_long_polls = max_long_polls_per_queue
        self._lock = threading.Lock()
        self._queues: dict[str, Queue] = {}
        clock.on_advance(self._wake_all)

    def create(self, name: str, attributes: QueueAttributes) -> bool:
        """Create a queue (CreateQueue). Returns True when created, False when it already existed alike.

        Raises:
            MnsFault: ``InvalidQueueName`` for a bad name; ``QueueAlreadyExist`` (409) when a queue of
                that name exists with other attributes; ``InvalidArgument`` for attributes out of range.
        """
        if not QUEUE_NAME.match(name):
            raise MnsFault(
                "InvalidQueueName",
                400,
                "The queue name should start with a letter or digit, contain only letters, digits and '-', "
                "and be at most 120 characters.",
            )
        attributes.validate()
        with self._lock:
            existing = self._queues.get(name)
            if existing is not None:
                if existing.attributes != attributes:
                    raise MnsFault("QueueAlreadyExist", 409, f"The queue you want to create is already exist: {name}.")
                return False
            now = int(self._clock.now())
            self._queues[name] = Queue(name, attributes, self._clock, now, now, self._max_long_polls)
            return True

    def get(self, name: str) -> Queue:
        """The queue of that name.

        Raises:
            MnsFault: ``QueueNotExist`` (404).
        """
        with self._lock:
            queue = self._queues.get(name)
        if queue is None:
            raise queue_not_exist(name)
        return queue

    def delete(self, name: str) -> None:
        """Delete a queue and its messages (DeleteQueue); deleting a missing queue is not an error."""
        with self._lock:
            queue = self._queues.pop(name, None)
        if queue is not None:
            queue.wake()

    def names(self) -> list[str]:
        """Names of every queue."""
        with self._lock:
            return sorted(self._queues)

    def _wake_all(self) -> None:
        with self._lock:
            queues = list(self._queues.values())
        for queue in queues:
            queue.wake()
