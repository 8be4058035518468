"""Receipt decoding: every documented body (reference section 4), every emulator sample, every poison body."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mns_consumer import receipt_model, receipts
from mns_consumer.emulator.clock import Clock
from mns_consumer.emulator.samples import MALFORMED_KINDS, VARIANTS, ReceiptFactory, malformed_body
from mns_consumer.emulator.samples import MESSAGE_TYPES as SAMPLE_TYPES
from mns_consumer.errors import DecodeError
from mns_consumer.receipts import (
    IDENTITY_FIELDS,
    MESSAGE_TYPES,
    Receipt,
    decode_mns_body,
    decode_object,
    decode_push,
    dedupe_key,
)

# The examples of reference section 4, with line breaks moved to fit (4.3 is the HTTP push array it shows).
REF_4_1_SMS_REPORT = """{"phone_number":"13900001111","send_time":"2024-05-01 10:00:00",
 "report_time":"2024-05-01 10:00:04","success":true,"err_code":"DELIVERED","err_msg":"用户接收成功","sms_size":"1",
 "biz_id":"812345678901234567^0","out_id":"order-42"}"""
REF_4_2_SMS_UP = """{"phone_number":"13900001111","content":"TD","send_time":"2024-05-01 10:05:00",
 "dest_code":"1234","sequence_id":1234567890,"sign_name":"ExampleSign"}"""
REF_4_3_SIGN_PUSH = """[{"sign_name":"ExampleSign","sign_status":"approved","reason":"","sign_source":"enterprise",
  "sign_scene":"general","remark":"login codes","create_date":"2024-05-01 09:00:00","orderId":"2001234"}]"""
REF_4_4_TEMPLATE = """{"template_code":"SMS_123456789","template_name":"login code","template_status":"rejected",
 "reason":"wrong category","remark":"","create_date":"2024-05-01 09:00:00",
 "template_type":"验证码","template_content":"Your code is ${code}","order_id":"205101"}"""
REF_4_5_CARD_TEMPLATE = """{"approval_status":2,"extData":{},"template_code":"CARD_SMS_1234",
 "tmpOps":[{"state":2,"desc":"rejected","vendorCode":"OPPO"},{"state":1,"desc":"ok","vendorCode":"HUAWEI"}],
 "desc":"OPPO rejected"}"""
# 4.5 describes MnsCardVender without an example; this one follows its field list and its "0" example value.
REF_4_5_CARD_VENDER = """{"mobile":"13900001111","outId":"card-42","render_status":"0","desc":"render ok"}"""
REF_4_6_GLOBE = """{"to":"6591234567","status":"2","message_id":"12441353","send_date":"2024-05-01 10:00:00",
 "receive_date":"2024-05-01 10:00:06","error_code":"SP_UNKNOW_ERROR","error_description":"carrier unknown error"}"""
REF_4_7_INTERNATIONAL = """{"To":"6591234567","Status":"1","MessageId":"1008030300000000","SmsSize":"1",
 "TaskId":"67890", "SendDate":"Wed, 01 May 2024 10:00:00 +0800","ReceiveDate":"Wed, 01 May 2024 10:00:06 +0800",
 "ErrorCode":"success","ErrorDescription":"success"}"""


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """An aware UTC datetime."""
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def b64(text: str | bytes) -> str:
    """The body as Alibaba enqueues it: base64 of UTF-8."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return base64.b64encode(data).decode("ascii")


def comparable(receipt: Receipt) -> Receipt:
    """The receipt without what depends on how it arrived (raw body, source, queue)."""
    return dataclasses.replace(receipt, raw=b"", source="mns", queue=None)


def test_receipt_is_re_exported_from_the_model() -> None:
    """``receipts.Receipt`` is the frozen model every sink uses."""
    assert Receipt is receipt_model.Receipt


def test_reference_4_1_mainland_sms_report_normalizes_every_field() -> None:
    """The documented mainland SmsReport decodes to a delivered report with Beijing times made aware."""
    receipt = decode_mns_body("SmsReport", b64(REF_4_1_SMS_REPORT), queue="Alicom-Queue-i1-SmsReport")
    assert receipt.kind == "delivery_report"
    assert receipt.message_type == "SmsReport"
    assert receipt.source == "mns"
    assert receipt.queue == "Alicom-Queue-i1-SmsReport"
    assert receipt.status == "delivered"
    assert receipt.phone_number == "13900001111"
    assert receipt.biz_id == "812345678901234567^0"
    assert receipt.out_id == "order-42"
    assert receipt.error_code == "DELIVERED"
    assert receipt.error_message == "用户接收成功"
    assert receipt.sent_at == utc(2024, 5, 1, 2, 0, 0)
    assert receipt.reported_at == utc(2024, 5, 1, 2, 0, 4)
    assert receipt.sms_parts == 1
    assert receipt.extra == {}
    assert receipt.raw == b64(REF_4_1_SMS_REPORT).encode("ascii")
    assert receipt.dedupe_key == dedupe_key(
        "SmsReport", biz_id="812345678901234567^0", phone_number="13900001111", status="delivered"
    )


