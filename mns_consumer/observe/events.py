"""Every notable occurrence of the consumer is one method here, which logs it and counts it together.

So logs and counters cannot drift apart. Event names are constant dotted strings with the data in keys;
receipt contents never come here except the ``phone_number`` key, which the logging pipeline masks.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from mns_consumer.carriers import carrier_of
from mns_consumer.observe.metrics import BACKFILL_QUEUE, MISSING_LABEL_VALUE, Metrics
from mns_consumer.observe.redaction import redact_text
from mns_consumer.receipt_model import Receipt

log = structlog.get_logger("mns_consumer.consume")
push_log = structlog.get_logger("mns_consumer.push")
backfill_log = structlog.get_logger("mns_consumer.backfill")

THROTTLE_LOG_INTERVAL_SECONDS = 60.0
"""At most one ``mns.throttled`` warning per queue in this long; the counter has every refusal."""


@functools.cache
def _unexported_metrics() -> Metrics:
    """Metrics nobody scrapes, for an :class:`Events` made without any: counting needs no ``if`` then."""
    return Metrics(CollectorRegistry(auto_describe=False))


class Events:
    """Logs and counts what the pollers, dispatcher and supervisor do.

    Attributes:
        totals: Counts by (event name, queue) for the summary line at exit and for tests.
    """

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.totals: Counter[tuple[str, str]] = Counter()
        self.metrics = metrics
        self._metrics = metrics if metrics is not None else _unexported_metrics()
        self._denied: set[str] = set()
        self._types: dict[str, str] = {}
        self._last_receive: dict[str, float] = {}
        self._lock = threading.Lock()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._throttled_since_log: dict[str, Counter[str]] = {}
        self._throttled_logged_at: dict[str, float] = {}

    def register_queue(self, queue: str, message_type: str) -> None:
        """Name a queue's MessageType once, so every event of the queue is labelled with it."""
        with self._lock:
            self._types[queue] = message_type
            self._last_receive.setdefault(queue, time.monotonic())

    def seconds_since_receive(self, queue: str) -> float:
        """Seconds since the queue's last successful receive (an empty one counts)."""
        with self._lock:
            last = self._last_receive.get(queue)
        return 0.0 if last is None else time.monotonic() - last

    def total(self, name: str, queue: str | None = None) -> int:
        """How often ``name`` happened (for one queue, or in all)."""
        with self._lock:
            return sum(n for (event, q), n in self.totals.items() if event == name and (queue is None or q == queue))

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once: prometheus-client validates the labels on every call."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            # A race makes two lookups of the same child, which labels() returns for both.
            child = self._children[key] = metric.labels(*labels)
        return child

    def _labels(self, queue: str) -> tuple[str, str]:
        return queue, self._types.get(queue, "")

    def _tally(
        self,
        queue: str,
        name: str,
        amount: int = 1,
        *,
        stage: str | None = None,
        counter: Any = None,
        extra: tuple[str, ...] = (),
        message_type: str | None = None,
    ) -> None:
        """Count ``name`` in :attr:`totals`, and in the failures counter at ``stage`` or in ``counter``
        (labelled queue, message type and ``extra``)."""
        with self._lock:
            self.totals[(name, queue)] += amount
        if stage is not None:
            counter, extra = self._metrics.failures, (stage,)
        if counter is not None:
            labels = self._labels(queue) if message_type is None else (queue, message_type)
            self._child(counter, *labels, *extra).inc(amount)

    # -- receiving -------------------------------------------------------------------------------

    def receive_finished(self, queue: str, seconds: float) -> None:
        """A receive came back, empty or not (the lag gauge is read from the poller at scrape time)."""
        with self._lock:
            self._last_receive[queue] = time.monotonic()
        self._child(self._metrics.receive_seconds, *self._labels(queue)).observe(seconds)

    def batch_received(
        self, queue: str, message_type: str, batch_id: int, count: int, oldest_age_seconds: float
    ) -> None:
        self._tally(queue, "received", count, counter=self._metrics.received)
        log.debug(
            "batch.received",
            queue=queue,
            message_type=message_type,
            batch_id=batch_id,
            count=count,
            oldest_age_seconds=round(oldest_age_seconds, 3),
        )

    def receive_failed(self, queue: str, message_type: str, code: str, retry_in_seconds: float) -> None:
        self._tally(queue, "receive_failed", stage="receive")
        log.warning(
            "receive.failed", queue=queue, message_type=message_type, code=code, retry_in_seconds=retry_in_seconds
        )

    def throttled(self, queue: str, operation: str, retry_in_seconds: float) -> None:
        """MNS's flow limiter answered 429: counted every time, logged at most once a minute per queue
        (a storm of 429s is backpressure the poller absorbs, not news for every call)."""
        self._tally(queue, "throttled", counter=self._metrics.throttled, extra=(operation,))
        now = time.monotonic()
        with self._lock:
            pending = self._throttled_since_log.setdefault(queue, Counter())
            pending[operation] += 1
            last = self._throttled_logged_at.get(queue)
            if last is not None and now - last < THROTTLE_LOG_INTERVAL_SECONDS:
                return
            self._throttled_logged_at[queue] = now
            counts = dict(pending)
            pending.clear()
        log.warning(
            "mns.throttled",
            queue=queue,
            message_type=self._types.get(queue, ""),
            counts=counts,
            retry_in_seconds=retry_in_seconds,
            interval_seconds=THROTTLE_LOG_INTERVAL_SECONDS,
        )

    def receivers_changed(self, queue: str, receivers: int, reason: str) -> None:
        self._tally(queue, "receivers_changed")
        log.info("receivers.changed", queue=queue, receivers=receivers, reason=reason)

    def queue_missing(self, queue: str, message_type: str, retry_in_seconds: float) -> None:
        """MNS says the queue does not exist (wrong name, or a queue asleep after months of no sends)."""
        self._tally(queue, "receive_failed", stage="receive")
        log.error(
            "queue.not_found",
            queue=queue,
            message_type=message_type,
            retry_in_seconds=retry_in_seconds,
            hint="check queue_name against the SMS console; a queue idle for 3 months sleeps until sends resume",
        )

    def auth_refused(self, queue: str, message_type: str, code: str, operation: str) -> None:
        """MNS refused the token; it is refreshed at once."""
        self._tally(queue, "auth_refused", stage="token")
        log.warning("token.refused_by_mns", queue=queue, message_type=message_type, code=code, operation=operation)

    def token_failed(self, queue: str, message_type: str, code: str, retry_in_seconds: float) -> None:
        self._tally(queue, "token_failed", stage="token")
        log.error(
            "token.unavailable", queue=queue, message_type=message_type, code=code, retry_in_seconds=retry_in_seconds
        )

    # -- decoding and sinks ----------------------------------------------------------------------

    def decode_failed(self, queue: str, message_type: str, message_id: str, field: str, reason: str) -> None:
        """A body did not decode (it is dead-lettered); decode reasons never quote the body."""
        self._tally(queue, "decode_failed", stage="decode")
        log.warning(
            "receipt.undecodable",
            queue=queue,
            message_type=message_type,
            message_id=message_id,
            field=field or None,
            reason=reason,
        )

    def sink_written(self, queue: str, sink: str, accepted: int, rejected: int, seconds: float) -> None:
        self._tally(queue, f"accepted:{sink}", accepted, counter=self._metrics.accepted, extra=(sink,))
        self._child(self._metrics.sink_write_seconds, *self._labels(queue), sink).observe(seconds)
        log.debug(
            "sink.written", queue=queue, sink=sink, accepted=accepted, rejected=rejected, seconds=round(seconds, 4)
        )

    def sink_retry(self, queue: str, sink: str, attempt: int, reason: str, retry_in_seconds: float) -> None:
        """A sink is unavailable; the batch waits and receiving pauses."""
        self._tally(queue, "sink_failed", stage="sink")
        log.warning(
            "sink.unavailable",
            queue=queue,
            sink=sink,
            attempt=attempt,
            reason=reason,
            retry_in_seconds=retry_in_seconds,
        )

    def sink_recovered(self, queue: str, sink: str, attempts: int) -> None:
        log.info("sink.recovered", queue=queue, sink=sink, attempts=attempts)

    def sink_broken(self, queue: str, sink: str, error: BaseException) -> None:
        """A sink raised something other than SinkUnavailable: a bug; the batch is abandoned."""
        self._tally(queue, "sink_failed", stage="sink")
        log.critical("sink.bug", queue=queue, sink=sink, error=repr(error), exc_info=error)

    def receipt_rejected(self, queue: str, message_type: str, message_id: str, sink: str, reason: str) -> None:
        """A sink rejected a receipt for good; the reason is redacted, since a sink may quote its server."""
        self._tally(queue, "rejected")
        log.warning(
            "receipt.rejected",
            queue=queue,
            message_type=message_type,
            message_id=message_id,
            sink=sink,
            reason=redact_text(reason),
        )

    def receipts_stored(self, queue: str, receipts: Sequence[Receipt]) -> None:
        """Receipts every sink stored, each counted once: delivery reports by outcome and class, opt-outs.
        The caller passes each dedupe key once (see :class:`~mns_consumer.delivery.Dispatcher`)."""
        delivered = opted_out = 0
        for receipt in receipts:
            if receipt.kind == "delivery_report" and receipt.outcome_class is not None:
                delivered += 1
                self._count_delivery(queue, receipt)
            elif receipt.opt_out:
                opted_out += 1
        if delivered:
            self._tally(queue, "deliveries", delivered)
        if opted_out:
            self._tally(queue, "opt_outs", opted_out, counter=self._metrics.opt_outs)
            log.info("replies.opted_out", queue=queue, count=opted_out)

    def _count_delivery(self, queue: str, receipt: Receipt) -> None:
        metrics = self._metrics
        labels = self._labels(queue)
        outcome = receipt.status or "unknown"
        extra: list[str] = []
        for label in metrics.delivery_labels:
            if label == "carrier":
                value: str = carrier_of(receipt.phone_number)
            else:
                value = getattr(receipt, label) or MISSING_LABEL_VALUE
            extra.append(metrics.label_cap.value(label, value))
        self._child(metrics.deliveries, *labels, outcome, str(receipt.outcome_class), *extra).inc()
        if receipt.sent_at is not None and receipt.reported_at is not None:
            latency = (receipt.reported_at - receipt.sent_at).total_seconds()
            self._child(metrics.delivery_latency_seconds, *labels, outcome).observe(max(0.0, latency))

    def dead_lettered(self, queue: str, count: int) -> None:
        self._tally(queue, "dead_lettered", count, counter=self._metrics.dead_lettered)
        log.info("receipts.dead_lettered", queue=queue, count=count)

    # -- deleting and visibility -----------------------------------------------------------------

    def receipts_deleted(self, queue: str, count: int, batch_id: int, delays_seconds: Iterable[float] = ()) -> None:
        """Messages every sink acknowledged were deleted; ``delays_seconds`` run from report time to now."""
        self._tally(queue, "deleted", count, counter=self._metrics.deleted)
        histogram = self._child(self._metrics.receipt_delay_seconds, *self._labels(queue))
        for delay in delays_seconds:
            histogram.observe(max(0.0, delay))
        log.debug("receipts.deleted", queue=queue, count=count, batch_id=batch_id)

    def delete_failed(self, queue: str, count: int, code: str) -> None:
        """Some deletes failed; those messages come back and their dedupe keys absorb them."""
        self._tally(queue, "delete_failed", count, stage="delete")
        log.warning("receipts.delete_failed", queue=queue, count=count, code=code)

    def visibility_extended(self, queue: str, count: int, seconds: int) -> None:
        self._tally(queue, "visibility_extended", count, counter=self._metrics.visibility_extended)
        log.info("visibility.extended", queue=queue, count=count, seconds=seconds)

    def visibility_failed(self, queue: str, count: int, code: str) -> None:
        """Extending some messages' visibility failed; retried next tick."""
        self._tally(queue, "visibility_failed", count, stage="visibility")
        log.warning("visibility.failed", queue=queue, count=count, code=code)

    def visibility_released(self, queue: str, count: int, held_seconds: float) -> None:
        """Messages held past ``max_hold_seconds`` are no longer extended: MNS makes them visible again."""
        self._tally(queue, "visibility_released", count, counter=self._metrics.visibility_released)
        log.warning("visibility.released", queue=queue, count=count, held_seconds=round(held_seconds, 1))

    def visibility_not_allowed(self, queue: str, code: str) -> None:
        """The queue token may not change visibility: said once; duplicates are then left to dedupe."""
        self._tally(queue, "visibility_denied")
        with self._lock:
            first = queue not in self._denied
            self._denied.add(queue)
        if first:
            log.warning(
                "visibility.not_allowed",
                queue=queue,
                code=code,
                consequence="slow batches may be redelivered; dedupe keys absorb the duplicates",
            )

    # -- life cycle ------------------------------------------------------------------------------

    def poller_started(self, queue: str, message_type: str) -> None:
        self._child(self._metrics.poller_up, queue, message_type).set(1)
        log.info("poller.started", queue=queue, message_type=message_type)

    def poller_crashed(self, queue: str, message_type: str, error: BaseException, restart_in_seconds: float) -> None:
        """A poller died of an unexpected error; it is restarted after a back-off."""
        self._tally(queue, "poller_restarts", counter=self._metrics.poller_restarts, message_type=message_type)
        self._child(self._metrics.poller_up, queue, message_type).set(0)
        log.error(
            "poller.crashed",
            queue=queue,
            message_type=message_type,
            error=repr(error),
            restart_in_seconds=restart_in_seconds,
            exc_info=error,
        )

    # -- HTTP push --------------------------------------------------------------------------------
    # Routes are named by their label (push:<name>), never by their URL path, whose last segment is a secret.

    def push_listening(self, address: str, routes: list[dict[str, str]], tls: bool) -> None:
        push_log.info("push.listening", address=address, tls=tls, routes=routes)

    def push_accepted(self, route: str, message_type: str, receipts: int, seconds: float) -> None:
        """A push was stored in the spool and acknowledged with code 0."""
        self._tally(route, "received", receipts, counter=self._metrics.received, message_type=message_type)
        self._tally(route, "push_accepted", counter=self._metrics.push_requests, message_type=message_type)
        self._child(self._metrics.push_ack_seconds, route, message_type).observe(seconds)
        push_log.debug("push.accepted", queue=route, message_type=message_type, receipts=receipts, seconds=seconds)

    def push_rejected(self, route: str, message_type: str, stage: str, status: int, reason: str) -> None:
        """A push was refused with a non-zero code (Alibaba retries it later unless the status is 200)."""
        self._tally(route, "push_rejected")
        self._child(self._metrics.push_rejected, route, message_type, stage).inc()
        # An unknown path is usually a scanner; the others mean Alibaba's receipts are being refused.
        level = push_log.info if stage in ("route", "drain") else push_log.warning
        level("push.rejected", queue=route, message_type=message_type, stage=stage, status=status, reason=reason)

    def push_spool_failed(self, route: str, message_type: str, error: str) -> None:
        """The spool could not store a push; it was answered 503 so Alibaba retries it."""
        push_log.error("push.spool_failed", queue=route, message_type=message_type, error=error)

    def push_settled(self, route: str, message_type: str, entries: int, receipts: int) -> None:
        """Spooled pushes reached every sink (or the dead letters) and left the spool."""
        self._tally(route, "push_settled", receipts, counter=self._metrics.push_settled, message_type=message_type)
        push_log.debug("push.settled", queue=route, message_type=message_type, entries=entries, receipts=receipts)

    def push_spool_opened(self, path: str, waiting: dict[str, int], orphaned: dict[str, int]) -> None:
        """The spool is open; pushes left by an earlier run are delivered first."""
        push_log.info("push.spool_opened", path=path, waiting=waiting)
        if orphaned:
            push_log.warning(
                "push.spool_orphaned",
                routes=orphaned,
                consequence="kept in the spool until a route of that name is configured again",
            )

    def push_worker_failed(self, route: str, error: BaseException, retry_in_seconds: float) -> None:
        """Delivering spooled pushes failed unexpectedly (a sink bug, the spool's disk); retried later."""
        self._tally(route, "push_worker_failed")
        push_log.error(
            "push.delivery_failed", queue=route, error=repr(error), retry_in_seconds=retry_in_seconds, exc_info=error
        )

    # -- QuerySendDetails backfill ------------------------------------------------------------------
    # Labelled queue="backfill"; sends are named by where they were given (sends.csv:12) and their
    # masked phone_number, never by the number itself in a counter.

    def _backfill_fail(self, message_type: str, stage: str) -> None:
        self._tally(BACKFILL_QUEUE, f"backfill_{stage}_failed", stage=stage, message_type=message_type)

    def backfill_page(self, message_type: str, where: str, page: int, records: int, total_count: int) -> None:
        self._tally(
            BACKFILL_QUEUE, "backfill_queries", counter=self._metrics.backfill_queries, message_type=message_type
        )
        backfill_log.debug("backfill.page", where=where, page=page, records=records, total_count=total_count)

    def backfill_query_retry(
        self, message_type: str, where: str, attempt: int, code: str, error: str, retry_in_seconds: float
    ) -> None:
        """A QuerySendDetails call failed transiently (throttling, 5xx, network); it is tried again."""
        self._backfill_fail(message_type, "query")
        backfill_log.warning(
            "backfill.query_retry",
            where=where,
            attempt=attempt,
            code=code,
            error=error,
            retry_in_seconds=retry_in_seconds,
        )

    def backfill_query_failed(self, message_type: str, where: str, phone_number: str, code: str, error: str) -> None:
        """A send could not be queried (refused, invalid, or unavailable through every retry)."""
        self._backfill_fail(message_type, "query")
        backfill_log.error("backfill.query_failed", where=where, phone_number=phone_number, code=code, error=error)

    def backfill_found(self, message_type: str, status: str, count: int) -> None:
        self._tally(BACKFILL_QUEUE, f"backfill_found:{status}", count)
        self._child(self._metrics.backfill_found, BACKFILL_QUEUE, message_type, status).inc(count)

    def backfill_stored(self, message_type: str, sink: str, statuses: Counter[str], seconds: float) -> None:
        """A sink durably accepted backfilled receipts (already present ones included), by status."""
        for status, count in statuses.items():
            self._tally(BACKFILL_QUEUE, f"backfill_stored:{sink}", count)
            self._child(self._metrics.backfill_stored, BACKFILL_QUEUE, message_type, sink, status).inc(count)
        self._child(self._metrics.sink_write_seconds, BACKFILL_QUEUE, message_type, sink).observe(seconds)
        backfill_log.debug("backfill.stored", sink=sink, receipts=sum(statuses.values()), seconds=round(seconds, 4))

    def backfill_sink_retry(
        self, message_type: str, sink: str, attempt: int, attempts: int, reason: str, retry_in_seconds: float
    ) -> None:
        self._backfill_fail(message_type, "sink")
        backfill_log.warning(
            "backfill.sink_unavailable",
            sink=sink,
            attempt=attempt,
            attempts=attempts,
            reason=reason,
            retry_in_seconds=retry_in_seconds,
        )

    def backfill_sink_gave_up(self, message_type: str, sink: str, attempts: int, reason: str) -> None:
        """A sink stayed unavailable through every attempt: the run stops (nothing lost; rerun later)."""
        self._backfill_fail(message_type, "sink")
        backfill_log.error("backfill.sink_gave_up", sink=sink, attempts=attempts, reason=reason)

    def backfill_rejected(self, message_type: str, sink: str, dedupe_key: str, reason: str) -> None:
        self._tally(BACKFILL_QUEUE, "backfill_rejected")
        backfill_log.warning(
            "backfill.rejected", message_type=message_type, sink=sink, dedupe_key=dedupe_key, reason=redact_text(reason)
        )

    def backfill_dead_lettered(self, message_type: str, count: int) -> None:
        self._tally(
            BACKFILL_QUEUE, "dead_lettered", count, counter=self._metrics.dead_lettered, message_type=message_type
        )
        backfill_log.info("backfill.dead_lettered", count=count)

    def backfill_finished(self, message_type: str, ok: bool, seconds: float, ended_at: float, **summary: Any) -> None:
        """A backfill run ended: the one summary line, and the last-run gauges."""
        labels = (BACKFILL_QUEUE, message_type)
        self._child(self._metrics.backfill_last_run, *labels).set(ended_at)
        self._child(self._metrics.backfill_last_duration, *labels).set(seconds)
        self._child(self._metrics.backfill_last_success, *labels).set(1 if ok else 0)
        level = backfill_log.info if ok else backfill_log.warning
        level("backfill.finished", ok=ok, seconds=round(seconds, 3), **summary)

    def drain(self, phase: str, **fields: Any) -> None:
        """A step of the shutdown sequence."""
        self._metrics.draining.set(1)
        log.info(f"shutdown.{phase}", **fields)
