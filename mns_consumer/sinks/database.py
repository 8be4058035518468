"""Store receipts as rows of one SQL table through SQLAlchemy Core: :class:`DatabaseSinkConfig`, :class:`DatabaseSink`.

PostgreSQL (``postgresql+psycopg://``, extra ``postgres``) and MySQL/MariaDB (``mysql+pymysql://``, extra
``mysql``) run here; a ``sqlite:///`` URL builds :class:`~mns_consumer.sinks.sqlite.SqliteSink` on the same
:func:`receipts_table` (documented in docs/sinks.md). Semantics of :meth:`DatabaseSink.write`:

* One transaction per batch, committed before ``write`` returns (durability is the server's defaults:
  ``synchronous_commit=on``, ``innodb_flush_log_at_trx_commit=1``).
* Duplicates count as accepted and are stored once: ``ON CONFLICT (dedupe_key) DO NOTHING``, on MySQL a
  no-op ``ON DUPLICATE KEY UPDATE``; never ``INSERT IGNORE``, which would also turn data errors into silent
  truncation (MySQL sessions add ``STRICT_ALL_TABLES`` for the same reason).
* A receipt the table cannot hold is rejected with the reason, the rest stored; if the server still
  refuses the batch for its data, rows are retried one by one and only those refused are rejected.
* Connection loss, timeouts, locks and too many connections raise :class:`~mns_consumer.errors.SinkUnavailable`
  (password scrubbed) and discard the pool; a deadlock is retried at once, twice. Each call to a server has
  a deadline, ``call_deadline_seconds`` (:mod:`~mns_consumer.sinks.call_deadline`).
* The status and opt-out tables (:mod:`~mns_consumer.sinks.status_tables`) are written in the same
  transaction, for the receipts that transaction inserted.
"""

from __future__ import annotations

import importlib
import json
import math
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypeAlias

import sqlalchemy as sa
import structlog
from pydantic import ConfigDict as PydanticConfigDict
from pydantic import Field, SecretStr, field_serializer, field_validator, model_validator
from sqlalchemy.engine import URL, Dialect, Engine, make_url
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement

from mns_consumer.errors import ConfigError, DeadlinePassed, SinkUnavailable
from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.base import SinkConfig, SinkResult
from mns_consumer.sinks.call_deadline import CallDeadlines

log = structlog.get_logger(__name__)

DEFAULT_TABLE: Final = "sms_receipts"
"""The table name used when ``table`` is not set."""

TABLE_NAME_PATTERN: Final = re.compile(r"[a-z_][a-z0-9_]{0,39}")
"""Table names: lower case (PostgreSQL folds unquoted names, MySQL on Linux does not), at most 40
characters so that ``ix_<table>_phone_number`` fits PostgreSQL's 63-character identifiers."""

INDEXED_COLUMNS: Final = ("phone_number", "biz_id", "out_id", "reported_at")
"""Columns with a (non-unique) index: the lookups people run on receipts."""

OUTCOME_COLUMNS: Final = ("outcome_class", "retryable", "opt_out")
"""Nullable columns added after the first release: added to an older table at start (``create_table: true``),
else written only when the table has them."""

MYSQL_TABLE_OPTIONS: Final[Mapping[str, Any]] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}
"""Every table's MySQL options: InnoDB, 4-byte UTF-8, compared bytewise."""

_MYSQL: Final = ("mysql", "mariadb")
_DRIVERS: Final[Mapping[str, str]] = {"sqlite": "pysqlite", "postgresql": "psycopg", "mysql": "pymysql"}
_EXTRAS: Final[Mapping[str, str]] = {"postgresql": "postgres", "mysql": "mysql"}
_MEDIUMTEXT_BYTES: Final = 2**24 - 1
_INT32: Final = 2**31
_DEADLOCK_ATTEMPTS: Final = 3
_LOOKUP_CHUNK: Final = 500
"""Dedupe keys per SELECT of :func:`stored_among`."""
_REASON_CHARS: Final = 300
_DEFAULT_STATEMENT_SECONDS: Final = 30.0
_CALL_DEADLINE_MARGIN_SECONDS: Final = 15.0
# PyMySQL raises these data errors as OperationalError (it maps unknown codes >= 1000 that way):
# 1292 truncated wrong value, 1300 invalid character string, 1367 illegal value, 3140 invalid JSON,
# 3819 and 4025 CHECK constraint violated (MySQL, MariaDB).
_MYSQL_DATA_ERRNOS: Final = frozenset({1292, 1300, 1367, 3140, 3819, 4025})
_MYSQL_DEADLOCK_ERRNO: Final = 1213
_PG_RETRYABLE_SQLSTATES: Final = frozenset({"40P01", "40001"})
# psycopg raises read_only_sql_transaction (a primary demoted during failover) as InternalError.
_PG_UNAVAILABLE_SQLSTATES: Final = frozenset({"25006"})
_SECRET_QUERY_KEY = re.compile(r"pass|secret|token", re.IGNORECASE)
# A NUL as JSON encodes it: \u0000 after an even number of backslashes (not the text "\\u0000").
_JSON_NUL: Final = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_json_dumps: Callable[[Any], str] = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


class _EncodedJson(str):
    """``extra`` already encoded (and checked) by :func:`_storable_extra`: bound as it is, not encoded again."""

    __slots__ = ()


_EMPTY_EXTRA: Final = _EncodedJson(_json_dumps({}))


def _json_serializer(value: Any) -> str:
    return value if isinstance(value, _EncodedJson) else _json_dumps(value)


class DatabaseUrl(SecretStr):
    """A SQLAlchemy URL that may embed a password: shown everywhere with the password and password-like query
    parameters replaced by ``***`` (``"<invalid database URL>"`` if it does not parse)."""

    def _display(self) -> str:
        # pydantic's documented hook: str() and repr() show this.
        try:
            parsed = make_url(self.get_secret_value())
        except (sa.exc.ArgumentError, ValueError):
            return "<invalid database URL>"
        placeholder = "MNSCONSUMERMASKED"
        query = {key: placeholder if _SECRET_QUERY_KEY.search(key) else value for key, value in parsed.query.items()}
        return parsed.set(query=query).render_as_string(hide_password=True).replace(placeholder, "***")