def test_mainland_times_are_aware_and_read_as_beijing_time() -> None:
    """``2024-05-01 10:00:04`` is 02:00:04 UTC, and the offset is kept on the value."""
    receipt = decode_mns_body("SmsReport", REF_4_1_SMS_REPORT)
    assert receipt.reported_at is not None
    assert receipt.reported_at.utcoffset() is not None
    assert receipt.reported_at.astimezone(UTC).isoformat() == "2024-05-01T02:00:04+00:00"
    assert receipt.to_json_dict()["reported_at"] == "2024-05-01T10:00:04+08:00"


def test_reference_4_1_failed_report_is_failed() -> None:
    """``success: false`` with a carrier code is a failed delivery report."""
    body = json.loads(REF_4_1_SMS_REPORT) | {"success": False, "err_code": "MK:0001", "err_msg": "empty number"}
    receipt = decode_mns_body("SmsReport", json.dumps(body))
    assert receipt.status == "failed"
    assert receipt.error_code == "MK:0001"


def test_dypns_verify_report_uses_the_sms_report_field_set() -> None:
    """DypnsSmsVerifyReport (reference 4.1) decodes like a mainland SmsReport under its own type and family."""
    receipt = decode_mns_body("DypnsSmsVerifyReport", b64(REF_4_1_SMS_REPORT))
    report = decode_mns_body("SmsReport", b64(REF_4_1_SMS_REPORT))
    assert receipt.message_type == "DypnsSmsVerifyReport"
    assert receipt.kind == "delivery_report"
    assert (receipt.biz_id, receipt.phone_number, receipt.status) == (report.biz_id, report.phone_number, "delivered")
    assert receipt.dedupe_key != report.dedupe_key


def test_reference_4_2_sms_up_is_a_received_reply() -> None:
    """The documented reply keeps dest_code and a string sequence_id in extra."""
    receipt = decode_mns_body("SmsUp", b64(REF_4_2_SMS_UP))
    assert receipt.kind == "reply"
    assert receipt.status == "received"
    assert receipt.phone_number == "13900001111"
    assert receipt.content == "TD"
    assert receipt.sign_name == "ExampleSign"
    assert receipt.sent_at == utc(2024, 5, 1, 2, 5, 0)
    assert receipt.reported_at is None
    assert receipt.extra == {"dest_code": "1234", "sequence_id": "1234567890"}


def test_reference_4_3_sign_report_push_normalizes_order_id() -> None:
    """The documented sign review push (``orderId``) yields one approved review with ``extra["order_id"]``."""
    [receipt] = decode_push("SignSmsReport", REF_4_3_SIGN_PUSH.encode(), route="/alicom/sign")
    assert isinstance(receipt, Receipt)
    assert receipt.kind == "sign_review"
    assert receipt.source == "push"
    assert receipt.queue == "/alicom/sign"
    assert receipt.status == "approved"
    assert receipt.sign_name == "ExampleSign"
    assert receipt.reason is None
    assert receipt.reported_at == utc(2024, 5, 1, 1, 0, 0)
    assert receipt.extra == {
        "sign_source": "enterprise",
        "sign_scene": "general",
        "remark": "login codes",
        "order_id": "2001234",
    }
    # raw is the element exactly as the document's body has it (spacing included), not a re-encoding.
    assert receipt.raw == REF_4_3_SIGN_PUSH.strip()[1:-1].strip().encode("utf-8")


def test_reference_4_4_template_report_is_a_rejected_review() -> None:
    """The documented template review keeps its content, reason and display fields."""
    receipt = decode_mns_body("TemplateSmsReport", b64(REF_4_4_TEMPLATE))
    assert receipt.kind == "template_review"
    assert receipt.status == "rejected"
    assert receipt.template_code == "SMS_123456789"
    assert receipt.reason == "wrong category"
    assert receipt.content == "Your code is ${code}"
    assert receipt.reported_at == utc(2024, 5, 1, 1, 0, 0)
    assert receipt.extra == {
        "template_name": "login code",
        "remark": "",
        "template_type": "验证码",
        "order_id": "205101",
    }


