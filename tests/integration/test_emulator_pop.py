"""The emulator's Dybaseapi and Dysmsapi, driven over HTTP by the real Tea clients (V3 and V1 signing)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from alibabacloud_dybaseapi20170525 import models as dybase_models
from alibabacloud_dybaseapi20170525.client import Client as DybaseClient
from alibabacloud_dysmsapi20170525 import models as dysms_models
from alibabacloud_dysmsapi20170525.client import Client as DysmsClient
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import ClientException

from mns_consumer.emulator import Emulator
from mns_consumer.emulator.clock import BEIJING, format_beijing
from mns_consumer.emulator.samples import ReceiptFactory
from mns_consumer.emulator.send_log import SendRecord

QUEUES = {"SmsReport": "Alicom-Queue-1092397003988387-SmsReport", "SmsUp": "Alicom-Queue-1092397003988387-SmsUp"}
TOKEN_TTL_SECONDS = 600.0
PHONE = "13900001111"


@pytest.fixture
def emulator(make_emulator: Callable[..., Emulator]) -> Emulator:
    """A started emulator serving the two test queues with ten-minute tokens."""
    return make_emulator(queues=QUEUES, token_ttl_seconds=TOKEN_TTL_SECONDS)


def tea_config(emulator: Emulator, *, v1: bool = False, **overrides: str) -> open_api_models.Config:
    """A Tea client config aimed at the emulator, as reference 6.3 shows."""
    config = open_api_models.Config(
        access_key_id=overrides.get("access_key_id", emulator.settings.access_key_id),
        access_key_secret=overrides.get("access_key_secret", emulator.settings.access_key_secret),
        endpoint=emulator.endpoint,
        protocol="http",
        read_timeout=10000,
        connect_timeout=5000,
    )
    if v1:
        config.signature_algorithm = "v2"
    return config


def query_token(emulator: Emulator, *, v1: bool = False, **fields: Any) -> Any:
    """QueryTokenForMnsQueue with the real Dybaseapi client."""
    overrides = {k: fields.pop(k) for k in ("access_key_id", "access_key_secret") if k in fields}
    client = DybaseClient(tea_config(emulator, v1=v1, **overrides))
    return client.query_token_for_mns_queue(dybase_models.QueryTokenForMnsQueueRequest(**fields))


def query_details(emulator: Emulator, *, v1: bool = False, **fields: Any) -> Any:
    """QuerySendDetails with the real Dysmsapi client."""
    client = DysmsClient(tea_config(emulator, v1=v1))
    return client.query_send_details(dysms_models.QuerySendDetailsRequest(**fields))


def beijing_epoch(text: str) -> float:
    """Seconds since the epoch of a zone-less Beijing ``yyyy-MM-dd HH:mm:ss``."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING).timestamp()


def beijing_today(emulator: Emulator) -> date:
    """The emulator clock's Beijing calendar day."""
    return emulator.clock.now_beijing().date()


def record(day: date, minute: int, **fields: Any) -> SendRecord:
    """A delivered send to PHONE at a given minute of a Beijing day."""
    send_time = datetime(day.year, day.month, day.day, tzinfo=BEIJING).timestamp() + 60 * minute
    values: dict[str, Any] = {
        "phone_number": PHONE,
        "biz_id": "812345678901234567^0",
        "out_id": f"order-{minute}",
        "template_code": "SMS_123456789",
        "content": "【ExampleSign】您的验证码为123456",
        "send_time": send_time,
        "receive_time": send_time + 4,
        "send_status": 3,
        "err_code": "DELIVERED",
    }
    values.update(fields)
    return SendRecord(**values)


# -- QueryTokenForMnsQueue -----------------------------------------------------------------------


def test_token_is_minted_for_the_queue_of_its_message_type(emulator: Emulator) -> None:
    """A V3-signed request gets an STS-style credential scoped to the configured queue."""
    response = query_token(emulator, message_type="SmsReport", queue_name=QUEUES["SmsReport"])
    assert response.status_code == 200
    assert response.body.code == "OK"
    dto = response.body.message_token_dto
    assert dto.access_key_id.startswith("STS.")
    assert dto.security_token
    credential = emulator.credentials.temporary(dto.access_key_id)
    assert credential is not None
    assert (credential.queue_name, credential.message_type) == (QUEUES["SmsReport"], "SmsReport")
    assert credential.access_key_secret == dto.access_key_secret
    assert response.headers["x-acs-request-id"] == response.body.request_id


