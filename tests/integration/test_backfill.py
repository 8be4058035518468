"""QuerySendDetails backfill against the emulator, with the real Tea client, real MNS SDK and real sinks."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from mns.account import Account
from mns.mns_exception import MNSServerException
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from mns_consumer.alicom.endpoints import resolve_endpoints
from mns_consumer.alicom.send_details import SendDetailsClient
from mns_consumer.backfill import BackfillOptions, BackfillReport, Send, run_backfill
from mns_consumer.backfill.run import send_details_client
from mns_consumer.config import Config, parse_config
from mns_consumer.emulator import Emulator
from mns_consumer.emulator.clock import BEIJING
from mns_consumer.emulator.send_log import SendRecord
from mns_consumer.errors import SendDetailsAuthError, SendDetailsError
from mns_consumer.exit_codes import EXIT_FAILURE, EXIT_OK, EXIT_UNAVAILABLE
from mns_consumer.observe.events import Events
from mns_consumer.observe.metrics import Metrics
from mns_consumer.receipt_model import Receipt
from mns_consumer.receipts import decode_mns_body
from mns_consumer.sinks.base import Sink
from mns_consumer.testing import RecordingSink
from tests.support.sink_env_database import DatabaseEnv, make_env

QUEUE = "Alicom-Queue-i1-SmsReport"
PHONE = "13900001111"


@pytest.fixture
def emulator(make_emulator: Callable[..., Emulator]) -> Emulator:
    """An emulator with one SmsReport queue."""
    return make_emulator(queues={"SmsReport": QUEUE}, seed=11)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DatabaseEnv]:
    """A receipts table on SQLite or the machine's PostgreSQL (skipped when absent)."""
    env = make_env(request.param, tmp_path)
    try:
        yield env
    finally:
        env.close()


def make_config(emulator: Emulator, tmp_path: Path, sinks: dict[str, Any], **backfill: Any) -> Config:
    """A configuration aimed at the emulator with fast retries, SmsReport routed to ``sinks``."""
    return parse_config(
        {
            "credentials": {
                "access_key_id": emulator.settings.access_key_id,
                "access_key_secret": backfill.pop("secret", emulator.settings.access_key_secret),
            },
            "endpoints": {
                "dybaseapi": emulator.endpoint,
                "dysmsapi": emulator.endpoint,
                "mns": emulator.url,
                "protocol": "http",
            },
            "queues": [{"message_type": "SmsReport", "queue_name": QUEUE, "sinks": sorted(sinks)}],
            "sinks": sinks,
            "dead_letter": {"type": "file", "path": str(tmp_path / "dead-letter.jsonl")},
            "sink_retry_initial_seconds": 0.01,
            "sink_retry_max_seconds": 0.05,
            "backfill": {"query_retry_initial_seconds": 0.01, "query_retry_max_seconds": 0.05, **backfill},
        },
        "test",
    )


def db_sinks(database: DatabaseEnv) -> dict[str, Any]:
    """The ``sinks`` section of one database sink on the environment's table."""
    return {"db": database.config().model_dump(mode="json") | {"url": database.url}}


def send_of(record: SendRecord) -> Send:
    """The send a record reports on, as the application knows it."""
    return Send(record.phone_number, datetime.fromtimestamp(record.send_time, BEIJING).date(), record.biz_id)


def drain(emulator: Emulator, sink: Sink) -> int:
    """A direct consumer: receive every SmsReport with the MNS SDK, decode, store, delete. Returns how many."""
    settings = emulator.settings
    account = Account(emulator.url, settings.access_key_id, settings.access_key_secret, "")
    queue = account.get_queue(QUEUE)
    drained = 0
    try:
        while True:
            try:
                messages = queue.batch_receive_message(16, 0)
            except MNSServerException as exc:
                if exc.type == "MessageNotExist":
                    return drained
                raise
            receipts = [decode_mns_body("SmsReport", message.message_body, queue=QUEUE) for message in messages]
            result = sink.write(receipts)
            assert result.accepted == {receipt.dedupe_key for receipt in receipts}
            queue.batch_delete_message([message.receipt_handle for message in messages])
            drained += len(messages)
    finally:
        account.mns_client.close_connection()