def test_reference_4_5_card_template_review_is_rejected() -> None:
    """approval_status 2 is rejected; tmpOps and extData stay in extra as received."""
    receipt = decode_mns_body("MnsCardTemplate", b64(REF_4_5_CARD_TEMPLATE))
    assert receipt.kind == "card_template_review"
    assert receipt.status == "rejected"
    assert receipt.template_code == "CARD_SMS_1234"
    assert receipt.reason == "OPPO rejected"
    assert receipt.extra == {
        "extData": {},
        "tmpOps": [
            {"state": 2, "desc": "rejected", "vendorCode": "OPPO"},
            {"state": 1, "desc": "ok", "vendorCode": "HUAWEI"},
        ],
    }


def test_reference_4_5_card_render_result_is_rendered() -> None:
    """render_status ``"0"`` is a successful render; ``outId`` is the out_id."""
    receipt = decode_mns_body("MnsCardVender", b64(REF_4_5_CARD_VENDER))
    assert receipt.kind == "card_render"
    assert receipt.status == "rendered"
    assert receipt.phone_number == "13900001111"
    assert receipt.out_id == "card-42"
    assert receipt.reason == "render ok"
    assert receipt.extra == {}


def test_card_render_with_a_non_zero_status_failed() -> None:
    """Every render_status other than 0 is a failed render."""
    body = json.loads(REF_4_5_CARD_VENDER) | {"render_status": 3}
    assert decode_mns_body("MnsCardVender", json.dumps(body)).status == "failed"


def test_reference_4_6_globe_report_is_failed() -> None:
    """The documented GlobeSmsReport (status "2") is a failed report, message_id kept in extra."""
    receipt = decode_mns_body("GlobeSmsReport", b64(REF_4_6_GLOBE))
    assert receipt.kind == "delivery_report"
    assert receipt.status == "failed"
    assert receipt.phone_number == "6591234567"
    assert receipt.error_code == "SP_UNKNOW_ERROR"
    assert receipt.error_message == "carrier unknown error"
    assert receipt.sent_at == utc(2024, 5, 1, 2, 0, 0)
    assert receipt.reported_at == utc(2024, 5, 1, 2, 0, 6)
    assert receipt.extra == {"message_id": "12441353"}


def test_reference_4_7_international_sms_report_is_told_apart_by_its_keys() -> None:
    """The PascalCase SmsReport decodes with RFC 2822 times, its ids in extra, under its own dedupe family."""
    receipt = decode_mns_body("SmsReport", b64(REF_4_7_INTERNATIONAL))
    assert receipt.message_type == "SmsReport"
    assert receipt.status == "delivered"
    assert receipt.phone_number == "6591234567"
    assert receipt.biz_id is None
    assert receipt.error_code == "success"
    assert receipt.sms_parts == 1
    assert receipt.sent_at == utc(2024, 5, 1, 2, 0, 0)
    assert receipt.reported_at == utc(2024, 5, 1, 2, 0, 6)
    assert receipt.extra == {"MessageId": "1008030300000000", "TaskId": "67890"}
    assert receipt.dedupe_key == dedupe_key(
        "SmsReport/international", message_id="1008030300000000", to="6591234567", status="delivered"
    )


@pytest.mark.parametrize(
    ("status", "expected"), [("1", "delivered"), ("2", "failed"), ("6", "expired"), (6, "expired")]
)
def test_international_status_codes_map_to_outcomes(status: object, expected: str) -> None:
    """International Status 1/2/6 are delivered/failed/expired, as a string or a number."""
    body = json.loads(REF_4_7_INTERNATIONAL) | {"Status": status}
    assert decode_mns_body("SmsReport", json.dumps(body)).status == expected


@pytest.mark.parametrize(("status", "expected"), [(0, "approving"), ("1", "approved"), (2, "rejected")])
def test_card_template_approval_status_maps_to_review_outcomes(status: object, expected: str) -> None:
    """approval_status 0/1/2 are approving/approved/rejected."""
    body = json.loads(REF_4_5_CARD_TEMPLATE) | {"approval_status": status}
    assert decode_mns_body("MnsCardTemplate", json.dumps(body)).status == expected


