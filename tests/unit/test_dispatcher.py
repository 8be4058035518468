"""The dispatcher settles every message of a batch: stored everywhere, or dead-lettered, or kept."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from mns_consumer.alicom.queue import ReceivedMessage
from mns_consumer.consume.dispatcher import Batch, Dispatcher, InFlight
from mns_consumer.errors import DecodeError
from mns_consumer.observe.events import Events
from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.base import SinkResult
from mns_consumer.testing import RecordingDeadLetterSink, RecordingSink
from tests.support.receipts import make_receipt

QUEUE = "Alicom-Queue-i1-SmsReport"


def message(n: int, body: str = "e30=") -> ReceivedMessage:
    return ReceivedMessage(
        message_id=f"M{n}",
        receipt_handle=f"H{n}",
        body=body,
        body_md5="",
        dequeue_count=1,
        enqueue_time_ms=0,
        first_dequeue_time_ms=0,
        next_visible_time_ms=0,
        priority=8,
    )


def batch_of(items: Sequence[InFlight]) -> Batch:
    return Batch(batch_id=1, messages=list(items), received_at=0.0, visibility_seconds=30.0, visible_since=0.0)


def decoded(n: int, receipt: Receipt | None = None) -> InFlight:
    return InFlight(message=message(n), handle=f"H{n}", receipt=receipt or make_receipt(n))


def make_dispatcher(*sinks: RecordingSink, dead: RecordingDeadLetterSink | None = None) -> Dispatcher:
    return Dispatcher(
        QUEUE,
        "SmsReport",
        list(sinks),
        dead or RecordingDeadLetterSink(),
        Events(),
        threading.Event(),
        retry_initial_seconds=0.01,
        retry_max_seconds=0.02,
    )


def test_every_message_is_settled_once_every_sink_stored_it() -> None:
    """With two healthy sinks, every receipt lands in both and every message may be deleted."""
    first, second = RecordingSink("a"), RecordingSink("b")
    settled = make_dispatcher(first, second).dispatch(batch_of([decoded(n) for n in range(3)]))
    assert settled is not None
    assert [item.message.message_id for item in settled] == ["M0", "M1", "M2"]
    assert len(first.stored) == len(second.stored) == 3


def test_duplicates_inside_a_batch_are_written_once_and_both_messages_settle() -> None:
    """Two MNS messages carrying the same receipt are one write and two deletes."""
    sink = RecordingSink()
    settled = make_dispatcher(sink).dispatch(batch_of([decoded(1), decoded(2, make_receipt(1))]))
    assert settled is not None
    assert len(settled) == 2
    assert len(sink.stored) == 1


def test_an_undecodable_body_is_dead_lettered_with_its_raw_body_and_reason() -> None:
    """A decode error goes to the dead-letter sink (raw body, message id, reason) and settles."""
    dead = RecordingDeadLetterSink()
    poison = InFlight(message=message(9, body="%%%"), handle="H9", error=DecodeError("SmsReport", "", "not base64"))
    settled = make_dispatcher(RecordingSink(), dead=dead).dispatch(batch_of([decoded(1), poison]))
    assert settled is not None
    assert len(settled) == 2
    assert [(letter.message_id, letter.raw) for letter in dead.letters] == [("M9", b"%%%")]
    assert "not base64" in dead.letters[0].reason


def test_a_rejected_receipt_is_dead_lettered_naming_the_sink() -> None:
    """A permanent reject from one sink dead-letters that receipt; the others are stored."""
    dead = RecordingDeadLetterSink()
    picky = RecordingSink(
        "picky", reject=lambda r: "too long" if r.phone_number == make_receipt(2).phone_number else None
    )
    settled = make_dispatcher(RecordingSink("ok"), picky, dead=dead).dispatch(batch_of([decoded(1), decoded(2)]))
    assert settled is not None
    assert len(settled) == 2
    assert [(letter.sink, letter.dedupe_key) for letter in dead.letters] == [("picky", make_receipt(2).dedupe_key)]
    assert "too long" in dead.letters[0].reason


def test_an_unavailable_sink_is_retried_until_it_recovers_and_pauses_receiving_meanwhile() -> None:
    """While a sink is down the dispatcher waits (healthy cleared), then settles once it is back."""
    sink = RecordingSink()
    sink.available = False
    dispatcher = make_dispatcher(sink)
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(dispatcher.dispatch(batch_of([decoded(1)]))))
    thread.start()
    while sink.writes < 3:
        threading.Event().wait(0.01)
    assert not dispatcher.healthy.is_set()
    sink.available = True
    thread.join(timeout=10)
    assert result
    assert result[0] is not None
    assert dispatcher.healthy.is_set()
    assert len(sink.stored) == 1


def test_abandon_during_an_outage_settles_nothing() -> None:
    """At the drain deadline a batch whose sink is still down is abandoned: nothing may be deleted."""
    sink = RecordingSink()
    sink.available = False
    dispatcher = make_dispatcher(sink)
    dispatcher.abandon.set()
    assert dispatcher.dispatch(batch_of([decoded(1)])) is None


def test_a_sink_bug_costs_only_that_batch() -> None:
    """A sink raising anything but SinkUnavailable abandons the batch instead of crashing."""

    class Broken(RecordingSink):
        def write(self, batch: Sequence[Receipt]) -> SinkResult:
            raise RuntimeError("bug")

    assert make_dispatcher(Broken()).dispatch(batch_of([decoded(1)])) is None


def test_a_dead_letter_outage_keeps_the_poison_in_the_queue_until_it_recovers() -> None:
    """Poison is deleted only after the dead-letter sink stored it."""
    dead = RecordingDeadLetterSink()
    dead.available = False
    dispatcher = make_dispatcher(RecordingSink(), dead=dead)
    poison = InFlight(message=message(9, body="%%%"), handle="H9", error=DecodeError("SmsReport", "", "bad"))
    dispatcher.abandon.set()
    assert dispatcher.dispatch(batch_of([poison])) is None
    assert dead.letters == []


def test_batches_dispatched_together_share_one_write_per_sink() -> None:
    """Batches that queued up are stored with one write per sink, and every message of each is settled."""
    sink, dead = RecordingSink("a"), RecordingDeadLetterSink()
    first = batch_of([decoded(n) for n in range(3)])
    second = batch_of(
        [decoded(n) for n in range(3, 5)]
        + [InFlight(message(9), "H9", error=DecodeError("SmsReport", "", "bad", b"x"))]
    )
    assert make_dispatcher(sink, dead=dead).dispatch_together([first, second])
    assert sink.writes == 1
    assert sorted(r.dedupe_key for r in sink.stored.values()) == sorted(make_receipt(n).dedupe_key for n in range(5))
    assert [letter.reason for letter in dead.letters] == ["undecodable: SmsReport: bad"]


def test_batches_dispatched_together_are_abandoned_together() -> None:
    """A sink that never recovers before the drain deadline keeps every batch of the call undeletable."""
    sink = RecordingSink("a")
    sink.available = False
    dispatcher = make_dispatcher(sink)
    dispatcher.abandon.set()
    assert not dispatcher.dispatch_together([batch_of([decoded(0)]), batch_of([decoded(1)])])
