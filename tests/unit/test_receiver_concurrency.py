"""How a queue's receivers grow and shrink, and the in-flight budget and rate they share."""

from __future__ import annotations

from mns_consumer.consume.concurrency import (
    SCALE_DOWN_AFTER_SHORT,
    SCALE_UP_AFTER_FULL,
    MessageBudget,
    ReceiptRate,
    ReceiverControl,
)


def test_receivers_grow_one_at_a_time_after_runs_of_full_batches_up_to_the_maximum() -> None:
    changes: list[tuple[int, str]] = []
    control = ReceiverControl(3, 16, on_change=lambda n, why: changes.append((n, why)))
    for _ in range(SCALE_UP_AFTER_FULL * 10):
        control.observe(16, room_for_more=True)
    assert control.target == 3
    assert changes == [(2, "backlog"), (3, "backlog")]


def test_a_single_short_batch_among_full_ones_does_not_shrink_the_receivers() -> None:
    control = ReceiverControl(8, 16)
    for _ in range(SCALE_UP_AFTER_FULL * 4):
        control.observe(16, room_for_more=True)
    grown = control.target
    for _ in range(20):
        control.observe(16, room_for_more=True)
        control.observe(5, room_for_more=True)  # SMQ cuts batches short under load
    assert control.target >= grown


def test_runs_of_short_or_empty_batches_bring_the_receivers_back_to_one() -> None:
    control = ReceiverControl(4, 16)
    for _ in range(SCALE_UP_AFTER_FULL * 3):
        control.observe(16, room_for_more=True)
    assert control.target == 4
    for _ in range(SCALE_DOWN_AFTER_SHORT * 3):
        control.observe(0, room_for_more=True)
    assert control.target == 1
    for _ in range(SCALE_DOWN_AFTER_SHORT * 3):
        control.observe(0, room_for_more=True)
    assert control.target == 1


def test_full_batches_add_no_receiver_while_the_sinks_or_the_budget_are_behind() -> None:
    control = ReceiverControl(8, 16)
    for _ in range(SCALE_UP_AFTER_FULL * 5):
        control.observe(16, room_for_more=False)
    assert control.target == 1


def test_a_429_halves_the_receivers_once_a_second_at_most_and_never_below_one() -> None:
    changes: list[tuple[int, str]] = []
    now = [0.0]
    control = ReceiverControl(8, 16, on_change=lambda n, why: changes.append((n, why)), clock=lambda: now[0])
    for _ in range(SCALE_UP_AFTER_FULL * 7):
        control.observe(16, room_for_more=True)
    assert control.target == 8
    # the 429s of calls already under way count for one halving
    assert [control.throttled() for _ in range(3)] == [4, 4, 4]
    halvings = []
    for _ in range(4):
        now[0] += 1.0
        halvings.append(control.throttled())
    assert halvings == [2, 1, 1, 1]
    assert changes[-3:] == [(4, "throttled"), (2, "throttled"), (1, "throttled")]


def test_the_message_budget_never_lets_reservations_exceed_its_cap() -> None:
    budget = MessageBudget(32)
    assert budget.reserve(16, 0)
    assert budget.reserve(16, 0)
    assert not budget.reserve(16, 0.01)
    budget.release(16 - 3)  # a receive that brought 3 of 16
    assert budget.held == 19
    assert not budget.reserve(16, 0.01)
    budget.release(3)
    assert budget.reserve(16, 0)
    assert budget.held == 32


def test_the_receipt_rate_waits_once_its_second_is_spent_and_refills_with_time() -> None:
    now = [100.0]
    rate = ReceiptRate(100, clock=lambda: now[0])
    assert rate.seconds_to_wait() == 0
    rate.spend(100)
    assert rate.seconds_to_wait() > 0
    now[0] += 0.5
    assert rate.seconds_to_wait() == 0
    rate.spend(16)
    rate.spend(50)
    assert rate.seconds_to_wait() > 0