@pytest.mark.parametrize("success", [True, "true", "TRUE", 1, "1"])
def test_success_is_tolerated_as_a_string_or_a_number(success: object) -> None:
    """``success`` may be a boolean, its string, or 1 (reference 4.9); all mean delivered."""
    body = json.loads(REF_4_1_SMS_REPORT) | {"success": success}
    assert decode_mns_body("SmsReport", json.dumps(body)).status == "delivered"


def test_compact_mainland_time_is_accepted() -> None:
    """The compact ``yyyyMMddHHmmss`` of an old SmsUp doc is Beijing time too, and the same instant."""
    body = json.loads(REF_4_2_SMS_UP) | {"send_time": "20240501100500"}
    receipt = decode_mns_body("SmsUp", json.dumps(body))
    assert receipt.sent_at == utc(2024, 5, 1, 2, 5, 0)
    assert receipt.dedupe_key == decode_mns_body("SmsUp", REF_4_2_SMS_UP).dedupe_key


def test_nulls_and_absent_optional_fields_read_as_absent() -> None:
    """Optional fields may be null or missing (reference 4); the receipt still decodes."""
    body = {"phone_number": "13900001111", "success": True, "biz_id": "1^0", "out_id": None, "report_time": None}
    receipt = decode_mns_body("SmsReport", json.dumps(body))
    assert (receipt.out_id, receipt.reported_at, receipt.sent_at, receipt.sms_parts) == (None, None, None, None)
    assert receipt.extra == {}


def test_unknown_fields_are_kept_in_extra() -> None:
    """A field Alibaba adds later is not an error; it lands in extra under its own name."""
    body = json.loads(REF_4_1_SMS_REPORT) | {"new_field": {"nested": [1, 2]}}
    assert decode_mns_body("SmsReport", json.dumps(body)).extra == {"new_field": {"nested": [1, 2]}}


def test_order_id_spellings_give_one_key_and_one_extra_field() -> None:
    """``order_id`` (MNS) and ``orderId`` (push) are the same review ticket."""
    pushed = json.loads(REF_4_3_SIGN_PUSH)[0]
    queued = {k: v for k, v in pushed.items() if k != "orderId"} | {"order_id": 2001234}
    via_push = decode_push("SignSmsReport", json.dumps([pushed]).encode())[0]
    via_mns = decode_mns_body("SignSmsReport", b64(json.dumps(queued)))
    assert isinstance(via_push, Receipt)
    assert comparable(via_push) == comparable(via_mns)


def test_base64_text_and_decoded_bytes_give_the_same_receipt() -> None:
    """The SDK's decoded bytes, the raw base64 string and base64 bytes all decode alike; raw is kept as given."""
    text = b64(REF_4_2_SMS_UP)
    forms: list[str | bytes] = [text, text.encode(), REF_4_2_SMS_UP.encode(), REF_4_2_SMS_UP, text + "\n"]
    receipts = [decode_mns_body("SmsUp", form) for form in forms]
    assert [comparable(r) for r in receipts] == [comparable(receipts[0])] * len(forms)
    assert [r.raw for r in receipts] == [f.encode() if isinstance(f, str) else f for f in forms]


def test_same_receipt_has_the_same_key_from_every_source() -> None:
    """A receipt via MNS, push or backfill has one dedupe key, whatever its queue."""
    obj = json.loads(REF_4_1_SMS_REPORT)
    via_mns = decode_mns_body("SmsReport", b64(REF_4_1_SMS_REPORT), queue="q1")
    [via_push] = decode_push("SmsReport", json.dumps([obj]).encode(), route="/push")
    via_query = decode_object("SmsReport", obj, raw=b"{}", source="query", queue=None)
    assert isinstance(via_push, Receipt)
    assert via_mns.dedupe_key == via_push.dedupe_key == via_query.dedupe_key
    assert via_query.source == "query"


def test_a_later_outcome_for_the_same_number_is_a_new_receipt() -> None:
    """A failed report and a later delivered one for one (biz_id, number) have different keys."""
    failed = json.loads(REF_4_1_SMS_REPORT) | {"success": False}
    assert (
        decode_mns_body("SmsReport", json.dumps(failed)).dedupe_key
        != decode_mns_body("SmsReport", REF_4_1_SMS_REPORT).dedupe_key
    )


def test_review_steps_of_one_ticket_are_distinct_receipts() -> None:
    """approving then approved for one order_id are two events."""
    body = json.loads(REF_4_4_TEMPLATE)
    keys = {
        decode_mns_body("TemplateSmsReport", json.dumps(body | {"template_status": s})).dedupe_key
        for s in ("approving", "approved", "rejected")
    }
    assert len(keys) == 3


