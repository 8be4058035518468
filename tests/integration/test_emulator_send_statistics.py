"""The emulator's Dysmsapi QuerySendStatistics, driven by the real Tea client and by SendStatisticsClient."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from alibabacloud_dysmsapi20170525 import models as dysms_models
from alibabacloud_dysmsapi20170525.client import Client as DysmsClient
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import ClientException

from mns_consumer.alicom.credentials import AccessKey
from mns_consumer.alicom.endpoints import Endpoints
from mns_consumer.alicom.send_statistics import DailySendStatistics, SendStatisticsClient
from mns_consumer.emulator import Emulator
from mns_consumer.emulator.clock import BEIJING
from mns_consumer.emulator.send_log import SEND_STATUS_DELIVERED, SEND_STATUS_FAILED, SEND_STATUS_WAITING, SendRecord
from mns_consumer.errors import SendDetailsAuthError, SendDetailsError, SendDetailsUnavailable

QUEUES = {"SmsReport": "Alicom-Queue-1092397003988387-SmsReport"}


@pytest.fixture
def emulator(make_emulator: Callable[..., Emulator]) -> Emulator:
    """A started emulator serving one SmsReport queue."""
    return make_emulator(queues=QUEUES)


def tea_client(emulator: Emulator, *, v1: bool = False, secret: str | None = None) -> DysmsClient:
    """The real Dysmsapi client aimed at the emulator (V3 signing, or V1 with ``v1``)."""
    config = open_api_models.Config(
        access_key_id=emulator.settings.access_key_id,
        access_key_secret=secret or emulator.settings.access_key_secret,
        endpoint=emulator.endpoint,
        protocol="http",
        read_timeout=10000,
        connect_timeout=5000,
    )
    if v1:
        config.signature_algorithm = "v2"
    return DysmsClient(config)


def statistics(emulator: Emulator, *, v1: bool = False, **fields: Any) -> Any:
    """QuerySendStatistics with the real client; mainland, page 1 of 50 unless told otherwise."""
    values: dict[str, Any] = {"is_globe": 1, "page_index": 1, "page_size": 50, **fields}
    request = dysms_models.QuerySendStatisticsRequest(**values)
    return tea_client(emulator, v1=v1).query_send_statistics(request).body


def send(day: date, minute: int, status: int, phone: str = "13900001111", sign: str = "ExampleSign") -> SendRecord:
    """A send at a minute of a Beijing day with the given SendStatus."""
    send_time = datetime(day.year, day.month, day.day, tzinfo=BEIJING).timestamp() + 60 * minute
    return SendRecord(
        phone_number=phone,
        biz_id=f"81234567890123{minute:04d}^0",
        out_id=None,
        template_code="SMS_123456789",
        content=f"【{sign}】您的验证码为123456",
        send_time=send_time,
        receive_time=None if status == SEND_STATUS_WAITING else send_time + 5,
        send_status=status,
        err_code={SEND_STATUS_DELIVERED: "DELIVERED", SEND_STATUS_FAILED: "MK:0001"}.get(status),
    )


def seed(emulator: Emulator, day: date, delivered: int, failed: int, waiting: int) -> None:
    """Add that many sends of each status to the send log on ``day``."""
    statuses = [SEND_STATUS_DELIVERED] * delivered + [SEND_STATUS_FAILED] * failed + [SEND_STATUS_WAITING] * waiting
    for minute, status in enumerate(statuses):
        emulator.send_log.add(send(day, minute, status))


def client(emulator: Emulator) -> SendStatisticsClient:
    """The package's client, aimed at the emulator, without retry waits."""
    endpoints = Endpoints(dybaseapi=emulator.endpoint, dysmsapi=emulator.endpoint, mns=emulator.url, protocol="http")
    key = AccessKey(emulator.settings.access_key_id, emulator.settings.access_key_secret)
    return SendStatisticsClient(key, endpoints, attempts=1)


def test_daily_counts_match_the_seeded_send_log(emulator: Emulator) -> None:
    """One entry per Beijing day with sends: total, success, fail and no response as the log holds them."""
    day = date(2024, 5, 1)
    seed(emulator, day, delivered=7, failed=2, waiting=3)
    seed(emulator, day + timedelta(days=2), delivered=1, failed=0, waiting=0)
    body = statistics(emulator, start_date="20240501", end_date="20240503")
    assert body.code == "OK"
    assert body.data.total_size == 2
    entries = [item.to_map() for item in body.data.target_list]
    assert entries == [
        {
            "SendDate": "20240501",
            "TotalCount": 12,
            "RespondedSuccessCount": 7,
            "RespondedFailCount": 2,
            "NoRespondedCount": 3,
        },
        {
            "SendDate": "20240503",
            "TotalCount": 1,
            "RespondedSuccessCount": 1,
            "RespondedFailCount": 0,
            "NoRespondedCount": 0,
        },
    ]


