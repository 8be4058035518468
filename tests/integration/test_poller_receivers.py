"""A poller against the emulator: extra receivers retire after a backlog, and the keeper outpaces a WAN."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest

from mns_consumer.consume.poller import EXTRA_RECEIVER_KEEP_SECONDS, Poller
from mns_consumer.emulator import Emulator, QueueDefaults, WanProfile
from mns_consumer.observe.events import Events
from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.base import SinkResult
from mns_consumer.testing import RecordingSink
from tests.integration.test_poller_hold import QUEUE, make_poller, stop_afterwards, wait_until

__all__ = ["stop_afterwards"]


def threads_named(prefix: str) -> set[threading.Thread]:
    """The live threads of the poller of :data:`QUEUE` whose name starts with ``prefix`` (``receiver``,
    ``receiver-`` for the extra ones only, ``deleter``)."""
    return {t for t in threading.enumerate() if t.name.startswith(prefix) and t.name.endswith(f":{QUEUE}")}


def drain_a_backlog(
    make_emulator: Callable[..., Emulator], stop_afterwards: list[Poller]
) -> tuple[Emulator, RecordingSink, Poller, set[threading.Thread]]:
    """Start a poller on a backlog large enough for more receivers and wait until it is drained.

    Returns the emulator, the sink, the poller and the extra receiver threads seen meanwhile.
    """
    emulator = make_emulator(queues={"SmsReport": QUEUE}, wan=WanProfile(0.01, 0.0, "mns"))
    emulator.produce("SmsReport", 1500)
    sink = RecordingSink()
    poller = make_poller(emulator, sink, Events(), max_receivers=4, in_flight_batches=4)
    stop_afterwards.append(poller)
    seen: set[threading.Thread] = set()

    def grown() -> bool:
        seen.update(threads_named("receiver-"))
        return bool(seen)

    poller.start()
    wait_until(grown, "more receivers started for the backlog")
    wait_until(lambda: len(sink.stored) == 1500 and poller.receivers == 1, "backlog drained, target back to one")
    seen.update(threads_named("receiver-"))
    return emulator, sink, poller, seen


@pytest.mark.timeout(120)
def test_the_receivers_a_backlog_started_end_with_their_deleters_once_it_is_drained(
    make_emulator: Callable[..., Emulator], stop_afterwards: list[Poller]
) -> None:
    """Extra receivers are threads with a connection each: parked forever they would be a pool that only grows."""
    # Given a backlog large enough to start more receivers, when the poller drains it
    emulator, sink, poller, _ = drain_a_backlog(make_emulator, stop_afterwards)

    # Then only the long poll and its deleter are left running, while the queue is still consumed
    wait_until(lambda: len(threads_named("receiver")) == 1, "the extra receivers ended")
    wait_until(lambda: len(threads_named("deleter")) == 1, "their deleters ended")
    emulator.produce("SmsReport", 5)
    wait_until(lambda: len(sink.stored) == 1505 and poller.in_flight == 0, "new receipts still consumed")
    assert emulator.queue(QUEUE).consumption().received_not_deleted == 0


@pytest.mark.timeout(120)
def test_a_backlog_that_returns_soon_is_taken_by_the_parked_receivers_not_new_ones(
    make_emulator: Callable[..., Emulator], stop_afterwards: list[Poller]
) -> None:
    """Near one long poll's capacity the target moves often: each new receiver would be a new connection."""
    # Given a backlog that started extra receivers and was drained
    emulator, sink, poller, seen = drain_a_backlog(make_emulator, stop_afterwards)
    drained_at = time.monotonic()

    # When another backlog arrives within the keep time
    emulator.produce("SmsReport", 1500)
    wait_until(lambda: poller.receivers > 1, "the target rose again")
    risen_in = time.monotonic() - drained_at
    wait_until(lambda: len(sink.stored) == 3000, "second backlog stored")

    # Then it was taken by the receivers already there (while they were parked, not ended)
    assert risen_in < EXTRA_RECEIVER_KEEP_SECONDS, f"the target took {risen_in:.1f} s to rise; the test needs less"
    assert threads_named("receiver-") <= seen, "a new receiver thread was started while parked ones were kept"


