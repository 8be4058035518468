"""The emulator's queue model against a reference model: visibility, receipt handles, order (reference 3.4-3.5)."""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from mns_consumer.emulator.clock import Clock
from mns_consumer.emulator.queues import (
    Delivery,
    MnsFault,
    Queue,
    QueueAttributes,
    QueueStore,
    SendResult,
    _DeletionLog,
    body_md5,
)

QUEUE_NAME = "Alicom-Queue-i1-SmsReport"
VISIBILITY_SECONDS = 5
RETENTION_SECONDS = 60
UNKNOWN_HANDLE = "1-" + base64.b64encode(b"8589934592-1435197600-9-999999").decode("ascii")


PRIORITIES = st.one_of(st.none(), st.integers(min_value=1, max_value=16))
DELAYS = st.sampled_from([None, 0, 0, 0, 2, 6])
PICKS = st.integers(min_value=0, max_value=63)


class SteppedClock(Clock):
    """An emulator clock that moves only when advanced: the model keeps time in whole advanced seconds,
    and real time creeping by between steps (more of it on a loaded machine) would put the queue a
    second ahead of it, or make Hypothesis replay an example differently from how it first ran."""

    def __init__(self) -> None:
        super().__init__()
        self._base = time.time()

    def now(self) -> float:
        """The creation time plus the seconds advanced since."""
        return self._base + self.offset_seconds


def make_queue(clock: Clock | None = None, **attributes: Any) -> tuple[Clock, Queue]:
    """A fresh queue with a 5 s visibility timeout (and the given attributes) on its own clock."""
    clock = clock or Clock()
    store = QueueStore(clock, max_long_polls_per_queue=4)
    store.create(QUEUE_NAME, QueueAttributes(visibility_timeout=VISIBILITY_SECONDS, **attributes))
    return clock, store.get(QUEUE_NAME)


def receive_now(queue: Queue, count: int = 1) -> list[Delivery]:
    """Receive without waiting."""
    return queue.receive(count, 0, should_stop=threading.Event())


@dataclass
class ModelMessage:
    """What the reference model knows about one message still in the queue."""

    message_id: str
    body: str
    priority: int
    order: int
    sent_s: int
    state: str = "active"
    visible_at_s: int = 0
    live_handle: str | None = None
    handles: list[str] = field(default_factory=list)
    dequeue_count: int = 0
    first_dequeue_ms: int = 0
    enqueue_ms: int | None = None


