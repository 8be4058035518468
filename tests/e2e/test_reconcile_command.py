"""``mns-consumer reconcile`` as a subprocess: Alibaba's daily counts against the database the daemon filled."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mns_consumer.emulator import Emulator
from mns_consumer.emulator.send_log import SEND_STATUS_DELIVERED, SEND_STATUS_FAILED
from mns_consumer.exit_codes import EXIT_FAILURE, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from tests.e2e.daemon_harness import (
    DaemonFactory,
    drain_lossy_producer,
    one_shot_config,
    postgres_sink,
    run_command,
    sqlite_sink,
    table_keys,
    write_sends,
)
from tests.support.sink_env_database import ServerEnv

QUEUES = {"SmsReport": "Alicom-Queue-i1-SmsReport"}
RECEIPTS = 45


def reconcile(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the command to its end."""
    return run_command("reconcile", "--config", str(config), *args)


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[dict[str, Any], sa.Engine, str]]:
    """The sink configuration, an engine on its server and its table: SQLite, or a server when it runs."""
    if request.param == "sqlite":
        sink, engine = sqlite_sink(tmp_path)
        yield sink, engine, "sms_receipts"
        engine.dispose()
        return
    env = ServerEnv(request.param)
    try:
        yield (
            postgres_sink(env),
            env.admin,
            env.table,
        )
    finally:
        env.close()


def test_reconcile_shows_the_exact_gap_lists_the_sends_and_backfill_closes_it(
    make_emulator: Callable[..., Emulator],
    daemons: DaemonFactory,
    database: tuple[dict[str, Any], sa.Engine, str],
    tmp_path: Path,
) -> None:
    """Lost receipts show as missing per status, are listed from the send log, and --backfill recovers them."""
    # Given: a producer that loses about a third of the receipts, and a daemon that drained the queue.
    sink, engine, table = database
    emulator, generated, config_path = drain_lossy_producer(
        make_emulator, daemons, {"db": sink}, tmp_path, seed=11, receipts=RECEIPTS
    )
    records = [item.send_record for item in generated if item.send_record is not None]
    # Sends are a few minutes old: near Beijing midnight they may straddle two days, so take the fuller one.
    day: date = Counter(record.send_date for record in records).most_common(1)[0][0]
    of_day = [record for record in records if record.send_date == day]
    stored = {(row.biz_id, row.phone_number) for row in _rows(engine, table)}
    lost = [record for record in of_day if (record.biz_id, record.phone_number) not in stored]
    assert 0 < len(lost) < len(of_day)

    # When: the day is reconciled.
    result = reconcile(config_path, "--date", day.strftime("%Y%m%d"), "--json")

    # Then: Alibaba's counts are the send log's, and the gap is exactly the lost receipts, per status.
    assert result.returncode == EXIT_FAILURE, result.stderr
    report = json.loads(result.stdout)
    delivered = sum(1 for r in of_day if r.send_status == SEND_STATUS_DELIVERED)
    failed = sum(1 for r in of_day if r.send_status == SEND_STATUS_FAILED)
    assert report["alibaba"] == {
        "total": len(of_day),
        "responded_success": delivered,
        "responded_fail": failed,
        "no_response": 0,
    }
    lost_delivered = sum(1 for r in lost if r.send_status == SEND_STATUS_DELIVERED)
    gaps = {line["status"]: line for line in report["sinks"][0]["gaps"]}
    assert gaps["responded_success"] == {
        "status": "responded_success",
        "alibaba": delivered,
        "stored": delivered - lost_delivered,
        "missing": lost_delivered,
        "extra": 0,
    }
    assert gaps["responded_fail"]["missing"] == len(lost) - lost_delivered
    assert report["missing"] == len(lost)
    assert report["sinks"][0]["without_final_receipt"] == []
    assert report["sends_of_day"] is None
    # The sends are minutes old: their day is (nearly always) today in Beijing, which is not over yet.
    assert report["day_over"] is (day < emulator.clock.now_beijing().date())

    # When: the send log is given, then with --backfill.
    sends = tmp_path / "sends.csv"
    by_line = write_sends(records, sends)
    listed = reconcile(config_path, "--date", day.isoformat(), "--sends", str(sends))
    recovered = reconcile(config_path, "--date", day.isoformat(), "--sends", str(sends), "--backfill", "--json")

    # Then: exactly the lost sends of the day are listed (the text names them by file line) ...
    assert listed.returncode == EXIT_FAILURE, listed.stderr
    lost_lines = sorted(where for where, record in by_line.items() if record in lost)
    assert sorted(line.split(": ")[0].strip() for line in listed.stdout.splitlines() if f"{sends}:" in line) == (
        lost_lines
    )
    assert f"{len(lost)} of {len(of_day)} send(s) of the day without a final receipt" in listed.stdout
    assert f"GAP: {len(lost)} responded report(s) missing" in listed.stdout
    # ... and the backfill recovers exactly those, so the sink holds Alibaba's counts.
    assert recovered.returncode == EXIT_OK, recovered.stderr + recovered.stdout
    after = json.loads(recovered.stdout)
    before = after["before_backfill"][0]
    assert sorted(send["where"] for send in before["without_final_receipt"]) == lost_lines
    assert after["backfill"]["sends"] == len(lost)
    assert after["backfill"]["newly_stored"] == len(lost)
    assert after["missing"] == 0
    assert after["sinks"][0]["without_final_receipt"] == []
    assert {line["status"]: line["missing"] for line in after["sinks"][0]["gaps"]}["responded_success"] == 0

    # And: a second reconcile, without a send log, exits 0 and says so.
    again = reconcile(config_path, "--date", day.strftime("%Y%m%d"))
    assert again.returncode == EXIT_OK, again.stderr
    assert again.stdout.splitlines()[-1] == f"reconcile {day.isoformat()}: nothing missing"
    assert emulator.settings.access_key_secret not in result.stdout + result.stderr + again.stdout


