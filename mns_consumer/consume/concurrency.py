"""How many receives a queue runs at once, how many messages it may hold, and how fast it may take them.

Three small pieces the poller's receivers share: :class:`ReceiverControl` (how many receivers),
:class:`MessageBudget` (how many messages in flight), :class:`ReceiptRate` (how many a second).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

SCALE_UP_AFTER_FULL = 3
"""Consecutive full batches (all receivers together) before one more receiver starts."""
THROTTLE_DECREASE_INTERVAL_SECONDS = 1.0
"""At most one halving per this long: the 429s of calls already under way answer for one decrease, as
TCP cuts its window once per round trip, not once per lost packet."""
SCALE_DOWN_AFTER_SHORT = 4
"""Consecutive short or empty batches before one receiver stops; at 30 % random short batches a run
of four happens about once in 120 receives, a run of three full ones every few: the count stays up."""


class ReceiverControl:
    """The target number of concurrent receivers of one queue, between 1 and ``max_receivers``.

    Adapted like TCP's congestion window (AIMD): one more after a run of full batches (a backlog the sinks
    keep up with), one fewer after a run of short or empty ones (caught up), half as many on a 429 from
    MNS's flow limiter (once a second at most). SMQ answers short batches under load too, so a single
    short batch never means "drained": both directions need a run. Receiver 0 always runs (the long
    poll); receiver ``i`` runs while ``i < target``, then ends. Thread-safe.
    """

    def __init__(
        self,
        max_receivers: int,
        batch_size: int,
        on_change: Callable[[int, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_receivers = max_receivers
        self._clock = clock
        self._decreased_at = -math.inf
        self.batch_size = batch_size
        self._on_change = on_change
        self._target = 1
        self._full_run = 0
        self._short_run = 0
        self._lock = threading.Lock()

    @property
    def target(self) -> int:
        """Receivers that should run now."""
        return self._target

    def observe(self, received: int, *, room_for_more: bool) -> int:
        """Count a receive's answer of ``received`` messages and return the new target.

        A full batch adds a receiver only with ``room_for_more`` (the in-flight budget and the dispatcher
        keep up with another one).
        """
        with self._lock:
            before = self._target
            full = received >= self.batch_size
            self._full_run, self._short_run = (self._full_run + 1, 0) if full else (0, self._short_run + 1)
            if self._full_run >= SCALE_UP_AFTER_FULL and room_for_more and self._target < self.max_receivers:
                self._target += 1
                self._full_run = 0
            elif self._short_run >= SCALE_DOWN_AFTER_SHORT and self._target > 1:
                self._target -= 1
                self._short_run = 0
            after = self._target
        return self._report(before, after, "backlog" if after > before else "caught_up")

    def throttled(self) -> int:
        """A 429: halve the receivers (multiplicative decrease, once a second at most) and start both runs again."""
        with self._lock:
            before = self._target
            now = self._clock()
            if now - self._decreased_at >= THROTTLE_DECREASE_INTERVAL_SECONDS:
                self._target = max(1, self._target // 2)
                self._decreased_at = now
                self._full_run = self._short_run = 0
            after = self._target
        return self._report(before, after, "throttled")

    def _report(self, before: int, after: int, reason: str) -> int:
        """Tell ``on_change`` (outside the lock) when the target moved; return it."""
        if after != before and self._on_change is not None:
            self._on_change(after, reason)
        return after


class MessageBudget:
    """Messages received and not yet deleted or given up, against a cap (``max_in_flight_messages``).

    A receiver reserves a full batch before it receives and gives back what did not come, so the cap
    holds however many receivers run, whatever MNS answers.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._held = 0
        self._freed = threading.Condition()

    @property
    def held(self) -> int:
        """Messages reserved now (received and not settled, plus receives in progress)."""
        return self._held

    def available(self) -> int:
        """Messages that could still be reserved."""
        return self.cap - self._held

    def reserve(self, count: int, seconds: float) -> bool:
        """Reserve ``count`` messages, waiting up to ``seconds`` for room; True if reserved."""
        with self._freed:
            if not self._freed.wait_for(lambda: self._held + count <= self.cap, seconds):
                return False
            self._held += count
            return True

    def release(self, count: int) -> None:
        """Give back ``count`` messages (not received, deleted or given up)."""
        if count <= 0:
            return
        with self._freed:
            self._held = max(0, self._held - count)
            self._freed.notify_all()


class ReceiptRate:
    """A token bucket of messages a second (``max_receipts_per_second``), with a one-second burst.

    For users who share an account's budget with other consumers. Receivers wait for a positive balance
    and pay for what came afterwards: the average rate holds, a burst exceeds it by a batch per receiver.
    """

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self._clock = clock
        self._tokens = per_second
        self._updated = clock()
        self._lock = threading.Lock()

    def seconds_to_wait(self) -> float:
        """0 when a receive may go now, else how long until the balance is positive."""
        with self._lock:
            self._refill()
            return 0.0 if self._tokens > 0 else (1 - self._tokens) / self.per_second

    def spend(self, count: int) -> None:
        """Pay for ``count`` messages received."""
        with self._lock:
            self._refill()
            self._tokens -= count

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.per_second, self._tokens + (now - self._updated) * self.per_second)
        self._updated = now