def test_card_template_key_ignores_vendor_order_and_descriptions() -> None:
    """tmpOps is compared as a set of (vendorCode, state) pairs."""
    body = json.loads(REF_4_5_CARD_TEMPLATE)
    reordered = body | {"tmpOps": [{"vendorCode": "HUAWEI", "state": "1", "desc": "fine"}, body["tmpOps"][0]]}
    changed = body | {"tmpOps": [body["tmpOps"][0], {"state": 2, "desc": "ok", "vendorCode": "HUAWEI"}]}
    key = decode_mns_body("MnsCardTemplate", json.dumps(body)).dedupe_key
    assert decode_mns_body("MnsCardTemplate", json.dumps(reordered)).dedupe_key == key
    assert decode_mns_body("MnsCardTemplate", json.dumps(changed)).dedupe_key != key


def test_dedupe_key_is_documented_sha256_of_the_identity_tuple() -> None:
    """The key is sha256 of the compact ASCII JSON array [family, *identity]."""
    expected = hashlib.sha256(b'["SmsUp","139","42","2024-05-01T02:05:00+00:00","1234"]').hexdigest()
    assert dedupe_key(
        "SmsUp", phone_number="139", sequence_id="42", send_time=utc(2024, 5, 1, 2, 5), dest_code="1234"
    ) == (expected)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text()), min_size=3, max_size=3))
def test_dedupe_key_hashes_exactly_the_documented_json_whatever_the_text(values: list[str | None]) -> None:
    """Any text (quotes, control characters, non-ASCII, lone surrogates) or null, as json.dumps writes it."""
    canonical = json.dumps(["SignSmsReport", *values], ensure_ascii=True, separators=(",", ":"))
    identity = dict(zip(("sign_name", "order_id", "sign_status"), values, strict=True))
    assert dedupe_key("SignSmsReport", **identity) == hashlib.sha256(canonical.encode("ascii")).hexdigest()


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1" + "0" * 400 + ".0"])
@pytest.mark.parametrize("as_base64", [True, False])
def test_a_number_beyond_the_float_range_is_refused_not_read_as_infinity(number: str, as_base64: bool) -> None:
    """json.loads reads 1e400 as inf, which no sink could write back as JSON: the body is refused either way."""
    body = f'{{"biz_id":"1^0","phone_number":"139","success":true,"price":{number}}}'.encode()
    with pytest.raises(DecodeError, match="body is not plain JSON data \\(Out of range float"):
        decode_mns_body("SmsReport", base64.b64encode(body) if as_base64 else body)


def test_a_number_beyond_the_float_range_costs_a_push_only_its_own_element() -> None:
    """The payload still parses; the element with 1e400 is refused and its neighbours are decoded."""
    good = '{"biz_id":"1^0","phone_number":"139","success":true}'
    bad = '{"biz_id":"2^0","phone_number":"138","success":true,"price":1e400}'
    results = decode_push("SmsReport", f"[{good},{bad},{good.replace('139', '137')}]".encode())
    assert [type(result) for result in results] == [Receipt, DecodeError, Receipt]
    assert "Out of range float" in str(results[1])


@pytest.mark.parametrize(
    ("family", "identity"),
    [
        ("NoSuchType", {}),
        ("SmsReport", {"biz_id": "1", "phone_number": "2"}),
        ("SmsReport", {"biz_id": "1", "phone_number": "2", "status": "delivered", "extra": "x"}),
        ("SmsUp", {"phone_number": "1", "sequence_id": "2", "send_time": datetime(2024, 5, 1), "dest_code": "3"}),
    ],
)
def test_dedupe_key_rejects_misuse(family: str, identity: dict[str, Any]) -> None:
    """An unknown family, wrong identity names or a naive time are programming errors."""
    with pytest.raises(ValueError, match=family if family == "NoSuchType" else "identity"):
        dedupe_key(family, **identity)


def test_every_message_type_has_an_identity_family() -> None:
    """Each supported MessageType is a dedupe family (the international SmsReport has one more)."""
    assert set(MESSAGE_TYPES) | {"SmsReport/international"} == set(IDENTITY_FIELDS)


