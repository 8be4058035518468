"""/metrics, /healthz and /readyz of a running daemon move as the run dictates."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mns_consumer.emulator import Emulator
from mns_consumer.emulator.clock import Clock
from mns_consumer.emulator.samples import ReceiptFactory
from tests.e2e.daemon_harness import Daemon, DaemonFactory, clean_env, daemon_config, queue_total, wait_until

QUEUES = {"SmsReport": "Alicom-Queue-m1-SmsReport", "SmsUp": "Alicom-Queue-m1-SmsUp"}


def metrics_url(daemon: Daemon) -> str:
    """The base URL the daemon's health server listens on (port 0 in tests, read from its log)."""
    address = daemon.wait_for_event("http.listening")["address"]
    return f"http://{address}"


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by name and sorted labels."""
    text = httpx.get(f"{base}/metrics", trust_env=False, timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.mark.timeout(120)
def test_metrics_count_what_the_run_did_and_lag_falls_to_zero(
    make_emulator: Callable[..., Emulator], daemons: DaemonFactory, tmp_path: Path
) -> None:
    """Counters equal the receipts seeded, dead letters are counted, and the lag gauge ends at zero."""
    # Given 40 SmsReport and 25 SmsUp receipts, 3 of the SmsUp bodies malformed
    emulator = make_emulator(queues=dict(QUEUES))
    emulator.produce("SmsReport", 40)
    emulator.produce("SmsUp", 22, malformed=3)
    config = daemon_config(
        emulator,
        {"archive": {"type": "file", "path": str(tmp_path / "out" / "{message_type}.jsonl")}},
        tmp_path / "dead.jsonl",
        http={"listen": "127.0.0.1:0"},
    )

    # When the daemon drains the queues
    daemon = daemons.start(config)
    base = metrics_url(daemon)
    wait_until(lambda: queue_total(emulator) == 0, "queues drained", diagnose=daemon.describe)

    def settled() -> bool:
        samples = scrape(base)
        return value(samples, "mns_consumer_receipts_deleted_total", queue=QUEUES["SmsUp"], message_type="SmsUp") == 25

    wait_until(settled, "deletes counted", diagnose=daemon.describe)
    samples = scrape(base)

    # Then every counter says what happened, per queue
    report = {"queue": QUEUES["SmsReport"], "message_type": "SmsReport"}
    up = {"queue": QUEUES["SmsUp"], "message_type": "SmsUp"}
    assert value(samples, "mns_consumer_receipts_received_total", **report) == 40
    assert value(samples, "mns_consumer_receipts_deleted_total", **report) == 40
    assert value(samples, "mns_consumer_receipts_accepted_total", sink="archive", **report) == 40
    assert value(samples, "mns_consumer_receipts_received_total", **up) == 25
    assert value(samples, "mns_consumer_receipts_dead_lettered_total", **up) == 3
    assert value(samples, "mns_consumer_failures_total", stage="decode", **up) == 3
    assert value(samples, "mns_consumer_failures_total", stage="sink", **report) == 0
    assert value(samples, "mns_consumer_receipt_delay_seconds_count", **report) == 40
    assert value(samples, "mns_consumer_sink_write_seconds_count", sink="archive", **report) >= 1
    assert value(samples, "mns_consumer_poller_up", **report) == 1
    assert value(samples, "mns_consumer_token_seconds_to_expiry", **report) > 0
    assert value(samples, "mns_consumer_batches_in_flight", **report) == 0

    # And once an empty receive came back, the lag of both queues is zero
    def lag_zero() -> bool:
        now = scrape(base)
        return all(value(now, "mns_consumer_queue_oldest_message_age_seconds", **q) == 0 for q in (report, up))

    wait_until(lag_zero, "lag back to zero", diagnose=daemon.describe)
    assert value(scrape(base), "mns_consumer_seconds_since_last_receive", **report) < 30
    assert daemon.stop() == 0


@pytest.mark.timeout(120)
def test_readyz_turns_not_ready_while_draining_and_healthz_stays_alive(
    make_emulator: Callable[..., Emulator], daemons: DaemonFactory, tmp_path: Path
) -> None:
    """During a drain held up by an unreachable sink, /readyz is 503 'draining' and /healthz stays 200."""
    # Given a daemon whose webhook sink points at a closed port, holding a batch in flight
    emulator = make_emulator(queues={"SmsReport": QUEUES["SmsReport"]})
    emulator.produce("SmsReport", 5)
    config = daemon_config(
        emulator,
        {"hook": {"type": "webhook", "url": "http://127.0.0.1:9/receipts"}},
        tmp_path / "dead.jsonl",
        http={"listen": "127.0.0.1:0"},
        drain_timeout_seconds=6,
    )
    daemon = daemons.start(config)
    base = metrics_url(daemon)
    # Started, with the queue's first token fetched (which the poller does just after daemon.ready): the
    # only reason left not to be ready is the failing sink
    wait_until(lambda: daemon.events_named("sink.unavailable"), "sink failing", diagnose=daemon.describe)
    wait_until(
        lambda: (
            httpx.get(f"{base}/readyz", trust_env=False).json()["reasons"]
            == [f"a sink of {QUEUES['SmsReport']} is unavailable"]
        ),
        "started with a token, the sink failing",
        diagnose=daemon.describe,
    )

    # When SIGTERM starts the drain, which waits for the sink
    daemon.send(signal.SIGTERM)
    daemon.wait_for_event("shutdown.started")

    # Then the daemon is not ready, says why, and is still alive
    readyz = httpx.get(f"{base}/readyz", trust_env=False)
    assert readyz.status_code == 503
    assert "draining" in readyz.json()["reasons"]
    healthz = httpx.get(f"{base}/healthz", trust_env=False)
    assert healthz.status_code == 200
    assert healthz.json()["queues"][QUEUES["SmsReport"]]["sinks_healthy"] is False
    assert value(scrape(base), "mns_consumer_draining") == 1

    # And the health command agrees, exiting 1 for /readyz
    command = subprocess.run(
        [sys.executable, "-m", "mns_consumer", "health", "--url", f"{base}/readyz"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=30,
        check=False,
    )
    assert command.returncode == 1
    assert daemon.wait_exit() == 0
    # Nothing was deleted: the 5 receipts are still in MNS for the next start
    assert (
        emulator.queue(QUEUES["SmsReport"]).counts().active + emulator.queue(QUEUES["SmsReport"]).counts().inactive == 5
    )


@pytest.mark.timeout(120)
def test_push_metrics_count_what_was_pushed_refused_settled_and_dead_lettered(
    make_emulator: Callable[..., Emulator], daemons: DaemonFactory, tmp_path: Path
) -> None:
    """A daemon consuming a queue and receiving pushes: the push series move with the pushes, beside the queue's."""
    # Given a daemon with one queue and one SmsUp push route
    emulator = make_emulator(queues={"SmsReport": QUEUES["SmsReport"]})
    emulator.produce("SmsReport", 10)
    secret = "metrics-Push-Secret-7c2e5f1a"
    config = daemon_config(
        emulator,
        {"archive": {"type": "file", "path": str(tmp_path / "out" / "{message_type}.jsonl")}},
        tmp_path / "dead.jsonl",
        http={"listen": "127.0.0.1:0"},
        push={
            "listen": "127.0.0.1:0",
            "spool_path": str(tmp_path / "spool.db"),
            "routes": [{"path": "/alicom/SmsUp", "secret": secret, "message_type": "SmsUp", "sinks": ["archive"]}],
        },
    )
    daemon = daemons.start(config)
    base = metrics_url(daemon)
    url = f"{daemon.push_url('/alicom/SmsUp')}/{secret}"

    # When it gets 3 valid pushes (12 receipts, 1 of them malformed), a body that is no array, and a wrong path
    receipts = [dict(item.receipt) for item in ReceiptFactory(Clock(), 5).make_many("SmsUp", 11)]
    pushes = [receipts[:4], receipts[4:8], [*receipts[8:], {"phone_number": "13900001111"}]]
    for body in pushes:
        assert httpx.post(url, json=body, trust_env=False).json() == {"code": 0, "msg": "接收成功"}
    assert httpx.post(url, json={"not": "an array"}, trust_env=False).status_code == 400
    assert httpx.post(f"{url}-wrong", json=[], trust_env=False).status_code == 404
    route = {"queue": "push:SmsUp", "message_type": "SmsUp"}
    wait_until(
        lambda: value(scrape(base), "mns_consumer_push_receipts_settled_total", **route) == 12,
        "pushes settled",
        diagnose=daemon.describe,
    )
    wait_until(lambda: queue_total(emulator) == 0, "queue drained", diagnose=daemon.describe)
    samples = scrape(base)

    # Then the push series say what happened, and the queue's series are untouched by it
    assert value(samples, "mns_consumer_push_requests_total", **route) == 3
    assert value(samples, "mns_consumer_push_ack_seconds_count", **route) == 3
    assert value(samples, "mns_consumer_receipts_received_total", **route) == 12
    assert value(samples, "mns_consumer_receipts_accepted_total", sink="archive", **route) == 11
    assert value(samples, "mns_consumer_receipts_dead_lettered_total", **route) == 1
    assert value(samples, "mns_consumer_push_rejected_total", stage="body", **route) == 1
    assert value(samples, "mns_consumer_push_rejected_total", stage="route", queue="push:unknown", message_type="") == 1
    assert value(samples, "mns_consumer_push_spool_entries", **route) == 0
    assert value(samples, "mns_consumer_push_spool_oldest_age_seconds", **route) == 0
    report = {"queue": QUEUES["SmsReport"], "message_type": "SmsReport"}
    assert value(samples, "mns_consumer_receipts_received_total", **report) == 10
    assert value(samples, "mns_consumer_receipts_accepted_total", sink="archive", **report) == 10
    assert secret not in httpx.get(f"{base}/metrics", trust_env=False).text
    assert daemon.stop() == 0
