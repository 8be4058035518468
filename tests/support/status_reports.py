"""Delivery reports and opt-out replies of one message, for the status and opt-out table tests."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mns_consumer.outcomes import classify
from mns_consumer.receipt_model import Receipt
from tests.support.receipts import make_receipt

SENT_AT = datetime(2026, 11, 22, 2, 0, 0, tzinfo=UTC)
"""When every message of these tests was sent."""

COMPARED_COLUMNS = (
    "phone_number",
    "out_id",
    "sign_name",
    "template_code",
    "state",
    "error_code",
    "outcome_class",
    "sent_at",
    "first_report_at",
    "last_report_at",
    "decided_by",
    "receipts_seen",
)
"""The status columns that must not depend on the order reports arrived in (not biz_id, which each
test message has its own, nor the server's created_at/updated_at)."""


def make_report(
    message: int, status: str, seconds: int | None, code: str | None, *, source: str = "mns", **overrides: Any
) -> Receipt:
    """A delivery report of message ``message`` (biz_id and number) with its own dedupe key.

    Args:
        message: Which message: equal numbers give equal biz_id and phone_number.
        status: ``delivered``, ``failed``, ``expired`` or ``pending``.
        seconds: Report time, seconds after sending; None for no report time.
        code: The carrier code.
        source: ``mns``, ``push`` or ``query``.
        **overrides: Any other field.
    """
    base = make_receipt(message)
    outcome = classify(status, code)
    reported_at = None if seconds is None else SENT_AT + timedelta(seconds=seconds)
    identity = f"{base.biz_id}|{base.phone_number}|{status}|{seconds}|{code}"
    fields: dict[str, Any] = {
        "status": status,
        "error_code": code,
        "source": source,
        "sent_at": SENT_AT,
        "reported_at": reported_at,
        "outcome_class": None if outcome is None else outcome[0],
        "retryable": None if outcome is None else outcome[1],
        "dedupe_key": hashlib.sha256(identity.encode()).hexdigest()[:40],
        **overrides,
    }
    return dataclasses.replace(base, **fields)


def make_opt_out(n: int, *, sign_name: str | None = "阿里云通信", dest_code: str = "1234", seconds: int = 0) -> Receipt:
    """An SmsUp reply ``TD`` from number ``n``, flagged opt-out."""
    phone = f"137{n:08d}"
    return Receipt(
        kind="reply",
        message_type="SmsUp",
        source="mns",
        dedupe_key=hashlib.sha256(f"up|{phone}|{seconds}|{sign_name}|{dest_code}".encode()).hexdigest()[:40],
        raw=b'{"content":"TD"}',
        phone_number=phone,
        status="received",
        content="TD",
        sent_at=SENT_AT + timedelta(seconds=seconds),
        sign_name=sign_name,
        extra={"dest_code": dest_code, "sequence_id": str(n)},
        opt_out=True,
    )


def status_row(admin: sa.Engine, table: str, biz_id: str, phone_number: str) -> dict[str, Any] | None:
    """One status row as a dict (times as aware UTC datetimes), or None."""
    with admin.connect() as connection:
        row = (
            connection.execute(
                sa.text(f"SELECT * FROM {table} WHERE biz_id = :b AND phone_number = :p"),  # noqa: S608
                {"b": biz_id, "p": phone_number},
            )
            .mappings()
            .first()
        )
    return None if row is None else {key: _utc(value) for key, value in row.items()}


def all_rows(admin: sa.Engine, table: str) -> list[dict[str, Any]]:
    """Every row of a table, as dicts with UTC times."""
    with admin.connect() as connection:
        rows = connection.execute(sa.text(f"SELECT * FROM {table}")).mappings().all()  # noqa: S608
    return [{key: _utc(value) for key, value in row.items()} for row in rows]


def _utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == " ":
        # SQLite's DATETIME text.
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value