@pytest.mark.parametrize(
    ("message_type", "body", "field", "reason"),
    [
        ("SmsReport", {"phone_number": "139", "success": True}, "biz_id", "missing"),
        ("SmsReport", {"biz_id": "1^0", "success": True}, "phone_number", "missing"),
        ("SmsReport", {"biz_id": "1^0", "phone_number": "139"}, "success", "missing"),
        ("SmsReport", {"biz_id": None, "phone_number": "139", "success": True}, "biz_id", "null"),
        ("SmsReport", {"biz_id": " ", "phone_number": "139", "success": True}, "biz_id", "empty"),
        ("SmsReport", {"biz_id": {"a": 1}, "phone_number": "139", "success": True}, "biz_id", "object"),
        ("SmsReport", {"biz_id": "1^0", "phone_number": True, "success": True}, "phone_number", "boolean"),
        ("SmsReport", {"biz_id": "1^0", "phone_number": "139", "success": "maybe"}, "success", "true or false"),
        ("SmsReport", {"biz_id": "1^0", "phone_number": "139", "success": 2}, "success", "true or false"),
        (
            "SmsReport",
            {"biz_id": "1^0", "phone_number": "139", "success": True, "send_time": "May 1st"},
            "send_time",
            "expected a time like 2024-01-01 00:00:00",
        ),
        (
            "SmsReport",
            {"biz_id": "1^0", "phone_number": "139", "success": True, "send_time": 20240501},
            "send_time",
            "time string",
        ),
        (
            "SmsReport",
            {"biz_id": "1^0", "phone_number": "139", "success": True, "sms_size": "two"},
            "sms_size",
            "integer",
        ),
        ("SmsReport", {"biz_id": "1^0", "phone_number": "139", "success": True, "err_msg": ["x"]}, "err_msg", "string"),
        ("SmsReport", {"To": "65", "MessageId": "1", "Status": "3"}, "Status", "unknown status code"),
        ("SmsReport", {"To": "65", "Status": "1"}, "MessageId", "missing"),
        ("GlobeSmsReport", {"to": "65", "message_id": "1", "status": "6"}, "status", "unknown status code"),
        (
            "SmsUp",
            {"phone_number": "139", "sequence_id": 1.5, "send_time": "2024-05-01 10:00:00", "dest_code": "1"},
            "sequence_id",
            "number",
        ),
        ("SmsUp", {"phone_number": "139", "sequence_id": 1, "dest_code": "1"}, "send_time", "missing"),
        ("SignSmsReport", {"sign_name": "S", "sign_status": "approved"}, "order_id", "missing"),
        (
            "SignSmsReport",
            {"sign_name": "S", "sign_status": "done", "orderId": "1"},
            "sign_status",
            "unknown review status",
        ),
        (
            "TemplateSmsReport",
            {"template_code": "T", "template_status": "approved", "order_id": "1", "create_date": "x"},
            "create_date",
            "expected a time like 2024-01-01 00:00:00",
        ),
        ("MnsCardVender", {"mobile": "139", "outId": "o", "render_status": "ok"}, "render_status", "integer code"),
        ("MnsCardVender", {"mobile": "139", "render_status": 0}, "outId", "missing"),
        ("MnsCardTemplate", {"template_code": "C", "approval_status": 1, "tmpOps": {}}, "tmpOps", "array"),
        (
            "MnsCardTemplate",
            {"template_code": "C", "approval_status": 1, "tmpOps": [{"state": 1}]},
            "tmpOps[0].vendorCode",
            "non-empty",
        ),
        ("MnsCardTemplate", {"template_code": "C", "approval_status": 3}, "approval_status", "unknown status code"),
    ],
)
def test_invalid_receipts_name_the_field_and_the_reason(
    message_type: str, body: dict[str, Any], field: str, reason: str
) -> None:
    """A body missing an identity field, or with a value that cannot be understood, is a DecodeError."""
    raw = b64(json.dumps(body))
    with pytest.raises(DecodeError) as caught:
        decode_mns_body(message_type, raw)
    assert (caught.value.message_type, caught.value.field) == (message_type, field)
    assert reason in caught.value.reason
    assert caught.value.raw == raw.encode()


