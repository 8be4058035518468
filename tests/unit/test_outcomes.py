"""The taxonomy of delivery report codes: every listed code, the prefix rules, and unknown codes.

docs/delivery-status.md shows the codes and families with their sources; the tests read that table, so
the manual and ``mns_consumer.outcomes`` cannot drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mns_consumer.outcomes import (
    EXACT_CODES,
    OUTCOME_CLASSES,
    PREFIX_RULES,
    RETRYABLE,
    classify,
    classify_code,
)
from mns_consumer.receipts import decode_object

DECODE = {"raw": b"{}", "source": "mns", "queue": "Alicom-Queue-1-SmsReport"}
MANUAL = Path(__file__).resolve().parents[2] / "docs" / "delivery-status.md"
SECTION = "## Outcome codes and their sources"


def documented_tables() -> list[list[list[str]]]:
    """The tables of the manual's outcome codes section: rows of cells (``\\|`` unescaped), headers dropped."""
    text = MANUAL.read_text(encoding="utf-8")
    section = text[text.index(SECTION) :].split("\n## ", 1)[0]
    tables: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for line in section.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if current is None:
            current = []
            tables.append(current)
        elif not set("".join(cells)) <= set("-:"):
            current.append(cells)
    return tables


def documented_codes() -> list[tuple[str, str, str]]:
    """(code, class, source) of every row of the manual's code table."""
    rows = documented_tables()[0]
    return [
        (code, re.fullmatch(r"`(\w+)`", klass)[1], source)  # type: ignore[index]
        for source, klass, codes in rows
        for code in re.findall(r"`([^`]+)`", codes)
    ]


@pytest.mark.parametrize(("code", "expected", "source"), documented_codes())
def test_every_documented_code_has_its_documented_class_and_flag(code: str, expected: str, source: str) -> None:
    """Each row of the manual's table: the code classifies as documented, and a failed report with it too."""
    assert classify_code(code) == expected, source
    failed = "unknown" if expected == "delivered" else expected
    assert classify("failed", code) == (failed, RETRYABLE[failed])


def test_the_manual_lists_exactly_the_module_s_codes_once_each() -> None:
    """No code of the module is missing from the manual, none is extra, none is listed twice."""
    documented = [(code.upper(), klass) for code, klass, _ in documented_codes()]
    assert len(documented) == len({code for code, _ in documented})
    assert dict(documented) == dict(EXACT_CODES)


def test_the_manual_lists_the_module_s_prefix_rules_in_order() -> None:
    """The families table is PREFIX_RULES: the same patterns, classes and order."""
    rows = documented_tables()[1]
    assert [(pattern.strip("`"), klass.strip("`")) for pattern, klass, _ in rows] == [
        (pattern.pattern, klass) for pattern, klass, _ in PREFIX_RULES
    ]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("IS_CLOSE", ("carrier_failure", True)),  # channel shut: Alibaba advises retrying later
        ("MOBLLE_TERMINAL_ERROR", ("powered_off", True)),  # handset memory/SIM full: retry after the handset
        ("MOBILE_NOT_ON_SERVICE", ("invalid_number", False)),  # check the number first
        ("MOBILE_IN_BLACK", ("blocked", False)),  # unsubscribed or carrier blacklist
        ("USER_REJECT", ("blocked", False)),  # unsubscribed: drop the number
        ("SIGNATURE_BLACKLIST", ("content_rejected", False)),  # the signature, not the number, is blacklisted
        ("NO_ROUTE", ("content_rejected", False)),  # no channel for this content
        ("REQUEST_SUCCESS", ("unknown", False)),  # no carrier report came back
    ],
)
def test_alibaba_receipt_codes_take_the_class_of_alibabas_explanation(code: str, expected: tuple[str, bool]) -> None:
    """Alibaba's own receipt codes (mainland receipt status code table) follow Alibaba's cause and advice."""
    assert classify("failed", code) == expected


@pytest.mark.parametrize(("code", "expected"), sorted(EXACT_CODES.items()))
def test_every_code_in_the_table_has_its_class(code: str, expected: str) -> None:
    """Each listed code classifies as the table says, whatever its case and surrounding spaces."""
    assert classify_code(code) == expected
    assert classify_code(f"  {code.lower()} ") == expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("MK:0099", "invalid_number"),
        ("MN:0123", "invalid_number"),
        ("MI:0210", "invalid_number"),
        ("MK00013", "invalid_number"),
        ("LT:0001", "invalid_number"),
        ("IC:0999", "carrier_failure"),
        ("IA:0053", "carrier_failure"),
        ("IB:0194", "carrier_failure"),
        ("CB:0255", "carrier_failure"),
        ("DA:0054", "carrier_failure"),
        ("MA:0022", "carrier_failure"),
        ("DB:0318", "carrier_failure"),
        ("E:BLACK", "blocked"),
        ("SME-BLACKLIST", "blocked"),
        ("ID:KEYWORD", "content_rejected"),
    ],
)
def test_codes_of_a_family_follow_its_prefix_rule(code: str, expected: str) -> None:
    """A code not in the table takes the class of the first prefix rule it matches."""
    assert code.upper() not in EXACT_CODES
    assert classify_code(code) == expected


