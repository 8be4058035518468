"""A poller against the emulator, with the emulator's clock moved instead of waited for.

The poller's own clock (which times visibility and holds) is tied to the emulator's, so moving the
emulator forward moves both sides: a 40-minute sink outage takes seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from mns_consumer.alicom.credentials import AccessKey
from mns_consumer.alicom.dybase import DybaseTokenFetcher
from mns_consumer.alicom.queue import MnsQueue
from mns_consumer.alicom.tokens import TokenProvider
from mns_consumer.consume.poller import Poller, PollerSettings
from mns_consumer.delivery import Dispatcher
from mns_consumer.emulator import Emulator, FlowLimits
from mns_consumer.observe.events import Events
from mns_consumer.testing import RecordingDeadLetterSink, RecordingSink
from tests.integration.test_tokens_emulator import endpoints_of

QUEUE = "Alicom-Queue-hold1-SmsReport"
AGE_RULE_SECONDS = 1800.0
DEADLINE_SECONDS = 30.0


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition``; fail as hung (a guard, not a timing assertion) after :data:`DEADLINE_SECONDS`."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"hang guard: {what}")
        time.sleep(0.05)


@pytest.fixture
def emulator(make_emulator: Callable[..., Emulator]) -> Emulator:
    """An emulator whose flow limiter enforces the abnormal-consumption rules, and which accepts requests
    dated by the real clock however far its own clock is moved."""
    return make_emulator(queues={"SmsReport": QUEUE}, flow_limits=FlowLimits(), max_clock_skew_seconds=24 * 3600.0)


def make_poller(emulator: Emulator, sink: RecordingSink, events: Events, **settings: float) -> Poller:
    """A poller of :data:`QUEUE` on the emulator, one batch in flight unless ``settings`` say otherwise."""
    key = AccessKey(emulator.settings.access_key_id, emulator.settings.access_key_secret)
    tokens = TokenProvider(
        DybaseTokenFetcher(key, endpoints_of(emulator)), "SmsReport", QUEUE, now=emulator.clock.now_datetime
    )
    dispatcher = Dispatcher(
        QUEUE,
        "SmsReport",
        [sink],
        RecordingDeadLetterSink(),
        events,
        threading.Event(),
        retry_initial_seconds=0.05,
        retry_max_seconds=0.2,
    )

    def make_client() -> MnsQueue:
        return MnsQueue(emulator.url, QUEUE, tokens.credentials_provider(), request_timeout_seconds=5)

    defaults: dict[str, float] = {"wait_seconds": 1, "in_flight_batches": 1}
    return Poller(
        PollerSettings("SmsReport", QUEUE, **{**defaults, **settings}),  # type: ignore[arg-type]
        tokens,
        dispatcher,
        events,
        make_client,
        clock=lambda: time.monotonic() + emulator.clock.offset_seconds,
    )


@pytest.fixture
def stop_afterwards() -> Iterator[list[Poller]]:
    pollers: list[Poller] = []
    yield pollers
    for poller in pollers:
        poller.give_up()
        poller.join(time.monotonic() + 10)


@pytest.mark.timeout(120)
def test_a_long_sink_outage_never_holds_a_message_past_the_thirty_minute_rule(
    emulator: Emulator, stop_afterwards: list[Poller]
) -> None:
    """Through a 40-minute outage the batch is kept invisible, then let go well before MNS's 30-minute rule."""
    # Given a poller whose only sink is down, holding one batch
    emulator.produce("SmsReport", 20)
    sink = RecordingSink()
    sink.available = False
    events = Events()
    poller = make_poller(emulator, sink, events, max_hold_seconds=600)
    stop_afterwards.append(poller)
    poller.start()
    queue = emulator.queue(QUEUE)
    wait_until(lambda: poller.in_flight_messages() == (1, 16), "one batch received and held")
    assert queue.consumption().received_not_deleted == 16

    # When 40 minutes of outage pass on the emulator's clock, 10 s at a time, the keeper keeping up
    held_through: list[float] = []
    for step in range(1, 241):
        emulator.clock.advance(10)
        now_ms = emulator.clock.now_ms()
        # the keeper extends once half the window passed; give it the ticks it needs to see the new time
        wait_until(
            lambda: queue.consumption().received_not_deleted in (0, 16) and not _due(poller),
            f"keeper caught up at step {step}",
        )
        figures = queue.consumption()
        # Then no message is ever held received-and-undeleted past the abnormal-consumption age
        if figures.oldest_received_ms is not None:
            held = (now_ms - figures.oldest_received_ms) / 1000
            assert held <= AGE_RULE_SECONDS, f"held {held:.0f} s at step {step}"
            held_through.append(held)

    # And the batch was really kept invisible (extended) for most of the 10 minutes before being let go
    assert max(held_through) >= 540, max(held_through)
    assert queue.consumption().received_not_deleted == 0
    assert events.total("visibility_released") == 16
    assert events.total("visibility_extended") >= 16
    # And receiving stayed paused for the outage: nothing else was taken, nothing stored or dead-lettered
    assert queue.consumption().received_total == 16
    assert sink.stored == {}
    assert emulator.flow_limiter.refused() == {}


def _due(poller: Poller) -> bool:
    """Whether a held batch is past half its visibility window and not let go (the keeper still owes a tick)."""
    now = poller._clock()  # the test's own clock, handed to the poller
    with poller._in_flight_lock:
        batches = list(poller._in_flight.values())
    return any(not batch.released and batch.visible_until() - batch.visibility_seconds / 2 <= now for batch in batches)
