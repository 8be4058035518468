"""QuerySendStatistics (Dysmsapi 2017-05-25): Alibaba's own daily counts of sends and their reports.

``mns-consumer reconcile`` compares them with what the sinks hold. One ``Data.TargetList`` entry is one
Beijing send day with ``TotalCount`` (sent, as billed), ``RespondedSuccessCount``/``RespondedFailCount``
(carrier reports) and ``NoRespondedCount``; ``IsGlobe`` is 1 for mainland, 2 for international; pages
run from ``PageIndex`` 1. Calls, retries and errors are :class:`~mns_consumer.alicom.dysmsapi.DysmsapiCaller`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from alibabacloud_dysmsapi20170525 import models as dysms_models

from mns_consumer.alicom.dysmsapi import MAX_PAGE_SIZE, DysmsapiCaller, as_int, check_answer, pages
from mns_consumer.alicom.pop_text import safe_text
from mns_consumer.alicom.tea import INVALID_RESPONSE, request_id_of
from mns_consumer.errors import SendDetailsError

IS_GLOBE_MAINLAND: Final = 1
"""``IsGlobe`` of messages to mainland China numbers (the SmsReport receipts of reference 4.1), the only
ones asked for: international messages (2) have no SmsReport receipts to reconcile."""


@dataclass(frozen=True)
class DailySendStatistics:
    """One ``TargetList`` entry: one Beijing day's sends as Alibaba counts them.

    Attributes:
        send_date: ``SendDate``.
        total: ``TotalCount``: messages sent (the billed count).
        responded_success: ``RespondedSuccessCount``: reported delivered.
        responded_fail: ``RespondedFailCount``: reported not delivered.
        no_response: ``NoRespondedCount``: no carrier report yet.
    """

    send_date: date
    total: int
    responded_success: int
    responded_fail: int
    no_response: int


class SendStatisticsClient(DysmsapiCaller):
    """QuerySendStatistics through the real Tea client, paged, retried and typed as every Dysmsapi call."""

    def day(self, send_date: date) -> DailySendStatistics:
        """Alibaba's mainland counts of one Beijing send day (all zero when it lists no entry for the day).

        Raises:
            SendDetailsError: A refusal (e.g. ``isv.INVALID_PARAMETERS``) or an unreadable answer.
            SendDetailsAuthError: Alibaba refused the AccessKey or the RAM policy lacks
                ``dysms:QuerySendStatistics``.
            SendDetailsUnavailable: Throttling, 5xx or network failures outlasted every retry.
        """
        for entry in self.days(send_date, send_date):
            if entry.send_date == send_date:
                return entry
        return DailySendStatistics(send_date, 0, 0, 0, 0)

    def days(self, start: date, end: date, *, page_size: int = MAX_PAGE_SIZE) -> list[DailySendStatistics]:
        """Every mainland entry from ``start`` to ``end`` (both included), all pages, in Alibaba's order.

        Raises:
            ValueError: If ``page_size`` is not 1..50.
            SendDetailsError: See :meth:`day`.
        """
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, not {page_size}")
        answered = pages(lambda page_index: self._page(start, end, page_index, page_size))
        return [entry for page in answered for entry in page.records]

    def _page(self, start: date, end: date, page_index: int, page_size: int) -> tuple[int, list[DailySendStatistics]]:
        request = dysms_models.QuerySendStatisticsRequest(
            is_globe=IS_GLOBE_MAINLAND,
            start_date=start.strftime("%Y%m%d"),
            end_date=end.strftime("%Y%m%d"),
            page_index=page_index,
            page_size=page_size,
        )
        return self.call(lambda client: _page_from(getattr(client.query_send_statistics(request), "body", None)))


def _page_from(body: Any) -> tuple[int, list[DailySendStatistics]]:
    """``(TotalSize, entries)`` of one answer body (``Any``: the Tea model is untyped).

    Raises:
        SendDetailsError: The answer's own code when it is not ``OK``; ``InvalidResponse`` when a count
            or a date is unreadable.
    """
    request_id = request_id_of(body)
    check_answer(body, request_id)
    data = body.data
    if data is None:
        return 0, []
    total_size = as_int(data.total_size)
    if total_size is None or total_size < 0:
        raise SendDetailsError(
            INVALID_RESPONSE, f"TotalSize {safe_text(data.total_size)[:40]!r} is not a count", request_id=request_id
        )
    return total_size, [_entry_from(item, request_id) for item in data.target_list or [] if item is not None]


def _entry_from(item: Any, request_id: str | None) -> DailySendStatistics:
    try:
        send_date = datetime.strptime(str(item.send_date), "%Y%m%d").date()
    except ValueError:
        raise SendDetailsError(
            INVALID_RESPONSE, f"SendDate {safe_text(item.send_date)[:20]!r} is not yyyyMMdd", request_id=request_id
        ) from None
    values = (item.total_count, item.responded_success_count, item.responded_fail_count, item.no_responded_count)
    counts = [as_int(value) for value in values]
    if any(count is None or count < 0 for count in counts):
        raise SendDetailsError(
            INVALID_RESPONSE, f"the counts of {send_date.isoformat()} are not all counts", request_id=request_id
        )
    return DailySendStatistics(send_date, *(count or 0 for count in counts))
