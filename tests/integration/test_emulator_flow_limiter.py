"""SMQ's flow limiter in the emulator (reference 3.9), driven by the real ``aliyun-mns-sdk``.

Rates are counted in a window of emulator time; these tests widen it (``window_seconds``) so that a
loaded machine cannot split a test's calls over two windows, and scale the thresholds with it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest
from mns.mns_exception import MNSServerException
from mns.queue import Message, Queue

from mns_consumer.emulator import Emulator, FlowLimits, QueueDefaults
from tests.integration.mns_helpers import Accounts, accounts_for, last_status

QUEUE = "Alicom-Queue-i1-SmsReport"
WIDE = 60.0
"""A window no test outlasts, in seconds of emulator time."""


@pytest.fixture
def limited(make_emulator: Callable[..., Emulator]) -> Iterator[Callable[..., tuple[Emulator, Queue]]]:
    """A factory: an emulator with the flow limiter on (these limits), and its SmsReport queue through the SDK."""
    opened: list[Accounts] = []

    def make(limits: FlowLimits, **settings: object) -> tuple[Emulator, Queue]:
        emulator = make_emulator(flow_limits=limits, **settings)
        accounts = Accounts(emulator)
        opened.append(accounts)
        return emulator, accounts.master().get_queue(QUEUE)

    yield make
    for accounts in opened:
        accounts.close()


def refusal(call: Callable[[], object]) -> MNSServerException:
    """The MNS error a call raises, checked to be the flow limiter's 429."""
    with pytest.raises(MNSServerException) as caught:
        call()
    assert (caught.value.type, last_status()) == ("TooManyRequests", 429)
    return caught.value


def refused(emulator: Emulator) -> dict[str, dict[str, int]]:
    return emulator.flow_limiter.refused()


def test_a_throttled_call_is_held_then_answered_429_too_many_requests_in_mns_xml(
    limited: Callable[..., tuple[Emulator, Queue]],
) -> None:
    """The 429 parses in the SDK as MNSServerException TooManyRequests, after the default 500 ms hold."""
    emulator, queue = limited(FlowLimits(throttle_probability=1.0))
    began = time.monotonic()
    error = refusal(lambda: queue.receive_message(0))
    held = time.monotonic() - began
    assert error.message == "The request is denied by cluster flow limiter for too many requests."
    assert error.req_id
    assert error.host_id
    assert held >= 0.5
    assert refused(emulator) == {"cluster": {"ReceiveMessage": 1}}


def test_the_hold_is_configurable(limited: Callable[..., tuple[Emulator, Queue]]) -> None:
    """hold_seconds sets how long a refused call waits for its 429."""
    _, queue = limited(FlowLimits(throttle_probability=1.0, hold_seconds=1.2))
    began = time.monotonic()
    refusal(queue.get_attributes)
    assert time.monotonic() - began >= 1.2


def test_the_account_budget_counts_batch_operations_per_message(limited: Callable[..., tuple[Emulator, Queue]]) -> None:
    """A budget of 48 is spent by three batch calls of 16 messages; a fourth call is served only below it."""
    emulator, queue = limited(FlowLimits(account_tps=48 / WIDE, window_seconds=WIDE))
    emulator.produce("SmsReport", 20)

    # Given: a batch send of 16 (16), a batch receive of 16 (32) and a batch delete of 15 (47).
    queue.batch_send_message([Message(json.dumps({"n": n})) for n in range(16)])
    received = queue.batch_receive_message(16, 0)
    assert len(received) == 16
    queue.batch_delete_message([m.receipt_handle for m in received[:15]])

    # When: one more message-count of budget is left, a call is served (and spends it) ...
    queue.delete_message(received[15].receipt_handle)
    # Then: ... and the next one, whatever it is, gets 429.
    refusal(lambda: queue.receive_message(0))
    refusal(queue.get_attributes)
    assert refused(emulator) == {"account_tps": {"ReceiveMessage": 1, "GetQueueAttributes": 1}}


def test_the_account_budget_opens_again_in_the_next_window(limited: Callable[..., tuple[Emulator, Queue]]) -> None:
    """Once the window is over (the emulator clock moved on), calls are served again."""
    emulator, queue = limited(FlowLimits(account_tps=2 / WIDE, window_seconds=WIDE))
    queue.get_attributes()
    queue.get_attributes()
    refusal(queue.get_attributes)
    emulator.clock.advance(WIDE)
    assert queue.get_attributes().queue_name == QUEUE


