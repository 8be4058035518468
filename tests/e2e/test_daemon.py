"""``mns-consumer run`` as operators run it: a subprocess with a real config, real sinks and real signals.

The emulator runs in the test process; the daemon reaches it over loopback (or HTTPS) with the real
SDKs. Each test asserts what an operator can observe: the exit code, sink contents, the dead-letter
file, the queues' counts and the daemon's JSON log.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mns_consumer.emulator import Emulator, QueueDefaults
from mns_consumer.errors import DecodeError
from mns_consumer.receipts import decode_mns_body
from mns_consumer.sinks.dead_letter import read_dead_letters
from tests.e2e.daemon_harness import (
    Daemon,
    DaemonFactory,
    daemon_config,
    expected_receipts,
    file_lines,
    postgres_sink,
    queue_total,
    row_of,
    sqlite_sink,
    table_keys,
    table_rows,
    wait_until,
)
from tests.support.sink_env_database import ServerEnv
from tests.support.sink_env_webhook import SECRET, WebhookReceiver

ALL_TYPES = {
    "SmsReport": "Alicom-Queue-e2e-SmsReport",
    "SmsUp": "Alicom-Queue-e2e-SmsUp",
    "SignSmsReport": "Alicom-Queue-e2e-SignSmsReport",
    "TemplateSmsReport": "Alicom-Queue-e2e-TemplateSmsReport",
}
TWO_TYPES = {"SmsReport": ALL_TYPES["SmsReport"], "SmsUp": ALL_TYPES["SmsUp"]}
SMS_UP_ONLY = {"SmsUp": ALL_TYPES["SmsUp"]}


def _postgres(env: ServerEnv) -> dict[str, Any]:
    return postgres_sink(env, statement_timeout_seconds=10)


def _archive(folder: Path) -> dict[str, Any]:
    return {"type": "file", "path": str(folder / "{message_type}.jsonl")}


def _webhook(receiver: WebhookReceiver, **overrides: Any) -> dict[str, Any]:
    return {"type": "webhook", "url": receiver.url, "secret": SECRET, "read_timeout_seconds": 30, **overrides}


def _dead_letters(path: Path) -> list[Any]:
    return list(read_dead_letters(path)) if path.exists() else []


def _assert_no_crash(daemon: Daemon) -> None:
    """Nothing in the log says a poller died or a sink misbehaved."""
    for name in ("poller.crashed", "sink.bug"):
        assert not daemon.events_named(name), f"{name} in the log: {daemon.describe()}"


def _produce(emulator: Emulator, per_type: int, types: dict[str, str]) -> list[Any]:
    return [item for message_type in types for item in emulator.produce(message_type, per_type)]


@pytest.fixture
def webhook_receiver() -> Any:
    """A local HTTP receiver of the webhook sink's signed POSTs, stopped afterwards."""
    receiver = WebhookReceiver(secret=SECRET).start()
    try:
        yield receiver
    finally:
        receiver.stop()


# -- 1, 2: the happy path ---------------------------------------------------------------------------


def test_a_trickle_is_taken_in_fuller_batches_after_a_partial_receive(
    make_emulator, daemons: DaemonFactory, tmp_path: Path
) -> None:
    """With batch_linger_ms, messages arriving one by one are received and deleted a batch at a time."""
    # Given a daemon that lingers 300 ms after a receive that was not full
    emulator: Emulator = make_emulator(queues=dict(SMS_UP_ONLY))
    sinks = {"archive": _archive(tmp_path / "archive")}
    config = daemon_config(emulator, sinks, tmp_path / "dead.jsonl", queue_settings={"batch_linger_ms": 300})
    daemon = daemons.start(config)

    # When 80 receipts trickle in at 40 a second
    emulator.trickle("SmsUp", 40, 2.0).join(10)
    wait_until(lambda: queue_total(emulator) == 0, "queue drained", diagnose=daemon.describe)
    assert daemon.stop() == 0

    # Then all are stored and deleted, in a handful of BatchDeleteMessage calls rather than one each,
    # and none waited much longer than the linger
    deletions = emulator.queue(SMS_UP_ONLY["SmsUp"]).deletions()
    assert len(deletions) == 80
    assert len(file_lines((tmp_path / "archive").glob("*.jsonl"))) == 80
    batches = len({deleted for _, deleted in deletions})
    assert batches <= 20, f"{batches} delete calls for 80 receipts"
    assert max(deleted - enqueued for enqueued, deleted in deletions) < 2000
    _assert_no_crash(daemon)


