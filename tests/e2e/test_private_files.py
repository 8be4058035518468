"""Files at rest: every file the daemon creates is 0600 and every folder 0700, whatever its umask.

The daemon runs as a subprocess under the umask being tested, with every file-creating feature on: a
SQLite sink (through its writer process), a file sink, the dead-letter file, ``logging.file`` and the
push spool, each in folders that do not exist yet. Receipts are pushed so that the file sink and the
database really write, and the modes are read while the daemon runs (SQLite's -wal and -shm files exist
only then) and again after it stopped.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mns_consumer.emulator.push_client import push_receipts
from tests.e2e.daemon_harness import (
    DEADLINE_SECONDS,
    FAST_SETTINGS,
    clean_env,
    file_lines,
    run_command,
    table_keys,
    wait_until,
)
from tests.e2e.daemon_harness import write_config as write_yaml
from tests.support.receipts import pushed_receipts

SECRET = "e2e-Private-Files-7c2e9d"


class LoggingDaemon:
    """``mns-consumer run`` under a given umask, logging to a file (read back for its events)."""

    def __init__(self, config: Path, log_file: Path, umask: int) -> None:
        self.log_file = log_file
        self.output = config.parent / f"daemon-{umask:03o}.out"
        with self.output.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mns_consumer", "run", "--config", str(config)],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                umask=umask,
            )

    def describe(self) -> str:
        """Exit status, console output and the log's tail, for failure messages."""
        status = self.process.poll()
        log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return f"exit {status}; output:\n{self.output.read_text(errors='replace')}\nlog tail:\n{log[-4000:]}"

    def event(self, name: str) -> dict[str, Any] | None:
        """The first log event with this name so far."""
        if not self.log_file.exists():
            return None
        for line in self.log_file.read_text(errors="replace").splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and item.get("event") == name:
                return item
        return None

    def wait_for(self, name: str) -> dict[str, Any]:
        """Wait for a log event (failing at once if the process exits first)."""

        def seen() -> bool:
            if self.event(name) is None and self.process.poll() is not None:
                pytest.fail(f"daemon exited before {name!r}: {self.describe()}")
            return self.event(name) is not None

        wait_until(seen, f"log event {name!r}", diagnose=self.describe)
        event = self.event(name)
        assert event is not None
        return event

    def kill(self) -> None:
        """SIGKILL if still running."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


@pytest.fixture
def started() -> Iterator[list[LoggingDaemon]]:
    """Daemons started by a test; killed afterwards if still running."""
    made: list[LoggingDaemon] = []
    yield made
    for daemon in made:
        daemon.kill()


def modes_under(root: Path) -> dict[str, int]:
    """Permission bits of every file and folder below ``root`` (relative path -> mode)."""
    found: dict[str, int] = {}
    for folder, subfolders, files in os.walk(root):
        for name in [*subfolders, *files]:
            path = Path(folder, name)
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def wrong_modes(root: Path) -> dict[str, str]:
    """Entries below ``root`` that are not 0700 folders or 0600 files, with their modes."""
    wrong: dict[str, str] = {}
    for relative, mode in modes_under(root).items():
        wanted = 0o700 if (root / relative).is_dir() else 0o600
        if mode != wanted:
            wrong[relative] = f"{mode:04o}"
    return wrong


@pytest.mark.parametrize("umask", [0o000, 0o022], ids=["umask-000", "umask-022"])
def test_every_file_the_daemon_creates_is_0600_and_every_folder_0700(
    tmp_path: Path, started: list[LoggingDaemon], umask: int
) -> None:
    """SQLite (and its -wal/-shm), JSON Lines, dead letters, the log and the spool: all private."""
    # Given: every path in folders that do not exist yet, except the log's (which must exist)
    state = tmp_path / "state"
    (tmp_path / "logs").mkdir()
    log_file = tmp_path / "logs" / "daemon.log"
    database = state / "db" / "receipts.db"
    config = write_yaml(
        tmp_path / "config.yaml",
        {
            "sinks": {
                "db": {"type": "database", "url": f"sqlite:///{database}"},
                "archive": {"type": "file", "path": str(state / "archive" / "{message_type}" / "receipts.jsonl")},
            },
            "dead_letter": {"type": "file", "path": str(state / "dead" / "dead-letter.jsonl")},
            "logging": {"format": "json", "level": "info", "file": str(log_file)},
            "http": {"listen": "127.0.0.1:0"},
            "push": {
                "listen": "127.0.0.1:0",
                "spool_path": str(state / "spool" / "push.db"),
                "routes": [
                    {
                        "path": "/alicom/SmsReport",
                        "secret": SECRET,
                        "message_type": "SmsReport",
                        "sinks": ["archive", "db"],
                    }
                ],
            },
            **FAST_SETTINGS,
        },
    )
    daemon = LoggingDaemon(config, log_file, umask)
    started.append(daemon)
    daemon.wait_for("daemon.ready")
    port = daemon.wait_for("push.listening")["address"].rpartition(":")[2]

    # When receipts are pushed and stored by both sinks
    receipts = pushed_receipts("SmsReport", 5, seed=4)
    report = push_receipts(
        f"http://127.0.0.1:{port}/alicom/SmsReport/{SECRET}",
        receipts,
        message_type="SmsReport",
        retry_delays_seconds=(),
    )
    assert report.accepted_receipts == 5
    engine = sa.create_engine(f"sqlite:///{database}", poolclass=sa.pool.NullPool)
    wait_until(lambda: len(table_keys(engine, "sms_receipts")) == 5, "rows stored", diagnose=daemon.describe)
    archive = state / "archive" / "SmsReport" / "receipts.jsonl"
    wait_until(lambda: len(file_lines([archive])) == 5, "lines archived", diagnose=daemon.describe)
    engine.dispose()

    # Then, while it runs, every file (SQLite's -wal and -shm included) and folder is private
    running = modes_under(tmp_path)
    for expected in (
        "state/db/receipts.db",
        "state/db/receipts.db-wal",
        "state/db/receipts.db-shm",
        "state/spool/push.db",
        "state/spool/push.db-wal",
        "state/archive/SmsReport/receipts.jsonl",
        "state/dead/dead-letter.jsonl",
        "logs/daemon.log",
    ):
        assert expected in running, sorted(running)
    assert wrong_modes(state) == {}
    assert running["logs/daemon.log"] == 0o600
    # And after a clean stop too
    daemon.process.send_signal(15)
    assert daemon.process.wait(timeout=DEADLINE_SECONDS) == 0, daemon.describe()
    assert wrong_modes(state) == {}
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("blocked_path", "key"),
    [("sub/receipts.db", "sinks.db.url"), ("daemon.log", "logging.file")],
    ids=["sqlite-database", "log-file"],
)
def test_a_file_under_a_regular_file_stops_the_daemon_with_exit_2_naming_the_key_and_path(
    tmp_path: Path, blocked_path: str, key: str
) -> None:
    """The folder cannot be made: exit 2 at start naming the key and path, not a traceback or endless retries.

    For the database, check-config's static path check refuses it before the sink would try (the sink's
    own refusal, for a folder that becomes impossible later, is tested at sink level).
    """
    (tmp_path / "blocked").write_text("")
    target = tmp_path / "blocked" / blocked_path
    database = target if key == "sinks.db.url" else tmp_path / "receipts.db"
    config = write_yaml(
        tmp_path / "config.yaml",
        {
            "sinks": {"db": {"type": "database", "url": f"sqlite:///{database}"}},
            "dead_letter": {"type": "file", "path": str(tmp_path / "dead-letter.jsonl")},
            "logging": {"file": str(target)} if key == "logging.file" else {"format": "json", "level": "info"},
            "http": {"listen": "127.0.0.1:0"},
            "push": {
                "listen": "127.0.0.1:0",
                "spool_path": str(tmp_path / "spool.db"),
                "routes": [
                    {"path": "/alicom/SmsReport", "secret": SECRET, "message_type": "SmsReport", "sinks": ["db"]}
                ],
            },
            **FAST_SETTINGS,
        },
    )

    result = run_command("run", "--config", str(config), timeout_seconds=DEADLINE_SECONDS)

    assert result.returncode == 2, result.stderr
    assert f"{config}: {key}: " in result.stderr
    assert f"{tmp_path}/blocked" in result.stderr
    assert "Traceback" not in result.stderr
