"""The sends a backfill queries: one from the command line, or a CSV or JSON Lines file of them."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

from mns_consumer.alicom.send_details import PHONE_NUMBER
from mns_consumer.errors import InvalidSendsError
from mns_consumer.observe.redaction import mask_phone_number

COLUMNS: Final = ("phone_number", "send_date", "biz_id")
"""The columns (CSV header names, JSON Lines keys) of a sends file."""

_ALIASES: Final[Mapping[str, str]] = {
    "phone": "phone_number",
    "phonenumber": "phone_number",
    "phone_number": "phone_number",
    "date": "send_date",
    "senddate": "send_date",
    "send_date": "send_date",
    "bizid": "biz_id",
    "biz_id": "biz_id",
}
_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d")


@dataclass(frozen=True)
class Send:
    """One message to one number that may be missing its receipt.

    Attributes:
        phone_number: The recipient, as passed to SendSms (digits; international with country code).
        send_date: The Beijing calendar day it was sent.
        biz_id: The BizId SendSms (or SendBatchSms) returned for it.
        where: Where it was given, for messages: ``sends.csv:12`` or ``command line``.
    """

    phone_number: str
    send_date: date
    biz_id: str
    where: str = field(default="command line", compare=False)

    def phone(self, mask: bool = True) -> str:
        """The number, masked (``139****1111``) unless ``mask`` is False."""
        return mask_phone_number(self.phone_number) if mask else self.phone_number

    def to_json(self, mask: bool = True) -> dict[str, str]:
        """The send as JSON-ready data, for reports."""
        return {
            "where": self.where,
            "phone_number": self.phone(mask),
            "send_date": self.send_date.isoformat(),
            "biz_id": self.biz_id,
        }


def parse_send_date(text: str) -> date:
    """A send day written ``YYYY-MM-DD`` or ``YYYYMMDD``.

    Raises:
        ValueError: With the reason, e.g. for a time or a range (QuerySendDetails takes one day per query).
    """
    value = text.strip()
    for pattern in _DATE_FORMATS:
        try:
            return datetime.strptime(value, pattern).date()
        except ValueError:
            continue
    if re.fullmatch(r"\d{4}-?\d{2}-?\d{2}[ T].+", value):
        raise ValueError(f"{text!r} has a time; give the Beijing calendar day only (YYYY-MM-DD or YYYYMMDD)")
    if ".." in value or "/" in value or "," in value:
        raise ValueError(f"{text!r} is not one day; QuerySendDetails takes one day per query, so give one send per day")
    raise ValueError(f"{text!r} is not a date (write YYYY-MM-DD or YYYYMMDD)")


def make_send(phone_number: str, send_date: str, biz_id: str, where: str = "command line") -> Send:
    """One send from text values, checked.

    Raises:
        InvalidSendsError: Naming ``where`` and every field at fault.
    """
    send = _checked({"phone_number": phone_number, "send_date": send_date, "biz_id": biz_id}, where)
    if isinstance(send, list):
        raise InvalidSendsError(where, send)
    return send


def read_sends(path: Path, text: str | None = None) -> list[Send]:
    """Read a sends file: JSON Lines (``.jsonl``/``.ndjson``, or a first line starting with ``{``) or CSV.

    CSV needs a header naming ``phone_number``, ``send_date`` and ``biz_id`` (or an alias); other columns
    are ignored, so an export of the application's send log works as it is. Values are text (leading
    zeros and carets kept). ``text`` is the content when already read (standard input). Each send's
    ``where`` is ``<path>:<line>``.

    Raises:
        InvalidSendsError: Listing every bad line (with its number and field), or a missing column.
        OSError: If the file cannot be read.
    """
    content = path.read_text(encoding="utf-8-sig") if text is None else text.removeprefix("\ufeff")
    name = str(path)
    first = next((line.strip() for line in content.splitlines() if line.strip()), "")
    if path.suffix.lower() in (".jsonl", ".ndjson") or first.startswith("{"):
        rows = _jsonl_rows(content, name)
    else:
        rows = _csv_rows(content, name)
    problems: list[str] = []
    sends: list[Send] = []
    for where, values in rows:
        send = [values] if isinstance(values, str) else _checked(values, where)
        if isinstance(send, list):
            problems.extend(send)
        else:
            sends.append(send)
    if problems:
        raise InvalidSendsError(name, problems)
    if not sends:
        raise InvalidSendsError(name, [f"{name}: no sends in the file"])
    return sends


def _csv_rows(content: str, name: str) -> Iterable[tuple[str, dict[str, str] | str]]:
    reader = csv.reader(io.StringIO(content))
    header: list[str] | None = None
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [_ALIASES.get(cell.strip().lower().replace(" ", ""), cell.strip()) for cell in row]
            missing = [column for column in COLUMNS if column not in header]
            if missing:
                raise InvalidSendsError(
                    name,
                    [
                        f"{name}:{line}: the header row lacks {', '.join(missing)} "
                        f"(the first row must name the columns: {','.join(COLUMNS)})"
                    ],
                )
            continue
        if len(row) < len(header):
            yield f"{name}:{line}", f"{name}:{line}: {len(row)} column(s), the header has {len(header)}"
            continue
        yield f"{name}:{line}", {column: row[header.index(column)] for column in COLUMNS}
    if header is None:
        raise InvalidSendsError(name, [f"{name}: the file is empty (expected a header row: {','.join(COLUMNS)})"])


def _jsonl_rows(content: str, name: str) -> Iterable[tuple[str, dict[str, str] | str]]:
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            obj: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            yield where, f"{where}: not JSON ({exc.msg})"
            continue
        if not isinstance(obj, dict):
            yield where, f'{where}: not a JSON object (each line must be one send: {{"phone_number": ...}})'
            continue
        values: dict[str, str] = {}
        for key, value in obj.items():
            column = _ALIASES.get(str(key).lower().replace(" ", ""))
            if column is None:
                continue
            if isinstance(value, bool) or not isinstance(value, str | int):
                yield where, f"{where}: {column}: must be a string, got {type(value).__name__}"
                break
            values[column] = str(value)
        else:
            yield where, values


def _checked(values: Mapping[str, str], where: str) -> Send | list[str]:
    """The send of these text values, or every problem of them as ``<where>: <field>: <what to write>``."""
    problems: list[str] = []
    phone = values.get("phone_number", "").strip()
    if not phone:
        problems.append(f"{where}: phone_number: missing")
    elif not PHONE_NUMBER.fullmatch(phone):
        problems.append(
            f"{where}: phone_number: {mask_phone_number(phone)!r} is not one number of 5 to 15 digits "
            "(international numbers with their country code, no + or spaces)"
        )
    day = values.get("send_date", "").strip()
    if not day:
        problems.append(f"{where}: send_date: missing")
    else:
        try:
            parse_send_date(day)
        except ValueError as exc:
            problems.append(f"{where}: send_date: {exc}")
    biz_id = values.get("biz_id", "").strip()
    if not biz_id:
        problems.append(
            f"{where}: biz_id: missing (the BizId SendSms returned; without it the receipt's dedupe key "
            "cannot match the one MNS would deliver)"
        )
    return problems or Send(phone, parse_send_date(day), biz_id, where)


def collect_sends(
    phone_number: str | None,
    send_date: str | None,
    biz_id: str | None,
    sends_file: Path | None,
    *,
    stdin: str | None = None,
) -> list[Send]:
    """The sends of ``mns-consumer backfill``: one from ``--phone``/``--date``/``--biz-id``, and/or a file.

    ``sends_file`` ``-`` reads ``stdin`` (standard input's text).

    Raises:
        InvalidSendsError: If the single send is incomplete or invalid, the file is bad, or there are
            no sends at all.
        OSError: If the file cannot be read.
    """
    sends: list[Send] = []
    given = {"--phone": phone_number, "--date": send_date, "--biz-id": biz_id}
    if any(value is not None for value in given.values()):
        missing = [name for name, value in given.items() if not value]
        if missing:
            raise InvalidSendsError(
                "command line",
                [f"{', '.join(missing)} missing: one send needs --phone, --date and --biz-id together"],
            )
        sends.append(make_send(phone_number or "", send_date or "", biz_id or ""))
    if sends_file is not None:
        sends.extend(read_sends(Path("<stdin>"), stdin or "") if str(sends_file) == "-" else read_sends(sends_file))
    if not sends:
        raise InvalidSendsError(
            "command line", ["no sends: give --phone, --date and --biz-id, or --sends FILE (CSV or JSON Lines)"]
        )
    return sends
