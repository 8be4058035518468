"""A backlog through a real daemon: more receivers while batches come back full, back to one long poll after.

Also what MNS's flow limiter (HTTP 429) and short batches do to a running daemon: nothing lost, nothing
stored twice, and the 429s counted as throttling rather than failures.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mns_consumer.emulator import Emulator, FlowLimits, QueueDefaults, WanProfile
from tests.e2e.daemon_harness import (
    DaemonFactory,
    daemon_config,
    expected_receipts,
    queue_total,
    sqlite_sink,
    table_keys,
    wait_until,
)
from tests.support.sink_env_webhook import SECRET, WebhookReceiver

QUEUE = "Alicom-Queue-backlog-SmsReport"


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one /metrics scrape of the queue, by (name, labels other than queue and type)."""
    text = httpx.get(url, trust_env=False, timeout=5).text
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("queue") != QUEUE:
                continue
            rest = tuple(sorted((k, v) for k, v in sample.labels.items() if k not in ("queue", "message_type")))
            samples[(sample.name, rest)] = sample.value
    return samples


class Scraper:
    """Scrapes /metrics in a thread until stopped, keeping every value of ``mns_consumer_receivers``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.receivers: list[float] = []
        self.messages_in_flight: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                samples = scrape(self.url)
            except httpx.HTTPError:
                continue
            self.receivers.append(samples.get(("mns_consumer_receivers", ()), 0.0))
            self.messages_in_flight.append(samples.get(("mns_consumer_messages_in_flight", ()), 0.0))


@pytest.mark.timeout(180)
def test_a_backlog_with_latency_drains_with_receivers_rising_then_falling_back_to_one_long_poll(
    make_emulator: Callable[..., Emulator], daemons: DaemonFactory, tmp_path: Path
) -> None:
    """With 20 ms per call, a 3,000-receipt backlog brings more receivers, under the in-flight cap, then one."""
    # Given a backlog behind a WAN, and MNS's abnormal-consumption rules switched on at their defaults
    emulator = make_emulator(
        queues={"SmsReport": QUEUE}, wan=WanProfile(0.02, 0.005, "mns"), flow_limits=FlowLimits(), seed=3
    )
    generated = emulator.produce("SmsReport", 3000)
    expected = expected_receipts(emulator, generated)
    db, engine = sqlite_sink(tmp_path)
    cap = 128
    config = daemon_config(
        emulator, {"db": db}, tmp_path / "dead.jsonl", queue_settings={"max_in_flight_messages": cap}
    )

    # When the daemon drains it, /metrics scraped throughout
    daemon = daemons.start(config)
    with Scraper(daemon.http_url("/metrics")) as scraper:
        wait_until(lambda: queue_total(emulator) == 0, "backlog drained", diagnose=daemon.describe)
        wait_until(
            lambda: bool(scraper.receivers) and scraper.receivers[-1] == 1,
            "receivers back to one",
            diagnose=daemon.describe,
        )

    # Then the receivers rose above one during the backlog and fell back to the single long poll
    assert max(scraper.receivers) > 1, scraper.receivers
    assert scraper.receivers[-1] == 1
    assert daemon.events_named("receivers.changed")
    # And no more than the cap was ever held received and not deleted, by MNS's count and by the gauge
    consumption = emulator.queue(QUEUE).consumption()
    assert consumption.received_not_deleted_max <= cap, consumption
    assert max(scraper.messages_in_flight) <= cap
    # And MNS never throttled it, each message was handed out once, and every receipt is stored once
    assert emulator.flow_limiter.refused() == {}
    assert consumption.received_total == len(generated)
    assert daemon.stop() == 0
    keys = table_keys(engine, "sms_receipts")
    assert sorted(keys) == sorted(expected)
    engine.dispose()


@pytest.mark.timeout(180)
def test_a_throttling_storm_and_short_batches_lose_nothing_and_count_429s_as_throttling(
    make_emulator: Callable[..., Emulator], daemons: DaemonFactory, tmp_path: Path
) -> None:
    """30 % of MNS calls answered 429 and 30 % of batches cut short: every receipt once, 429s counted, not failures."""
    # Given a backlog, a flow limiter refusing 30 % of calls, and short batches
    emulator = make_emulator(
        queues={"SmsReport": QUEUE},
        flow_limits=FlowLimits(throttle_probability=0.3, hold_seconds=0.05),
        short_batch_probability=0.3,
        wan=WanProfile(0.005, 0.0, "mns"),
        seed=11,
    )
    generated = emulator.produce("SmsReport", 800)
    expected = expected_receipts(emulator, generated)
    db, engine = sqlite_sink(tmp_path)

    # When the daemon drains it
    daemon = daemons.start(daemon_config(emulator, {"db": db}, tmp_path / "dead.jsonl"))
    url = daemon.http_url("/metrics")
    wait_until(lambda: queue_total(emulator) == 0, "backlog drained under 429s", diagnose=daemon.describe)
    # The receivers keep polling the empty queue, so a 429 may still be on its way back: switch the limiter
    # off (its counts stay), and let the daemon count the last answers before comparing.
    emulator.set_flow_limits(None)

    def throttled_now() -> dict[str, float]:
        return {
            dict(labels)["operation"]: value
            for (name, labels), value in scrape(url).items()
            if name == "mns_consumer_throttled_total"
        }

    wait_until(
        lambda: (
            throttled_now().get("BatchReceiveMessage")
            == emulator.flow_limiter.refused()["cluster"].get("BatchReceiveMessage", 0)
        ),
        "the daemon's count of receive 429s catching up with the emulator's",
        deadline_seconds=10,
        diagnose=daemon.describe,
    )
    samples = scrape(url)
    refused = emulator.flow_limiter.refused()["cluster"]

    # Then receives and deletes met 429s, each counted as throttling by operation, none as a failure
    assert refused.get("BatchReceiveMessage", 0) > 0
    assert refused.get("BatchDeleteMessage", 0) > 0
    throttled = throttled_now()
    assert throttled["BatchReceiveMessage"] == refused["BatchReceiveMessage"]
    assert throttled["BatchDeleteMessage"] == refused["BatchDeleteMessage"]
    assert samples[("mns_consumer_failures_total", (("stage", "receive"),))] == 0
    assert samples[("mns_consumer_failures_total", (("stage", "delete"),))] == 0
    assert not daemon.events_named("receive.failed")
    assert not daemon.events_named("receipts.delete_failed")
    # And the storm was logged as throttling, at most once a minute
    warnings = daemon.events_named("mns.throttled")
    assert 1 <= len(warnings) <= 3, warnings
    # And nothing was lost, handed out twice, or stored twice
    consumption = emulator.queue(QUEUE).consumption()
    assert consumption.short_batches > 0
    assert consumption.received_total == len(generated)
    assert daemon.stop() == 0
    keys = table_keys(engine, "sms_receipts")
    assert len(keys) == len(set(keys)) == len(expected)
    assert set(keys) == set(expected)
    engine.dispose()


@pytest.fixture
def webhook_receiver() -> Any:
    """A local HTTP receiver of the webhook sink's signed POSTs, stopped afterwards."""
    receiver = WebhookReceiver(secret=SECRET).start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.mark.timeout(120)
