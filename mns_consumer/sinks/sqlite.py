"""The database sink on a SQLite file: :class:`SqliteSink`, built by ``type: database`` for ``sqlite://`` URLs.

Same table, checks and results as :class:`~mns_consumer.sinks.database.DatabaseSink`. The file is created
0600 (folders 0700) before SQLite would create it 0644, and its ``-wal`` and ``-shm`` files take that mode;
every connection runs WAL with ``synchronous=FULL``. Each write, in the daemon: ``BEGIN IMMEDIATE`` (the
write lock first, so keys absent before the insert are the ones it stored), the receipts and their status
and opt-out rows, commit. The statements are compiled once and handed to the driver's ``executemany`` with
the columns' own bind processing: Core would rebuild each row's parameters, a quarter of the daemon's CPU.
"""

from __future__ import annotations

import operator
import os
import sqlite3
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, TypeAlias

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine

from mns_consumer.errors import ConfigError, SinkUnavailable
from mns_consumer.files import check_can_create_in, create_private_file, describe_os_error, needs_operator
from mns_consumer.sinks.database import DatabaseSink, DatabaseSinkConfig, Projections, UtcDateTime, stored_among

log = structlog.get_logger(__name__)

_Statement: TypeAlias = tuple[str, Callable[[Mapping[str, Any]], Any], list[tuple[int, Callable[[Any], Any]]]]
"""A compiled statement: its SQL, what reads a row's values in parameter order, and the bind processing
of the parameters that have any (by position)."""


# Equal datetimes are the same instant, whatever their offsets, and so have the same text; a burst of
# receipts shares a few seconds.
@lru_cache(maxsize=256)
def sqlite_utc_text(value: datetime | None) -> str | None:
    """What :class:`UtcDateTime` and then SQLAlchemy's SQLite ``DATETIME`` make of a time, in one step.

    Raises:
        ValueError: If ``value`` is naive.
    """
    if value is None:
        return None
    utc = UtcDateTime.as_utc(value)
    # "YYYY-MM-DD HH:MM:SS[.ffffff]+00:00": the fraction is left out when it is zero.
    text = utc.isoformat(" ")[:-6]
    return text if utc.microsecond else text + ".000000"


class SqliteSink(DatabaseSink):
    """Inserts receipts into a table of a SQLite file; one transaction at a time, from the daemon."""

    default_pool_size = 1  # SQLite writes one transaction at a time; more connections only hold page caches.

    def __init__(self, name: str, config: DatabaseSinkConfig) -> None:
        super().__init__(name, config)
        self._statements: dict[sa.Insert, _Statement] = {}

    def probe(self) -> str:
        """:meth:`DatabaseSink.probe`, creating nothing: a missing file's folder is checked instead."""
        path = self._path()
        if path is not None and not os.path.exists(path):
            try:
                found = check_can_create_in(os.path.dirname(path))
            except OSError as exc:
                raise SinkUnavailable(
                    self.name, f"cannot create the SQLite database {path}: {describe_os_error(exc, path)}"
                ) from exc
            return f"{path} does not exist yet and will be created (0600) at start; {found}"
        return super().probe()

    def read_engine(self) -> Engine:
        """An engine on the existing file that neither creates it nor sets pragmas (``mode=rw``)."""
        path = self._path()
        if path is None:
            return super().read_engine()
        uri = Path(path).absolute().as_uri() + "?mode=rw"
        connect = partial(sqlite3.connect, uri, uri=True, timeout=self.config.busy_timeout_seconds)
        return sa.create_engine("sqlite://", creator=connect, poolclass=sa.pool.NullPool)

    def _path(self) -> str | None:
        """The database file, or None for ``file:`` URIs SQLite resolves itself."""
        url = self.config.engine_url()
        if not url.database or url.query.get("uri"):
            return None
        return url.database

    def _prepare(self) -> None:
        """Create a missing file 0600 (folders 0700) before SQLite does, whatever the umask.

        Raises:
            ConfigError: If it can never be created as things stand (a regular file in the way, no
                permission, a read-only mount).
            SinkUnavailable: If it cannot be created now for a reason that may pass (a full disk).
        """
        path = self._path()
        if path is None:
            return
        try:
            create_private_file(path)
        except OSError as exc:
            problem = f"cannot create the SQLite database {path}: {describe_os_error(exc, path)}"
            if needs_operator(exc):
                raise ConfigError(
                    f"sink {self.name!r}",
                    f"sinks.{self.name}.url",
                    problem,
                    "make its folder one the daemon may write to, or choose another path",
                ) from exc
            raise SinkUnavailable(self.name, problem) from exc

    def _connect_args(self) -> dict[str, Any]:
        return {"timeout": self.config.busy_timeout_seconds, "check_same_thread": False}

    def _watch(self, engine: Engine) -> None:
        """Nothing to watch: a file neither drops connections nor stops answering."""

    def _set_up_session(self, cursor: Any) -> None:
        cursor.execute("PRAGMA journal_mode=WAL")
        mode = cursor.fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("sink.database.no_wal", sink=self.name, journal_mode=mode)
        # FULL: with WAL, NORMAL may lose the last commits on power loss, which the contract forbids.
        cursor.execute("PRAGMA synchronous=FULL")
        # Receipts scatter over five B-trees, so a checkpoint of SQLite's default 1000 pages copies nearly
        # every page it logged; over 10000 most were changed several times and are copied once.
        cursor.execute(f"PRAGMA wal_autocheckpoint={int(self.config.wal_autocheckpoint_pages)}")

    def _insert_projecting(self, connection: sa.Connection, rows: list[dict[str, Any]], wanted: Projections) -> None:
        """Insert the receipts and project the ones absent before: the write lock comes first, so no other
        writer can store one of them in between."""
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        before = stored_among(connection, self._lookup, wanted) if wanted else set()
        self._execute_many(connection, self._insert_into, rows)
        self._project(connection, [part for key, part in wanted.items() if key not in before])

    def _execute_many(self, connection: sa.Connection, statement: sa.Insert, rows: list[dict[str, Any]]) -> None:
        """Run ``statement`` once per row through the driver's ``executemany``, its values bind-processed."""
        sql, values_of, processors = self._statements.get(statement) or self._compile(
            connection.dialect, statement, list(rows[0])
        )
        params = []
        for row in rows:
            values = list(values_of(row))
            for index, process in processors:
                values[index] = process(values[index])
            params.append(tuple(values))
        connection.exec_driver_sql(sql, params)

    def _compile(self, dialect: sa.Dialect, statement: sa.Insert, columns: list[str]) -> _Statement:
        """Compile once: the SQL, what reads a row's values in order, the processing each column's type
        gives the dialect (so the values stored are Core's; tested)."""
        compiled = statement.compile(dialect=dialect, column_keys=columns)
        order = list(compiled.positiontup or [])
        processors: list[tuple[int, Callable[[Any], Any]]] = []
        for index, key in enumerate(order):
            column_type = compiled.binds[key].type
            if isinstance(column_type, UtcDateTime):
                # UtcDateTime's conversion and then SQLite's DATETIME text, in one step (tested equal).
                processors.append((index, sqlite_utc_text))
            elif (process := column_type.dialect_impl(dialect).bind_processor(dialect)) is not None:
                processors.append((index, process))
        # Every parameter is a column of the row (no statement here binds a constant).
        self._statements[statement] = (str(compiled), operator.itemgetter(*order), processors)
        return self._statements[statement]