def test_token_times_are_beijing_time_and_expire_after_the_ttl(emulator: Emulator) -> None:
    """CreateTime and ExpireTime are zone-less Beijing times, ExpireTime = CreateTime + TTL."""
    dto = query_token(emulator, message_type="SmsUp").body.message_token_dto
    credential = emulator.credentials.temporary(dto.access_key_id)
    assert credential is not None
    assert beijing_epoch(dto.create_time) == credential.created_at
    assert beijing_epoch(dto.expire_time) == credential.expires_at
    assert beijing_epoch(dto.expire_time) - beijing_epoch(dto.create_time) == TOKEN_TTL_SECONDS


def test_token_times_follow_the_emulator_clock(emulator: Emulator) -> None:
    """Moving the emulator clock moves CreateTime with it, ahead of the real clock."""
    real_before = time.time()
    emulator.clock.advance(600)
    dto = query_token(emulator, message_type="SmsReport").body.message_token_dto
    assert beijing_epoch(dto.create_time) >= int(real_before) + 600


def test_v1_signed_token_request_is_accepted(emulator: Emulator) -> None:
    """The classic HMAC-SHA1 signature (signature_algorithm="v2") works too."""
    response = query_token(emulator, v1=True, message_type="SmsReport", queue_name=QUEUES["SmsReport"])
    assert response.body.code == "OK"
    assert response.body.message_token_dto.access_key_id.startswith("STS.")


@pytest.mark.parametrize("v1", [False, True], ids=["v3", "v1"])
def test_wrong_secret_is_refused_with_signature_does_not_match(emulator: Emulator, v1: bool) -> None:
    """A wrong AccessKey secret raises ClientException SignatureDoesNotMatch, and no secret is echoed."""
    with pytest.raises(ClientException) as caught:
        query_token(emulator, v1=v1, message_type="SmsReport", access_key_secret="wrong-secret")
    assert caught.value.code == "SignatureDoesNotMatch"
    assert caught.value.status_code == 400
    assert emulator.settings.access_key_secret not in str(caught.value.message)
    assert "wrong-secret" not in str(caught.value.message)


def test_unknown_access_key_is_refused_with_not_found(emulator: Emulator) -> None:
    """An AccessKey id the emulator does not know is 404 InvalidAccessKeyId.NotFound."""
    with pytest.raises(ClientException) as caught:
        query_token(emulator, message_type="SmsReport", access_key_id="LTAI-unknown")
    assert caught.value.code == "InvalidAccessKeyId.NotFound"
    assert caught.value.status_code == 404


def test_message_type_without_a_queue_is_refused(emulator: Emulator) -> None:
    """A MessageType with no configured queue is 400 InvalidMessageType.NotFound."""
    with pytest.raises(ClientException) as caught:
        query_token(emulator, message_type="VoiceReport")
    assert caught.value.code == "InvalidMessageType.NotFound"
    assert caught.value.status_code == 400


def test_queue_name_of_another_message_type_is_refused(emulator: Emulator) -> None:
    """QueueName, when given, must be the queue of the MessageType asked for."""
    with pytest.raises(ClientException) as caught:
        query_token(emulator, message_type="SmsReport", queue_name=QUEUES["SmsUp"])
    assert caught.value.code == "InvalidQueueName.NotFound"


def test_missing_message_type_is_refused(emulator: Emulator) -> None:
    """The Tea model does not check MessageType; the service does."""
    with pytest.raises(ClientException) as caught:
        query_token(emulator, queue_name=QUEUES["SmsReport"])
    assert caught.value.code == "MissingMessageType"


# -- QuerySendDetails ----------------------------------------------------------------------------


