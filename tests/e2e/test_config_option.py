"""One spelling of the configuration file: every command that reads one takes ``--config FILE``.

``check-config`` used to take only a positional CONFIG and refused ``--config``; the demo printed a
``dead-letters replay`` command without the ``--config`` that command requires. Both are checked here
as users meet them: the installed ``mns-consumer`` script run as a subprocess.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = str(Path(sys.executable).with_name("mns-consumer"))


def mns_consumer(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "MNS_CONSUMER_CONFIG"}
    return subprocess.run(
        [SCRIPT, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**environment, **(env or {})},
        timeout=timeout,
        check=False,
    )


def write_config(folder: Path, name: str = "config.yaml") -> Path:
    config = folder / name
    config.write_text(
        textwrap.dedent(f"""
        credentials: {{access_key_id: LTAI-example, access_key_secret: not-a-real-secret}}
        queues:
          - {{message_type: SmsReport, queue_name: Alicom-Queue-i1-SmsReport, sinks: [archive]}}
        sinks:
          archive: {{type: file, path: "{folder}/receipts/{{message_type}}.jsonl"}}
        dead_letter: {{type: file, path: "{folder}/dead-letter.jsonl"}}
        """)
    )
    return config


@pytest.mark.parametrize(
    "command",
    [("run",), ("push-server",), ("backfill",), ("check-config",), ("dead-letters", "replay")],
    ids=" ".join,
)
def test_every_command_that_reads_a_configuration_documents_dash_dash_config(command: tuple[str, ...]) -> None:
    """`--help` of each such command names the one option users copy from the docs."""
    result = mns_consumer(*command, "--help", cwd=Path.cwd())
    assert result.returncode == 0, result.stderr
    assert "--config FILE" in result.stdout or "--config PATH" in result.stdout, result.stdout


def test_check_config_accepts_dash_dash_config(tmp_path: Path) -> None:
    """`check-config --config FILE` validates FILE, as `run --config FILE` reads it."""
    result = mns_consumer("check-config", "--config", str(write_config(tmp_path)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "access_key_secret: '**********'" in result.stdout


def test_check_config_keeps_the_positional_spelling(tmp_path: Path) -> None:
    """The older `check-config FILE` still works, so existing scripts do not break."""
    result = mns_consumer("check-config", str(write_config(tmp_path)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_check_config_reads_mns_consumer_config_like_the_other_commands(tmp_path: Path) -> None:
    """MNS_CONSUMER_CONFIG names the file for check-config as it does for run."""
    result = mns_consumer("check-config", cwd=tmp_path, env={"MNS_CONSUMER_CONFIG": str(write_config(tmp_path))})
    assert result.returncode == 0, result.stderr


def test_check_config_refuses_two_different_files_and_no_file_with_exit_2(tmp_path: Path) -> None:
    """Two different files is ambiguous, none is missing: both are usage errors naming --config."""
    first, second = write_config(tmp_path), write_config(tmp_path, "other.yaml")
    both = mns_consumer("check-config", str(first), "--config", str(second), cwd=tmp_path)
    assert both.returncode == 2
    assert "two configurations given" in both.stderr
    neither = mns_consumer("check-config", cwd=tmp_path)
    assert neither.returncode == 2
    assert "Missing option '--config'" in neither.stderr


def test_replay_reads_mns_consumer_config_like_the_other_commands(tmp_path: Path) -> None:
    """`dead-letters replay FILE` finds its configuration in MNS_CONSUMER_CONFIG too."""
    letters = tmp_path / "letters.jsonl"
    letters.write_text("")
    result = mns_consumer(
        "dead-letters", "replay", str(letters), cwd=tmp_path, env={"MNS_CONSUMER_CONFIG": str(write_config(tmp_path))}
    )
    assert result.returncode == 0, result.stderr
    assert "read 0" in result.stdout


def test_the_replay_command_the_demo_prints_runs_as_printed(tmp_path: Path) -> None:
    """The demo's summary prints a replay command with --config; run verbatim, it replays (exit 1: poison stays)."""
    demo = mns_consumer("demo", "--receipts", "5", "--http-listen", "127.0.0.1:0", cwd=tmp_path, timeout=120)
    assert demo.returncode == 0, demo.stderr
    lines = [line for line in demo.stdout.splitlines() if "replay them once fixed:" in line]
    assert len(lines) == 1, demo.stdout
    command = shlex.split(lines[0].split("replay them once fixed:", 1)[1])
    assert command[0] == "mns-consumer"
    replay = mns_consumer(*command[1:], cwd=tmp_path)
    # The demo's dead letters are malformed bodies: they still fail, which is exit 1 (not a usage error, 2).
    assert replay.returncode == 1, replay.stderr
    assert "still failing: SmsReport" in replay.stderr
    assert "read 4, replayed 0, still failing 4" in replay.stdout
    config = tmp_path / "mns-consumer-demo" / "config.yaml"
    assert config.stat().st_mode & 0o777 == 0o600