def test_a_send_at_16_utc_counts_on_the_next_beijing_day(emulator: Emulator) -> None:
    """Days are Beijing days: 16:00 UTC on May 1st is 00:00 on May 2nd in Beijing."""
    emulator.send_log.add(send(date(2024, 5, 2), 0, SEND_STATUS_DELIVERED))
    body = statistics(emulator, start_date="20240501", end_date="20240501")
    assert body.data.total_size == 0
    assert body.data.target_list == []
    assert client(emulator).day(date(2024, 5, 2)) == DailySendStatistics(date(2024, 5, 2), 1, 1, 0, 0)


def test_receipts_a_lose_fault_kept_from_mns_still_count_as_responded(emulator: Emulator) -> None:
    """Alibaba got the carrier's report even when the MNS message was lost, so its counts include it."""
    emulator.add_fault(kind="lose", service="producer", probability=0.5)
    generated = emulator.produce("SmsReport", 40)
    records = [item.send_record for item in generated if item.send_record is not None]
    days = sorted({record.send_date for record in records})
    expected = {
        day: DailySendStatistics(
            day,
            sum(1 for r in records if r.send_date == day),
            sum(1 for r in records if r.send_date == day and r.send_status == SEND_STATUS_DELIVERED),
            sum(1 for r in records if r.send_date == day and r.send_status == SEND_STATUS_FAILED),
            0,
        )
        for day in days
    }
    assert emulator.store.get(QUEUES["SmsReport"]).counts().active < 40  # some were lost
    assert {entry.send_date: entry for entry in client(emulator).days(days[0], days[-1])} == expected


def test_pages_split_the_days_and_total_size_counts_them_all(emulator: Emulator) -> None:
    """PageSize 2 over five days: pages of 2, 2 and 1 entries, TotalSize 5 on each; the client joins them."""
    start = date(2024, 5, 1)
    for offset in range(5):
        seed(emulator, start + timedelta(days=offset), delivered=offset + 1, failed=0, waiting=0)
    pages = [
        statistics(emulator, start_date="20240501", end_date="20240505", page_size=2, page_index=index)
        for index in (1, 2, 3, 4)
    ]
    assert [page.data.total_size for page in pages] == [5, 5, 5, 5]
    assert [[item.send_date for item in page.data.target_list] for page in pages] == [
        ["20240501", "20240502"],
        ["20240503", "20240504"],
        ["20240505"],
        [],
    ]
    joined = client(emulator).days(start, start + timedelta(days=4), page_size=2)
    assert [entry.total for entry in joined] == [1, 2, 3, 4, 5]


def test_sign_name_narrows_and_international_finds_none(emulator: Emulator) -> None:
    """SignName keeps that signature's messages; the emulator's sends are all mainland (IsGlobe 1)."""
    day = date(2024, 5, 1)
    emulator.send_log.add(send(day, 1, SEND_STATUS_DELIVERED, sign="A"))
    emulator.send_log.add(send(day, 2, SEND_STATUS_FAILED, sign="B"))
    narrowed = statistics(emulator, start_date="20240501", end_date="20240501", sign_name="B")
    assert narrowed.data.target_list[0].to_map()["RespondedFailCount"] == 1
    assert narrowed.data.target_list[0].total_count == 1
    international = statistics(emulator, start_date="20240501", end_date="20240501", is_globe=2)
    assert international.data.total_size == 0


