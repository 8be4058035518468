"""Short batches (reference 3.10): a BatchReceiveMessage answering fewer messages than are visible, even none."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from mns.mns_exception import MNSServerException
from mns.queue import Queue

from mns_consumer.emulator import Emulator
from tests.integration.mns_helpers import accounts_for

QUEUE = "Alicom-Queue-i1-SmsReport"


def drain(emulator: Emulator, queue: Queue) -> tuple[list[str], int, int, int]:
    """Batch-receive and delete until nothing is left; returns the ids received, calls, short and empty answers.

    A short answer is one with fewer messages than it could have taken (16, or what was visible).
    """
    received: list[str] = []
    calls = short = empty = 0
    stored = emulator.queue(QUEUE)
    while stored.counts().active:
        could_take = min(16, stored.counts().active)
        calls += 1
        try:
            batch = queue.batch_receive_message(16, 0)
        except MNSServerException as exc:
            if exc.type != "MessageNotExist":
                raise
            batch = []
            empty += 1
        short += len(batch) < could_take
        received.extend(m.message_id for m in batch)
        if batch:
            queue.batch_delete_message([m.receipt_handle for m in batch])
    return received, calls, short, empty


def test_short_batches_occur_at_the_configured_probability_and_lose_or_duplicate_nothing(
    make_emulator: Callable[..., Emulator],
) -> None:
    """With probability 0.5 about half the answers are short, some empty; every message arrives exactly once."""
    emulator = make_emulator(short_batch_probability=0.5)
    emulator.produce("SmsReport", 800)
    produced = emulator.queue(QUEUE).message_ids()

    with accounts_for(emulator) as accounts:
        received, calls, short, empty = drain(emulator, accounts.master().get_queue(QUEUE))

    assert sorted(received) == sorted(produced)
    assert len(set(received)) == len(received)
    assert 0.3 <= short / calls <= 0.7
    assert empty > 0
    assert emulator.queue(QUEUE).consumption().short_batches == short


def test_every_answer_is_short_at_probability_one_and_none_is_at_zero(make_emulator: Callable[..., Emulator]) -> None:
    """Probability 1 cuts every batch that had messages to take; probability 0 (the default) none."""
    always = make_emulator(short_batch_probability=1.0)
    always.produce("SmsReport", 100)
    stored = always.queue(QUEUE)
    with accounts_for(always) as accounts:
        queue = accounts.master().get_queue(QUEUE)
        for _ in range(20):
            before = stored.counts().active
            try:
                taken = len(queue.batch_receive_message(16, 0))
            except MNSServerException:
                taken = 0
            assert taken < min(16, before)
    assert stored.consumption().short_batches == 20

    never = make_emulator()
    never.produce("SmsReport", 100)
    with accounts_for(never) as accounts:
        _, calls, short, _ = drain(never, accounts.master().get_queue(QUEUE))
    assert (calls, short) == (7, 0)


def test_single_receives_are_never_cut(make_emulator: Callable[..., Emulator]) -> None:
    """ReceiveMessage hands out its one message whatever the short-batch probability."""
    emulator = make_emulator(short_batch_probability=1.0)
    emulator.produce("SmsReport", 5)
    with accounts_for(emulator) as accounts:
        queue = accounts.master().get_queue(QUEUE)
        assert all(queue.receive_message(0) for _ in range(5))
    assert emulator.queue(QUEUE).consumption().short_batches == 0


def test_a_short_batch_probability_out_of_range_is_refused(emulator: Emulator) -> None:
    """Only probabilities between 0 and 1 are accepted."""
    with pytest.raises(ValueError, match="between 0 and 1"):
        emulator.set_short_batches(1.5)
