"""The push spool: a durable FIFO per route that survives restarts and only forgets what was removed."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mns_consumer.delivery import Dispatcher
from mns_consumer.emulator.clock import Clock
from mns_consumer.emulator.samples import ReceiptFactory
from mns_consumer.errors import SpoolUnavailable
from mns_consumer.observe.events import Events
from mns_consumer.push.spool import Spool
from mns_consumer.push.worker import SpoolWorker
from mns_consumer.receipt_model import Receipt
from mns_consumer.receipts import decode_push
from mns_consumer.sinks.base import SinkResult
from mns_consumer.testing import RecordingDeadLetterSink, RecordingSink


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    opened = Spool(tmp_path / "state" / "spool.db")
    opened.open()
    yield opened
    opened.close()


def test_entries_come_back_per_route_in_the_order_they_were_appended(spool: Spool) -> None:
    """take() returns a route's oldest entries first and never another route's."""
    for index in range(3):
        spool.append("push:SmsReport", "SmsReport", f"[{index}]".encode(), 1)
    spool.append("push:SmsUp", "SmsUp", b"[9]", 1)
    taken = spool.take("push:SmsReport", 2)
    assert [entry.body for entry in taken] == [b"[0]", b"[1]"]
    assert {entry.route for entry in taken} == {"push:SmsReport"}
    assert [entry.body for entry in spool.take("push:SmsUp", 10)] == [b"[9]"]


def test_taking_does_not_remove_and_removing_forgets_only_the_given_entries(spool: Spool) -> None:
    """An entry stays until remove(); then only the removed ones are gone."""
    for index in range(3):
        spool.append("push:SmsReport", "SmsReport", f"[{index}]".encode(), 1)
    first = spool.take("push:SmsReport", 2)
    assert len(spool.take("push:SmsReport", 10)) == 3
    spool.remove(first)
    assert [entry.body for entry in spool.take("push:SmsReport", 10)] == [b"[2]"]
    assert spool.depth("push:SmsReport") == 1
    assert spool.depth() == 1


def test_entries_survive_closing_and_reopening(tmp_path: Path) -> None:
    """What an earlier run left is counted and delivered by the next one."""
    path = tmp_path / "spool.db"
    first = Spool(path)
    first.open()
    first.append("push:SmsUp", "SmsUp", b'[{"a":1}]', 1)
    first.close()
    second = Spool(path)
    second.open()
    try:
        assert second.depths() == {"push:SmsUp": 1}
        (entry,) = second.take("push:SmsUp", 10)
        assert (entry.message_type, entry.body, entry.receipts) == ("SmsUp", b'[{"a":1}]', 1)
    finally:
        second.close()


def test_the_spool_file_and_its_new_folder_are_private(spool: Spool) -> None:
    """Receipts hold phone numbers: 0600 in a 0700 folder, whatever the umask."""
    assert stat.S_IMODE(os.stat(spool.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(spool.path.parent).st_mode) == 0o700


def test_the_oldest_age_is_zero_when_nothing_waits(spool: Spool) -> None:
    """The oldest-age gauge reads 0 for an empty route and a small age for a waiting one."""
    assert spool.oldest_age_seconds("push:SmsReport") == 0.0
    spool.append("push:SmsReport", "SmsReport", b"[1]", 1)
    assert 0.0 <= spool.oldest_age_seconds("push:SmsReport") < 3600


def test_a_closed_spool_refuses_appends_with_spool_unavailable(spool: Spool) -> None:
    """A push that cannot be stored raises SpoolUnavailable, so the receiver answers 503."""
    spool.close()
    with pytest.raises(SpoolUnavailable):
        spool.append("push:SmsReport", "SmsReport", b"[1]", 1)


def test_an_unusable_path_is_reported_as_spool_unavailable(tmp_path: Path) -> None:
    """A spool under a regular file cannot be opened."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SpoolUnavailable):
        Spool(blocker / "spool.db").open()