def rows(database: DatabaseEnv) -> list[dict[str, Any]]:
    """Every stored row's key, source and status."""
    with database.admin.connect() as connection:
        result = connection.execute(sa.text(f"SELECT dedupe_key, source, status FROM {database.table}"))  # noqa: S608
        return [dict(row) for row in result.mappings()]


def metrics_events() -> tuple[Events, CollectorRegistry]:
    registry = CollectorRegistry()
    return Events(Metrics(registry)), registry


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, {"queue": "backfill", "message_type": "SmsReport", **labels})
    return value or 0.0


def test_backfill_recovers_the_receipts_a_lose_fault_kept_out_of_mns_and_stores_each_once(
    emulator: Emulator, database: DatabaseEnv, tmp_path: Path
) -> None:
    """Every send's receipt ends up stored exactly once, with the MNS receipt's key, whichever path brought it."""
    # Given: a third of the receipts are logged as sent but never enqueued, and MNS is drained into the table.
    emulator.add_fault(kind="lose", service="producer", probability=0.35)
    generated = emulator.produce("SmsReport", 60)
    sink = database.make_sink()
    sink.open()
    try:
        drained = drain(emulator, sink)
    finally:
        sink.close()
    expected = {decode_mns_body("SmsReport", item.body).dedupe_key for item in generated}
    assert 0 < drained < len(generated)
    assert len(rows(database)) == drained
    config = make_config(emulator, tmp_path, db_sinks(database))
    sends = [send_of(record) for record in emulator.send_log.snapshot()]

    # When: every send of the send log is backfilled.
    events, registry = metrics_events()
    report = run_backfill(config, sends, environ={}, events=events)

    # Then: the lost receipts are stored, the others are not stored again.
    assert report.exit_code == EXIT_OK, report.summary()
    assert (report.sends, report.queried, report.found) == (60, 60, 60)
    assert report.delivered + report.failed == 60
    stored = rows(database)
    assert sorted(row["dedupe_key"] for row in stored) == sorted(expected)
    assert sum(1 for row in stored if row["source"] == "query") == len(generated) - drained
    assert sample(registry, "mns_consumer_backfill_queries_total") == 60
    assert sample(registry, "mns_consumer_backfill_receipts_found_total", status="delivered") == report.delivered
    assert sample(registry, "mns_consumer_backfill_last_run_success") == 1

    # And: a second run stores nothing new.
    again = run_backfill(config, sends, environ={})
    assert again.exit_code == EXIT_OK
    assert len(rows(database)) == 60


def test_paging_covers_more_than_fifty_records_and_the_bizid_narrows_the_query(
    emulator: Emulator, tmp_path: Path
) -> None:
    """120 records of one send come in three pages of 50; records of another BizId are not returned."""
    # The records start at midnight (Beijing) of the day an hour ago: all on one Beijing day, all past,
    # whatever the hour the test runs at (an hour before now alone crosses midnight from 16:00 UTC).
    day = datetime.fromtimestamp(emulator.clock.now() - 3600, BEIJING).date()
    now = datetime(day.year, day.month, day.day, tzinfo=BEIJING).timestamp()
    for index in range(120):
        emulator.send_log.add(_record("812^0", now + index, delivered=index % 2 == 0))
    for index in range(7):
        emulator.send_log.add(_record("999^0", now + index, delivered=True))
    recording = RecordingSink("recording")
    config = make_config(emulator, tmp_path, {"db": {"type": "file", "path": str(tmp_path / "unused.jsonl")}})
    events, registry = metrics_events()
    send = Send(PHONE, datetime.fromtimestamp(now, BEIJING).date(), "812^0")

    report = run_backfill(config, [send], environ={}, events=events, build_sink=lambda name: recording)

    assert (report.pages, report.found, report.delivered, report.failed) == (3, 120, 60, 60)
    assert sample(registry, "mns_consumer_backfill_queries_total") == 3
    # One number, one BizId, two outcomes: two receipts, however many records repeat them.
    assert sorted(receipt.status or "" for receipt in recording.stored.values()) == ["delivered", "failed"]
    assert {receipt.biz_id for receipt in recording.stored.values()} == {"812^0"}


