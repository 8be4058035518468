"""Every Prometheus metric of the daemon, built on an injected registry (never the global one).

Labels stay bounded: queue, message type, sink, stage, operation, status, and the opt-in delivery
labels capped at ``max_label_values``; never receipt ids, phone numbers or message ids. Backfill runs
are labelled ``queue="backfill"`` and push routes ``queue="push:<name>"`` (never their secret URL), so
they count into the same series as queues. docs/metrics-and-alerts.md describes each metric.
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Callable, Sequence
from typing import Literal, TypeAlias, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mns_consumer import __version__
from mns_consumer.outcomes import OUTCOME_CLASSES

QUEUE_STAGES = ("receive", "decode", "sink", "delete", "visibility", "token")
"""The ``stage`` labels of ``mns_consumer_failures_total`` a queue can fail at (backfill adds ``query``)."""

SINK_WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RECEIVE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0)
RECEIPT_DELAY_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0, 86400.0)

PUSH_STAGES = ("route", "request", "body", "spool", "drain")
"""The ``stage`` label of ``mns_consumer_push_rejected_total``: where a push was refused (unknown path;
method, type or size; a body that is not a JSON array; the spool could not store it; draining)."""

PUSH_ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 1.0, 2.5)

QUEUE_LABELS = ("queue", "message_type")

DELIVERY_LATENCY_BUCKETS = tuple(sorted((*RECEIPT_DELAY_BUCKETS, 20.0)))
"""From send to the carrier's report: seconds for most, hours for a phone switched off."""

REPORT_MESSAGE_TYPES = ("SmsReport", "GlobeSmsReport", "DypnsSmsVerifyReport")
"""MessageTypes whose receipts are delivery reports, counted in ``mns_consumer_deliveries_total``."""

REPLY_MESSAGE_TYPES = ("SmsUp",)
"""MessageTypes whose receipts are replies, counted in ``mns_consumer_opt_outs_total`` when they opt out."""

DELIVERY_SERIES = (
    ("delivered", "delivered"),
    *(("failed", klass) for klass in OUTCOME_CLASSES if klass != "delivered"),
    ("expired", "expired"),
)
"""The (outcome, class) pairs a report can take: a delivered report is always ``delivered``, an expired one
(international Status 6) ``expired``, a failed one any other class (or ``expired`` by its code)."""

DeliveryLabel: TypeAlias = Literal["carrier", "sign_name", "template_code"]
"""Optional labels of the delivery counter (``metrics.delivery_labels``)."""

OTHER_LABEL_VALUE = "other"
"""What a capped label reads once it has ``max_label_values`` distinct values."""

MISSING_LABEL_VALUE = "none"
"""What ``sign_name`` or ``template_code`` reads when the receipt has none (SmsReport bodies carry neither)."""


