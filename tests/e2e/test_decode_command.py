"""``mns-consumer decode`` as users run it: a subprocess reading a file or stdin."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

SMS_REPORT = {
    "phone_number": "13900001111",
    "send_time": "2024-05-01 10:00:00",
    "report_time": "2024-05-01 10:00:04",
    "success": True,
    "err_code": "DELIVERED",
    "err_msg": "用户接收成功",
    "sms_size": "1",
    "biz_id": "812345678901234567^0",
    "out_id": "order-42",
}


def run_decode(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """``python -m mns_consumer decode ARGS`` with ``stdin``; its output is captured as bytes."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(
        [sys.executable, "-m", "mns_consumer", "decode", *args],
        input=stdin,
        capture_output=True,
        env=env | {"PYTHONIOENCODING": "utf-8"},
        timeout=60,
        check=False,
    )


def test_decode_prints_the_receipt_of_a_base64_body_from_a_file(tmp_path: Path) -> None:
    """A base64 body in a file prints one receipt object, normalized, and exits 0."""
    body = tmp_path / "body.b64"
    body.write_text(base64.b64encode(json.dumps(SMS_REPORT).encode()).decode() + "\n")
    result = run_decode("--message-type", "SmsReport", str(body))
    assert result.returncode == 0, result.stderr.decode()
    receipt = json.loads(result.stdout)
    assert receipt["status"] == "delivered"
    assert receipt["biz_id"] == "812345678901234567^0"
    assert receipt["error_message"] == "用户接收成功"
    assert receipt["reported_at"] == "2024-05-01T10:00:04+08:00"
    assert len(receipt["dedupe_key"]) == 64


def test_decode_reads_a_json_object_from_stdin() -> None:
    """A decoded (raw JSON) body on stdin decodes as the SDK-decoded form does."""
    reply = {
        "phone_number": "13900001111",
        "content": "TD",
        "send_time": "2024-05-01 10:05:00",
        "dest_code": "1234",
        "sequence_id": 1234567890,
    }
    result = run_decode("--message-type", "SmsUp", stdin=json.dumps(reply).encode())
    assert result.returncode == 0, result.stderr.decode()
    receipt = json.loads(result.stdout)
    assert (receipt["kind"], receipt["status"], receipt["content"]) == ("reply", "received", "TD")
    assert receipt["extra"] == {"dest_code": "1234", "sequence_id": "1234567890"}


def test_decode_prints_an_array_for_a_push_body() -> None:
    """A push array prints an array of receipts with source push."""
    second = SMS_REPORT | {"phone_number": "13900002222", "success": False, "err_code": "MK:0001"}
    result = run_decode("--message-type", "SmsReport", "-", stdin=json.dumps([SMS_REPORT, second]).encode())
    assert result.returncode == 0, result.stderr.decode()
    receipts = json.loads(result.stdout)
    assert [(r["phone_number"], r["status"], r["source"]) for r in receipts] == [
        ("13900001111", "delivered", "push"),
        ("13900002222", "failed", "push"),
    ]


def test_decode_explains_a_broken_body_on_stderr_and_exits_1() -> None:
    """A body missing a required field prints nothing on stdout, the field and reason on stderr, and exits 1."""
    broken = {k: v for k, v in SMS_REPORT.items() if k != "biz_id"}
    result = run_decode("--message-type", "SmsReport", stdin=base64.b64encode(json.dumps(broken).encode()))
    assert result.returncode == 1
    assert result.stdout == b""
    stderr = result.stderr.decode()
    assert "biz_id" in stderr
    assert "required field is missing" in stderr
    assert "Traceback" not in stderr


def test_decode_exits_1_when_any_push_element_is_broken() -> None:
    """The good elements of a push are still printed; the bad one is explained and the exit code is 1."""
    result = run_decode("--message-type", "SmsReport", stdin=json.dumps([SMS_REPORT, {"success": True}]).encode())
    assert result.returncode == 1
    assert len(json.loads(result.stdout)) == 1
    assert "biz_id" in result.stderr.decode()


def test_decode_rejects_an_unknown_message_type_as_a_usage_error() -> None:
    """An unsupported --message-type is a usage error (exit 2) listing the supported types."""
    result = run_decode("--message-type", "VoiceReport", stdin=b"{}")
    assert result.returncode == 2
    assert "SmsReport" in result.stderr.decode()
