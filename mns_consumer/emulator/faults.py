"""Fault injection: rules that make the emulator misbehave the way networks and Alibaba do.

A :class:`FaultRule` matches requests by service and operation and fires a fixed number of times, or
until cleared, optionally with a probability drawn from a seeded generator so runs repeat. Rules are
switched at run time from Python (:meth:`Faults.add`) or through the admin endpoint
(``POST /__emulator/faults``).

Kinds:

``latency``
    Sleep ``seconds`` before answering, give or take ``jitter_seconds`` (drawn uniformly, as
    ``tc netem delay 50ms 10ms`` does). With ``handshake``, the first request on a new connection
    also pays the round trips of setting it up: one for TCP, plus one for TLS 1.3 (two for 1.2).
    A WAN profile (:mod:`mns_consumer.emulator.wan`) is one such rule.
``error``
    Answer with ``status`` and ``code`` in the service's own error format (MNS XML, POP JSON);
    a ``status`` of 200 on Dybaseapi/Dysmsapi gives HTTP 200 with ``Code`` other than ``"OK"``.
``drop``
    Send the status line and half the headers, then close the connection (a response cut mid-way).
``hang``
    Accept the request and never answer; the connection is held for ``seconds`` (default: until the
    emulator stops) and then closed.
``duplicate``
    On a receive, every message handed out is also enqueued again as a new message with the same
    body: Alibaba's duplicate receipts.
``malformed``
    On a receive, the bodies of the messages handed out are corrupted in the queue (not base64, or
    base64 of broken JSON), so they stay poison on every redelivery.
``lose``
    On the receipt producer, receipts are recorded in the send log but never enqueued: the receipts
    that QuerySendDetails exists to recover.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

FaultKind = Literal["latency", "error", "drop", "hang", "duplicate", "malformed", "lose"]
Service = Literal["mns", "dybaseapi", "dysmsapi", "producer", "any"]

FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
SERVICES: tuple[str, ...] = get_args(Service)


@dataclass
class FaultRule:
    """One switchable misbehaviour.

    Attributes:
        kind: What happens (see the module docstring).
        service: Which API it hits: ``mns``, ``dybaseapi``, ``dysmsapi``, ``producer`` or ``any``.
        operation: Restrict to one operation, e.g. ``BatchReceiveMessage`` or ``QueryTokenForMnsQueue``.
        queue: Restrict MNS faults to one queue name.
        times: How many matching requests it fires on; None means until cleared.
        probability: Chance of firing on a matching request (0..1), from the emulator's seeded RNG.
        seconds: Delay for ``latency``; hold time for ``hang`` (None holds until the emulator stops).
        jitter_seconds: For ``latency``: each round trip takes ``seconds`` plus or minus up to this.
        handshake: For ``latency``: a new connection's first request also pays its handshake round trips.
        status: HTTP status for ``error``.
        code: Error code for ``error``, e.g. ``InternalError``, ``Throttling``, ``QpsLimitExceeded``.
        message: Error message for ``error``.
    """

    kind: FaultKind
    service: Service = "any"
    operation: str | None = None
    queue: str | None = None
    times: int | None = None
    probability: float = 1.0
    seconds: float | None = None
    jitter_seconds: float = 0.0
    handshake: bool = False
    status: int = 503
    code: str = "ServiceUnavailable"
    message: str = "Injected fault."
    fired: int = field(default=0, compare=False)
    rule_id: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {', '.join(FAULT_KINDS)}")
        if self.service not in SERVICES:
            raise ValueError(f"unknown service {self.service!r}; known: {', '.join(SERVICES)}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be zero or more")
        if (self.seconds is not None and self.seconds < 0) or self.jitter_seconds < 0:
            raise ValueError("seconds and jitter_seconds must be zero or more")

    def matches(self, service: str, operation: str, queue: str | None) -> bool:
        """Whether this rule applies to a request (ignoring its remaining count and probability)."""
        return (
            (self.service in ("any", service))
            and (self.operation is None or self.operation == operation)
            and (self.queue is None or self.queue == queue)
        )

    def to_dict(self) -> dict[str, Any]:
        """The rule as JSON-ready data, as the admin endpoint shows it."""
        return asdict(self)


class Faults:
    """The live set of fault rules, shared by every request thread."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._random = random.Random(seed)
        self._next_id = 1

    def add(self, rule: FaultRule) -> FaultRule:
        """Switch a rule on; returns it with its id set."""
        with self._lock:
            rule.rule_id = self._next_id
            self._next_id += 1
            self._rules.append(rule)
            return rule

    def remove(self, rule_id: int) -> bool:
        """Switch one rule off by its id. Returns whether it was still live."""
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.rule_id != rule_id]
            return len(self._rules) < before

    def clear(self, kind: str | None = None) -> int:
        """Switch off every rule, or every rule of one kind. Returns how many were removed."""
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if kind is not None and r.kind != kind]
            return before - len(self._rules)

    def rules(self) -> list[FaultRule]:
        """A snapshot of the live rules."""
        with self._lock:
            return list(self._rules)

    def fire(self, service: str, operation: str, queue: str | None = None) -> list[FaultRule]:
        """The rules that fire on this request, consuming one of each rule's remaining times."""
        fired: list[FaultRule] = []
        with self._lock:
            if not self._rules:
                return fired
            for rule in self._rules:
                if not rule.matches(service, operation, queue):
                    continue
                if rule.probability < 1.0 and self._random.random() >= rule.probability:
                    continue
                rule.fired += 1
                if rule.times is not None:
                    rule.times -= 1
                fired.append(rule)
            self._rules = [r for r in self._rules if r.times is None or r.times > 0]
        return fired

    def draw(self) -> float:
        """A number in [0, 1) from the seeded generator, for producer-side choices."""
        with self._lock:
            return self._random.random()

    def draw_below(self, limit: int) -> int:
        """A whole number in [0, limit) from the seeded generator."""
        with self._lock:
            return self._random.randrange(limit)

    def delay_seconds(self, rule: FaultRule, round_trips: int) -> float:
        """How long a ``latency`` rule holds a request that makes ``round_trips`` round trips.

        Each round trip draws its own jitter, uniform in ``seconds +- jitter_seconds`` and never below zero.
        """
        base = rule.seconds or 0.0
        if not rule.jitter_seconds:
            return base * round_trips
        with self._lock:
            draws = [self._random.uniform(-rule.jitter_seconds, rule.jitter_seconds) for _ in range(round_trips)]
        return sum(max(0.0, base + jitter) for jitter in draws)