def _record(biz_id: str, send_time: float, *, delivered: bool) -> SendRecord:
    return SendRecord(
        phone_number=PHONE,
        biz_id=biz_id,
        out_id=None,
        template_code="SMS_123456789",
        content="【ExampleSign】您的验证码为123456",
        send_time=send_time,
        receive_time=send_time + 5,
        send_status=3 if delivered else 2,
        err_code="DELIVERED" if delivered else "MK:0001",
    )


def client_of(emulator: Emulator, *, today: date | None = None, **overrides: Any) -> SendDetailsClient:
    config = make_config(emulator, Path("/nonexistent"), {"db": {"type": "file", "path": "/nonexistent.jsonl"}})
    endpoints = resolve_endpoints(config.region, config.endpoints)
    client = send_details_client(config, endpoints, {})
    if today is not None:
        client._today = lambda: today
    for name, value in overrides.items():
        setattr(client, name, value)
    return client


def test_a_day_the_service_counts_as_too_old_is_its_clear_business_error(emulator: Emulator) -> None:
    """With the service's clock 40 days ahead, a day the host still allows comes back isv.INVALID_PARAMETERS."""
    day = datetime.fromtimestamp(emulator.clock.now(), BEIJING).date()
    emulator.clock.advance(40 * 86400)
    with pytest.raises(SendDetailsError) as caught:
        client_of(emulator).query(PHONE, day, "812^0")
    assert not isinstance(caught.value, SendDetailsAuthError)
    assert caught.value.code == "isv.INVALID_PARAMETERS"
    assert "last 30 days" in str(caught.value)
    assert caught.value.request_id


def test_a_day_outside_the_window_is_refused_before_any_call(emulator: Emulator, tmp_path: Path) -> None:
    """The host's own check names the window; the run reports the send and goes on with the others."""
    day = datetime.fromtimestamp(emulator.clock.now(), BEIJING).date()
    old = Send(PHONE, date.fromordinal(day.toordinal() - 45), "812^0", where="sends.csv:2")
    config = make_config(emulator, tmp_path, {"r": {"type": "file", "path": str(tmp_path / "r.jsonl")}})
    report = run_backfill(config, [old, Send(PHONE, day, "812^0")], environ={})
    assert report.exit_code == EXIT_FAILURE
    assert report.queried == 1
    assert [(failure.send.where, failure.code) for failure in report.failures] == [("sends.csv:2", "InvalidSendDate")]
    assert "45 days ago" in report.failures[0].message


@pytest.mark.parametrize(
    ("status", "code"), [(503, "ServiceUnavailable"), (200, "Throttling.User"), (429, "Throttling.Api")]
)
def test_a_dysmsapi_5xx_or_throttling_is_retried_until_it_recovers(
    emulator: Emulator, tmp_path: Path, status: int, code: str
) -> None:
    """Two failed answers (5xx, or throttling on either channel) are retried; they are counted and logged."""
    generated = emulator.produce("SmsReport", 1)
    assert generated[0].send_record is not None
    emulator.add_fault(kind="error", service="dysmsapi", status=status, code=code, times=2)
    recording = RecordingSink("recording")
    config = make_config(emulator, tmp_path, {"db": {"type": "file", "path": str(tmp_path / "unused.jsonl")}})
    events, registry = metrics_events()
    with capture_logs() as logs:
        report = run_backfill(
            config, [send_of(generated[0].send_record)], environ={}, events=events, build_sink=lambda name: recording
        )
    assert report.exit_code == EXIT_OK, report.summary()
    assert list(recording.stored) == [decode_mns_body("SmsReport", generated[0].body).dedupe_key]
    retries = [entry for entry in logs if entry["event"] == "backfill.query_retry"]
    assert [entry["code"] for entry in retries] == [code, code]
    assert sample(registry, "mns_consumer_failures_total", stage="query") == 2


