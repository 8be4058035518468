"""Decode reasons as operators meet them: in the daemon's log, the dead letters, ``decode`` and ``dead-letters replay``.

Each names the field and what was expected and came instead; none repeats a value of the body (the
phone numbers seeded below are looked for in everything the commands print or write).
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mns_consumer.emulator import Emulator
from mns_consumer.emulator.samples import encode_body, malformed_body
from mns_consumer.sinks.dead_letter import read_dead_letters
from tests.e2e.daemon_harness import DaemonFactory, daemon_config, queue_total, wait_until

TIME_REASON = (
    "expected a time like 2024-01-01 00:00:00 (or yyyyMMddHHmmss, or an RFC 2822 date), got a string of another form"
)
FLAG_REASON = "expected true or false (or their strings in any case, or 1 or 0), got an array"
# Phone numbers standing where a time and a boolean belong: what a fuzzer found quoted in reasons.
BAD_TIME = {"phone_number": "13800001111", "sequence_id": 7, "dest_code": "1", "send_time": "13955556666"}
BAD_FLAG = {"biz_id": "812345678901234567^0", "phone_number": "13800002222", "success": ["13911112222"]}
SEEDED_NUMBERS = ("13955556666", "13911112222")


def run_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    """``python -m mns_consumer ARGS`` with ``stdin``; its output is captured as text."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(
        [sys.executable, "-m", "mns_consumer", *args],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env | {"PYTHONIOENCODING": "utf-8"},
        timeout=60,
        check=False,
    )


def assert_no_seeded_number(text: str) -> None:
    for number in SEEDED_NUMBERS:
        assert number not in text, f"{number} quoted in: {text}"


@pytest.mark.parametrize(
    ("message_type", "body", "expected"),
    [
        ("SmsUp", BAD_TIME, f"cannot decode SmsUp: field send_time: {TIME_REASON}"),
        ("SmsReport", BAD_FLAG, f"cannot decode SmsReport: field success: {FLAG_REASON}"),
    ],
)
def test_decode_names_the_field_and_the_reason_without_the_value(
    message_type: str, body: dict[str, object], expected: str
) -> None:
    """``decode`` of a body with a phone number in a time or boolean field says which field and why, exit 1."""
    for given in (json.dumps(body).encode(), base64.b64encode(json.dumps(body).encode())):
        result = run_cli("decode", "--message-type", message_type, stdin=given)
        assert result.returncode == 1
        assert result.stderr.strip() == expected
        assert_no_seeded_number(result.stdout + result.stderr)


def test_replay_prints_and_writes_reasons_without_the_values(tmp_path: Path) -> None:
    """Letters that still do not decode are listed with value-free reasons, even over an old unredacted one."""
    # Given dead letters written by an older version, whose reasons quoted the values
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(f"""
        credentials: {{access_key_id: LTAI-example, access_key_secret: replay-test-key-6d1f0a93c2}}
        queues:
          - {{message_type: SmsReport, queue_name: Alicom-Queue-i1-SmsReport, sinks: [archive]}}
          - {{message_type: SmsUp, queue_name: Alicom-Queue-i1-SmsUp, sinks: [archive]}}
        sinks:
          archive: {{type: file, path: "{tmp_path}/receipts/{{message_type}}.jsonl"}}
        dead_letter: {{type: file, path: "{tmp_path}/dead-letter.jsonl"}}
        """)
    )
    now = datetime.now(UTC).isoformat()
    old = [
        ("SmsUp", "Alicom-Queue-i1-SmsUp", BAD_TIME, "undecodable: SmsUp.send_time: unparseable time '13955556666'"),
        ("SmsReport", "Alicom-Queue-i1-SmsReport", BAD_FLAG, "undecodable: got array ['13911112222']"),
    ]
    dead = tmp_path / "dead-letter.jsonl"
    dead.write_text(
        "".join(
            json.dumps(
                {"failed_at": now, "message_type": t, "source": "mns", "queue": q, "message_id": f"M{i}"}
                | {"dequeue_count": 1, "sink": None, "dedupe_key": None, "reason": r, "raw": encode_body(b)}
            )
            + "\n"
            for i, (t, q, b, r) in enumerate(old)
        ),
        encoding="utf-8",
    )
    left = tmp_path / "left.jsonl"

    # When they are replayed
    result = run_cli("dead-letters", "replay", str(dead), "--config", str(config), "--remaining", str(left))

    # Then both still fail, named by field and reason, and no number is printed or written
    assert result.returncode == 1, result.stderr
    assert f"still failing: SmsUp M0: still does not decode: SmsUp.send_time: {TIME_REASON}" in result.stderr
    assert f"still failing: SmsReport M1: still does not decode: SmsReport.success: {FLAG_REASON}" in result.stderr
    assert_no_seeded_number(result.stdout + result.stderr)
    remaining = list(read_dead_letters(left))
    assert len(remaining) == 2
    for letter in remaining:
        assert_no_seeded_number(letter.reason)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_daemon_logs_undecodable_receipts_with_field_and_reason_and_no_values(
    emulator: Emulator, daemons: DaemonFactory, tmp_path: Path
) -> None:
    """``receipt.undecodable`` has ``field`` and ``reason`` keys; no log line or dead letter quotes the body."""
    # Given two good receipts and three poison bodies: a phone number as a time, an array of one as a
    # boolean, and the emulator's own malformed sample of a report without its success field
    emulator.produce("SmsUp", 1)
    emulator.produce("SmsReport", 1)
    sms_up, sms_report = emulator.queue_for("SmsUp"), emulator.queue_for("SmsReport")
    bad_time = emulator.queue(sms_up).send(encode_body(BAD_TIME)).message_id
    bad_flag = emulator.queue(sms_report).send(encode_body(BAD_FLAG)).message_id
    missing = emulator.queue(sms_report).send(malformed_body(random.Random(7), "missing_success")).message_id
    dead = tmp_path / "dead.jsonl"
    archive = {"type": "file", "path": str(tmp_path / "{message_type}.jsonl")}

    # When the daemon consumes both queues
    daemon = daemons.start(daemon_config(emulator, {"archive": archive}, dead))
    wait_until(lambda: queue_total(emulator) == 0, "queues drained", diagnose=daemon.describe)
    assert daemon.stop() == 0

    # Then each poison body is one warning naming its field and reason, and one dead letter saying the same
    logged = {event["message_id"]: event for event in daemon.events_named("receipt.undecodable")}
    expected = {
        bad_time: ("SmsUp", "send_time", TIME_REASON),
        bad_flag: ("SmsReport", "success", FLAG_REASON),
        missing: ("SmsReport", "success", "required field is missing"),
    }
    assert {key: (e["message_type"], e["field"], e["reason"]) for key, e in logged.items()} == expected
    letters = {letter.message_id: letter for letter in read_dead_letters(dead)}
    assert set(letters) == set(expected)
    for message_id, (message_type, field, reason) in expected.items():
        assert letters[message_id].reason == f"undecodable: {message_type}.{field}: {reason}"
    assert_no_seeded_number(daemon.stderr())
