"""Mainland receipt times: the fast path and strptime agree on every string of the common shape."""

from __future__ import annotations

from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st

from mns_consumer.receipts import BEIJING, _parse_time


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
