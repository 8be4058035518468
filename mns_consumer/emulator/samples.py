"""Realistic sample receipts for every Alicom MessageType, reproducible from a seed.

The emulator enqueues these the way Alibaba does (base64 of compact UTF-8 JSON, reference 3.6), the demo
shows them, and tests feed them to the consumer. Field names, value types and their known quirks follow
reference section 4: snake_case mainland bodies, the PascalCase international SmsReport, ``order_id``
versus ``orderId``, ``sequence_id`` as a number or a string, ``render_status`` as a string or a number.

Every non-time value comes from one seeded :class:`random.Random`, so a factory built with the same seed
and called in the same order produces the same receipts; times are offsets from the emulator
:class:`~mns_consumer.emulator.clock.Clock`, so receipts are recent wherever the clock has been moved.
"""

# ruff: noqa: RUF001  (the Chinese sample texts use full-width punctuation on purpose, as real SMS do)

from __future__ import annotations

import base64
import json
import math
import random
import threading
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from typing import Any, TypeAlias

from mns_consumer.emulator.clock import BEIJING, Clock, format_beijing
from mns_consumer.emulator.send_log import (
    SEND_STATUS_DELIVERED,
    SEND_STATUS_FAILED,
    SEND_STATUS_WAITING,
    SendRecord,
)

ReceiptJson: TypeAlias = dict[str, Any]
"""A receipt as the JSON object Alibaba puts in a message body."""

MESSAGE_TYPES: tuple[str, ...] = (
    "SmsReport",
    "SmsUp",
    "SignSmsReport",
    "TemplateSmsReport",
    "MnsCardVender",
    "MnsCardTemplate",
    "GlobeSmsReport",
)
"""The MessageTypes the factory can produce (reference 2.7 and 4)."""

VARIANTS: dict[str, tuple[str, ...]] = {
    "SmsReport": ("mainland", "international"),
    "SignSmsReport": ("mainland", "http"),
    "TemplateSmsReport": ("mainland", "http"),
}
"""Body variants per MessageType; a type not listed here only has ``mainland``.

``international`` is the ap-southeast-1 site's PascalCase SmsReport (reference 4.7). ``http`` is the
HTTP-push spelling of the review reports, ``orderId`` instead of the MNS ``order_id`` (reference 4.3).
"""

MALFORMED_KINDS: tuple[str, ...] = (
    "not_base64",
    "not_json",
    "truncated_json",
    "json_array",
    "json_number",
    "invalid_utf8",
    "missing_success",
)
"""The kinds of poison body :func:`malformed_body` produces."""

