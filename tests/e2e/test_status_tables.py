"""The status and opt-out tables, /metrics and reconcile after a real run: MNS, HTTP push and backfill into
SQLite, PostgreSQL and MariaDB, with two daemons writing the same messages at once.

One seeded scenario, each message with the row it dictates: delivered, one failure of each class,
duplicated and out-of-order reports arriving by two paths, a send with no report (pending, then unknown
after ``mns-consumer status sweep``), a lost receipt that only backfill recovers, and an opt-out reply.
Two daemon processes consume the same queues and each takes every push, so both write the same status
rows concurrently; the rows must still be exactly the seed's. The scenario runs once per backend (a
module-scoped fixture) and each test checks one thing it left behind.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mns_consumer.emulator import Emulator, EmulatorSettings
from mns_consumer.emulator.clock import BEIJING, format_beijing
from mns_consumer.emulator.push_client import push_receipts
from mns_consumer.emulator.samples import encode_body
from mns_consumer.emulator.send_log import (
    SEND_STATUS_DELIVERED,
    SEND_STATUS_FAILED,
    SEND_STATUS_WAITING,
    SendRecord,
)
from mns_consumer.exit_codes import EXIT_FAILURE, EXIT_OK
from mns_consumer.outcomes import classify_code
from tests.e2e.daemon_harness import DaemonFactory, clean_env, daemon_config, queue_total, wait_until, write_config
from tests.e2e.test_metrics_and_health import scrape
from tests.support.sink_env_database import make_env
from tests.support.status_reports import all_rows

QUEUES = {"SmsReport": "Alicom-Queue-s1-SmsReport", "SmsUp": "Alicom-Queue-s1-SmsUp"}
SECRET = "e2e-Status-Secret-9c1f"
SENT = time.time() - 3600
"""When every message of the scenario was sent (an hour ago, so backfill's day is today or yesterday)."""

# phone -> (code, seconds after sending it was reported)
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
"""Delivered at +30 s by push (twice, to each daemon), failed at +20 s by MNS: the later report decides."""
NO_REPORT = "13800000009"
LOST = "13800000010"
"""Delivered, but its receipt never arrived: reconcile shows it missing and backfill recovers it."""
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
    LOST: ("delivered", "DELIVERED", "delivered", 1),
}
"""phone -> (state, error_code, outcome_class, receipts_seen) after backfill, before the sweep."""

DAEMONS = 2


@dataclass(frozen=True)
class Scenario:
    """What one run of the scenario left behind, read at each step."""

    status: dict[str, tuple[Any, ...]]
    out_ids: dict[str, Any]
    opt_outs: list[tuple[Any, ...]]
    deliveries_by_class: Counter[str]
    reconcile_before: tuple[int, dict[str, Any]]
    reconcile_after: tuple[int, dict[str, Any]]
    swept: list[dict[str, Any]]
    status_after_sweep: dict[str, tuple[Any, ...]]
    status_table: str


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


def _send_record(phone: str, code: str | None) -> SendRecord:
    """The send as Alibaba's log knows it: its final code, or waiting (None)."""
    status = (
        SEND_STATUS_WAITING if code is None else SEND_STATUS_DELIVERED if code == "DELIVERED" else SEND_STATUS_FAILED
    )
    return SendRecord(
        phone_number=phone,
        biz_id=_biz_id(phone),
        out_id=f"order-{phone}",
        template_code="SMS_123456789",
        content="【阿里云通信】您的验证码为123456",
        send_time=float(int(SENT)),
        receive_time=None if code is None else float(int(SENT)) + 8,
        send_status=status,
        err_code=code,
    )


def _status(engine: sa.Engine, table: str) -> dict[str, tuple[Any, ...]]:
    return {
        row["phone_number"]: (row["state"], row["error_code"], row["outcome_class"], row["receipts_seen"])
        for row in all_rows(engine, table)
    }


def _deliveries_by_class(base: str) -> Counter[str]:
    counted: Counter[str] = Counter()
    for (name, labels), value in scrape(base).items():
        if name == "mns_consumer_deliveries_total":
            counted[dict(labels)["class"]] += int(value)
    return counted


def _reconcile(config: Path, day: str) -> tuple[int, dict[str, Any]]:
    result = _run("reconcile", config, "--date", day, "--json")
    return result.returncode, json.loads(result.stdout)