def test_unknown_message_type_lists_the_known_ones() -> None:
    """An unsupported MessageType is rejected loudly (reference 4.8), naming every supported one."""
    with pytest.raises(DecodeError) as caught:
        decode_mns_body("VoiceReport", REF_4_1_SMS_REPORT)
    assert caught.value.message_type == "VoiceReport"
    assert all(name in caught.value.reason for name in MESSAGE_TYPES)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b"[1, 2]", "array"),
        (b"null", "null"),
        (b'{"phone_number": NaN}', "NaN"),
        (b'{"a": 1' + b"0" * 5000 + b"}", "JSON"),
        (b"[" * 50_000 + b"]" * 50_000, "nested"),
        (b'{"err_msg": "\\ud800"}', "surrogate"),
        (b"\xff\xfe\x00", "neither"),
        (b64(b"\xff{}"), "not UTF-8"),
        (b64("[]"), "array"),
    ],
)
def test_undecodable_bodies_are_decode_errors(body: bytes | str, reason: str) -> None:
    """Bodies that are not a JSON object (directly or in base64) fail with a reason and the raw body."""
    with pytest.raises(DecodeError) as caught:
        decode_mns_body("SmsReport", body)
    assert caught.value.field == ""
    assert reason in caught.value.reason
    assert caught.value.raw == (body.encode() if isinstance(body, str) else body)


def test_lone_surrogates_in_a_text_body_are_a_decode_error_with_the_raw_kept() -> None:
    """A str body that is not valid Unicode still dead-letters with its bytes."""
    with pytest.raises(DecodeError) as caught:
        decode_mns_body("SmsReport", "\ud800{}")
    assert caught.value.raw == "\ud800{}".encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_every_emulator_poison_body_is_a_decode_error(kind: str) -> None:
    """Each kind of poison body the emulator enqueues is rejected, as base64 text and as SDK-decoded bytes."""
    for seed in range(20):
        body = malformed_body(random.Random(seed), kind)
        with pytest.raises(DecodeError):
            decode_mns_body("SmsReport", body)
        try:
            decoded = base64.b64decode(body, validate=True)
        except ValueError:
            continue
        with pytest.raises(DecodeError):
            decode_mns_body("SmsReport", decoded)


SAMPLE_VARIANTS = [(t, v) for t in SAMPLE_TYPES for v in VARIANTS.get(t, ("mainland",))]


def expected_status(message_type: str, obj: dict[str, Any]) -> str:
    """What the reference says a sample's normalized status is."""
    if message_type == "SmsReport" and "success" in obj:
        return "delivered" if obj["success"] else "failed"
    if message_type == "SmsReport":
        return {"1": "delivered", "2": "failed", "6": "expired"}[obj["Status"]]
    if message_type == "GlobeSmsReport":
        return {"1": "delivered", "2": "failed"}[obj["status"]]
    if message_type == "SmsUp":
        return "received"
    if message_type == "SignSmsReport":
        return str(obj["sign_status"])
    if message_type == "TemplateSmsReport":
        return str(obj["template_status"])
    if message_type == "MnsCardVender":
        return "rendered" if int(obj["render_status"]) == 0 else "failed"
    return ("approving", "approved", "rejected")[obj["approval_status"]]


@pytest.mark.parametrize(("message_type", "variant"), SAMPLE_VARIANTS)
def test_every_emulator_sample_decodes(message_type: str, variant: str) -> None:
    """Samples of every type and variant, over many seeds, decode with the status and times they carry."""
    for seed in range(40):
        for sample in ReceiptFactory(Clock(), seed).make_many(message_type, 5, variant=variant):
            receipt = decode_mns_body(message_type, sample.body, queue="q")
            assert receipt.message_type == message_type
            assert receipt.status == expected_status(message_type, sample.receipt)
            for moment in (receipt.sent_at, receipt.reported_at):
                assert moment is None or moment.utcoffset() is not None
            if sample.send_record is not None:
                assert (receipt.biz_id, receipt.phone_number) == (
                    sample.send_record.biz_id,
                    sample.send_record.phone_number,
                )
                assert receipt.sent_at is not None
                assert receipt.sent_at.timestamp() == sample.send_record.send_time
            assert Receipt.from_json_dict(receipt.to_json_dict()) == receipt


def test_distinct_emulator_samples_have_distinct_keys() -> None:
    """Different receipts of one factory never share a dedupe key."""
    factory = ReceiptFactory(Clock(), 3)
    samples = [s for t, v in SAMPLE_VARIANTS for s in factory.make_many(t, 30, variant=v)]
    keys = {decode_mns_body(s.message_type, s.body).dedupe_key for s in samples}
    distinct = {(s.message_type, json.dumps(s.receipt, sort_keys=True)) for s in samples}
    assert len(keys) == len(distinct)