def test_send_details_page_through_one_day_in_send_order(emulator: Emulator) -> None:
    """Pages of PageSize records come oldest first, each with the day's TotalCount."""
    today = beijing_today(emulator)
    for minute in (50, 10, 40, 20, 30):
        emulator.send_log.add(record(today, minute))
    emulator.send_log.add(record(today - timedelta(days=1), 10))
    pages = [
        query_details(
            emulator, phone_number=PHONE, send_date=today.strftime("%Y%m%d"), page_size=2, current_page=page
        ).body
        for page in (1, 2, 3, 4)
    ]
    assert [body.code for body in pages] == ["OK"] * 4
    assert {int(body.total_count) for body in pages} == {5}
    out_ids = [[d.out_id for d in body.sms_send_detail_dtos.sms_send_detail_dto] for body in pages]
    assert out_ids == [["order-10", "order-20"], ["order-30", "order-40"], ["order-50"], []]


def test_send_detail_fields_match_the_send_record(emulator: Emulator) -> None:
    """Every documented field of SmsSendDetailDTO is filled from the send log, dates in Beijing time."""
    today = beijing_today(emulator)
    sent = record(today, 90, send_status=2, err_code="MK:0001")
    emulator.send_log.add(sent)
    body = query_details(
        emulator, phone_number=PHONE, send_date=today.strftime("%Y%m%d"), page_size=10, current_page=1
    ).body
    (detail,) = body.sms_send_detail_dtos.sms_send_detail_dto
    assert detail.phone_num == PHONE
    assert detail.send_status == 2
    assert detail.err_code == "MK:0001"
    assert detail.template_code == sent.template_code
    assert detail.content == sent.content
    assert detail.send_date == format_beijing(sent.send_time)
    assert detail.receive_date == format_beijing(sent.send_time + 4)
    assert detail.out_id == "order-90"


def test_waiting_send_has_status_1_and_no_receive_date(emulator: Emulator) -> None:
    """A send whose receipt never came is SendStatus 1 without ReceiveDate or ErrCode."""
    today = beijing_today(emulator)
    emulator.send_log.add(record(today, 5, send_status=1, receive_time=None, err_code=None))
    body = query_details(
        emulator, phone_number=PHONE, send_date=today.strftime("%Y%m%d"), page_size=10, current_page=1
    ).body
    (detail,) = body.sms_send_detail_dtos.sms_send_detail_dto
    assert (detail.send_status, detail.receive_date, detail.err_code) == (1, None, None)


def test_send_details_filter_by_biz_id(emulator: Emulator) -> None:
    """BizId narrows the day to one send call."""
    today = beijing_today(emulator)
    emulator.send_log.add(record(today, 1, biz_id="111111111111111111^0"))
    emulator.send_log.add(record(today, 2, biz_id="222222222222222222^0"))
    body = query_details(
        emulator,
        phone_number=PHONE,
        send_date=today.strftime("%Y%m%d"),
        page_size=10,
        current_page=1,
        biz_id="222222222222222222^0",
    ).body
    assert int(body.total_count) == 1
    assert [d.out_id for d in body.sms_send_detail_dtos.sms_send_detail_dto] == ["order-2"]


def test_send_details_agree_with_generated_sms_reports(emulator: Emulator) -> None:
    """For every generated SmsReport, QuerySendDetails reports the same status, code and times."""
    factory = ReceiptFactory(emulator.clock, seed=3)
    generated = factory.make_many("SmsReport", 12)
    for item in generated:
        assert item.send_record is not None
        emulator.send_log.add(item.send_record)
    for item in generated:
        receipt = item.receipt
        body = query_details(
            emulator,
            phone_number=receipt["phone_number"],
            send_date=receipt["send_time"][:10].replace("-", ""),
            page_size=50,
            current_page=1,
            biz_id=receipt["biz_id"],
        ).body
        (detail,) = body.sms_send_detail_dtos.sms_send_detail_dto
        assert detail.send_status == (3 if receipt["success"] else 2)
        assert detail.err_code == receipt["err_code"]
        assert detail.send_date == receipt["send_time"]
        assert detail.receive_date == receipt["report_time"]
        assert detail.out_id == receipt.get("out_id")


def test_v1_signed_send_details_query_is_accepted(emulator: Emulator) -> None:
    """QuerySendDetails works with the classic signature too."""
    today = beijing_today(emulator)
    emulator.send_log.add(record(today, 1))
    body = query_details(
        emulator, v1=True, phone_number=PHONE, send_date=today.strftime("%Y%m%d"), page_size=1, current_page=1
    ).body
    assert (body.code, int(body.total_count)) == ("OK", 1)