@settings(max_examples=80, stateful_step_count=40, deadline=None)
class QueueMachine(RuleBasedStateMachine):
    """Drives one queue with random operations and checks it against a simple model after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.clock, self.queue = make_queue(SteppedClock(), message_retention_period=RETENTION_SECONDS)
        self.now_s = 0
        self.messages: dict[str, ModelMessage] = {}
        self.sent: list[str] = []
        self.deleted: set[str] = set()
        self.expired: set[str] = set()
        self.dead_handles: list[str] = []
        self.seen_handles: set[str] = set()

    # -- model helpers ---------------------------------------------------------------------------

    def _visible(self) -> list[ModelMessage]:
        active = [m for m in self.messages.values() if m.state == "active"]
        return sorted(active, key=lambda m: (m.priority, m.order))

    def _with_live_handle(self, state: str | None = None) -> list[ModelMessage]:
        live = [m for m in self.messages.values() if m.live_handle and state in (None, m.state)]
        return sorted(live, key=lambda m: m.order)

    def _stale_handles(self) -> list[str]:
        stale = [h for m in self.messages.values() for h in m.handles if h != m.live_handle]
        return [*stale, *self.dead_handles, UNKNOWN_HANDLE]

    def _issue(self, message: ModelMessage, handle: str) -> None:
        assert handle, "a delivery must carry a receipt handle"
        assert handle not in self.seen_handles, "receipt handles are never reused"
        self.seen_handles.add(handle)
        message.handles.append(handle)
        message.live_handle = handle

    def _forget(self, message: ModelMessage, *, expired: bool = False) -> None:
        del self.messages[message.message_id]
        (self.expired if expired else self.deleted).add(message.message_id)
        self.dead_handles.extend(message.handles)

    def _record_send(self, body: str, priority: int | None, delay: int | None, result: SendResult) -> None:
        assert result.body_md5 == body_md5(body)
        assert result.message_id not in self.sent
        message = ModelMessage(
            result.message_id, body, 8 if priority is None else priority, order=len(self.sent), sent_s=self.now_s
        )
        if delay:
            # Delayed sends come back with a handle (reference 3.4, SendMessage).
            self._issue(message, result.receipt_handle)
            message.state = "delayed"
            message.visible_at_s = self.now_s + delay
        else:
            assert result.receipt_handle == ""
        self.sent.append(result.message_id)
        self.messages[result.message_id] = message

    def _check_snapshot(self, delivery: Delivery, message: ModelMessage) -> None:
        assert (delivery.message_id, delivery.body, delivery.priority) == (
            message.message_id,
            message.body,
            message.priority,
        )
        assert delivery.body_md5 == body_md5(message.body)
        if message.enqueue_ms is None:
            message.enqueue_ms = delivery.enqueue_ms
        assert delivery.enqueue_ms == message.enqueue_ms

    # -- producing -------------------------------------------------------------------------------

    @rule(priority=PRIORITIES, delay=DELAYS)
    def send(self, priority: int | None, delay: int | None) -> None:
        body = f"receipt-{len(self.sent)}"
        self._record_send(body, priority, delay, self.queue.send(body, priority=priority, delay_seconds=delay))

    @rule(items=st.lists(st.tuples(PRIORITIES, DELAYS), min_size=1, max_size=5))
    def send_batch(self, items: list[tuple[int | None, int | None]]) -> None:
        bodies = [f"receipt-{len(self.sent) + i}" for i in range(len(items))]
        results = self.queue.send_batch([(body, p, d) for body, (p, d) in zip(bodies, items, strict=True)])
        assert len(results) == len(items)
        for body, (priority, delay), result in zip(bodies, items, results, strict=True):
            assert isinstance(result, SendResult)
            self._record_send(body, priority, delay, result)

    # -- consuming -------------------------------------------------------------------------------

    @rule()
    def receive_one(self) -> None:
        self._receive(1)

    @rule(count=st.integers(min_value=2, max_value=6))
    def receive_batch(self, count: int) -> None:
        self._receive(count)

    def _receive(self, count: int) -> None:
        expected = self._visible()[:count]
        before = self.clock.now_ms()
        if not expected:
            with pytest.raises(MnsFault) as caught:
                receive_now(self.queue, count)
            assert caught.value.code == "MessageNotExist"
            return
        deliveries = receive_now(self.queue, count)
        after = self.clock.now_ms()
        # Priority 1 first, then enqueue order; only visible messages; each at most once.
        assert [d.message_id for d in deliveries] == [m.message_id for m in expected]
        for delivery, message in zip(deliveries, expected, strict=True):
            self._check_snapshot(delivery, message)
            assert delivery.dequeue_count == message.dequeue_count + 1
            if message.first_dequeue_ms == 0:
                assert before <= delivery.first_dequeue_ms <= after
                message.first_dequeue_ms = delivery.first_dequeue_ms
            assert delivery.first_dequeue_ms == message.first_dequeue_ms
            timeout_ms = VISIBILITY_SECONDS * 1000
            assert before + timeout_ms <= delivery.next_visible_ms <= after + timeout_ms
            message.dequeue_count += 1
            message.state = "inactive"
            message.visible_at_s = self.now_s + VISIBILITY_SECONDS
            self._issue(message, delivery.receipt_handle)

    @rule(count=st.integers(min_value=1, max_value=4))
    def peek(self, count: int) -> None:
        expected = self._visible()[:count]
        if not expected:
            with pytest.raises(MnsFault) as caught:
                self.queue.peek(count)
            assert caught.value.code == "MessageNotExist"
            return
        deliveries = self.queue.peek(count)
        assert [d.message_id for d in deliveries] == [m.message_id for m in expected]
        for delivery, message in zip(deliveries, expected, strict=True):
            self._check_snapshot(delivery, message)
            assert (delivery.dequeue_count, delivery.first_dequeue_ms) == (
                message.dequeue_count,
                message.first_dequeue_ms,
            )

    @precondition(lambda self: self._with_live_handle())
    @rule(pick=PICKS)
    def delete_with_current_handle(self, pick: int) -> None:
        live = self._with_live_handle()
        message = live[pick % len(live)]
        assert message.live_handle is not None
        self.queue.delete(message.live_handle)
        self._forget(message)

    @rule(pick=PICKS)
    def delete_with_stale_handle(self, pick: int) -> None:
        stale = self._stale_handles()
        with pytest.raises(MnsFault) as caught:
            self.queue.delete(stale[pick % len(stale)])
        assert caught.value.code == "ReceiptHandleError"

    @rule(live_picks=st.lists(PICKS, max_size=4), stale_picks=st.lists(PICKS, max_size=4), data=st.data())
    def batch_delete_mixing_live_and_stale_handles(
        self, live_picks: list[int], stale_picks: list[int], data: st.DataObject
    ) -> None:
        live = self._with_live_handle()
        stale = self._stale_handles()
        # A live handle may appear twice: its second occurrence must fail, as the message is gone.
        handles = [live[p % len(live)].live_handle or "" for p in live_picks] if live else []
        handles += [stale[p % len(stale)] for p in stale_picks]
        assume(handles)
        handles = data.draw(st.permutations(handles))
        by_live_handle = {m.live_handle: m for m in live}
        expected: list[str] = []
        for handle in handles:
            message = by_live_handle.pop(handle, None)
            if message is None:
                expected.append(handle)
            else:
                self._forget(message)
        failures = self.queue.delete_batch(handles)
        assert [(h, f.code) for h, f in failures] == [(h, "ReceiptHandleError") for h in expected]

    @precondition(lambda self: self._with_live_handle("inactive"))
    @rule(pick=PICKS, seconds=st.integers(min_value=1, max_value=12))
    def change_visibility_with_current_handle(self, pick: int, seconds: int) -> None:
        inactive = self._with_live_handle("inactive")
        message = inactive[pick % len(inactive)]
        assert message.live_handle is not None
        before = self.clock.now_ms()
        handle, next_visible_ms = self.queue.change_visibility(message.live_handle, seconds)
        after = self.clock.now_ms()
        # The new timeout counts from the call, not from the receive (reference 3.4).
        assert before + seconds * 1000 <= next_visible_ms <= after + seconds * 1000
        message.visible_at_s = self.now_s + seconds
        self._issue(message, handle)

    @rule(seconds=st.sampled_from([1, 2, 4, 5, 6, 11, 25]))
    def advance_clock(self, seconds: int) -> None:
        # Retention ends after exactly 60 s, where the milliseconds real time crept decide: step over it.
        while any(self.now_s + seconds - m.sent_s == RETENTION_SECONDS for m in self.messages.values()):
            seconds += 1
        self.clock.advance(seconds)
        self.now_s += seconds
        for message in list(self.messages.values()):
            if self.now_s - message.sent_s > RETENTION_SECONDS:
                # Removed whether consumed or not, and its handles with it (reference 3.5).
                self._forget(message, expired=True)
            elif message.state != "active" and self.now_s >= message.visible_at_s:
                # Visible again: whatever handle it had is stale from this instant (reference 3.5).
                message.state = "active"
                message.live_handle = None

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def counts_agree_with_the_model(self) -> None:
        states = [m.state for m in self.messages.values()]
        counts = self.queue.counts()
        expected = (states.count("active"), states.count("inactive"), states.count("delayed"))
        assert (counts.active, counts.inactive, counts.delayed) == expected

    @invariant()
    def every_sent_message_is_deleted_expired_or_still_present(self) -> None:
        present = self.queue.message_ids()
        assert len(present) == len(set(present))
        assert set(present) == set(self.sent) - self.deleted - self.expired

    @invariant()
    def every_handle_but_the_newest_is_refused(self) -> None:
        # ChangeMessageVisibility answers without side effects when it refuses, so every old handle
        # can be probed on every step: stale -> ReceiptHandleError, message gone -> MessageNotExist.
        for message in self.messages.values():
            for handle in message.handles:
                if handle != message.live_handle:
                    with pytest.raises(MnsFault) as caught:
                        self.queue.change_visibility(handle, 1)
                    assert caught.value.code == "ReceiptHandleError"
        for handle in self.dead_handles:
            with pytest.raises(MnsFault) as caught:
                self.queue.change_visibility(handle, 1)
            assert caught.value.code == "MessageNotExist"


def test_queue_stays_in_step_with_the_reference_model_under_random_operations() -> None:
    """Random sends, receives, peeks, deletes, visibility changes and clock moves never break an invariant."""
    run_state_machine_as_test(QueueMachine)


# -- focused examples ----------------------------------------------------------------------------


def test_a_message_comes_back_with_a_new_handle_once_its_visibility_timeout_passes() -> None:
    """After the timeout the same message is delivered again with DequeueCount 2 and its old handle dies."""
    clock, queue = make_queue()
    queue.send("hello")
    first = receive_now(queue)[0]

    clock.advance(VISIBILITY_SECONDS - 1)
    with pytest.raises(MnsFault) as caught:
        receive_now(queue)
    assert caught.value.code == "MessageNotExist"

    clock.advance(1)
    second = receive_now(queue)[0]
    assert second.message_id == first.message_id
    assert (first.dequeue_count, second.dequeue_count) == (1, 2)
    assert second.first_dequeue_ms == first.first_dequeue_ms
    assert second.receipt_handle != first.receipt_handle
    with pytest.raises(MnsFault) as caught:
        queue.delete(first.receipt_handle)
    assert caught.value.code == "ReceiptHandleError"
    queue.delete(second.receipt_handle)
    assert queue.message_ids() == []


def test_a_handle_whose_message_became_visible_again_is_refused_before_any_new_receive() -> None:
    """Once NextVisibleTime passes, the handle is stale even though nobody has received the message since."""
    clock, queue = make_queue()
    queue.send("hello")
    delivery = receive_now(queue)[0]
    clock.advance(VISIBILITY_SECONDS)
    with pytest.raises(MnsFault) as caught:
        queue.delete(delivery.receipt_handle)
    assert caught.value.code == "ReceiptHandleError"
    assert queue.counts().active == 1


def test_change_visibility_counts_from_the_call_and_retires_the_old_handle() -> None:
    """ChangeMessageVisibility restarts the timeout from now and only its new handle deletes the message."""
    clock, queue = make_queue()
    queue.send("hello")
    delivery = receive_now(queue)[0]
    clock.advance(3)
    handle, next_visible_ms = queue.change_visibility(delivery.receipt_handle, 4)
    assert next_visible_ms >= delivery.next_visible_ms + 2000

    clock.advance(3)  # 6 s after the receive: past the original timeout, within the new one.
    with pytest.raises(MnsFault) as caught:
        receive_now(queue)
    assert caught.value.code == "MessageNotExist"
    with pytest.raises(MnsFault) as caught:
        queue.change_visibility(delivery.receipt_handle, 10)
    assert caught.value.code == "ReceiptHandleError"
    queue.delete(handle)
    assert queue.message_ids() == []


def test_change_visibility_on_a_deleted_message_answers_message_not_exist() -> None:
    """A handle of a message that is gone gets MessageNotExist, not ReceiptHandleError."""
    _, queue = make_queue()
    queue.send("hello")
    delivery = receive_now(queue)[0]
    queue.delete(delivery.receipt_handle)
    with pytest.raises(MnsFault) as caught:
        queue.change_visibility(delivery.receipt_handle, 10)
    assert (caught.value.code, caught.value.status) == ("MessageNotExist", 404)


def test_batch_delete_deletes_the_live_handles_and_reports_only_the_others() -> None:
    """BatchDeleteMessage removes what it can and lists each stale or repeated handle as ReceiptHandleError."""
    clock, queue = make_queue()
    queue.send_batch([("a", None, None), ("b", None, None)])
    stale = receive_now(queue, 2)
    clock.advance(VISIBILITY_SECONDS)
    live = receive_now(queue, 2)
    handles = [live[0].receipt_handle, stale[1].receipt_handle, live[1].receipt_handle, live[0].receipt_handle]

    failures = queue.delete_batch(handles)

    assert [(h, f.code) for h, f in failures] == [
        (stale[1].receipt_handle, "ReceiptHandleError"),
        (live[0].receipt_handle, "ReceiptHandleError"),
    ]
    assert queue.message_ids() == []


def test_receive_hands_out_priority_one_first_then_enqueue_order() -> None:
    """A batch receive orders by priority (1 highest, default 8) and then by when each message was sent."""
    _, queue = make_queue()
    for body, priority in [("p8-a", None), ("p3", 3), ("p16", 16), ("p1", 1), ("p8-b", 8), ("p3-b", 3)]:
        queue.send(body, priority=priority)
    assert [d.body for d in receive_now(queue, 16)] == ["p1", "p3", "p3-b", "p8-a", "p8-b", "p16"]


def test_a_delayed_message_is_counted_delayed_and_received_only_after_its_delay() -> None:
    """A message sent with DelaySeconds stays out of receives and peeks until the delay has passed."""
    clock, queue = make_queue()
    queue.send("later", delay_seconds=3)
    assert (queue.counts().active, queue.counts().delayed) == (0, 1)
    with pytest.raises(MnsFault) as caught:
        queue.peek(1)
    assert caught.value.code == "MessageNotExist"

    clock.advance(3)
    assert (queue.counts().active, queue.counts().delayed) == (1, 0)
    assert receive_now(queue)[0].body == "later"


def test_an_unreceived_message_past_retention_is_gone_from_counts_ids_and_peek() -> None:
    """A message older than MessageRetentionPeriod is removed whether consumed or not (reference 3.5)."""
    clock, queue = make_queue(message_retention_period=60)
    queue.send("old")
    clock.advance(61)
    assert queue.counts().active == 0
    assert queue.message_ids() == []
    with pytest.raises(MnsFault) as caught:
        queue.peek(1)
    assert caught.value.code == "MessageNotExist"


def test_an_invisible_message_past_retention_can_no_longer_be_deleted() -> None:
    """A received message whose retention ends while it is invisible vanishes, and so does its handle."""
    clock, queue = make_queue(message_retention_period=60)
    queue.send("old")
    delivery = receive_now(queue)[0]
    handle, _ = queue.change_visibility(delivery.receipt_handle, 3600)
    clock.advance(61)
    assert queue.counts().inactive == 0
    with pytest.raises(MnsFault) as caught:
        queue.delete(handle)
    assert caught.value.code == "ReceiptHandleError"


def test_deletions_record_enqueue_and_delete_time_of_each_consumer_delete_only() -> None:
    """Single and batch deletes are logged as (EnqueueTime, delete time); expiry and stale handles are not."""
    clock, queue = make_queue(message_retention_period=60)
    queue.send("expires")
    clock.advance(30)
    queue.send_batch([("a", None, None), ("b", None, None), ("c", None, None)])
    deliveries = receive_now(queue, 4)
    by_body = {d.body: d for d in deliveries}
    clock.advance(2)
    queue.delete(by_body["a"].receipt_handle)
    clock.advance(1)
    failures = queue.delete_batch([by_body["b"].receipt_handle, by_body["a"].receipt_handle])
    assert [f.code for _, f in failures] == ["ReceiptHandleError"]
    clock.advance(40)  # "expires" passes its retention while invisible; "c" comes back, then ages out too

    logged = queue.deletions()

    assert [enqueued for enqueued, _ in logged] == [by_body["a"].enqueue_ms, by_body["b"].enqueue_ms]
    first, second = (deleted - enqueued for enqueued, deleted in logged)
    assert 2000 <= first < 2500
    assert 3000 <= second < 3500
    assert queue.deletions(clear=True) == logged
    assert queue.deletions() == []


def test_counts_follow_every_state_change_without_a_recount() -> None:
    """Active, inactive and delayed counts move with sends, receives, timeouts, deletes and expiry."""
    clock, queue = make_queue(message_retention_period=60)

    def counts() -> tuple[int, int, int]:
        current = queue.counts()
        return current.active, current.inactive, current.delayed

    queue.send("now")
    queue.send("later", delay_seconds=2)
    assert counts() == (1, 0, 1)
    received = receive_now(queue)[0]
    assert counts() == (0, 1, 1)
    clock.advance(VISIBILITY_SECONDS)
    assert counts() == (2, 0, 0)
    again = receive_now(queue, 2)
    assert counts() == (0, 2, 0)
    queue.delete_batch([d.receipt_handle for d in again])
    assert counts() == (0, 0, 0)
    assert received.body == "now"
    queue.send("ages out")
    clock.advance(61)
    assert counts() == (0, 0, 0)


def test_the_deletion_log_keeps_the_latest_entries_in_order_once_full() -> None:
    """Past its capacity the log drops its oldest entries and still lists the rest oldest first."""
    log = _DeletionLog(3)
    for n in range(5):
        log.add(n, n + 100)
    assert log.items() == [(2, 102), (3, 103), (4, 104)]
    log.clear()
    log.add(7, 8)
    assert log.items() == [(7, 8)]
