"""The database sink against a real SQLite file, PostgreSQL and MariaDB.

Beyond the shared contract suite: the documented schema, checks of existing tables, exact round trips,
exactly-once storage under concurrent writers, rejects, and that the password never leaks.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from structlog.testing import capture_logs

from mns_consumer.errors import ConfigError, SinkUnavailable
from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.base import SinkResult, parse_sink_config
from mns_consumer.sinks.database import (
    INDEXED_COLUMNS,
    OUTCOME_COLUMNS,
    WRITTEN_COLUMNS,
    DatabaseSink,
    DatabaseSinkConfig,
    UtcDateTime,
    receipts_table,
)
from mns_consumer.sinks.sqlite import sqlite_utc_text
from tests.support.receipts import make_batch, make_receipt
from tests.support.sink_env_database import DatabaseEnv, SqliteEnv, make_env

KINDS = ["sqlite", "postgresql", "mariadb"]
SERVER_KINDS = ["postgresql", "mariadb"]
LEAK_PASSWORD = "Leak-Canary-9Qz"


@pytest.fixture(params=KINDS)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DatabaseEnv]:
    """One database environment per backend; skips (or fails) when its server is absent."""
    environment = make_env(request.param, tmp_path)
    try:
        yield environment
    finally:
        environment.close()


@pytest.fixture
def open_sink(env: DatabaseEnv) -> Iterator[Callable[..., DatabaseSink]]:
    """A factory of opened sinks on the environment's table; each one is closed afterwards."""
    made: list[DatabaseSink] = []

    def factory(**overrides: Any) -> DatabaseSink:
        sink = env.make_sink(**overrides)
        sink.open()
        made.append(sink)
        return sink

    yield factory
    for sink in made:
        sink.close()


def read_rows(env: DatabaseEnv) -> list[sa.Row[Any]]:
    """Every row of the environment's table, read back through the documented column types."""
    table = receipts_table(sa.MetaData(), env.table)
    with env.admin.connect() as connection:
        return list(connection.execute(sa.select(table).order_by(table.c.id)))


def full_receipt() -> Receipt:
    """A receipt with every field set, including values that are easy to get wrong in SQL."""
    beijing = timezone(timedelta(hours=8))
    return make_receipt(
        7,
        kind="reply",
        message_type="SmsUp",
        source="push",
        status="received",
        content="回复 TD 退订 👍🏽 \"quoted\" 'single' \\ backslash",
        sign_name="阿里云短信测试",
        template_code="SMS_154950909",
        reason="ok ✅",
        error_message="用户接收成功 😀",
        sent_at=datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=beijing),
        reported_at=datetime(2026, 11, 22, 10, 0, 4, 654321, tzinfo=beijing),
        sms_parts=3,
        extra={"sequence_id": 1234567, "dest_code": "1069", "nested": {"emoji": "🎉", "list": [1, 2.5, None, True]}},
        raw=b"\x00\xff\xfe binary \x80 body",
    )


def test_open_creates_the_documented_columns_and_indexes(env: DatabaseEnv, open_sink: Callable[..., Any]) -> None:
    """A missing table is created with every documented column, the unique dedupe key and the indexes."""
    open_sink()
    inspector = sa.inspect(env.admin)
    columns = {column["name"]: column for column in inspector.get_columns(env.table)}
    assert set(columns) == {"id", *WRITTEN_COLUMNS, *OUTCOME_COLUMNS, "stored_at"}
    indexes = {index["name"]: index for index in inspector.get_indexes(env.table)}
    for column in INDEXED_COLUMNS:
        assert indexes[f"ix_{env.table}_{column}"]["column_names"] == [column]
    uniques: list[list[str | None]] = [list(u["column_names"]) for u in inspector.get_unique_constraints(env.table)]
    uniques += [i["column_names"] for i in indexes.values() if i.get("unique")]
    assert ["dedupe_key"] in uniques
    assert not columns["dedupe_key"]["nullable"]
    assert not columns["raw"]["nullable"]


