"""Sample receipts: reproducible from a seed, shaped as reference section 4 documents, encoded as Alibaba does."""

from __future__ import annotations

import base64
import json
import random
import re
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from mns_consumer.emulator.clock import BEIJING, Clock, format_beijing
from mns_consumer.emulator.samples import (
    MALFORMED_KINDS,
    MESSAGE_TYPES,
    VARIANTS,
    ReceiptFactory,
    encode_body,
    malformed_body,
)

# 2024-05-01 10:00:00 Beijing time.
FROZEN_EPOCH = 1714528800.0
MAINLAND_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
MAINLAND_NUMBER = re.compile(r"1[3-9]\d{9}")

# (MessageType, variant) -> (fields always present, fields sometimes present)
DOCUMENTED_FIELDS: dict[tuple[str, str], tuple[set[str], set[str]]] = {
    ("SmsReport", "mainland"): (
        {"phone_number", "send_time", "report_time", "success", "err_code", "err_msg", "sms_size", "biz_id"},
        {"out_id"},
    ),
    ("SmsReport", "international"): (
        {"To", "Status", "MessageId", "SmsSize", "SendDate", "ReceiveDate", "ErrorCode", "ErrorDescription"},
        {"TaskId"},
    ),
    ("SmsUp", "mainland"): ({"phone_number", "content", "send_time", "dest_code", "sequence_id"}, {"sign_name"}),
    ("SignSmsReport", "mainland"): (
        {"sign_name", "sign_status", "reason", "sign_source", "sign_scene", "remark", "create_date", "order_id"},
        set(),
    ),
    ("SignSmsReport", "http"): (
        {"sign_name", "sign_status", "reason", "sign_source", "sign_scene", "remark", "create_date", "orderId"},
        set(),
    ),
    ("TemplateSmsReport", "mainland"): (
        {
            "template_code",
            "template_name",
            "template_status",
            "reason",
            "remark",
            "create_date",
            "template_type",
            "template_content",
            "order_id",
        },
        set(),
    ),
    ("TemplateSmsReport", "http"): (
        {
            "template_code",
            "template_name",
            "template_status",
            "reason",
            "remark",
            "create_date",
            "template_type",
            "template_content",
            "orderId",
        },
        set(),
    ),
    ("MnsCardVender", "mainland"): ({"mobile", "outId", "render_status", "desc"}, set()),
    ("MnsCardTemplate", "mainland"): ({"approval_status", "extData", "tmpOps", "template_code", "desc"}, set()),
    ("GlobeSmsReport", "mainland"): (
        {"to", "status", "message_id", "send_date", "receive_date", "error_code", "error_description"},
        set(),
    ),
}
ALL_VARIANTS = [
    (message_type, variant) for message_type in MESSAGE_TYPES for variant in VARIANTS.get(message_type, ("mainland",))
]


class FrozenClock(Clock):
    """An emulator clock that stands still, so two factories see the same instant."""

    def __init__(self, epoch: float) -> None:
        super().__init__()
        self._epoch = epoch

    def now(self) -> float:
        """The frozen instant."""
        return self._epoch


def decode_object(body: str) -> Any:
    """Decode a body as the consumer must (base64, UTF-8, JSON); None when any step fails."""
    try:
        return json.loads(base64.b64decode(body, validate=True).decode("utf-8"))
    except ValueError:  # binascii.Error, UnicodeDecodeError and JSONDecodeError are all ValueErrors
        return None


@pytest.mark.parametrize(("message_type", "variant"), ALL_VARIANTS)
def test_same_seed_and_clock_produce_identical_receipts(message_type: str, variant: str) -> None:
    """Two factories with one seed and one instant produce the same receipts, send records included."""
    first = ReceiptFactory(FrozenClock(FROZEN_EPOCH), seed=7).make_many(message_type, 25, variant=variant)
    second = ReceiptFactory(FrozenClock(FROZEN_EPOCH), seed=7).make_many(message_type, 25, variant=variant)
    assert first == second


def test_different_seeds_produce_different_receipts() -> None:
    """The seed decides the receipts."""
    first = ReceiptFactory(FrozenClock(FROZEN_EPOCH), seed=1).make_many("SmsReport", 10)
    second = ReceiptFactory(FrozenClock(FROZEN_EPOCH), seed=2).make_many("SmsReport", 10)
    assert [r.receipt for r in first] != [r.receipt for r in second]


@pytest.mark.parametrize(("message_type", "variant"), ALL_VARIANTS)
def test_every_message_type_carries_exactly_its_documented_fields(message_type: str, variant: str) -> None:
    """Each body has the fields reference section 4 lists for its type, and no others."""
    always, sometimes = DOCUMENTED_FIELDS[(message_type, variant)]
    for generated in ReceiptFactory(Clock(), seed=3).make_many(message_type, 60, variant=variant):
        assert generated.message_type == message_type
        assert generated.variant == variant
        assert always <= generated.receipt.keys() <= always | sometimes


