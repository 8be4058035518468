"""Configurations that cannot work stop ``check-config`` and ``run`` with exit 2, the file, the key and the fix.

Each broken file is run through the real CLI as a subprocess, as systemd would start it: a traceback
(exit 1) there means a restart loop, so every case also asserts that none is printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECRET = "Qm7-Vx2Lp9Kd4Rt8Wz3"


def run(*args: str, env: dict[str, str] | None = None, unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key not in unset}
    return subprocess.run(
        [sys.executable, "-m", "mns_consumer", *args],
        capture_output=True,
        text=True,
        env={**environment, **(env or {})},
        timeout=60,
        check=False,
    )


def valid_config(folder: Path) -> str:
    """A configuration that loads: every case below breaks one thing in it."""
    return textwrap.dedent(f"""\
        credentials: {{access_key_id: LTAI-test, access_key_secret: {SECRET}}}
        endpoints: {{dybaseapi: "127.0.0.1:1", mns: "http://127.0.0.1:1", protocol: http}}
        queues:
          - message_type: SmsReport
            queue_name: Alicom-Queue-i1-SmsReport
            sinks: [archive, db]
        sinks:
          archive: {{type: file, path: "{folder}/receipts/{{message_type}}.jsonl"}}
          db: {{type: database, url: "sqlite:///{folder}/receipts.db", busy_timeout_seconds: 5}}
        dead_letter: {{type: file, path: "{folder}/dead-letter.jsonl"}}
        http: {{listen: "127.0.0.1:0"}}
        drain_timeout_seconds: 5
        """)


def with_sink(text: str, line: str) -> str:
    """The configuration with one more sink (not routed to: a sink no queue uses is still checked)."""
    return text.replace("dead_letter:", f"  {line}\ndead_letter:")


def write(folder: Path, text: str) -> Path:
    path = folder / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def assert_refused(result: subprocess.CompletedProcess[str], config: Path, key: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"error: {config}: {key}" in result.stderr


Edit = Callable[[str, Path], str]

CASES: dict[str, tuple[Edit, str]] = {
    "port-99999": (lambda text, _: text.replace("127.0.0.1:0", "127.0.0.1:99999"), "http.listen: the port must be"),
    "log-file-in-missing-folder": (
        lambda text, folder: text + f"logging: {{file: {folder}/missing/mns.log}}\n",
        "logging.file: the folder",
    ),
    "log-file-is-a-folder": (lambda text, folder: text + f"logging: {{file: {folder}}}\n", "logging.file:"),
    "sqlite-infinite-timeout": (
        lambda text, _: text.replace("busy_timeout_seconds: 5", "busy_timeout_seconds: .inf"),
        "sinks.db.busy_timeout_seconds: must be a finite number",
    ),
    "postgresql-infinite-timeout": (
        lambda text, _: with_sink(
            text, "pg: {type: database, url: 'postgresql+psycopg://mns@db/r', statement_timeout_seconds: .inf}"
        ),
        "sinks.pg.statement_timeout_seconds: must be a finite number",
    ),
    "nan-drain-timeout": (
        lambda text, _: text.replace("drain_timeout_seconds: 5", "drain_timeout_seconds: .nan"),
        "drain_timeout_seconds: must be a finite number",
    ),
    "5000-digit-integer": (
        lambda text, _: text.replace("drain_timeout_seconds: 5", "drain_timeout_seconds: " + "9" * 5000),
        "drain_timeout_seconds: is an integer of 5,000 digits",
    ),
    "recursive-anchor": (lambda text, _: text + "backfill: &loop\n  again: *loop\n", "backfill.again: uses the alias"),
    "5000-nested-lists": (lambda text, _: text + "region: " + "[" * 5000 + "]" * 5000 + "\n", "region[0]"),
    "alias-bomb": (
        lambda text, _: (
            text
            + "tokens:\n"
            + "\n".join(f"  l{n}: &l{n} [{', '.join(['*l' + str(n - 1)] * 10 if n else ['x'] * 10)}]" for n in range(8))
            + "\n"
        ),
        "tokens.l",
    ),
    "duplicate-key": (
        lambda text, _: text.replace("drain_timeout_seconds: 5", "drain_timeout_seconds: 5\ndrain_timeout_seconds: 9"),
        "drain_timeout_seconds: is given twice",
    ),
    "sink-path-under-a-regular-file": (
        lambda text, folder: text.replace(
            f"{folder}/receipts/{{message_type}}", f"{folder}/config.yaml/{{message_type}}"
        ),
        "sinks.archive.path:",
    ),
    "sqlite-file-under-a-regular-file": (
        lambda text, folder: text.replace(f"{folder}/receipts.db", f"{folder}/config.yaml/receipts.db"),
        "sinks.db.url:",
    ),
    "dead-letters-under-proc": (
        lambda text, folder: text.replace(f"{folder}/dead-letter.jsonl", "/proc/self/dead-letter.jsonl"),
        "dead_letter.path:",
    ),
    "message-type-typo": (
        lambda text, _: text.replace("message_type: SmsReport", "message_type: SmsRepot"),
        "queues[0].message_type: unknown MessageType 'SmsRepot'; did you mean SmsReport? use one of: SmsReport, "
        "GlobeSmsReport, SmsUp, SignSmsReport, TemplateSmsReport, MnsCardVender, MnsCardTemplate, DypnsSmsVerifyReport",
    ),
    "short-access-key-secret": (
        lambda text, _: text.replace(SECRET, "Qm7Vx2"),
        "credentials.access_key_secret: is shorter than 16 characters",
    ),
}

RUN_CASES = (
    "port-99999",
    "log-file-in-missing-folder",
    "sqlite-infinite-timeout",
    "5000-digit-integer",
    "sink-path-under-a-regular-file",
    "dead-letters-under-proc",
    "message-type-typo",
)


def test_the_base_configuration_is_valid(tmp_path: Path) -> None:
    """The cases below fail because of their one edit, not because the base is broken."""
    result = run("check-config", str(write(tmp_path, valid_config(tmp_path))))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_config_refuses_a_config_that_cannot_work(tmp_path: Path, case: str) -> None:
    """check-config exits 2 naming the file and the key, without a traceback."""
    edit, expected = CASES[case]
    config = write(tmp_path, edit(valid_config(tmp_path), tmp_path))
    assert_refused(run("check-config", str(config)), config, expected)


@pytest.mark.parametrize("case", RUN_CASES)
def test_run_refuses_a_config_that_cannot_work_before_starting(tmp_path: Path, case: str) -> None:
    """run exits 2 at once, as check-config does, instead of crashing later (a restart loop under systemd)."""
    edit, expected = CASES[case]
    config = write(tmp_path, edit(valid_config(tmp_path), tmp_path))
    assert_refused(run("run", "--config", str(config)), config, expected)
    assert not (tmp_path / "receipts.db").exists()


@pytest.mark.parametrize(("encoding", "expected"), [("utf-16", "is UTF-16"), ("latin-1", "is not UTF-8: byte 0xe9")])
def test_a_file_that_is_not_utf8_is_refused_with_the_fix(tmp_path: Path, encoding: str, expected: str) -> None:
    """A UTF-16 or Latin-1 file exits 2 saying so and how to fix it."""
    config = tmp_path / "config.yaml"
    config.write_bytes((valid_config(tmp_path) + "region: cn-hangzhou  # café\n").encode(encoding))
    result = run("check-config", str(config))
    assert_refused(result, config, expected)
    assert "save it as UTF-8" in result.stderr


def test_the_example_without_its_secrets_is_refused(tmp_path: Path) -> None:
    """The example has no default secret: with HOOK_SECRET and PUSH_SECRET unset it exits 2 naming the key."""
    credentials = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI-test", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET}
    example = REPO / "config.example.yaml"
    without_both = run("check-config", str(example), env=credentials, unset=("PUSH_SECRET", "HOOK_SECRET"))
    assert_refused(without_both, example, "sinks.hook.secret: environment variable HOOK_SECRET is not set")
    without_push = run("check-config", str(example), env={**credentials, "HOOK_SECRET": SECRET}, unset=("PUSH_SECRET",))
    assert_refused(without_push, example, "push.routes[0].secret: environment variable PUSH_SECRET is not set")
    placeholder = run(
        "check-config",
        str(example),
        env={**credentials, "HOOK_SECRET": SECRET, "PUSH_SECRET": "change-me-to-a-long-random-secret"},
    )
    assert_refused(placeholder, example, "push.routes[0].secret: the value is a placeholder")


def test_check_config_masks_only_the_database_password(tmp_path: Path) -> None:
    """A SQLite path is shown as it is; a server URL shows everything but its password and secret parameters."""
    url = "postgresql+psycopg://mns:Pw-9d2e7c41@db:5432/r?sslpassword=Kp-4b1d&sslmode=require"
    result = run(
        "check-config", str(write(tmp_path, with_sink(valid_config(tmp_path), f"pg: {{type: database, url: '{url}'}}")))
    )
    assert result.returncode == 0, result.stderr
    assert f"url: sqlite:///{tmp_path}/receipts.db" in result.stdout
    assert "url: postgresql+psycopg://mns:***@db:5432/r?sslmode=require&sslpassword=***" in result.stdout
    assert "Pw-9d2e7c41" not in result.stdout + result.stderr
    assert "Kp-4b1d" not in result.stdout + result.stderr


def test_an_unknown_message_type_is_accepted_when_the_queue_says_so(tmp_path: Path) -> None:
    """allow_unknown_message_type is the documented way to consume a type Alibaba added later."""
    text = valid_config(tmp_path).replace(
        "message_type: SmsReport", "message_type: VoiceReport\n    allow_unknown_message_type: true"
    )
    result = run("check-config", str(write(tmp_path, text)))
    assert result.returncode == 0, result.stderr
    assert "message_type: VoiceReport" in result.stdout
