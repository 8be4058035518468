"""A PostgreSQL server that stops answering is an outage the daemon reports and recovers from.

Before the database calls had a deadline, a daemon whose PostgreSQL went silent (connections open,
nothing answered) logged nothing, counted nothing, stayed ready, and its queues stalled for as long as
the silence lasted. The server is reached through a proxy that the test blackholes and then restores.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mns_consumer.emulator import Emulator
from tests.e2e.daemon_harness import (
    Daemon,
    DaemonFactory,
    daemon_config,
    expected_receipts,
    queue_total,
    table_keys,
    wait_until,
)
from tests.support.sink_env_database import ServerEnv

QUEUES = {"SmsReport": "Alicom-Queue-dl-SmsReport", "SmsUp": "Alicom-Queue-dl-SmsUp"}
CALL_DEADLINE_SECONDS = 5


def _readyz(daemon: Daemon) -> httpx.Response:
    return httpx.get(daemon.http_url("/readyz"), trust_env=False, timeout=5)


def _sink_failures(daemon: Daemon) -> float:
    """``mns_consumer_failures_total{stage="sink"}`` summed over the queues."""
    text = httpx.get(daemon.http_url("/metrics"), trust_env=False, timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("mns_consumer_failures_total{") and 'stage="sink"' in line:
            total += float(line.rpartition(" ")[2])
    return total


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_postgresql_that_stops_answering_is_reported_counted_not_ready_and_recovered(
    make_emulator: Any, daemons: DaemonFactory, postgres: ServerEnv, tmp_path: Path
) -> None:
    """Blackholed PostgreSQL: sink.unavailable, a sink failure counted, /readyz 503; restored: all stored once."""
    # Given a daemon storing receipts in PostgreSQL, ready and with no sink failure counted
    emulator: Emulator = make_emulator(queues=dict(QUEUES))
    sink: dict[str, Any] = {
        "type": "database",
        "url": postgres.url,
        "table": postgres.table,
        "connect_timeout_seconds": 2,
        "statement_timeout_seconds": 3,
        "call_deadline_seconds": CALL_DEADLINE_SECONDS,
    }
    daemon = daemons.start(daemon_config(emulator, {"db": sink}, tmp_path / "dead.jsonl"))
    generated = [item for message_type in QUEUES for item in emulator.produce(message_type, 10)]
    wait_until(lambda: len(table_keys(postgres.admin, postgres.table)) == 20, "first receipts stored")
    wait_until(lambda: _readyz(daemon).status_code == 200, "ready", diagnose=daemon.describe)
    assert _sink_failures(daemon) == 0

    # When PostgreSQL stops answering while more receipts arrive
    frozen_at = time.monotonic()
    postgres.freeze()
    generated += [item for message_type in QUEUES for item in emulator.produce(message_type, 15)]

    # Then the daemon says so, counts it, and is not ready
    unavailable = daemon.wait_for_event("sink.unavailable")
    unavailable_after = time.monotonic() - frozen_at
    assert unavailable["sink"] == "db"
    # (A write that had to open a connection may fail first on the connect timeout; one that took a
    # pooled connection, which a frozen server leaves waiting, ends on the deadline.)
    wait_until(
        lambda: any("call_deadline_seconds" in event["reason"] for event in daemon.events_named("sink.unavailable")),
        "a write ended by the call deadline",
        diagnose=daemon.describe,
    )
    deadline_after = time.monotonic() - frozen_at
    wait_until(lambda: _sink_failures(daemon) > 0, "sink failure counted", diagnose=daemon.describe)
    wait_until(lambda: _readyz(daemon).status_code == 503, "not ready", diagnose=daemon.describe)
    assert any("unavailable" in reason for reason in _readyz(daemon).json()["reasons"])

    # And once PostgreSQL answers again, it is ready, the queues drain and every receipt is stored once
    thawed_at = time.monotonic()
    postgres.thaw()
    wait_until(lambda: _readyz(daemon).status_code == 200, "ready again", diagnose=daemon.describe)
    ready_after = time.monotonic() - thawed_at
    expected = expected_receipts(emulator, generated)
    wait_until(
        lambda: queue_total(emulator) == 0 and len(table_keys(postgres.admin, postgres.table)) == len(expected),
        "every receipt stored after the freeze",
        diagnose=daemon.describe,
    )
    assert daemon.stop() == 0
    assert sorted(table_keys(postgres.admin, postgres.table)) == sorted(expected)
    assert daemon.events_named("sink.recovered")
    assert not daemon.events_named("sink.bug")
    # Figures for the troubleshooting page (pytest -s shows them); never asserted on.
    print(
        f"\ncall_deadline_seconds={CALL_DEADLINE_SECONDS}: first sink.unavailable {unavailable_after:.1f} s after "
        f"the freeze, a write ended by the deadline by {deadline_after:.1f} s, ready {ready_after:.1f} s after the thaw"
    )
