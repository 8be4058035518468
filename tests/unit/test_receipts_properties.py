"""Properties of receipt decoding: only DecodeError ever escapes, and dedupe keys follow identity alone."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from mns_consumer.emulator.clock import Clock
from mns_consumer.emulator.samples import MESSAGE_TYPES as SAMPLE_TYPES
from mns_consumer.emulator.samples import VARIANTS, GeneratedReceipt, ReceiptFactory
from mns_consumer.errors import DecodeError
from mns_consumer.receipts import MESSAGE_TYPES, Receipt, decode_mns_body, decode_object, decode_push

T = TypeVar("T")

FAST = settings(max_examples=200, deadline=None)
MAINLAND_TIME = "%Y-%m-%d %H:%M:%S"
SAMPLE_VARIANTS = [(t, v) for t in SAMPLE_TYPES for v in VARIANTS.get(t, ("mainland",))]

# The wire names of each body variant's identity fields (module docstring of mns_consumer.receipts).
IDENTITY_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("SmsReport", "mainland"): ("biz_id", "phone_number", "success"),
    ("SmsReport", "international"): ("MessageId", "To", "Status"),
    ("GlobeSmsReport", "mainland"): ("message_id", "to", "status"),
    ("SmsUp", "mainland"): ("phone_number", "sequence_id", "send_time", "dest_code"),
    ("SignSmsReport", "mainland"): ("sign_name", "order_id", "sign_status"),
    ("SignSmsReport", "http"): ("sign_name", "orderId", "sign_status"),
    ("TemplateSmsReport", "mainland"): ("template_code", "order_id", "template_status"),
    ("TemplateSmsReport", "http"): ("template_code", "orderId", "template_status"),
    ("MnsCardVender", "mainland"): ("mobile", "outId", "render_status"),
    ("MnsCardTemplate", "mainland"): ("template_code", "approval_status", "tmpOps"),
}
_SIGN_OTHERS = ("reason", "remark", "create_date", "sign_source", "sign_scene", "new_field")
_TEMPLATE_OTHERS = ("reason", "remark", "create_date", "template_name", "template_type", "template_content")
NON_IDENTITY_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("SmsReport", "mainland"): ("err_code", "err_msg", "send_time", "report_time", "sms_size", "out_id", "new_field"),
    ("SmsReport", "international"): ("ErrorCode", "ErrorDescription", "SendDate", "ReceiveDate", "SmsSize", "TaskId"),
    ("GlobeSmsReport", "mainland"): ("error_code", "error_description", "send_date", "receive_date", "new_field"),
    ("SmsUp", "mainland"): ("content", "sign_name", "new_field"),
    ("SignSmsReport", "mainland"): _SIGN_OTHERS,
    ("SignSmsReport", "http"): _SIGN_OTHERS,
    ("TemplateSmsReport", "mainland"): _TEMPLATE_OTHERS,
    ("TemplateSmsReport", "http"): _TEMPLATE_OTHERS,
    ("MnsCardVender", "mainland"): ("desc", "new_field"),
    ("MnsCardTemplate", "mainland"): ("desc", "extData", "new_field"),
}
# Mapped identity fields whose surrounding whitespace is insignificant.
PADDABLE = {"biz_id", "phone_number", "To", "to", "mobile", "outId", "sign_name", "template_code"}
NUMBER_LIKE = {"phone_number", "To", "to", "mobile"}
MAINLAND_TIMES = {"send_time", "report_time", "create_date", "send_date", "receive_date"}
REVIEW_CYCLE = {"approving": "approved", "approved": "rejected", "rejected": "approving"}

FIELD_NAMES = sorted({name for names in (*IDENTITY_FIELDS.values(), *NON_IDENTITY_FIELDS.values()) for name in names})
TRICKY_STRINGS = st.sampled_from(
    [
        *("", " ", "0", "1", "2", "6", "-1", "1.5", "true", "FALSE", "approved", "null", "9" * 30, "\x00", "😀"),
        *("2024-05-01 10:00:00", "20240501100000", "2024-13-45 99:99:99", "Wed, 01 May 2024 10:00:00 +0800"),
        *("Wed, 01 May 2024 10:00:00 -0000", "Wed, 01 May 99999 10:00:00 +0800", "Mon, 32 Foo 2024 25:61:61 +9999"),
    ]
)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | TRICKY_STRINGS
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=25,
)
RECEIPT_LIKE = st.dictionaries(
    st.sampled_from(FIELD_NAMES) | st.text(max_size=10),
    JSON_VALUES | st.lists(st.fixed_dictionaries({"vendorCode": JSON_SCALARS, "state": JSON_SCALARS}), max_size=3),
    max_size=14,
)
ANY_TYPE = st.sampled_from([*MESSAGE_TYPES, "VoiceReport", ""])


class FrozenClock(Clock):
    """An emulator clock that stands still, so a seed alone decides a sample."""

    def now(self) -> float:
        """2024-05-01 10:00:00 Beijing time."""
        return 1714528800.0


def decodes_or_rejects(call: Callable[[], T]) -> T | None:
    """Run a decoder; a DecodeError is fine unless it reports a decoder bug, anything else fails the test."""
    try:
        return call()
    except DecodeError as exc:
        error = exc
    assert not error.reason.startswith("internal decoder error"), error.reason
    return None


def check_receipt(receipt: Receipt | DecodeError | None) -> None:
    """A decoded receipt is writable: aware times, JSON-serializable, and it round-trips through its JSON form."""
    if not isinstance(receipt, Receipt):
        if isinstance(receipt, DecodeError):
            assert not receipt.reason.startswith("internal decoder error"), receipt.reason
        return
    for moment in (receipt.sent_at, receipt.reported_at):
        assert moment is None or moment.utcoffset() is not None
    data = receipt.to_json_dict()
    json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8")
    assert Receipt.from_json_dict(data) == receipt


def comparable(receipt: Receipt | DecodeError) -> Receipt:
    """The receipt without what depends on how it arrived (raw body, source, queue)."""
    assert isinstance(receipt, Receipt), receipt
    return dataclasses.replace(receipt, raw=b"", source="mns", queue=None)


@st.composite
def samples(draw: st.DrawFn) -> GeneratedReceipt:
    """A valid emulator sample of any type and variant."""
    message_type, variant = draw(st.sampled_from(SAMPLE_VARIANTS))
    seed = draw(st.integers(min_value=0, max_value=10**6))
    skip = draw(st.integers(min_value=0, max_value=6))
    factory = ReceiptFactory(FrozenClock(), seed)
    return factory.make_many(message_type, skip + 1, variant=variant)[-1]


@FAST
@given(ANY_TYPE, st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_but_decode_error(message_type: str, body: bytes) -> None:
    """No byte string makes a decoder raise anything but DecodeError."""
    check_receipt(decodes_or_rejects(lambda: decode_mns_body(message_type, body)))
    check_receipt(decodes_or_rejects(lambda: decode_mns_body(message_type, base64.b64encode(body))))
    for result in decodes_or_rejects(lambda: decode_push(message_type, body)) or []:
        check_receipt(result)


@FAST
@given(ANY_TYPE, st.text(max_size=200))
def test_arbitrary_text_never_raises_anything_but_decode_error(message_type: str, body: str) -> None:
    """No text body, lone surrogates included, makes the decoder raise anything but DecodeError."""
    check_receipt(decodes_or_rejects(lambda: decode_mns_body(message_type, body)))


@FAST
@given(ANY_TYPE, JSON_VALUES, st.booleans())
def test_arbitrary_json_never_raises_anything_but_decode_error(message_type: str, value: Any, as_base64: bool) -> None:
    """Any JSON value, as an MNS body (raw or base64) or as a push, decodes or is a DecodeError."""
    text = json.dumps(value)
    body = base64.b64encode(text.encode()) if as_base64 else text.encode()
    check_receipt(decodes_or_rejects(lambda: decode_mns_body(message_type, body)))
    for result in decodes_or_rejects(lambda: decode_push(message_type, text.encode())) or []:
        check_receipt(result)


@FAST
@given(ANY_TYPE, RECEIPT_LIKE)
def test_receipt_shaped_objects_never_raise_anything_but_decode_error(message_type: str, obj: dict[str, Any]) -> None:
    """Objects built from the real field names with arbitrary values reach deep into every decoder safely."""
    raw = json.dumps(obj).encode()
    check_receipt(decodes_or_rejects(lambda: decode_object(message_type, obj, raw=raw, source="push", queue=None)))


@FAST
@given(samples(), st.data())
def test_re_encodings_of_a_valid_body_give_the_same_receipt_and_key(
    sample: GeneratedReceipt, data: st.DataObject
) -> None:
    """Key order, whitespace, escaping, base64 or not, and tolerated spellings change nothing but raw."""
    baseline = decode_mns_body(sample.message_type, sample.body)
    obj = respell(sample, data)
    items = data.draw(st.permutations(list(obj.items())))
    text = json.dumps(
        dict(items),
        ensure_ascii=data.draw(st.booleans()),
        indent=data.draw(st.sampled_from([None, 0, 2])),
        separators=data.draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,", " :  ")])),
    )
    form = data.draw(
        st.sampled_from(["base64 text", "base64 bytes", "wrapped base64", "json bytes", "json text", "push"])
    )
    encoded = base64.b64encode(text.encode())
    if form == "push":
        [decoded] = decode_push(sample.message_type, f"[{text}]".encode(), route="/r")
    else:
        forms: dict[str, str | bytes] = {
            "base64 text": encoded.decode(),
            "base64 bytes": encoded,
            "wrapped base64": b"\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + b"\n",
            "json bytes": text.encode(),
            "json text": text,
        }
        body = forms[form]
        decoded = decode_mns_body(sample.message_type, body, queue="q")
    assert comparable(decoded) == comparable(baseline)
    assert comparable(decoded).dedupe_key == baseline.dedupe_key


@FAST
@given(samples(), st.data())
def test_changing_an_identity_field_changes_the_key(sample: GeneratedReceipt, data: st.DataObject) -> None:
    """Every identity field of every type is part of the key."""
    field = data.draw(st.sampled_from(IDENTITY_FIELDS[(sample.message_type, sample.variant)]))
    changed = dict(sample.receipt) | {field: mutate(field, sample.receipt.get(field))}
    before = decode_mns_body(sample.message_type, sample.body)
    after = decode_mns_body(sample.message_type, json.dumps(changed))
    assert after.dedupe_key != before.dedupe_key


@FAST
@given(samples(), st.data())
def test_changing_a_non_identity_field_keeps_the_key(sample: GeneratedReceipt, data: st.DataObject) -> None:
    """Texts, codes, report times, counts and unknown fields do not make a receipt a different one."""
    field = data.draw(st.sampled_from(NON_IDENTITY_FIELDS[(sample.message_type, sample.variant)]))
    changed = dict(sample.receipt) | {field: mutate(field, sample.receipt.get(field))}
    if sample.message_type == "MnsCardTemplate" and data.draw(st.booleans()):
        changed["tmpOps"] = [op | {"desc": op["desc"] + "!"} for op in reversed(sample.receipt["tmpOps"])]
    before = decode_mns_body(sample.message_type, sample.body)
    after = decode_mns_body(sample.message_type, json.dumps(changed))
    assert after.dedupe_key == before.dedupe_key


@FAST
@given(st.lists(samples(), min_size=1, max_size=6), st.data())
def test_a_push_array_decodes_like_its_elements_one_by_one(items: list[GeneratedReceipt], data: st.DataObject) -> None:
    """Each element of a push array decodes as it would alone, in order."""
    message_type = items[0].message_type
    same_type = [item for item in items if item.message_type == message_type]
    results = decode_push(message_type, json.dumps([item.receipt for item in same_type]).encode())
    expected = [decode_mns_body(message_type, item.body) for item in same_type]
    assert [comparable(r) for r in results] == [comparable(r) for r in expected]


def respell(sample: GeneratedReceipt, data: st.DataObject) -> dict[str, Any]:
    """The sample's body with some fields written in another spelling the reference says occurs."""
    obj: dict[str, Any] = copy.deepcopy(sample.receipt)
    identity = IDENTITY_FIELDS[(sample.message_type, sample.variant)]
    for name, value in list(obj.items()):
        if not data.draw(st.booleans()):
            continue
        if name == "success":
            obj[name] = data.draw(st.sampled_from(["true", "TRUE", 1, "1"] if value else ["false", "False", 0, "0"]))
        elif name in ("sequence_id", "render_status", "approval_status", "sms_size", "SmsSize", "Status") or (
            name == "status" and sample.message_type == "GlobeSmsReport"
        ):
            obj[name] = str(value) if isinstance(value, int) else int(value)
        elif name in ("order_id", "orderId"):
            del obj[name]
            obj["orderId" if name == "order_id" else "order_id"] = value
        elif name in MAINLAND_TIMES:
            obj[name] = datetime.strptime(value, MAINLAND_TIME).strftime("%Y%m%d%H%M%S")
        elif name in NUMBER_LIKE and name in identity and data.draw(st.booleans()):
            obj[name] = int(value)
        elif name in PADDABLE and name in identity:
            obj[name] = data.draw(st.sampled_from([" ", "\t", ""])) + value + data.draw(st.sampled_from([" ", "\n"]))
    return obj


