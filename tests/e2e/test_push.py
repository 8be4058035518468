"""``mns-consumer run`` and ``push-server`` receiving Alibaba's HTTP batch pushes, as operators run them.

The daemon is a subprocess with a real configuration, real sinks and real signals; pushes come from the
emulator's push client (in-process and as the ``emulator push`` command), which judges answers the
way Alibaba does. Each test asserts what an operator sees: sink contents, dead letters, answers,
exit codes, the JSON log and the scrape.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from mns_consumer.emulator.push_client import push_receipts
from mns_consumer.sinks.dead_letter import read_dead_letters
from tests.e2e.daemon_harness import (
    FAST_SETTINGS,
    Daemon,
    DaemonFactory,
    clean_env,
    file_lines,
    postgres_sink,
    sqlite_sink,
    table_keys,
    wait_until,
)
from tests.support.receipts import pushed_keys, pushed_receipts
from tests.support.sink_env_database import ServerEnv

SECRET = "e2e-Push-Secret-4b7d1a9c"
TYPES = ("SmsReport", "SmsUp", "SignSmsReport", "TemplateSmsReport")
NO_RETRIES: tuple[float, ...] = ()


def _path(message_type: str) -> str:
    return f"/alicom/{message_type}"


def _config(tmp_path: Path, sinks: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A push-only configuration: one route per type in :data:`TYPES`, every route to every sink."""
    return {
        "sinks": sinks,
        "dead_letter": {"type": "file", "path": str(tmp_path / "dead-letter.jsonl")},
        "logging": {"format": "json", "level": "info"},
        "http": {"listen": "127.0.0.1:0"},
        "push": {
            "listen": "127.0.0.1:0",
            "spool_path": str(tmp_path / "state" / "spool.db"),
            "routes": [
                {"path": _path(message_type), "secret": SECRET, "message_type": message_type, "sinks": sorted(sinks)}
                for message_type in TYPES
            ],
        },
        **FAST_SETTINGS,
        **top,
    }


def _push(daemon: Daemon, message_type: str, receipts: list[dict[str, Any]]) -> int:
    url = f"{daemon.push_url(_path(message_type))}/{SECRET}"
    report = push_receipts(url, receipts, message_type=message_type, batch_size=25, retry_delays_seconds=NO_RETRIES)
    return report.accepted_receipts


def _spool_entries(daemon: Daemon) -> int:
    state = httpx.get(daemon.http_url("/healthz"), trust_env=False).json()
    return int(state["push"]["spool_entries"])


def test_pushes_of_every_type_end_in_the_sinks_once_and_bad_elements_in_the_dead_letters(
    daemons: DaemonFactory, tmp_path: Path
) -> None:
    """Valid receipts are stored exactly once; bad elements are dead-lettered with raw JSON; a bad body gets 4xx."""
    sqlite, engine = sqlite_sink(tmp_path)
    archive = {"type": "file", "path": str(tmp_path / "{message_type}.jsonl")}
    daemon = daemons.start(_config(tmp_path, {"db": sqlite, "archive": archive}))

    # Given receipts of four types, SmsReport twice (Alibaba's duplicates), plus a push with bad elements
    sent = {
        message_type: pushed_receipts(message_type, 30 if message_type.startswith("Sms") else 4, seed=3)
        for message_type in TYPES
    }
    for message_type, receipts in sent.items():
        assert _push(daemon, message_type, receipts) == len(receipts)
    assert _push(daemon, "SmsReport", sent["SmsReport"]) == 30
    bad_elements = [{"phone_number": "13900001111", "success": True}, 42]
    # Made once: the factory dates receipts from the current second, and SmsUp's send_time is identity.
    good_elements = pushed_receipts("SmsUp", 2, seed=9)
    mixed = httpx.post(
        f"{daemon.push_url(_path('SmsUp'))}/{SECRET}",
        json=[*bad_elements, *good_elements],
        trust_env=False,
    )
    not_array = httpx.post(
        f"{daemon.push_url(_path('SmsReport'))}/{SECRET}",
        content=b'{"phone_number": "13900001111"}',
        headers={"Content-Type": "application/json;charset=utf-8"},
        trust_env=False,
    )

    # Then
    assert mixed.status_code == 200
    assert mixed.json() == {"code": 0, "msg": "接收成功"}
    assert not_array.status_code == 400
    assert not_array.json()["code"] != 0
    expected = set().union(*(pushed_keys(t, r) for t, r in sent.items())) | pushed_keys("SmsUp", good_elements)
    wait_until(
        lambda: len(table_keys(engine, "sms_receipts")) >= len(expected),
        "every receipt stored",
        diagnose=daemon.describe,
    )
    wait_until(lambda: _spool_entries(daemon) == 0, "the spool drained", diagnose=daemon.describe)
    assert sorted(table_keys(engine, "sms_receipts")) == sorted(expected)
    archived = [line["dedupe_key"] for line in file_lines(tmp_path / f"{t}.jsonl" for t in TYPES)]
    assert sorted(archived) == sorted(expected)
    letters = list(read_dead_letters(tmp_path / "dead-letter.jsonl"))
    assert sorted(letter.raw for letter in letters) == sorted(
        json.dumps(e, separators=(",", ":")).encode() for e in bad_elements
    )
    assert all(letter.reason and letter.queue == "push:SmsUp" and letter.source == "push" for letter in letters)
    assert daemon.stop() == 0
    assert daemon.summary()["push_rejected"] == 1


