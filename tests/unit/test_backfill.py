"""Backfill inputs (sends from options, CSV and JSON Lines), the date window, and the record-to-receipt mapping."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from mns_consumer.alicom.send_details import (
    INVALID_SEND_DATE,
    SendDetail,
    check_phone_number,
    check_send_date,
)
from mns_consumer.backfill import (
    BackfillReport,
    Send,
    SendFailure,
    collect_sends,
    describe_failure,
    make_send,
    parse_send_date,
    read_sends,
    receipt_from_detail,
    unmatched_date_warning,
)
from mns_consumer.emulator.clock import Clock
from mns_consumer.emulator.samples import ReceiptFactory, encode_body
from mns_consumer.emulator.send_log import SendRecord
from mns_consumer.errors import InvalidSendsError, SendDetailsError
from mns_consumer.exit_codes import EXIT_FAILURE, EXIT_OK, EXIT_UNAVAILABLE
from mns_consumer.receipts import decode_mns_body, dedupe_key

TODAY = date(2024, 5, 31)


# -- the window ------------------------------------------------------------------------------------


@pytest.mark.parametrize("days_back", [0, 1, 29, 30])
def test_days_inside_the_30_day_window_pass(days_back: int) -> None:
    """Today and the 30 Beijing days before it may be queried."""
    check_send_date(date.fromordinal(TODAY.toordinal() - days_back), TODAY)


def test_a_day_older_than_30_days_is_refused_with_the_oldest_day_allowed() -> None:
    """31 days back is refused before any call, naming the window and its first day."""
    with pytest.raises(SendDetailsError) as caught:
        check_send_date(date(2024, 4, 30), TODAY)
    assert caught.value.code == INVALID_SEND_DATE
    assert "31 days ago" in str(caught.value)
    assert "last 30 days (since 2024-05-01)" in str(caught.value)


def test_a_future_day_is_refused() -> None:
    """A day after today (in Beijing) cannot have sends yet."""
    with pytest.raises(SendDetailsError, match="in the future"):
        check_send_date(date(2024, 6, 1), TODAY)


@pytest.mark.parametrize("number", ["", "+8613900001111", "139 0000 1111", "13900001111,13900002222", "1" * 16])
def test_anything_but_one_phone_number_is_refused(number: str) -> None:
    """One query is one number of digits (reference 6.1)."""
    with pytest.raises(SendDetailsError, match="one number"):
        check_phone_number(number)


# -- inputs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["2024-05-01", "20240501", " 2024-05-01 "])
def test_send_dates_are_read_in_both_documented_forms(text: str) -> None:
    """YYYY-MM-DD and YYYYMMDD both name the day."""
    assert parse_send_date(text) == date(2024, 5, 1)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("2024-05-01 10:00:00", "has a time"),
        ("2024-05-01..2024-05-03", "one day per query"),
        ("2024-13-01", "is not a date"),
        ("yesterday", "is not a date"),
    ],
)
def test_a_time_a_range_or_nonsense_is_refused_with_what_to_write(text: str, words: str) -> None:
    """QuerySendDetails takes one day per query: the message says so."""
    with pytest.raises(ValueError, match=words):
        parse_send_date(text)


def test_a_csv_of_sends_is_read_with_line_numbers_and_extra_columns_ignored(tmp_path: Path) -> None:
    """A header row names the columns (aliases accepted); other columns and blank lines are skipped."""
    path = tmp_path / "sends.csv"
    path.write_text(
        "PhoneNumber,order,SendDate,BizId\n13900001111,o-1,2024-05-01,812^0\n\n8613900002222,o-2,20240502,813^0\n",
        encoding="utf-8",
    )
    sends = read_sends(path)
    assert sends == [
        Send("13900001111", date(2024, 5, 1), "812^0"),
        Send("8613900002222", date(2024, 5, 2), "813^0"),
    ]
    assert [send.where for send in sends] == [f"{path}:2", f"{path}:4"]


def test_a_jsonl_file_of_sends_is_read(tmp_path: Path) -> None:
    """One JSON object per line, numbers accepted for the phone number."""
    path = tmp_path / "sends.jsonl"
    path.write_text(
        '{"phone_number": 13900001111, "send_date": "2024-05-01", "biz_id": "812^0", "note": "x"}\n',
        encoding="utf-8",
    )
    assert read_sends(path) == [Send("13900001111", date(2024, 5, 1), "812^0")]


def test_every_bad_csv_line_is_reported_with_its_number_and_field(tmp_path: Path) -> None:
    """All problems at once, each naming the line and the field, phone numbers masked."""
    path = tmp_path / "sends.csv"
    path.write_text(
        "phone_number,send_date,biz_id\n"
        "13900001111,2024-05-01,812^0\n"
        "139-0000-1111,2024-05-01,812^0\n"
        "13900001111,2024-13-01,812^0\n"
        "13900001111,2024-05-01,\n"
        "13900001111\n",
        encoding="utf-8",
    )
    with pytest.raises(InvalidSendsError) as caught:
        read_sends(path)
    problems = caught.value.problems
    assert problems[0].startswith(f"{path}:3: phone_number: '139-****-1111'")
    assert problems[1] == f"{path}:4: send_date: '2024-13-01' is not a date (write YYYY-MM-DD or YYYYMMDD)"
    assert problems[2].startswith(f"{path}:5: biz_id: missing (the BizId SendSms returned")
    assert problems[3] == f"{path}:6: 1 column(s), the header has 3"
    assert "13900001111" not in str(caught.value).replace("13900001111,", "")


def test_a_csv_without_the_required_header_names_the_missing_columns(tmp_path: Path) -> None:
    """A file whose first row is data, or lacks biz_id, says which columns the header must name."""
    path = tmp_path / "sends.csv"
    path.write_text("phone,date\n13900001111,2024-05-01\n", encoding="utf-8")
    with pytest.raises(InvalidSendsError, match=r"sends\.csv:1: the header row lacks biz_id"):
        read_sends(path)


def test_bad_jsonl_lines_are_reported_with_their_numbers(tmp_path: Path) -> None:
    """Broken JSON, a non-object and a wrongly typed value each name their line."""
    path = tmp_path / "sends.jsonl"
    path.write_text(
        '{"phone_number": "13900001111", "send_date": "2024-05-01", "biz_id": "1^0"}\n'
        '{"phone_number": "139\n'
        "[1, 2]\n"
        '{"phone_number": "13900001111", "send_date": ["2024-05-01"], "biz_id": "1^0"}\n',
        encoding="utf-8",
    )
    with pytest.raises(InvalidSendsError) as caught:
        read_sends(path)
    assert [problem.split(": ")[0] for problem in caught.value.problems] == [f"{path}:2", f"{path}:3", f"{path}:4"]
    assert "not JSON" in caught.value.problems[0]
    assert "not a JSON object" in caught.value.problems[1]
    assert "send_date: must be a string, got list" in caught.value.problems[2]


def test_one_send_on_the_command_line_needs_all_three_options() -> None:
    """--phone without --biz-id is refused, saying what is missing and why."""
    with pytest.raises(InvalidSendsError, match="--biz-id missing"):
        collect_sends("13900001111", "2024-05-01", None, None)
    with pytest.raises(InvalidSendsError, match="no sends"):
        collect_sends(None, None, None, None)
    assert collect_sends("13900001111", "20240501", "812^0", None) == [make_send("13900001111", "20240501", "812^0")]


# -- mapping ---------------------------------------------------------------------------------------


def detail_of(record: SendRecord) -> SendDetail:
    """The record as the emulator's QuerySendDetails serializes it (pop._detail), read like the pager does."""
    from mns_consumer.emulator.clock import format_beijing

    raw: dict[str, Any] = {
        "PhoneNum": record.phone_number,
        "SendStatus": record.send_status,
        "ErrCode": record.err_code,
        "TemplateCode": record.template_code,
        "Content": record.content,
        "SendDate": format_beijing(record.send_time),
        "ReceiveDate": None if record.receive_time is None else format_beijing(record.receive_time),
        "OutId": record.out_id,
    }
    raw = {key: value for key, value in raw.items() if value is not None}
    return SendDetail(
        phone_number=raw["PhoneNum"],
        send_status=raw["SendStatus"],
        err_code=raw.get("ErrCode"),
        template_code=raw.get("TemplateCode"),
        content=raw.get("Content"),
        send_date=raw.get("SendDate"),
        receive_date=raw.get("ReceiveDate"),
        out_id=raw.get("OutId"),
        raw=raw,
    )