def mutate(name: str, value: Any) -> Any:
    """A different, still valid, value for a field."""
    if isinstance(value, bool):
        return not value
    if name in ("Status", "status"):
        return "2" if value == "1" else "1"
    if name == "approval_status":
        return (value + 1) % 3
    if name == "render_status":
        return 1 if int(value) == 0 else 0
    if name in ("sign_status", "template_status"):
        return REVIEW_CYCLE[value]
    if name == "tmpOps":
        return [value[0] | {"state": (value[0]["state"] + 1) % 3}, *value[1:]]
    if name == "extData":
        return {"bizId": "changed"}
    if name in MAINLAND_TIMES:
        return (datetime.strptime(value, MAINLAND_TIME) + timedelta(seconds=1)).strftime(MAINLAND_TIME)
    if name in ("SendDate", "ReceiveDate"):
        return format_datetime(parsedate_to_datetime(value) + timedelta(seconds=1))
    if name in ("sequence_id", "sms_size", "SmsSize"):
        return type(value)(int(value) + 1)
    if value is None:
        return "added"
    return value + "7"


# -- mainland reports: the common shape against an independent oracle --------------------------------

_REPORT_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["", " ", "2", " 1 ", "x", "0042", "DELIVERED", "2026-12-04 10:00:00", "2026-13-04 10:00:00"]),
    st.sampled_from(["Fri, 04 Dec 2026 10:00:00 +0800", "20261204100000", " 2026-12-04 10:00:00 "]),
    st.text(max_size=12),
)
_REPORT_KEYS = ["biz_id", "phone_number", "success", "out_id", "err_code", "err_msg", "send_time", "report_time"]