def test_column_types_keep_time_zones_microseconds_and_unicode(env: DatabaseEnv, open_sink: Callable[..., Any]) -> None:
    """PostgreSQL uses TIMESTAMPTZ, JSONB and BYTEA; MariaDB DATETIME(6), LONGBLOB and utf8mb4 with a binary
    collation; SQLite declares DATETIME, JSON and BLOB."""
    open_sink()
    types: dict[str, str]
    with env.admin.connect() as connection:
        if env.kind == "postgresql":
            query = "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = :t"
            types = dict(connection.execute(sa.text(query), {"t": env.table}).all())
            expected = {"sent_at": "timestamp with time zone", "extra": "jsonb", "raw": "bytea"}
        elif env.kind == "mariadb":
            query = (
                "SELECT column_name, CONCAT(column_type, ' ', COALESCE(collation_name, '-')) "
                "FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = :t"
            )
            types = dict(connection.execute(sa.text(query), {"t": env.table}).all())
            expected = {"sent_at": "datetime(6) -", "raw": "longblob -", "content": "mediumtext utf8mb4_bin"}
        else:
            rows = connection.exec_driver_sql(f"PRAGMA table_info({env.table})").all()
            types = {row[1]: row[2] for row in rows}
            expected = {"sent_at": "DATETIME", "extra": "JSON", "raw": "BLOB"}
    assert {column: types[column] for column in expected} == expected


def test_an_existing_compatible_table_is_accepted_without_create_table(
    env: DatabaseEnv, open_sink: Callable[..., DatabaseSink]
) -> None:
    """A table made beforehand with the documented columns (and one more of its own) is used as it is."""
    # Given a table a DBA created, with an extra column of their own
    table = receipts_table(sa.MetaData(), env.table)
    table.append_column(sa.Column("note", sa.String(20)))
    table.create(env.admin)
    # When a sink that must not create tables opens and writes
    sink = open_sink(create_table=False)
    batch = make_batch(3)
    # Then it stores into that table
    assert sink.write(batch) == SinkResult.accept_all(batch)
    assert sorted(env.stored_keys()) == sorted(r.dedupe_key for r in batch)


@pytest.mark.parametrize("create_table", [True, False])
def test_a_table_missing_a_column_fails_open_with_a_config_error_naming_it(
    env: DatabaseEnv, create_table: bool
) -> None:
    """An existing table without ``sign_name`` is refused at open, whether or not creating was allowed."""
    receipts_table(sa.MetaData(), env.table).create(env.admin)
    with env.admin.begin() as connection:
        connection.execute(sa.text(f"ALTER TABLE {env.table} DROP COLUMN sign_name"))
    sink = env.make_sink(create_table=create_table)
    with pytest.raises(ConfigError, match="sign_name") as raised:
        sink.open()
    assert raised.value.key_path == f"sinks.{sink.name}.table"
    sink.close()


def test_a_missing_table_fails_open_when_creating_is_not_allowed(env: DatabaseEnv) -> None:
    """With ``create_table: false`` and no table, open raises a ConfigError saying so."""
    sink = env.make_sink(create_table=False)
    with pytest.raises(ConfigError, match="does not exist"):
        sink.open()
    sink.close()


def test_a_table_without_a_unique_dedupe_key_fails_open(env: DatabaseEnv) -> None:
    """A table whose dedupe_key is not unique would store duplicates, so open refuses it."""
    template = receipts_table(sa.MetaData(), "template")
    loose = sa.Table(
        env.table,
        sa.MetaData(),
        *(sa.Column(c.name, c.type, primary_key=c.primary_key) for c in template.columns if c.name != "stored_at"),
    )
    loose.create(env.admin)
    sink = env.make_sink(create_table=False)
    with pytest.raises(ConfigError, match="unique"):
        sink.open()
    sink.close()


def test_every_field_round_trips_exactly(env: DatabaseEnv, open_sink: Callable[..., DatabaseSink]) -> None:
    """Aware times (to the microsecond), emoji text, nested JSON and binary raw bodies read back unchanged."""
    receipt = full_receipt()
    assert open_sink().write([receipt]).accepted == {receipt.dedupe_key}
    (row,) = read_rows(env)
    for column in WRITTEN_COLUMNS:
        assert getattr(row, column) == getattr(receipt, column), column
    assert row.sent_at.utcoffset() == timedelta(0)
    assert row.stored_at.tzinfo is not None


