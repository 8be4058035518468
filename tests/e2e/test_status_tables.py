"""The status and opt-out tables after a real run: MNS (daemon and emulator), HTTP push and backfill into SQLite.

One seeded scenario, each message with the row it dictates: delivered, one failure of each class,
duplicated and out-of-order reports arriving by two paths, a send with no report (pending, then unknown
after ``mns-consumer status sweep``), a send only backfill recovers, and an opt-out reply.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mns_consumer.emulator import Emulator
from mns_consumer.emulator.clock import BEIJING, format_beijing
from mns_consumer.emulator.push_client import push_receipts
from mns_consumer.emulator.samples import encode_body
from mns_consumer.emulator.send_log import SEND_STATUS_DELIVERED, SEND_STATUS_WAITING, SendRecord
from mns_consumer.exit_codes import EXIT_OK
from tests.e2e.daemon_harness import DaemonFactory, clean_env, daemon_config, queue_total, wait_until, write_config
from tests.support.status_reports import all_rows

QUEUES = {"SmsReport": "Alicom-Queue-s1-SmsReport", "SmsUp": "Alicom-Queue-s1-SmsUp"}
SECRET = "e2e-Status-Secret-9c1f"
SENT = time.time() - 3600
"""When every message of the scenario was sent (an hour ago, so backfill's day is today or yesterday)."""

# phone -> (code or None for delivered, seconds after sending it was reported, path)
MNS_REPORTS = {
    "13800000001": ("DELIVERED", 5),
    "13800000002": ("MK:0001", 40),
    "13800000003": ("MK:0008", 40),
    "13800000004": ("DB:0141", 40),
    "13800000005": ("IC:0015", 40),
}
PUSH_REPORTS = {
    "13800000006": ("REJECTD", 30),
    "13800000007": ("EXPIRED", 90),
}
OUT_OF_ORDER = "13800000008"
"""Delivered at +30 s by push (twice), failed at +20 s by MNS: the later report decides, whatever came first."""
NO_REPORT = "13800000009"
BACKFILLED = "13800000010"
OPT_OUT = "13700000001"

EXPECTED = {
    "13800000001": ("delivered", "DELIVERED", "delivered", 1),
    "13800000002": ("failed", "MK:0001", "invalid_number", 1),
    "13800000003": ("failed", "MK:0008", "powered_off", 1),
    "13800000004": ("failed", "DB:0141", "blocked", 1),
    "13800000005": ("failed", "IC:0015", "carrier_failure", 1),
    "13800000006": ("failed", "REJECTD", "content_rejected", 1),
    "13800000007": ("failed", "EXPIRED", "expired", 1),
    OUT_OF_ORDER: ("delivered", "DELIVERED", "delivered", 2),
    NO_REPORT: ("pending", None, None, 1),
    BACKFILLED: ("delivered", "DELIVERED", "delivered", 1),
}
"""phone -> (state, error_code, outcome_class, receipts_seen) before the sweep."""


def _biz_id(phone: str) -> str:
    return f"9000{phone[-6:]}00000000^0"


def _report(phone: str, code: str, seconds: int) -> dict[str, Any]:
    return {
        "phone_number": phone,
        "send_time": format_beijing(SENT),
        "report_time": format_beijing(SENT + seconds),
        "success": code == "DELIVERED",
        "err_code": code,
        "err_msg": "用户接收成功" if code == "DELIVERED" else "发送失败",
        "sms_size": "1",
        "biz_id": _biz_id(phone),
        "out_id": f"order-{phone}",
    }


def _run(command: str, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mns_consumer", *command.split(), "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        check=False,
    )


def _send_record(phone: str, status: int) -> SendRecord:
    delivered = status == SEND_STATUS_DELIVERED
    return SendRecord(
        phone_number=phone,
        biz_id=_biz_id(phone),
        out_id=f"order-{phone}",
        template_code="SMS_123456789",
        content="【阿里云通信】您的验证码为123456",
        send_time=float(int(SENT)),
        receive_time=float(int(SENT)) + 8 if delivered else None,
        send_status=status,
        err_code="DELIVERED" if delivered else None,
    )


def _status(engine: sa.Engine) -> dict[str, tuple[Any, ...]]:
    return {
        row["phone_number"]: (row["state"], row["error_code"], row["outcome_class"], row["receipts_seen"])
        for row in all_rows(engine, "sms_receipts_status")
    }


@pytest.mark.timeout(180)
def test_status_and_opt_out_tables_show_what_mns_push_and_backfill_reported(
    make_emulator: Callable[..., Emulator], daemons: DaemonFactory, tmp_path: Path
) -> None:
    """Each message's row is the one its reports dictate; the sweep turns the unanswered send unknown."""
    emulator = make_emulator(queues=dict(QUEUES))
    database = tmp_path / "receipts.db"
    config = daemon_config(
        emulator, {"db": {"type": "database", "url": f"sqlite:///{database}"}}, tmp_path / "dead-letter.jsonl"
    )
    config["push"] = {
        "listen": "127.0.0.1:0",
        "spool_path": str(tmp_path / "state" / "spool.db"),
        "routes": [{"path": "/alicom/SmsReport", "secret": SECRET, "message_type": "SmsReport", "sinks": ["db"]}],
    }
    config_path = write_config(tmp_path / "config.yaml", config)

    # Given reports through MNS (one of them the out-of-order failure), an opt-out and an ordinary reply
    for phone, (code, seconds) in MNS_REPORTS.items():
        emulator.send_body(QUEUES["SmsReport"], encode_body(_report(phone, code, seconds)))
    emulator.send_body(QUEUES["SmsReport"], encode_body(_report(OUT_OF_ORDER, "UNDELIV", 20)))
    for phone, content in ((OPT_OUT, "TD"), ("13700000002", "好的")):
        reply = {
            "phone_number": phone,
            "content": content,
            "send_time": format_beijing(SENT + 600),
            "dest_code": "8341",
            "sequence_id": 1234567890,
            "sign_name": "阿里云通信",
        }
        emulator.send_body(QUEUES["SmsUp"], encode_body(reply))
    # And the send log QuerySendDetails answers from: one send never reported, one only it knows delivered
    emulator.send_log.add(_send_record(NO_REPORT, SEND_STATUS_WAITING))
    emulator.send_log.add(_send_record(BACKFILLED, SEND_STATUS_DELIVERED))

    # When the daemon drains MNS and takes the pushes (the delivered one twice)
    daemon = daemons.start(config)
    url = f"{daemon.push_url('/alicom/SmsReport')}/{SECRET}"
    pushed = [_report(phone, code, seconds) for phone, (code, seconds) in PUSH_REPORTS.items()]
    pushed += [_report(OUT_OF_ORDER, "DELIVERED", 30)] * 2
    assert push_receipts(url, pushed, message_type="SmsReport", retry_delays_seconds=()).accepted_receipts == 4
    engine = sa.create_engine(f"sqlite:///{database}", poolclass=sa.pool.NullPool)
    wait_until(lambda: queue_total(emulator) == 0, "the queues drained", diagnose=daemon.describe)
    wait_until(lambda: len(_status(engine)) == 8, "the pushes stored", diagnose=daemon.describe)
    assert daemon.stop() == 0
    # And backfill queries the two sends MNS never brought, keeping the pending one
    sends = tmp_path / "sends.csv"
    with sends.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["phone_number", "send_date", "biz_id"])
        day = datetime.fromtimestamp(SENT, BEIJING).strftime("%Y-%m-%d")
        writer.writerows([[phone, day, _biz_id(phone)] for phone in (NO_REPORT, BACKFILLED)])
    for _ in range(2):  # the second run stores nothing new and counts nothing twice
        result = _run("backfill", config_path, "--sends", str(sends), "--include-pending")
        assert result.returncode == EXIT_OK, result.stderr

    # Then every message has the row its reports dictate
    assert _status(engine) == EXPECTED
    rows = {row["phone_number"]: row for row in all_rows(engine, "sms_receipts_status")}
    assert rows[OUT_OF_ORDER]["out_id"] == f"order-{OUT_OF_ORDER}"
    # And the opt-out reply (only it) is in the opt-out table
    opt_outs = all_rows(engine, "sms_receipts_opt_outs")
    assert [(row["phone_number"], row["sign_name"], row["dest_code"], row["replies"]) for row in opt_outs] == [
        (OPT_OUT, "阿里云通信", "8341", 1)
    ]

    # When the sweep runs with the threshold moved to now (as 72 hours later)
    swept = _run("status sweep", config_path, "--older-than-hours", "0", "--json")
    assert swept.returncode == EXIT_OK, swept.stderr
    assert json.loads(swept.stdout.splitlines()[-1])["swept"] == [
        {"sink": "db", "table": "sms_receipts_status", "older_than_hours": 0.0, "swept": 1}
    ]

    # Then only the unanswered send is unknown, and everything else is as it was
    assert _status(engine) == {**EXPECTED, NO_REPORT: ("unknown", None, None, 1)}


def test_status_sweep_names_a_sink_without_a_status_table_and_exits_2(tmp_path: Path) -> None:
    """--sink of a file sink, or of a database sink with status_table: false, is a usage error."""
    config = {
        "sinks": {
            "archive": {"type": "file", "path": str(tmp_path / "out.jsonl")},
            "plain": {"type": "database", "url": f"sqlite:///{tmp_path / 'r.db'}", "status_table": False},
        },
        "dead_letter": {"type": "file", "path": str(tmp_path / "dead.jsonl")},
    }
    path = write_config(tmp_path / "config.yaml", config)
    for name in ("archive", "plain", "missing"):
        result = _run("status sweep", path, "--sink", name)
        assert result.returncode == 2, result.stderr
        assert f"--sink: sink {name!r} is not a database sink with a status table" in result.stderr
    result = _run("status sweep", path)
    assert (result.returncode, result.stdout.strip()) == (EXIT_OK, "no database sink has a status table")