class _BatchSizes(RecordingSink):
    """A recording sink that also notes how many receipts each write carried."""

    def __init__(self) -> None:
        super().__init__("sizes")
        self.sizes: list[int] = []

    def write(self, batch: Sequence[Receipt]) -> SinkResult:
        self.sizes.append(len(batch))
        return super().write(batch)


def test_take_stops_before_the_receipt_budget_but_always_takes_one_entry(spool: Spool) -> None:
    """Entries are taken while their receipts fit the budget; an entry larger than it comes alone."""
    for receipts in (3, 4, 5, 20, 1):
        spool.append("push:SmsReport", "SmsReport", b"[]", receipts)
    assert [e.receipts for e in spool.take("push:SmsReport", 10, max_receipts=8)] == [3, 4]
    assert [e.receipts for e in spool.take("push:SmsReport", 1, max_receipts=8)] == [3]
    spool.remove(spool.take("push:SmsReport", 3))
    assert [e.receipts for e in spool.take("push:SmsReport", 10, max_receipts=8)] == [20]


def test_a_spool_larger_than_one_round_drains_in_rounds_within_the_receipt_bound_exactly_once(spool: Spool) -> None:
    """40 pushes of 30 receipts with a bound of 100: every write holds at most 100, each receipt arrives once."""
    factory = ReceiptFactory(Clock(), 7)
    pushed: list[str] = []
    for _ in range(40):
        items = [dict(item.receipt) for item in factory.make_many("SmsReport", 30)]
        body = json.dumps(items).encode()
        pushed.extend(r.dedupe_key for r in decode_push("SmsReport", body) if not isinstance(r, Exception))
        spool.append("push:SmsReport", "SmsReport", body, len(items))
    sink = _BatchSizes()
    dispatcher = Dispatcher(
        "push:SmsReport", "SmsReport", [sink], RecordingDeadLetterSink(), Events(), threading.Event(), source="push"
    )
    worker = SpoolWorker(spool, dispatcher, batch_entries=64, batch_receipts=100).start()
    worker.finish()
    assert worker.join(time.monotonic() + 60), "hang guard: the worker did not drain the spool within 60 s"

    assert len(pushed) == 1200
    assert len(sink.sizes) > 1
    assert max(sink.sizes) <= 100
    assert sum(sink.sizes) == 1200
    assert list(sink.stored) == pushed
    assert spool.depth() == 0


def test_a_sink_bug_is_logged_and_retried_and_the_entries_stay_spooled_until_delivered(spool: Spool) -> None:
    """A sink raising a bug costs a retry after a back-off (push.delivery_failed), never the spooled push."""

    class BrokenOnce(RecordingSink):
        def write(self, batch: Sequence[Receipt]) -> SinkResult:
            if self.writes == 0:
                self.writes += 1
                raise RuntimeError("a sink bug")
            return super().write(batch)

    body = json.dumps([dict(item.receipt) for item in ReceiptFactory(Clock(), 3).make_many("SmsReport", 2)]).encode()
    spool.append("push:SmsReport", "SmsReport", body, 2)
    sink = BrokenOnce()
    dispatcher = Dispatcher(
        "push:SmsReport", "SmsReport", [sink], RecordingDeadLetterSink(), Events(), threading.Event(), source="push"
    )
    worker = SpoolWorker(spool, dispatcher, retry_initial_seconds=0.01, retry_max_seconds=0.02)
    with capture_logs() as logs:
        worker.start().finish()
        assert worker.join(time.monotonic() + 30), "hang guard: the worker did not drain the spool within 30 s"
    assert [event["error"] for event in logs if event["event"] == "sink.bug"] == ["RuntimeError('a sink bug')"]
    assert len([event for event in logs if event["event"] == "push.delivery_failed"]) == 1
    assert len(sink.stored) == 2
    assert spool.depth() == 0