_MAINLAND_PREFIXES = (
    *(f"13{digit}" for digit in range(10)),
    *("150", "151", "152", "153", "155", "156", "157", "158", "159"),
    *("166", "170", "176", "177", "178"),
    *(f"18{digit}" for digit in range(10)),
    *("198", "199"),
)
# (country code, possible first digits of the subscriber number, digits that follow them)
_INTERNATIONAL_NUMBERS = (
    ("65", ("8", "9"), 7),
    ("60", ("12", "13", "16", "17", "19"), 7),
    ("62", ("81", "85", "87"), 8),
    ("63", ("9",), 9),
    ("66", ("8", "9"), 8),
    ("44", ("7",), 9),
    ("1", ("415", "212", "646"), 7),
)
_SIGN_NAMES = ("ExampleSign", "示例商城", "云通信测试")
_TEMPLATES = (
    ("SMS_154950909", "您的验证码为{code}，该验证码5分钟内有效，请勿泄漏于他人！"),
    ("SMS_205125467", "您的订单{order}已发货，快递单号{tracking}，请注意查收。"),
    (
        "SMS_216837052",
        "尊敬的会员，您本月的积分账单已生成：本月新增积分{points}分，累计可用积分{total}分。"
        "积分将于年底清零，请及时登录会员中心兑换礼品。如有疑问请致电客服热线，退订回T",
    ),
)
_DELIVERED = ("DELIVERED", "用户接收成功")
# Carrier status codes as they appear in mainland SmsReport err_code, with Chinese explanations.
_CARRIER_FAILURES = (
    ("MK:0001", "未知用户（空号）"),
    ("MK:0002", "用户已停机"),
    ("MK:0008", "用户不在服务区"),
    ("IC:0001", "用户关机或停机"),
    ("IC:0015", "运营商内部错误"),
    ("MN:0029", "空号、停机或关机"),
    ("UNDELIV", "用户无法接收"),
    ("EXPIRED", "短信超时未送达"),
    ("DB:0141", "用户在运营商黑名单中"),
)
_SMS_UP_CONTENTS = ("TD", "退订", "N", "1", "好的，收到👍", "明天下午三点可以吗？", "谢谢🙏", "已到店，请开门🚪")
_REVIEW_STATUSES = ("approved", "approved", "approved", "rejected", "rejected", "approving")
_SIGN_SOURCES = ("企事业单位的全称或简称", "已注册商标名称", "工信部备案网站的全称或简称", "APP应用的全称或简称")
_SIGN_SCENES = ("通用", "验证码")
_SIGN_REJECTIONS = ("签名与企业名称不符", "证明材料不清晰", "签名涉及第三方权益，请补充授权委托书")
_TEMPLATE_TYPES = (("验证码", _TEMPLATES[0]), ("短信通知", _TEMPLATES[1]), ("推广短信", _TEMPLATES[2]))
_TEMPLATE_REJECTIONS = ("模板内容与场景不符", "变量属性不匹配", "推广短信须包含退订方式")
_CARD_VENDORS = ("HUAWEI", "XIAOMI", "OPPO", "VIVO", "MEIZU", "HONOR")
# The reference only shows a failure; DELIVERED on success is an assumption, as on the mainland.
_GLOBE_DELIVERED = ("DELIVERED", "delivered")
_GLOBE_FAILURES = (
    ("SP_UNKNOW_ERROR", "carrier unknown error"),
    ("UNDELIV", "message undeliverable"),
    ("REJECTD", "message rejected by the carrier"),
    ("EXPIRED", "message expired before delivery"),
)
_INTERNATIONAL_FAILURES = (
    ("UNDELIV", "The message could not be delivered."),
    ("REJECTD", "The message was rejected by the carrier."),
    ("SP_UNKNOW_ERROR", "Unknown carrier error."),
)


@dataclass(frozen=True)
class GeneratedReceipt:
    """One sample receipt and, for a mainland SmsReport, the send-log record it reports on.

    Attributes:
        message_type: The Alicom MessageType, e.g. ``SmsReport``.
        receipt: The JSON object of the message body.
        send_record: For a mainland SmsReport, the matching :class:`SendRecord`; None otherwise
            (international receipts are queried through a different API version the emulator lacks).
        variant: Which body variant of the type this is (see :data:`VARIANTS`).
    """

    message_type: str
    receipt: ReceiptJson = field(hash=False)
    send_record: SendRecord | None
    variant: str = "mainland"

    @property
    def body(self) -> str:
        """The receipt encoded as an MNS message body, as Alibaba enqueues it."""
        return encode_body(self.receipt)


@dataclass
class _Batch:
    """An open SendBatchSms: every number of it shares biz_id, template, content, out_id and send time."""

    biz_id: str
    template_code: str
    content: str
    out_id: str | None
    send_time: float
    phone_numbers: list[str]