def test_dysmsapi_unavailable_through_every_retry_stops_the_run_with_exit_4(emulator: Emulator, tmp_path: Path) -> None:
    """A Dysmsapi that keeps failing stops the run instead of hanging; the rest is reported as not tried."""
    emulator.add_fault(kind="error", service="dysmsapi", status=500, code="InternalError")
    day = datetime.fromtimestamp(emulator.clock.now(), BEIJING).date()
    sends = [Send(f"1390000{index:04d}", day, f"{index}^0") for index in range(20)]
    config = make_config(
        emulator, tmp_path, {"r": {"type": "file", "path": str(tmp_path / "r.jsonl")}}, query_attempts=2, concurrency=1
    )
    report = run_backfill(config, sends, environ={})
    assert report.exit_code == EXIT_UNAVAILABLE
    assert report.stopped is not None
    assert "Dysmsapi stayed unavailable through 2 tries (InternalError)" in report.stopped
    assert report.not_tried >= 18
    assert len(report.failures) + report.queried + report.not_tried == 20


def test_a_wrong_accesskey_secret_stops_the_run_and_the_secret_appears_nowhere(
    emulator: Emulator, tmp_path: Path
) -> None:
    """SignatureDoesNotMatch is an auth error: no other send is tried, and no text carries the secret."""
    secret = "Wrong-Secret-9d2e7c"
    day = datetime.fromtimestamp(emulator.clock.now(), BEIJING).date()
    config = make_config(emulator, tmp_path, {"r": {"type": "file", "path": str(tmp_path / "r.jsonl")}}, secret=secret)
    with capture_logs() as logs:
        report = run_backfill(config, [Send(PHONE, day, "1^0"), Send(PHONE, day, "2^0")], environ={})
    assert report.exit_code == EXIT_FAILURE
    assert report.failures[0].code == "SignatureDoesNotMatch"
    assert report.stopped is not None
    assert "refused the AccessKey" in report.stopped
    texts = json.dumps(report.to_json()) + repr(logs) + report.summary()
    assert secret not in texts
    assert emulator.settings.access_key_secret not in texts


