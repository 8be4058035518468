"""The lag gauge of a running daemon keeps telling the truth while receiving pauses for a dead sink."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mns_consumer.emulator import Emulator
from tests.e2e.daemon_harness import DaemonFactory, daemon_config, wait_until

QUEUE = "Alicom-Queue-lag1-SmsReport"
LABELS = {"queue": QUEUE, "message_type": "SmsReport"}


def scrape(url: str) -> dict[str, float]:
    """The queue's samples of one /metrics scrape, by series name."""
    text = httpx.get(url, trust_env=False, timeout=5).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels == LABELS
    }


@pytest.mark.timeout(120)
def test_lag_gauge_keeps_growing_while_receiving_is_paused_for_a_dead_sink(
    make_emulator: Callable[..., Emulator], daemons: DaemonFactory, tmp_path: Path
) -> None:
    """While a webhook sink is down the daemon stops receiving, and the oldest-message age still grows."""
    # Given a queue with more messages than one batch, and a daemon whose only sink is a closed port
    emulator = make_emulator(queues={"SmsReport": QUEUE})
    emulator.produce("SmsReport", 40)
    config = daemon_config(
        emulator,
        {"hook": {"type": "webhook", "url": "http://127.0.0.1:9/receipts"}},
        tmp_path / "dead.jsonl",
        queue_settings={"batch_size": 8, "in_flight_batches": 1},
        drain_timeout_seconds=2,
    )
    daemon = daemons.start(config)
    url = daemon.http_url("/metrics")

    # When the sink has failed and the receiver has paused
    wait_until(lambda: daemon.events_named("sink.unavailable"), "sink failing", diagnose=daemon.describe)
    wait_until(
        lambda: scrape(url).get("mns_consumer_batches_in_flight") == 1, "batch held in flight", diagnose=daemon.describe
    )
    scrapes = []
    for _ in range(3):
        scrapes.append(scrape(url))
        time.sleep(1.2)

    # Then nothing more was received (receiving is paused, messages wait in MNS) ...
    received = {s["mns_consumer_receipts_received_total"] for s in scrapes}
    assert len(received) == 1, received
    assert 1 <= received.pop() <= 8
    assert emulator.queue(QUEUE).counts().active >= 32
    # ... and the age of the oldest waiting message grows from scrape to scrape, at least a second per 1.2 s
    ages = [s["mns_consumer_queue_oldest_message_age_seconds"] for s in scrapes]
    assert ages[0] < ages[1] < ages[2], ages
    assert ages[2] - ages[0] >= 2.0, ages
    assert daemon.stop() == 0