def test_a_configuration_without_a_database_sink_exits_2_and_says_why(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """Files cannot be counted: exit 2 naming the fix, before any call is made."""
    emulator = make_emulator(queues=QUEUES)
    config = one_shot_config(emulator, tmp_path, {"f": {"type": "file", "path": str(tmp_path / "r.jsonl")}})
    result = reconcile(config, "--date", "20240501")
    assert result.returncode == EXIT_USAGE
    assert "no database sink receives SmsReport receipts" in result.stderr
    assert "type: database" in result.stderr


def test_naming_a_file_sink_or_backfilling_without_a_send_log_exits_2(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """--sink must name a database sink, and --backfill needs --sends: both are usage errors that say so."""
    emulator = make_emulator(queues=QUEUES)
    sink, _ = sqlite_sink(tmp_path)
    sinks = {"db": sink, "f": {"type": "file", "path": str(tmp_path / "r.jsonl")}}
    config = one_shot_config(emulator, tmp_path, sinks)
    named = reconcile(config, "--date", "20240501", "--sink", "f")
    assert named.returncode == EXIT_USAGE
    assert "is not a database sink" in named.stderr
    unlisted = reconcile(config, "--date", "20240501", "--backfill")
    assert unlisted.returncode == EXIT_USAGE
    assert "needs the send log" in unlisted.stderr


def test_a_bad_date_is_a_usage_error(make_emulator: Callable[..., Emulator], tmp_path: Path) -> None:
    """--date takes one Beijing day; anything else exits 2 with what to write."""
    emulator = make_emulator(queues=QUEUES)
    sink, _ = sqlite_sink(tmp_path)
    config = one_shot_config(emulator, tmp_path, {"db": sink})
    result = reconcile(config, "--date", "2024-05-01..2024-05-02")
    assert result.returncode == EXIT_USAGE
    assert "is not one day" in result.stderr


def _rows(engine: sa.Engine, table: str) -> list[Any]:
    if not table_keys(engine, table):
        return []
    with engine.connect() as connection:
        return list(connection.execute(sa.text(f"SELECT biz_id, phone_number FROM {table}")))  # noqa: S608


def test_an_unreachable_database_exits_4_without_its_password(
    make_emulator: Callable[..., Emulator], postgres: ServerEnv, tmp_path: Path
) -> None:
    """A database that refuses connections is a run to repeat later (exit 4); the URL is shown masked."""
    emulator = make_emulator(queues=QUEUES)
    sink = postgres_sink(postgres)
    config = one_shot_config(emulator, tmp_path, {"db": sink})
    postgres.make_unavailable()
    result = reconcile(config, "--date", "20240501")
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    assert "cannot read postgresql+psycopg://" in result.stderr
    password = sa.engine.make_url(postgres.url).password
    assert not password or password not in result.stderr