class MetricsConfig(BaseModel):
    """The ``metrics`` section: optional, bounded labels of the delivery counter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delivery_labels: list[DeliveryLabel] = Field(
        default_factory=list,
        description="Extra labels of mns_consumer_deliveries_total: carrier (from the mainland number's segment), "
        "sign_name, template_code; default none.",
    )
    max_label_values: int = Field(
        50,
        ge=1,
        le=1000,
        description="Distinct values each extra label keeps per daemon; later values are counted as `other`, values.",
    )

    @field_validator("delivery_labels")
    @classmethod
    def _distinct(cls, value: list[DeliveryLabel]) -> list[DeliveryLabel]:
        if len(set(value)) != len(value):
            raise ValueError("names a label twice")
        return value


class LabelCap:
    """Keeps each label's distinct values to a maximum; values past it become :data:`OTHER_LABEL_VALUE`.

    The first values seen keep their own series for the daemon's life: a cap that forgot old values
    would move their counts between series and break ``rate()``. Thread-safe.
    """

    def __init__(self, max_values: int) -> None:
        self.max_values = max_values
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def value(self, label: str, value: str) -> str:
        """``value`` if the label already has it or has room for it, else ``other``."""
        with self._lock:
            seen = self._seen.setdefault(label, set())
            if value in seen or len(seen) < self.max_values:
                seen.add(value)
                return value
        return OTHER_LABEL_VALUE


MNS_OPERATIONS = ("BatchReceiveMessage", "BatchDeleteMessage", "ChangeMessageVisibility")
"""The ``operation`` label of ``mns_consumer_throttled_total``: the calls a poller makes."""

BACKFILL_QUEUE = "backfill"
"""The ``queue`` label of QuerySendDetails backfill runs (they read no queue)."""

BACKFILL_STATUSES = ("delivered", "failed", "pending")
"""The ``status`` label of the backfill receipt counters."""

UNKNOWN_PUSH_ROUTE = "push:unknown"
"""The ``queue`` label of pushes to a path no route serves (the path itself is never a label)."""


class Metrics:
    """The daemon's metrics on one registry; :class:`~mns_consumer.observe.events.Events` updates them."""

    def __init__(self, registry: CollectorRegistry, config: MetricsConfig | None = None) -> None:
        self.registry = registry
        self.config = config or MetricsConfig()
        self.delivery_labels: tuple[DeliveryLabel, ...] = tuple(self.config.delivery_labels)
        self.label_cap = LabelCap(self.config.max_label_values)

        def counter(name: str, documentation: str, *labels: str) -> Counter:
            return Counter(name, documentation, (*QUEUE_LABELS, *labels), registry=registry)

        def gauge(name: str, documentation: str, *labels: str) -> Gauge:
            return Gauge(name, documentation, (*QUEUE_LABELS, *labels), registry=registry)

        def histogram(name: str, buckets: Sequence[float], documentation: str, *labels: str) -> Histogram:
            return Histogram(name, documentation, (*QUEUE_LABELS, *labels), buckets=buckets, registry=registry)

        self.deliveries = counter(
            "mns_consumer_deliveries",
            "Delivery reports every sink stored, once per dedupe key as far as the daemon remembers, by outcome"
            " (delivered, failed, expired) and class (mns_consumer.outcomes).",
            "outcome",
            "class",
            *self.delivery_labels,
        )
        self.delivery_latency_seconds = histogram(
            "mns_consumer_delivery_latency_seconds",
            DELIVERY_LATENCY_BUCKETS,
            "From a delivery report's send time to its report time, for reports counted in mns_consumer_deliveries.",
            "outcome",
        )
        self.opt_outs = counter(
            "mns_consumer_opt_outs",
            "Replies (SmsUp) every sink stored whose content is an unsubscribe keyword, once per dedupe key.",
        )
        self.received = counter(
            "mns_consumer_receipts_received", "Messages received from MNS, and receipts in acknowledged HTTP pushes."
        )
        self.accepted = counter(
            "mns_consumer_receipts_accepted", "Receipts a sink durably accepted (duplicates included).", "sink"
        )
        self.deleted = counter(
            "mns_consumer_receipts_deleted", "Messages deleted from MNS after every sink accepted them."
        )
        self.dead_lettered = counter("mns_consumer_receipts_dead_lettered", "Messages stored in the dead-letter sink.")
        self.failures = counter(
            "mns_consumer_failures",
            "Failures by stage: receive, decode, sink, delete, token, query (QuerySendDetails).",
            "stage",
        )
        self.visibility_extended = counter(
            "mns_consumer_visibility_extensions", "Messages whose visibility was extended while sinks were slow."
        )
        self.throttled = counter(
            "mns_consumer_throttled",
            "MNS calls refused by the flow limiter (HTTP 429 TooManyRequests), by operation: backpressure, retried.",
            "operation",
        )
        self.visibility_released = counter(
            "mns_consumer_visibility_released",
            "Messages held longer than max_hold_seconds (a sink outage) whose visibility was left to lapse.",
        )
        self.sink_write_seconds = histogram(
            "mns_consumer_sink_write_seconds", SINK_WRITE_BUCKETS, "Duration of one sink write call.", "sink"
        )
        self.receive_seconds = histogram(
            "mns_consumer_receive_seconds",
            RECEIVE_BUCKETS,
            "Duration of one BatchReceiveMessage, long-poll wait included.",
        )
        self.receipt_delay_seconds = histogram(
            "mns_consumer_receipt_delay_seconds",
            RECEIPT_DELAY_BUCKETS,
            "From the carrier's report time (or the reply's send time) to the delete from MNS.",
        )
        self.oldest_message_age_seconds = gauge(
            "mns_consumer_queue_oldest_message_age_seconds",
            "Age (from EnqueueTime) of the oldest message known to wait: the larger of the oldest in the latest"
            " receive (0 when empty) and the oldest still held in flight, which keeps growing while a sink is down.",
        )
        self.seconds_since_receive = gauge(
            "mns_consumer_seconds_since_last_receive", "Time since the last successful receive (empty ones count)."
        )
        self.batches_in_flight = gauge(
            "mns_consumer_batches_in_flight", "Batches received and not yet deleted or abandoned."
        )
        self.messages_in_flight = gauge(
            "mns_consumer_messages_in_flight",
            "Messages received and not yet deleted or abandoned, all receivers together"
            " (max_in_flight_messages caps it).",
        )
        self.receivers = gauge(
            "mns_consumer_receivers",
            "Concurrent receivers of the queue: 1 (one long poll) when caught up, up to max_receivers in a backlog.",
        )
        self.token_seconds_to_expiry = gauge(
            "mns_consumer_token_seconds_to_expiry", "Seconds until the queue token's ExpireTime (-1: no token)."
        )
        self.poller_up = gauge(
            "mns_consumer_poller_up", "1 while the queue's poller runs, 0 while it waits to be restarted."
        )
        self.poller_restarts = counter("mns_consumer_poller_restarts", "Pollers restarted after an unexpected error.")
        self.push_requests = counter(
            "mns_consumer_push_requests", "HTTP pushes stored in the spool and acknowledged with code 0."
        )
        self.push_rejected = counter(
            "mns_consumer_push_rejected",
            "HTTP pushes refused with a non-zero code, by stage: route, request, body, spool, drain.",
            "stage",
        )
        self.push_ack_seconds = histogram(
            "mns_consumer_push_ack_seconds",
            PUSH_ACK_BUCKETS,
            "From a push's request line to its acknowledgement (Alibaba gives up after 0.7 s).",
        )
        self.push_settled = counter(
            "mns_consumer_push_receipts_settled",
            "Pushed receipts stored by every sink or dead-lettered, and removed from the spool.",
        )
        self.spool_entries = gauge(
            "mns_consumer_push_spool_entries", "Acknowledged pushes waiting in the spool for their sinks."
        )
        self.spool_oldest_age_seconds = gauge(
            "mns_consumer_push_spool_oldest_age_seconds",
            "Age of the oldest push waiting in the spool; 0 when none waits.",
        )
        self.backfill_queries = counter(
            "mns_consumer_backfill_queries", "QuerySendDetails pages answered during backfill runs."
        )
        self.backfill_found = counter(
            "mns_consumer_backfill_receipts_found",
            "Send records QuerySendDetails returned during backfill runs, by status: delivered, failed, pending.",
            "status",
        )
        self.backfill_stored = counter(
            "mns_consumer_backfill_receipts_stored",
            "Backfilled receipts a sink durably accepted (already present included), by status.",
            "sink",
            "status",
        )
        self.backfill_last_run = gauge(
            "mns_consumer_backfill_last_run_timestamp_seconds", "When the last backfill run ended, Unix time."
        )
        self.backfill_last_duration = gauge(
            "mns_consumer_backfill_last_run_duration_seconds", "How long the last backfill run took."
        )
        self.backfill_last_success = gauge(
            "mns_consumer_backfill_last_run_success",
            "1 when the last backfill run queried every send and stored every receipt it found, else 0.",
        )
        self.draining = Gauge("mns_consumer_draining", "1 while the daemon drains after SIGTERM.", registry=registry)
        self.build_info = Info("mns_consumer_build", "Version of mns-consumer and of Python.", registry=registry)
        self.build_info.info({"version": __version__, "python": platform.python_version()})

    def _watch(
        self,
        labels: tuple[str, str],
        gauges: dict[str, Callable[[], float]],
        counters: Sequence[Counter],
        stages: Sequence[str],
    ) -> None:
        """Tie the gauges read at scrape time to live state, and make ``counters`` and the failure
        ``stages`` exist at zero from the first scrape, so ``rate()`` and ``increase()`` see the first increment."""
        # Read at scrape time, not set on each receive: receiving pauses while a sink is down, and a
        # value set by the last receive would stand still exactly when the backlog grows.
        for name, read in gauges.items():
            cast(Gauge, getattr(self, name)).labels(*labels).set_function(read)
        for counter in counters:
            counter.labels(*labels)
        for stage in stages:
            self.failures.labels(*labels, stage)

    def watch_queue(self, queue: str, message_type: str, **gauges: Callable[[], float]) -> None:
        """Tie the gauges read at scrape time (each keyword names one, e.g. ``batches_in_flight``) to a
        queue's live state, and make its series exist from the first scrape."""
        labels = (queue, message_type)
        counters = (self.received, self.deleted, self.dead_lettered, self.visibility_extended)
        self._watch(labels, gauges, (*counters, self.visibility_released, self.poller_restarts), QUEUE_STAGES)
        for operation in MNS_OPERATIONS:
            self.throttled.labels(*labels, operation)
        self._watch_outcomes(labels)

    def _watch_outcomes(self, labels: tuple[str, str]) -> None:
        """Make the delivery or opt-out series of a report or reply queue exist from the first scrape
        (with extra delivery labels, whose values are not known in advance, they appear with the first report)."""
        message_type = labels[1]
        if message_type in REPORT_MESSAGE_TYPES and not self.delivery_labels:
            for outcome, klass in DELIVERY_SERIES:
                self.deliveries.labels(*labels, outcome, klass)
        if message_type in REPLY_MESSAGE_TYPES:
            self.opt_outs.labels(*labels)

    def watch_sink(self, queue: str, message_type: str, sink: str) -> None:
        """Make a queue's sink series exist from the first scrape."""
        self.accepted.labels(queue, message_type, sink)

    def watch_push_route(
        self, route: str, message_type: str, sinks: Sequence[str], **gauges: Callable[[], float]
    ) -> None:
        """Tie a push route's spool gauges (``spool_entries``, ``spool_oldest_age_seconds``) to the spool,
        and make its series exist from the first scrape."""
        labels = (route, message_type)
        counters = (self.received, self.dead_lettered, self.push_requests, self.push_settled)
        self._watch(labels, gauges, counters, ("decode", "sink"))
        for stage in PUSH_STAGES:
            self.push_rejected.labels(*labels, stage)
        for sink in sinks:
            self.watch_sink(route, message_type, sink)
        self._watch_outcomes(labels)

    def watch_backfill(self, message_type: str, sinks: Sequence[str]) -> None:
        """Make a backfill run's series exist from the start, so every outcome shows, zero or not."""
        labels = (BACKFILL_QUEUE, message_type)
        self._watch(labels, {}, (self.backfill_queries, self.dead_lettered), ("query", "sink"))
        for status in BACKFILL_STATUSES:
            self.backfill_found.labels(*labels, status)
            for sink in sinks:
                self.backfill_stored.labels(*labels, sink, status)
