"""``mns-consumer backfill`` as a subprocess: after the daemon drained MNS, it recovers what MNS never got."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from mns_consumer.emulator import Emulator
from mns_consumer.emulator.clock import BEIJING
from mns_consumer.exit_codes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from tests.e2e.daemon_harness import (
    DaemonFactory,
    drain_lossy_producer,
    expected_receipts,
    one_shot_config,
    run_command,
    table_keys,
    write_sends,
)

QUEUES = {"SmsReport": "Alicom-Queue-i1-SmsReport"}


def backfill(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the command to its end."""
    return run_command("backfill", "--config", str(config), *args)


def test_backfill_recovers_what_a_lose_fault_kept_from_the_daemon_and_reports_it(
    make_emulator: Callable[..., Emulator], daemons: DaemonFactory, tmp_path: Path
) -> None:
    """The daemon stores what MNS had; the command stores the rest, once each, and says so (exit 0)."""
    # Given: a producer that loses a third of the receipts, and a daemon that drained the queue into SQLite.
    database = tmp_path / "receipts.db"
    sink = {"type": "database", "url": f"sqlite:///{database}"}
    emulator, generated, config_path = drain_lossy_producer(make_emulator, daemons, {"db": sink}, tmp_path, seed=5)
    engine = sa.create_engine(f"sqlite:///{database}", poolclass=sa.pool.NullPool)
    from_mns = len(table_keys(engine, "sms_receipts"))
    assert 0 < from_mns < 45
    sends = tmp_path / "sends.csv"
    assert len(write_sends(emulator.send_log.snapshot(), sends)) == 45
    metrics = tmp_path / "textfile" / "backfill.prom"

    # When: the send log is backfilled.
    result = backfill(config_path, "--sends", str(sends), "--json", "--metrics-file", str(metrics))

    # Then: each send's receipt is stored exactly once, and the summary and metrics say what happened.
    assert result.returncode == EXIT_OK, result.stderr
    summary = json.loads(result.stdout)
    assert summary["sends"] == summary["queried"] == summary["found"] == 45
    assert summary["stored"] == 45 - summary["pending"]
    assert summary["errors"] == 0
    # The SQLite sink says which keys it held: what the daemon stored from MNS, the rest recovered now.
    assert summary["already_stored"] == from_mns
    assert summary["newly_stored"] == summary["stored"] - from_mns > 0
    keys = table_keys(engine, "sms_receipts")
    assert sorted(keys) == sorted(expected_receipts(emulator, generated))
    text = metrics.read_text(encoding="utf-8")
    assert 'mns_consumer_backfill_queries_total{message_type="SmsReport",queue="backfill"} 45.0' in text
    assert 'mns_consumer_backfill_last_run_success{message_type="SmsReport",queue="backfill"} 1.0' in text
    secret = emulator.settings.access_key_secret
    assert secret not in result.stdout + result.stderr + text

    # And: a rerun stores nothing new, and the textfile's counters keep counting across runs.
    again = backfill(config_path, "--sends", str(sends), "--metrics-file", str(metrics))
    assert again.returncode == EXIT_OK, again.stderr
    assert again.stdout.startswith("backfill: 45 send(s), 45 queried")
    assert f"; {45 - summary['pending']} already stored, 0 newly stored (recovered), " in again.stdout
    assert "0 failed in " in again.stdout
    assert len(table_keys(engine, "sms_receipts")) == 45
    assert 'mns_consumer_backfill_queries_total{message_type="SmsReport",queue="backfill"} 90.0' in metrics.read_text(
        encoding="utf-8"
    )
    engine.dispose()