@pytest.mark.timeout(120)
def test_daemon_stores_every_receipt_of_four_queues_in_sqlite_and_files_exactly_as_decoded(
    make_emulator, daemons: DaemonFactory, tmp_path: Path
) -> None:
    """Receipts of four types end in SQLite and the file sink as decoded, queues empty, and SIGTERM exits 0."""
    # Given receipts of four message types waiting in their queues
    emulator: Emulator = make_emulator(queues=dict(ALL_TYPES))
    generated = _produce(emulator, 40, ALL_TYPES)
    expected = expected_receipts(emulator, generated)
    assert len(expected) == len(generated)
    db, engine = sqlite_sink(tmp_path)
    sinks = {"db": db, "archive": _archive(tmp_path / "archive")}

    # When the daemon runs until the queues are empty
    daemon = daemons.start(daemon_config(emulator, sinks, tmp_path / "dead.jsonl"))
    wait_until(lambda: queue_total(emulator) == 0, "queues drained", diagnose=daemon.describe)

    # Then its tokens came from a child process: the daemon never mapped the Tea SDK's native parts
    mapped = Path(f"/proc/{daemon.pid}/maps").read_text()
    assert "/aiohttp/" not in mapped
    assert "/cryptography/" not in mapped
    assert len(daemon.events_named("token.refreshed")) == len(ALL_TYPES)

    # And SIGTERM exits 0, and both sinks hold every receipt once, exactly as decoded
    assert daemon.stop() == 0
    assert table_rows(engine, "sms_receipts") == {key: row_of(receipt) for key, receipt in expected.items()}
    lines = file_lines((tmp_path / "archive").glob("*.jsonl"))
    assert sorted(lines, key=lambda line: line["dedupe_key"]) == [
        expected[key].to_json_dict() for key in sorted(expected)
    ]
    assert _dead_letters(tmp_path / "dead.jsonl") == []
    assert daemon.summary()["deleted"] == len(generated)
    _assert_no_crash(daemon)
    engine.dispose()


@pytest.mark.timeout(120)
def test_daemon_stores_every_receipt_in_postgresql_exactly_as_decoded(
    make_emulator, daemons: DaemonFactory, postgres: ServerEnv, tmp_path: Path
) -> None:
    """Receipts of four message types end in PostgreSQL and the file sink as decoded, and SIGTERM exits 0."""
    # Given receipts of four message types waiting in their queues
    emulator: Emulator = make_emulator(queues=dict(ALL_TYPES))
    generated = _produce(emulator, 40, ALL_TYPES)
    expected = expected_receipts(emulator, generated)
    sinks = {"db": _postgres(postgres), "archive": _archive(tmp_path / "archive")}

    # When the daemon runs until the queues are empty
    daemon = daemons.start(daemon_config(emulator, sinks, tmp_path / "dead.jsonl"))
    wait_until(lambda: queue_total(emulator) == 0, "queues drained", diagnose=daemon.describe)

    # Then SIGTERM exits 0, and PostgreSQL holds one row per receipt, exactly as decoded
    assert daemon.stop() == 0
    assert table_rows(postgres.admin, postgres.table) == {key: row_of(receipt) for key, receipt in expected.items()}
    lines = file_lines((tmp_path / "archive").glob("*.jsonl"))
    assert sorted(line["dedupe_key"] for line in lines) == sorted(expected)
    assert _dead_letters(tmp_path / "dead.jsonl") == []
    _assert_no_crash(daemon)


