"""Run ``mns-consumer run`` as a real subprocess against an in-process emulator, and watch it work.

The daemon gets a real YAML file, real sinks and real signals; its stdout and stderr go to files, and
its JSON log (stderr) is read back as events. Every wait is bounded by a deadline that only guards
against hangs: tests never assert on how long anything took.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from mns_consumer.emulator import Emulator
from mns_consumer.emulator.samples import GeneratedReceipt
from mns_consumer.emulator.send_log import SendRecord
from mns_consumer.receipt_model import Receipt
from mns_consumer.receipts import decode_mns_body
from tests.support.sink_env_database import ServerEnv

DEADLINE_SECONDS = 60.0
"""How long any condition may take before the test fails as hung (a guard, not a timing assertion)."""
POLL_SECONDS = 0.1

FAST_SETTINGS: dict[str, Any] = {
    "drain_timeout_seconds": 10,
    "mns_request_timeout_seconds": 5,
    "sink_retry_initial_seconds": 0.1,
    "sink_retry_max_seconds": 1,
    "mns_retry_initial_seconds": 0.1,
    "mns_retry_max_seconds": 2,
}
"""Top-level settings that keep back-offs and drains short."""

FAST_QUEUE: dict[str, Any] = {"wait_seconds": 1}
"""Per-queue settings: short long polls, so a stop or a new message is seen quickly."""


def clean_env() -> dict[str, str]:
    """The environment without proxy variables (the Tea SDK follows them even to loopback)."""
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def daemon_config(
    emulator: Emulator,
    sinks: Mapping[str, Mapping[str, Any]],
    dead_letter: Path,
    *,
    routes: Mapping[str, list[str]] | None = None,
    queue_settings: Mapping[str, Any] | None = None,
    ca_file: str | None = None,
    **top: Any,
) -> dict[str, Any]:
    """A configuration consuming every emulator queue into ``sinks``.

    Args:
        emulator: The running emulator; its endpoints and master key are used.
        sinks: The ``sinks`` section.
        dead_letter: The dead-letter file.
        routes: MessageType -> sink names; by default every queue goes to every sink.
        queue_settings: Extra keys for every ``queues[]`` entry (on top of :data:`FAST_QUEUE`).
        ca_file: ``endpoints.ca_file`` (the emulator's certificate in TLS mode).
        **top: Top-level keys (on top of :data:`FAST_SETTINGS`).
    """
    endpoints: dict[str, Any] = {
        "dybaseapi": emulator.endpoint,
        "dysmsapi": emulator.endpoint,
        "mns": emulator.url,
        "protocol": emulator.scheme,
    }
    if ca_file is not None:
        endpoints["ca_file"] = ca_file
    queues = [
        {
            "message_type": message_type,
            "queue_name": queue_name,
            "sinks": list(routes[message_type]) if routes else sorted(sinks),
            **FAST_QUEUE,
            **(queue_settings or {}),
        }
        for message_type, queue_name in emulator.settings.queues.items()
    ]
    return {
        "credentials": {
            "access_key_id": emulator.settings.access_key_id,
            "access_key_secret": emulator.settings.access_key_secret,
        },
        "endpoints": endpoints,
        "queues": queues,
        "sinks": {name: dict(section) for name, section in sinks.items()},
        "dead_letter": {"type": "file", "path": str(dead_letter)},
        "logging": {"format": "json", "level": "info"},
        # Port 0: daemons started side by side (restarts, parallel runs) never fight over 9464.
        "http": {"listen": "127.0.0.1:0"},
        **FAST_SETTINGS,
        **top,
    }


def sqlite_sink(tmp_path: Path) -> tuple[dict[str, Any], sa.Engine]:
    """A SQLite database sink in ``tmp_path`` and an engine to look into it."""
    url = f"sqlite:///{tmp_path / 'receipts.db'}"
    return {"type": "database", "url": url}, sa.create_engine(url, poolclass=sa.pool.NullPool)


def postgres_sink(env: ServerEnv, **extra: Any) -> dict[str, Any]:
    """The database sink on a test's server table, with a short connect timeout."""
    return {"type": "database", "url": env.url, "table": env.table, "connect_timeout_seconds": 2, **extra}


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    """Write a configuration as YAML and return its path."""
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def one_shot_config(emulator: Emulator, tmp_path: Path, sinks: Mapping[str, Mapping[str, Any]]) -> Path:
    """``config.yaml`` in ``tmp_path`` for a one-shot command: the emulator's queues, ``sinks``, dead letters."""
    return write_config(tmp_path / "config.yaml", daemon_config(emulator, sinks, tmp_path / "dl.jsonl"))


def run_command(*args: str, timeout_seconds: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m mns_consumer ARGS`` to its end, output captured (the bounded wait is its hang guard)."""
    return subprocess.run(
        [sys.executable, "-m", "mns_consumer", *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=timeout_seconds,
        check=False,
    )


def wait_until(
    condition: Callable[[], bool],
    what: str,
    *,
    deadline_seconds: float = DEADLINE_SECONDS,
    diagnose: Callable[[], str] | None = None,
) -> None:
    """Poll ``condition`` until it holds; fail the test (saying ``what``) if it does not within the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            detail = f"\n{diagnose()}" if diagnose is not None else ""
            pytest.fail(f"hang guard: {what} did not happen within {deadline_seconds:g} s{detail}")
        time.sleep(POLL_SECONDS)


class Daemon:
    """One ``mns-consumer run`` process, its captured output and its log events."""

    def __init__(
        self,
        config_path: Path,
        output_dir: Path,
        label: str,
        command: str = "run",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config_path = config_path
        self.command = command
        self.env = {**clean_env(), **(env or {})}
        self.stdout_path = output_dir / f"{label}.stdout"
        self.stderr_path = output_dir / f"{label}.stderr"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        """Start the process (returns at once; see :meth:`wait_ready`)."""
        with self.stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mns_consumer", self.command, "--config", str(self.config_path)],
                stdout=stdout,
                stderr=stderr,
                env=self.env,
                cwd=self.config_path.parent,
            )
        return self

    @property
    def pid(self) -> int:
        """The process id."""
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process is not None and self.process.poll() is None

    def stderr(self) -> str:
        """Everything written to stderr so far."""
        return self.stderr_path.read_text(encoding="utf-8", errors="replace") if self.stderr_path.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (other lines are skipped)."""
        parsed: list[dict[str, Any]] = []
        for line in self.stderr().splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and "event" in item:
                parsed.append(item)
        return parsed

    def events_named(self, name: str) -> list[dict[str, Any]]:
        """The log events with this event name."""
        return [event for event in self.events() if event["event"] == name]

    def describe(self) -> str:
        """The exit status and the tail of stderr, for failure messages."""
        status = "running" if self.alive() else f"exited {self.process.returncode if self.process else None}"
        tail = "\n".join(self.stderr().splitlines()[-40:])
        return f"daemon {status}; stderr tail:\n{tail}"

    def wait_for_event(self, name: str, *, deadline_seconds: float = DEADLINE_SECONDS) -> dict[str, Any]:
        """Wait until the log holds event ``name`` (failing at once if the process exits first)."""
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            found[:] = self.events_named(name)
            if not found and not self.alive():
                pytest.fail(f"daemon exited before logging {name!r}: {self.describe()}")
            return bool(found)

        wait_until(seen, f"log event {name!r}", deadline_seconds=deadline_seconds, diagnose=self.describe)
        return found[0]

    def wait_ready(self) -> Daemon:
        """Wait for ``daemon.ready``."""
        self.wait_for_event("daemon.ready")
        return self

    def send(self, signum: int) -> None:
        """Send a signal to the process."""
        assert self.process is not None
        self.process.send_signal(signum)

    def wait_exit(self, deadline_seconds: float = DEADLINE_SECONDS) -> int:
        """Wait for the process to exit and return its exit code (fail the test if it does not)."""
        assert self.process is not None
        try:
            return self.process.wait(timeout=deadline_seconds)
        except subprocess.TimeoutExpired:
            pytest.fail(f"hang guard: daemon still running after {deadline_seconds:g} s: {self.describe()}")

    def stop(self, deadline_seconds: float = DEADLINE_SECONDS) -> int:
        """SIGTERM, then wait for the exit code."""
        self.send(signal.SIGTERM)
        return self.wait_exit(deadline_seconds)

    def kill(self) -> None:
        """SIGKILL if still running, and reap."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)

    def push_url(self, path: str) -> str:
        """The URL of a push route path (port 0 in tests: read from the ``push.listening`` log event)."""
        address = self.wait_for_event("push.listening")["address"]
        port = address.rpartition(":")[2]
        return f"http://127.0.0.1:{port}{path}"

    def http_url(self, path: str) -> str:
        """The URL of a path of the metrics and health endpoint (read from the ``http.listening`` event)."""
        port = self.wait_for_event("http.listening")["address"].rpartition(":")[2]
        return f"http://127.0.0.1:{port}{path}"

    def summary(self) -> dict[str, Any]:
        """The ``daemon.stopped`` line (counts at exit)."""
        lines = self.events_named("daemon.stopped")
        assert lines, f"no daemon.stopped line: {self.describe()}"
        return lines[-1]


class DaemonFactory:
    """Makes daemons from configurations written to a folder; kills every one of them at teardown."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.made: list[Daemon] = []

    def write(self, data: Mapping[str, Any], name: str = "config.yaml") -> Path:
        """Write a configuration file into the folder."""
        return write_config(self.folder / name, data)

    def start(
        self,
        config: Mapping[str, Any] | Path,
        *,
        ready: bool = True,
        command: str = "run",
        env: Mapping[str, str] | None = None,
    ) -> Daemon:
        """Start a daemon (writing the configuration if given as data), waiting for ready by default.

        ``command`` is ``run`` or ``push-server``; ``env`` is added to an environment without proxy variables.
        """
        path = config if isinstance(config, Path) else self.write(config)
        daemon = Daemon(path, self.folder, f"daemon-{len(self.made) + 1}", command, env)
        self.made.append(daemon)
        daemon.start()
        if ready:
            daemon.wait_ready()
        return daemon

    def kill_all(self) -> None:
        """Kill every daemon still running."""
        for daemon in self.made:
            daemon.kill()


def drain_lossy_producer(
    make_emulator: Callable[..., Emulator],
    daemons: DaemonFactory,
    sinks: Mapping[str, Mapping[str, Any]],
    tmp_path: Path,
    *,
    seed: int,
    receipts: int = 45,
) -> tuple[Emulator, list[GeneratedReceipt], Path]:
    """A producer that loses about a third of its SmsReport receipts, and a daemon that drained the rest.

    Returns the emulator, what it generated, and the daemon's configuration written to ``config.yaml``.
    """
    emulator = make_emulator(queues={"SmsReport": "Alicom-Queue-i1-SmsReport"}, seed=seed)
    emulator.add_fault(kind="lose", service="producer", probability=0.35)
    generated = emulator.produce("SmsReport", receipts)
    config = daemon_config(emulator, sinks, tmp_path / "dead-letter.jsonl")
    daemon = daemons.start(config)
    # Messages are deleted only once stored, so an empty queue means the sinks hold them all.
    wait_until(lambda: queue_total(emulator) == 0, "the queue drained")
    assert daemon.stop() == 0
    return emulator, generated, write_config(tmp_path / "config.yaml", config)


def write_sends(records: Iterable[SendRecord], path: Path) -> dict[str, SendRecord]:
    """The send log as the CSV an application would export (with a column the reader ignores), by ``file:line``."""
    by_line: dict[str, SendRecord] = {}
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["phone_number", "send_date", "biz_id", "template"])
        for line, record in enumerate(records, start=2):
            writer.writerow(
                [record.phone_number, record.send_date.strftime("%Y%m%d"), record.biz_id, record.template_code]
            )
            by_line[f"{path}:{line}"] = record
    return by_line


# -- what the emulator holds and what the sinks hold -----------------------------------------------


def queue_total(emulator: Emulator, names: Iterable[str] | None = None) -> int:
    """Messages still in the queues (active, inactive and delayed)."""
    total = 0
    for name in names if names is not None else emulator.settings.queues.values():
        counts = emulator.queue(name).counts()
        total += counts.active + counts.inactive + counts.delayed
    return total


def expected_receipts(emulator: Emulator, generated: Iterable[GeneratedReceipt]) -> dict[str, Receipt]:
    """The receipts the daemon must store for generated ones, by dedupe key, decoded as the daemon does."""
    decoded: dict[str, Receipt] = {}
    for item in generated:
        queue_name = emulator.queue_for(item.message_type)
        receipt = decode_mns_body(item.message_type, item.body, queue=queue_name)
        decoded[receipt.dedupe_key] = receipt
    return decoded


def file_lines(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every JSON line of the given files (missing files hold none)."""
    lines: list[dict[str, Any]] = []
    for path in paths:
        if path.exists():
            lines.extend(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line)
    return lines


def table_keys(engine: sa.Engine, table: str) -> list[str]:
    """Every stored dedupe key, one entry per row (0 rows if the table does not exist yet)."""
    if not sa.inspect(engine).has_table(table):
        return []
    with engine.connect() as connection:
        return list(connection.execute(sa.text(f"SELECT dedupe_key FROM {table}")).scalars())  # noqa: S608


ROW_COLUMNS = ("dedupe_key", "kind", "message_type", "source", "queue", "phone_number", "biz_id", "out_id", "status")


def table_rows(engine: sa.Engine, table: str) -> dict[str, dict[str, Any]]:
    """Rows by dedupe key: the identity columns and ``raw``."""
    columns = ", ".join((*ROW_COLUMNS, "error_code", "content", "sign_name", "template_code", "raw"))
    with engine.connect() as connection:
        rows = connection.execute(sa.text(f"SELECT {columns} FROM {table}")).mappings().all()  # noqa: S608
    return {row["dedupe_key"]: {**row, "raw": bytes(row["raw"])} for row in rows}


def row_of(receipt: Receipt) -> dict[str, Any]:
    """What :func:`table_rows` must show for a receipt."""
    return {
        **{column: getattr(receipt, column) for column in ROW_COLUMNS},
        "error_code": receipt.error_code,
        "content": receipt.content,
        "sign_name": receipt.sign_name,
        "template_code": receipt.template_code,
        "raw": bytes(receipt.raw),
    }