def test_a_bad_sends_file_exits_2_naming_the_line_and_nothing_is_queried(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """A malformed line is a usage error with its line number; no query is made."""
    emulator = make_emulator(queues=QUEUES)
    config = one_shot_config(emulator, tmp_path, {"f": {"type": "file", "path": str(tmp_path / "r.jsonl")}})
    sends = tmp_path / "sends.csv"
    sends.write_text("phone_number,send_date,biz_id\n13900001111,2024-02-30,812^0\n", encoding="utf-8")
    result = backfill(config, "--sends", str(sends))
    assert result.returncode == EXIT_USAGE
    assert f"{sends}:2: send_date: '2024-02-30' is not a date (write YYYY-MM-DD or YYYYMMDD)" in result.stderr
    assert not (tmp_path / "r.jsonl").exists()


def test_one_send_too_old_for_the_window_exits_1_with_a_clear_message(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """--phone/--date/--biz-id for a day beyond 30 days: exit 1, the reason on stderr, the summary on stdout."""
    emulator = make_emulator(queues=QUEUES)
    config = one_shot_config(emulator, tmp_path, {"f": {"type": "file", "path": str(tmp_path / "r.jsonl")}})
    result = backfill(config, "--phone", "13900001111", "--date", "2020-01-01", "--biz-id", "812^0")
    assert result.returncode == EXIT_FAILURE
    assert "command line (139****1111, 2020-01-01, BizId 812^0): InvalidSendDate: SendDate 2020-01-01 is" in (
        result.stderr
    )
    assert "QuerySendDetails keeps only the last 30 days" in result.stderr
    assert ", 1 failed (1 send(s) not queried) in " in result.stdout
    assert "13900001111" not in result.stdout + result.stderr


def test_a_send_given_the_day_before_its_beijing_day_finds_nothing_and_says_why(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """A day one behind Alibaba's (UTC's, before 08:00 Beijing) matches nothing: a warning names Beijing time."""
    # Given: one delivered send, and a SQLite sink that does not hold its receipt yet.
    emulator = make_emulator(queues=QUEUES)
    emulator.produce("SmsReport", 1)
    (record,) = emulator.send_log.snapshot()
    assert record.send_status in (2, 3)  # a report MNS would deliver: failed or delivered
    beijing_day = datetime.fromtimestamp(record.send_time, BEIJING).date()
    day_before = beijing_day - timedelta(days=1)
    database = tmp_path / "receipts.db"
    config = one_shot_config(emulator, tmp_path, {"db": {"type": "database", "url": f"sqlite:///{database}"}})
    send = ("--phone", record.phone_number, "--biz-id", record.biz_id)

    # When: it is backfilled with the day before.
    wrong = backfill(config, *send, "--date", day_before.isoformat())

    # Then: nothing found, exit 0, and a warning that Alibaba's day is Beijing's with the day to try.
    assert wrong.returncode == EXIT_OK, wrong.stderr
    assert "; 0 record(s) found (" in wrong.stdout
    assert "0 already stored, 0 newly stored (recovered), 0 still pending, 0 failed" in wrong.stdout
    masked = f"{record.phone_number[:3]}****{record.phone_number[-4:]}"
    assert f"warning: 1 send(s) matched no record on the day given: command line ({masked}, {day_before})." in (
        wrong.stderr
    )
    assert "under its day in Beijing time (UTC+8)" in wrong.stderr
    assert f"--date {beijing_day}" in wrong.stderr
    assert record.phone_number not in wrong.stdout + wrong.stderr

    # When: it is backfilled with its Beijing day, twice.
    right = backfill(config, *send, "--date", beijing_day.isoformat())
    again = backfill(config, *send, "--date", beijing_day.isoformat())

    # Then: the first run recovers it, the second finds it stored already, and neither warns.
    assert right.returncode == again.returncode == EXIT_OK, right.stderr + again.stderr
    assert "; 1 record(s) found (" in right.stdout
    assert " 0 pending); 0 already stored, 1 newly stored (recovered), 0 still pending, 0 failed" in right.stdout
    assert "; 1 already stored, 0 newly stored (recovered), 0 still pending, 0 failed" in again.stdout
    assert "warning" not in right.stderr + again.stderr


def test_a_send_dated_today_in_beijing_that_matches_nothing_is_not_blamed_on_the_date(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """Today's Beijing day may simply not be reported yet: no date warning; a file sink cannot tell new from old."""
    emulator = make_emulator(queues=QUEUES)
    today = datetime.now(BEIJING).date()
    config = one_shot_config(emulator, tmp_path, {"f": {"type": "file", "path": str(tmp_path / "r.jsonl")}})
    result = backfill(config, "--phone", "13900001111", "--date", today.isoformat(), "--biz-id", "812^0")
    assert result.returncode == EXIT_OK, result.stderr
    assert "; 0 record(s) found (" in result.stdout
    assert "0 stored (new or already present: a sink cannot tell which), 0 still pending, 0 failed" in result.stdout
    assert "warning" not in result.stderr
