"""The dispatcher settles every item it is handed: stored everywhere, or dead-lettered, or nothing."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from mns_consumer.delivery import Dispatcher, Item
from mns_consumer.errors import DecodeError
from mns_consumer.observe.events import Events
from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.base import SinkResult
from mns_consumer.testing import RecordingDeadLetterSink, RecordingSink
from tests.support.receipts import make_receipt

QUEUE = "Alicom-Queue-i1-SmsReport"


def decoded(n: int, receipt: Receipt | None = None) -> Item:
    return Item(b"e30=", f"M{n}", receipt or make_receipt(n), dequeue_count=1)


def poison(n: int, body: bytes = b"%%%", reason: str = "not base64") -> Item:
    return Item(body, f"M{n}", error=DecodeError("SmsReport", "", reason), dequeue_count=2)


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
    """With two healthy sinks, every receipt lands in both and the call settles."""
    first, second = RecordingSink("a"), RecordingSink("b")
    assert make_dispatcher(first, second).dispatch([decoded(n) for n in range(3)]) is True
    assert sorted(r.dedupe_key for r in first.stored.values()) == sorted(make_receipt(n).dedupe_key for n in range(3))
    assert len(first.stored) == len(second.stored) == 3


def test_duplicates_inside_a_batch_are_written_once_and_both_messages_settle() -> None:
    """Two MNS messages carrying the same receipt are one write of one receipt."""
    sink = RecordingSink()
    assert make_dispatcher(sink).dispatch([decoded(1), decoded(2, make_receipt(1))]) is True
    assert sink.writes == 1
    assert len(sink.stored) == 1


def test_an_undecodable_body_is_dead_lettered_with_its_raw_body_and_reason() -> None:
    """A decode error goes to the dead-letter sink (raw body, message id, dequeue count, reason) and settles."""
    dead = RecordingDeadLetterSink()
    assert make_dispatcher(RecordingSink(), dead=dead).dispatch([decoded(1), poison(9)]) is True
    assert [(letter.message_id, letter.raw, letter.dequeue_count) for letter in dead.letters] == [("M9", b"%%%", 2)]
    assert "not base64" in dead.letters[0].reason


def test_dead_letters_of_other_sources_carry_no_mns_message_id() -> None:
    """A push element's reference names it in logs, but its dead letter has no MNS message id."""
    dead = RecordingDeadLetterSink()
    sinks = [RecordingSink()]
    dispatcher = Dispatcher("push:SmsReport", "SmsReport", sinks, dead, Events(), threading.Event(), source="push")
    assert dispatcher.dispatch([Item(b"{}", "7.0", error=DecodeError("SmsReport", "", "bad"))]) is True
    assert [(letter.source, letter.message_id, letter.raw) for letter in dead.letters] == [("push", None, b"{}")]


def test_a_rejected_receipt_is_dead_lettered_naming_the_sink() -> None:
    """A permanent reject from one sink dead-letters that receipt; the others are stored."""
    dead = RecordingDeadLetterSink()
    picky = RecordingSink(
        "picky", reject=lambda r: "too long" if r.phone_number == make_receipt(2).phone_number else None
    )
    assert make_dispatcher(RecordingSink("ok"), picky, dead=dead).dispatch([decoded(1), decoded(2)]) is True
    assert [(letter.sink, letter.dedupe_key) for letter in dead.letters] == [("picky", make_receipt(2).dedupe_key)]
    assert "too long" in dead.letters[0].reason


def test_an_unavailable_sink_is_retried_until_it_recovers_and_pauses_receiving_meanwhile() -> None:
    """While a sink is down the dispatcher waits (healthy cleared), then settles once it is back."""
    sink = RecordingSink()
    sink.available = False
    dispatcher = make_dispatcher(sink)
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(dispatcher.dispatch([decoded(1)])))
    thread.start()
    while sink.writes < 3:
        threading.Event().wait(0.01)
    assert not dispatcher.healthy.is_set()
    sink.available = True
    thread.join(timeout=10)
    assert result
    assert result[0] is True
    assert dispatcher.healthy.is_set()
    assert len(sink.stored) == 1


def test_abandon_during_an_outage_settles_nothing() -> None:
    """At the drain deadline a batch whose sink is still down is abandoned: nothing may be deleted."""
    sink = RecordingSink()
    sink.available = False
    dispatcher = make_dispatcher(sink)
    dispatcher.abandon.set()
    assert dispatcher.dispatch([decoded(1)]) is False


def test_a_sink_bug_costs_only_that_batch() -> None:
    """A sink raising anything but SinkUnavailable abandons the batch instead of crashing."""

    class Broken(RecordingSink):
        def write(self, batch: Sequence[Receipt]) -> SinkResult:
            raise RuntimeError("bug")

    assert make_dispatcher(Broken()).dispatch([decoded(1)]) is False


def test_a_dead_letter_outage_keeps_the_poison_in_the_queue_until_it_recovers() -> None:
    """Poison is deleted only after the dead-letter sink stored it."""
    dead = RecordingDeadLetterSink()
    dead.available = False
    dispatcher = make_dispatcher(RecordingSink(), dead=dead)
    dispatcher.abandon.set()
    assert dispatcher.dispatch([poison(9)]) is False
    assert dead.letters == []


def test_batches_dispatched_together_share_one_write_per_sink() -> None:
    """Batches that queued up are stored with one write per sink, and every message of each is settled."""
    sink, dead = RecordingSink("a"), RecordingDeadLetterSink()
    first = [decoded(n) for n in range(3)]
    second = [*(decoded(n) for n in range(3, 5)), poison(9, b"x", "bad")]
    assert make_dispatcher(sink, dead=dead).dispatch([*first, *second]) is True
    assert sink.writes == 1
    assert sorted(r.dedupe_key for r in sink.stored.values()) == sorted(make_receipt(n).dedupe_key for n in range(5))
    assert [letter.reason for letter in dead.letters] == ["undecodable: SmsReport: bad"]


def test_batches_dispatched_together_are_abandoned_together() -> None:
    """A sink that never recovers before the drain deadline keeps every batch of the call undeletable."""
    sink = RecordingSink("a")
    sink.available = False
    dispatcher = make_dispatcher(sink)
    dispatcher.abandon.set()
    assert dispatcher.dispatch([decoded(0), decoded(1)]) is False


def test_a_sink_that_leaves_receipts_unsettled_is_written_again_with_only_those() -> None:
    """An answer settling only part of the write counts as unavailable: the rest is written again, then settles."""

    class Forgetful(RecordingSink):
        def __init__(self) -> None:
            super().__init__("forgetful")
            self.sizes: list[int] = []

        def write(self, batch: Sequence[Receipt]) -> SinkResult:
            self.sizes.append(len(batch))
            return super().write(batch[:1] if self.writes == 0 else batch)

    sink = Forgetful()
    dispatcher = make_dispatcher(sink)
    assert dispatcher.dispatch([decoded(n) for n in range(3)]) is True
    assert sink.sizes == [3, 2]
    assert len(sink.stored) == 3
    assert dispatcher.healthy.is_set()
