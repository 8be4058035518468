"""Database sink environments: a SQLite file, and fresh tables on the machine's PostgreSQL and MariaDB.

The servers are shared, so each environment works in its own table (dropped in ``close()``) and
reaches the server through a :class:`~tests.support.tcp_proxy.TcpProxy`, which it stops to make the
server unavailable (or blackholes, to make it stop answering). SQLite is made unavailable by another
connection holding an exclusive lock.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.database import DatabaseSink, DatabaseSinkConfig
from tests.conftest import service_unavailable
from tests.support.tcp_proxy import TcpProxy

POSTGRES_PASSWORD = "pg-Secret-7f3a"
"""Sent in every PostgreSQL URL (trust authentication ignores it), so tests can look for leaks."""

SERVERS = {
    "postgresql": ("postgresql+psycopg", "postgres", POSTGRES_PASSWORD, 5432, "PostgreSQL"),
    "mariadb": ("mysql+pymysql", "root", "", 3306, "MariaDB"),
}
"""kind -> (driver URL scheme, user, password, port on 127.0.0.1, product name)."""

TEST_BUSY_TIMEOUT_SECONDS = 0.2
"""How long SQLite sinks under test wait for a lock before reporting themselves unavailable."""


def make_env(kind: str, tmp_path: Path) -> DatabaseEnv:
    """The environment of one database kind: ``sqlite``, ``postgresql`` or ``mariadb``.

    Skips (or fails, with MNS_CONSUMER_REQUIRE_SERVICES=1) when the server is not running.
    """
    if kind == "sqlite":
        return SqliteEnv(tmp_path)
    if kind in SERVERS:
        return ServerEnv(kind)
    raise ValueError(f"unknown database kind {kind!r}")


class DatabaseEnv:
    """What every database environment offers, beyond the SinkEnv protocol: its URL, table and an
    engine that bypasses the proxy (for inspecting and preparing tables)."""

    kind: str
    url: str
    table: str
    admin: sa.Engine

    def config(self, **overrides: Any) -> DatabaseSinkConfig:
        """The sink configuration of this environment, with fields overridden."""
        fields: dict[str, Any] = {
            "url": self.url,
            "table": self.table,
            "connect_timeout_seconds": 2,
            "statement_timeout_seconds": 10,
            "busy_timeout_seconds": TEST_BUSY_TIMEOUT_SECONDS,
            **overrides,
        }
        return DatabaseSinkConfig(**fields)

    def make_sink(self, **overrides: Any) -> DatabaseSink:
        """A new sink (not opened) on this environment's table."""
        return self.config(**overrides).build(f"db-{self.kind}")

    def stored_keys(self) -> list[str]:
        """Every stored dedupe key, one entry per row."""
        with self.admin.connect() as connection:
            return list(connection.execute(sa.text(f"SELECT dedupe_key FROM {self.table}")).scalars())  # noqa: S608

    def rejectable(self, base: Receipt) -> Receipt:
        """``base`` with a phone number far longer than its 32-character column."""
        return dataclasses.replace(base, phone_number="1" * 200)

    def make_unavailable(self) -> None:
        """Take the database away (see the subclasses)."""
        raise NotImplementedError

    def restore(self) -> None:
        """Bring the database back."""
        raise NotImplementedError

    def close(self) -> None:
        """Release everything the environment made."""
        raise NotImplementedError

    def projection_tables(self) -> tuple[str, str]:
        """The default names of the sink's status and opt-out tables, unique with the receipts table."""
        return (f"{self.table}_status", f"{self.table}_opt_outs")

    def drop_table(self, name: str | None = None) -> None:
        """Drop a table of this environment if it exists (by default the sink's)."""
        with self.admin.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {name or self.table}"))


class SqliteEnv(DatabaseEnv):
    """A SQLite file in the test's temporary folder."""

    def __init__(self, tmp_path: Path) -> None:
        self.kind = "sqlite"
        self.path = tmp_path / "receipts.db"
        self.url = f"sqlite:///{self.path}"
        self.table = "sms_receipts"
        self.admin = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        self._locker: sqlite3.Connection | None = None

    def make_unavailable(self) -> None:
        """Hold the database's write lock from another connection."""
        locker = sqlite3.connect(self.path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        self._locker = locker

    def restore(self) -> None:
        """Release the lock."""
        locker, self._locker = self._locker, None
        if locker is not None:
            locker.execute("ROLLBACK")
            locker.close()

    def close(self) -> None:
        """Release the lock if held; the file goes with the temporary folder."""
        self.restore()
        self.admin.dispose()


class ServerEnv(DatabaseEnv):
    """A fresh table on a shared server, reached through a cut-able proxy."""

    def __init__(self, kind: str) -> None:
        scheme, user, password, port, product = SERVERS[kind]
        self.kind = kind
        self.table = f"receipts_{uuid.uuid4().hex[:12]}"
        credentials = f"{user}:{password}" if password else user
        self.admin = sa.create_engine(
            f"{scheme}://{credentials}@127.0.0.1:{port}/test",
            poolclass=sa.pool.NullPool,
            connect_args={"connect_timeout": 3},
        )
        try:
            with self.admin.connect():
                pass
        except (sa.exc.OperationalError, sa.exc.InterfaceError):
            self.admin.dispose()
            service_unavailable(f"{product} is not running on 127.0.0.1:{port}")
        self.proxy = TcpProxy("127.0.0.1", port).start()
        self.url = f"{scheme}://{credentials}@127.0.0.1:{self.proxy.port}/test"

    def make_unavailable(self) -> None:
        """Stop the proxy: connections are reset, new ones refused."""
        self.proxy.stop()

    def restore(self) -> None:
        """Listen again on the same proxy port."""
        self.proxy.start()

    def freeze(self) -> None:
        """Make the server stop answering: connections stay open, nothing is forwarded."""
        self.proxy.blackhole()

    def thaw(self) -> None:
        """Forward again after :meth:`freeze`."""
        self.proxy.forward()

    def close(self) -> None:
        """Stop the proxy and drop the environment's tables (receipts, status and opt-outs)."""
        self.proxy.stop()
        try:
            for name in self.projection_tables():
                self.drop_table(name)
            self.drop_table()
        finally:
            self.admin.dispose()
