"""Decode reasons name the field, what was expected and what kind of value came, never the value itself.

Reasons reach logs (``receipt.undecodable``), dead letters and the replay output, where a phone number
or a message text must not appear; the raw body, kept with the error, is where the value lives.
"""

from __future__ import annotations

import base64
import inspect
import json
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mns_consumer import receipts
from mns_consumer.emulator.clock import Clock
from mns_consumer.emulator.samples import MESSAGE_TYPES as SAMPLE_TYPES
from mns_consumer.emulator.samples import VARIANTS, ReceiptFactory
from mns_consumer.errors import DecodeError
from mns_consumer.receipts import MESSAGE_TYPES, decode_mns_body, decode_push

SAMPLE_VARIANTS = [(t, v) for t in SAMPLE_TYPES for v in VARIANTS.get(t, ("mainland",))]
# Text that may appear in a reason because the decoder itself wrote it (field names, expected forms,
# known statuses): a body value that happens to be part of it proves nothing either way.
DECODER_TEXT = inspect.getsource(receipts)
SHORTEST_CHECKED = 5
"""Values shorter than this are too short to tell a leak from a word of the reason ("1", "true")."""


class FrozenClock(Clock):
    """An emulator clock that stands still, so a seed alone decides a sample."""

    def now(self) -> float:
        """2024-05-01 10:00:00 Beijing time."""
        return 1714528800.0


PHONE_NUMBERS = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)
DIGIT_STRINGS = st.text(alphabet="0123456789", min_size=SHORTEST_CHECKED, max_size=20)
TEXTS = st.text(min_size=SHORTEST_CHECKED, max_size=24).filter(lambda text: text.strip() != "")
# Almost times: each fails one of the accepted formats in its own way, and none is a word of a reason.
WRONG_TIMES = (
    st.sampled_from(["2024-13-45 99:99:99", "20241345999999", "Mon, 32 Foo 2024 25:61:61 +0800", "0001-01-01 00:00:00"])
    | PHONE_NUMBERS.map(lambda number: f"{number[:4]}-{number[4:6]}-{number[6:8]} {number[8:]}:00")
    | st.datetimes().map(lambda moment: moment.strftime("%d/%m/%Y %H:%M:%S"))
)
NUMBERS = (
    st.integers(min_value=10**4, max_value=10**20)
    | st.integers(min_value=-(10**20), max_value=-(10**4))
    | PHONE_NUMBERS.map(int)
    | st.floats(min_value=1e4, max_value=1e300)
    | st.floats(min_value=-1e300, max_value=-1e4)
    | PHONE_NUMBERS.map(lambda number: int(number) + 0.5)
)
SCALARS = PHONE_NUMBERS | DIGIT_STRINGS | TEXTS | WRONG_TIMES | NUMBERS | st.none() | st.booleans()
POISON = (
    SCALARS
    | st.lists(SCALARS, min_size=1, max_size=3)
    | st.dictionaries(TEXTS | PHONE_NUMBERS, SCALARS, min_size=1, max_size=2)
    | st.lists(st.fixed_dictionaries({"vendorCode": SCALARS, "state": SCALARS}), min_size=1, max_size=2)
)


