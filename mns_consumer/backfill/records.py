"""QuerySendDetails records as the SmsReport receipts MNS would have carried (same dedupe keys)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from mns_consumer.alicom.send_details import (
    SEND_STATUS_DELIVERED,
    SEND_STATUS_FAILED,
    SEND_STATUS_PENDING,
    SendDetail,
)
from mns_consumer.receipt_model import Receipt, Status
from mns_consumer.receipts import decode_object, dedupe_key

MESSAGE_TYPE: Final = "SmsReport"
"""The MessageType backfilled receipts are stored as: QuerySendDetails reports mainland SMS sends."""

SEND_STATUSES: Final[Mapping[int, Status]] = {
    SEND_STATUS_DELIVERED: "delivered",
    SEND_STATUS_FAILED: "failed",
    SEND_STATUS_PENDING: "pending",
}
"""QuerySendDetails' SendStatus to the receipt's status (1 means no carrier report yet)."""


def receipt_from_detail(detail: SendDetail, biz_id: str, *, phone_number: str | None = None) -> Receipt:
    """The mainland SmsReport receipt a QuerySendDetails record stands for, with ``source="query"``.

    The record is rewritten as the SmsReport body MNS would have carried (reference 4.1): ``success`` from
    SendStatus (3 true, 2 false), ``err_code`` from ErrCode, ``send_time``/``report_time`` from
    SendDate/ReceiveDate, ``out_id`` from OutId and the caller's ``biz_id``, and decoded by the same
    decoder, so normalization and the dedupe key are the MNS path's. That body is the receipt's ``raw``
    (so ``mns-consumer decode`` and ``dead-letters replay`` read it); ``err_msg`` and ``sms_size`` are
    not in the record and stay unset. TemplateCode and Content fill ``template_code`` and ``content``;
    ``extra`` keeps ``send_status``. A pending record (SendStatus 1) becomes status ``pending`` with the
    key of that status.

    Args:
        biz_id: The BizId of the send it was queried for (records carry none).
        phone_number: The number queried, used if the record lacks ``PhoneNum``.

    Raises:
        DecodeError: If a time in the record cannot be parsed.
    """
    body: dict[str, Any] = {
        "phone_number": detail.phone_number or phone_number or "",
        "biz_id": biz_id,
        "success": detail.send_status == SEND_STATUS_DELIVERED,
        "err_code": detail.err_code,
        "send_time": detail.send_date,
        "report_time": detail.receive_date,
        "out_id": detail.out_id,
        "send_status": detail.send_status,
    }
    body = {key: value for key, value in body.items() if value is not None}
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    receipt = decode_object(MESSAGE_TYPE, body, raw=raw, source="query", queue=None)
    receipt = replace(receipt, template_code=detail.template_code, content=detail.content)
    if detail.send_status == SEND_STATUS_PENDING:
        key = dedupe_key(
            MESSAGE_TYPE, biz_id=receipt.biz_id or biz_id, phone_number=receipt.phone_number or "", status="pending"
        )
        # No carrier report yet, so no outcome to classify.
        receipt = replace(receipt, status="pending", dedupe_key=key, outcome_class=None, retryable=None)
    return receipt