def test_outcome_class_retryable_and_opt_out_round_trip(
    env: DatabaseEnv, open_sink: Callable[..., DatabaseSink]
) -> None:
    """The delivery-intelligence columns store what the receipt says, NULL included."""
    report = make_receipt(1, status="failed", error_code="MI:0013", outcome_class="powered_off", retryable=True)
    opted_out = make_receipt(2, kind="reply", message_type="SmsUp", outcome_class=None, retryable=None, opt_out=True)
    plain = make_receipt(3, kind="reply", message_type="SmsUp", outcome_class=None, retryable=None, opt_out=False)
    open_sink().write([report, opted_out, plain])
    rows = {row.dedupe_key: row for row in read_rows(env)}
    for receipt in (report, opted_out, plain):
        row = rows[receipt.dedupe_key]
        assert (row.outcome_class, row.retryable, row.opt_out) == (
            receipt.outcome_class,
            receipt.retryable,
            receipt.opt_out,
        )


def _table_of_the_previous_release(env: DatabaseEnv) -> None:
    """The receipts table as releases before delivery intelligence created it (no outcome columns)."""
    receipts_table(sa.MetaData(), env.table).create(env.admin)
    with env.admin.begin() as connection:
        for column in OUTCOME_COLUMNS:
            connection.execute(sa.text(f"ALTER TABLE {env.table} DROP COLUMN {column}"))


def test_an_upgraded_table_gets_the_outcome_columns_when_creating_is_allowed(
    env: DatabaseEnv, open_sink: Callable[..., DatabaseSink]
) -> None:
    """With ``create_table: true`` a table from an earlier release gains the nullable columns at open."""
    # Given a table an earlier release created, holding a row
    _table_of_the_previous_release(env)
    old = make_receipt(1)
    with capture_logs() as logs:
        sink = open_sink()
    assert sink.write([old]).accepted == {old.dedupe_key}
    # When the new sink opened it, it added the columns, and writes them
    new = make_receipt(2, status="failed", outcome_class="blocked", retryable=False)
    sink.write([new])
    rows = {row.dedupe_key: row for row in read_rows(env)}
    assert (rows[new.dedupe_key].outcome_class, rows[new.dedupe_key].retryable) == ("blocked", False)
    added = [e for e in logs if e["event"] == "sink.database.columns_added"]
    assert [event["columns"] for event in added] == [list(OUTCOME_COLUMNS)]
    # And a second daemon opening the upgraded table adds nothing
    open_sink()


def test_an_old_table_without_create_table_is_written_without_the_new_columns_and_says_how_to_add_them(
    env: DatabaseEnv, open_sink: Callable[..., DatabaseSink]
) -> None:
    """With ``create_table: false`` the sink does not alter the table: it stores the rest and warns once."""
    _table_of_the_previous_release(env)
    with capture_logs() as logs:
        sink = open_sink(create_table=False)
    batch = [make_receipt(1, status="failed", outcome_class="blocked", retryable=False)]
    assert sink.write(batch) == SinkResult.accept_all(batch)
    assert env.stored_keys() == [batch[0].dedupe_key]
    (warning,) = [e for e in logs if e["event"] == "sink.database.columns_missing"]
    assert warning["columns"] == list(OUTCOME_COLUMNS)
    assert "ALTER TABLE" in warning["fix"]
    assert "outcome_class" in warning["fix"]
    with env.admin.connect() as connection:
        present = {column["name"] for column in sa.inspect(connection).get_columns(env.table)}
    assert not present & set(OUTCOME_COLUMNS)


def test_stored_keys_names_exactly_the_keys_the_table_holds(open_sink: Callable[..., DatabaseSink]) -> None:
    """Backfill asks which keys are stored already: the stored ones, across more keys than one SELECT takes."""
    sink = open_sink()
    stored = make_batch(30)
    sink.write(stored)
    asked = [r.dedupe_key for r in make_batch(1200, start=10)] + [stored[0].dedupe_key] * 2
    assert sink.stored_keys(asked) == {r.dedupe_key for r in stored[10:]} | {stored[0].dedupe_key}
    assert sink.stored_keys([]) == frozenset()