def test_mainland_sms_reports_look_like_alibaba_delivery_reports() -> None:
    """Mainland SmsReport values have the documented formats, and delivery goes with DELIVERED."""
    clock = FrozenClock(FROZEN_EPOCH)
    reports = [g.receipt for g in ReceiptFactory(clock, seed=5).make_many("SmsReport", 200)]
    for report in reports:
        assert MAINLAND_NUMBER.fullmatch(report["phone_number"])
        assert re.fullmatch(r"\d{18}\^0", report["biz_id"])
        assert MAINLAND_TIME.fullmatch(report["send_time"])
        assert report["send_time"] <= report["report_time"] <= format_beijing(FROZEN_EPOCH)
        assert report["sms_size"] in {"1", "2"}
        assert isinstance(report["success"], bool)
        assert (report["err_code"] == "DELIVERED") == report["success"]
        assert report["err_msg"] == "用户接收成功" or not report["success"]
    assert 0.7 < sum(r["success"] for r in reports) / len(reports) < 0.95
    assert {"MK:0001", "UNDELIV", "IC:0015"} & {r["err_code"] for r in reports}
    assert any("out_id" not in r for r in reports)
    assert any("out_id" in r for r in reports)


def test_sms_reports_of_one_batch_share_a_biz_id_across_distinct_numbers() -> None:
    """Consecutive SmsReports come in SendBatchSms-like runs that share biz_id but not phone numbers."""
    reports = [g.receipt for g in ReceiptFactory(Clock(), seed=11).make_many("SmsReport", 60)]
    runs: list[list[dict[str, Any]]] = []
    for report in reports:
        if runs and runs[-1][0]["biz_id"] == report["biz_id"]:
            runs[-1].append(report)
        else:
            runs.append([report])
    assert any(len(run) > 1 for run in runs)
    assert len({run[0]["biz_id"] for run in runs}) == len(runs)
    for run in runs:
        assert len({r["phone_number"] for r in run}) == len(run)
        assert len({(r["send_time"], r.get("out_id"), r["sms_size"]) for r in run}) == 1


def test_mainland_sms_report_comes_with_the_send_record_it_reports_on() -> None:
    """The send record agrees with its receipt, so QuerySendDetails and the queue tell one story."""
    for generated in ReceiptFactory(Clock(), seed=13).make_many("SmsReport", 40):
        receipt, record = generated.receipt, generated.send_record
        assert record is not None
        assert record.phone_number == receipt["phone_number"]
        assert record.biz_id == receipt["biz_id"]
        assert record.out_id == receipt.get("out_id")
        assert record.err_code == receipt["err_code"]
        assert record.send_status == (3 if receipt["success"] else 2)
        assert format_beijing(record.send_time) == receipt["send_time"]
        assert record.receive_time is not None
        assert format_beijing(record.receive_time) == receipt["report_time"]
        assert record.content.startswith("【")
        assert record.template_code.startswith("SMS_")


def test_only_mainland_sms_reports_have_send_records() -> None:
    """International SmsReports and the other types carry no send record."""
    factory = ReceiptFactory(Clock(), seed=17)
    assert factory.make("SmsReport", variant="international").send_record is None
    for message_type in MESSAGE_TYPES[1:]:
        assert factory.make(message_type).send_record is None


def test_waiting_send_has_status_1_and_no_receipt_data() -> None:
    """A send whose receipt never came is SendStatus 1 without receive time or error code."""
    record = ReceiptFactory(FrozenClock(FROZEN_EPOCH), seed=19).make_waiting_send()
    assert record.send_status == 1
    assert record.receive_time is None
    assert record.err_code is None
    assert record.send_time < FROZEN_EPOCH
    assert MAINLAND_NUMBER.fullmatch(record.phone_number)


def test_receipt_times_are_recent_on_the_emulator_clock() -> None:
    """Receipt times are shortly before the emulator's now, in Beijing time, wherever the clock stands."""
    clock = FrozenClock(FROZEN_EPOCH)
    factory = ReceiptFactory(clock, seed=23)
    for message_type in ("SmsReport", "SmsUp", "GlobeSmsReport"):
        receipt = factory.make(message_type).receipt
        sent = receipt.get("send_time") or receipt["send_date"]
        sent_at = datetime.strptime(sent, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING).timestamp()
        assert FROZEN_EPOCH - 3600 < sent_at <= FROZEN_EPOCH