# -- 3: sink outage ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_postgresql_outage_pauses_consumption_and_loses_or_dead_letters_nothing(
    make_emulator, daemons: DaemonFactory, postgres: ServerEnv, tmp_path: Path
) -> None:
    """Receipts arriving while PostgreSQL is unreachable are all stored once it is back, none dead-lettered."""
    # Given a running daemon whose PostgreSQL then becomes unreachable
    emulator: Emulator = make_emulator(queues=dict(TWO_TYPES))
    daemon = daemons.start(daemon_config(emulator, {"db": _postgres(postgres)}, tmp_path / "dead.jsonl"))
    postgres.make_unavailable()

    # When receipts arrive during the outage, and the database comes back a few seconds later
    generated = _produce(emulator, 60, TWO_TYPES)
    daemon.wait_for_event("sink.unavailable")
    time.sleep(3)
    assert table_keys(postgres.admin, postgres.table) == []
    postgres.restore()

    # Then every receipt is stored once, nothing is dead-lettered, and the queues are empty
    expected = expected_receipts(emulator, generated)
    wait_until(
        lambda: len(table_keys(postgres.admin, postgres.table)) == len(expected) and queue_total(emulator) == 0,
        "every receipt stored after the outage",
        diagnose=daemon.describe,
    )
    assert daemon.stop() == 0
    assert sorted(table_keys(postgres.admin, postgres.table)) == sorted(expected)
    assert _dead_letters(tmp_path / "dead.jsonl") == []
    summary = daemon.summary()
    assert summary["dead_lettered"] == 0
    assert summary["received"] == len(generated), "no message was handed out again during the outage"
    assert daemon.events_named("sink.recovered")
    _assert_no_crash(daemon)


# -- 4: slow sink -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_sink_slower_than_the_visibility_timeout_gets_each_message_delivered_once(
    make_emulator, daemons: DaemonFactory, webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    """A webhook slower than the visibility timeout: visibility is extended and nothing is handed out twice."""
    # Given a queue whose visibility timeout is 5 s and a webhook that takes 7 s per request
    emulator: Emulator = make_emulator(
        queues=dict(SMS_UP_ONLY), queue_defaults=QueueDefaults(visibility_timeout_seconds=5)
    )
    generated = emulator.produce("SmsUp", 20)
    expected = expected_receipts(emulator, generated)
    webhook_receiver.delay_seconds = 7

    # When the daemon delivers them
    daemon = daemons.start(daemon_config(emulator, {"hook": _webhook(webhook_receiver)}, tmp_path / "dead.jsonl"))
    wait_until(lambda: queue_total(emulator) == 0, "queue drained through the slow webhook", diagnose=daemon.describe)

    # Then visibility was extended, no message came back from MNS, and the receiver took each receipt once
    assert daemon.stop() == 0
    summary = daemon.summary()
    assert daemon.events_named("visibility.extended"), daemon.describe()
    assert summary["received"] == len(generated), "a message was handed out twice: visibility was not kept"
    assert summary["delete_failed"] == 0
    assert not daemon.events_named("receipts.delete_failed")
    assert sorted(webhook_receiver.deliveries) == sorted(expected)
    _assert_no_crash(daemon)


# -- 5: poison --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_poison_bodies_are_dead_lettered_with_reason_and_raw_body_then_deleted(
    make_emulator, daemons: DaemonFactory, tmp_path: Path
) -> None:
    """Undecodable bodies are dead-lettered with raw body and reason, then deleted; good receipts are stored."""
    # Given 10 good receipts and 3 poison bodies, and a first receive whose 4 messages are corrupted in the
    # queue and whose answer is cut (so they come back as poison after the 5 s visibility timeout)
    emulator: Emulator = make_emulator(
        queues=dict(SMS_UP_ONLY), queue_defaults=QueueDefaults(visibility_timeout_seconds=5)
    )
    queue_name = SMS_UP_ONLY["SmsUp"]
    generated = emulator.produce("SmsUp", 10, malformed=3)
    original = {delivery.message_id: delivery.body for delivery in emulator.queue(queue_name).peek(16)}
    assert len(original) == 13
    key_of: dict[str, str] = {}
    for message_id, body in original.items():
        try:
            key_of[message_id] = decode_mns_body("SmsUp", body).dedupe_key
        except DecodeError:
            continue
    poison_ids = set(original) - set(key_of)
    assert len(poison_ids) == 3
    emulator.add_fault(kind="malformed", service="mns", operation="BatchReceiveMessage", times=1)
    emulator.add_fault(kind="drop", service="mns", operation="BatchReceiveMessage", times=1)
    db, engine = sqlite_sink(tmp_path)
    dead = tmp_path / "dead.jsonl"

    # When the daemon consumes the queue, 4 messages per receive
    daemon = daemons.start(daemon_config(emulator, {"db": db}, dead, queue_settings={"batch_size": 4}))
    wait_until(lambda: queue_total(emulator) == 0, "queue drained", diagnose=daemon.describe)
    assert daemon.stop() == 0

    # Then every poison body is a dead letter with its raw body and a reason, and every other receipt is stored
    letters = {letter.message_id: letter for letter in _dead_letters(dead)}
    corrupted = set(letters) - poison_ids
    assert poison_ids <= set(letters)
    assert len(corrupted) == 4, "the 4 messages of the cut receive come back corrupted"
    for message_id, letter in letters.items():
        assert letter.queue == queue_name
        assert letter.message_type == "SmsUp"
        assert letter.reason.startswith("undecodable")
        assert letter.dequeue_count is not None
        assert letter.dequeue_count >= 1
        with pytest.raises(DecodeError):
            decode_mns_body("SmsUp", letter.raw)
        if message_id in poison_ids:
            assert letter.raw == original[message_id].encode("utf-8")
        else:
            assert letter.raw != original[message_id].encode("utf-8")
    stored = sorted(table_keys(engine, "sms_receipts"))
    assert stored == sorted(key for message_id, key in key_of.items() if message_id not in corrupted)
    assert len(generated) == len(stored) + len(corrupted)
    assert daemon.summary()["dead_lettered"] == 7
    _assert_no_crash(daemon)
    engine.dispose()