def test_times_are_stored_as_utc_instants(env: DatabaseEnv, open_sink: Callable[..., DatabaseSink]) -> None:
    """A Beijing time is stored as the same instant: TIMESTAMPTZ on PostgreSQL, UTC wall time elsewhere."""
    open_sink().write([make_receipt(1)])
    with env.admin.connect() as connection:
        stored: object = connection.execute(
            sa.select(sa.column("reported_at")).select_from(sa.table(env.table))
        ).scalar_one()
    expected = datetime(2026, 11, 22, 2, 0, 4, tzinfo=UTC)
    if env.kind == "postgresql":
        assert stored == expected
    elif env.kind == "mariadb":
        assert stored == expected.replace(tzinfo=None)
    else:
        assert stored == "2026-11-22 02:00:04.000000"


def test_concurrent_writers_store_each_receipt_exactly_once(
    env: DatabaseEnv, open_sink: Callable[..., DatabaseSink]
) -> None:
    """Two sinks (two daemons) writing overlapping batches from four threads leave one row per key."""
    # Given two independent sinks on the same table, as two replicas would have
    sinks = [open_sink(busy_timeout_seconds=30), open_sink(busy_timeout_seconds=30)]
    receipts = make_batch(120)
    failures: list[BaseException] = []

    def writer(seed: int) -> None:
        order = random.Random(seed).sample(receipts, len(receipts))
        sink = sinks[seed % 2]
        try:
            for start in range(0, len(order), 16):
                batch = order[start : start + 16]
                assert sink.write(batch) == SinkResult.accept_all(batch)
        except BaseException as exc:  # noqa: BLE001  (reported by the main thread below)
            failures.append(exc)

    # When four threads write every receipt, each in its own order
    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # Then every write was accepted and every receipt is stored exactly once
    assert failures == []
    assert sorted(env.stored_keys()) == sorted(r.dedupe_key for r in receipts)


LOCK_WAITS = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mns-consumer' "
    "AND wait_event_type = 'Lock'",
    "mariadb": "SELECT count(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'",
}


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_a_write_chosen_as_deadlock_victim_is_retried_and_accepted(kind: str, tmp_path: Path) -> None:
    """When the server breaks a deadlock by rolling the sink's transaction back, the sink retries it at once
    and the batch is accepted and stored once."""
    env = make_env(kind, tmp_path)
    sink = env.make_sink()
    sink.open()
    first, second, *heavier = sorted(make_batch(5), key=lambda r: r.dedupe_key)
    table = receipts_table(sa.MetaData(), env.table)
    outcome: list[SinkResult | BaseException] = []

    def write() -> None:
        try:
            outcome.append(sink.write([first, second]))
        except BaseException as exc:  # noqa: BLE001  (checked by the main thread)
            outcome.append(exc)

    try:
        with capture_logs() as logs, env.admin.connect() as other:
            # Given another transaction holding the second key (and more rows, so MariaDB picks the sink as victim)
            other.execute(table.insert(), [_values(r) for r in [second, *heavier]])
            # When the sink has stored the first key and waits for the second
            writer = threading.Thread(target=write)
            writer.start()
            deadline = time.monotonic() + 20
            while not other.exec_driver_sql(LOCK_WAITS[kind]).scalar_one():
                assert time.monotonic() < deadline, f"the sink never waited for the lock: {outcome}"
                # InnoDB refreshes innodb_trx only when it was last read over 0.1 s ago.
                time.sleep(0.25)
            # And the other transaction then asks for the first key: a deadlock
            other.execute(table.insert(), [_values(first)])
            other.commit()
            writer.join(timeout=30)
        # Then the sink was the victim, retried, and accepted both receipts
        assert outcome == [SinkResult.accept_all([first, second])]
        assert [e["event"] for e in logs if e["event"] == "sink.database.deadlock_retry"]
        assert sorted(env.stored_keys()) == sorted(r.dedupe_key for r in [first, second, *heavier])
    finally:
        sink.close()
        env.close()