@st.composite
def poisoned_bodies(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A valid sample of any MessageType and variant with one to four fields set to wrong types or forms."""
    message_type, variant = draw(st.sampled_from(SAMPLE_VARIANTS))
    factory = ReceiptFactory(FrozenClock(), draw(st.integers(min_value=0, max_value=10**6)))
    body = dict(factory.make(message_type, variant=variant).receipt)
    if (message_type, variant) == ("SmsReport", "mainland") and draw(st.booleans()):
        message_type = "DypnsSmsVerifyReport"  # the same field set (module docstring of mns_consumer.receipts)
    names = sorted(set(body) | {"phone_number", "send_time", "report_time", "success", "sms_size", "tmpOps"})
    for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=4, unique=True)):
        body[name] = draw(POISON)
    return message_type, body


def spellings(value: Any) -> Iterator[str]:
    """Every way a reason could quote a value: its text, its repr, its JSON, an integral float as an integer."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, str):
        yield value
        yield repr(value)
        yield json.dumps(value)
        yield json.dumps(value, ensure_ascii=False)
    elif isinstance(value, int | float):
        yield str(value)
        yield repr(value)
        if isinstance(value, float) and value.is_integer():
            yield str(int(value))


def leaves(value: Any) -> Iterator[Any]:
    """The scalars of a JSON value, object keys included, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from leaves(item)
    else:
        yield value


def quoted_values(body: dict[str, Any], text: str) -> list[str]:
    """The body's values (of checkable length, not written by the decoder itself) that appear in ``text``."""
    found = []
    for leaf in leaves(body):
        for spelling in spellings(leaf):
            if len(spelling) >= SHORTEST_CHECKED and spelling not in DECODER_TEXT and spelling in text:
                found.append(spelling)
    return found


def decode_errors(message_type: str, body: dict[str, Any]) -> list[DecodeError]:
    """The DecodeErrors of the body sent every way a body arrives: base64, SDK-decoded JSON, a push element."""
    text = json.dumps(body, ensure_ascii=False)
    errors: list[DecodeError] = []
    for form in (base64.b64encode(text.encode()).decode(), text):
        try:
            decode_mns_body(message_type, form)
        except DecodeError as exc:
            errors.append(exc)
    errors += [result for result in decode_push(message_type, f"[{text}]".encode()) if isinstance(result, DecodeError)]
    return errors


@settings(max_examples=400, deadline=None)
@given(poisoned_bodies())
def test_no_reason_quotes_a_value_of_the_body(case: tuple[str, dict[str, Any]]) -> None:
    """Whatever a field holds (a number, a digit string, an array, a wrong time), the error text never repeats it."""
    message_type, body = case
    for error in decode_errors(message_type, body):
        assert not error.reason.startswith("internal decoder error"), error.reason
        assert quoted_values(body, str(error)) == [], str(error)


@pytest.mark.parametrize(
    ("message_type", "body", "field", "reason"),
    [
        (
            "SmsReport",
            {"biz_id": "1^0", "phone_number": "13900001111", "success": ["13911112222"]},
            "success",
            "expected true or false (or their strings in any case, or 1 or 0), got an array",
        ),
        (
            "SmsUp",
            {"phone_number": "13900001111", "sequence_id": 1, "dest_code": "1", "send_time": "13955556666"},
            "send_time",
            "expected a time like 2024-01-01 00:00:00 (or yyyyMMddHHmmss, or an RFC 2822 date), "
            "got a string of another form",
        ),
        (
            "SmsReport",
            {"biz_id": "1^0", "phone_number": 13900001111.5, "success": True},
            "phone_number",
            "expected a string or an integer, got a number with a fraction",
        ),
        (
            "SmsReport",
            {"biz_id": "1^0", "phone_number": "139", "success": True, "err_msg": {"to": "13911112222"}},
            "err_msg",
            "expected a string, got an object",
        ),
        (
            "GlobeSmsReport",
            {"to": "6591234567", "message_id": "1", "status": "13911112222"},
            "status",
            "unknown status code: expected one of 1 (delivered), 2 (failed), got another integer",
        ),
        (
            "SignSmsReport",
            {"sign_name": "S", "order_id": "1", "sign_status": "13911112222"},
            "sign_status",
            "unknown review status: expected one of approving, approved, rejected (any case), got another string",
        ),
        (
            "MnsCardVender",
            {"mobile": "13900001111", "outId": "o", "render_status": "code 13911112222"},
            "render_status",
            "expected an integer code (a number or a string of digits), got a string of another form",
        ),
        (
            "SmsReport",
            {"biz_id": "1^0", "phone_number": "139", "success": True, "sms_size": -13911112222},
            "sms_size",
            "expected a non-negative integer, got a negative integer",
        ),
    ],
)
def test_a_reason_names_what_was_expected_and_what_kind_of_value_came(
    message_type: str, body: dict[str, Any], field: str, reason: str
) -> None:
    """The field travels apart from the reason; the reason says expected and got, in words only."""
    with pytest.raises(DecodeError) as caught:
        decode_mns_body(message_type, json.dumps(body))
    assert (caught.value.field, caught.value.reason) == (field, reason)


@pytest.mark.parametrize(
    ("message_type", "body"),
    [
        (
            "SmsUp",
            {"phone_number": "13900001111", "sequence_id": 1, "dest_code": "1", "send_time": "0001-01-01 00:00:00"},
        ),
        ("SmsUp", {"phone_number": "13900001111", "sequence_id": 1, "dest_code": "1", "send_time": "00010101075959"}),
        (
            "SmsUp",
            {"phone_number": "1", "sequence_id": 1, "dest_code": "1", "send_time": "Fri, 31 Dec 9999 23:00:00 -0800"},
        ),
        ("SmsReport", {"biz_id": "1^0", "phone_number": "139", "success": True, "send_time": "0001-01-01 00:00:00"}),
        (
            "SmsReport",
            {"To": "6591234567", "MessageId": "1", "Status": "1", "ReceiveDate": "Fri, 31 Dec 9999 20:00:00 -0500"},
        ),
    ],
)
def test_a_time_that_cannot_be_shifted_to_utc_is_an_ordinary_decode_error(
    message_type: str, body: dict[str, Any]
) -> None:
    """Year 1 before 08:00 in Beijing, or 31 Dec 9999 west of UTC, is refused with a reason, not an internal error."""
    with pytest.raises(DecodeError) as caught:
        decode_mns_body(message_type, json.dumps(body))
    assert caught.value.field in ("send_time", "ReceiveDate")
    assert caught.value.reason == (
        "expected a time that can be shifted to UTC (years 1 to 9999), got one outside that range once shifted to UTC"
    )


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("0001-01-01 08:00:00", "0001-01-01T00:00:00+00:00"),
        ("Fri, 31 Dec 9999 23:59:59 +0000", "9999-12-31T23:59:59+00:00"),
    ],
)
def test_the_first_and_last_instants_utc_holds_still_decode(text: str, utc: str) -> None:
    """The edge itself stays valid: 0001-01-01 08:00 Beijing is the first UTC instant, 9999-12-31 23:59:59 the last."""
    body = {"phone_number": "13900001111", "sequence_id": 1, "dest_code": "1", "send_time": text}
    receipt = decode_mns_body("SmsUp", json.dumps(body))
    assert receipt.sent_at is not None
    assert receipt.sent_at.astimezone(UTC).isoformat() == utc


def test_an_internal_error_reason_names_the_exception_type_but_not_its_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoder bug's message may quote the body; the reason keeps only its type (the chain keeps the rest)."""

    def broken(fields: object) -> Any:
        raise ValueError("bad value '13911112222'")

    monkeypatch.setitem(receipts._DECODERS, "SmsUp", broken)
    with pytest.raises(DecodeError) as caught:
        decode_mns_body("SmsUp", json.dumps({"phone_number": "13911112222"}))
    assert caught.value.reason == "internal decoder error (ValueError)"
    assert isinstance(caught.value.__cause__, ValueError)


def test_every_message_type_is_covered_by_the_samples() -> None:
    """The property test above draws bodies of every MessageType the decoder knows (Dypns as mainland SmsReport)."""
    assert {message_type for message_type, _ in SAMPLE_VARIANTS} | {"DypnsSmsVerifyReport"} == set(MESSAGE_TYPES)
