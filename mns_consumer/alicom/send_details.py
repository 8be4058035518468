"""QuerySendDetails (Dysmsapi 2017-05-25): every record of one number's sends on one day, page by page.

Alibaba's documented way to recover receipts that never arrived (reference 1 step 5, 6): one query
covers one number on one Beijing day of the last 30, optionally one ``BizId``, in pages of at most 50.
The number and the day are checked before anything is sent; ``CurrentPage`` runs until ``TotalCount``
records were seen (it may be a string, reference 6.2). Retries and typed errors are
:class:`~mns_consumer.alicom.dysmsapi.DysmsapiCaller`'s. The DTO carries no ``BizId`` (reference 6.2):
the caller knows it from SendSms and passes it in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final

from alibabacloud_dysmsapi20170525 import models as dysms_models

from mns_consumer.alicom.credentials import AccessKeySource
from mns_consumer.alicom.dysmsapi import MAX_PAGE_SIZE, DysmsapiCaller, Page, as_int, check_answer, pages
from mns_consumer.alicom.endpoints import Endpoints
from mns_consumer.alicom.pop_text import BEIJING, safe_text
from mns_consumer.alicom.tea import INVALID_RESPONSE, request_id_of
from mns_consumer.errors import SendDetailsError

QUERY_WINDOW_DAYS: Final = 30
"""QuerySendDetails answers for sends of the last 30 Beijing days (reference 6.1)."""

SEND_STATUS_PENDING: Final = 1
"""``SendStatus`` of a send whose carrier report has not arrived (reference 6.2)."""
SEND_STATUS_FAILED: Final = 2
"""``SendStatus`` of a send the carrier reported as not delivered."""
SEND_STATUS_DELIVERED: Final = 3
"""``SendStatus`` of a send the carrier reported as delivered."""

INVALID_SEND_DATE: Final = "InvalidSendDate"
"""Local SendDetailsError code: the day is malformed, in the future or older than the window."""
INVALID_PHONE_NUMBER: Final = "InvalidPhoneNumber"
"""Local SendDetailsError code: not one phone number."""

PHONE_NUMBER: Final = re.compile(r"[0-9]{5,15}")
"""One PhoneNumber QuerySendDetails takes: mainland 11 digits, or international with its country code, no + (6.1)."""


def beijing_today() -> date:
    """The current Beijing calendar day (QuerySendDetails counts its window in these)."""
    return datetime.now(BEIJING).date()


def check_send_date(send_date: date, today: date) -> None:
    """Refuse a Beijing day QuerySendDetails cannot answer for, before a call is spent on it.

    Raises:
        SendDetailsError: ``InvalidSendDate`` for a day in the future or more than
            :data:`QUERY_WINDOW_DAYS` days back.
    """
    days_back = (today - send_date).days
    if days_back < 0:
        raise SendDetailsError(
            INVALID_SEND_DATE,
            f"SendDate {send_date.isoformat()} is in the future (today is {today.isoformat()} in Beijing)",
        )
    if days_back > QUERY_WINDOW_DAYS:
        raise SendDetailsError(
            INVALID_SEND_DATE,
            f"SendDate {send_date.isoformat()} is {days_back} days ago; QuerySendDetails keeps only the last "
            f"{QUERY_WINDOW_DAYS} days (since {(today - timedelta(days=QUERY_WINDOW_DAYS)).isoformat()}), "
            "so this send's report can no longer be recovered",
        )


def check_phone_number(phone_number: str) -> None:
    """Refuse anything but one phone number (digits only; international ones with their country code).

    Raises:
        SendDetailsError: ``InvalidPhoneNumber``.
    """
    if not PHONE_NUMBER.fullmatch(phone_number):
        raise SendDetailsError(
            INVALID_PHONE_NUMBER,
            "PhoneNumber must be one number of 5 to 15 digits (international ones with their country code, no +)",
        )


@dataclass(frozen=True)
class SendDetail:
    """One ``SmsSendDetailDTO``: one message to one number, as QuerySendDetails reports it.

    Attributes:
        phone_number: ``PhoneNum``.
        send_status: ``SendStatus``: 1 waiting for the report, 2 failed, 3 delivered.
        err_code: ``ErrCode``: ``DELIVERED`` or the carrier's code; None while waiting.
        template_code: ``TemplateCode``.
        content: ``Content``, the text as sent, signature included.
        send_date: ``SendDate``, ``yyyy-MM-dd HH:mm:ss`` Beijing time.
        receive_date: ``ReceiveDate``, when the carrier reported; None while waiting.
        out_id: ``OutId``, the caller's id, if the send carried one.
        raw: The DTO exactly as Alibaba sent it (PascalCase keys).
    """

    phone_number: str
    send_status: int
    err_code: str | None = None
    template_code: str | None = None
    content: str | None = None
    send_date: str | None = None
    receive_date: str | None = None
    out_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


class SendDetailsClient(DysmsapiCaller):
    """QuerySendDetails through the real Tea client, paged, retried and typed as every Dysmsapi call.

    Args:
        page_size: Records per page, 1..50.
        options: The rest of :class:`~mns_consumer.alicom.dysmsapi.DysmsapiCaller`'s arguments.

    Raises:
        ValueError: If ``page_size`` or ``attempts`` is out of range.
    """

    def __init__(
        self,
        credentials: AccessKeySource,
        endpoints: Endpoints,
        *,
        page_size: int = MAX_PAGE_SIZE,
        **options: Any,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, not {page_size}")
        super().__init__(credentials, endpoints, **options)
        self.page_size = page_size
        self._today: Callable[[], date] = beijing_today  # for the window check; tests move it

    def query(self, phone_number: str, send_date: date, biz_id: str | None = None) -> list[SendDetail]:
        """Every record of one number's sends on one Beijing day (of one send, with ``biz_id``).

        Returns:
            The records of all pages, oldest first.

        Raises:
            SendDetailsError: A bad number or day (checked before calling), a refusal by Alibaba, or an
                unreadable answer.
            SendDetailsAuthError: Alibaba refused the AccessKey.
            SendDetailsUnavailable: Throttling, 5xx or network failures outlasted every retry.
        """
        return [record for page in self.pages(phone_number, send_date, biz_id) for record in page.records]

    def pages(self, phone_number: str, send_date: date, biz_id: str | None = None) -> Iterator[Page[SendDetail]]:
        """The pages of :meth:`query` (``CurrentPage``, ``TotalCount``, records), one call each, as answered.

        Raises:
            SendDetailsError: See :meth:`query`; raised before the first page for a bad number or day.
        """
        check_phone_number(phone_number)
        check_send_date(send_date, self._today())
        yield from pages(lambda page_number: self._page(phone_number, send_date, biz_id, page_number))

    def _page(
        self, phone_number: str, send_date: date, biz_id: str | None, page_number: int
    ) -> tuple[int, list[SendDetail]]:
        request = dysms_models.QuerySendDetailsRequest(
            phone_number=phone_number,
            send_date=send_date.strftime("%Y%m%d"),
            biz_id=biz_id or None,
            page_size=self.page_size,
            current_page=page_number,
        )
        return self.call(lambda client: _page_from(getattr(client.query_send_details(request), "body", None)))


def _page_from(body: Any) -> tuple[int, list[SendDetail]]:
    """``(TotalCount, records)`` of a QuerySendDetails answer body (``Any``: the Tea model is untyped).

    Raises:
        SendDetailsError: The answer's own code when it is not ``OK``, typed by code;
            ``InvalidResponse`` when ``TotalCount`` or a record is unreadable.
    """
    request_id = request_id_of(body)
    check_answer(body, request_id)
    total = as_int(body.total_count)
    if total is None or total < 0:
        raise SendDetailsError(
            INVALID_RESPONSE, f"TotalCount {safe_text(body.total_count)[:40]!r} is not a count", request_id=request_id
        )
    container = body.sms_send_detail_dtos
    dtos = (container.sms_send_detail_dto if container is not None else None) or []
    return total, [_detail_from(dto, request_id) for dto in dtos if dto is not None]


def _detail_from(dto: Any, request_id: str | None) -> SendDetail:
    raw: dict[str, Any] = dto.to_map()
    status = as_int(dto.send_status)
    if status not in (SEND_STATUS_PENDING, SEND_STATUS_FAILED, SEND_STATUS_DELIVERED):
        raise SendDetailsError(
            INVALID_RESPONSE, f"SendStatus {safe_text(dto.send_status)[:20]!r} is not 1, 2 or 3", request_id=request_id
        )
    # The DTO's attributes share SendDetail's names, but for PhoneNum.
    texts = {name: _text(getattr(dto, name)) for name in _TEXT_FIELDS}
    return SendDetail(phone_number=_text(dto.phone_num) or "", send_status=status, raw=raw, **texts)


_TEXT_FIELDS: Final = ("err_code", "template_code", "content", "send_date", "receive_date", "out_id")


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)
