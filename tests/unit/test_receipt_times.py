"""Receipt times: the mainland fast path agrees with strptime, and remembered conversions with fresh ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from mns_consumer.receipt_model import Receipt
from mns_consumer.receipts import BEIJING, _parse_time
from mns_consumer.sinks.sqlite import sqlite_utc_text


@given(st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31)))
def test_every_mainland_time_parses_as_beijing_time(moment: datetime) -> None:
    """``yyyy-MM-dd HH:mm:ss`` gives that wall time in Beijing, to the second."""
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    assert _parse_time(text) == moment.replace(microsecond=0, tzinfo=BEIJING)


@given(st.text(alphabet="0123456789-: +T.Z", min_size=19, max_size=19))
def test_the_fast_path_never_accepts_what_strptime_refuses(text: str) -> None:
    """For any 19-character string, the result equals strptime's (or neither parses)."""
    try:
        expected: datetime | None = datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    except ValueError:
        expected = None
    parsed = _parse_time(text)
    if expected is not None:
        assert parsed == expected
    elif parsed is not None:
        # Only the other known formats (compact digits, RFC 2822) may parse it instead.
        assert text.strip().isdigit() or "," in text


@given(
    st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30)),
    st.lists(st.integers(min_value=-23 * 60, max_value=23 * 60), min_size=2, max_size=4),
)
def test_json_times_keep_their_own_offset_when_the_instant_repeats(moment: datetime, offsets: list[int]) -> None:
    """The remembered ISO text is per instant *and* offset: equal datetimes in other zones are not confused."""
    instant = moment.replace(tzinfo=UTC)
    for minutes in offsets:
        local = instant.astimezone(timezone(timedelta(minutes=minutes)))
        receipt = Receipt(
            kind="delivery_report", message_type="SmsReport", source="mns", dedupe_key="k", raw=b"{}", sent_at=local
        )
        assert receipt.to_json_dict()["sent_at"] == local.isoformat()


@given(
    st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30)),
    st.lists(st.integers(min_value=-23 * 60, max_value=23 * 60), min_size=2, max_size=4),
)
def test_sqlite_text_of_an_instant_is_the_same_in_every_zone(moment: datetime, offsets: list[int]) -> None:
    """SQLite's UTC text depends on the instant alone, so one remembered text serves every offset."""
    instant = moment.replace(tzinfo=UTC)
    expected = instant.replace(tzinfo=None).isoformat(" ", "microseconds")
    for minutes in offsets:
        assert sqlite_utc_text(instant.astimezone(timezone(timedelta(minutes=minutes)))) == expected