def _values(receipt: Receipt) -> dict[str, Any]:
    return {column: getattr(receipt, column) for column in WRITTEN_COLUMNS if column != "extra"} | {
        "extra": dict(receipt.extra)
    }


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("phone_number", "1" * 33, "phone_number is 33 characters long"),
        ("dedupe_key", "k" * 65, "dedupe_key is 65 characters long"),
        ("sent_at", datetime(2026, 11, 22, 10, 0, 0), "sent_at has no time zone"),
        ("content", "lone \ud83d surrogate", "content is not valid Unicode"),
        ("extra", {"when": {1, 2}}, "extra is not storable as JSON"),
        ("message_type", None, "message_type is missing"),
    ],
)
def test_receipts_the_table_cannot_hold_are_rejected_and_the_rest_stored(
    env: DatabaseEnv, open_sink: Callable[..., DatabaseSink], field: str, value: Any, reason: str
) -> None:
    """A receipt breaking a column's limits is rejected with a reason naming the column; the rest is stored."""
    bad = dataclasses.replace(make_receipt(50), **{field: value})
    good = make_batch(2)
    result = open_sink().write([good[0], bad, good[1]])
    assert result.accepted == {r.dedupe_key for r in good}
    assert list(result.rejected) == [bad.dedupe_key]
    assert reason in result.rejected[bad.dedupe_key]
    assert sorted(env.stored_keys()) == sorted(r.dedupe_key for r in good)


def test_nul_characters_are_rejected_only_where_postgresql_cannot_store_them(
    env: DatabaseEnv, open_sink: Callable[..., DatabaseSink]
) -> None:
    """NUL in text or JSON is a reject on PostgreSQL and round-trips on MariaDB and SQLite."""
    receipt = make_receipt(3, content="a\x00b", extra={"k": "v\x00"})
    result = open_sink().write([receipt])
    if env.kind == "postgresql":
        assert "NUL" in result.rejected[receipt.dedupe_key]
        assert env.stored_keys() == []
    else:
        assert result.accepted == {receipt.dedupe_key}
        (row,) = read_rows(env)
        assert (row.content, row.extra) == ("a\x00b", {"k": "v\x00"})


def test_a_row_the_database_refuses_is_isolated_and_rejected_alone(
    env: DatabaseEnv, open_sink: Callable[..., DatabaseSink]
) -> None:
    """When the table is narrower than documented, the batch is retried row by row and only the refused
    receipt is rejected (on MariaDB this also proves strict mode: nothing is silently truncated)."""
    # Given a table whose phone_number column a DBA narrowed to 11 characters
    receipts_table(sa.MetaData(), env.table).create(env.admin)
    narrowing = {
        "postgresql": f"ALTER TABLE {env.table} ALTER COLUMN phone_number TYPE VARCHAR(11)",
        "mariadb": f"ALTER TABLE {env.table} MODIFY phone_number VARCHAR(11)",
        "sqlite": f"CREATE TRIGGER narrow_phone BEFORE INSERT ON {env.table} WHEN length(NEW.phone_number) > 11 "
        "BEGIN SELECT RAISE(ABORT, 'phone_number longer than 11'); END",
    }
    with env.admin.begin() as connection:
        connection.execute(sa.text(narrowing[env.kind]))
    # When a batch holds one receipt with a 15-character number (valid for the documented schema)
    wide = make_receipt(60, phone_number="+86139000011112")
    good = make_batch(3)
    result = open_sink(create_table=False).write([*good, wide])
    # Then only that receipt is rejected, and the others are stored
    assert set(result.rejected) == {wide.dedupe_key}
    assert "refused" in result.rejected[wide.dedupe_key]
    assert result.accepted == {r.dedupe_key for r in good}
    assert sorted(env.stored_keys()) == sorted(r.dedupe_key for r in good)


