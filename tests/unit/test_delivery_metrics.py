"""Delivery and opt-out counters: counted where every sink stored a receipt, once per dedupe key, bounded labels."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

from mns_consumer.delivery import Dispatcher, Item
from mns_consumer.observe.events import Events
from mns_consumer.observe.metrics import LabelCap, Metrics, MetricsConfig
from mns_consumer.opt_out import OptOutMatcher
from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.base import SinkResult
from mns_consumer.testing import RecordingDeadLetterSink, RecordingSink
from tests.support.receipts import make_receipt
from tests.unit.test_dispatcher import decoded

QUEUE = "Alicom-Queue-i1-SmsReport"


class BrokenOnce(RecordingSink):
    """A sink with a bug on its first write (the batch is abandoned), healthy afterwards."""

    def write(self, batch: Sequence[Receipt]) -> SinkResult:
        if self.writes == 0:
            self.writes += 1
            raise RuntimeError("a sink bug")
        return super().write(batch)


def setup(
    *sinks: RecordingSink, config: MetricsConfig | None = None, opt_out: OptOutMatcher | None = None
) -> tuple[Dispatcher, CollectorRegistry]:
    registry = CollectorRegistry()
    events = Events(Metrics(registry, config))
    events.register_queue(QUEUE, "SmsReport")
    dispatcher = Dispatcher(
        QUEUE,
        "SmsReport",
        list(sinks) or [RecordingSink()],
        RecordingDeadLetterSink(),
        events,
        threading.Event(),
        retry_initial_seconds=0.01,
        retry_max_seconds=0.02,
        opt_out=opt_out,
    )
    return dispatcher, registry


def items(*receipts: Receipt) -> list[Item]:
    return [decoded(n, r) for n, r in enumerate(receipts)]


def failed(n: int, outcome_class: str, **overrides: object) -> Receipt:
    return make_receipt(n, status="failed", outcome_class=outcome_class, retryable=False, **overrides)


def deliveries(registry: CollectorRegistry, outcome: str, klass: str, **extra: str) -> float:
    labels = {"queue": QUEUE, "message_type": "SmsReport", "outcome": outcome, "class": klass, **extra}
    return registry.get_sample_value("mns_consumer_deliveries_total", labels) or 0.0


def test_stored_reports_are_counted_by_outcome_and_class() -> None:
    """Every report all sinks stored counts once under its outcome and class, with its latency."""
    dispatcher, registry = setup()
    dispatcher.dispatch(items(make_receipt(1), make_receipt(2), failed(3, "blocked")))
    assert deliveries(registry, "delivered", "delivered") == 2
    assert deliveries(registry, "failed", "blocked") == 1
    labels = {"queue": QUEUE, "message_type": "SmsReport", "outcome": "delivered"}
    assert registry.get_sample_value("mns_consumer_delivery_latency_seconds_count", labels) == 2
    assert registry.get_sample_value("mns_consumer_delivery_latency_seconds_sum", labels) == 8.0


def test_a_redelivered_receipt_is_not_counted_twice() -> None:
    """The same dedupe key in a later batch (a lost delete) and twice in one batch counts once."""
    dispatcher, registry = setup()
    dispatcher.dispatch(items(make_receipt(1), make_receipt(1)))
    dispatcher.dispatch(items(make_receipt(1)))
    assert deliveries(registry, "delivered", "delivered") == 1


def test_an_abandoned_batch_counts_nothing_and_its_redelivery_counts_once() -> None:
    """Counting happens where sinks accepted the receipt: a batch given up is counted only when it succeeds."""
    dispatcher, registry = setup(BrokenOnce())
    assert dispatcher.dispatch(items(make_receipt(1))) is False
    assert deliveries(registry, "delivered", "delivered") == 0
    assert dispatcher.dispatch(items(make_receipt(1))) is True
    assert deliveries(registry, "delivered", "delivered") == 1


def test_a_receipt_a_sink_rejected_is_not_counted() -> None:
    """A rejected receipt goes to the dead letters, not into the delivery counter."""
    sink = RecordingSink(reject=lambda r: "no" if r.phone_number == make_receipt(2).phone_number else None)
    dispatcher, registry = setup(sink)
    dispatcher.dispatch(items(make_receipt(1), make_receipt(2)))
    assert deliveries(registry, "delivered", "delivered") == 1


def reply(n: int, content: str) -> Receipt:
    return make_receipt(
        n, kind="reply", message_type="SmsUp", status="received", content=content, outcome_class=None, retryable=None
    )


def test_opt_outs_are_flagged_by_the_configured_matcher_stored_and_counted() -> None:
    """Replies are re-read with the configured keywords before the sinks see them; opt-outs are counted."""
    sink = RecordingSink()
    dispatcher, registry = setup(sink, opt_out=OptOutMatcher(["quit"]))
    dispatcher.dispatch(items(reply(1, "QUIT"), reply(2, "TD"), reply(3, "hello")))
    assert [r.opt_out for r in sink.stored.values()] == [True, False, False]
    labels = {"queue": QUEUE, "message_type": "SmsReport"}
    assert registry.get_sample_value("mns_consumer_opt_outs_total", labels) == 1
    assert deliveries(registry, "received", "None") == 0


def test_extra_labels_are_capped_and_carrier_comes_from_the_segment() -> None:
    """sign_name keeps its first two values, later ones count as ``other``; carrier is the number's."""
    config = MetricsConfig(delivery_labels=["carrier", "sign_name"], max_label_values=2)
    dispatcher, registry = setup(config=config)
    signs = ["A", "B", "C", "D", "A"]
    dispatcher.dispatch(items(*(make_receipt(n, sign_name=sign) for n, sign in enumerate(signs))))
    count = {
        sign: deliveries(registry, "delivered", "delivered", carrier="china_mobile", sign_name=sign)
        for sign in ("A", "B", "C", "D", "other")
    }
    assert count == {"A": 2, "B": 1, "C": 0, "D": 0, "other": 2}