def test_a_sink_outage_beyond_sink_attempts_stops_with_exit_4_and_a_rerun_completes(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A locked SQLite is retried sink_attempts times, then the run stops; nothing was lost for the rerun."""
    generated = emulator.produce("SmsReport", 5)
    database = make_env("sqlite", tmp_path)
    try:
        config = make_config(emulator, tmp_path, db_sinks(database), sink_attempts=3)
        sends = [send_of(item.send_record) for item in generated if item.send_record is not None]
        sink = database.make_sink()
        sink.open()
        sink.close()
        database.make_unavailable()
        stopped = run_backfill(config, sends, environ={})
        assert stopped.exit_code == EXIT_UNAVAILABLE
        assert stopped.stopped is not None
        assert "sink 'db' stayed unavailable through 3 tries" in stopped.stopped
        assert stopped.unstored == 5
        database.restore()
        rerun = run_backfill(config, sends, environ={})
        assert rerun.exit_code == EXIT_OK
        assert len(rows(database)) == 5
    finally:
        database.close()


def test_receipts_a_sink_rejects_go_to_the_dead_letter_file_with_the_reason(emulator: Emulator, tmp_path: Path) -> None:
    """The daemon's poison rule: rejected receipts are dead-lettered (source query), the run exits 1."""
    generated = emulator.produce("SmsReport", 30)
    picky = RecordingSink("picky", reject=lambda receipt: "no failures here" if receipt.status == "failed" else None)
    config = make_config(emulator, tmp_path, {"picky": {"type": "file", "path": str(tmp_path / "unused.jsonl")}})
    sends = [send_of(item.send_record) for item in generated if item.send_record is not None]
    report = run_backfill(config, sends, environ={}, build_sink=lambda name: picky)
    assert report.failed > 0
    assert report.dead_lettered == report.failed
    assert report.stored == report.delivered
    assert report.exit_code == EXIT_FAILURE
    letters = [json.loads(line) for line in (tmp_path / "dead-letter.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(letters) == report.failed
    assert {letter["source"] for letter in letters} == {"query"}
    assert {letter["reason"] for letter in letters} == {"rejected by sink 'picky': no failures here"}


def test_rejections_are_logged_and_counted_as_the_backfills_own_through_the_delivery_core(
    emulator: Emulator, tmp_path: Path
) -> None:
    """The delivery core stores a run's receipts, but under backfill's event names and labels, not the daemon's."""
    generated = emulator.produce("SmsReport", 30)
    picky = RecordingSink("picky", reject=lambda receipt: "no failures here" if receipt.status == "failed" else None)
    config = make_config(emulator, tmp_path, {"picky": {"type": "file", "path": str(tmp_path / "unused.jsonl")}})
    sends = [send_of(item.send_record) for item in generated if item.send_record is not None]
    events, registry = metrics_events()
    with capture_logs() as logs:
        report = run_backfill(config, sends, environ={}, events=events, build_sink=lambda name: picky)
    assert report.failed > 0
    rejected = [entry for entry in logs if entry["event"] == "backfill.rejected"]
    letters = [json.loads(line) for line in (tmp_path / "dead-letter.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(letters) == report.failed
    assert {letter["queue"] for letter in letters} == {None}
    assert sorted(entry["dedupe_key"] for entry in rejected) == sorted(letter["dedupe_key"] for letter in letters)
    assert {entry["sink"] for entry in rejected} == {"picky"}
    assert [entry["count"] for entry in logs if entry["event"] == "backfill.dead_lettered"] == [report.failed]
    daemon_events = {"receipt.rejected", "receipts.dead_lettered", "sink.written", "sink.recovered"}
    assert not [entry for entry in logs if entry["event"] in daemon_events]
    assert sample(registry, "mns_consumer_receipts_dead_lettered_total") == report.failed
    stored = sample(registry, "mns_consumer_backfill_receipts_stored_total", sink="picky", status="delivered")
    assert stored == report.delivered


def test_pending_sends_are_skipped_by_default_and_stored_on_request(emulator: Emulator, tmp_path: Path) -> None:
    """SendStatus 1 is counted as pending; include_pending stores it with status pending."""
    record = emulator.receipts.make_waiting_send()
    emulator.send_log.add(record)
    config = make_config(emulator, tmp_path, {"r": {"type": "file", "path": str(tmp_path / "unused.jsonl")}})
    skipped_into = RecordingSink()
    report = run_backfill(config, [send_of(record)], environ={}, build_sink=lambda name: skipped_into)
    assert (report.pending, report.stored, report.exit_code) == (1, 0, EXIT_OK)
    assert skipped_into.stored == {}
    stored_into = RecordingSink()
    options = BackfillOptions(include_pending=True)
    report = run_backfill(config, [send_of(record)], options, environ={}, build_sink=lambda name: stored_into)
    assert [receipt.status for receipt in stored_into.stored.values()] == ["pending"]


def test_a_dry_run_shows_the_receipts_and_opens_no_sink(emulator: Emulator, tmp_path: Path) -> None:
    """Nothing is stored or even opened; every receipt that would be stored is emitted."""
    generated = emulator.produce("SmsReport", 4)
    config = make_config(emulator, tmp_path, {"r": {"type": "file", "path": str(tmp_path / "r.jsonl")}})
    seen: list[Receipt] = []
    report: BackfillReport = run_backfill(
        config,
        [send_of(item.send_record) for item in generated if item.send_record is not None],
        BackfillOptions(dry_run=True),
        environ={},
        emit=seen.append,
    )
    assert report.would_store == 4
    assert report.stored == 0
    assert len(seen) == 4
    assert not (tmp_path / "r.jsonl").exists()