def test_push_array_with_one_bad_element_decodes_the_others() -> None:
    """A bad element is its own DecodeError, raw holding that element; its neighbours still decode."""
    good = json.loads(REF_4_1_SMS_REPORT)
    bad = {k: v for k, v in good.items() if k != "biz_id"}
    payload = json.dumps([good, bad, 7, good | {"phone_number": "13900002222"}], ensure_ascii=False).encode()
    results = decode_push("SmsReport", payload, route="/alicom/SmsReport")
    assert [type(r).__name__ for r in results] == ["Receipt", "DecodeError", "DecodeError", "Receipt"]
    first, missing, number, last = results
    assert isinstance(first, Receipt)
    assert isinstance(last, Receipt)
    assert isinstance(missing, DecodeError)
    assert isinstance(number, DecodeError)
    assert (first.source, first.queue) == ("push", "/alicom/SmsReport")
    assert missing.field == "biz_id"
    assert missing.raw == json.dumps(bad, ensure_ascii=False).encode()
    assert number.raw == b"7"
    assert last.phone_number == "13900002222"


def test_push_single_object_is_accepted() -> None:
    """A push body of one object (not wrapped in an array) decodes to one receipt."""
    [receipt] = decode_push("MnsCardVender", REF_4_5_CARD_VENDER.encode())
    assert isinstance(receipt, Receipt)
    assert receipt.status == "rendered"


def test_empty_push_array_has_no_receipts() -> None:
    """``[]`` is a valid, empty push."""
    assert decode_push("SmsUp", b"[]") == []


@pytest.mark.parametrize(("payload", "reason"), [(b"not json", "JSON"), (b"42", "number"), (b'"x"', "string")])
def test_push_payload_that_is_not_an_array_or_object_raises(payload: bytes, reason: str) -> None:
    """A push body that is not JSON, or a JSON scalar, is rejected as a whole."""
    with pytest.raises(DecodeError) as caught:
        decode_push("SmsReport", payload)
    assert reason in caught.value.reason
    assert caught.value.raw == payload


def test_push_of_an_unknown_message_type_raises() -> None:
    """A push route configured with an unsupported type rejects the whole payload."""
    with pytest.raises(DecodeError, match="unknown message type"):
        decode_push("VoiceReport", b"[]")


@pytest.mark.parametrize(
    ("obj", "field", "reason"),
    [
        ({"biz_id": 10**5000, "phone_number": "139", "success": True}, "", "JSON"),
        ({"biz_id": "1^0", "phone_number": "139", "success": True, "at": datetime(2024, 5, 1, tzinfo=UTC)}, "", "JSON"),
        ({"biz_id": "1^0", "phone_number": "139", "success": True, "ratio": float("nan")}, "", "JSON"),
    ],
)
def test_decode_object_rejects_values_json_cannot_carry(obj: dict[str, Any], field: str, reason: str) -> None:
    """An object built in code (backfill) with a huge int, a datetime or NaN is a DecodeError, not a crash later."""
    with pytest.raises(DecodeError) as caught:
        decode_object("SmsReport", obj, raw=b"", source="query", queue=None)
    assert caught.value.field == field
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("tmp_ops", "field"),
    [
        ([1], "tmpOps[0]"),
        ([{"vendorCode": "OPPO"}], "tmpOps[0].state"),
        ([{"vendorCode": "", "state": 1}], "tmpOps[0].vendorCode"),
    ],
)
def test_card_template_vendor_entries_must_be_well_formed(tmp_ops: list[Any], field: str) -> None:
    """Each tmpOps entry is part of the identity, so a malformed one is rejected naming its index."""
    body = {"template_code": "CARD_SMS_1", "approval_status": 1, "tmpOps": tmp_ops}
    with pytest.raises(DecodeError) as caught:
        decode_mns_body("MnsCardTemplate", json.dumps(body))
    assert caught.value.field == field


def test_a_decoder_bug_becomes_a_decode_error_so_the_body_is_dead_lettered(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception inside a decoder reaches the caller as a DecodeError carrying the raw body."""

    def broken(fields: object) -> Receipt:
        raise KeyError("oops")

    monkeypatch.setitem(receipts._DECODERS, "SmsUp", broken)
    with pytest.raises(DecodeError, match="internal decoder error") as caught:
        decode_mns_body("SmsUp", REF_4_2_SMS_UP)
    assert caught.value.raw == REF_4_2_SMS_UP.encode()


def test_decode_object_rejects_a_non_object() -> None:
    """decode_object checks its input even when a caller's types say it is a mapping."""
    with pytest.raises(DecodeError, match="not an object"):
        decode_object("SmsUp", [1], raw=b"[1]", source="query", queue=None)  # type: ignore[arg-type]