def test_a_backfilled_receipt_has_the_key_and_fields_of_the_mns_receipt_of_the_same_send() -> None:
    """For delivered and failed sends alike, only source, raw and the fields QuerySendDetails lacks differ."""
    factory = ReceiptFactory(Clock(), seed=3)
    generated = factory.make_many("SmsReport", 40)
    statuses = set()
    for item in generated:
        assert item.send_record is not None
        from_mns = decode_mns_body("SmsReport", encode_body(item.receipt), queue="Alicom-Queue-i1-SmsReport")
        backfilled = receipt_from_detail(detail_of(item.send_record), item.send_record.biz_id)
        statuses.add(backfilled.status)
        assert backfilled.dedupe_key == from_mns.dedupe_key
        assert backfilled.source == "query"
        assert backfilled.queue is None
        for name in ("kind", "message_type", "phone_number", "biz_id", "out_id", "status", "error_code"):
            assert getattr(backfilled, name) == getattr(from_mns, name), name
        assert backfilled.sent_at == from_mns.sent_at
        assert backfilled.reported_at == from_mns.reported_at
        assert backfilled.template_code == item.send_record.template_code
        assert backfilled.content == item.send_record.content
        assert backfilled.extra == {"send_status": item.send_record.send_status}
        assert decode_mns_body("SmsReport", backfilled.raw).dedupe_key == backfilled.dedupe_key
    assert statuses == {"delivered", "failed"}


