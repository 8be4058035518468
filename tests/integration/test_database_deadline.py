"""A PostgreSQL or MariaDB server that stops answering makes the database sink unavailable, not stuck.

The server is reached through a proxy that, blackholed, keeps every connection open and forwards
nothing: the server never sees the statement (so its statement_timeout cannot help) and the kernel
keeps acknowledging (so keepalives cannot either). Each write runs in a thread joined with a hang
guard of the deadline plus a wide margin; before the deadline existed, the PostgreSQL write never
returned and the MariaDB one took two of its read timeouts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from mns_consumer.errors import SinkUnavailable
from mns_consumer.sinks.base import SinkResult
from mns_consumer.sinks.database import DatabaseSink, DatabaseSinkConfig
from tests.support.receipts import make_batch
from tests.support.sink_env_database import ServerEnv

DEADLINE_SECONDS = 2.0
HANG_GUARD_SECONDS = DEADLINE_SECONDS + 10
"""The deadline plus a margin wide enough for a loaded machine (a guard against hangs, not a benchmark)."""


@pytest.fixture(params=["postgresql", "mariadb"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerEnv]:
    """A fresh table on the machine's PostgreSQL or MariaDB, behind a proxy the test can blackhole."""
    env = ServerEnv(request.param)
    try:
        yield env
    finally:
        env.thaw()
        env.close()


@pytest.fixture
def sink(server: ServerEnv) -> Iterator[DatabaseSink]:
    """An opened sink with a short deadline (and the environment's 10 s statement timeout)."""
    opened = server.make_sink(call_deadline_seconds=DEADLINE_SECONDS)
    opened.open()
    try:
        yield opened
    finally:
        opened.close()


def write_within_guard(sink: DatabaseSink, batch: list[Any]) -> SinkResult | BaseException:
    """The write's result or what it raised; fails the test if it is still blocked after the hang guard."""
    outcome: list[SinkResult | BaseException] = []

    def run() -> None:
        try:
            outcome.append(sink.write(batch))
        except BaseException as exc:  # noqa: BLE001  (handed to the test, which asserts on it)
            outcome.append(exc)

    writer = threading.Thread(target=run, daemon=True)
    writer.start()
    writer.join(HANG_GUARD_SECONDS)
    if writer.is_alive():
        pytest.fail(f"the write was still waiting for the server {HANG_GUARD_SECONDS:g} s later")
    return outcome[0]


def test_a_server_that_stops_answering_makes_a_write_unavailable_and_a_later_write_recovers(
    server: ServerEnv, sink: DatabaseSink
) -> None:
    """A write to a frozen server raises SinkUnavailable naming the deadline; once thawed, it is stored once."""
    # Given a sink that has stored a first batch, whose server then stops answering
    first, second = make_batch(5), make_batch(5, start=5)
    assert sink.write(first) == SinkResult.accept_all(first)
    server.freeze()

    # When the next batch is written
    with capture_logs() as logs:
        outcome = write_within_guard(sink, second)

    # Then the sink reports itself unavailable, saying why
    assert isinstance(outcome, SinkUnavailable), outcome
    assert outcome.sink == sink.name
    assert "call_deadline_seconds" in outcome.reason
    if server.kind == "postgresql":
        assert [entry["event"] for entry in logs].count("sink.database.deadline_passed") == 1

    # And once the server answers again, the batch is stored, and every receipt is there exactly once
    server.thaw()
    assert write_within_guard(sink, second) == SinkResult.accept_all(second)
    assert sorted(server.stored_keys()) == sorted(r.dedupe_key for r in first + second)


def test_a_server_that_stops_answering_in_the_middle_of_an_insert_makes_it_unavailable(
    server: ServerEnv, sink: DatabaseSink
) -> None:
    """The freeze comes after the connection was checked out and pinged: the insert itself is bounded."""
    # Given a server that stops answering just before the sink's INSERT reaches it
    batch = make_batch(3)

    def freeze_before_insert(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT") and str(server.proxy.port) in str(conn.engine.url):
            server.freeze()

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", freeze_before_insert)
    try:
        # When the batch is written
        outcome = write_within_guard(sink, batch)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", freeze_before_insert)

    # Then the sink is unavailable, and after the thaw the batch is stored exactly once
    assert isinstance(outcome, SinkUnavailable), outcome
    server.thaw()
    assert write_within_guard(sink, batch) == SinkResult.accept_all(batch)
    assert sorted(server.stored_keys()) == sorted(r.dedupe_key for r in batch)


@pytest.fixture
def postgres() -> Iterator[ServerEnv]:
    """A fresh table on the machine's PostgreSQL (the cancel request is PostgreSQL's)."""
    env = ServerEnv("postgresql")
    try:
        yield env
    finally:
        env.close()


def test_a_statement_still_running_at_the_deadline_is_cancelled_on_the_server(postgres: ServerEnv) -> None:
    """An insert waiting for another transaction's lock past the deadline is cancelled, then stored later."""
    server = postgres
    sink = server.make_sink(call_deadline_seconds=DEADLINE_SECONDS)
    sink.open()
    receipt = make_batch(1)[0]
    try:
        # Given another transaction holding the receipt's dedupe key, uncommitted
        with server.admin.connect() as holder:
            holder.execute(
                sa.text(
                    f"INSERT INTO {server.table} (dedupe_key, kind, message_type, source, extra, raw) "  # noqa: S608
                    "VALUES (:key, 'x', 'x', 'x', '{}', '')"
                ),
                {"key": receipt.dedupe_key},
            )

            # When the sink writes it, and waits on that lock past its deadline
            with capture_logs() as logs:
                outcome = write_within_guard(sink, [receipt])

            # Then the server cancelled the statement and the sink reports itself unavailable
            assert isinstance(outcome, SinkUnavailable), outcome
            assert "call_deadline_seconds" in outcome.reason
            assert "cancel" in outcome.reason.lower()
            assert "sink.database.deadline_passed" in [entry["event"] for entry in logs]
            holder.rollback()

        # And once the lock is gone, the receipt is stored once
        assert sink.write([receipt]) == SinkResult.accept_all([receipt])
        assert server.stored_keys() == [receipt.dedupe_key]
    finally:
        sink.close()


def test_open_against_a_server_that_stops_answering_is_unavailable(server: ServerEnv) -> None:
    """Opening (connecting, creating and checking the table) is bounded too."""
    sink = server.make_sink(call_deadline_seconds=DEADLINE_SECONDS)
    server.freeze()
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            sink.open()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001  (handed to the test, which asserts on it)
            outcome.append(exc)

    opener = threading.Thread(target=run, daemon=True)
    opener.start()
    opener.join(HANG_GUARD_SECONDS)
    assert not opener.is_alive(), "open was still waiting for the server"
    assert isinstance(outcome[0], SinkUnavailable), outcome
    server.thaw()
    sink.open()
    try:
        assert sink.write(make_batch(1)) == SinkResult.accept_all(make_batch(1))
    finally:
        sink.close()


@pytest.mark.parametrize(
    ("fields", "deadline"),
    [
        ({}, 45.0),
        ({"statement_timeout_seconds": 60}, 75.0),
        ({"statement_timeout_seconds": None}, 45.0),
        ({"call_deadline_seconds": 8}, 8.0),
    ],
)
def test_the_call_deadline_defaults_to_the_statement_timeout_plus_fifteen_seconds(
    fields: dict[str, Any], deadline: float
) -> None:
    """Unset, the deadline follows the statement timeout with a margin for the server's own error to arrive."""
    config = DatabaseSinkConfig(url="postgresql://mns@db/receipts", **fields)
    assert config.call_deadline() == deadline
