"""A second SIGTERM during the drain leaves at once with exit code 3, saying what it left behind."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mns_consumer.emulator import Emulator
from mns_consumer.exit_codes import EXIT_KILLED
from tests.e2e.daemon_harness import DaemonFactory, daemon_config, queue_total, wait_until

QUEUES = {"SmsReport": "Alicom-Queue-k1-SmsReport", "SmsUp": "Alicom-Queue-k1-SmsUp"}


@pytest.fixture
def stalled_port() -> Iterator[int]:
    """A port that accepts connections (the kernel completes them) and never answers a request."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def batches_in_flight(url: str) -> dict[str, float]:
    """``mns_consumer_batches_in_flight`` of one scrape, by queue."""
    text = httpx.get(url, trust_env=False, timeout=5).text
    return {
        sample.labels["queue"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "mns_consumer_batches_in_flight"
    }


@pytest.mark.timeout(120)
def test_a_second_sigterm_exits_3_and_logs_the_batches_and_receipts_it_abandons_per_queue(
    make_emulator: Callable[..., Emulator], daemons: DaemonFactory, stalled_port: int, tmp_path: Path
) -> None:
    """Stalled sink, batches in flight, SIGTERM twice: exit 3 after one line counting what each queue held."""
    # Given two queues whose only sink never answers: SmsReport holds 3 batches (of up to 8), SmsUp all 5
    emulator = make_emulator(queues=dict(QUEUES))
    emulator.produce("SmsReport", 40)
    emulator.produce("SmsUp", 5)
    config = daemon_config(
        emulator,
        {"hook": {"type": "webhook", "url": f"http://127.0.0.1:{stalled_port}/receipts", "read_timeout_seconds": 600}},
        tmp_path / "dead.jsonl",
        queue_settings={"batch_size": 8, "in_flight_batches": 3},
        drain_timeout_seconds=600,
    )
    daemon = daemons.start(config)
    url = daemon.http_url("/metrics")
    report, up = QUEUES["SmsReport"], QUEUES["SmsUp"]

    def stalled() -> bool:
        # SmsReport fills its 3 slots; SmsUp has received all it had (one batch, or more if MNS split it)
        batches = batches_in_flight(url)
        return batches.get(report) == 3 and batches.get(up, 0) >= 1 and emulator.queue(up).counts().active == 0

    wait_until(stalled, "batches in flight", diagnose=daemon.describe)
    held = batches_in_flight(url)

    # When SIGTERM starts a drain that waits for the sink, and a second SIGTERM follows
    daemon.send(signal.SIGTERM)
    daemon.wait_for_event("shutdown.started")
    daemon.send(signal.SIGTERM)

    # Then the daemon exits 3 at once, after one line saying what it abandoned, queue by queue: the
    # batches it held, and as many receipts as MNS counts received and not deleted
    assert daemon.wait_exit() == EXIT_KILLED
    (killed,) = daemon.events_named("shutdown.killed")
    assert killed["exit_code"] == EXIT_KILLED
    inactive = {name: emulator.queue(name).counts().inactive for name in (report, up)}
    assert inactive[up] == 5
    assert 3 <= inactive[report] <= 24
    assert sorted(killed["queues"], key=lambda q: q["queue"]) == [
        {"queue": report, "batches": 3, "receipts": inactive[report]},
        {"queue": up, "batches": held[up], "receipts": 5},
    ]
    assert killed["in_flight_batches"] == 3 + held[up]
    assert killed["in_flight_receipts"] == inactive[report] + 5
    assert not daemon.events_named("daemon.stopped")
    # And nothing was deleted: every message comes back from MNS for the next start
    assert queue_total(emulator) == 45