# -- 6: token expiry --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_tokens_expiring_and_a_failing_token_api_mid_stream_lose_no_receipt(
    make_emulator, daemons: DaemonFactory, tmp_path: Path
) -> None:
    """With 15 s tokens, a forced expiry and a failing token API while receipts keep coming, every receipt is stored."""
    # Given an emulator minting 15 s tokens (and a 10 s visibility timeout, so a message whose delete was
    # refused comes back soon), and a daemon refreshing tokens 10 s ahead
    emulator: Emulator = make_emulator(
        queues=dict(TWO_TYPES), token_ttl_seconds=15, queue_defaults=QueueDefaults(visibility_timeout_seconds=10)
    )
    db, engine = sqlite_sink(tmp_path)
    config = daemon_config(emulator, {"db": db}, tmp_path / "dead.jsonl", tokens={"refresh_margin_seconds": 10})
    daemon = daemons.start(config)

    # When receipts keep arriving for 20 s, while every token is expired and the token API fails 6 calls
    generated: list[Any] = []
    started = time.monotonic()
    disturbed = False
    while time.monotonic() - started < 20:
        generated += _produce(emulator, 3, TWO_TYPES)
        if not disturbed and time.monotonic() - started > 6:
            emulator.add_fault(
                kind="error", service="dybaseapi", operation="QueryTokenForMnsQueue", times=6, status=503
            )
            assert emulator.expire_tokens() >= 1
            disturbed = True
        time.sleep(0.25)
    expected = expected_receipts(emulator, generated)

    # Then the daemon never crashed, and every receipt is stored once
    wait_until(
        lambda: queue_total(emulator) == 0 and len(table_keys(engine, "sms_receipts")) == len(expected),
        "every receipt stored",
        diagnose=daemon.describe,
    )
    assert daemon.alive()
    assert daemon.stop() == 0
    assert sorted(table_keys(engine, "sms_receipts")) == sorted(expected)
    assert len(daemon.events_named("token.refreshed")) > len(TWO_TYPES), "tokens were refreshed"
    assert daemon.events_named("token.refused_by_mns") or daemon.events_named("token.unavailable")
    _assert_no_crash(daemon)
    engine.dispose()


