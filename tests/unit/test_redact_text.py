"""One redaction for free text that leaves the process: error texts, dead-letter reasons, rejection logs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mns_consumer.observe.redaction import MASK, redact_text, scrub_text
from mns_consumer.sinks.base import DeadLetter
from mns_consumer.sinks.dead_letter import DeadLetterSinkConfig, read_dead_letters


@pytest.mark.parametrize("echoed", ["Hook-Secret-42", "hook-secret-42", "HOOK-SECRET-42", "hOoK-sEcReT-42"])
def test_a_known_secret_is_masked_in_any_letter_case(echoed: str) -> None:
    """Receivers echo headers lower- or upper-cased; the secret is masked however it is spelled."""
    assert redact_text(f"HTTP 400: unknown key {echoed}.", ["Hook-Secret-42"]) == f"HTTP 400: unknown key {MASK}."


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("no route to 13911112222", "no route to 139****2222"),
        ('{"to":"+8613911112222"}', '{"to":"+861******2222"}'),
        ("call 139 1111 2222 or 139-1111-2222", "call 139 **** 2222 or 139-****-2222"),
        ("+86 139 1111 2222", "+86 1** **** 2222"),
        ("number 6591234", "number *******"),
    ],
)
def test_phone_numbers_in_free_text_are_masked_as_the_logs_mask_phone_keys(text: str, masked: str) -> None:
    """Runs of 7 or more digits and spaced or hyphenated numbers keep their first 3 and last 4 digits at most."""
    assert redact_text(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "undecodable: SmsUp.send_time: expected a time like 2024-01-01 00:00:00 (or yyyyMMddHHmmss), got an array",
        "HTTP 422 at 2024-05-01 10:00:04+08:00: sms_size 123456 over 65536",
        "unknown status code: expected one of 1 (delivered), 2 (failed), got another integer",
        "dedupe_key 4f1c2a9b8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b",
    ],
)
def test_text_without_secrets_or_phone_numbers_is_unchanged(text: str) -> None:
    """Dates, times, status codes, short counts and hex keys are not phone numbers."""
    assert redact_text(text) == text


def test_it_masks_everything_the_log_pipeline_masks_in_strings() -> None:
    """The log pipeline's string redaction (scrub_text) is part of it, so a text is never less redacted here."""
    text = "Authorization: MNS id:sig; url https://u:pw@host/x?Signature=abc&SecurityToken=t"
    assert redact_text(text) == scrub_text(text)
    assert "sig" not in redact_text(text).split("MNS ", 1)[1]


def test_a_dead_letter_reason_is_written_redacted_and_its_raw_body_kept(tmp_path: Path) -> None:
    """The reason of a dead letter goes through the same redaction; the raw body, which replays, is untouched."""
    raw = b'{"phone_number":"13911112222","success":["13911112222"]}'
    reason = "rejected by sink 'hook': HTTP 422: password=hunter2 for 13911112222"
    letter = DeadLetter("SmsReport", "mns", "q", raw, reason, datetime(2026, 1, 1, tzinfo=UTC), "M1")
    sink = DeadLetterSinkConfig(path=str(tmp_path / "dead.jsonl")).build()
    sink.write([letter])
    sink.close()

    (stored,) = read_dead_letters(tmp_path / "dead.jsonl")
    assert stored.reason == f"rejected by sink 'hook': HTTP 422: password={MASK} for 139****2222"
    assert stored.raw == raw
    line = json.loads((tmp_path / "dead.jsonl").read_text(encoding="utf-8"))
    assert "hunter2" not in line["reason"]