class ReceiptFactory:
    """Seeded generator of sample receipts, with times relative to the emulator clock.

    Consecutive mainland SmsReports come in small batches that share a ``biz_id``, as the receipts of one
    SendBatchSms call do (reference 4.1). The factory is safe to share between threads; the order of
    calls, not their timing, decides what each call returns.
    """

    def __init__(self, clock: Clock, seed: int = 0) -> None:
        self._clock = clock
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._batch: _Batch | None = None

    def make(self, message_type: str, *, variant: str = "mainland") -> GeneratedReceipt:
        """One receipt of the given type.

        Args:
            message_type: One of :data:`MESSAGE_TYPES`.
            variant: One of the type's :data:`VARIANTS`; ``mainland`` for every type.

        Returns:
            The receipt, and its send-log record for a mainland SmsReport.

        Raises:
            ValueError: If the message type or the variant is unknown.
        """
        check_variant(message_type, variant)
        with self._lock:
            # Whole seconds: receipt times have second resolution, and receipt and send record must agree.
            now = float(int(self._clock.now()))
            if message_type == "SmsReport":
                if variant == "international":
                    return GeneratedReceipt(message_type, self._international_report(now), None, variant)
                receipt, record = self._mainland_report(now)
                return GeneratedReceipt(message_type, receipt, record, variant)
            builders = {
                "SmsUp": self._sms_up,
                "SignSmsReport": self._sign_report,
                "TemplateSmsReport": self._template_report,
                "MnsCardVender": self._card_vender,
                "MnsCardTemplate": self._card_template,
                "GlobeSmsReport": self._globe_report,
            }
            receipt = builders[message_type](now, variant)
            return GeneratedReceipt(message_type, receipt, None, variant)

    def make_many(self, message_type: str, count: int, *, variant: str = "mainland") -> list[GeneratedReceipt]:
        """``count`` receipts of one type, in the order :meth:`make` would produce them.

        Raises:
            ValueError: If ``count`` is negative, or the message type or variant is unknown.
        """
        if count < 0:
            raise ValueError("count must be zero or more")
        check_variant(message_type, variant)
        return [self.make(message_type, variant=variant) for _ in range(count)]

    def make_waiting_send(self) -> SendRecord:
        """A send whose receipt never came: SendStatus 1, no receive time, no error code."""
        with self._lock:
            now = float(int(self._clock.now()))
            template_code, content = self._content()
            return SendRecord(
                phone_number=self._mainland_number(),
                biz_id=self._biz_id(),
                out_id=self._out_id(),
                template_code=template_code,
                content=content,
                send_time=now - self._random.randint(60, 1800),
                receive_time=None,
                send_status=SEND_STATUS_WAITING,
                err_code=None,
            )

    def _mainland_report(self, now: float) -> tuple[ReceiptJson, SendRecord]:
        """The next number of the open batch as a mainland SmsReport (reference 4.1) and its send record.

        About 85% are delivered (``DELIVERED``, ``用户接收成功``); the rest carry a carrier status code. The
        record's SendStatus, ErrCode and times agree with the receipt, as QuerySendDetails must.
        """
        batch = self._batch
        if batch is None or not batch.phone_numbers:
            batch = self._batch = self._new_batch(now)
        phone_number = batch.phone_numbers.pop(0)
        delivered = self._random.random() < 0.85
        err_code, err_msg = _DELIVERED if delivered else self._random.choice(_CARRIER_FAILURES)
        # A failure report can take the carrier much longer than a delivery report.
        report_time = batch.send_time + self._random.randint(1, 30 if delivered else 120)
        receipt: ReceiptJson = {
            "phone_number": phone_number,
            "send_time": format_beijing(batch.send_time),
            "report_time": format_beijing(report_time),
            "success": delivered,
            "err_code": err_code,
            "err_msg": err_msg,
            "sms_size": str(_segments(batch.content)),
            "biz_id": batch.biz_id,
        }
        if batch.out_id is not None:
            receipt["out_id"] = batch.out_id
        record = SendRecord(
            phone_number=phone_number,
            biz_id=batch.biz_id,
            out_id=batch.out_id,
            template_code=batch.template_code,
            content=batch.content,
            send_time=batch.send_time,
            receive_time=report_time,
            send_status=SEND_STATUS_DELIVERED if delivered else SEND_STATUS_FAILED,
            err_code=err_code,
        )
        return receipt, record

    def _new_batch(self, now: float) -> _Batch:
        """A new SendBatchSms of one to five distinct numbers, sent a few minutes before ``now``."""
        size = self._random.choice((1, 1, 1, 2, 3, 5))
        phone_numbers: list[str] = []
        while len(phone_numbers) < size:
            number = self._mainland_number()
            if number not in phone_numbers:
                phone_numbers.append(number)
        template_code, content = self._content()
        return _Batch(
            biz_id=self._biz_id(),
            template_code=template_code,
            content=content,
            out_id=self._out_id(),
            # Far enough back that even a slow failure report (<= 120 s later) is already in the past.
            send_time=now - self._random.randint(150, 900),
            phone_numbers=phone_numbers,
        )

    def _international_report(self, now: float) -> ReceiptJson:
        """An ap-southeast-1 SmsReport (reference 4.7): PascalCase, Status 1/2/6, RFC 2822 dates at +0800."""
        roll = self._random.random()
        status = "1" if roll < 0.85 else "2" if roll < 0.95 else "6"
        if status == "1":
            error_code, error_description = "success", "success"
        elif status == "2":
            error_code, error_description = self._random.choice(_INTERNATIONAL_FAILURES)
        else:
            error_code, error_description = "EXPIRED", "The message expired before it could be delivered."
        send_time = now - self._random.randint(150, 900)
        receipt: ReceiptJson = {
            "To": self._international_number(),
            "Status": status,
            "MessageId": str(self._random.randrange(10**15, 10**16)),
            "SmsSize": self._random.choice(("1", "1", "1", "2")),
        }
        if self._random.random() < 0.5:
            receipt["TaskId"] = str(self._random.randrange(10000, 10**6))
        receipt.update(
            {
                "SendDate": _rfc2822(send_time),
                "ReceiveDate": _rfc2822(send_time + self._random.randint(1, 120)),
                "ErrorCode": error_code,
                "ErrorDescription": error_description,
            }
        )
        return receipt

    def _sms_up(self, now: float, variant: str) -> ReceiptJson:
        """A mobile-originated reply (reference 4.2): Chinese or emoji text, sign_name only sometimes."""
        sequence = self._random.randrange(10**9, 10**10)
        receipt: ReceiptJson = {
            "phone_number": self._mainland_number(),
            "content": self._random.choice(_SMS_UP_CONTENTS),
            "send_time": format_beijing(now - self._random.randint(1, 600)),
            "dest_code": str(self._random.randrange(1000, 1000000)),
            # A number in the MNS docs, a string in the current HTTP doc (reference 4.2).
            "sequence_id": sequence if self._random.random() < 0.7 else str(sequence),
        }
        if self._random.random() < 0.5:
            receipt["sign_name"] = self._random.choice(_SIGN_NAMES)
        return receipt

    def _sign_report(self, now: float, variant: str) -> ReceiptJson:
        """A signature review result (reference 4.3); a reason only when rejected."""
        status = self._random.choice(_REVIEW_STATUSES)
        receipt: ReceiptJson = {
            "sign_name": self._random.choice(_SIGN_NAMES),
            "sign_status": status,
            "reason": self._random.choice(_SIGN_REJECTIONS) if status == "rejected" else "",
            "sign_source": self._random.choice(_SIGN_SOURCES),
            "sign_scene": self._random.choice(_SIGN_SCENES),
            "remark": self._random.choice(("用于登录验证码", "会员通知", "")),
            "create_date": format_beijing(now - self._random.randint(600, 86400)),
        }
        receipt[_order_key(variant)] = str(self._random.randrange(2000000, 3000000))
        return receipt

    def _template_report(self, now: float, variant: str) -> ReceiptJson:
        """A template review result (reference 4.4), its content written with ``${var}`` placeholders."""
        status = self._random.choice(_REVIEW_STATUSES)
        template_type, (template_code, text) = self._random.choice(_TEMPLATE_TYPES)
        receipt: ReceiptJson = {
            "template_code": template_code,
            "template_name": f"{template_type}模板",
            "template_status": status,
            "reason": self._random.choice(_TEMPLATE_REJECTIONS) if status == "rejected" else "",
            "remark": self._random.choice(("登录注册", "订单通知", "")),
            "create_date": format_beijing(now - self._random.randint(600, 86400)),
            "template_type": template_type,
            "template_content": _as_template(text),
        }
        receipt[_order_key(variant)] = str(self._random.randrange(200000, 300000))
        return receipt

    def _card_vender(self, now: float, variant: str) -> ReceiptJson:
        """A card SMS render result (reference 4.5); note the camelCase ``outId``."""
        return {
            "mobile": self._mainland_number(),
            "outId": self._out_id() or f"card-{self._random.randrange(10**6, 10**7)}",
            # Documented as an Integer, shown as "0" in the example; only success (0) is pushed (4.5).
            "render_status": "0" if self._random.random() < 0.7 else 0,
            "desc": "渲染成功",
        }

    def _card_template(self, now: float, variant: str) -> ReceiptJson:
        """A card template review (reference 4.5) whose approval_status sums up the per-vendor states.

        Any vendor rejecting makes it 2 (rejected), any still reviewing makes it 0 (pending), else 1.
        """
        vendors = self._random.sample(_CARD_VENDORS, self._random.randint(1, 4))
        ops = [self._vendor_review(vendor) for vendor in vendors]
        states = {op["state"] for op in ops}
        approval_status = 2 if 2 in states else 0 if 0 in states else 1
        rejected = [op["vendorCode"] for op in ops if op["state"] == 2]
        ext_data: dict[str, Any] = {}
        if self._random.random() < 0.4:
            ext_data = {"bizId": f"tpl-{self._random.randrange(10**5, 10**6)}"}
        return {
            "approval_status": approval_status,
            "extData": ext_data,
            "template_code": f"CARD_SMS_{self._random.randrange(1000, 100000)}",
            "tmpOps": ops,
            "desc": _card_template_desc(rejected, approval_status),
        }

    def _vendor_review(self, vendor: str) -> dict[str, Any]:
        """One phone vendor's entry of ``tmpOps``: state 0 reviewing, 1 approved, 2 rejected."""
        state = self._random.choice((1, 1, 1, 0, 2))
        desc = {0: "审核中", 1: "审核通过", 2: "模板内容不符合厂商规范"}[state]
        return {"state": state, "desc": desc, "vendorCode": vendor}

    def _globe_report(self, now: float, variant: str) -> ReceiptJson:
        """A receipt for a SendMessageToGlobe message (reference 4.6): status "1" or "2", Beijing times."""
        delivered = self._random.random() < 0.85
        error_code, error_description = _GLOBE_DELIVERED if delivered else self._random.choice(_GLOBE_FAILURES)
        send_time = now - self._random.randint(150, 900)
        return {
            "to": self._international_number(),
            "status": "1" if delivered else "2",
            "message_id": str(self._random.randrange(10**7, 10**9)),
            "send_date": format_beijing(send_time),
            "receive_date": format_beijing(send_time + self._random.randint(1, 120)),
            "error_code": error_code,
            "error_description": error_description,
        }

    def _mainland_number(self) -> str:
        """An 11-digit mainland mobile number with a real carrier prefix (13x, 15x, 18x, ...)."""
        return f"{self._random.choice(_MAINLAND_PREFIXES)}{self._random.randrange(10**8):08d}"

    def _international_number(self) -> str:
        """A mobile number with its country code and no ``+``, as the international APIs write them."""
        country, starts, rest = self._random.choice(_INTERNATIONAL_NUMBERS)
        return f"{country}{self._random.choice(starts)}{self._random.randrange(10**rest):0{rest}d}"

    def _biz_id(self) -> str:
        """A BizId as SendSms returns it: 18 digits, ``^``, a sequence number."""
        return f"{self._random.randrange(10**17, 10**18)}^0"

    def _out_id(self) -> str | None:
        """The caller's OutId, absent from about a third of sends (reference 4.1 marks it optional)."""
        if self._random.random() < 0.3:
            return None
        return f"order-{self._random.randrange(10**5, 10**8)}"

    def _content(self) -> tuple[str, str]:
        """A template code and its filled-in text, prefixed with the signature in 【】 as delivered."""
        template_code, text = self._random.choice(_TEMPLATES)
        sign_name = self._random.choice(_SIGN_NAMES)
        filled = text.format(
            code=f"{self._random.randrange(10**6):06d}",
            order=f"{self._random.randrange(10**11, 10**12)}",
            tracking=f"SF{self._random.randrange(10**11, 10**12)}",
            points=self._random.randint(10, 999),
            total=self._random.randint(1000, 99999),
        )
        return template_code, f"【{sign_name}】{filled}"


