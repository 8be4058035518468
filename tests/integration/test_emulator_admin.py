"""The admin endpoint: fault switches, clock, token expiry and seeding over plain HTTP and JSON."""

from __future__ import annotations

import time

import httpx
import pytest
from mns.mns_exception import MNSServerException

from mns_consumer.emulator import Emulator
from tests.integration.mns_helpers import accounts_for


@pytest.fixture
def admin(emulator: Emulator) -> httpx.Client:
    with httpx.Client(base_url=f"{emulator.url}/__emulator/", trust_env=False, timeout=10) as client:
        yield client


def test_state_lists_queues_with_counts(admin: httpx.Client, emulator: Emulator) -> None:
    """GET state shows every queue with its active/inactive/delayed counts."""
    emulator.produce("SmsUp", 3)
    state = admin.get("state").json()
    assert state["queues"]["Alicom-Queue-i1-SmsUp"] == {
        "active": 3,
        "inactive": 0,
        "delayed": 0,
        "waiting_polls": 0,
        "first_received_ms": None,
        "received_not_deleted": 0,
        "received_not_deleted_max": 0,
        "oldest_received_ms": None,
        "short_batches": 0,
    }
    assert state["faults"] == []
    assert state["flow_limiter"] == {"enabled": False, "limits": None, "refused": {}, "refused_total": 0}
    assert (state["short_batch_probability"], state["wan"]) == (0.0, None)


def test_faults_are_switched_on_and_off_over_http(admin: httpx.Client, emulator: Emulator) -> None:
    """POST faults adds a live rule; DELETE faults removes it."""
    response = admin.post("faults", json={"kind": "error", "service": "mns", "status": 500, "times": 2})
    assert response.status_code == 200
    assert response.json()["kind"] == "error"
    assert [rule.kind for rule in emulator.faults.rules()] == ["error"]
    assert admin.delete("faults").json() == {"cleared": 1}
    assert emulator.faults.rules() == []


def test_a_bad_fault_is_refused_with_the_reason(admin: httpx.Client) -> None:
    """An unknown fault kind is a 400 that names the known kinds."""
    response = admin.post("faults", json={"kind": "explode"})
    assert response.status_code == 400
    assert "latency" in response.json()["error"]


def test_clock_tokens_and_seeding_are_driven_over_http(admin: httpx.Client, emulator: Emulator) -> None:
    """The clock moves, tokens expire and receipts are seeded through the admin endpoint."""
    assert admin.post("clock", json={"advance_seconds": 90}).json()["offset_seconds"] >= 90
    emulator.credentials.mint("SmsReport", "Alicom-Queue-i1-SmsReport")
    assert admin.post("tokens/expire").json() == {"expired": 1}
    assert admin.post("receipts", json={"message_type": "SmsReport", "count": 4, "malformed": 1}).json() == {
        "generated": 4
    }
    assert emulator.queue("Alicom-Queue-i1-SmsReport").counts().active == 5
    assert admin.post("receipts", json={"message_type": "VoiceReport"}).status_code == 400


def test_deletions_give_enqueue_to_delete_latency_of_sdk_deletes(admin: httpx.Client, emulator: Emulator) -> None:
    """GET deletions lists [EnqueueTime, delete time] of what the real SDK deleted, and clears on request."""
    emulator.produce("SmsReport", 5)
    with accounts_for(emulator) as accounts:
        account, _ = accounts.temporary("SmsReport")
        queue = account.get_queue("Alicom-Queue-i1-SmsReport")
        batch = queue.batch_receive_message(5, 1)
        queue.delete_message(batch[0].receipt_handle)
        queue.batch_delete_message([m.receipt_handle for m in batch[1:3]])

    answer = admin.get("deletions", params={"queue": "Alicom-Queue-i1-SmsReport", "clear": "1"}).json()

    assert answer["queue"] == "Alicom-Queue-i1-SmsReport"
    assert [enqueued for enqueued, _ in answer["deletions"]] == [m.enqueue_time for m in batch[:3]]
    assert all(0 <= deleted - enqueued < 10_000 for enqueued, deleted in answer["deletions"])
    assert admin.get("deletions", params={"queue": "Alicom-Queue-i1-SmsReport"}).json()["deletions"] == []
    assert admin.get("deletions", params={"queue": "Alicom-Queue-i1-Nope"}).status_code == 400