# -- 7: 5xx and dropped connections ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_mns_errors_and_dropped_connections_still_store_every_receipt_exactly_once(
    make_emulator, daemons: DaemonFactory, postgres: ServerEnv, tmp_path: Path
) -> None:
    """Under random 503s (30%) and cut answers (20%) from MNS, every receipt ends in PostgreSQL exactly once."""
    # Given 400 receipts and an MNS that fails 30% of calls and cuts 20% of answers
    emulator: Emulator = make_emulator(
        queues=dict(TWO_TYPES), queue_defaults=QueueDefaults(visibility_timeout_seconds=5), seed=7
    )
    generated = _produce(emulator, 200, TWO_TYPES)
    expected = expected_receipts(emulator, generated)
    emulator.add_fault(kind="error", service="mns", status=503, probability=0.3)
    emulator.add_fault(kind="drop", service="mns", probability=0.2)

    # When the daemon consumes under those faults (until half the receipts are stored, or 20 s), and then
    # without them (a receive backed off under faults may sleep up to 30 s before it tries again)
    daemon = daemons.start(daemon_config(emulator, {"db": _postgres(postgres)}, tmp_path / "dead.jsonl"))
    faulted_until = time.monotonic() + 20
    wait_until(
        lambda: (
            len(table_keys(postgres.admin, postgres.table)) >= len(expected) // 2 or time.monotonic() > faulted_until
        ),
        "consumption under faults",
        diagnose=daemon.describe,
    )
    fired = {rule.kind: rule.fired for rule in emulator.faults.rules()}
    emulator.faults.clear()
    wait_until(
        lambda: queue_total(emulator) == 0 and len(table_keys(postgres.admin, postgres.table)) == len(expected),
        "every receipt stored and the queues drained once faults cleared",
        diagnose=daemon.describe,
    )

    # Then each receipt is in PostgreSQL exactly once and nothing was dead-lettered
    assert daemon.stop() == 0
    keys = table_keys(postgres.admin, postgres.table)
    assert len(keys) == len(generated)
    assert sorted(keys) == sorted(expected)
    assert _dead_letters(tmp_path / "dead.jsonl") == []
    assert fired["error"] > 0
    assert fired["drop"] > 0
    assert daemon.events_named("receive.failed"), "the faults were felt"
    _assert_no_crash(daemon)


# -- 8: TLS and a hung receive ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_over_https_a_hung_receive_times_out_and_the_poller_recovers(
    make_emulator, daemons: DaemonFactory, tmp_path: Path
) -> None:
    """Over HTTPS, a BatchReceiveMessage that never answers is cut by the request timeout and consumption goes on."""
    # Given a TLS emulator whose first BatchReceiveMessage hangs for 120 s, and receipts waiting
    emulator: Emulator = make_emulator(queues=dict(TWO_TYPES), tls=True)
    assert emulator.tls is not None
    emulator.add_fault(kind="hang", service="mns", operation="BatchReceiveMessage", seconds=120, times=1)
    generated = _produce(emulator, 30, TWO_TYPES)
    expected = expected_receipts(emulator, generated)
    db, engine = sqlite_sink(tmp_path)
    config = daemon_config(
        emulator,
        {"db": db},
        tmp_path / "dead.jsonl",
        ca_file=str(emulator.tls.cert_path),
        mns_request_timeout_seconds=2,
    )

    # When the daemon consumes over HTTPS with a 2 s request timeout
    daemon = daemons.start(config)
    wait_until(
        lambda: queue_total(emulator) == 0 and len(table_keys(engine, "sms_receipts")) == len(expected),
        "every receipt stored despite the hung receive",
        diagnose=daemon.describe,
    )

    # Then the hung receive was reported as a timeout, and everything was stored
    assert daemon.stop() == 0
    assert sorted(table_keys(engine, "sms_receipts")) == sorted(expected)
    failures = daemon.events_named("receive.failed")
    assert [event["code"] for event in failures] == ["Timeout"], daemon.describe()
    _assert_no_crash(daemon)
    engine.dispose()