def check_variant(message_type: str, variant: str) -> None:
    """Validate a MessageType and body variant pair.

    Raises:
        ValueError: If the type is not in :data:`MESSAGE_TYPES`, or the variant is not one of its
            :data:`VARIANTS`; the message lists the known values.
    """
    if message_type not in MESSAGE_TYPES:
        raise ValueError(f"unknown message type {message_type!r}; known: {', '.join(MESSAGE_TYPES)}")
    variants = VARIANTS.get(message_type, ("mainland",))
    if variant not in variants:
        raise ValueError(f"unknown variant {variant!r} of {message_type}; known: {', '.join(variants)}")


def encode_body(receipt: ReceiptJson) -> str:
    """Encode a receipt as Alibaba puts it in an MNS message body: base64 of compact UTF-8 JSON."""
    text = json.dumps(receipt, ensure_ascii=False, separators=(",", ":"))
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def malformed_body(rng: random.Random, kind: str | None = None) -> str:
    """A poison message body, one the consumer must dead-letter rather than crash on or drop.

    Every kind but ``missing_success`` fails to decode (base64, then UTF-8, then JSON) to a JSON object;
    ``missing_success`` is a well-formed SmsReport object that lacks its required ``success`` field.

    Args:
        rng: Chooses the kind when none is given, and the details of the body.
        kind: One of :data:`MALFORMED_KINDS`, or None for a random one.

    Raises:
        ValueError: If ``kind`` is not one of :data:`MALFORMED_KINDS`.
    """
    if kind is None:
        kind = rng.choice(MALFORMED_KINDS)
    if kind not in MALFORMED_KINDS:
        raise ValueError(f"unknown malformed kind {kind!r}; known: {', '.join(MALFORMED_KINDS)}")
    phone_number = f"{rng.choice(_MAINLAND_PREFIXES)}{rng.randrange(10**8):08d}"
    report = {
        "phone_number": phone_number,
        "send_time": "2024-05-01 10:00:00",
        "report_time": "2024-05-01 10:00:04",
        "success": True,
        "err_code": "DELIVERED",
        "err_msg": "用户接收成功",
        "sms_size": "1",
        "biz_id": f"{rng.randrange(10**17, 10**18)}^0",
    }
    if kind == "not_base64":
        # Non-ASCII on purpose: b64decode raises a plain ValueError for it, not binascii.Error.
        return f"<<回执 {phone_number}: not base64!>>"
    if kind == "invalid_utf8":
        payload = b'{"phone_number":"' + phone_number.encode() + b'","err_msg":"\xff\xfe\xc3"}'
        return base64.b64encode(payload).decode("ascii")
    texts = {
        "not_json": f"phone_number={phone_number}&success=true",
        "truncated_json": json.dumps(report, ensure_ascii=False, separators=(",", ":"))[: rng.randint(5, 40)],
        "json_array": json.dumps([report], ensure_ascii=False, separators=(",", ":")),
        "json_number": str(rng.randrange(10**6)),
        "missing_success": json.dumps({k: v for k, v in report.items() if k != "success"}, ensure_ascii=False),
    }
    return base64.b64encode(texts[kind].encode("utf-8")).decode("ascii")


def _segments(content: str) -> int:
    """How many billed messages ``sms_size`` reports for a text."""
    # Carriers bill 70 characters as one message; longer texts go out as 67-character parts.
    return 1 if len(content) <= 70 else math.ceil(len(content) / 67)


def _rfc2822(epoch_seconds: float) -> str:
    """An international-site date: RFC 2822 in Beijing time, e.g. ``Wed, 01 May 2024 10:00:00 +0800``."""
    return format_datetime(datetime.fromtimestamp(epoch_seconds, BEIJING))


def _card_template_desc(rejected: list[str], approval_status: int) -> str:
    """The human summary of a card template review."""
    if rejected:
        return f"{'、'.join(rejected)}审核未通过"
    return "审核中" if approval_status == 0 else "审核通过"


def _order_key(variant: str) -> str:
    """The name of the review ticket field in this variant of the body."""
    # The review reports spell the ticket number differently per delivery mode (reference 4.3, 4.4).
    return "orderId" if variant == "http" else "order_id"


def _as_template(text: str) -> str:
    """A template's text as the console shows it, with ``${var}`` placeholders."""
    return text.replace("{", "${")