def test_every_prefix_rule_is_reachable() -> None:
    """Each rule matches at least one of the examples above (none hides behind an earlier one)."""
    examples = ["E:BLACK", "ID:KEYWORD", "MK:0099", "LT:0001", "IC:0999"]
    assert [next(rule for rule in PREFIX_RULES if rule[0].search(code))[1] for code in examples] == [
        rule[1] for rule in PREFIX_RULES
    ]


@pytest.mark.parametrize("code", ["", "XYZ", "SGIP:12", "99", "isv.BUSINESS_LIMIT_CONTROL", "M:0001", None])
def test_codes_nobody_documented_are_unknown(code: str | None) -> None:
    """An unlisted code is ``unknown``, never an error."""
    assert classify_code(code) == "unknown"


@given(st.one_of(st.none(), st.text()), st.sampled_from(["delivered", "failed", "expired", "pending", "received"]))
def test_any_code_and_status_classify_without_error(code: str | None, status: str) -> None:
    """Whatever text arrives, classification answers with a known class and its flag (or no outcome)."""
    verdict = classify(status, code)
    if status in ("pending", "received"):
        assert verdict is None
    else:
        assert verdict is not None
        outcome, retryable = verdict
        assert outcome in OUTCOME_CLASSES
        assert retryable is RETRYABLE[outcome]


def test_the_status_decides_delivered_and_expired_and_a_contradiction_is_unknown() -> None:
    """Delivered and expired reports take their status's class; a failure claiming success is unknown."""
    assert classify("delivered", "MK:0001") == ("delivered", False)
    assert classify("expired", None) == ("expired", True)
    assert classify("failed", "DELIVERED") == ("unknown", False)
    assert classify("failed", "MI:0013") == ("powered_off", True)
    assert classify("failed", "DB:0141") == ("blocked", False)


def test_retryable_is_defined_for_every_class() -> None:
    """The flag table covers exactly the classes."""
    assert set(RETRYABLE) == set(OUTCOME_CLASSES)


def test_mainland_international_and_globe_reports_carry_class_and_flag() -> None:
    """All three delivery report formats are classified when decoded, and the JSON form carries it."""
    mainland = decode_object(
        "SmsReport",
        {"phone_number": "13900001111", "success": False, "err_code": "IC:0015", "biz_id": "1^0"},
        **DECODE,
    )
    international = decode_object(
        "SmsReport", {"To": "6591234567", "Status": "6", "MessageId": "1", "ErrorCode": "EXPIRED"}, **DECODE
    )
    globe = decode_object(
        "GlobeSmsReport",
        {"to": "6591234567", "status": "2", "message_id": "1", "error_code": "SP_UNKNOW_ERROR"},
        **DECODE,
    )
    delivered = decode_object(
        "SmsReport",
        {"phone_number": "13900001111", "success": True, "err_code": "DELIVERED", "biz_id": "1^0", "extra": 1},
        **DECODE,
    )
    assert (mainland.outcome_class, mainland.retryable) == ("carrier_failure", True)
    assert (international.outcome_class, international.retryable) == ("expired", True)
    assert (globe.outcome_class, globe.retryable) == ("unknown", False)
    assert (delivered.outcome_class, delivered.retryable) == ("delivered", False)
    data = mainland.to_json_dict()
    assert (data["outcome_class"], data["retryable"], data["opt_out"]) == ("carrier_failure", True, None)
    assert type(mainland).from_json_dict(data) == mainland


def test_other_kinds_have_no_outcome() -> None:
    """Replies and reviews are not delivery reports: no class, no flag."""
    reply = decode_object(
        "SmsUp",
        {"phone_number": "13900001111", "content": "hi", "send_time": "2024-05-01 10:05:00", "dest_code": "1",
         "sequence_id": 1},
        **DECODE,
    )  # fmt: skip
    assert (reply.outcome_class, reply.retryable, reply.opt_out) == (None, None, False)
