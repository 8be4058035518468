"""The emulator's record of every SMS it pretends to have sent, as QuerySendDetails reports them.

The receipt producer writes one :class:`SendRecord` per recipient of a send, whether or not the receipt
for it ever reaches a queue, so ``QuerySendDetails`` (reference 6) and the SmsReport receipts always
tell the same story: SendStatus 3 is a receipt with ``success: true``, 2 one with ``success: false``,
and 1 a send whose receipt never came.

``QuerySendStatistics`` counts the same records per Beijing send day (:meth:`SendLog.statistics`): a
receipt that a ``lose`` fault kept out of the queue was still reported to Alibaba by the carrier, so
it counts as responded, exactly as Alibaba's own daily counts would; only SendStatus 1 is "no response".
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from datetime import date, datetime

from mns_consumer.emulator.clock import BEIJING

SEND_STATUS_WAITING = 1
"""SendStatus of a message whose carrier receipt has not arrived (reference 6.2)."""
SEND_STATUS_FAILED = 2
"""SendStatus of a message the carrier reported as not delivered."""
SEND_STATUS_DELIVERED = 3
"""SendStatus of a message the carrier reported as delivered."""


@dataclass(frozen=True)
class SendRecord:
    """One message to one phone number, as the send log (and QuerySendDetails) knows it.

    Attributes:
        phone_number: The recipient, e.g. ``13900001111``.
        biz_id: The BizId of the send call; shared by every number of one SendBatchSms.
        out_id: The caller's OutId, or None when the send carried none.
        template_code: The template used, e.g. ``SMS_123456789``.
        content: The text as delivered, signature included, e.g. ``【ExampleSign】您的验证码为123456``.
        send_time: When the platform handed the message to the carrier, seconds since the epoch.
        receive_time: When the carrier reported back, seconds since the epoch; None while waiting.
        send_status: 1 waiting for the receipt, 2 failed, 3 delivered.
        err_code: ``DELIVERED`` or the carrier's error code; None while waiting.
    """

    phone_number: str
    biz_id: str
    out_id: str | None
    template_code: str
    content: str
    send_time: float
    receive_time: float | None
    send_status: int
    err_code: str | None

    def __post_init__(self) -> None:
        if self.send_status not in (SEND_STATUS_WAITING, SEND_STATUS_FAILED, SEND_STATUS_DELIVERED):
            raise ValueError(f"send_status must be 1, 2 or 3, not {self.send_status!r}")

    @property
    def send_date(self) -> date:
        """The Beijing calendar day of the send, the unit QuerySendDetails queries by."""
        return datetime.fromtimestamp(self.send_time, BEIJING).date()


@dataclass(frozen=True)
class DayStatistics:
    """One Beijing day of sends, as one ``TargetList`` entry of QuerySendStatistics counts them.

    Attributes:
        send_date: The Beijing calendar day.
        total: Messages sent that day (``TotalCount``).
        responded_success: Of them, reported delivered (``RespondedSuccessCount``, SendStatus 3).
        responded_fail: Reported not delivered (``RespondedFailCount``, SendStatus 2).
        no_response: Without a carrier report yet (``NoRespondedCount``, SendStatus 1).
    """

    send_date: date
    total: int
    responded_success: int
    responded_fail: int
    no_response: int


class SendLog:
    """Thread-safe store of :class:`SendRecord`, indexed by phone number and ordered by send time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Per phone: (send_time, sequence, record), kept sorted. The unique sequence keeps equal times in
        # insertion order and means tuples never fall through to comparing records.
        self._by_phone: dict[str, list[tuple[float, int, SendRecord]]] = {}
        self._count = 0

    def add(self, record: SendRecord) -> None:
        """Record one sent message."""
        with self._lock:
            entries = self._by_phone.setdefault(record.phone_number, [])
            bisect.insort(entries, (record.send_time, self._count, record))
            self._count += 1

    def query(
        self,
        phone_number: str,
        send_date: date,
        biz_id: str | None = None,
        page_size: int = 10,
        current_page: int = 1,
    ) -> tuple[int, list[SendRecord]]:
        """One page of the messages sent to a number on one Beijing day, oldest first.

        Args:
            phone_number: The recipient to look up.
            send_date: The Beijing calendar day of the sends.
            biz_id: Only messages of this send call, when given.
            page_size: Records per page (QuerySendDetails allows 1..50; this store only needs >= 1).
            current_page: 1-based page number; a page past the end is empty.

        Returns:
            The number of matching records on all pages, and the records of the requested page.

        Raises:
            ValueError: If ``page_size`` or ``current_page`` is less than 1.
        """
        if page_size < 1 or current_page < 1:
            raise ValueError("page_size and current_page must be at least 1")
        with self._lock:
            entries = list(self._by_phone.get(phone_number, ()))
        matching = [
            record
            for _, _, record in entries
            if record.send_date == send_date and (biz_id is None or record.biz_id == biz_id)
        ]
        start = (current_page - 1) * page_size
        return len(matching), matching[start : start + page_size]

    def statistics(self, start: date, end: date, *, sign_name: str | None = None) -> list[DayStatistics]:
        """Daily counts of the records sent from ``start`` to ``end`` (Beijing days, both included).

        Only days with at least one send are listed, oldest first. ``sign_name`` keeps only messages
        whose content starts with ``【sign_name】``, the signature as delivered.

        Raises:
            ValueError: If ``end`` is before ``start``.
        """
        if end < start:
            raise ValueError("end must not be before start")
        counts: dict[date, list[int]] = {}
        for record in self.snapshot():
            day = record.send_date
            if start <= day <= end and (sign_name is None or record.content.startswith(f"【{sign_name}】")):
                # [total, success, fail, no response], indexed so SendStatus 3/2/1 land on 1/2/3.
                per_day = counts.setdefault(day, [0, 0, 0, 0])
                per_day[0] += 1
                per_day[4 - record.send_status] += 1
        return [DayStatistics(day, *counts[day]) for day in sorted(counts)]

    def snapshot(self) -> list[SendRecord]:
        """Every record, ordered by send time."""
        with self._lock:
            entries = [entry for per_phone in self._by_phone.values() for entry in per_phone]
        return [record for _, _, record in sorted(entries, key=lambda entry: entry[:2])]

    def __len__(self) -> int:
        """How many records the log holds."""
        with self._lock:
            return self._count