def test_open_raises_unavailable_while_the_database_is_unreachable(env: DatabaseEnv) -> None:
    """An unreachable server (or a locked SQLite file) makes open raise SinkUnavailable; later it opens."""
    sink = env.make_sink()
    env.make_unavailable()
    try:
        with pytest.raises(SinkUnavailable) as raised:
            sink.open()
        assert raised.value.sink == sink.name
    finally:
        env.restore()
    sink.open()
    try:
        assert sink.write(make_batch(1)) == SinkResult.accept_all(make_batch(1))
    finally:
        sink.close()


@contextmanager
def opened_sqlite_sink(tmp_path: Path, **overrides: Any) -> Iterator[tuple[SqliteEnv, DatabaseSink]]:
    """A SQLite sink, opened on a file in ``tmp_path``, closed (with its env) afterwards."""
    env = SqliteEnv(tmp_path)
    sink = env.make_sink(**overrides)
    sink.open()
    try:
        yield env, sink
    finally:
        sink.close()
        env.close()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    """The SQLite file is switched to write-ahead logging, so readers never block the writer."""
    with opened_sqlite_sink(tmp_path) as (env, sink):
        sink.write(make_batch(1))
        with closing(sqlite3.connect(env.path)) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.parametrize("pages", [0, 40, 100000])
def test_sqlite_checkpoints_its_log_after_the_configured_number_of_pages(tmp_path: Path, pages: int) -> None:
    """wal_autocheckpoint_pages bounds the write-ahead log; 0 leaves every page in it."""
    with opened_sqlite_sink(tmp_path, wal_autocheckpoint_pages=pages) as (env, sink):
        for start in range(0, 3000, 50):
            sink.write([make_receipt(n) for n in range(start, start + 50)])
        with closing(sqlite3.connect(env.path)) as connection:
            page_bytes = connection.execute("PRAGMA page_size").fetchone()[0]
        log_pages = Path(f"{env.path}-wal").stat().st_size / page_bytes
        with sink._engine.connect() as connection:  # type: ignore[union-attr]  # the sink's own connection
            assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == pages
        assert set(env.stored_keys()) == {make_receipt(n).dedupe_key for n in range(3000)}
    # 3000 receipts log several thousand pages: checkpoints every 40 keep the log to a few batches' worth.
    if pages == 40:
        assert log_pages < 400
    else:
        assert log_pages > 2000


def test_sqlite_driver_inserts_store_exactly_what_sqlalchemy_core_stores(tmp_path: Path) -> None:
    """The SQLite sink's executemany path stores the same values and types as Core's insert of the
    receipts' attributes into the documented table (extra as compact JSON, as the sink encodes it)."""
    plain = dataclasses.replace(make_receipt(90), sent_at=None, reported_at=None, sms_parts=None, extra={})
    utc = dataclasses.replace(make_receipt(91), sent_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    receipts = [full_receipt(), plain, utc, *make_batch(20), full_receipt()]
    (tmp_path / "driver").mkdir()
    (tmp_path / "core").mkdir()
    driver_env, core_env = SqliteEnv(tmp_path / "driver"), SqliteEnv(tmp_path / "core")
    driver = driver_env.make_sink()
    driver.open()
    try:
        assert driver.write(receipts).rejected == {}
    finally:
        driver.close()
    compact = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
    core = sa.create_engine(core_env.url, json_serializer=compact, poolclass=sa.pool.NullPool)
    table = receipts_table(sa.MetaData(), core_env.table, "sqlite")
    rows = [
        {column: getattr(receipt, column) for column in (*WRITTEN_COLUMNS, *OUTCOME_COLUMNS)} for receipt in receipts
    ]
    try:
        with core.begin() as connection:
            table.create(connection)
            connection.execute(sqlite_insert(table).on_conflict_do_nothing(index_elements=["dedupe_key"]), rows)
    finally:
        core.dispose()
    columns = ", ".join(f"{column}, typeof({column})" for column in WRITTEN_COLUMNS)

    def stored(env: SqliteEnv) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(env.path)) as connection:
            return connection.execute(f"SELECT {columns} FROM sms_receipts ORDER BY dedupe_key").fetchall()  # noqa: S608

    assert len(stored(driver_env)) == len({receipt.dedupe_key for receipt in receipts})
    assert stored(driver_env) == stored(core_env)