def test_trickle_enqueues_pregenerated_receipts_at_a_steady_rate(admin: httpx.Client, emulator: Emulator) -> None:
    """POST trickle spreads its receipts over the window rather than enqueueing them at once."""
    answer = admin.post("trickle", json={"message_type": "SmsReport", "rate": 200, "seconds": 0.5}).json()
    assert answer == {"messages": 100, "rate": 200.0, "seconds": 0.5}
    queue = emulator.queue("Alicom-Queue-i1-SmsReport")
    deadline = time.monotonic() + 10
    while queue.counts().active < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queue.counts().active == 100
    with accounts_for(emulator) as accounts:
        sdk_queue = accounts.master().get_queue("Alicom-Queue-i1-SmsReport")
        enqueued = [m.enqueue_time for _ in range(7) for m in sdk_queue.batch_receive_message(16, 0)]
    assert len(enqueued) == 100
    # 100 receipts at 200/s take half a second to enqueue; all at once would take a few ms.
    assert max(enqueued) - min(enqueued) >= 300
    assert len(emulator.send_log) >= 100
    assert admin.post("trickle", json={"message_type": "SmsReport", "rate": 0, "seconds": 1}).status_code == 400
    too_many = admin.post("trickle", json={"message_type": "SmsReport", "rate": 1e6, "seconds": 60})
    assert too_many.status_code == 400
    assert "at most 1000000 receipts" in too_many.json()["error"]


def test_unknown_admin_route_is_404(admin: httpx.Client) -> None:
    """A route the admin endpoint does not serve is a 404, not a crash."""
    assert admin.get("nope").status_code == 404


def test_state_gives_when_a_receive_first_handed_out_a_message(admin: httpx.Client, emulator: Emulator) -> None:
    """first_received_ms: not set by an empty receive, set by the first one that hands out messages, then kept."""
    name = "Alicom-Queue-i1-SmsReport"

    def first_received() -> int | None:
        value: int | None = admin.get("state").json()["queues"][name]["first_received_ms"]
        return value

    with accounts_for(emulator) as accounts:
        account, _ = accounts.temporary("SmsReport")
        queue = account.get_queue(name)
        with pytest.raises(MNSServerException, match="MessageNotExist"):
            queue.batch_receive_message(16, 0)
        assert first_received() is None

        emulator.produce("SmsReport", 4)
        before = emulator.clock.now_ms()
        queue.batch_receive_message(2, 0)
        after = emulator.clock.now_ms()
        first = first_received()
        assert first is not None
        assert before <= first <= after

        time.sleep(0.01)
        queue.batch_receive_message(2, 0)
        assert first_received() == first


def test_the_flow_limiter_is_switched_at_run_time_and_its_429s_are_counted_by_rule_and_operation(
    admin: httpx.Client, emulator: Emulator
) -> None:
    """POST flow-limiter turns 429s on, DELETE turns them off; state counts them and the held messages."""
    name = "Alicom-Queue-i1-SmsReport"
    emulator.produce("SmsReport", 20)
    answer = admin.post("flow-limiter", json={"throttle_probability": 1, "hold_seconds": 0.05}).json()
    assert answer["enabled"] is True
    assert answer["limits"]["account_tps"] == 20_000
    with accounts_for(emulator) as accounts:
        queue = accounts.master().get_queue(name)
        for call in (lambda: queue.batch_receive_message(16, 0), queue.get_attributes, queue.get_attributes):
            with pytest.raises(MNSServerException, match="TooManyRequests"):
                call()
        assert admin.delete("flow-limiter").json()["enabled"] is False
        held = queue.batch_receive_message(16, 0)
        queue.batch_delete_message([m.receipt_handle for m in held[:10]])

    state = admin.get("state").json()
    assert state["flow_limiter"]["refused"] == {"cluster": {"BatchReceiveMessage": 1, "GetQueueAttributes": 2}}
    assert state["flow_limiter"]["refused_total"] == 3
    assert state["queues"][name]["received_not_deleted"] == 6
    assert state["queues"][name]["received_not_deleted_max"] == 16
    assert state["queues"][name]["oldest_received_ms"] == held[0].next_visible_time - 30_000
    assert admin.post("flow-limiter", json={"account_tps": -1}).status_code == 400
    assert admin.post("flow-limiter", json={"no_such_limit": 1}).status_code == 400


def test_short_batches_and_the_wan_profile_are_switched_over_http(admin: httpx.Client, emulator: Emulator) -> None:
    """POST short-batches sets the probability; POST/DELETE wan sets and clears the profile; state shows both."""
    assert admin.post("short-batches", json={"probability": 0.25}).json() == {"probability": 0.25}
    assert admin.post("short-batches", json={"probability": 2}).status_code == 400
    wan = {"latency_ms": 50, "jitter_ms": 10, "services": "all", "handshake": True}
    assert admin.post("wan", json=wan).json() == {"wan": {**wan, "latency_ms": 50.0, "jitter_ms": 10.0}}
    state = admin.get("state").json()
    assert state["short_batch_probability"] == 0.25
    assert state["wan"]["services"] == "all"
    assert [(f["kind"], f["service"], f["seconds"], f["jitter_seconds"]) for f in state["faults"]] == [
        ("latency", "any", 0.05, 0.01)
    ]
    assert admin.delete("wan").json() == {"wan": None}
    assert admin.get("state").json()["faults"] == []
    assert admin.post("wan", json={"latency_ms": 5, "services": "sms"}).status_code == 400