def test_the_emulator_push_command_delivers_to_push_server(daemons: DaemonFactory, tmp_path: Path) -> None:
    """``mns-consumer emulator push`` against ``mns-consumer push-server``: every receipt accepted and stored."""
    sqlite, engine = sqlite_sink(tmp_path)
    config = _config(tmp_path, {"db": sqlite})
    # push-server ignores queues, even ones no emulator serves.
    config["queues"] = [{"message_type": "SmsReport", "queue_name": "Alicom-Queue-nowhere-SmsReport", "sinks": ["db"]}]
    daemon = daemons.start(config, command="push-server")
    url = f"{daemon.push_url(_path('SmsReport'))}/{SECRET}"
    result = subprocess.run(
        [sys.executable, "-m", "mns_consumer", "emulator", "push", "--url", url, "--type", "SmsReport", "--count", "60",
         "--batch-size", "20", "--retry-delays", "0.2", "--json"],
        capture_output=True, text=True, timeout=120, env=clean_env(), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["accepted_receipts"] == 60
    wait_until(lambda: len(table_keys(engine, "sms_receipts")) == 60, "60 receipts stored", diagnose=daemon.describe)
    ready = httpx.get(daemon.http_url("/readyz"), trust_env=False)
    assert ready.status_code == 200
    assert ready.json()["push"]["accepting"] is True
    assert daemon.events_named("daemon.ready")[0]["queues"] == []
    assert daemon.stop() == 0


def test_a_sink_outage_and_a_kill_after_the_ack_lose_nothing(
    daemons: DaemonFactory, tmp_path: Path, postgres: ServerEnv
) -> None:
    """Pushes acknowledged while PostgreSQL is down survive kill -9 in the spool and are stored after a restart."""
    config = _config(tmp_path, {"db": postgres_sink(postgres)})
    engine = postgres.admin
    # Given PostgreSQL is cut off from the start: the sink cannot even be opened, yet pushes are spooled
    postgres.make_unavailable()
    first = daemons.start(config, ready=False)
    reports = pushed_receipts("SmsReport", 50, seed=3)
    assert _push(first, "SmsReport", reports) == 50
    wait_until(lambda: bool(first.events_named("sink.open_failed")), "a failed sink open", diagnose=first.describe)
    assert _spool_entries(first) == 2
    # When the daemon is killed outright and started again with PostgreSQL back
    first.send(signal.SIGKILL)
    first.wait_exit()
    postgres.restore()
    second = daemons.start(config)
    # Then every acknowledged receipt is stored, once
    wait_until(lambda: len(table_keys(engine, postgres.table)) >= 50, "50 receipts stored", diagnose=second.describe)
    wait_until(lambda: _spool_entries(second) == 0, "the spool drained", diagnose=second.describe)
    assert sorted(table_keys(engine, postgres.table)) == sorted(pushed_keys("SmsReport", reports))
    assert second.events_named("push.spool_opened")[0]["waiting"]["push:SmsReport"] >= 1
    assert second.stop() == 0
    assert not (tmp_path / "dead-letter.jsonl").exists() or not (tmp_path / "dead-letter.jsonl").read_text()


def test_sigterm_refuses_new_pushes_drains_within_the_deadline_and_keeps_the_rest_spooled(
    daemons: DaemonFactory, tmp_path: Path, postgres: ServerEnv
) -> None:
    """During the drain pushes get 503; what the sinks could not take stays spooled and is stored next start."""
    config = _config(tmp_path, {"db": postgres_sink(postgres)}, drain_timeout_seconds=3)
    daemon = daemons.start(config)
    postgres.make_unavailable()
    reports = pushed_receipts("SmsReport", 20, seed=3)
    assert _push(daemon, "SmsReport", reports) == 20
    wait_until(lambda: bool(daemon.events_named("sink.unavailable")), "a sink retry", diagnose=daemon.describe)
    url = f"{daemon.push_url(_path('SmsUp'))}/{SECRET}"

    daemon.send(signal.SIGTERM)
    daemon.wait_for_event("shutdown.started")
    refused = httpx.post(url, json=pushed_receipts("SmsUp", 1, seed=3), trust_env=False)
    assert refused.status_code == 503
    assert refused.json()["code"] == 503
    assert daemon.wait_exit() == 0
    assert daemon.events_named("shutdown.push_abandoned")

    postgres.restore()
    again = daemons.start(config)
    wait_until(
        lambda: len(table_keys(postgres.admin, postgres.table)) >= 20, "20 receipts stored", diagnose=again.describe
    )
    assert sorted(table_keys(postgres.admin, postgres.table)) == sorted(pushed_keys("SmsReport", reports))
    assert again.stop() == 0


def test_the_path_secret_appears_in_no_log_line_metric_or_probe(daemons: DaemonFactory, tmp_path: Path) -> None:
    """The log, /metrics, /healthz and /readyz name routes as push:<type>, never by their secret path."""
    archive = {"type": "file", "path": str(tmp_path / "{message_type}.jsonl")}
    daemon = daemons.start(_config(tmp_path, {"archive": archive}, logging={"format": "json", "level": "debug"}))
    url = f"{daemon.push_url(_path('SmsReport'))}/{SECRET}"
    httpx.post(url, json=[{"bad": 1}, *pushed_receipts("SmsReport", 3, seed=3)], trust_env=False)
    httpx.post(url, content=b"nope", headers={"Content-Type": "application/json"}, trust_env=False)
    httpx.post(url + "-guess", json=[], trust_env=False)
    httpx.get(url, trust_env=False)
    wait_until(lambda: _spool_entries(daemon) == 0, "the spool drained", diagnose=daemon.describe)
    scraped = [httpx.get(daemon.http_url(path), trust_env=False).text for path in ("/metrics", "/healthz", "/readyz")]
    assert daemon.stop() == 0
    assert 'queue="push:SmsReport"' in scraped[0]
    for text in (*scraped, daemon.stderr(), (tmp_path / "dead-letter.jsonl").read_text(encoding="utf-8")):
        assert SECRET not in text


def test_a_configuration_with_neither_queues_nor_push_is_refused(tmp_path: Path) -> None:
    """``run`` needs something to consume; ``push-server`` needs a push section."""
    config = tmp_path / "config.yaml"
    config.write_text("sinks: {}\n", encoding="utf-8")
    for command, expected in (("run", "queues: no queue is configured"), ("push-server", "push: no push section")):
        result = subprocess.run(
            [sys.executable, "-m", "mns_consumer", command, "--config", str(config)],
            capture_output=True, text=True, timeout=60, env=clean_env(), check=False,
        )  # fmt: skip
        assert result.returncode == 2
        assert expected in result.stderr
