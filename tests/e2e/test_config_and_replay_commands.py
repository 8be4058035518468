"""``check-config`` and ``dead-letters replay`` as users run them: subprocesses with real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mns_consumer.emulator import Emulator
from mns_consumer.emulator.clock import Clock
from mns_consumer.emulator.samples import ReceiptFactory, encode_body
from mns_consumer.sinks.base import DeadLetter
from mns_consumer.sinks.dead_letter import DeadLetterSinkConfig, read_dead_letters

AK_SECRET = "Vq2-ak-8Hd3Kx9Lm4Pt7"
"""An AccessKey secret long enough to load (secrets have a minimum length)."""


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mns_consumer", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(f"""
        credentials:
          access_key_id: LTAI-example
          access_key_secret: ${{TEST_SECRET}}
        queues:
          - message_type: SmsReport
            queue_name: Alicom-Queue-i1-SmsReport
            sinks: [archive]
        sinks:
          archive:
            type: file
            path: {tmp_path}/receipts/{{message_type}}.jsonl
        dead_letter:
          type: file
          path: {tmp_path}/dead-letter.jsonl
        """)
    )
    return config


def test_check_config_prints_the_effective_config_with_secrets_masked(tmp_path: Path) -> None:
    """A valid file exits 0 and prints every section, never the secret."""
    result = run("check-config", str(write_config(tmp_path)), env={"TEST_SECRET": "very-secret-value"})
    assert result.returncode == 0, result.stderr
    assert "very-secret-value" not in result.stdout + result.stderr
    assert "access_key_secret: '**********'" in result.stdout
    assert "Alicom-Queue-i1-SmsReport" in result.stdout


def test_check_config_exits_2_naming_the_file_the_key_and_the_fix(tmp_path: Path) -> None:
    """An unknown key exits 2 with the file, the key path and what to do."""
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("    sinks: [archive]", "    sinks: [archive]\n    wait_secs: 3"))
    result = run("check-config", str(config), env={"TEST_SECRET": AK_SECRET})
    assert result.returncode == 2
    assert str(config) in result.stderr
    assert "queues[0].wait_secs: unknown key" in result.stderr
    assert "config.example.yaml" in result.stderr


def test_replay_delivers_what_now_decodes_and_keeps_what_still_fails(tmp_path: Path) -> None:
    """A rejected-but-valid letter is replayed into its sink; poison and unrouted letters remain."""
    config = write_config(tmp_path)
    receipt = ReceiptFactory(Clock(), seed=5).make("SmsReport").receipt
    now = datetime.now(UTC)
    letters = [
        DeadLetter(
            "SmsReport", "mns", "Alicom-Queue-i1-SmsReport", encode_body(receipt).encode(), "sink down", now, "M1"
        ),
        DeadLetter("SmsReport", "mns", "Alicom-Queue-i1-SmsReport", b"%%% not base64", "undecodable", now, "M2"),
        DeadLetter("SmsUp", "push", "/alicom/smsup", b'{"phone_number":"1"}', "no sink", now),
    ]
    dead = tmp_path / "dead-letter.jsonl"
    sink = DeadLetterSinkConfig(type="file", path=str(dead)).build()
    sink.open()
    sink.write(letters)
    sink.close()
    left = tmp_path / "left.jsonl"

    result = run(
        "dead-letters",
        "replay",
        str(dead),
        "--config",
        str(config),
        "--remaining",
        str(left),
        env={"TEST_SECRET": AK_SECRET},
    )

    assert result.returncode == 1
    assert "read 3, replayed 1, still failing 2" in result.stdout
    stored = [json.loads(line) for line in (tmp_path / "receipts" / "SmsReport.jsonl").read_text().splitlines()]
    assert [row["phone_number"] for row in stored] == [receipt["phone_number"]]
    remaining = list(read_dead_letters(left))
    assert [letter.message_id for letter in remaining] == ["M2", None]
    assert "still does not decode" in remaining[0].reason
    assert "no configured queue" in remaining[1].reason
    assert len(list(read_dead_letters(dead))) == 3  # the original file is never edited


@pytest.mark.parametrize("child_process", [True, False], ids=["token-child-process", "token-in-process"])
def test_check_config_connect_reports_each_dependency(
    tmp_path: Path, make_emulator: Callable[..., Emulator], child_process: bool
) -> None:
    """--connect fetches tokens (either way), probes the queue without taking messages, checks the sinks."""
    emulator = make_emulator()
    emulator.produce("SmsReport", 2)
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(f"""
        credentials:
          access_key_id: {emulator.settings.access_key_id}
          access_key_secret: {emulator.settings.access_key_secret}
        endpoints: {{dybaseapi: "{emulator.endpoint}", mns: "{emulator.url}", protocol: http}}
        tokens: {{child_process: {str(child_process).lower()}}}
        queues:
          - {{message_type: SmsReport, queue_name: Alicom-Queue-i1-SmsReport, sinks: [archive]}}
          - {{message_type: SmsUp, queue_name: Alicom-Queue-i1-Missing, sinks: [archive]}}
        sinks:
          archive: {{type: file, path: "{tmp_path}/{{message_type}}.jsonl"}}
        dead_letter: {{type: file, path: "{tmp_path}/dead.jsonl"}}
        """)
    )
    result = run("check-config", "--connect", str(config))
    assert "[ok] queue Alicom-Queue-i1-SmsReport (SmsReport): 2 active, 0 inactive, 0 delayed" in result.stdout
    assert "[FAILED] token for queue Alicom-Queue-i1-Missing (SmsUp): InvalidQueueName.NotFound" in result.stdout
    assert f"[ok] sink archive: {tmp_path} is writable" in result.stdout
    assert f"[ok] dead_letter: {tmp_path} is writable" in result.stdout
    assert emulator.settings.access_key_secret not in result.stdout + result.stderr
    assert result.returncode == 1
    assert emulator.queue("Alicom-Queue-i1-SmsReport").counts().active == 2


def test_run_without_queues_exits_2_saying_what_to_add(tmp_path: Path) -> None:
    """A configuration with no queues cannot run: exit 2 naming the key."""
    config = tmp_path / "empty.yaml"
    config.write_text("region: cn-hangzhou\n")
    result = run("run", "--config", str(config))
    assert result.returncode == 2
    assert f"{config}: queues: no queue is configured" in result.stderr


def test_replay_refuses_a_remaining_path_below_a_regular_file(tmp_path: Path) -> None:
    """--remaining under a file (not a folder) exits 2 naming the path, before any letter is replayed."""
    config = write_config(tmp_path)
    receipt = ReceiptFactory(Clock(), seed=5).make("SmsReport").receipt
    dead = tmp_path / "dead-letter.jsonl"
    sink = DeadLetterSinkConfig(type="file", path=str(dead)).build()
    sink.open()
    sink.write(
        [
            DeadLetter(
                "SmsReport",
                "mns",
                "Alicom-Queue-i1-SmsReport",
                encode_body(receipt).encode(),
                "sink down",
                datetime.now(UTC),
                "M1",
            )
        ]
    )
    sink.close()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    left = blocker / "left.jsonl"

    result = run(
        "dead-letters",
        "replay",
        str(dead),
        "--config",
        str(config),
        "--remaining",
        str(left),
        env={"TEST_SECRET": AK_SECRET},
    )

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"--remaining: {str(left)!r} is under {str(blocker)!r}, which is a file, not a folder" in result.stderr
    assert not (tmp_path / "receipts").exists()  # nothing was replayed