def test_a_missing_sign_name_reads_none() -> None:
    """Delivery reports carry no signature; the label says so instead of being empty."""
    dispatcher, registry = setup(config=MetricsConfig(delivery_labels=["sign_name"]))
    dispatcher.dispatch(items(make_receipt(1)))
    assert deliveries(registry, "delivered", "delivered", sign_name="none") == 1


def test_the_label_cap_is_per_label_and_keeps_its_first_values() -> None:
    """Each label has its own budget; values seen before keep their series after the cap is reached."""
    cap = LabelCap(1)
    assert [cap.value("a", v) for v in ("x", "y", "x")] == ["x", "other", "x"]
    assert cap.value("b", "y") == "y"


def test_duplicate_extra_labels_are_refused() -> None:
    """Naming a label twice is a configuration error."""
    with pytest.raises(ValueError, match="twice"):
        MetricsConfig(delivery_labels=["carrier", "carrier"])


def test_a_report_queue_shows_every_outcome_and_class_from_the_first_scrape() -> None:
    """Zeroed series make rate() see the first report; a reply queue gets its opt-out series instead."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    for queue, message_type in ((QUEUE, "SmsReport"), ("Alicom-Queue-i1-SmsUp", "SmsUp")):
        metrics.watch_queue(
            queue,
            message_type,
            seconds_since_receive=lambda: 0.0,
            oldest_message_age_seconds=lambda: 0.0,
            batches_in_flight=lambda: 0.0,
            token_seconds_to_expiry=lambda: 0.0,
        )
    series = {
        (sample.labels["outcome"], sample.labels["class"])
        for family in registry.collect()
        if family.name == "mns_consumer_deliveries"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert ("delivered", "delivered") in series
    assert ("failed", "blocked") in series
    assert ("failed", "delivered") not in series
    assert len(series) == 9
    up = {"queue": "Alicom-Queue-i1-SmsUp", "message_type": "SmsUp"}
    assert registry.get_sample_value("mns_consumer_opt_outs_total", up) == 0
