"""The database sinks' projections: one status row per sent message, one row per opt-out (docs/delivery-status.md).

Both are written in the transaction that inserts the receipts, and only for the receipts that
transaction actually inserted: a redelivery stored before changes nothing, so counts are not inflated,
and a crash never leaves the receipts and their projection apart.

Ordering: a report's :func:`decision_key` is text that sorts as docs/delivery-status.md ranks reports;
a report replaces the row's state, error code and outcome class only when its key is greater than the
row's ``decided_by``. Every other column is a minimum, a maximum or a sum, so any order and duplication
of a message's reports leave the same row. ``unknown`` (set by :func:`sweep_statement`) is not final:
a later final report still decides the row, a later non-final one leaves it ``unknown``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeAlias

import sqlalchemy as sa

from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.database import MYSQL_TABLE_OPTIONS, UtcDateTime, dialect_module, utc_now

State: TypeAlias = Literal["pending", "delivered", "failed", "unknown"]
"""A message's state in the status table."""

DECIDED_BY_LENGTH: Final = 200
"""Length of ``decided_by``: 32 characters of prefix, an outcome class and a 128-character error code."""

DEST_CODE_LENGTH: Final = 64
"""Length of the opt-out table's ``dest_code`` (extension codes are a few digits); longer values are cut."""

_STATE_OF: Final[Mapping[str, State]] = {
    "delivered": "delivered",
    "failed": "failed",
    "expired": "failed",
    "pending": "pending",
}
"""Receipt status -> state; receipts with any other status do not feed the status table."""

# At equal report times delivered beats failed; pending sorts below both (it is never final).
_STATE_RANK: Final[Mapping[State, str]] = {"pending": "0", "failed": "1", "delivered": "2", "unknown": "0"}
_NO_TIME: Final = "0000-00-00T00:00:00.000000"


def decision_key(state: State, reported_at: datetime | None, outcome_class: str | None, error_code: str | None) -> str:
    """The text by which a report competes to decide a message's state (docs/delivery-status.md).

    Components are fixed-width or end with a space, which sorts below every character of an outcome
    class, so comparing the texts compares the components in order, on every backend (the column is
    compared bytewise: ``COLLATE "C"`` on PostgreSQL, ``utf8mb4_bin`` on MySQL, SQLite's ``BINARY``).
    """
    final = "1" if state in ("delivered", "failed") else "0"
    when = reported_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") if reported_at is not None else _NO_TIME
    return f"{final} {when} {_STATE_RANK[state]} {outcome_class or ''} {error_code or ''}"


class _Row:
    __slots__ = ()

    def as_row(self) -> dict[str, Any]:
        """The values of the table's written columns: every field."""
        names: tuple[str, ...] = self.__slots__  # the fields, which dataclass(slots=True) puts there
        return {name: getattr(self, name) for name in names}


@dataclass(frozen=True, slots=True)
class StatusUpdate(_Row):
    """What one or more new receipts of a message contribute to its status row (or the row itself)."""

    biz_id: str
    phone_number: str
    out_id: str | None
    sign_name: str | None
    template_code: str | None
    state: State
    error_code: str | None
    outcome_class: str | None
    sent_at: datetime | None
    first_report_at: datetime | None
    last_report_at: datetime | None
    decided_by: str
    receipts_seen: int

    @property
    def key(self) -> tuple[str, str]:
        """The row's primary key."""
        return (self.biz_id, self.phone_number)

    def merged(self, other: StatusUpdate) -> StatusUpdate:
        """This row after ``other`` is applied: the rule the upsert states in SQL, in Python.

        The database applies :func:`status_upsert`; this is used to fold several receipts of one
        message in one batch into one row first (a statement may not update a row twice).
        """
        decided = self
        if other.decided_by > self.decided_by:
            # A non-final winner leaves unknown (the sweep's verdict) standing, anything else pending.
            kept: State = "unknown" if self.state == "unknown" else "pending"
            decided = replace(other, state=other.state if other.state in ("delivered", "failed") else kept)
        return replace(
            decided,
            out_id=_greatest(self.out_id, other.out_id),
            sign_name=_greatest(self.sign_name, other.sign_name),
            template_code=_greatest(self.template_code, other.template_code),
            sent_at=_least(self.sent_at, other.sent_at),
            first_report_at=_least(self.first_report_at, other.first_report_at),
            last_report_at=_greatest(self.last_report_at, other.last_report_at),
            receipts_seen=self.receipts_seen + other.receipts_seen,
        )