def test_a_429_on_one_visibility_change_does_not_stop_the_rest_of_the_batch_being_extended(
    make_emulator: Callable[..., Emulator], daemons: DaemonFactory, webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    """Half the ChangeMessageVisibility calls get 429: the others still go out, and nothing is handed out twice."""
    # Given a 5 s visibility timeout, a webhook taking 7 s, and 429 on half the visibility changes
    emulator = make_emulator(
        queues={"SmsUp": QUEUE.replace("SmsReport", "SmsUp")},
        queue_defaults=QueueDefaults(visibility_timeout_seconds=5),
        seed=5,
    )
    generated = emulator.produce("SmsUp", 16)
    expected = expected_receipts(emulator, generated)
    webhook_receiver.delay_seconds = 7
    emulator.add_fault(
        kind="error",
        service="mns",
        operation="ChangeMessageVisibility",
        status=429,
        code="TooManyRequests",
        probability=0.5,
    )
    hook = {"type": "webhook", "url": webhook_receiver.url, "secret": SECRET, "read_timeout_seconds": 30}

    # When the daemon delivers them
    daemon = daemons.start(daemon_config(emulator, {"hook": hook}, tmp_path / "dead.jsonl"))
    wait_until(lambda: queue_total(emulator) == 0, "queue drained through the slow webhook", diagnose=daemon.describe)

    # Then the 429s were met and counted, yet every message stayed invisible: handed out once, deleted once
    assert daemon.stop() == 0
    summary = daemon.summary()
    assert summary["throttled"] > 0
    assert summary["received"] == len(generated), "a message was handed out twice: its visibility lapsed"
    assert summary["delete_failed"] == 0
    assert sorted(webhook_receiver.deliveries) == sorted(expected)
