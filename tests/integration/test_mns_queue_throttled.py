"""MNS's flow limiter (HTTP 429 TooManyRequests) as MnsQueue reports it: QueueThrottled, for each poller call."""

from __future__ import annotations

import pytest

from mns_consumer.emulator import Emulator, FlowLimits
from mns_consumer.errors import QueueThrottled, QueueUnavailable
from tests.integration.test_mns_queue import OpenQueue, open_queue

__all__ = ["open_queue"]


def test_a_429_on_receive_delete_and_visibility_change_is_queue_throttled_keeping_its_code(
    emulator: Emulator, open_queue: OpenQueue
) -> None:
    """Each of the poller's three calls refused by the flow limiter raises QueueThrottled (a QueueUnavailable)."""
    emulator.produce("SmsReport", 2)
    client = open_queue(emulator)
    first, second = client.receive(2, 0)
    emulator.set_flow_limits(FlowLimits(throttle_probability=1.0, hold_seconds=0.01))

    calls = {
        "BatchReceiveMessage": lambda: client.receive(1, 0),
        "BatchDeleteMessage": lambda: client.delete([first.receipt_handle]),
        "ChangeMessageVisibility": lambda: client.change_visibility(second.receipt_handle, 60),
    }
    for operation, call in calls.items():
        with pytest.raises(QueueThrottled) as caught:
            call()
        assert caught.value.code == "TooManyRequests", operation
        assert isinstance(caught.value, QueueUnavailable)

    # And once the limiter lets calls through, the same handles still work
    emulator.set_flow_limits(None)
    assert client.delete([first.receipt_handle]) == {}


@pytest.mark.parametrize("code", ["QpsLimitExceeded", "Throttling.User"])
def test_other_throttling_codes_are_queue_throttled_too(emulator: Emulator, open_queue: OpenQueue, code: str) -> None:
    """Older throttling codes mean the same backpressure."""
    emulator.add_fault(kind="error", operation="BatchReceiveMessage", status=503, code=code, times=1)
    with pytest.raises(QueueThrottled):
        open_queue(emulator).receive(1, 0)