def test_received_not_deleted_trips_at_its_threshold_and_not_below(
    limited: Callable[..., tuple[Emulator, Queue]],
) -> None:
    """32 received and not deleted throttle receives; 31 do not; deletes stay open and lift it."""
    emulator, queue = limited(FlowLimits(max_received_not_deleted=32))
    emulator.produce("SmsReport", 40)

    held = queue.batch_receive_message(16, 0) + queue.batch_receive_message(15, 0)
    held.append(queue.receive_message(0))  # 31 held: still served, and now 32 are
    refusal(lambda: queue.batch_receive_message(16, 0))

    queue.delete_message(held[0].receipt_handle)  # deletes are not throttled
    assert len(queue.batch_receive_message(1, 0)) == 1  # 31 again: served
    state = emulator.queue(QUEUE).consumption()
    assert (state.received_not_deleted, state.received_not_deleted_max) == (32, 32)
    assert refused(emulator) == {"received_not_deleted": {"BatchReceiveMessage": 1}}


def test_received_not_deleted_is_freed_when_the_visibility_timeout_ends(
    limited: Callable[..., tuple[Emulator, Queue]],
) -> None:
    """Messages that became visible again no longer count, so receiving resumes by itself."""
    emulator, queue = limited(FlowLimits(max_received_not_deleted=16))
    emulator.produce("SmsReport", 20)
    queue.batch_receive_message(16, 0)
    refusal(lambda: queue.receive_message(0))
    emulator.clock.advance(31)  # past the 30 s visibility timeout
    assert queue.receive_message(0).dequeue_count in (1, 2)


def test_receive_without_delete_rate_trips_above_its_threshold_and_not_at_it(
    limited: Callable[..., tuple[Emulator, Queue]],
) -> None:
    """Received minus deleted in a window: 32 (the threshold) is served, 33 is refused."""
    limits = FlowLimits(max_received_not_deleted_tps=32 / WIDE, window_seconds=WIDE, max_received_not_deleted=0)
    emulator, queue = limited(limits)
    emulator.produce("SmsReport", 60)

    queue.batch_receive_message(16, 0)
    queue.batch_receive_message(16, 0)
    queue.receive_message(0)  # 32 so far: not above the threshold, served (33 now)
    refusal(lambda: queue.receive_message(0))
    assert refused(emulator) == {"received_not_deleted_rate": {"ReceiveMessage": 1}}


def test_receiving_and_deleting_at_the_same_pace_never_trips_the_rate(
    limited: Callable[..., tuple[Emulator, Queue]],
) -> None:
    """A consumer that deletes what it receives stays at zero growth, however much it receives."""
    limits = FlowLimits(max_received_not_deleted_tps=16 / WIDE, window_seconds=WIDE, max_received_not_deleted=0)
    emulator, queue = limited(limits)
    emulator.produce("SmsReport", 80)
    for _ in range(5):
        batch = queue.batch_receive_message(16, 0)
        queue.batch_delete_message([m.receipt_handle for m in batch])
    assert emulator.queue(QUEUE).consumption().received_total == 80
    assert refused(emulator) == {}


def test_a_message_held_more_than_thirty_minutes_trips_after_the_clock_moves(
    limited: Callable[..., tuple[Emulator, Queue]],
) -> None:
    """Held 29:59 (even across a visibility change): served; past 30 minutes: refused; deleted: served."""
    emulator, queue = limited(FlowLimits(), queue_defaults=QueueDefaults(visibility_timeout_seconds=3600))
    emulator.produce("SmsReport", 3)
    held = queue.receive_message(0)

    emulator.clock.advance(1799)
    changed = queue.change_message_visibility(held.receipt_handle, 3600)
    queue.receive_message(0)
    emulator.clock.advance(2)
    refusal(lambda: queue.receive_message(0))

    queue.delete_message(changed.receipt_handle)
    assert queue.receive_message(0).dequeue_count == 1
    assert refused(emulator) == {"received_not_deleted_age": {"ReceiveMessage": 1}}


def test_the_documented_limits_are_the_defaults() -> None:
    """500 ms hold, 20,000 TPS, 5,000 messages, 1,000 TPS, 30 minutes, one-second windows (reference 3.9)."""
    limits = FlowLimits()
    assert (limits.hold_seconds, limits.account_tps, limits.window_seconds) == (0.5, 20_000, 1.0)
    assert (limits.max_received_not_deleted, limits.max_received_not_deleted_tps) == (5_000, 1_000)
    assert (limits.max_received_not_deleted_seconds, limits.throttle_probability) == (1_800, 0.0)


def test_bad_limits_are_refused_with_the_field() -> None:
    """A negative threshold or a probability above one is a ValueError naming it."""
    with pytest.raises(ValueError, match="account_tps"):
        FlowLimits(account_tps=-1)
    with pytest.raises(ValueError, match="throttle_probability"):
        FlowLimits(throttle_probability=1.5)


def test_the_limiter_is_off_by_default(emulator: Emulator) -> None:
    """Without flow limits no call is ever refused, whatever is held."""
    emulator.produce("SmsReport", 40)
    with accounts_for(emulator) as accounts:
        queue = accounts.master().get_queue(QUEUE)
        for _ in range(3):
            queue.batch_receive_message(16, 0)
    assert emulator.flow_limiter.limits is None
    assert emulator.queue(QUEUE).consumption().received_not_deleted == 40
