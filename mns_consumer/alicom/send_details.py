"""QuerySendDetails (Dysmsapi 2017-05-25): every record of one number's sends on one day, page by page.

QuerySendDetails is Alibaba's documented way to recover receipts that never arrived (reference 1 step 5,
6). One query covers one phone number on one Beijing calendar day of the last 30 days, optionally
narrowed to one ``BizId``, in pages of at most 50 records (reference 6.1). :class:`SendDetailsClient`
hides the paging and the failure modes:

* **Checked first.** The number, the day and the 30-day window are checked before anything is sent,
  with a message that says what to write instead (:func:`check_send_date`).
* **Paging.** ``CurrentPage`` runs from 1 until ``TotalCount`` records were seen; ``TotalCount`` may
  be a number or a string (reference 6.2). A page that comes back empty ends the query early.
* **Retries.** Throttling, HTTP 5xx and network failures (timeouts included) are retried with
  jittered exponential back-off (tenacity), honouring a throttling answer's retry-after; anything
  else fails at once, typed (:class:`~mns_consumer.errors.SendDetailsError` and its subclasses).
* **Business errors.** An answer whose ``Code`` is not ``OK`` is an error even with HTTP 200; which
  failures come as HTTP 200 and which as 4xx is unconfirmed (reference 6.2), so both channels are
  classified by code alike.
* **Secrets.** Error texts are scrubbed of query strings and string-to-sign echoes; the Tea request
  (which carries the signature) is never shown.

The DTO carries no ``BizId`` (reference 6.2; ``alibabacloud_dysmsapi20170525`` 4.6.0's
``QuerySendDetailsResponseBodySmsSendDetailDTOsSmsSendDetailDTO`` neither): the caller knows it from
SendSms and passes it in, which also narrows the query to that send.

Tea clients are not shared between threads: each thread that queries gets its own (pitfall 10).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from alibabacloud_dysmsapi20170525 import models as dysms_models
from alibabacloud_dysmsapi20170525.client import Client as DysmsClient
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
from Tea.exceptions import UnretryableException

from mns_consumer.alicom.credentials import AccessKeySource
from mns_consumer.alicom.endpoints import Endpoints
from mns_consumer.alicom.pop_text import BEIJING, safe_text
from mns_consumer.alicom.tea import (
    INVALID_RESPONSE,
    http_failure,
    refusal_of,
    request_id_of,
    tea_config,
    transport_failure,
)
from mns_consumer.errors import SendDetailsAuthError, SendDetailsError, SendDetailsUnavailable
from mns_consumer.retry import Backoff

QUERY_WINDOW_DAYS: Final = 30
"""QuerySendDetails answers for sends of the last 30 Beijing days (reference 6.1)."""

MAX_PAGE_SIZE: Final = 50
"""The largest ``PageSize`` (reference 6.1)."""

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
NETWORK_ERROR: Final = "NetworkError"
"""Local SendDetailsUnavailable code: Dysmsapi could not be reached or did not answer in time."""
CREDENTIALS_UNAVAILABLE: Final = "CredentialsUnavailable"
"""Local SendDetailsAuthError code: the default credential chain found no AccessKey."""

# Mainland 11 digits, or an international number with its country code and no "+" (reference 6.1).
_PHONE_NUMBER = re.compile(r"[0-9]{5,15}")
_AUTH_CODES = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidSecurityToken",
    "Forbidden",
    "isp.RAM_PERMISSION_DENY",
    "InvalidCredentials",
    "NoPermission",
)
_RETRYABLE_CODES = (
    "Throttling",
    "ServiceUnavailable",
    "InternalError",
    "isp.SYSTEM_ERROR",
    "isp.GATEWAY_ERROR",
    "SystemBusy",
    "RequestTimeout",
)


def beijing_today(now: datetime | None = None) -> date:
    """The current Beijing calendar day (QuerySendDetails counts its window in these)."""
    return (now or datetime.now(UTC)).astimezone(BEIJING).date()


def check_send_date(send_date: date, today: date) -> None:
    """Refuse a day QuerySendDetails cannot answer for, before a call is spent on it.

    Args:
        send_date: The Beijing calendar day of the send.
        today: Today's Beijing calendar day.

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
    if not _PHONE_NUMBER.fullmatch(phone_number):
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

    def raw_json(self) -> bytes:
        """The DTO as compact UTF-8 JSON: the ``raw`` body of a receipt made from it."""
        return json.dumps(dict(self.raw), ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


@dataclass(frozen=True)
class SendDetailsPage:
    """One answered page.

    Attributes:
        page: Its ``CurrentPage``.
        total_count: ``TotalCount`` as a number: records on all pages.
        records: The page's records.
        request_id: Alibaba's request id.
    """

    page: int
    total_count: int
    records: list[SendDetail]
    request_id: str | None


class SendDetailsClient:
    """QuerySendDetails through the real Tea client (``alibabacloud_dysmsapi20170525``), paged and retried.

    Like the Dybaseapi client it is aimed explicitly at ``endpoints.dysmsapi`` and reads proxy variables
    from the environment on every call (reference 6.3, pitfall 15): loopback emulators need them unset.

    Args:
        credentials: The AccessKey (or default chain) that signs the calls.
        endpoints: ``dysmsapi``, ``protocol`` and ``ca_file`` are used.
        connect_timeout_seconds: TCP (and TLS) connect timeout of each call.
        read_timeout_seconds: Timeout waiting for each answer.
        page_size: Records per page, 1..50.
        attempts: Tries of one page on a transient failure (1: no retry).
        retry_initial_seconds: First back-off; it doubles (with jitter) up to ``retry_max_seconds``.
        retry_max_seconds: Longest back-off.
        on_retry: Called before each back-off with the attempt number, the error and the delay.
        sleep: How to wait between tries; one that returns True (``threading.Event.wait`` once the
            event is set) ends the retries with the last error.
        today: Today's Beijing day, for the window check (tests move it).

    Raises:
        ValueError: If ``page_size`` or ``attempts`` is out of range.
    """

    def __init__(
        self,
        credentials: AccessKeySource,
        endpoints: Endpoints,
        *,
        connect_timeout_seconds: float = 5,
        read_timeout_seconds: float = 10,
        page_size: int = MAX_PAGE_SIZE,
        attempts: int = 5,
        retry_initial_seconds: float = 0.5,
        retry_max_seconds: float = 10,
        on_retry: Callable[[int, SendDetailsUnavailable, float], None] | None = None,
        sleep: Callable[[float], object] | None = None,
        today: Callable[[], date] = beijing_today,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, not {page_size}")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.endpoint = endpoints.dysmsapi
        self.page_size = page_size
        self.attempts = attempts
        self._credentials = credentials
        self._endpoints = endpoints
        self._connect_timeout_seconds = connect_timeout_seconds
        self._read_timeout_seconds = read_timeout_seconds
        self._today = today
        self._on_retry = on_retry
        self._backoff = Backoff(retry_initial_seconds, retry_max_seconds)
        self._sleep: Callable[[float], object] = sleep or time.sleep
        self._local = threading.local()

    def query(self, phone_number: str, send_date: date, biz_id: str | None = None) -> list[SendDetail]:
        """Every record of one number's sends on one Beijing day (of one send, with ``biz_id``).

        Args:
            phone_number: The recipient as passed to SendSms.
            send_date: The Beijing calendar day of the send.
            biz_id: The ``BizId`` SendSms returned; narrows the query to that send.

        Returns:
            The records of all pages, oldest first.

        Raises:
            SendDetailsError: A bad number or day (checked before calling), a refusal by Alibaba, or an
                unreadable answer.
            SendDetailsAuthError: Alibaba refused the AccessKey.
            SendDetailsUnavailable: Throttling, 5xx or network failures outlasted every retry.
        """
        records: list[SendDetail] = []
        for page in self.pages(phone_number, send_date, biz_id):
            records.extend(page.records)
        return records

    def pages(self, phone_number: str, send_date: date, biz_id: str | None = None) -> Iterator[SendDetailsPage]:
        """The pages of :meth:`query`, one call each, as they are answered.

        Raises:
            SendDetailsError: See :meth:`query`; raised before the first page for a bad number or day.
        """
        check_phone_number(phone_number)
        check_send_date(send_date, self._today())
        seen = 0
        page_number = 1
        while True:
            page = self._page_with_retries(phone_number, send_date, biz_id, page_number)
            yield page
            seen += len(page.records)
            # TotalCount is re-read on every page: sends made meanwhile only append (oldest first).
            if not page.records or seen >= page.total_count:
                return
            page_number += 1

    # -- one page --------------------------------------------------------------------------------

    def _page_with_retries(
        self, phone_number: str, send_date: date, biz_id: str | None, page_number: int
    ) -> SendDetailsPage:
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._page(phone_number, send_date, biz_id, page_number)
            except SendDetailsUnavailable as exc:
                if attempt >= self.attempts:
                    raise
                delay = self._delay(attempt, exc)
                if self._on_retry is not None:
                    self._on_retry(attempt, exc, delay)
                # A stop-aware sleep (threading.Event.wait) returns True when the caller wants to stop.
                if self._sleep(delay) is True:
                    raise

    def _delay(self, attempt: int, error: SendDetailsUnavailable) -> float:
        # Throttling answers say how long to wait; Backoff never waits less (nor more than five minutes).
        retry_after = error.retry_after_seconds if isinstance(error, _Throttled) else None
        return self._backoff.delay(attempt, retry_after)

    def _client(self) -> DysmsClient:
        client: DysmsClient | None = getattr(self._local, "client", None)
        if client is None:
            config = tea_config(
                self._credentials,
                self._endpoints.dysmsapi,
                self._endpoints,
                connect_timeout_seconds=self._connect_timeout_seconds,
                read_timeout_seconds=self._read_timeout_seconds,
            )
            client = self._local.client = DysmsClient(config)
        return client

    def _page(self, phone_number: str, send_date: date, biz_id: str | None, page_number: int) -> SendDetailsPage:
        request = dysms_models.QuerySendDetailsRequest(
            phone_number=phone_number,
            send_date=send_date.strftime("%Y%m%d"),
            biz_id=biz_id or None,
            page_size=self.page_size,
            current_page=page_number,
        )
        try:
            response = self._client().query_send_details(request)
        except AlibabaCloudException as exc:
            raise _http_error(exc) from exc
        except UnretryableException as exc:
            raise self._transport_error(exc) from exc
        except SendDetailsError:
            raise
        except Exception as exc:
            # The generated models fail with whatever Python raises on an unexpected shape.
            raise SendDetailsError(INVALID_RESPONSE, f"unreadable answer ({type(exc).__name__})") from exc
        return _page_from(getattr(response, "body", None), page_number)

    def _transport_error(self, exc: UnretryableException) -> SendDetailsError:
        failure = transport_failure(exc)
        if failure.kind == "credentials":
            return SendDetailsAuthError(
                CREDENTIALS_UNAVAILABLE,
                f"the {self._credentials.describe()} found no AccessKey: {failure.detail}",
            )
        if failure.kind == "not_json":
            # A proxy's or load balancer's HTML error page: as transient as the 5xx it usually is.
            return SendDetailsUnavailable(INVALID_RESPONSE, f"Dysmsapi at {self.endpoint} answered something not JSON")
        return SendDetailsUnavailable(NETWORK_ERROR, f"cannot reach Dysmsapi at {self.endpoint}: {failure.detail}")


class _Throttled(SendDetailsUnavailable):
    """A throttling answer, carrying the delay it asked for."""

    def __init__(self, code: str, message: str, *, request_id: str | None, retry_after_seconds: float | None) -> None:
        super().__init__(code, message, request_id=request_id)
        self.retry_after_seconds = retry_after_seconds


def _classify(code: str, message: str, *, status: int, request_id: str | None) -> SendDetailsError:
    """The typed error for an Alibaba error code, whichever channel (HTTP 200 or 4xx/5xx) it came on."""
    if code.startswith(_AUTH_CODES):
        return SendDetailsAuthError(code, message, request_id=request_id)
    if status == 429 or code.startswith(_RETRYABLE_CODES) or status >= 500:
        return SendDetailsUnavailable(code, message, request_id=request_id)
    return SendDetailsError(code, message, request_id=request_id)


def _http_error(exc: AlibabaCloudException) -> SendDetailsError:
    failure = http_failure(exc)
    if failure.retry_after_seconds is not None:
        return _Throttled(
            failure.code, failure.text, request_id=failure.request_id, retry_after_seconds=failure.retry_after_seconds
        )
    return _classify(failure.code, failure.text, status=failure.status, request_id=failure.request_id)


def _page_from(body: Any, page_number: int) -> SendDetailsPage:
    """One page from a QuerySendDetails answer body (``Any``: the Tea model is untyped).

    Raises:
        SendDetailsError: The answer's own code when it is not ``OK``, typed by :func:`_classify`;
            ``InvalidResponse`` when ``TotalCount`` or a record is unreadable.
    """
    if body is None:
        raise SendDetailsError(INVALID_RESPONSE, "the answer has no body")
    request_id = request_id_of(body)
    refusal = refusal_of(body)
    if refusal is not None:
        raise _classify(*refusal, status=200, request_id=request_id)
    total = _as_int(body.total_count)
    if total is None or total < 0:
        raise SendDetailsError(
            INVALID_RESPONSE, f"TotalCount {safe_text(body.total_count)[:40]!r} is not a count", request_id=request_id
        )
    container = body.sms_send_detail_dtos
    dtos = (container.sms_send_detail_dto if container is not None else None) or []
    records = [_detail_from(dto, request_id) for dto in dtos if dto is not None]
    return SendDetailsPage(page=page_number, total_count=total, records=records, request_id=request_id)


def _detail_from(dto: Any, request_id: str | None) -> SendDetail:
    raw: dict[str, Any] = dto.to_map()
    status = _as_int(dto.send_status)
    if status not in (SEND_STATUS_PENDING, SEND_STATUS_FAILED, SEND_STATUS_DELIVERED):
        raise SendDetailsError(
            INVALID_RESPONSE, f"SendStatus {safe_text(dto.send_status)[:20]!r} is not 1, 2 or 3", request_id=request_id
        )
    return SendDetail(
        phone_number=_text(dto.phone_num) or "",
        send_status=status,
        err_code=_text(dto.err_code),
        template_code=_text(dto.template_code),
        content=_text(dto.content),
        send_date=_text(dto.send_date),
        receive_date=_text(dto.receive_date),
        out_id=_text(dto.out_id),
        raw=raw,
    )


def _as_int(value: Any) -> int | None:
    """A count or code given as a number or a decimal string (``TotalCount`` is a string in some SDKs)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)