@pytest.mark.timeout(120)
def test_a_stop_wakes_the_parked_receivers_at_once(
    make_emulator: Callable[..., Emulator], stop_afterwards: list[Poller]
) -> None:
    """Parked receivers sleep until the target moves or their keep time runs out; a stop must wake them too."""
    # Given a drained backlog whose extra receivers are parked (their keep time not yet over)
    _, _, poller, _ = drain_a_backlog(make_emulator, stop_afterwards)
    parked = threads_named("receiver-")
    assert parked, "no parked receiver right after the drain; the test needs one"

    # When receiving stops
    stopped_at = time.monotonic()
    poller.stop_receiving()

    # Then they end within a fraction of the keep time
    wait_until(lambda: not any(thread.is_alive() for thread in parked), "the parked receivers ended")
    ended_in = time.monotonic() - stopped_at
    assert ended_in < EXTRA_RECEIVER_KEEP_SECONDS / 5, f"parked receivers took {ended_in:.1f} s to see the stop"


class SlowSink(RecordingSink):
    """Takes ``seconds`` over every write, as a sink behind a slow network does."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def write(self, batch: Sequence[Receipt]) -> SinkResult:
        time.sleep(self.seconds)
        return super().write(batch)


@pytest.mark.timeout(120)
def test_a_batch_is_kept_invisible_through_a_short_timeout_over_a_slow_network(
    make_emulator: Callable[..., Emulator], stop_afterwards: list[Poller]
) -> None:
    """An 8 s visibility timeout over 500 ms round trips: one extension per message in turn would take 8 s."""
    # Given 16 messages, a slow sink, and a queue whose messages turn visible again 8 s after a receive
    emulator = make_emulator(
        queues={"SmsReport": QUEUE},
        queue_defaults=QueueDefaults(visibility_timeout_seconds=8),
        wan=WanProfile(0.5, 0.0, "mns"),
    )
    emulator.produce("SmsReport", 16)
    sink = SlowSink(12.0)
    events = Events()
    poller = make_poller(emulator, sink, events, in_flight_batches=2)
    stop_afterwards.append(poller)

    # When the poller stores them (the receiver free to take the batch again if it lapses)
    poller.start()
    wait_until(lambda: len(sink.stored) == 16 and poller.in_flight == 0, "batch stored and deleted")

    # Then every message was extended in time: handed out once, deleted with its newest handle
    assert events.total("visibility_extended") == 16
    assert events.total("received") == 16, "a message turned visible again while its batch was held"
    assert events.total("delete_failed") == 0
    assert emulator.queue(QUEUE).consumption().received_not_deleted == 0


@pytest.mark.timeout(120)
def test_a_token_that_may_not_extend_is_told_once_and_the_batch_still_settles(
    make_emulator: Callable[..., Emulator], stop_afterwards: list[Poller]
) -> None:
    """AccessDenied on ChangeMessageVisibility stops the keeper for good; the slow batch is still stored and deleted."""
    # Given a queue token that may not change visibility, a 4 s timeout and a sink taking 3 s (past half of it)
    emulator = make_emulator(
        queues={"SmsReport": QUEUE},
        queue_defaults=QueueDefaults(visibility_timeout_seconds=4),
        token_allows_visibility_change=False,
    )
    emulator.produce("SmsReport", 16)
    sink = SlowSink(3.0)
    events = Events()
    poller = make_poller(emulator, sink, events)
    stop_afterwards.append(poller)

    # When the poller stores the batch
    poller.start()
    wait_until(lambda: len(sink.stored) == 16 and poller.in_flight == 0, "batch stored")

    # Then the refusal was noted once, nothing was extended or counted as a failure, and the batch settled
    assert events.total("visibility_denied") == 1
    assert events.total("visibility_extended") == 0
    assert events.total("visibility_failed") == 0
    assert (events.total("deleted"), events.total("delete_failed")) == (16, 0)