def test_v1_signed_statistics_query_is_accepted(emulator: Emulator) -> None:
    """The classic HMAC-SHA1 signing works for this action too."""
    seed(emulator, date(2024, 5, 1), delivered=1, failed=0, waiting=0)
    body = statistics(emulator, v1=True, start_date="20240501", end_date="20240501")
    assert body.code == "OK"
    assert body.data.total_size == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"start_date": "2024-05-01", "end_date": "20240501"}, "StartDate must be yyyyMMdd"),
        ({"start_date": "20240501", "end_date": "20240231"}, "EndDate must be yyyyMMdd"),
        ({"start_date": "20240502", "end_date": "20240501"}, "EndDate must not be before StartDate"),
        ({"start_date": "20240501", "end_date": "20240501", "is_globe": 3}, "IsGlobe must be 1"),
        ({"start_date": "20240501", "end_date": "20240501", "page_size": 51}, "PageSize must be between 1 and 50"),
        ({"start_date": "20240501", "end_date": "20240501", "template_type": 5}, "TemplateType must be"),
    ],
)
def test_bad_values_are_reported_through_code(emulator: Emulator, fields: dict[str, Any], message: str) -> None:
    """Bad dates and values: HTTP 200 with isv.INVALID_PARAMETERS, as QuerySendDetails reports them."""
    body = statistics(emulator, **fields)
    assert body.code == "isv.INVALID_PARAMETERS"
    assert message in body.message
    assert body.data is None


def test_the_client_raises_the_refusal_typed(emulator: Emulator) -> None:
    """SendStatisticsClient turns the business refusal into a SendDetailsError with Alibaba's code."""
    with pytest.raises(SendDetailsError) as raised:
        client(emulator).days(date(2024, 5, 2), date(2024, 5, 1))
    assert raised.value.code == "isv.INVALID_PARAMETERS"


@pytest.mark.parametrize("missing", ["IsGlobe", "StartDate", "EndDate", "PageIndex", "PageSize"])
def test_missing_required_parameter_is_refused_by_the_gateway(emulator: Emulator, missing: str) -> None:
    """An absent required parameter is HTTP 400 Missing<Name>, which the Tea SDK raises."""
    fields: dict[str, Any] = {
        "is_globe": 1,
        "start_date": "20240501",
        "end_date": "20240501",
        "page_index": 1,
        "page_size": 10,
    }
    snake = {"IsGlobe": "is_globe", "StartDate": "start_date", "EndDate": "end_date"}
    fields.pop(snake.get(missing, missing.replace("Page", "page_").lower()))
    with pytest.raises(ClientException) as raised:
        tea_client(emulator).query_send_statistics(dysms_models.QuerySendStatisticsRequest(**fields))
    assert raised.value.code == f"Missing{missing}"
    assert raised.value.status_code == 400


def test_a_wrong_secret_is_refused_and_the_client_says_it_is_the_key(emulator: Emulator) -> None:
    """POP signing is checked as for the other actions: SignatureDoesNotMatch, typed as an auth error."""
    with pytest.raises(ClientException) as raised:
        tea_client(emulator, secret="wrong").query_send_statistics(
            dysms_models.QuerySendStatisticsRequest(
                is_globe=1, start_date="20240501", end_date="20240501", page_index=1, page_size=10
            )
        )
    assert raised.value.code == "SignatureDoesNotMatch"
    endpoints = Endpoints(dybaseapi=emulator.endpoint, dysmsapi=emulator.endpoint, mns=emulator.url, protocol="http")
    wrong = SendStatisticsClient(AccessKey(emulator.settings.access_key_id, "wrong"), endpoints, attempts=1)
    with pytest.raises(SendDetailsAuthError) as typed:
        wrong.day(date(2024, 5, 1))
    assert typed.value.code == "SignatureDoesNotMatch"
    assert "wrong" not in str(typed.value)


def test_transient_failures_are_retried_and_then_reported_unavailable(emulator: Emulator) -> None:
    """503s are retried with back-off; once they outlast the attempts the error says Dysmsapi is unavailable."""
    seed(emulator, date(2024, 5, 1), delivered=2, failed=0, waiting=0)
    endpoints = Endpoints(dybaseapi=emulator.endpoint, dysmsapi=emulator.endpoint, mns=emulator.url, protocol="http")
    key = AccessKey(emulator.settings.access_key_id, emulator.settings.access_key_secret)
    waits: list[float] = []
    emulator.add_fault(kind="error", service="dysmsapi", operation="QuerySendStatistics", status=503, times=2)
    patient = SendStatisticsClient(key, endpoints, attempts=3, retry_initial_seconds=0.01, sleep=waits.append)
    assert patient.day(date(2024, 5, 1)).responded_success == 2
    assert len(waits) == 2
    emulator.add_fault(kind="error", service="dysmsapi", operation="QuerySendStatistics", status=503, times=2)
    impatient = SendStatisticsClient(key, endpoints, attempts=2, retry_initial_seconds=0.01, sleep=waits.append)
    with pytest.raises(SendDetailsUnavailable) as raised:
        impatient.day(date(2024, 5, 1))
    assert raised.value.code == "ServiceUnavailable"