def test_the_retired_writer_process_key_is_a_config_error_saying_why() -> None:
    """``writer_process`` (a child writer process, removed) is refused with the reason, not as an unknown key."""
    with pytest.raises(ValidationError, match=r"writer_process is no longer supported.*benchmarks"):
        DatabaseSinkConfig(url="sqlite:///r.db", writer_process=False)


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(min_value=-23 * 60, max_value=23 * 60),
)
def test_sqlite_time_text_is_what_the_type_and_the_dialect_make_of_it(moment: datetime, offset_minutes: int) -> None:
    """The driver path's one-step time conversion equals UtcDateTime's bind processing on SQLite."""
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    dialect = sa.create_engine("sqlite://").dialect
    column_type = UtcDateTime()
    process = column_type.dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    assert sqlite_utc_text(aware) == process(aware)
    assert sqlite_utc_text(None) is None
    with pytest.raises(ValueError, match="naive"):
        sqlite_utc_text(moment)


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_the_password_never_appears_in_errors_logs_or_config(kind: str, tmp_path: Path) -> None:
    """Outages and refused logins raise SinkUnavailable, and neither they, the logs nor the config's
    repr, str or JSON show the password."""
    env = make_env(kind, tmp_path)
    try:
        # PostgreSQL trusts loopback and ignores the password; MariaDB's root has none, so it is refused.
        url = sa.make_url(env.url).set(password=LEAK_PASSWORD).render_as_string(hide_password=False)
        config = env.config(url=url)
        sink = config.build("db")
        seen: list[str] = [repr(config), str(config), config.model_dump_json(), repr(sink), config.display_url]
        with capture_logs() as logs:
            if kind == "postgresql":
                sink.open()
                env.make_unavailable()
                with pytest.raises(SinkUnavailable) as raised:
                    sink.write(make_batch(1))
            else:
                with pytest.raises(SinkUnavailable) as raised:
                    sink.open()
        sink.close()
        seen += [str(raised.value), raised.value.reason, str(raised.value.__cause__), repr(logs)]
        assert "***" in config.display_url
        for text in seen:
            assert LEAK_PASSWORD not in text
    finally:
        env.close()


def test_config_validation_errors_do_not_echo_the_url() -> None:
    """A rejected URL is explained without repeating it, so its password stays out of error output."""
    with pytest.raises(ValidationError) as raised:
        DatabaseSinkConfig(url=f"postgresql+psycopg2://u:{LEAK_PASSWORD}@db/receipts")
    assert "psycopg" in str(raised.value)
    assert LEAK_PASSWORD not in str(raised.value)


@pytest.mark.parametrize(
    "url",
    ["sqlite://", "sqlite:///:memory:", "oracle://u@db/x", "mysql+mysqldb://u@db/x", "not a url"],
)
def test_config_refuses_urls_that_cannot_work(url: str) -> None:
    """In-memory SQLite (not durable), other databases and other drivers fail validation."""
    with pytest.raises(ValidationError):
        DatabaseSinkConfig(url=url)


@pytest.mark.parametrize("table", ["Receipts", "sms-receipts", "1table", "t" * 41, "public.sms_receipts"])
def test_config_refuses_table_names_that_need_quoting(table: str) -> None:
    """Only plain lower-case identifiers short enough for their index names are accepted."""
    with pytest.raises(ValidationError):
        DatabaseSinkConfig(url="sqlite:///r.db", table=table)


def test_config_is_found_by_type_and_fills_in_the_default_drivers() -> None:
    """``type: database`` parses into DatabaseSinkConfig; bare postgresql:// and mysql:// get psycopg and
    PyMySQL, and MySQL always speaks utf8mb4."""
    config = parse_sink_config({"type": "database", "url": "postgresql://mns:pw@db/receipts"})
    assert isinstance(config, DatabaseSinkConfig)
    assert config.engine_url().drivername == "postgresql+psycopg"
    mysql_url = DatabaseSinkConfig(url="mysql://mns@db/receipts?charset=latin1").engine_url()
    assert (mysql_url.drivername, mysql_url.query["charset"]) == ("mysql+pymysql", "utf8mb4")
    assert config.display_url == "postgresql://mns:***@db/receipts"