def test_international_sms_report_uses_pascal_case_and_rfc_2822_dates() -> None:
    """The international SmsReport has Status 1/2/6 and dates with a +0800 offset, under MessageType SmsReport."""
    generated = ReceiptFactory(Clock(), seed=29).make_many("SmsReport", 80, variant="international")
    assert {g.message_type for g in generated} == {"SmsReport"}
    statuses = {g.receipt["Status"] for g in generated}
    assert statuses <= {"1", "2", "6"}
    assert "1" in statuses
    assert len(statuses) > 1
    for g in generated:
        sent = parsedate_to_datetime(g.receipt["SendDate"])
        received = parsedate_to_datetime(g.receipt["ReceiveDate"])
        assert sent.utcoffset() == BEIJING.utcoffset(None)
        assert sent <= received
        assert g.receipt["To"].isdigit()
        assert (g.receipt["ErrorCode"] == "success") == (g.receipt["Status"] == "1")


def test_sms_up_has_chinese_and_emoji_text_and_a_number_or_string_sequence_id() -> None:
    """SmsUp bodies show both sequence_id spellings and carry non-ASCII content."""
    replies = [g.receipt for g in ReceiptFactory(Clock(), seed=31).make_many("SmsUp", 80)]
    assert {type(r["sequence_id"]) for r in replies} == {int, str}
    assert any(any(ord(ch) > 0xFFFF for ch in r["content"]) for r in replies)
    assert any(any("\u4e00" <= ch <= "\u9fff" for ch in r["content"]) for r in replies)
    assert any("sign_name" in r for r in replies)
    assert any("sign_name" not in r for r in replies)
    assert all(MAINLAND_NUMBER.fullmatch(r["phone_number"]) and r["dest_code"].isdigit() for r in replies)


def test_card_template_report_lists_vendor_reviews() -> None:
    """MnsCardTemplate carries an integer approval status and per-vendor review states."""
    for g in ReceiptFactory(Clock(), seed=37).make_many("MnsCardTemplate", 30):
        receipt = g.receipt
        assert receipt["approval_status"] in {0, 1, 2}
        assert receipt["template_code"].startswith("CARD_SMS_")
        assert isinstance(receipt["extData"], dict)
        assert receipt["tmpOps"]
        for op in receipt["tmpOps"]:
            assert set(op) == {"state", "desc", "vendorCode"}
            assert op["state"] in {0, 1, 2}


def test_unknown_message_type_is_rejected_with_the_known_types() -> None:
    """Asking for a type the factory does not know fails loudly and says what it knows."""
    with pytest.raises(ValueError, match=r"VoiceReport.*SmsReport, SmsUp"):
        ReceiptFactory(Clock()).make("VoiceReport")


def test_unknown_variant_is_rejected_with_the_known_variants() -> None:
    """Only SmsReport has an international variant."""
    with pytest.raises(ValueError, match="mainland"):
        ReceiptFactory(Clock()).make("SmsUp", variant="international")


def test_encode_body_is_base64_of_compact_utf8_json() -> None:
    """encode_body round-trips and keeps Chinese and emoji as raw UTF-8, not \\u escapes."""
    receipt = {"phone_number": "13900001111", "content": "好的，收到👍", "sequence_id": 1234567890}  # noqa: RUF001
    body = encode_body(receipt)
    text = base64.b64decode(body, validate=True).decode("utf-8")
    assert text == '{"phone_number":"13900001111","content":"好的，收到👍","sequence_id":1234567890}'  # noqa: RUF001
    assert json.loads(text) == receipt


@pytest.mark.parametrize(("message_type", "variant"), ALL_VARIANTS)
def test_generated_body_decodes_back_to_its_receipt(message_type: str, variant: str) -> None:
    """Every generated receipt survives the MNS body encoding."""
    generated = ReceiptFactory(Clock(), seed=41).make(message_type, variant=variant)
    assert decode_object(generated.body) == generated.receipt


@pytest.mark.parametrize("kind", [k for k in MALFORMED_KINDS if k != "missing_success"])
def test_malformed_body_does_not_decode_to_a_json_object(kind: str) -> None:
    """Each poison kind fails base64, UTF-8 or JSON decoding, or decodes to something other than an object."""
    for seed in range(20):
        assert not isinstance(decode_object(malformed_body(random.Random(seed), kind)), dict)


def test_malformed_body_missing_success_is_a_report_without_success() -> None:
    """The missing-field kind is an SmsReport object that lacks the required success flag."""
    decoded = decode_object(malformed_body(random.Random(0), "missing_success"))
    assert isinstance(decoded, dict)
    assert "success" not in decoded
    assert "biz_id" in decoded


def test_malformed_body_without_kind_is_reproducible_from_the_rng() -> None:
    """A random poison body depends only on the generator's state."""
    first = [malformed_body(random.Random(seed)) for seed in range(30)]
    second = [malformed_body(random.Random(seed)) for seed in range(30)]
    assert first == second
    assert len(set(first)) > len(MALFORMED_KINDS)


def test_unknown_malformed_kind_is_rejected() -> None:
    """An unknown poison kind is a ValueError listing the known ones."""
    with pytest.raises(ValueError, match="not_base64"):
        malformed_body(random.Random(0), "gzip")
