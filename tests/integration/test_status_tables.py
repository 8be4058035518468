"""The database sinks' status and opt-out tables, against real SQLite, PostgreSQL and MariaDB.

The status table must end the same whatever order and duplication the reports of a message arrive in,
count each distinct receipt once, and converge when several writers store the same reports at once.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from mns_consumer.errors import SinkUnavailable
from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.database import DatabaseSink, DatabaseSinkConfig
from mns_consumer.sinks.status_tables import fold, status_update
from tests.support.sink_env_database import DatabaseEnv, make_env
from tests.support.status_reports import (
    COMPARED_COLUMNS,
    SENT_AT,
    all_rows,
    make_opt_out,
    make_report,
    status_row,
)

BACKENDS = ["sqlite", "postgresql", "mariadb"]


@pytest.fixture(params=BACKENDS)
def env_sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[DatabaseEnv, DatabaseSink]]:
    """An opened sink with its status and opt-out tables, on each backend."""
    env = make_env(request.param, tmp_path)
    sink = env.make_sink()
    try:
        sink.open()
        yield env, sink
    finally:
        sink.close()
        env.close()


def _status_name(env: DatabaseEnv) -> str:
    return env.projection_tables()[0]


def _expected(reports: list[Receipt]) -> dict[str, Any]:
    """The row the ordering rule dictates: the Python fold of the distinct reports."""
    distinct = {report.dedupe_key: report for report in reports}
    (row,) = fold(status_update(report) for report in distinct.values())
    return row.as_row()  # type: ignore[no-any-return]


def _compared(row: dict[str, Any] | None) -> dict[str, Any]:
    assert row is not None
    return {column: row[column] for column in COMPARED_COLUMNS}


def test_status_row_follows_the_ordering_rule_whatever_the_arrival_order(env_sink: Any) -> None:
    """Out of order and duplicated reports leave the final state, its code and class, and a distinct receipts count."""
    env, sink = env_sink
    pending = make_report(1, "pending", None, None, source="query")
    delivered = make_report(1, "delivered", 30, "DELIVERED")
    failed = make_report(1, "failed", 50, "MK:0001", source="push")
    # Given the later failure first, then the pending record, then the earlier delivery and a duplicate
    for batch in ([failed, pending], [delivered, failed], [failed], [pending, pending]):
        assert sink.write(batch).accepted == {receipt.dedupe_key for receipt in batch}
    # Then the row is the later final report's, and counts three receipts
    row = status_row(env.admin, _status_name(env), failed.biz_id or "", failed.phone_number or "")
    assert row is not None
    assert (row["state"], row["error_code"], row["outcome_class"]) == ("failed", "MK:0001", "invalid_number")
    assert row["receipts_seen"] == 3
    assert row["out_id"] == "order-1"
    assert row["sent_at"] == SENT_AT
    assert row["first_report_at"] == SENT_AT + timedelta(seconds=30)
    assert row["last_report_at"] == SENT_AT + timedelta(seconds=50)
    assert _compared(row) == _compared(_expected([pending, delivered, failed]))


def test_a_tie_between_delivered_and_failed_at_one_time_goes_to_delivered(env_sink: Any) -> None:
    """Two final reports with the same report time: delivered wins, in either order."""
    env, sink = env_sink
    for message, order in ((2, ("failed", "delivered")), (3, ("delivered", "failed"))):
        for status in order:
            sink.write([make_report(message, status, 20, "DELIVERED" if status == "delivered" else "UNDELIV")])
        report = make_report(message, "delivered", 20, "DELIVERED")
        row = status_row(env.admin, _status_name(env), report.biz_id or "", report.phone_number or "")
        assert row is not None
        assert (row["state"], row["error_code"], row["receipts_seen"]) == ("delivered", "DELIVERED", 2)


def test_opt_out_replies_are_upserted_once_each_with_first_and_last_seen(env_sink: Any) -> None:
    """Two TD replies and a redelivery: one row, two replies, first and last reply times."""
    env, sink = env_sink
    first, later = make_opt_out(7, seconds=10), make_opt_out(7, seconds=90)
    no_sign = make_opt_out(8, sign_name=None, dest_code="99")
    sink.write([later, no_sign])
    sink.write([first, later])
    rows = sorted(all_rows(env.admin, env.projection_tables()[1]), key=lambda row: row["phone_number"])
    assert [(r["phone_number"], r["sign_name"], r["dest_code"], r["replies"]) for r in rows] == [
        ("13700000007", "阿里云通信", "1234", 2),
        ("13700000008", "", "99", 1),
    ]
    assert (rows[0]["first_seen_at"], rows[0]["last_seen_at"]) == (
        SENT_AT + timedelta(seconds=10),
        SENT_AT + timedelta(seconds=90),
    )


def test_sweep_makes_old_pending_rows_unknown_and_a_later_final_report_still_decides(env_sink: Any) -> None:
    """Pending past the threshold becomes unknown; a later pending record keeps it unknown; a final report wins."""
    env, sink = env_sink
    table = _status_name(env)
    old = make_report(4, "pending", None, None, source="query")
    recent = make_report(5, "pending", None, None, source="query", sent_at=SENT_AT + timedelta(hours=70))
    sink.write([old, recent])
    # When the sweep runs 73 hours after the first was sent, in batches of one row
    assert sink.sweep_unknown(72, batch_rows=1, now=SENT_AT + timedelta(hours=73)) == 1
    assert status_row(env.admin, table, old.biz_id or "", old.phone_number or "")["state"] == "unknown"  # type: ignore[index]
    assert status_row(env.admin, table, recent.biz_id or "", recent.phone_number or "")["state"] == "pending"  # type: ignore[index]
    # A later non-final record leaves it unknown
    sink.write([make_report(4, "pending", 3600, None, source="query")])
    assert status_row(env.admin, table, old.biz_id or "", old.phone_number or "")["state"] == "unknown"  # type: ignore[index]
    # A real report still decides it
    sink.write([make_report(4, "failed", 80 * 3600, "MK:0008")])
    row = status_row(env.admin, table, old.biz_id or "", old.phone_number or "")
    assert row is not None
    assert (row["state"], row["outcome_class"], row["receipts_seen"]) == ("failed", "powered_off", 3)
    assert sink.sweep_unknown(72, now=SENT_AT + timedelta(hours=200)) == 1  # only the recent one is left


def test_status_and_opt_out_tables_can_be_turned_off(tmp_path: Path) -> None:
    """status_table: false and opt_out_table: null create and write no tables; receipts are stored."""
    env = make_env("sqlite", tmp_path)
    sink = env.make_sink(status_table=False, opt_out_table=None)
    try:
        sink.open()
        assert sink.write([make_report(1, "delivered", 3, "DELIVERED"), make_opt_out(1)]).rejected == {}
        assert sink.sweep_unknown(72) == 0
        with env.admin.connect() as connection:
            assert sa.inspect(connection).get_table_names() == [env.table]
    finally:
        sink.close()
        env.close()


def test_named_status_tables_are_used(tmp_path: Path) -> None:
    """A name given in status_table and opt_out_table is the table written."""
    env = make_env("sqlite", tmp_path)
    sink = env.make_sink(status_table="message_status", opt_out_table="do_not_send")
    try:
        sink.open()
        sink.write([make_report(1, "delivered", 3, "DELIVERED"), make_opt_out(1)])
        assert [row["state"] for row in all_rows(env.admin, "message_status")] == ["delivered"]
        assert [row["phone_number"] for row in all_rows(env.admin, "do_not_send")] == ["13700000001"]
    finally:
        sink.close()
        env.close()


def test_missing_status_tables_with_create_table_false_are_named_with_their_statements(tmp_path: Path) -> None:
    """create_table: false and no status tables: a warning with the CREATE statements, and receipts still stored."""
    env = make_env("sqlite", tmp_path)
    env.make_sink(status_table=False, opt_out_table=False).open()
    sink = env.make_sink(create_table=False)
    try:
        with capture_logs() as logs:
            sink.open()
        missing = [entry for entry in logs if entry["event"] == "sink.database.table_missing"]
        assert [entry["table"] for entry in missing] == list(env.projection_tables())
        assert "CREATE TABLE sms_receipts_status" in missing[0]["fix"]
        assert missing[0]["setting"] == "sinks.db-sqlite.status_table"
        assert sink.write([make_report(1, "delivered", 3, "DELIVERED")]).rejected == {}
        assert env.stored_keys() == [make_report(1, "delivered", 3, "DELIVERED").dedupe_key]
    finally:
        sink.close()
        env.close()


def test_bad_status_table_name_is_a_config_error() -> None:
    """A status table name that is not a plain lower-case identifier is refused."""
    with pytest.raises(ValueError, match="status_table"):
        DatabaseSinkConfig(url="sqlite:////tmp/x.db", status_table="Status; DROP")


# -- property: any permutation, duplication and batching gives the same row ----------------------------

_STATUSES = ("delivered", "failed", "expired", "pending")
_CODES = ("DELIVERED", "MK:0001", "DB:0141", "IC:0015", "EXPIRED", None)
_report_specs = st.lists(
    st.tuples(st.sampled_from(_STATUSES), st.sampled_from((None, 10, 20, 20, 30)), st.sampled_from(_CODES)),
    min_size=1,
    max_size=6,
    unique=True,
)


def test_any_permutation_duplication_and_batching_of_reports_gives_the_same_row(tmp_path: Path) -> None:
    """Through the real SQLite sink: reports one by one in order, or shuffled, duplicated and batched, end equal."""
    env = make_env("sqlite", tmp_path)
    sink = env.make_sink()
    sink.open()
    table = _status_name(env)
    messages = itertools.count(1000)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(specs=_report_specs, data=st.data())
    def check(specs: list[tuple[str, int | None, str | None]], data: st.DataObject) -> None:
        in_order, shuffled = next(messages), next(messages)
        # Given one message's reports applied one by one in a canonical order
        for spec in sorted(specs, key=repr):
            sink.write([make_report(in_order, *spec)])
        # And the same reports to another message, duplicated, permuted and split into random batches
        arrivals = [*specs, *data.draw(st.lists(st.sampled_from(specs), max_size=6), label="duplicates")]
        arrivals = data.draw(st.permutations(arrivals), label="order")
        cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(arrivals) - 1))), label="cuts"))
        for start, end in itertools.pairwise([0, *cuts, len(arrivals)]):
            if start < end:
                sink.write([make_report(shuffled, *spec) for spec in arrivals[start:end]])
        # Then both rows are the same, and the one the rule dictates
        first, second = (make_report(m, *specs[0]) for m in (in_order, shuffled))
        row_in_order = status_row(env.admin, table, first.biz_id or "", first.phone_number or "")
        row_shuffled = status_row(env.admin, table, second.biz_id or "", second.phone_number or "")
        expected = _compared(_expected([make_report(in_order, *spec) for spec in specs]))
        # The two messages differ only in their number and out_id (order-<n>).
        assert _compared(row_shuffled) | {"phone_number": first.phone_number, "out_id": first.out_id} == expected
        assert _compared(row_in_order) == expected
        assert expected["receipts_seen"] == len(specs)

    try:
        check()
    finally:
        sink.close()
        env.close()


# -- concurrency: two processes writing the same reports converge ----------------------------------------

_CONCURRENT_MESSAGES = 25
_CONCURRENT_SPECS = (
    ("pending", None, None),
    ("failed", 40, "MK:0001"),
    ("delivered", 30, "DELIVERED"),
    ("expired", 40, "EXPIRED"),
)


def _concurrent_reports() -> list[Receipt]:
    return [make_report(5000 + m, *spec) for m in range(_CONCURRENT_MESSAGES) for spec in _CONCURRENT_SPECS]


def _write_all(config: DatabaseSinkConfig, seed: int, barrier: Any) -> None:
    """A writer process: every report, in its own random order and batches, retried when unavailable."""
    reports = _concurrent_reports()
    random.Random(seed).shuffle(reports)
    sink = config.build(f"writer-{seed}")
    sink.open()
    try:
        barrier.wait(timeout=60)
        position = 0
        rng = random.Random(seed)
        while position < len(reports):
            batch = reports[position : position + rng.randint(1, 6)]
            for _ in range(20):
                try:
                    result = sink.write(batch)
                    break
                except SinkUnavailable:
                    continue
            else:
                raise RuntimeError("the database stayed unavailable")
            assert result.rejected == {}
            position += len(batch)
    finally:
        sink.close()


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_two_processes_writing_the_same_reports_at_once_converge(kind: str, tmp_path: Path) -> None:
    """Two sinks in separate processes store the same reports concurrently: each row counts each receipt once."""
    env = make_env(kind, tmp_path)
    with contextlib.ExitStack() as stack:
        stack.callback(env.close)
        config = env.config()
        config.build("creator").open()  # tables created once, before the race
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(2)
        writers = [context.Process(target=_write_all, args=(config, seed, barrier)) for seed in (1, 2)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(timeout=120)
        assert [writer.exitcode for writer in writers] == [0, 0]
        reports = _concurrent_reports()
        assert sorted(env.stored_keys()) == sorted(report.dedupe_key for report in reports)
        rows = {row["phone_number"]: row for row in all_rows(env.admin, _status_name(env))}
        assert len(rows) == _CONCURRENT_MESSAGES
        for m in range(_CONCURRENT_MESSAGES):
            mine = [
                report
                for report in reports
                if report.biz_id == make_report(5000 + m, "pending", None, None).biz_id
                and report.phone_number == make_report(5000 + m, "pending", None, None).phone_number
            ]
            row = rows[mine[0].phone_number or ""]
            assert _compared(row) == _compared(_expected(mine))
            assert (row["state"], row["error_code"], row["receipts_seen"]) == ("failed", "MK:0001", 4)
