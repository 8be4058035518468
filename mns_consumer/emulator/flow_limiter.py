"""SMQ's flow limiter: HTTP 429 ``TooManyRequests``, answered after a hold (reference 3.9).

The real service refuses a request with 429 and the message "The request is denied by cluster flow
limiter for too many requests." after holding it on the server (about 500 ms; 10 to 500 ms, at most
5 s, in the current docs). It does so for these reasons, each one a rule here:

``cluster``
    Temporary throttling while the service scales out after a burst: any MNS call, with
    ``throttle_probability``, whatever the load. This is how a test asks for "30 % of calls get 429".
``account_tps``
    The account's budget, ``account_tps`` a second (default 20,000). Each call counts one, except
    batch operations, which count one per message (BatchSendMessage and BatchDeleteMessage by the
    messages in the request, BatchReceiveMessage and BatchPeekMessage by the messages answered).
    A call is refused once the window's count has reached the budget; refused calls are not counted.

And, per queue, "abnormal consumption" (a client receiving without deleting) throttles receives on that
queue (ReceiveMessage, BatchReceiveMessage; deletes stay open, so the client can recover):

``received_not_deleted``
    ``max_received_not_deleted`` (default 5,000) messages are received and not deleted: handed out by
    a receive, neither deleted nor visible again.
``received_not_deleted_rate``
    Within the window, messages received minus messages deleted exceed ``max_received_not_deleted_tps``
    a second (default 1,000).
``received_not_deleted_age``
    A message has been held, received and not deleted, for more than ``max_received_not_deleted_seconds``
    (default 30 minutes) since the receive that handed it out; visibility changes do not restart it.

What a tripped rule does is unconfirmed beyond "receiving slows down sharply"; the emulator refuses
every receive on that queue while the rule holds, and lets receives through again as soon as it no
longer does (messages deleted, or visible again after their visibility timeout). Which of these rules
apply to Alibaba's own receipt queues is unconfirmed too; the reference assumes they all do.

Rates are counted in windows of ``window_seconds`` of emulator time (default one second), each starting
at the first call after the previous one ended, so a test can widen the window instead of racing it.
All of it is off until switched on (:meth:`FlowLimiter.configure`), so other tests keep their meaning.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from mns_consumer.emulator.clock import Clock
from mns_consumer.emulator.queues import Consumption, MnsFault


def too_many_requests() -> MnsFault:
    """The answer of every rule (reference 3.9)."""
    return MnsFault("TooManyRequests", 429, "The request is denied by cluster flow limiter for too many requests.")


RULES = ("cluster", "account_tps", "received_not_deleted", "received_not_deleted_rate", "received_not_deleted_age")
RECEIVES = frozenset({"ReceiveMessage", "BatchReceiveMessage"})


@dataclass(frozen=True)
class FlowLimits:
    """The thresholds of the flow limiter, with the documented defaults; 0 switches a rule off.

    Attributes:
        hold_seconds: How long a refused request is held before the 429 is sent.
        account_tps: The account's budget, calls (batch operations: messages) a second.
        max_received_not_deleted: Per queue: messages received and not deleted that trip the rule.
        max_received_not_deleted_tps: Per queue: received-minus-deleted a second above which it trips.
        max_received_not_deleted_seconds: Per queue: how long a message may be held before it trips.
        window_seconds: Length of the windows the two rates are counted in (emulator time).
        throttle_probability: Share of MNS calls refused regardless of load (the ``cluster`` rule).
    """

    hold_seconds: float = 0.5
    account_tps: float = 20_000
    max_received_not_deleted: int = 5_000
    max_received_not_deleted_tps: float = 1_000
    max_received_not_deleted_seconds: float = 1_800
    window_seconds: float = 1.0
    throttle_probability: float = 0.0

    def __post_init__(self) -> None:
        for item in fields(self):
            if getattr(self, item.name) < 0:
                raise ValueError(f"{item.name} must be zero or more")
        if self.window_seconds <= 0:
            raise ValueError("window_seconds must be more than zero")
        if self.throttle_probability > 1:
            raise ValueError("throttle_probability must be between 0 and 1")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FlowLimits:
        """Limits from JSON (the admin API); fields left out keep their defaults.

        Raises:
            TypeError: For an unknown field.
            ValueError: For a value out of range.
        """
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The limits as JSON-ready data."""
        return asdict(self)