def test_a_pending_record_becomes_a_pending_receipt_with_its_own_key() -> None:
    """SendStatus 1 maps to status pending, keyed so the real report stored later is not swallowed."""
    record = ReceiptFactory(Clock(), seed=1).make_waiting_send()
    receipt = receipt_from_detail(detail_of(record), record.biz_id)
    assert receipt.status == "pending"
    assert receipt.error_code is None
    assert receipt.reported_at is None
    assert receipt.dedupe_key == dedupe_key(
        "SmsReport", biz_id=record.biz_id, phone_number=record.phone_number, status="pending"
    )
    delivered = dataclasses.replace(detail_of(record), send_status=3, err_code="DELIVERED")
    assert receipt_from_detail(delivered, record.biz_id).dedupe_key != receipt.dedupe_key


def test_a_record_without_phonenum_takes_the_queried_number() -> None:
    """PhoneNum is optional in the SDK model; the number asked about fills in."""
    detail = SendDetail(phone_number="", send_status=3, err_code="DELIVERED", send_date="2024-05-01 10:00:00")
    receipt = receipt_from_detail(detail, "812^0", phone_number="13900001111")
    assert receipt.phone_number == "13900001111"
    assert receipt.dedupe_key == dedupe_key("SmsReport", biz_id="812^0", phone_number="13900001111", status="delivered")


# -- report ----------------------------------------------------------------------------------------


def test_the_exit_code_says_done_failed_or_try_again_later() -> None:
    """0 when all is stored (pending may wait), 1 on failed sends or dead letters, 4 when stopped unavailable."""
    assert BackfillReport(sends=2, queried=2, pending=2).exit_code == EXIT_OK
    failure = SendFailure(Send("13900001111", date(2024, 5, 1), "812^0", "sends.csv:2"), "isv.X", "refused")
    assert BackfillReport(failures=[failure]).exit_code == EXIT_FAILURE
    assert BackfillReport(dead_lettered=1).exit_code == EXIT_FAILURE
    assert BackfillReport(stopped="sink down", unavailable=True).exit_code == EXIT_UNAVAILABLE
    assert describe_failure(failure) == "sends.csv:2 (139****1111, 2024-05-01, BizId 812^0): refused"
    assert BackfillReport(failures=[failure]).to_json()["failures"][0]["phone_number"] == "139****1111"


# -- sends that matched nothing --------------------------------------------------------------------


def test_a_utc_date_behind_beijing_that_matched_nothing_is_warned_about_with_the_day_to_try() -> None:
    """At 17:00 UTC on 7 May it is 8 May in Beijing: a send given as 7 May matched nothing, and the warning says why."""
    send = make_send("13900001111", "2024-05-07", "812^0", where="sends.csv:2")
    report = BackfillReport(sends=1, queried=1, unmatched=[send], beijing_today=date(2024, 5, 8))
    warning = unmatched_date_warning(report)
    assert warning == (
        "1 send(s) matched no record on the day given: sends.csv:2 (139****1111, 2024-05-07). Alibaba files each "
        "send under its day in Beijing time (UTC+8), so a send made after 16:00 UTC falls on the next day. Today "
        "is 2024-05-08 in Beijing. If the date came from UTC or local time, try the day after (e.g. --date 2024-05-08)."
    )


def test_sends_dated_today_in_beijing_are_not_blamed_on_the_date_and_long_lists_are_cut() -> None:
    """Today's sends may just not be reported yet; past ones are named up to three, then counted."""
    today = date(2024, 5, 8)
    todays = make_send("13900001111", today.isoformat(), "1^0")
    assert unmatched_date_warning(BackfillReport(unmatched=[todays], beijing_today=today)) is None
    older = [make_send("13900001111", f"2024-05-0{day}", f"{day}^0", where=f"s.csv:{day}") for day in range(1, 6)]
    warning = unmatched_date_warning(BackfillReport(unmatched=[todays, *older], beijing_today=today))
    assert warning is not None
    assert warning.startswith("5 send(s) matched no record on the day given: s.csv:1 (139****1111, 2024-05-01); ")
    assert "s.csv:3 (139****1111, 2024-05-03) and 2 more. " in warning
    assert "s.csv:4" not in warning


def test_the_summary_ends_with_already_stored_newly_stored_still_pending_and_failed() -> None:
    """The operator's line, in the order the numbers matter; a sink that cannot tell new from old says so."""
    failure = SendFailure(make_send("13900001111", "2024-05-01", "1^0"), "X", "x")
    report = BackfillReport(
        sends=4, queried=3, pages=3, found=5, delivered=3, failed=1, pending=1, stored=4, already_stored=1,
        newly_stored=3, dead_lettered=1, failures=[failure],
    )  # fmt: skip
    assert report.summary() == (
        "backfill: 4 send(s), 3 queried in 3 page(s); 5 record(s) found (3 delivered, 1 delivery failed, 1 pending); "
        "1 already stored, 3 newly stored (recovered), 1 still pending, 2 failed (1 send(s) not queried, "
        "1 dead-lettered) in 0.0 s"
    )
    unknown = dataclasses.replace(report, already_stored=None, newly_stored=None)
    assert "; 4 stored (new or already present: a sink cannot tell which), 1 still pending, " in unknown.summary()