# -- 9: SIGTERM during a batch ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigterm_while_a_slow_webhook_holds_a_batch_finishes_it_and_exits_0(
    make_emulator, daemons: DaemonFactory, webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    """SIGTERM during a slow write finishes the batches in flight and exits 0; a restart delivers the rest."""
    # Given more receipts than fit in flight (4 batches of 16), a webhook that takes 2 s per request, and a
    # daemon busy with the first one
    emulator: Emulator = make_emulator(queues=dict(SMS_UP_ONLY))
    generated = emulator.produce("SmsUp", 120)
    expected = expected_receipts(emulator, generated)
    webhook_receiver.delay_seconds = 2
    config = daemon_config(
        emulator,
        {"hook": _webhook(webhook_receiver, max_batch=16)},
        tmp_path / "dead.jsonl",
        # 4 batches of 2 s each fit the 15 s drain; 8, the default, would not
        queue_settings={"in_flight_batches": 4},
        drain_timeout_seconds=15,
    )
    daemon = daemons.start(config)
    wait_until(lambda: len(webhook_receiver.requests) >= 1, "a webhook request in progress")

    # When SIGTERM arrives mid-request
    daemon.send(signal.SIGTERM)

    # Then the daemon exits 0 (within the drain timeout: the wait is only a hang guard) after finishing
    # what it held, and what it did not delete is still in the queue
    assert daemon.wait_exit(15 + 15) == 0
    assert daemon.events_named("shutdown.drained")
    assert not daemon.events_named("shutdown.abandoned")
    summary = daemon.summary()
    assert summary["deleted"] == summary["received"], "every batch received was finished"
    assert summary["deleted"] < len(generated), "the daemon stopped before the end"
    assert len(webhook_receiver.stored) == summary["deleted"]
    assert queue_total(emulator) == len(generated) - summary["deleted"]

    # And a restarted daemon delivers the rest: every receipt reached the receiver once
    webhook_receiver.delay_seconds = 0
    second = daemons.start(config)
    wait_until(lambda: queue_total(emulator) == 0, "queue drained by the restarted daemon", diagnose=second.describe)
    assert second.stop() == 0
    assert sorted(webhook_receiver.deliveries) == sorted(expected)
    _assert_no_crash(daemon)
    _assert_no_crash(second)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigterm_during_a_sink_outage_abandons_the_batches_at_the_drain_deadline_and_loses_nothing(
    make_emulator, daemons: DaemonFactory, postgres: ServerEnv, tmp_path: Path
) -> None:
    """SIGTERM while PostgreSQL is down exits 0 at the drain deadline without deleting; a restart stores everything."""
    # Given a daemon holding batches it cannot store because PostgreSQL is unreachable (short visibility
    # and extensions, so abandoned messages come back soon)
    emulator: Emulator = make_emulator(
        queues=dict(TWO_TYPES), queue_defaults=QueueDefaults(visibility_timeout_seconds=6)
    )
    config = daemon_config(
        emulator,
        {"db": _postgres(postgres)},
        tmp_path / "dead.jsonl",
        queue_settings={"visibility_extension_seconds": 6},
        drain_timeout_seconds=3,
    )
    daemon = daemons.start(config)
    postgres.make_unavailable()
    generated = _produce(emulator, 40, TWO_TYPES)
    expected = expected_receipts(emulator, generated)
    daemon.wait_for_event("sink.unavailable")

    # When SIGTERM arrives during the outage
    daemon.send(signal.SIGTERM)

    # Then it exits 0 after abandoning the batches at the drain deadline, having deleted nothing
    assert daemon.wait_exit(3 + 20) == 0
    assert daemon.events_named("shutdown.abandoned")
    assert daemon.summary()["deleted"] == 0
    assert queue_total(emulator) == len(generated)

    # And once PostgreSQL is back, a restarted daemon stores every receipt exactly once
    postgres.restore()
    second = daemons.start(config)
    wait_until(
        lambda: queue_total(emulator) == 0 and len(table_keys(postgres.admin, postgres.table)) == len(expected),
        "every receipt stored after the restart",
        diagnose=second.describe,
    )
    assert second.stop() == 0
    assert sorted(table_keys(postgres.admin, postgres.table)) == sorted(expected)
    assert _dead_letters(tmp_path / "dead.jsonl") == []


# -- 10: bad configurations ------------------------------------------------------------------------


def _unknown_key(config: dict[str, Any]) -> None:
    config["queues"][0]["wait_secs"] = 1


def _no_dead_letter(config: dict[str, Any]) -> None:
    del config["dead_letter"]