@dataclass
class _Window:
    """One counting window: when it started and a count at (or since) its start."""

    started: float
    count: int


class FlowLimiter:
    """Decides which MNS calls get 429 and counts the refusals, for one emulator (one account)."""

    def __init__(self, clock: Clock, draw: Callable[[], float], limits: FlowLimits | None = None) -> None:
        self._clock = clock
        self._draw = draw
        self._lock = threading.Lock()
        self._limits = limits
        self._account = _Window(0.0, 0)
        self._queues: dict[str, _Window] = {}
        self._refused: defaultdict[str, Counter[str]] = defaultdict(Counter)

    @property
    def limits(self) -> FlowLimits | None:
        """The live limits, or None while the limiter is off."""
        return self._limits

    def configure(self, limits: FlowLimits | None) -> None:
        """Switch the limiter on with these limits (fresh windows), or off with None."""
        with self._lock:
            self._limits = limits
            self._account = _Window(0.0, 0)
            self._queues.clear()

    def check(self, operation: str, queue: str | None, consumption: Callable[[], Consumption | None]) -> str | None:
        """The rule that refuses this call, or None to serve it; a refusal is counted.

        Args:
            operation: The MNS operation, e.g. ``BatchReceiveMessage``.
            queue: The queue it addresses, if any.
            consumption: Reads the queue's consumption figures (called for receives only; None: no such queue).
        """
        limits = self._limits
        if limits is None:
            return None
        rule = self._rule(limits, operation, queue, consumption)
        if rule is not None:
            with self._lock:
                self._refused[rule][operation] += 1
        return rule

    def charge(self, units: int) -> None:
        """Count a served call against the account's budget: 1, or its messages for a batch operation."""
        if self._limits is None:
            return
        with self._lock:
            self._roll(self._account, self._limits, self._clock.now(), 0)
            self._account.count += units

    def refused(self) -> dict[str, dict[str, int]]:
        """Refusals so far, by rule and then by operation."""
        with self._lock:
            return {rule: dict(by_operation) for rule, by_operation in self._refused.items()}

    def state(self) -> dict[str, Any]:
        """What the admin state shows: whether it is on, its limits, and the refusals."""
        refused = self.refused()
        limits = self._limits
        return {
            "enabled": limits is not None,
            "limits": limits.to_dict() if limits else None,
            "refused": refused,
            "refused_total": sum(sum(by_operation.values()) for by_operation in refused.values()),
        }

    # -- the rules -------------------------------------------------------------------------------

    def _rule(
        self, limits: FlowLimits, operation: str, queue: str | None, consumption: Callable[[], Consumption | None]
    ) -> str | None:
        if limits.throttle_probability and self._draw() < limits.throttle_probability:
            return "cluster"
        now = self._clock.now()
        with self._lock:
            self._roll(self._account, limits, now, 0)
            if limits.account_tps and self._account.count >= limits.account_tps * limits.window_seconds:
                return "account_tps"
        figures = consumption() if operation in RECEIVES and queue is not None else None
        if queue is None or figures is None:
            return None
        if limits.max_received_not_deleted and figures.received_not_deleted >= limits.max_received_not_deleted:
            return "received_not_deleted"
        if limits.max_received_not_deleted_tps:
            net = figures.received_total - figures.deleted_total
            with self._lock:
                window = self._queues.setdefault(queue, _Window(now, net))
                self._roll(window, limits, now, net)
                grown = net - window.count
            if grown > limits.max_received_not_deleted_tps * limits.window_seconds:
                return "received_not_deleted_rate"
        oldest = figures.oldest_received_ms
        age_limit = limits.max_received_not_deleted_seconds
        if age_limit and oldest is not None and now * 1000 - oldest > age_limit * 1000:
            return "received_not_deleted_age"
        return None

    @staticmethod
    def _roll(window: _Window, limits: FlowLimits, now: float, count: int) -> None:
        """Start a new window at ``now`` with ``count`` if the current one has ended (caller holds the lock)."""
        if now >= window.started + limits.window_seconds:
            window.started = now
            window.count = count