@pytest.mark.parametrize("page_size", [0, 51])
def test_page_size_outside_1_to_50_is_reported_through_code(emulator: Emulator, page_size: int) -> None:
    """PageSize must be 1..50; the failure comes as HTTP 200 with Code isv.INVALID_PARAMETERS."""
    response = query_details(
        emulator,
        phone_number=PHONE,
        send_date=beijing_today(emulator).strftime("%Y%m%d"),
        page_size=page_size,
        current_page=1,
    )
    assert response.status_code == 200
    assert response.body.code == "isv.INVALID_PARAMETERS"
    assert response.body.sms_send_detail_dtos is None


@pytest.mark.parametrize("page_size", [1, 50])
def test_page_size_bounds_themselves_are_accepted(emulator: Emulator, page_size: int) -> None:
    """PageSize 1 and 50 are valid."""
    response = query_details(
        emulator,
        phone_number=PHONE,
        send_date=beijing_today(emulator).strftime("%Y%m%d"),
        page_size=page_size,
        current_page=1,
    )
    assert response.body.code == "OK"


@pytest.mark.parametrize(
    ("days_back", "code"), [(0, "OK"), (30, "OK"), (31, "isv.INVALID_PARAMETERS"), (-1, "isv.INVALID_PARAMETERS")]
)
def test_send_date_must_lie_within_the_last_30_days(emulator: Emulator, days_back: int, code: str) -> None:
    """SendDate may go back 30 Beijing days from the emulator clock, and not into the future."""
    day = beijing_today(emulator) - timedelta(days=days_back)
    emulator.send_log.add(record(day, 1))
    response = query_details(
        emulator, phone_number=PHONE, send_date=day.strftime("%Y%m%d"), page_size=10, current_page=1
    )
    assert response.status_code == 200
    assert response.body.code == code


def test_send_date_window_follows_the_emulator_clock(emulator: Emulator) -> None:
    """The 30-day window is counted from the emulator's day, not the real one."""
    day = beijing_today(emulator)
    emulator.send_log.add(record(day, 1))
    emulator.clock.advance(10 * 60)
    response = query_details(
        emulator, phone_number=PHONE, send_date=day.strftime("%Y%m%d"), page_size=10, current_page=1
    )
    assert response.body.code == "OK"


@pytest.mark.parametrize("send_date", ["2026-11-22", "20261341", "yesterday"])
def test_malformed_send_date_is_reported_through_code(emulator: Emulator, send_date: str) -> None:
    """SendDate must be a real yyyyMMdd date."""
    response = query_details(emulator, phone_number=PHONE, send_date=send_date, page_size=10, current_page=1)
    assert response.body.code == "isv.INVALID_PARAMETERS"


def test_illegal_phone_number_is_reported_through_code(emulator: Emulator) -> None:
    """A malformed PhoneNumber is HTTP 200 with Code isv.MOBILE_NUMBER_ILLEGAL: check Code, not the status."""
    response = query_details(
        emulator,
        phone_number="139-0000",
        send_date=beijing_today(emulator).strftime("%Y%m%d"),
        page_size=10,
        current_page=1,
    )
    assert response.status_code == 200
    assert response.body.code == "isv.MOBILE_NUMBER_ILLEGAL"
    assert response.body.message
    assert response.body.request_id == response.headers["x-acs-request-id"]


@pytest.mark.parametrize("missing", ["phone_number", "send_date", "page_size", "current_page"])
def test_missing_required_parameter_is_refused_by_the_gateway(emulator: Emulator, missing: str) -> None:
    """Each required parameter's absence is HTTP 400 Missing<Parameter>."""
    fields: dict[str, Any] = {
        "phone_number": PHONE,
        "send_date": beijing_today(emulator).strftime("%Y%m%d"),
        "page_size": 10,
        "current_page": 1,
    }
    del fields[missing]
    with pytest.raises(ClientException) as caught:
        query_details(emulator, **fields)
    expected = "Missing" + "".join(part.capitalize() for part in missing.split("_"))
    assert caught.value.code == expected
    assert caught.value.status_code == 400