def _undefined_sink(config: dict[str, Any]) -> None:
    config["queues"][0]["sinks"] = ["db", "nowhere"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("breakage", "raw_text", "names"),
    [
        pytest.param(_unknown_key, None, ["queues[0].wait_secs", "unknown key"], id="unknown-key"),
        pytest.param(_no_dead_letter, None, ["dead_letter"], id="missing-dead-letter"),
        pytest.param(_undefined_sink, None, ["queues[0].sinks", "nowhere"], id="undefined-sink"),
        pytest.param(None, "queues:\n  - {message_type: SmsUp, queue_name: [\n", ["line", "YAML"], id="bad-yaml"),
    ],
)
def test_a_bad_configuration_exits_2_naming_file_and_key_and_starts_nothing(
    make_emulator, daemons: DaemonFactory, tmp_path: Path, breakage: Any, raw_text: str | None, names: list[str]
) -> None:
    """An invalid configuration exits 2 with the file and the key on stderr, before any sink or poller starts."""
    # Given a configuration broken in one way, and receipts waiting
    emulator: Emulator = make_emulator(queues=dict(SMS_UP_ONLY))
    emulator.produce("SmsUp", 5)
    db, engine = sqlite_sink(tmp_path)
    config = daemon_config(emulator, {"db": db, "archive": _archive(tmp_path / "archive")}, tmp_path / "dead.jsonl")
    path = tmp_path / "broken.yaml"
    if breakage is not None:
        breakage(config)
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    else:
        path.write_text(raw_text or "", encoding="utf-8")

    # When the daemon is started with it
    daemon = daemons.start(path, ready=False)
    code = daemon.wait_exit(30)

    # Then it exits 2, names the file and the key, and touched nothing
    stderr = daemon.stderr()
    assert code == 2, daemon.describe()
    assert str(path) in stderr
    for name in names:
        assert name in stderr
    assert "daemon.ready" not in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "receipts.db").exists()
    assert not (tmp_path / "archive").exists()
    assert not (tmp_path / "dead.jsonl").exists()
    counts = emulator.queue(SMS_UP_ONLY["SmsUp"]).counts()
    assert (counts.active, counts.inactive) == (5, 0)
    engine.dispose()


# -- 11: SIGHUP -------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_sighup_after_the_archive_is_moved_away_writes_new_receipts_to_a_new_file_at_the_path(
    make_emulator, daemons: DaemonFactory, tmp_path: Path
) -> None:
    """After logrotate-style renaming and SIGHUP, new receipts land in a fresh file at the configured path."""
    # Given a daemon that archived 10 receipts to a file
    emulator: Emulator = make_emulator(queues=dict(SMS_UP_ONLY))
    archive = tmp_path / "archive.jsonl"
    daemon = daemons.start(
        daemon_config(emulator, {"archive": {"type": "file", "path": str(archive)}}, tmp_path / "dead.jsonl")
    )
    first = expected_receipts(emulator, emulator.produce("SmsUp", 10))
    wait_until(lambda: len(file_lines([archive])) == 10, "first receipts archived", diagnose=daemon.describe)

    # When the file is renamed away, SIGHUP is sent, and more receipts arrive
    rotated = tmp_path / "archive.jsonl.1"
    archive.rename(rotated)
    daemon.send(signal.SIGHUP)
    daemon.wait_for_event("sink.reopened")
    second = expected_receipts(emulator, emulator.produce("SmsUp", 10))

    # Then the new receipts are in a new file at the configured path, the old ones stay in the rotated one
    wait_until(lambda: len(file_lines([archive])) == 10, "new receipts in the new file", diagnose=daemon.describe)
    assert daemon.stop() == 0
    assert sorted(line["dedupe_key"] for line in file_lines([rotated])) == sorted(first)
    assert sorted(line["dedupe_key"] for line in file_lines([archive])) == sorted(second)
    _assert_no_crash(daemon)


# -- 12: second SIGTERM -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_second_sigterm_during_a_long_drain_exits_at_once_with_code_3(
    make_emulator, daemons: DaemonFactory, postgres: ServerEnv, tmp_path: Path
) -> None:
    """A second SIGTERM while the drain waits for an unreachable sink exits at once with code 3, deleting nothing."""
    # Given a daemon draining for up to 60 s because PostgreSQL is unreachable
    emulator: Emulator = make_emulator(queues=dict(TWO_TYPES))
    config = daemon_config(
        emulator,
        {"db": _postgres(postgres)},
        tmp_path / "dead.jsonl",
        drain_timeout_seconds=60,
    )
    daemon = daemons.start(config)
    postgres.make_unavailable()
    generated = _produce(emulator, 20, TWO_TYPES)
    daemon.wait_for_event("sink.unavailable")
    daemon.send(signal.SIGTERM)
    daemon.wait_for_event("shutdown.started")

    # When a second SIGTERM arrives
    daemon.send(signal.SIGTERM)

    # Then the process is gone at once (the wait is a hang guard far below the drain timeout) with code 3,
    # and every message is still in the queue
    assert daemon.wait_exit(15) == 3
    assert queue_total(emulator) == len(generated)