@dataclass(frozen=True, slots=True)
class OptOutUpdate(_Row):
    """What one or more new opt-out replies contribute to an opt-out row."""

    phone_number: str
    sign_name: str
    dest_code: str
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    replies: int

    @property
    def key(self) -> tuple[str, str, str]:
        """The row's primary key."""
        return (self.phone_number, self.sign_name, self.dest_code)

    def merged(self, other: OptOutUpdate) -> OptOutUpdate:
        """This row after ``other`` is applied (as :func:`opt_out_upsert` does)."""
        return replace(
            self,
            first_seen_at=_least(self.first_seen_at, other.first_seen_at),
            last_seen_at=_greatest(self.last_seen_at, other.last_seen_at),
            replies=self.replies + other.replies,
        )


def _least(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else min(a, b)


def _greatest(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else max(a, b)


def status_update(receipt: Receipt) -> StatusUpdate | None:
    """What a receipt contributes to the status table: delivery reports with a biz_id and number only."""
    if receipt.kind != "delivery_report" or not receipt.biz_id or not receipt.phone_number:
        return None
    state = _STATE_OF.get(receipt.status or "")
    if state is None:
        return None
    return StatusUpdate(
        biz_id=receipt.biz_id,
        phone_number=receipt.phone_number,
        out_id=receipt.out_id or None,
        sign_name=receipt.sign_name or None,
        template_code=receipt.template_code or None,
        state=state,
        error_code=receipt.error_code,
        outcome_class=receipt.outcome_class,
        sent_at=receipt.sent_at,
        first_report_at=receipt.reported_at,
        last_report_at=receipt.reported_at,
        decided_by=decision_key(state, receipt.reported_at, receipt.outcome_class, receipt.error_code),
        receipts_seen=1,
    )


def opt_out_update(receipt: Receipt) -> OptOutUpdate | None:
    """What a reply flagged ``opt_out`` contributes to the opt-out table (missing sign or code: ``""``)."""
    if receipt.kind != "reply" or receipt.opt_out is not True or not receipt.phone_number:
        return None
    dest_code = receipt.extra.get("dest_code")
    # dest_code comes from extra, which no column limit checked: kept to what the key column holds, so an
    # odd value can never make the receipts' transaction fail.
    code = "" if dest_code is None else str(dest_code).replace("\x00", "").strip()[:DEST_CODE_LENGTH]
    return OptOutUpdate(
        phone_number=receipt.phone_number,
        sign_name=receipt.sign_name or "",
        dest_code=code,
        first_seen_at=receipt.sent_at,
        last_seen_at=receipt.sent_at,
        replies=1,
    )


def fold(updates: Iterable[StatusUpdate | OptOutUpdate | None]) -> list[Any]:
    """Merge updates of the same row, sorted by key (one lock order for every concurrent writer)."""
    rows: dict[tuple[str, ...], Any] = {}
    for update in updates:
        if update is None:
            continue
        previous = rows.get(update.key)
        rows[update.key] = update if previous is None else previous.merged(update)
    return [rows[key] for key in sorted(rows)]


def status_table(metadata: sa.MetaData, name: str) -> sa.Table:
    """The status table, added to ``metadata``."""
    decided_by = sa.String(DECIDED_BY_LENGTH).with_variant(
        dialect_module("postgresql").VARCHAR(DECIDED_BY_LENGTH, collation="C"), "postgresql"
    )
    return sa.Table(
        name,
        metadata,
        sa.Column("biz_id", sa.String(64), nullable=False),
        sa.Column("phone_number", sa.String(32), nullable=False),
        sa.Column("out_id", sa.String(255)),
        sa.Column("sign_name", sa.String(255)),
        sa.Column("template_code", sa.String(128)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(128)),
        sa.Column("outcome_class", sa.String(32)),
        sa.Column("sent_at", UtcDateTime()),
        sa.Column("first_report_at", UtcDateTime()),
        sa.Column("last_report_at", UtcDateTime()),
        sa.Column("decided_by", decided_by, nullable=False),
        sa.Column("receipts_seen", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False, server_default=utc_now()),
        sa.Column("updated_at", UtcDateTime(), nullable=False, server_default=utc_now()),
        sa.PrimaryKeyConstraint("biz_id", "phone_number", name=f"pk_{name}"),
        sa.Index(f"ix_{name}_out_id", "out_id"),
        # The sweep's lookup: pending rows by age.
        sa.Index(f"ix_{name}_sweep", "state", "sent_at"),
        **MYSQL_TABLE_OPTIONS,
    )


def opt_out_table(metadata: sa.MetaData, name: str) -> sa.Table:
    """The opt-out table, added to ``metadata``."""
    return sa.Table(
        name,
        metadata,
        sa.Column("phone_number", sa.String(32), nullable=False),
        sa.Column("sign_name", sa.String(255), nullable=False, server_default=""),
        sa.Column("dest_code", sa.String(DEST_CODE_LENGTH), nullable=False, server_default=""),
        sa.Column("first_seen_at", UtcDateTime()),
        sa.Column("last_seen_at", UtcDateTime()),
        sa.Column("replies", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False, server_default=utc_now()),
        sa.Column("updated_at", UtcDateTime(), nullable=False, server_default=utc_now()),
        sa.PrimaryKeyConstraint("phone_number", "sign_name", "dest_code", name=f"pk_{name}"),
        **MYSQL_TABLE_OPTIONS,
    )


def _least_sql(old: Any, new: Any) -> Any:
    return sa.case((old.is_(None), new), (new.is_(None), old), (new < old, new), else_=old)


def _greatest_sql(old: Any, new: Any) -> Any:
    return sa.case((old.is_(None), new), (new.is_(None), old), (new > old, new), else_=old)


def _insert(table: sa.Table, backend: str) -> tuple[Any, Any]:
    """A dialect insert into ``table`` and how its conflict clause names the proposed row's values."""
    statement = dialect_module(backend).insert(table)
    return statement, statement.excluded if backend in ("postgresql", "sqlite") else statement.inserted


def _upsert(statement: Any, backend: str, keys: Sequence[str], sets: Sequence[tuple[str, Any]]) -> sa.Insert:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE`` (PostgreSQL, SQLite) or ``ON DUPLICATE KEY UPDATE`` (MySQL).

    ``sets`` is ordered: MySQL assigns left to right and later expressions see earlier columns' new
    values, so a column other expressions read (``decided_by``) must come last.
    """
    if backend in ("postgresql", "sqlite"):
        return statement.on_conflict_do_update(index_elements=list(keys), set_=dict(sets))  # type: ignore[no-any-return]
    return statement.on_duplicate_key_update(list(sets))  # type: ignore[no-any-return]


def status_upsert(table: sa.Table, backend: str) -> sa.Insert:
    """One atomic upsert per status row, applying the ordering rule of docs/delivery-status.md in SQL."""
    statement, new = _insert(table, backend)
    old = table.c
    wins = new.decided_by > old.decided_by
    final = sa.or_(new.state == sa.literal_column("'delivered'"), new.state == sa.literal_column("'failed'"))
    state = sa.case(
        (sa.and_(wins, final), new.state),
        (sa.and_(wins, old.state == sa.literal_column("'unknown'")), sa.literal_column("'unknown'")),
        (wins, sa.literal_column("'pending'")),
        else_=old.state,
    )
    sets: list[tuple[str, Any]] = [
        ("out_id", _greatest_sql(old.out_id, new.out_id)),
        ("sign_name", _greatest_sql(old.sign_name, new.sign_name)),
        ("template_code", _greatest_sql(old.template_code, new.template_code)),
        ("sent_at", _least_sql(old.sent_at, new.sent_at)),
        ("first_report_at", _least_sql(old.first_report_at, new.first_report_at)),
        ("last_report_at", _greatest_sql(old.last_report_at, new.last_report_at)),
        ("state", state),
        ("error_code", sa.case((wins, new.error_code), else_=old.error_code)),
        ("outcome_class", sa.case((wins, new.outcome_class), else_=old.outcome_class)),
        ("receipts_seen", old.receipts_seen + new.receipts_seen),
        ("updated_at", utc_now()),
        # Last: the expressions above compare against the row's decided_by before this one.
        ("decided_by", sa.case((wins, new.decided_by), else_=old.decided_by)),
    ]
    return _upsert(statement, backend, ("biz_id", "phone_number"), sets)


def opt_out_upsert(table: sa.Table, backend: str) -> sa.Insert:
    """One atomic upsert per opt-out row: first and last seen widen, replies add up."""
    statement, new = _insert(table, backend)
    old = table.c
    sets: list[tuple[str, Any]] = [
        ("first_seen_at", _least_sql(old.first_seen_at, new.first_seen_at)),
        ("last_seen_at", _greatest_sql(old.last_seen_at, new.last_seen_at)),
        ("replies", old.replies + new.replies),
        ("updated_at", utc_now()),
    ]
    return _upsert(statement, backend, ("phone_number", "sign_name", "dest_code"), sets)


def sweep_statement(table: sa.Table, backend: str, cutoff: datetime, batch_rows: int) -> sa.Update:
    """Mark at most ``batch_rows`` rows ``pending`` since before ``cutoff`` as ``unknown``.

    Age is counted from ``sent_at``, or from when the row was created if the receipts had no send
    time. PostgreSQL and SQLite bound the batch with a keyed subquery, MySQL with ``UPDATE ... LIMIT``
    (it cannot select from the table it updates); the outer ``state = 'pending'`` is checked again on
    the current row, so a final report stored meanwhile is never overwritten.
    """
    c = table.c
    pending = sa.and_(c.state == sa.literal_column("'pending'"), sa.func.coalesce(c.sent_at, c.created_at) < cutoff)
    values = {"state": sa.literal_column("'unknown'"), "updated_at": utc_now()}
    if backend == "mysql":
        return sa.update(table).where(pending).values(values).with_dialect_options(mysql_limit=batch_rows)
    chosen = sa.select(c.biz_id, c.phone_number).where(pending).limit(batch_rows)
    return (
        sa.update(table)
        .where(c.state == sa.literal_column("'pending'"), sa.tuple_(c.biz_id, c.phone_number).in_(chosen))
        .values(values)
    )


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one sweep did to one sink's status table."""

    sink: str
    table: str
    older_than_hours: float
    swept: int


def sweep_configured_sinks(
    sinks: Mapping[str, Any], names: Sequence[str], *, older_than_hours: float | None, batch_rows: int
) -> list[SweepResult]:
    """Run the sweep on every database sink with a status table (or on the named ones).

    Args:
        sinks: The configuration's ``sinks`` section (name -> sink configuration).
        names: Only these sinks; every database sink with a status table when empty.
        older_than_hours: Overrides each sink's ``status_unknown_after_hours``.
        batch_rows: Rows changed per transaction, so no transaction locks a large part of the table.

    Raises:
        ValueError: If a named sink does not exist, is not a database sink, or has no status table.
        SinkUnavailable: If a database cannot be reached.
    """
    from mns_consumer.sinks.database import DatabaseSinkConfig  # noqa: PLC0415  (it imports this module's users)

    eligible = {
        name: config
        for name, config in sinks.items()
        if isinstance(config, DatabaseSinkConfig) and config.status_table_name() is not None
    }
    for name in names:
        if name not in eligible:
            raise ValueError(f"sink {name!r} is not a database sink with a status table")
    results = []
    for name, config in [(name, eligible[name]) for name in names] if names else eligible.items():
        hours = config.status_unknown_after_hours if older_than_hours is None else older_than_hours
        sink = config.build(name)
        sink.open()
        try:
            swept = sink.sweep_unknown(hours, batch_rows=batch_rows)
        finally:
            sink.close()
        results.append(SweepResult(name, config.status_table_name() or "", hours, swept))
    return results