def _push_at_once(urls: list[str], reports: list[dict[str, Any]]) -> None:
    """Each report pushed to every daemon, one request per report, all daemons at the same moment."""
    barrier = threading.Barrier(len(urls))
    accepted: list[int] = []

    def push(url: str) -> None:
        barrier.wait(timeout=30)
        for report in reports:
            outcome = push_receipts(url, [report], message_type="SmsReport", retry_delays_seconds=())
            accepted.append(outcome.accepted_receipts)

    threads = [threading.Thread(target=push, args=(url,)) for url in urls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert accepted == [1] * len(urls) * len(reports)


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def scenario(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """The seeded scenario, run once into one backend (skipped, or failed when required, if its server is absent)."""
    tmp_path = tmp_path_factory.mktemp(f"status-{request.param}")
    env = make_env(request.param, tmp_path)
    emulator = Emulator(EmulatorSettings(queues=dict(QUEUES))).start()
    daemons = DaemonFactory(tmp_path)
    try:
        yield _run_scenario(emulator, daemons, env.url, env.table, env.admin, tmp_path)
    finally:
        daemons.kill_all()
        emulator.stop()
        env.close()


def _run_scenario(
    emulator: Emulator,
    daemons: DaemonFactory,
    url: str,
    table: str,
    engine: sa.Engine,
    tmp_path: Path,
) -> Scenario:
    status_table, opt_out_table = f"{table}_status", f"{table}_opt_outs"
    sink = {"type": "database", "url": url, "table": table, "connect_timeout_seconds": 2}
    configs = []
    for n in range(DAEMONS):
        config = daemon_config(emulator, {"db": sink}, tmp_path / f"dead-letter-{n}.jsonl")
        config["push"] = {
            "listen": "127.0.0.1:0",
            "spool_path": str(tmp_path / f"state-{n}" / "spool.db"),
            "routes": [{"path": "/alicom/SmsReport", "secret": SECRET, "message_type": "SmsReport", "sinks": ["db"]}],
        }
        configs.append(write_config(tmp_path / f"config-{n}.yaml", config))
    # Alibaba's send log holds every send of the scenario with its final code (QuerySendStatistics counts it)
    finals: dict[str, str | None] = {phone: code for phone, (code, _) in {**MNS_REPORTS, **PUSH_REPORTS}.items()}
    for phone, code in {**finals, OUT_OF_ORDER: "DELIVERED", NO_REPORT: None, LOST: "DELIVERED"}.items():
        emulator.send_log.add(_send_record(phone, code))
    day = datetime.fromtimestamp(SENT, BEIJING).strftime("%Y%m%d")

    # Given two daemons on the same queues and database
    running = [daemons.start(path) for path in configs]

    def describe() -> str:
        return "\n".join(daemon.describe() for daemon in running)

    # When reports arrive through MNS (one of them the out-of-order failure), with an opt-out and a reply
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
    # And the same pushes reach both daemons at once (the out-of-order delivery twice)
    pushed = [_report(phone, code, seconds) for phone, (code, seconds) in PUSH_REPORTS.items()]
    pushed += [_report(OUT_OF_ORDER, "DELIVERED", 30)] * 2
    _push_at_once([f"{daemon.push_url('/alicom/SmsReport')}/{SECRET}" for daemon in running], pushed)
    wait_until(lambda: queue_total(emulator) == 0, "the queues drained", diagnose=describe)
    wait_until(lambda: len(_status(engine, status_table)) == 8, "the reports stored", diagnose=describe)
    # Each daemon counts what it stored: MNS reports once in all, each push once per daemon it reached
    reports = len(MNS_REPORTS) + 1 + DAEMONS * (len(PUSH_REPORTS) + 1)
    bases = [daemon.http_url("") for daemon in running]

    def deliveries() -> Counter[str]:
        return sum((_deliveries_by_class(base) for base in bases), Counter())

    wait_until(lambda: deliveries().total() == reports, "the deliveries counted", diagnose=describe)
    counted = deliveries()
    assert [daemon.stop() for daemon in running] == [EXIT_OK] * DAEMONS

    # And reconcile runs before backfill queries the two sends nothing reported (keeping the pending one)
    before = _reconcile(configs[0], day)
    sends = tmp_path / "sends.csv"
    with sends.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["phone_number", "send_date", "biz_id"])
        writer.writerows([[phone, day, _biz_id(phone)] for phone in (NO_REPORT, LOST)])
    for _ in range(2):  # the second run stores nothing new and counts nothing twice
        result = _run("backfill", configs[0], "--sends", str(sends), "--include-pending")
        assert result.returncode == EXIT_OK, result.stderr
    after = _reconcile(configs[0], day)
    status = _status(engine, status_table)
    out_ids = {row["phone_number"]: row["out_id"] for row in all_rows(engine, status_table)}
    opt_outs = [
        (row["phone_number"], row["sign_name"], row["dest_code"], row["replies"])
        for row in all_rows(engine, opt_out_table)
    ]

    # And the sweep runs with the threshold moved to now (as 72 hours later)
    swept = _run("status sweep", configs[0], "--older-than-hours", "0", "--json")
    assert swept.returncode == EXIT_OK, swept.stderr
    return Scenario(
        status=status,
        out_ids=out_ids,
        opt_outs=opt_outs,
        deliveries_by_class=counted,
        reconcile_before=before,
        reconcile_after=after,
        swept=json.loads(swept.stdout.splitlines()[-1])["swept"],
        status_after_sweep=_status(engine, status_table),
        status_table=status_table,
    )


@pytest.mark.timeout(300)
def test_status_table_shows_the_row_each_message_s_reports_dictate(scenario: Scenario) -> None:
    """Whatever path, order, duplication and daemon brought them, each message has the seed's row."""
    assert scenario.status == EXPECTED
    assert scenario.out_ids == {phone: f"order-{phone}" for phone in EXPECTED}


@pytest.mark.timeout(300)
def test_opt_out_table_holds_the_opt_out_reply_and_only_it(scenario: Scenario) -> None:
    """The TD reply is one opt-out row; the ordinary reply is not."""
    assert scenario.opt_outs == [(OPT_OUT, "阿里云通信", "8341", 1)]


@pytest.mark.timeout(300)
def test_metrics_count_each_report_under_the_class_its_code_dictates(scenario: Scenario) -> None:
    """/metrics of both daemons add up to the seed's reports by class (each push counted by each daemon)."""
    mns = [code for code, _ in MNS_REPORTS.values()] + ["UNDELIV"]
    pushes = [code for code, _ in PUSH_REPORTS.values()] + ["DELIVERED"]
    expected = Counter(classify_code(code) for code in mns + pushes * DAEMONS)
    assert scenario.deliveries_by_class == expected
    assert expected["delivered"] == 1 + DAEMONS


@pytest.mark.timeout(300)
def test_reconcile_shows_the_lost_receipt_and_nothing_missing_after_backfill(scenario: Scenario) -> None:
    """Alibaba's counts against the table: one delivered receipt missing, none once backfill recovered it."""
    code, report = scenario.reconcile_before
    assert code == EXIT_FAILURE, report
    assert report["alibaba"] == {"total": 10, "responded_success": 3, "responded_fail": 6, "no_response": 1}
    gaps = {line["status"]: line for line in report["sinks"][0]["gaps"]}
    assert gaps["responded_success"] == {
        "status": "responded_success",
        "alibaba": 3,
        "stored": 2,
        "missing": 1,
        "extra": 0,
    }
    # The out-of-order message's failure is a receipt too: one failed receipt beyond Alibaba's count.
    assert (gaps["responded_fail"]["stored"], gaps["responded_fail"]["missing"]) == (7, 0)
    assert report["missing"] == 1
    code, report = scenario.reconcile_after
    assert code == EXIT_OK, report
    assert report["missing"] == 0
    assert {line["status"]: line["stored"] for line in report["sinks"][0]["gaps"]}["responded_success"] == 3


@pytest.mark.timeout(300)
def test_sweep_turns_only_the_unanswered_send_unknown(scenario: Scenario) -> None:
    """Past the threshold the pending row is unknown; every other row is as it was."""
    assert scenario.swept == [{"sink": "db", "table": scenario.status_table, "older_than_hours": 0.0, "swept": 1}]
    assert scenario.status_after_sweep == {**EXPECTED, NO_REPORT: ("unknown", None, None, 1)}


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