@st.composite
def mainland_report_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly well-formed mainland reports, each field now and then missing, null, mistyped or odd."""
    obj: dict[str, Any] = {
        "biz_id": draw(st.sampled_from(["1234^5678", " 99 ", "", "b"])),
        "phone_number": draw(st.sampled_from(["13800138000", " 139 ", ""])),
        "success": draw(st.booleans()),
        "send_time": "2026-12-04 10:00:00",
        "report_time": "2026-12-04 10:00:05",
        "err_code": "DELIVERED",
        "err_msg": "用户接收成功",
        "sms_size": "1",
    }
    for key in draw(st.lists(st.sampled_from([*_REPORT_KEYS, "sms_size"]), max_size=3)):
        obj[key] = draw(_REPORT_VALUES)
    for key in draw(st.lists(st.sampled_from([*_REPORT_KEYS, "sms_size", "outId", "new_field"]), max_size=2)):
        obj.pop(key, None) if draw(st.booleans()) else obj.__setitem__(key, draw(_REPORT_VALUES))
    return obj


def _documented_report(message_type: str, obj: dict[str, Any], raw: bytes) -> Receipt | None:
    """What a mainland report of the documented shape decodes to, worked out independently; None otherwise.

    The documented shape: only the documented fields, each of its documented JSON type, ids not blank,
    times in the mainland format or absent. This was once a separate fast path of the decoder.
    """
    from mns_consumer.outcomes import classify
    from mns_consumer.receipts import BEIJING, dedupe_key

    documented = {"biz_id", "phone_number", "success", "out_id", "err_code", "err_msg", "send_time"}
    if not obj.keys() <= documented | {"report_time", "sms_size"}:
        return None
    biz_id, phone_number, success = obj.get("biz_id"), obj.get("phone_number"), obj.get("success")
    if type(biz_id) is not str or type(phone_number) is not str or type(success) is not bool:
        return None
    if not biz_id.strip() or not phone_number.strip():
        return None
    texts = [obj.get(key) for key in ("out_id", "err_code", "err_msg", "send_time", "report_time")]
    if any(value is not None and type(value) is not str for value in texts):
        return None
    times: list[datetime | None] = []
    for key in ("send_time", "report_time"):
        value = obj.get(key)
        try:
            times.append(datetime.strptime(value, MAINLAND_TIME).replace(tzinfo=BEIJING) if value else None)
        except ValueError:
            return None
    size = obj.get("sms_size")
    if size is not None and size != "" and not (isinstance(size, str) and size.strip().isdigit()):
        return None
    status = "delivered" if success else "failed"
    verdict = classify(status, obj.get("err_code") or None)
    return Receipt(
        kind="delivery_report",
        message_type=message_type,
        source="mns",
        queue="q",
        raw=raw,
        dedupe_key=dedupe_key(message_type, biz_id=biz_id.strip(), phone_number=phone_number.strip(), status=status),
        biz_id=biz_id.strip(),
        phone_number=phone_number.strip(),
        status=status,  # type: ignore[arg-type]
        out_id=obj.get("out_id") or None,
        error_code=obj.get("err_code") or None,
        error_message=obj.get("err_msg") or None,
        sent_at=times[0],
        reported_at=times[1],
        sms_parts=int(size) if size not in (None, "") else None,
        outcome_class=verdict[0] if verdict else None,
        retryable=verdict[1] if verdict else None,
    )


@FAST
@given(obj=mainland_report_objects(), message_type=st.sampled_from(["SmsReport", "DypnsSmsVerifyReport"]))
def test_a_mainland_report_of_the_documented_shape_decodes_as_worked_out_independently(
    obj: dict[str, Any], message_type: str
) -> None:
    """A documented-shape body decodes to exactly the expected receipt; any body decodes or is refused by field."""
    raw = json.dumps(obj).encode()
    expected = _documented_report(message_type, obj, raw)
    try:
        decoded: Receipt | DecodeError = decode_object(message_type, obj, raw=raw, source="mns", queue="q")
    except DecodeError as exc:
        decoded = exc
    if expected is not None:
        assert decoded == expected
        assert type(decoded.extra) is dict
    elif isinstance(decoded, DecodeError):
        assert decoded.field
    else:
        unmapped = obj.keys() - {*_REPORT_KEYS, "sms_size", "outId"}
        assert set(decoded.extra) == unmapped