class DatabaseSinkConfig(SinkConfig):
    """``type: database``: insert receipts into a SQLite, PostgreSQL or MySQL/MariaDB table."""

    # A pydantic error would otherwise echo the URL, password included.
    model_config = PydanticConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    sink_type = "database"

    type: Literal["database"] = Field(default="database", description="Sink type name.")
    url: DatabaseUrl = Field(
        description="SQLAlchemy URL: sqlite:///path/receipts.db, postgresql+psycopg://user:password@host:5432/db "
        "or mysql+pymysql://user:password@host:3306/db. Shown with the password masked. Required."
    )
    table: str = Field(
        default=DEFAULT_TABLE,
        description="Table name: lower-case letters, digits and _, at most 40 characters. Default: sms_receipts.",
    )
    create_table: bool = Field(
        default=True,
        description="Create the table and its indexes when missing. With false, the table must exist with the "
        "documented columns and a unique dedupe_key. Default: true.",
    )
    pool_size: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Connections kept open, connections; one per concurrent write. Default: 4, and 1 for SQLite, "
        "which writes one transaction at a time (more connections would only each hold a page cache).",
    )
    connect_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Timeout to connect, seconds (PostgreSQL rounds up to whole seconds, at least 2). Default: 5.",
    )
    statement_timeout_seconds: float | None = Field(
        default=30.0,
        gt=0,
        description="Longest a statement may run, seconds: PostgreSQL statement_timeout, MySQL client read/write "
        "timeout; unset for no limit. Not used by SQLite (see busy_timeout_seconds). Default: 30.",
    )
    call_deadline_seconds: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="PostgreSQL and MySQL only: longest one write (connection check, insert, commit) may wait for "
        "the server, seconds; past it the statement is cancelled, the connection dropped and the sink reported "
        "unavailable, so a server that stops answering cannot stall the queue. Keep it above "
        "statement_timeout_seconds. Default: statement_timeout_seconds + 15 (45, also when that is unset).",
    )
    busy_timeout_seconds: float = Field(
        default=5.0,
        ge=0,
        description="SQLite only: how long a write waits for another process's lock before the sink reports "
        "itself unavailable, seconds. Default: 5.",
    )
    wal_autocheckpoint_pages: int = Field(
        default=10000,
        ge=0,
        description="SQLite only: pages the write-ahead log may hold before a commit copies them into the "
        "database file (a checkpoint), pages of 4 KiB by default; 0 turns checkpoints off (never do that unless "
        "another process runs them). Larger values write a page changed several times once and raise "
        "throughput; the log file grows to about this size. SQLite's own default is 1000. Default: 10000.",
    )
    status_table: str | bool | None = Field(
        default=True,
        description="The status table: one row per sent message (biz_id, phone_number) with its current state "
        "(pending, delivered, failed, unknown), written in the receipts' transaction. true names it "
        "<table>_status; a name (lower-case letters, digits and _, at most 40 characters) chooses it; false or "
        "null turns it off. Default: true.",
    )
    opt_out_table: str | bool | None = Field(
        default=True,
        description="The opt-out table: one row per (phone_number, sign_name, dest_code) that replied with an "
        "unsubscribe keyword, written in the receipts' transaction. true names it <table>_opt_outs; a name "
        "chooses it; false or null turns it off. Default: true.",
    )

    status_unknown_after_hours: float = Field(
        default=72.0,
        gt=0,
        le=24 * 365,
        description="Hours after sending past which `mns-consumer status sweep` marks a status row still pending "
        "as unknown (Alibaba's console does the same at 72 hours); a later final report still decides it. "
        "Default: 72.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_writer_process(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "writer_process" in data:
            raise ValueError(
                "writer_process is no longer supported: SQLite inserts run in the daemon, which measured no "
                "costlier than a writer process (docs/benchmarks.md); remove the key"
            )
        return data

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: DatabaseUrl) -> DatabaseUrl:
        try:
            url = make_url(value.get_secret_value())
        except (sa.exc.ArgumentError, ValueError):
            raise ValueError("not a database URL (e.g. postgresql+psycopg://user:password@host/db)") from None
        backend = _backend_name(url)
        if backend not in _DRIVERS:
            raise ValueError(f"unsupported database {url.get_backend_name()!r}; use sqlite, postgresql or mysql")
        driver = url.get_driver_name()
        if "+" in url.drivername and driver != _DRIVERS[backend]:
            raise ValueError(f"unsupported driver {driver!r}; use {backend}+{_DRIVERS[backend]}")
        if backend == "sqlite" and (url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"):
            raise ValueError("an in-memory SQLite database is not durable; give a file path: sqlite:///path/to.db")
        return value

    @field_validator("table", "status_table", "opt_out_table")
    @classmethod
    def _check_table_name(cls, value: str | bool | None) -> str | bool | None:
        if isinstance(value, str) and not TABLE_NAME_PATTERN.fullmatch(value):
            raise ValueError(
                "a table name must be lower-case letters, digits and _, not start with a digit, at most 40"
            )
        return value

    def status_table_name(self) -> str | None:
        """The status table's name, or None when it is turned off."""
        return _projection_name(self.status_table, f"{self.table}_status")

    def opt_out_table_name(self) -> str | None:
        """The opt-out table's name, or None when it is turned off."""
        return _projection_name(self.opt_out_table, f"{self.table}_opt_outs")

    @field_serializer("url", when_used="json")
    def _serialize_url(self, value: DatabaseUrl) -> str:
        return str(value)

    @property
    def display_url(self) -> str:
        """The URL with its password masked, for logs and messages."""
        return str(self.url)

    def call_deadline(self) -> float:
        """The deadline of each call to a PostgreSQL or MySQL server, seconds (see ``call_deadline_seconds``)."""
        if self.call_deadline_seconds is not None:
            return self.call_deadline_seconds
        return (self.statement_timeout_seconds or _DEFAULT_STATEMENT_SECONDS) + _CALL_DEADLINE_MARGIN_SECONDS

    def engine_url(self) -> URL:
        """The URL the engine connects to: the default driver filled in, utf8mb4 forced on MySQL."""
        url = make_url(self.url.get_secret_value())
        backend = _backend_name(url)
        url = url.set(drivername=f"{url.get_backend_name()}+{_DRIVERS[backend]}")
        if backend == "mysql":
            url = url.update_query_dict({"charset": "utf8mb4"})
        return url

    def build(self, name: str) -> DatabaseSink:
        """The sink ``sinks.<name>`` described by this configuration, not opened yet."""
        if _backend_name(make_url(self.url.get_secret_value())) == "sqlite":
            from mns_consumer.sinks.sqlite import SqliteSink  # noqa: PLC0415  (it builds on this module)

            return SqliteSink(name, self)
        return DatabaseSink(name, self)


def _projection_name(setting: str | bool | None, default: str) -> str | None:
    if isinstance(setting, str):
        return setting
    return default if setting else None


def _backend_name(url: URL) -> str:
    backend = url.get_backend_name()
    return "mysql" if backend in _MYSQL else backend


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """An aware datetime stored as a UTC instant: TIMESTAMPTZ on PostgreSQL, naive UTC elsewhere."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        """The column type per backend (microsecond precision on MySQL, which defaults to seconds)."""
        if dialect.name == "postgresql":
            return dialect.type_descriptor(dialect_module("postgresql").TIMESTAMP(timezone=True))
        if dialect.name in _MYSQL:
            return dialect.type_descriptor(dialect_module("mysql").DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC; drop the zone where the column has none.

        Raises:
            ValueError: If ``value`` is naive.
        """
        if value is None:
            return None
        utc = self.as_utc(value)
        return utc if dialect.name == "postgresql" else utc.replace(tzinfo=None)

    @staticmethod
    def as_utc(value: datetime) -> datetime:
        """``value`` in UTC; the one check every backend's bind goes through.

        Raises:
            ValueError: If ``value`` is naive.
        """
        if value.utcoffset() is None:
            raise ValueError("naive datetime: the database sink stores only timezone-aware times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Read back as an aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class utc_now(FunctionElement[datetime]):  # noqa: N801  (SQL functions are lower case, like sa.func.now)
    """The server's current time as the column default: ``CURRENT_TIMESTAMP`` at the column's precision."""

    type = UtcDateTime()
    inherit_cache = True


@compiles(utc_now)
def _compile_utc_now(element: utc_now, compiler: SQLCompiler, **kw: Any) -> str:
    # MySQL refuses a default whose precision differs from the column's DATETIME(6).
    return "CURRENT_TIMESTAMP(6)" if compiler.dialect.name in _MYSQL else "CURRENT_TIMESTAMP"


def dialect_module(name: str) -> Any:
    """One of SQLAlchemy's dialect packages, imported on first use.

    Each imports all its drivers' modules; a daemon writing to SQLite saves about 3.5 MiB of RSS by
    never loading the PostgreSQL and MySQL ones (``bench/daemon_bench.py``, 8 queues).
    """
    return importlib.import_module(f"sqlalchemy.dialects.{name}")


def receipts_table(metadata: sa.MetaData, name: str = DEFAULT_TABLE, backend: str | None = None) -> sa.Table:
    """The documented receipts table, with its unique constraint and indexes, added to ``metadata``.

    ``backend`` (``postgresql``, ``mysql`` or ``sqlite``) defines it for that backend alone, importing
    only its dialect; None defines it for every backend.
    """
    text: sa.types.TypeEngine[Any] = sa.Text()
    extra: sa.types.TypeEngine[Any] = sa.JSON()
    raw: sa.types.TypeEngine[Any] = sa.LargeBinary()
    if backend in (None, "mysql"):
        mysql = dialect_module("mysql")
        text = text.with_variant(mysql.MEDIUMTEXT(), *_MYSQL)
        raw = raw.with_variant(mysql.LONGBLOB(), *_MYSQL)
    if backend in (None, "postgresql"):
        extra = extra.with_variant(dialect_module("postgresql").JSONB(), "postgresql")
    columns: list[sa.Column[Any]] = [
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("dedupe_key", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message_type", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("queue", sa.String(255)),
        sa.Column("phone_number", sa.String(32)),
        sa.Column("biz_id", sa.String(64)),
        sa.Column("out_id", sa.String(255)),
        sa.Column("status", sa.String(32)),
        sa.Column("error_code", sa.String(128)),
        sa.Column("error_message", text),
        sa.Column("sent_at", UtcDateTime()),
        sa.Column("reported_at", UtcDateTime()),
        sa.Column("sms_parts", sa.Integer()),
        sa.Column("content", text),
        sa.Column("sign_name", sa.String(255)),
        sa.Column("template_code", sa.String(128)),
        sa.Column("reason", text),
        sa.Column("extra", extra, nullable=False),
        sa.Column("raw", raw, nullable=False),
        sa.Column("stored_at", UtcDateTime(), nullable=False, server_default=utc_now()),
        *(
            sa.Column(column, sa.String(32) if column == "outcome_class" else sa.Boolean())
            for column in OUTCOME_COLUMNS
        ),
    ]
    return sa.Table(
        name,
        metadata,
        *columns,
        sa.UniqueConstraint("dedupe_key", name=f"uq_{name}_dedupe_key"),
        *(sa.Index(f"ix_{name}_{column}", column) for column in INDEXED_COLUMNS),
        **MYSQL_TABLE_OPTIONS,
    )


_SHAPE: Final = receipts_table(sa.MetaData(), backend="sqlite")
"""The table as defined above; the row checks and column lists below are read from it."""
WRITTEN_COLUMNS: Final = tuple(
    column.name
    for column in _SHAPE.columns
    if not column.primary_key and column.server_default is None and column.name not in OUTCOME_COLUMNS
)
"""Columns the sink writes; an existing table must have all of them (``id`` and ``stored_at`` are the
table's own)."""
TIME_COLUMNS: Final = tuple(name for name in WRITTEN_COLUMNS if isinstance(_SHAPE.c[name].type, UtcDateTime))
# (column, length limit or None, required) of every text column (Text is a String without a length).
_TEXT_CHECKS: Final = tuple(
    (column.name, column.type.length, not column.nullable)
    for column in (_SHAPE.c[name] for name in WRITTEN_COLUMNS)
    if isinstance(column.type, sa.String)
)
# The columns a row takes straight from the receipt's attributes.
_PLAIN_COLUMNS: Final = tuple(name for name in WRITTEN_COLUMNS if name not in ("extra", "raw"))
_plain_values: Final = operator.attrgetter(*_PLAIN_COLUMNS)
_text_values: Final = operator.attrgetter(*(column for column, _, _ in _TEXT_CHECKS))


_Contribution: TypeAlias = tuple[Any, Any]
"""A receipt's (StatusUpdate | None, OptOutUpdate | None) (:mod:`~mns_consumer.sinks.status_tables`)."""
Projections: TypeAlias = dict[str, _Contribution]
"""Dedupe key -> what that receipt contributes to the status and opt-out tables."""


class _RefusedDataError(Exception):
    """The database refused a batch for its data (not for its availability); its text is the driver's."""


class DatabaseSink:
    """Inserts receipts into one table; duplicates are absorbed by the unique ``dedupe_key``.

    Thread-safe: concurrent ``write`` calls each use their own pooled connection.
    """

    default_pool_size = 4

    def __init__(self, name: str, config: DatabaseSinkConfig) -> None:
        self.name = name
        self.config = config
        self._engine: Engine | None = None
        self._backend = _backend_name(config.engine_url())
        self._table = receipts_table(sa.MetaData(), config.table, self._backend)
        self._deadlines: CallDeadlines | None = None
        # Set with the deadlines (_watch), the only ones that use them.
        self._ping: Callable[[Any], object]
        self._driver_error: type[Exception]
        # The outcome columns the table has (all of them once created or upgraded by this sink).
        self._outcome_columns: tuple[str, ...] = OUTCOME_COLUMNS
        # Imported here: status_tables builds on this module's column types, so it imports this module.
        from mns_consumer.sinks.status_tables import opt_out_table, status_table  # noqa: PLC0415

        status_name, opt_out_name = config.status_table_name(), config.opt_out_table_name()
        self._status_table = status_table(sa.MetaData(), status_name) if status_name else None
        self._opt_out_table = opt_out_table(sa.MetaData(), opt_out_name) if opt_out_name else None
        self._upserts: list[tuple[int, sa.Insert]] | None = None
        insert = dialect_module(self._backend).insert(self._table)
        if self._backend in ("postgresql", "sqlite"):
            self._insert_into: sa.Insert = insert.on_conflict_do_nothing(index_elements=["dedupe_key"])
        else:
            # A no-op update, unlike INSERT IGNORE, lets every other error (data too long, ...) raise.
            self._insert_into = insert.on_duplicate_key_update(dedupe_key=self._table.c.dedupe_key)
        self._lookup = key_lookup(self._table)
        # PostgreSQL: only the rows this transaction inserted. xmin is 32 bits; txid_current() (any
        # PostgreSQL version) carries the epoch above them.
        self._inserted_here = self._lookup.where(sa.text("xmin::text::bigint = txid_current() % 4294967296"))

    def __repr__(self) -> str:
        return f"DatabaseSink(name={self.name!r}, url={self.config.display_url!r}, table={self.config.table!r})"

    def open(self) -> None:
        """Connect, apply the session settings, then create the table or check the existing one.

        Raises:
            SinkUnavailable: If the database cannot be reached (or the SQLite file is locked) now.
            ConfigError: If the driver is not installed, or the table is missing (with ``create_table:
                false``) or lacks a column or the unique ``dedupe_key``.
        """
        if self._engine is not None:
            return
        self._prepare()
        engine = self._create_engine()
        try:
            with self._call(), self._availability(engine):
                if self.config.create_table:
                    self._create_table(engine)
                self._check_table(engine)
        except BaseException:
            engine.dispose()
            if self._deadlines is not None:
                self._deadlines.close()
            raise
        self._engine = engine
        log.info("sink.database.opened", sink=self.name, url=self.config.display_url, table=self.config.table)

    def write(self, batch: Sequence[Receipt]) -> SinkResult:
        """Insert a batch (possibly with duplicates) in one committed transaction; see the module docstring.

        Returns:
            Accepted dedupe keys (stored now or before) and rejected ones with their reasons.

        Raises:
            SinkUnavailable: If the database is unreachable, timed out or locked; nothing may be assumed
                stored.
            RuntimeError: If the sink is not open.
        """
        engine = self._open_engine()
        rows, rejected = self._rows(batch)
        projections = self._projections(batch, rows)
        if rows:
            try:
                self._insert(engine, rows, projections)
            except _RefusedDataError as refused:
                log.warning(
                    "sink.database.batch_refused", sink=self.name, rows=len(rows), error=str(refused), fallback="rows"
                )
                for row in rows:
                    try:
                        self._insert(engine, [row], projections)
                    except _RefusedDataError as one:
                        rejected[row["dedupe_key"]] = f"the database refused it: {one}"
        accepted = frozenset(row["dedupe_key"] for row in rows if row["dedupe_key"] not in rejected)
        return SinkResult(accepted=accepted, rejected=rejected)

    def stored_keys(self, keys: Sequence[str]) -> frozenset[str]:
        """Which of these dedupe keys the table holds already (backfill reports new and old apart by it).

        Raises:
            SinkUnavailable: If the database is unreachable, timed out or locked.
            RuntimeError: If the sink is not open.
        """
        engine = self._open_engine()
        with self._availability(engine), engine.connect() as connection:
            return frozenset(stored_among(connection, self._lookup, keys))

    def _open_engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError(f"database sink {self.name!r} is not open")
        return self._engine

    def close(self) -> None:
        """Close every pooled connection; the sink is not used afterwards."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()
        if self._deadlines is not None:
            self._deadlines.close()

    def probe(self) -> str:
        """Reach the database once and change nothing: ``SELECT 1``, then a look at the table.

        Returns:
            What was found: the round trip and whether the table exists (or will be created).

        Raises:
            SinkUnavailable: If the database cannot be reached or refuses the query (no password shown).
            ConfigError: If the driver is missing, or the table is missing with ``create_table: false``
                or lacks a documented column or the unique ``dedupe_key``.
        """
        engine = self.read_engine()
        table = self.config.table
        try:
            with self._availability(engine):
                with engine.connect() as connection:
                    connection.execute(sa.text("SELECT 1")).scalar_one()
                    present = sa.inspect(connection).has_table(table)
                if present:
                    # A check changes nothing: missing outcome columns are added at start, not here.
                    self._check_table(engine, upgrade=False)
        except sa.exc.DBAPIError as exc:
            # Not an availability error, e.g. SQLite's "file is not a database": still a failed check.
            raise SinkUnavailable(self.name, self._scrub(_describe(exc))) from exc
        finally:
            engine.dispose()
        if present:
            return f"SELECT 1 answered; table {table!r} exists with the documented columns ({self.config.display_url})"
        if not self.config.create_table:
            raise self._table_error(f"table {table!r} does not exist in {self.config.display_url}")
        return f"SELECT 1 answered; table {table!r} will be created at start ({self.config.display_url})"

    def _prepare(self) -> None:
        """What ``open`` does before connecting (SQLite creates its file)."""

    def read_engine(self) -> Engine:
        """An engine on the sink's database that creates nothing, for ``probe`` and read-only commands
        (``reconcile``) on a sink that is not opened; the caller disposes of it."""
        return self._create_engine()

    def _create_engine(self) -> Engine:
        config = self.config
        url = config.engine_url()
        options: dict[str, Any] = {
            "pool_size": config.pool_size or self.default_pool_size,
            "max_overflow": 0,
            "pool_timeout": config.statement_timeout_seconds or 30.0,
            # SQLite needs no ping (a file does not drop connections, and a ping would cost a statement per
            # transaction); servers get theirs from _on_checkout, where the call's deadline bounds it.
            "pool_pre_ping": False,
            # Exception messages must not carry receipt data (phone numbers, reply text).
            "hide_parameters": True,
            "json_serializer": _json_serializer,
            "connect_args": self._connect_args(),
        }
        try:
            engine = sa.create_engine(url, **options)
        except ImportError as exc:
            extra = _EXTRAS.get(self._backend, "")
            raise ConfigError(
                f"sink {self.name!r}",
                f"sinks.{self.name}.url",
                f"the driver for {config.display_url} is not installed ({exc.name or exc})",
                f"pip install 'mns-consumer[{extra}]'" if extra else "",
            ) from None
        sa.event.listen(engine, "connect", self._on_connect)
        self._watch(engine)
        return engine

    def _watch(self, engine: Engine) -> None:
        """Give every call to the server a deadline (see :mod:`mns_consumer.sinks.call_deadline`).

        psycopg exposes its socket and a bounded cancel, so a watchdog breaks late PostgreSQL calls;
        PyMySQL exposes neither, and its own read and write timeouts (at most the deadline) end them.
        """
        if self._backend == "postgresql":
            self._deadlines = CallDeadlines(
                self.name,
                self.config.call_deadline(),
                cancel=lambda connection, seconds: connection.cancel_safe(timeout=seconds),
                fileno=operator.methodcaller("fileno"),
            )
        else:
            self._deadlines = CallDeadlines(self.name, self.config.call_deadline())
        self._ping = engine.dialect.do_ping
        self._driver_error = engine.dialect.loaded_dbapi.Error
        sa.event.listen(engine, "do_connect", self._on_do_connect)
        sa.event.listen(engine, "checkout", self._on_checkout)
        for returned in ("checkin", "invalidate", "soft_invalidate", "close", "detach"):
            sa.event.listen(engine, returned, self._on_return)

    def _call(self) -> AbstractContextManager[None]:
        """One call to the database: bounded by the deadline on servers, unbounded for SQLite."""
        return nullcontext() if self._deadlines is None else self._deadlines.call()

    def _on_do_connect(self, dialect: Dialect, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        """A connection opened during a call may take only what is left of the call's deadline."""
        remaining = self._deadlines.remaining_seconds() if self._deadlines is not None else None
        if remaining is None:
            return
        if remaining <= 0:
            raise DeadlinePassed(self._no_answer())
        if self._backend == "postgresql":
            cparams["connect_timeout"] = max(2, min(int(cparams["connect_timeout"]), math.ceil(remaining)))
        else:
            cparams["connect_timeout"] = min(float(cparams["connect_timeout"]), remaining)

    def _on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        """Hand the pooled connection to the calling thread's call, then check it is still alive.

        This is SQLAlchemy's pre-ping done here, so that the deadline watchdog knows the connection
        being pinged: a ping sent to a server that stopped answering would otherwise wait forever.
        """
        deadlines = self._deadlines
        if deadlines is None:
            return
        if deadlines.passed():
            raise DeadlinePassed(self._no_answer())
        deadlines.attach(dbapi_connection)
        if record.info.pop(_FRESH, False):
            return
        try:
            self._ping(dbapi_connection)
        except self._driver_error as exc:
            # As SQLAlchemy's own pre-ping does: the pool drops every connection it holds and opens a new one.
            raise sa.exc.InvalidatePoolError(f"ping failed: {_describe(exc)}") from exc

    def _on_return(self, dbapi_connection: Any, record: Any, *args: Any) -> None:
        if self._deadlines is not None:
            self._deadlines.release(dbapi_connection)

    def _connect_args(self) -> dict[str, Any]:
        config = self.config
        if self._backend == "postgresql":
            # libpq wants whole seconds and treats anything below 2 as 2.
            seconds = max(2, math.ceil(config.connect_timeout_seconds))
            args: dict[str, Any] = {
                "connect_timeout": seconds,
                "application_name": "mns-consumer",
                # Keepalives notice a server that vanished without a reset while a write waits.
                "keepalives": 1,
                "keepalives_idle": seconds,
                "keepalives_interval": seconds,
                "keepalives_count": 3,
                # Data the server's side leaves unacknowledged this long (a network gone) ends the connection.
                "tcp_user_timeout": math.ceil(config.call_deadline() * 1000),
            }
            if config.statement_timeout_seconds is not None:
                args["options"] = f"-c statement_timeout={math.ceil(config.statement_timeout_seconds * 1000)}"
            return args
        # PyMySQL's client timeouts bound every read and write, the handshake's too, within the call's deadline.
        io_seconds = min(config.statement_timeout_seconds or math.inf, config.call_deadline())
        return {
            "connect_timeout": config.connect_timeout_seconds,
            "binary_prefix": True,
            "read_timeout": io_seconds,
            "write_timeout": io_seconds,
        }

    def _on_connect(self, dbapi_connection: Any, connection_record: Any) -> None:
        if self._deadlines is not None:
            # A new connection is used at once by the call that opened it, which needs no ping.
            self._deadlines.attach(dbapi_connection)
            connection_record.info[_FRESH] = True
        cursor = dbapi_connection.cursor()
        try:
            self._set_up_session(cursor)
        finally:
            cursor.close()

    def _set_up_session(self, cursor: Any) -> None:
        """What every new connection runs first."""
        if self._backend == "mysql":
            # STRICT_ALL_TABLES turns silent truncation into errors; UTC makes CURRENT_TIMESTAMP UTC.
            cursor.execute(
                "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'STRICT_ALL_TABLES'), "
                "time_zone = '+00:00'"
            )
            # InnoDB's default, stated: the status projection relies on one snapshot per transaction.
            cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")

    def _create_table(self, engine: Engine) -> None:
        for table in (self._table, self._status_table, self._opt_out_table):
            if table is None:
                continue
            try:
                with engine.begin() as connection:
                    table.create(connection, checkfirst=True)
            except sa.exc.DBAPIError as exc:
                if _is_unavailable(exc):
                    raise
                # Another daemon may have created it between our check and our CREATE.
                with engine.connect() as connection:
                    if not sa.inspect(connection).has_table(table.name):
                        raise
            else:
                log.info("sink.database.table_ready", sink=self.name, table=table.name)

    def _check_table(self, engine: Engine, *, upgrade: bool = True) -> None:
        table = self.config.table
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            if not inspector.has_table(table):
                raise self._table_error(f"table {table!r} does not exist in {self.config.display_url}")
            present = {column["name"] for column in inspector.get_columns(table)}
            unique_sets = [tuple(c["column_names"]) for c in inspector.get_unique_constraints(table)]
            unique_sets += [tuple(map(str, i["column_names"])) for i in inspector.get_indexes(table) if i.get("unique")]
            missing_projections = [
                projection
                for projection in (self._status_table, self._opt_out_table)
                if projection is not None and not inspector.has_table(projection.name)
            ]
        missing = [column for column in WRITTEN_COLUMNS if column not in present]
        if missing:
            raise self._table_error(
                f"table {table!r} lacks the column(s) {', '.join(missing)}",
                "add them as documented in docs/sinks.md, or use another table",
            )
        absent = [column for column in OUTCOME_COLUMNS if column not in present]
        if absent and self.config.create_table:
            if upgrade:
                self._add_columns(engine, absent)
                absent = []
        elif absent:
            log.warning(
                "sink.database.columns_missing",
                sink=self.name,
                table=table,
                columns=absent,
                fix="; ".join(self._add_column_statements(engine.dialect, absent)),
            )
        self._outcome_columns = tuple(column for column in OUTCOME_COLUMNS if column not in absent)
        self._drop_missing_projections(engine.dialect, missing_projections)
        if ("dedupe_key",) not in unique_sets:
            raise self._table_error(
                f"table {table!r} has no unique constraint on dedupe_key alone, so duplicates would be stored",
                f"add UNIQUE (dedupe_key), named uq_{table}_dedupe_key",
            )

    def _table_error(
        self, problem: str, fix: str = "set create_table: true, or create it with the documented columns"
    ) -> ConfigError:
        return ConfigError(f"sink {self.name!r}", f"sinks.{self.name}.table", problem, fix)

    def _drop_missing_projections(self, dialect: Dialect, missing: Sequence[sa.Table]) -> None:
        """A status or opt-out table that is missing (``create_table: false``) is not written, with a warning.

        The receipts are what the daemon must not lose; the projections can be rebuilt from them, so
        their absence is logged once at start with the statement to create them, and does not stop it.
        """
        for table in missing:
            create = str(sa.schema.CreateTable(table).compile(dialect=dialect)).strip()
            indexes = [str(sa.schema.CreateIndex(index).compile(dialect=dialect)) for index in table.indexes]
            setting = "status_table" if table is self._status_table else "opt_out_table"
            log.warning(
                "sink.database.table_missing",
                sink=self.name,
                table=table.name,
                fix="; ".join([create, *indexes]),
                setting=f"sinks.{self.name}.{setting}",
            )
            setattr(self, f"_{setting}", None)

    def _add_column_statements(self, dialect: Dialect, columns: Sequence[str]) -> list[str]:
        """``ALTER TABLE ... ADD COLUMN`` for each of ``columns``, in the dialect's own words."""
        table = dialect.identifier_preparer.quote(self.config.table)
        return [
            f"ALTER TABLE {table} ADD COLUMN {sa.schema.CreateColumn(self._table.c[column]).compile(dialect=dialect)}"
            for column in columns
        ]

    def _add_columns(self, engine: Engine, columns: Sequence[str]) -> None:
        """Upgrade a table from an earlier version: add the missing nullable outcome columns."""
        for statement in self._add_column_statements(engine.dialect, columns):
            try:
                with engine.begin() as connection:
                    connection.exec_driver_sql(statement)
            except sa.exc.DBAPIError as exc:
                # Another daemon sharing the table added it since we looked: fine. Anything else is
                # raised (and translated by open() as usual).
                if not _is_duplicate_column(exc):
                    raise
        log.info("sink.database.columns_added", sink=self.name, table=self.config.table, columns=list(columns))

    def _rows(self, batch: Sequence[Receipt]) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """Valid receipts as rows, one per dedupe key and sorted by it, plus the rejected keys."""
        rows: dict[str, dict[str, Any]] = {}
        rejected: dict[str, str] = {}
        for receipt in batch:
            key = receipt.dedupe_key
            if key in rows:
                continue
            verdict = _invalid_columns(receipt, self._backend) or _storable_extra(receipt.extra, self._backend)
            if isinstance(verdict, _EncodedJson):
                rows[key] = _row(receipt, verdict, self._outcome_columns)
                rejected.pop(key, None)
            else:
                rejected.setdefault(key, verdict)
        # One key order for every writer keeps concurrent transactions from locking rows in crossed order.
        return [rows[key] for key in sorted(rows)], rejected

    def _insert(self, engine: Engine, rows: list[dict[str, Any]], projections: Projections) -> None:
        wanted = {row["dedupe_key"]: projections[row["dedupe_key"]] for row in rows if row["dedupe_key"] in projections}
        for attempt in range(1, _DEADLOCK_ATTEMPTS + 1):
            try:
                with self._call(), self._availability(engine, data_refusals=True), engine.begin() as connection:
                    self._insert_projecting(connection, rows, wanted)
                return
            except SinkUnavailable as exc:
                cause = exc.__cause__
                if attempt == _DEADLOCK_ATTEMPTS or not (isinstance(cause, sa.exc.DBAPIError) and _is_deadlock(cause)):
                    raise
                # The server rolled the whole transaction back and asks for it to be retried.
                log.warning("sink.database.deadlock_retry", sink=self.name, attempt=attempt)

    def _projections(self, batch: Sequence[Receipt], rows: list[dict[str, Any]]) -> Projections:
        """What each storable receipt of the batch contributes to the status and opt-out tables."""
        if self._status_table is None and self._opt_out_table is None:
            return {}
        from mns_consumer.sinks.status_tables import opt_out_update, status_update  # noqa: PLC0415

        storable = {row["dedupe_key"] for row in rows}
        projections: Projections = {}
        for receipt in batch:
            key = receipt.dedupe_key
            if key not in storable or key in projections:
                continue
            status = status_update(receipt) if self._status_table is not None else None
            opt_out = opt_out_update(receipt) if self._opt_out_table is not None else None
            if status is not None or opt_out is not None:
                projections[key] = (status, opt_out)
        return projections

    def _insert_projecting(self, connection: sa.Connection, rows: list[dict[str, Any]], wanted: Projections) -> None:
        """Insert the receipts and, in the same transaction, project the ones this insert stored.

        How each backend tells "stored now" from "stored before" (a redelivery must not count twice):
        PostgreSQL looks the keys up among the rows whose ``xmin`` is this transaction's id (a row that
        already existed keeps its own: ``ON CONFLICT DO NOTHING`` does not touch it); MySQL
        reads the keys twice in one REPEATABLE READ snapshot (set per session), before and after the
        insert: a row another transaction committed meanwhile is invisible in the snapshot, so the keys
        that appear are exactly the ones this transaction inserted.
        """
        statement = self._insert_into
        if not wanted:
            connection.execute(statement, rows)
            return
        keys = list(wanted)
        if self._backend == "postgresql":
            # Not INSERT ... RETURNING: SQLAlchemy then sends one statement of every row's VALUES, which
            # psycopg re-parses on each call, 3.5 times slower at 256 rows (bench/sink_bench.py).
            connection.execute(statement, rows)
            inserted = stored_among(connection, self._inserted_here, keys)
            new = [key for key in keys if key in inserted]
        else:
            before = stored_among(connection, self._lookup, keys)
            connection.execute(statement, rows)
            after = stored_among(connection, self._lookup, keys)
            new = [key for key in keys if key in after and key not in before]
        self._project(connection, [wanted[key] for key in new])

    def _project(self, connection: sa.Connection, contributions: Sequence[_Contribution]) -> None:
        """Upsert the status and opt-out rows of new receipts, folded per row and in key order."""
        from mns_consumer.sinks.status_tables import fold  # noqa: PLC0415

        for index, statement in self._projection_upserts():
            updates = fold(contribution[index] for contribution in contributions)
            if updates:
                self._execute_many(connection, statement, [update.as_row() for update in updates])

    def _execute_many(self, connection: sa.Connection, statement: sa.Insert, rows: list[dict[str, Any]]) -> None:
        """Run ``statement`` once per row (SQLite hands it to the driver itself)."""
        connection.execute(statement, rows)

    def _projection_upserts(self) -> list[tuple[int, sa.Insert]]:
        """(index in a contribution, its table's upsert) of each projection table written; built once, after
        ``open`` settled which tables exist (the CASE expressions took a third of a 16-receipt write)."""
        if self._upserts is None:
            from mns_consumer.sinks.status_tables import opt_out_upsert, status_upsert  # noqa: PLC0415

            tables = ((0, self._status_table, status_upsert), (1, self._opt_out_table, opt_out_upsert))
            self._upserts = [
                (index, upsert(table, self._backend)) for index, table, upsert in tables if table is not None
            ]
        return self._upserts

    def sweep_unknown(self, older_than_hours: float, *, batch_rows: int = 1000, now: datetime | None = None) -> int:
        """Mark status rows still ``pending`` ``older_than_hours`` after sending (as of ``now``, default
        UTC now) as ``unknown``.

        Runs in transactions of at most ``batch_rows`` rows until none is left, so it never holds
        many row locks at once; safe to run from several hosts at the same time.

        Returns:
            How many rows became ``unknown``; 0 when the status table is turned off.

        Raises:
            SinkUnavailable: If the database is unreachable, timed out or locked.
            RuntimeError: If the sink is not open.
        """
        from mns_consumer.sinks.status_tables import sweep_statement  # noqa: PLC0415

        engine = self._open_engine()
        if self._status_table is None:
            return 0
        cutoff = (now or datetime.now(UTC)) - timedelta(hours=older_than_hours)
        statement = sweep_statement(self._status_table, self._backend, cutoff, batch_rows)
        swept = 0
        while True:
            with self._call(), self._availability(engine), engine.begin() as connection:
                changed = connection.execute(statement).rowcount
            swept += changed
            if changed < batch_rows:
                return swept

    @contextmanager
    def _availability(self, engine: Engine, *, data_refusals: bool = False) -> Iterator[None]:
        """Translate availability errors into SinkUnavailable (discarding the pool), and data errors into
        ``_RefusedDataError`` when ``data_refusals`` is set."""
        try:
            yield
        except (sa.exc.DBAPIError, sa.exc.DisconnectionError, sa.exc.TimeoutError, TimeoutError) as exc:
            if isinstance(exc, sa.exc.DBAPIError):
                if data_refusals and _is_data_error(exc):
                    raise _RefusedDataError(_describe(exc)) from exc
                if not _is_unavailable(exc):
                    raise
            engine.dispose()
            raise SinkUnavailable(self.name, self._scrub(self._late(_describe(exc)))) from exc

    def _late(self, reason: str) -> str:
        """The reason, saying so when the call's deadline ended it (the driver only saw a lost connection)."""
        if self._deadlines is None or not self._deadlines.passed() or "call_deadline_seconds" in reason:
            return reason
        return f"{self._no_answer()}: {reason}"

    def _no_answer(self) -> str:
        return f"no answer within call_deadline_seconds ({self.config.call_deadline():g} s)"

    def _scrub(self, reason: str) -> str:
        password = make_url(self.config.url.get_secret_value()).password
        if password:
            reason = reason.replace(str(password), "***")
        return f"{reason} ({self.config.display_url})"


def key_lookup(table: sa.Table) -> sa.Select[Any]:
    """``SELECT dedupe_key FROM table`` among the expanding parameter ``keys``, for :func:`stored_among`."""
    column = table.c.dedupe_key
    return sa.select(column).where(column.in_(sa.bindparam("keys", expanding=True)))


def stored_among(connection: sa.Connection, lookup: sa.Select[Any], keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` the :func:`key_lookup` (or a narrower one) finds, as ``connection`` sees the table.

    The keys go in bounded IN lists: SQLite allows 32,766 parameters at most, other servers a packet size.
    """
    unique = list(dict.fromkeys(keys))
    found: set[str] = set()
    for start in range(0, len(unique), _LOOKUP_CHUNK):
        found.update(connection.execute(lookup, {"keys": unique[start : start + _LOOKUP_CHUNK]}).scalars())
    return found


def _is_unavailable(exc: sa.exc.DBAPIError) -> bool:
    return (
        exc.connection_invalidated
        or isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)
        or getattr(exc.orig, "sqlstate", None) in _PG_UNAVAILABLE_SQLSTATES
    )


def _is_data_error(exc: sa.exc.DBAPIError) -> bool:
    return isinstance(exc, sa.exc.DataError | sa.exc.IntegrityError) or _mysql_errno(exc) in _MYSQL_DATA_ERRNOS


def _is_deadlock(exc: sa.exc.DBAPIError) -> bool:
    return _mysql_errno(exc) == _MYSQL_DEADLOCK_ERRNO or getattr(exc.orig, "sqlstate", None) in _PG_RETRYABLE_SQLSTATES


def _mysql_errno(exc: sa.exc.DBAPIError) -> int | None:
    args = getattr(exc.orig, "args", ())
    # PyMySQL errors are (errno, message); psycopg and sqlite3 errors carry only a message.
    if type(exc.orig).__module__.startswith("pymysql") and args and isinstance(args[0], int):
        return args[0]
    return None


_FRESH: Final = "mns_consumer_fresh"
"""Marks, in a pool record's ``info``, a connection opened and not yet checked out (so not pinged)."""


def _describe(exc: BaseException) -> str:
    """The driver's own message on one line, without SQL or parameters."""
    cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    message = " ".join(str(cause).split())
    if len(message) > _REASON_CHARS:
        message = message[: _REASON_CHARS - 3] + "..."
    return f"{type(cause).__name__}: {message}" if message else type(cause).__name__


def _row(receipt: Receipt, extra: _EncodedJson, outcome_columns: Sequence[str]) -> dict[str, Any]:
    row = dict(zip(_PLAIN_COLUMNS, _plain_values(receipt), strict=True))
    row["extra"] = extra
    row["raw"] = bytes(receipt.raw)
    for column in outcome_columns:
        row[column] = getattr(receipt, column)
    return row


def _is_duplicate_column(exc: sa.exc.DBAPIError) -> bool:
    """The column exists already (a concurrent upgrade): PostgreSQL 42701, MySQL 1060, SQLite's message."""
    return (
        getattr(exc.orig, "sqlstate", None) == "42701"
        or _mysql_errno(exc) == 1060
        or "duplicate column" in str(exc.orig).lower()
    )


def _invalid_columns(receipt: Receipt, backend: str) -> str | None:
    """Why the table cannot hold this receipt's columns (all but ``extra``), or None if it can."""
    for (column, limit, required), value in zip(_TEXT_CHECKS, _text_values(receipt), strict=True):
        if value is None and not required:
            continue
        # Short ASCII text without NUL (ids, numbers, codes, statuses: nearly every value) fits every
        # column of every backend, since its length is its size in bytes; anything else is checked.
        if type(value) is str and value.isascii() and len(value) <= (limit or _MEDIUMTEXT_BYTES) and "\0" not in value:
            continue
        reason = _invalid_text(value, backend, limit)
        if reason:
            return f"{column} {reason}"
    for column in TIME_COLUMNS:
        reason = _invalid_time(getattr(receipt, column))
        if reason:
            return f"{column} {reason}"
    parts: object = receipt.sms_parts
    if parts is not None and (not isinstance(parts, int) or isinstance(parts, bool) or not -_INT32 <= parts < _INT32):
        return "sms_parts is not a 32-bit integer"
    raw: object = receipt.raw
    if not isinstance(raw, bytes | bytearray | memoryview):
        return "raw is not bytes"
    return None


def _invalid_text(value: object, backend: str, limit: int | None) -> str | None:
    if value is None:
        return "is missing"  # an optional column's None never gets here
    if not isinstance(value, str):
        return f"is not text but {type(value).__name__}"
    if limit is not None and len(value) > limit:
        return f"is {len(value)} characters long; the column holds {limit}"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid Unicode (it contains a lone surrogate)"
    if backend == "postgresql" and "\x00" in value:
        return "contains a NUL character, which PostgreSQL text cannot hold"
    if backend == "mysql" and limit is None and size > _MEDIUMTEXT_BYTES:
        return f"is {size} bytes long; MEDIUMTEXT holds {_MEDIUMTEXT_BYTES}"
    return None


def _invalid_time(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        return f"is not a datetime but {type(value).__name__}"
    if value.utcoffset() is None:
        return "has no time zone"
    try:
        # An offset moves a time by less than a day, so only the first and last years need converting.
        if 1000 < value.year < 9999 or 1000 <= value.astimezone(UTC).year <= 9999:
            return None
    except OverflowError:
        pass
    return "is outside the years 1000 to 9999"


def _storable_extra(extra: Mapping[str, Any], backend: str) -> _EncodedJson | str:
    """``extra`` encoded as the column stores it, or why it cannot be stored."""
    if not extra:
        return _EMPTY_EXTRA  # what a body of documented fields only leaves: nothing to encode
    try:
        encoded = _json_dumps(dict(extra))
        encoded.encode("utf-8")
    except (TypeError, ValueError) as exc:
        # UnicodeEncodeError is a ValueError: a lone surrogate decoded from a JSON "\ud83d" escape.
        return f"extra is not storable as JSON: {exc}"
    if backend == "postgresql" and _JSON_NUL.search(encoded):
        return "extra contains a NUL character, which PostgreSQL jsonb cannot hold"
    return _EncodedJson(encoded)
