"""Receipts for sink tests: valid, distinct by default, with any field overridden."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from mns_consumer.emulator.clock import Clock
from mns_consumer.emulator.samples import ReceiptFactory
from mns_consumer.receipt_model import Receipt
from mns_consumer.receipts import decode_push, dedupe_key

BEIJING = timezone(timedelta(hours=8))


def make_receipt(n: int = 0, **overrides: Any) -> Receipt:
    """A delivered mainland SmsReport numbered ``n``; distinct ``n`` give distinct dedupe keys."""
    phone = f"139{n:08d}"
    biz_id = f"8123456789{n // 5:08d}^0"
    raw = (
        f'{{"phone_number":"{phone}","send_time":"2026-11-22 10:00:00","report_time":"2026-11-22 10:00:04",'
        f'"success":true,"err_code":"DELIVERED","err_msg":"用户接收成功","sms_size":"1","biz_id":"{biz_id}"}}'
    ).encode()
    fields: dict[str, Any] = {
        "kind": "delivery_report",
        "message_type": "SmsReport",
        "source": "mns",
        "dedupe_key": dedupe_key("SmsReport", biz_id=biz_id, phone_number=phone, status="delivered"),
        "raw": raw,
        "queue": "Alicom-Queue-i1-SmsReport",
        "phone_number": phone,
        "biz_id": biz_id,
        "out_id": f"order-{n}",
        "status": "delivered",
        "error_code": "DELIVERED",
        "error_message": "用户接收成功",
        "sent_at": datetime(2026, 11, 22, 10, 0, 0, tzinfo=BEIJING),
        "reported_at": datetime(2026, 11, 22, 10, 0, 4, tzinfo=BEIJING),
        "sms_parts": 1,
        "extra": {"sms_size": "1"},
        "outcome_class": "delivered",
        "retryable": False,
    }
    fields.update(overrides)
    return Receipt(**fields)


def make_batch(size: int, start: int = 0) -> list[Receipt]:
    """``size`` distinct receipts numbered from ``start``."""
    return [make_receipt(n) for n in range(start, start + size)]


def pushed_receipts(message_type: str, count: int, seed: int = 1) -> list[dict[str, Any]]:
    """Receipts as Alibaba pushes them (one JSON object each), from the emulator's factory."""
    return [dict(item.receipt) for item in ReceiptFactory(Clock(), seed).make_many(message_type, count)]


def pushed_keys(message_type: str, receipts: list[dict[str, Any]]) -> set[str]:
    """The dedupe keys of the valid ones among pushed receipts."""
    results = decode_push(message_type, json.dumps(receipts).encode())
    return {result.dedupe_key for result in results if not isinstance(result, Exception)}
