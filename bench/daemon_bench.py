"""Daemon end to end: seeded emulator queue -> sinks -> deleted, against a demo consumer and a bare SDK loop.

Processes: the emulator runs in its own process (``python -m mns_consumer emulator``), a fresh one for
every row, and the daemon in another (``python -m mns_consumer run --config FILE``: one process,
configured by the function behind ``mns-consumer emulator --print-config``, keeping the sinks of the
row). The two reference consumers run in this bench process, one thread each, with the real
``aliyun-mns-sdk`` and a queue token from QueryTokenForMnsQueue:

(a) ``demo``: the loop of Alibaba's Python demo, one message per call: ReceiveMessage (3 s long
    poll, as in the demo), json-decode, store the receipt, DeleteMessage, repeat; the token is
    refreshed 2 minutes before ExpireTime and the Account rebuilt with it. It stores the way the
    daemon row it is compared with does: ``demo[file]`` appends the JSON line and fsyncs it,
    ``demo[sqlite]`` inserts the row into the daemon's own table with the SQLite sink's pragmas and
    commits. Each daemon row's ratio is taken against the demo that stores the same way, so it
    measures what batching and pipelining buy; SQLite against ``demo[file]`` is printed too.
(b) ``bare``: BatchReceiveMessage(16) + BatchDeleteMessage and nothing else: what one SDK connection
    does without pipelining, the ceiling for a consumer that stores nothing.

What is measured (each target printed with its ratio, then everything as one JSON line):

* Throughput, on loopback and with ``--latency-ms`` of emulator latency per MNS call (a ``latency``
  fault, service ``mns``). The queue is seeded first, then the consumer starts. The daemon's window
  runs from the first receive that handed out a message (admin ``GET state``, ``first_received_ms``)
  to the last delete in the emulator's deletion log (admin ``GET deletions``), both on the emulator's
  clock, which is this host's; daemon start-up is outside it, as the set-up of (a) and (b) is outside
  theirs. While the drain runs, the state is polled only every 0.25 s, since each poll loads the
  emulator, which (a) and (b), timed in this process, never do. (a) stops after the
  seeded messages or ``--demo-seconds``, whichever comes first. With ``--repeat N`` every consumer
  runs once per round, N rounds; a row shows its median run, and a ratio is the median of the ratios
  of runs made in the same round (paired), since the machine's speed drifts by 10-20% within the hour.
* The loopback drain again with the daemon pinned to one CPU (``--pin-cpu``, as systemd's
  ``CPUAffinity=`` or ``docker run --cpuset-cpus`` would): its threads take turns at the GIL, and a
  turn handed to a thread on the other CPU costs a wake-up there. Reported beside the unpinned rows,
  never instead of them.
* Enqueue-to-delete latency at half the daemon's measured peak, per sink, and at the fixed rates of
  ``--latency-rates`` (1,000 and 2,000 msg/s), for ``--trickle-seconds``: the emulator's steady
  producer (admin ``POST trickle``) generates the receipts first, then enqueues each on schedule
  (a late one at once, as a burst). A message's latency is what MNS sees, from its EnqueueTime to
  its delete, both on the emulator's clock (admin ``GET deletions``). The daemon logs at its
  production level; ``--latency-debug`` runs it at debug level and adds where a batch's time went.
* Memory with 8 queues (SQLite and file sinks, as ``--print-config`` writes them): VmRSS and VmHWM
  once the daemon drained 8 seeded queues, ``--repeat`` times with a fresh daemon, the highest
  counting (it varies by 1-3 MB from drain to drain); once more with ``--preload-keys`` receipts
  already in today's file, so the file sink's dedupe window starts full (a restart on a busy day).
* Idle CPU: the first of those daemons with its 8 queues empty for ``--idle-seconds``: (utime +
  stime) / wall.

Every row reports the emulator's CPU time: at ~0.5 ms per request, an emulator near one core would be
the limit rather than the consumer. The 1-minute load average before each row and an fsync probe
show what else the machine was doing. Run with::

    .venv/bin/python bench/daemon_bench.py [--messages 20000] [--latency-ms 20] [--repeat 3] [--pin-cpu 0] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import math
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Self

import httpx
import yaml
from alibabacloud_dybaseapi20170525 import models as dybase_models
from alibabacloud_dybaseapi20170525.client import Client as DybaseClient
from alibabacloud_tea_openapi import models as open_api_models
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import Message

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mns_consumer.config import Config
from mns_consumer.emulator.clock import Clock
from mns_consumer.emulator.consumer_config import emulator_config  # what `emulator --print-config` prints
from mns_consumer.emulator.samples import MESSAGE_TYPES, ReceiptFactory, encode_body

QUEUE_TYPE = "SmsReport"
QUEUE = "Alicom-Queue-i1-SmsReport"
# Eight receipt queues for the RSS and idle rows: the emulator generates the first seven types, the
# eighth (same field set as a mainland SmsReport) is seeded over the MNS API with the master key.
EIGHT_TYPES = (*MESSAGE_TYPES, "DypnsSmsVerifyReport")
GENERATED_TYPES = EIGHT_TYPES[:7]
TARGETS = {
    "vs_demo": 10.0,
    "vs_bare": 0.70,
    "p99_ms": 50.0,
    "rss_mb": 100.0,
    "idle_cpu_percent": 1.0,
}
BEIJING = timezone(timedelta(hours=8))
SINKS: dict[str, tuple[str, ...]] = {"file": ("archive",), "sqlite": ("db",)}
"""Daemon rows by sink: the names of the ``--print-config`` sinks each one keeps."""
DRAIN_POLL_SECONDS = 0.25
"""How often a drain under way is polled (its end is read from the deletion log, not the poll)."""


def clean_env() -> dict[str, str]:
    """The environment without proxies (the Tea SDK sends even loopback requests through them), with the
    malloc arena cap the systemd unit, the image and the manifests set."""
    return {"MALLOC_ARENA_MAX": "2", **{k: v for k, v in os.environ.items() if "proxy" not in k.lower()}}


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """User + system CPU a process has used so far (Linux /proc, all threads), and with
    ``reaped_children`` that of its children that ended and were waited for."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    ticks = sum(int(tick) for tick in fields[11 : 15 if reaped_children else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def children_of(pid: int) -> list[int]:
    """The live child processes of ``pid`` (the SQLite sink's writer, a token fetch in progress)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                found += [int(child) for child in children.read().split()]
    except OSError:
        pass
    return found


def family_cpu_seconds(pid: int) -> float:
    """CPU of a process and of its children, live or ended: the daemon's work includes its writer
    process's and a token child's, which may end between two readings (its CPU then moves from the
    live count to the reaped one, so a difference of two readings stays right)."""
    total = cpu_seconds(pid, reaped_children=True)
    for child in children_of(pid):
        with contextlib.suppress(OSError):  # ended meanwhile
            total += cpu_seconds(child, reaped_children=True)
    return total


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, in MiB."""
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024
    return found


# -- the emulator ---------------------------------------------------------------------------------


class EmulatorProcess:
    """The emulator in its own process, with its admin endpoint and the master key's SDK account."""

    def __init__(
        self,
        message_types: tuple[str, ...],
        *options: str,
        host: str = "127.0.0.1",
        max_long_polls: int = 64,
        stderr: Path | None = None,
    ) -> None:
        """``options`` are more ``emulator`` options (``--latency-ms 20`` for a WAN profile, ``--tls``...)."""
        queue_args = [arg for t in message_types for arg in ("--queue", f"{t}=Alicom-Queue-i1-{t}")]
        command = [sys.executable, "-m", "mns_consumer", "emulator", "--listen", f"{host}:0", "--json"]
        command += [*queue_args, "--max-long-polls", str(max_long_polls), *options]
        with open(stderr or os.devnull, "w") as errors:
            self.process = subprocess.Popen(  # noqa: S603  (our own interpreter and module)
                command, stdout=subprocess.PIPE, stderr=None if stderr is None else errors, text=True, env=clean_env()
            )
        assert self.process.stdout is not None
        self.described: dict[str, Any] = json.loads(self.process.stdout.readline())
        self.pid = self.process.pid
        verify: Any = self.described.get("ca_file") or True
        self.admin = httpx.Client(base_url=self.described["admin_url"], trust_env=False, timeout=120, verify=verify)
        self.queues: dict[str, str] = self.described["queues"]
        self._factory = ReceiptFactory(Clock(), 7)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.admin.close()
        self.process.terminate()
        self.process.wait(timeout=15)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def seed(self, message_type: str, count: int) -> None:
        if message_type in GENERATED_TYPES:
            for start in range(0, count, 2000):
                chunk = min(2000, count - start)
                self.admin.post("receipts", json={"message_type": message_type, "count": chunk}).raise_for_status()
            return
        # No generator for this type: mainland SmsReport bodies (its field set), sent with the master key.
        account = Account(self.described["mns_endpoint"], *self.master_key())
        queue = account.get_queue(self.queues[message_type])
        queue.set_encoding(False)
        try:
            bodies = [encode_body(item.receipt) for item in self._factory.make_many("SmsReport", count)]
            for start in range(0, count, 16):
                queue.batch_send_message([Message(body) for body in bodies[start : start + 16]])
        finally:
            account.mns_client.close_connection()

    def master_key(self) -> tuple[str, str]:
        return self.described["access_key_id"], self.described["access_key_secret"]

    def queue_states(self, queue_names: list[str] | None = None) -> list[dict[str, Any]]:
        """The admin ``state`` entries of the given queues (default: all)."""
        queues = self.admin.get("state").json()["queues"]
        return [queues[name] for name in (queue_names or list(queues))]

    def remaining(self, queue_names: list[str] | None = None) -> tuple[int, int]:
        """(visible, received but not deleted) messages over the given queues (default: all)."""
        chosen = self.queue_states(queue_names)
        return sum(q["active"] + q["delayed"] for q in chosen), sum(q["inactive"] for q in chosen)

    def drain_seconds(self, queue_names: list[str]) -> float:
        """From the first receive that handed out a message of these queues to their last delete.

        Both ends as the emulator recorded them (admin ``state``'s ``first_received_ms``, the deletion
        log), on its clock, which is this host's: a consumer's start-up stays outside the window.
        """
        times = [q["first_received_ms"] for q in self.queue_states(queue_names)]
        if None in times:
            raise RuntimeError(f"no message was ever received from some of {queue_names}")
        last_delete_ms = max(deleted for name in queue_names for _, deleted in self.deletions(name))
        return (last_delete_ms - min(times)) / 1000

    def deletions(self, queue_name: str) -> list[tuple[int, int]]:
        """(EnqueueTime, delete time) in ms, on the emulator's clock, of the queue's deleted messages."""
        found = self.admin.get("deletions", params={"queue": queue_name}).json()["deletions"]
        return [(int(enqueued), int(deleted)) for enqueued, deleted in found]

    def add_latency(self, seconds: float) -> None:
        self.admin.post("faults", json={"kind": "latency", "service": "mns", "seconds": seconds}).raise_for_status()

    def clear_faults(self) -> None:
        self.admin.delete("faults").raise_for_status()


def queue_token(emulator: EmulatorProcess, message_type: str) -> tuple[str, str, str, datetime]:
    """QueryTokenForMnsQueue with the master key, as the demo does: (id, secret, token, expires UTC)."""
    key_id, secret = emulator.master_key()
    config = open_api_models.Config(
        access_key_id=key_id,
        access_key_secret=secret,
        endpoint=emulator.described["dybaseapi_endpoint"],
        protocol="http",
    )
    request = dybase_models.QueryTokenForMnsQueueRequest(
        message_type=message_type, queue_name=emulator.queues[message_type]
    )
    dto = DybaseClient(config).query_token_for_mns_queue(request).body.message_token_dto
    expires = datetime.strptime(dto.expire_time, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    return dto.access_key_id, dto.access_key_secret, dto.security_token, expires.astimezone(UTC)


# -- the daemon -----------------------------------------------------------------------------------


class DaemonProcess:
    """``mns-consumer run`` as a subprocess, configured for the emulator with the given sinks."""

    def __init__(
        self,
        emulator: EmulatorProcess,
        folder: Path,
        message_types: tuple[str, ...],
        sinks: tuple[str, ...],
        *,
        debug: bool = False,
        cpus: set[int] | None = None,
        queue_settings: dict[str, Any] | None = None,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        config = emulator_config(emulator.described, folder)
        config["queues"] = [
            {"message_type": t, "queue_name": emulator.queues[t], "sinks": list(sinks), **(queue_settings or {})}
            for t in message_types
        ]
        config["sinks"] = {name: spec for name, spec in config["sinks"].items() if name in sinks}  # type: ignore[attr-defined]
        self.log_path = folder / "daemon.log"
        config["logging"] = {"level": "debug" if debug else "info", "file": str(self.log_path)}
        if "http" in Config.model_fields:
            # The metrics endpoint stays on, as in production, but on a free port: 9464 may be taken.
            config["http"] = {"listen": f"127.0.0.1:{free_port()}"}
        config_path = folder / "config.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.process = subprocess.Popen(  # noqa: S603  (our own interpreter and module)
            [sys.executable, "-m", "mns_consumer", "run", "--config", str(config_path)],
            env=clean_env(),
            # Its own data folder, not the bench's: `python -m` puts the working directory first on
            # sys.path, so started from a source tree the daemon would import that tree's package
            # whatever PYTHONPATH says (bench/daemon_ab.py relies on PYTHONPATH choosing it).
            cwd=folder,
            stderr=subprocess.PIPE,
            text=True,
            # Every thread the daemon starts inherits the affinity (what systemd's CPUAffinity= does).
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,  # noqa: PLW1509
        )
        self.pid = self.process.pid
        self._wait_ready()

    def _wait_ready(self, timeout_seconds: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited {self.process.returncode}: {self.process.stderr.read()}")  # type: ignore[union-attr]
            if self.log_path.exists() and '"daemon.ready"' in self.log_path.read_text():
                return
            time.sleep(0.05)
        raise RuntimeError("daemon not ready within 60 s")

    def cpu(self) -> float:
        return family_cpu_seconds(self.pid)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        if code != 0:
            raise RuntimeError(f"daemon exited {code}: {self.process.stderr.read()}")  # type: ignore[union-attr]
        return code

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]


def daemon_drain(
    emulator: EmulatorProcess,
    *,
    folder: Path,
    sinks: tuple[str, ...],
    count: int,
    poll_seconds: float = 0.02,
    cpus: set[int] | None = None,
    queue_settings: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Seed ``count`` receipts, start the daemon (on ``cpus`` only, if given; ``queue_settings`` added to
    its queue entry), and time it from first receive to empty queue."""
    emulator.seed(QUEUE_TYPE, count)
    daemon = DaemonProcess(emulator, folder, (QUEUE_TYPE,), sinks, cpus=cpus, queue_settings=queue_settings)
    try:
        row = watch_drain(emulator, [emulator.queues[QUEUE_TYPE]], count, daemon, poll_seconds)
    finally:
        daemon.stop()
    return row


def watch_drain(
    emulator: EmulatorProcess, queue_names: list[str], count: int, daemon: DaemonProcess, poll_seconds: float
) -> dict[str, float]:
    """Time a drain from its first receive to its last delete, both as the emulator recorded them.

    The start is when a receive first handed out a message of these queues (admin ``state``,
    ``first_received_ms``), the end the last delete in the emulator's deletion log; both are on the
    emulator's clock, which is this host's. The daemon's start-up stays outside the window, as the
    set-up of (a) and (b), timed from their first request, stays outside theirs; the pollers start
    before the daemon logs ``ready``, so no poll from here could see the drain begin.

    Polling is load on the emulator (about half a millisecond of its CPU a call) and on this process,
    which rows (a) and (b), timed in-process, never pay. So the state is polled every ``poll_seconds``
    only until the first receive shows (the daemon's CPU is read from there), then every
    ``DRAIN_POLL_SECONDS``, which costs no precision since the window comes from the emulator's records
    (:meth:`EmulatorProcess.drain_seconds`).
    """
    while True:
        visible, inflight = emulator.remaining(queue_names)
        if visible < count or inflight:
            break
        time.sleep(poll_seconds)
    cpu_daemon_began, cpu_emulator_began = daemon.cpu(), emulator.cpu()
    while visible or inflight:
        time.sleep(DRAIN_POLL_SECONDS)
        visible, inflight = emulator.remaining(queue_names)
    cpu_daemon, cpu_emulator = daemon.cpu() - cpu_daemon_began, emulator.cpu() - cpu_emulator_began
    seconds = emulator.drain_seconds(queue_names)
    return {
        "messages": float(count),
        "seconds": seconds,
        "messages_per_second": count / seconds,
        "consumer_cpu_seconds": cpu_daemon,
        "emulator_cpu_seconds": cpu_emulator,
    }


# -- the reference consumers, in this process -----------------------------------------------------


class DemoFileStore:
    """(a)'s handling when it keeps receipts in a file: append the JSON line, then fsync."""

    def __init__(self, folder: Path) -> None:
        self._out = open(folder / "demo-receipts.jsonl", "a", encoding="utf-8")  # noqa: SIM115  (closed in close())

    def store(self, receipt: dict[str, Any], body: str | bytes) -> None:
        self._out.write(json.dumps(receipt, ensure_ascii=False) + "\n")
        self._out.flush()
        os.fsync(self._out.fileno())

    def close(self) -> None:
        self._out.close()


class DemoSqliteStore:
    """(a)'s handling when it keeps receipts in SQLite: one INSERT and one COMMIT per message.

    The table, its indexes and the pragmas are the daemon's SQLite sink's own (WAL, synchronous=FULL,
    the same checkpoint interval), so the two rows store the same rows the same way and differ only in
    batching and pipelining. A demo-style consumer maps the JSON fields it knows and keys the row by
    the body's hash (it has no dedupe key of its own).
    """

    COLUMNS = (
        "dedupe_key",
        "kind",
        "message_type",
        "source",
        "queue",
        "phone_number",
        "biz_id",
        "out_id",
        "status",
        "error_code",
        "error_message",
        "sent_at",
        "reported_at",
        "sms_parts",
        "extra",
        "raw",
    )

    def __init__(self, folder: Path, queue: str) -> None:
        import sqlalchemy as sa

        from mns_consumer.sinks.database import DatabaseSinkConfig, receipts_table

        path = folder / "demo-receipts.db"
        engine = sa.create_engine(f"sqlite:///{path}")
        table = receipts_table(sa.MetaData(), backend="sqlite")
        table.create(engine)
        engine.dispose()
        pages = DatabaseSinkConfig.model_fields["wal_autocheckpoint_pages"].default
        self._db = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", f"wal_autocheckpoint={pages}"):
            self._db.execute(f"PRAGMA {pragma}").fetchall()
        placeholders = ", ".join("?" * len(self.COLUMNS))
        self._sql = (
            f"INSERT INTO {table.name} ({', '.join(self.COLUMNS)}) VALUES ({placeholders})"  # noqa: S608
            " ON CONFLICT (dedupe_key) DO NOTHING"
        )
        self._queue = queue

    def store(self, receipt: dict[str, Any], body: str | bytes) -> None:
        raw = body.encode("utf-8") if isinstance(body, str) else body
        row = (
            hashlib.sha256(raw).hexdigest(), "delivery_report", QUEUE_TYPE, "mns", self._queue,
            receipt.get("phone_number"), receipt.get("biz_id"), receipt.get("out_id"),
            "delivered" if receipt.get("success") else "failed", receipt.get("err_code"), receipt.get("err_msg"),
            receipt.get("send_time"), receipt.get("report_time"), receipt.get("sms_size"), "{}", raw,
        )  # fmt: skip
        self._db.execute("BEGIN")
        self._db.execute(self._sql, row)
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


def demo_consumer(
    emulator: EmulatorProcess, *, count: int, max_seconds: float, folder: Path, keep: str = "file"
) -> dict[str, float]:
    """(a) Alibaba's demo loop: one ReceiveMessage, json-decode, store (``keep``: file or sqlite), one DeleteMessage."""
    folder.mkdir(parents=True, exist_ok=True)
    emulator.seed(QUEUE_TYPE, count)
    endpoint, queue_name = emulator.described["mns_endpoint"], emulator.queues[QUEUE_TYPE]
    token: tuple[str, str, str, datetime] | None = None
    account: Account | None = None
    done = 0
    store = DemoFileStore(folder) if keep == "file" else DemoSqliteStore(folder, queue_name)
    try:
        began, cpu_self, cpu_emulator = time.perf_counter(), time.process_time(), emulator.cpu()
        while done < count and time.perf_counter() - began < max_seconds:
            # The demo's token check: refresh when less than 2 minutes remain, and rebuild the Account.
            if token is None or token[3] - datetime.now(UTC) < timedelta(minutes=2):
                if account is not None:
                    account.mns_client.close_connection()
                token = queue_token(emulator, QUEUE_TYPE)
                account = Account(endpoint, token[0], token[1], token[2])
            assert account is not None
            queue = account.get_queue(queue_name)
            try:
                message = queue.receive_message(3)
            except MNSServerException as exc:
                if exc.type == "MessageNotExist":
                    continue
                raise
            # The SDK already base64-decoded the body.
            store.store(json.loads(message.message_body), message.message_body)
            queue.delete_message(message.receipt_handle)
            done += 1
        seconds = time.perf_counter() - began
        row = {
            "messages": float(done),
            "seconds": seconds,
            "messages_per_second": done / seconds,
            "consumer_cpu_seconds": time.process_time() - cpu_self,
            "emulator_cpu_seconds": emulator.cpu() - cpu_emulator,
        }
    finally:
        store.close()
        if account is not None:
            account.mns_client.close_connection()
    return row


def bare_loop(emulator: EmulatorProcess, *, count: int, max_seconds: float, folder: Path) -> dict[str, float]:
    """(b) BatchReceiveMessage(16) + BatchDeleteMessage, nothing else, one connection."""
    emulator.seed(QUEUE_TYPE, count)
    key_id, secret, security_token, _ = queue_token(emulator, QUEUE_TYPE)
    account = Account(emulator.described["mns_endpoint"], key_id, secret, security_token)
    queue = account.get_queue(emulator.queues[QUEUE_TYPE])
    queue.set_encoding(False)
    done = 0
    began, cpu_self, cpu_emulator = time.perf_counter(), time.process_time(), emulator.cpu()
    try:
        while done < count and time.perf_counter() - began < max_seconds:
            try:
                batch = queue.batch_receive_message(16, 1)
            except MNSServerException as exc:
                if exc.type == "MessageNotExist":
                    continue
                raise
            queue.batch_delete_message([m.receipt_handle for m in batch])
            done += len(batch)
        seconds = time.perf_counter() - began
    finally:
        account.mns_client.close_connection()
    return {
        "messages": float(done),
        "seconds": seconds,
        "messages_per_second": done / seconds,
        "consumer_cpu_seconds": time.process_time() - cpu_self,
        "emulator_cpu_seconds": emulator.cpu() - cpu_emulator,
    }


# -- latency at half the peak rate ----------------------------------------------------------------


def trickle_latency(
    emulator: EmulatorProcess,
    folder: Path,
    sinks: tuple[str, ...],
    rate_per_second: float,
    seconds: float,
    *,
    debug: bool = False,
) -> dict[str, float]:
    """Trickle receipts at ``rate_per_second`` into the queue and measure enqueue-to-delete latency.

    The latency of each message is what MNS sees: its EnqueueTime to the moment its delete arrived,
    both on the emulator's clock. The daemon runs at its production log level; with ``debug`` it
    logs every batch, and the row also splits latency into the wait before the receive, receive to
    delete, and the sink write (debug logging costs the daemon some CPU of its own).
    """
    daemon = DaemonProcess(emulator, folder, (QUEUE_TYPE,), sinks, debug=debug)
    queue_name = emulator.queues[QUEUE_TYPE]
    try:
        time.sleep(0.5)  # the first long poll is waiting
        # The emulator's own steady producer: receipts generated up front, enqueued on schedule, so
        # neither an HTTP seeding loop nor receipt generation competes with the daemon for the CPU.
        trickle = {"message_type": QUEUE_TYPE, "rate": rate_per_second, "seconds": seconds}
        sent = emulator.admin.post("trickle", json=trickle).raise_for_status().json()["messages"]
        began, cpu_daemon, cpu_emulator = time.perf_counter(), daemon.cpu(), emulator.cpu()
        time.sleep(seconds)
        wall = time.perf_counter() - began
        used_daemon, used_emulator = daemon.cpu() - cpu_daemon, emulator.cpu() - cpu_emulator
        deadline = time.monotonic() + 60
        while emulator.remaining([queue_name]) != (0, 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        # All the work the trickle's receipts cost the daemon, the last ones' included.
        used_through_drain = daemon.cpu() - cpu_daemon
    finally:
        daemon.stop()
    per_message = sorted((deleted - enqueued) / 1000 for enqueued, deleted in emulator.deletions(queue_name))
    row = {
        "rate_per_second": rate_per_second,
        "achieved_per_second": len(per_message) / wall,
        "messages": float(len(per_message)),
        "sent": float(sent),
        "p50_ms": percentile(per_message, 0.50) * 1000,
        "p99_ms": percentile(per_message, 0.99) * 1000,
        "max_ms": per_message[-1] * 1000,
        "consumer_cpu_cores": used_daemon / wall,
        "consumer_cpu_seconds": used_through_drain,
        "emulator_cpu_cores": used_emulator / wall,
    }
    return {**row, **(batch_breakdown(daemon.events()) if debug else {})}


def batch_breakdown(events: list[dict[str, Any]]) -> dict[str, float]:
    """Where a batch's time goes, from the daemon's debug events."""
    received: dict[int, tuple[float, float, int]] = {}
    batches: list[int] = []
    waits: list[float] = []  # oldest message's age when its batch was received
    processing: list[float] = []  # receive -> delete of a batch
    sink_writes: list[float] = []
    for event in events:
        if event.get("event") == "batch.received":
            received[event["batch_id"]] = (iso_seconds(event["ts"]), event["oldest_age_seconds"], event["count"])
        elif event.get("event") == "sink.written":
            sink_writes.append(event["seconds"])
        elif event.get("event") == "receipts.deleted":
            at, oldest_age, _ = received[event["batch_id"]]
            batches.append(event["count"])
            waits.append(oldest_age)
            processing.append(iso_seconds(event["ts"]) - at)
    waits.sort()
    processing.sort()
    sink_writes.sort()
    return {
        "mean_batch": statistics.fmean(batches),
        "batch_wait_p50_ms": percentile(waits, 0.50) * 1000,
        "batch_wait_p99_ms": percentile(waits, 0.99) * 1000,
        "batch_receive_to_delete_p50_ms": percentile(processing, 0.50) * 1000,
        "batch_receive_to_delete_p99_ms": percentile(processing, 0.99) * 1000,
        "sink_write_p50_ms": percentile(sink_writes, 0.50) * 1000,
        "sink_write_p99_ms": percentile(sink_writes, 0.99) * 1000,
        "sink_write_max_ms": sink_writes[-1] * 1000,
    }


def iso_seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted figures: the smallest one at least ``fraction`` of them reach."""
    return ordered[max(0, math.ceil(len(ordered) * fraction) - 1)]


def fsync_probe(folder: Path, appends: int = 200) -> dict[str, float]:
    """The disk as the sinks see it now: append 300 bytes and fsync, ``appends`` times (ms)."""
    folder.mkdir(parents=True, exist_ok=True)
    took: list[float] = []
    with open(folder / "fsync-probe", "ab") as probe:
        for _ in range(appends):
            began = time.perf_counter()
            probe.write(b"x" * 299 + b"\n")
            probe.flush()
            os.fsync(probe.fileno())
            took.append(time.perf_counter() - began)
    took.sort()
    return {"p50_ms": percentile(took, 0.5) * 1000, "p99_ms": percentile(took, 0.99) * 1000, "max_ms": took[-1] * 1000}


# -- eight queues: memory, then idle CPU ----------------------------------------------------------


def eight_queues(
    emulator: EmulatorProcess,
    folder: Path,
    per_queue: int,
    idle_seconds: float,
    poll_seconds: float,
    preload_keys: int = 0,
) -> dict[str, float]:
    """Drain 8 seeded queues into SQLite + file, read the daemon's memory, then watch it idle.

    With ``preload_keys``, today's SmsReport file already holds that many receipts when the daemon
    starts, so the file sink's dedupe window starts full, as after a restart on a busy day.
    """
    if preload_keys:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "SmsReport.jsonl", "w", encoding="utf-8") as stored:
            for n in range(preload_keys):
                stored.write(f'{{"dedupe_key":"{n:064x}","message_type":"SmsReport"}}\n')
    for message_type in EIGHT_TYPES:
        emulator.seed(message_type, per_queue)
    daemon = DaemonProcess(emulator, folder, EIGHT_TYPES, ("db", "archive"))
    idle: dict[str, float] = {}
    try:
        names = [emulator.queues[t] for t in EIGHT_TYPES]
        drained = watch_drain(emulator, names, per_queue * len(EIGHT_TYPES), daemon, poll_seconds)
        memory = memory_mb(daemon.pid)
        children_rss = sum(memory_mb(child).get("VmRSS", 0.0) for child in children_of(daemon.pid))
        threads = len(os.listdir(f"/proc/{daemon.pid}/task"))
        if idle_seconds:
            time.sleep(2.0)  # let the last batches' threads settle into their long polls
            wall_began, cpu_began, emulator_began = time.perf_counter(), daemon.cpu(), emulator.cpu()
            time.sleep(idle_seconds)
            wall = time.perf_counter() - wall_began
            idle = {
                "idle_seconds": wall,
                "idle_cpu_percent": (daemon.cpu() - cpu_began) / wall * 100,
                "idle_emulator_cpu_percent": (emulator.cpu() - emulator_began) / wall * 100,
            }
    finally:
        daemon.stop()
    return {
        "messages": drained["messages"],
        "preloaded_keys": float(preload_keys),
        "drain_messages_per_second": drained["messages_per_second"],
        "drain_consumer_cpu_seconds": drained["consumer_cpu_seconds"],
        "drain_emulator_cpu_seconds": drained["emulator_cpu_seconds"],
        "rss_mb": memory["VmRSS"],
        "peak_rss_mb": memory["VmHWM"],
        "children_rss_mb": children_rss,
        "threads": float(threads),
        **idle,
    }


# -- report ---------------------------------------------------------------------------------------


def print_report(results: dict[str, Any], args: argparse.Namespace, wall_seconds: float) -> None:
    through = results["throughput"]
    print(
        f"daemon end-to-end benchmark ({os.cpu_count()} cores, {wall_seconds:.0f} s): emulator and daemon in their"
        " own processes, (a) and (b) one thread each in the bench process; a fresh emulator per row"
    )
    print(
        f"{'network':<9} {'consumer':<20} {'messages':>8} {'msg/s':>7} {'CPU ms/msg':>10}"
        f" {'emu CPU s':>9} {'emu cores':>9} {'load':>5}"
    )
    for network, rows in through.items():
        for name, row in rows.items():
            load = results["load_average_1min"][f"{network} {name}"]
            print(
                f"{network:<9} {name:<20} {int(row['messages']):>8} {row['messages_per_second']:>7.0f}"
                f" {row['consumer_cpu_seconds'] / row['messages'] * 1000:>10.3f} {row['emulator_cpu_seconds']:>9.2f}"
                f" {row['emulator_cpu_seconds'] / row['seconds']:>9.2f} {load:>5.2f}"
            )
    print()
    print(f"{'target':<58} {'measured':>10} {'target':>9} {'ratio':>6}  met")

    def line(label: str, measured: float, target: float, unit: str, higher_is_better: bool) -> None:
        ratio = measured / target if higher_is_better else target / measured if measured else float("inf")
        met = "yes" if ratio >= 1 else "NO"
        print(f"{label:<58} {measured:>8.2f}{unit:<2} {target:>7.2f}{unit:<2} {ratio:>5.2f}x  {met}")

    for network, rows in through.items():
        bare = "(b) bare SDK loop"
        for sink in ("file", "sqlite"):
            daemon, demo = f"daemon[{sink}]", f"(a) demo[{sink}]"
            # Each daemon row against the demo loop that stores the same way: the difference is then
            # batching and pipelining alone.
            line(f"{network}: {daemon} / {demo}", ratio(rows, daemon, demo), TARGETS["vs_demo"], "x", True)
            line(f"{network}: {daemon} / {bare}", ratio(rows, daemon, bare), TARGETS["vs_bare"], "x", True)
            if f"{daemon} 1 CPU" in rows:
                label = f"{network}: {daemon} on 1 CPU / {demo}"
                line(label, ratio(rows, f"{daemon} 1 CPU", demo), TARGETS["vs_demo"], "x", True)
        # For the record: SQLite against the cheapest demo handling there is (one fsynced line per receipt).
        label = f"{network}: daemon[sqlite] / (a) demo[file] (not a target)"
        line(label, ratio(rows, "daemon[sqlite]", "(a) demo[file]"), TARGETS["vs_demo"], "x", True)
    for sink, row in results["latency"].items():
        label = f"p99 enqueue->delete, daemon[{sink}] at {row['rate_per_second']:.0f}/s"
        line(label, row["p99_ms"], TARGETS["p99_ms"], "ms", False)
    eight = results["eight_queues"]
    drains = len(eight["all_rss_mb"])
    label = f"VmRSS after draining 8 queues, SQLite + file, highest of {drains}"
    line(label, eight["rss_mb"], TARGETS["rss_mb"], "MB", False)
    family = eight["rss_mb"] + eight.get("children_rss_mb", 0.0)
    line("  same, with its child processes (the SQLite writer)", family, TARGETS["rss_mb"], "MB", False)
    full = results.get("eight_queues_full_window")
    if full:
        label = f"  same, file dedupe window full ({int(full['preloaded_keys'])} keys)"
        line(label, full["rss_mb"], TARGETS["rss_mb"], "MB", False)
    label = f"idle CPU, 8 empty queues, {eight['idle_seconds']:.0f} s (% of a core)"
    line(label, eight["idle_cpu_percent"], TARGETS["idle_cpu_percent"], "%", False)
    print()
    probe = results["fsync_probe"]
    print(
        f"disk (300-byte append + fsync in the data folder, before the latency rows): p50 {probe['p50_ms']:.2f} ms,"
        f" p99 {probe['p99_ms']:.2f} ms, max {probe['max_ms']:.2f} ms"
    )
    for sink, row in {**results["latency"], **results.get("latency_at_rates", {})}.items():
        breakdown = (
            f" (mean batch {row['mean_batch']:.1f}; oldest-message wait p99 {row['batch_wait_p99_ms']:.1f} ms"
            f" + receive->delete p99 {row['batch_receive_to_delete_p99_ms']:.1f} ms;"
            f" sink write p50 {row['sink_write_p50_ms']:.1f} / p99 {row['sink_write_p99_ms']:.1f}"
            f" / max {row['sink_write_max_ms']:.1f} ms)"
            if "mean_batch" in row
            else ""
        )
        print(
            f"latency daemon[{sink}]: offered {row['rate_per_second']:.0f}/s,"
            f" achieved {row['achieved_per_second']:.0f}/s, {int(row['messages'])} messages;"
            f" p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, max {row['max_ms']:.1f} ms{breakdown};"
            f" daemon {row['consumer_cpu_cores']:.2f} cores, emulator {row['emulator_cpu_cores']:.2f} cores"
        )
    for key in ("eight_queues", "eight_queues_full_window"):
        if key in results:
            row = results[key]
            each = ", ".join(f"{mb:.1f}" for mb in row.get("all_rss_mb", []))
            print(
                f"8 queues{' (full window)' if row['preloaded_keys'] else ''}: drained {int(row['messages'])} at"
                f" {row['drain_messages_per_second']:.0f}/s (daemon {row['drain_consumer_cpu_seconds']:.1f} s CPU,"
                f" emulator {row['drain_emulator_cpu_seconds']:.1f} s); VmRSS {row['rss_mb']:.1f} MiB,"
                f" VmHWM {row['peak_rss_mb']:.1f} MiB, {int(row['threads'])} threads,"
                f" child processes (SQLite writer) {row.get('children_rss_mb', 0.0):.1f} MiB"
                + (f" (VmRSS of each drain: {each})" if each else "")
                + (f"; idle emulator CPU {row['idle_emulator_cpu_percent']:.2f}%" if "idle_seconds" in row else "")
            )
    print(json.dumps({"arguments": vars(args), "wall_seconds": wall_seconds, **results}))


def throughput_rows(
    network: str, count: int, latency_seconds: float, folder: Path, args: argparse.Namespace, loads: dict[str, float]
) -> dict[str, dict[str, Any]]:
    """The consumers on one network, each against a fresh emulator, ``args.repeat`` times each."""
    # (row name suffix, CPUs the daemon may run on): unpinned, then pinned on loopback if asked for.
    placements: list[tuple[str, set[int] | None]] = [("", None)]
    if args.pin_cpu >= 0 and not latency_seconds:
        placements.append((" 1 CPU", {args.pin_cpu}))
    runs: list[tuple[str, Callable[..., dict[str, float]]]] = [
        *(
            (
                f"daemon[{sink}]{suffix}",
                functools.partial(daemon_drain, sinks=names, poll_seconds=args.poll_ms / 1000, cpus=cpus),
            )
            for suffix, cpus in placements
            for sink, names in SINKS.items()
        ),
        *(
            (f"(a) demo[{sink}]", functools.partial(demo_consumer, max_seconds=args.demo_seconds, keep=sink))
            for sink in SINKS
        ),
        ("(b) bare SDK loop", functools.partial(bare_loop, max_seconds=600.0)),
    ]
    # Round by round: each round runs every consumer once, back to back, so a ratio compares runs made
    # minutes apart at most, while the machine's speed drifts over the hour (see ratio()).
    repeats: dict[str, list[dict[str, float]]] = {name: [] for name, _ in runs}
    for attempt in range(args.repeat):
        for name, run in runs:
            loads.setdefault(f"{network} {name}", os.getloadavg()[0])
            with EmulatorProcess((QUEUE_TYPE,)) as emulator:
                if latency_seconds:
                    emulator.add_latency(latency_seconds)
                where = folder / f"{network}-{name}-{attempt}".replace(" ", "_")
                repeats[name].append(run(emulator, count=count, folder=where))
            print(
                f"{network} {name} round {attempt + 1}: {repeats[name][-1]['messages_per_second']:.0f} msg/s",
                file=sys.stderr,
            )
    rows: dict[str, dict[str, Any]] = {}
    for name, runs_of_row in repeats.items():
        # The median run by rate; every rate is kept, in round order, for the paired ratios.
        rates = [row["messages_per_second"] for row in runs_of_row]
        median = sorted(runs_of_row, key=lambda row: row["messages_per_second"])[len(runs_of_row) // 2]
        rows[name] = {**median, "all_messages_per_second": rates}
    return rows


def ratio(rows: dict[str, dict[str, Any]], numerator: str, denominator: str) -> float:
    """The median over rounds of one row's rate divided by another's in the same round (paired)."""
    pairs = zip(rows[numerator]["all_messages_per_second"], rows[denominator]["all_messages_per_second"], strict=True)
    return float(statistics.median(top / bottom for top, bottom in pairs))


def latency_rows(
    peak: dict[str, dict[str, float]],
    sinks: dict[str, tuple[str, ...]],
    folder: Path,
    args: argparse.Namespace,
    loads: dict[str, float],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Latency per sink at half its measured peak, then at each of ``--latency-rates``."""
    half: dict[str, Any] = {}
    for sink, names in sinks.items():
        rate = peak[f"daemon[{sink}]"]["messages_per_second"] / 2
        loads[f"latency {sink}"] = os.getloadavg()[0]
        with EmulatorProcess((QUEUE_TYPE,)) as emulator:
            half[sink] = trickle_latency(
                emulator, folder / f"trickle-{sink}", names, rate, args.trickle_seconds, debug=args.latency_debug
            )
        print(f"latency daemon[{sink}]: p99 {half[sink]['p99_ms']:.1f} ms", file=sys.stderr)
    # The same at fixed rates, to show how latency grows as the daemon nears its peak.
    fixed: dict[str, Any] = {}
    for rate in args.latency_rates:
        for sink, names in sinks.items():
            with EmulatorProcess((QUEUE_TYPE,)) as emulator:
                scratch = folder / f"rate-{sink}-{rate:g}"
                row = trickle_latency(emulator, scratch, names, rate, args.trickle_seconds, debug=args.latency_debug)
            fixed[f"{sink}@{rate:g}/s"] = row
            print(f"latency daemon[{sink}] at {rate:g}/s: p99 {row['p99_ms']:.1f} ms", file=sys.stderr)
    return half, fixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000, help="seeded messages per loopback throughput row")
    parser.add_argument("--latency-messages", type=int, default=4000, help="per row with added latency")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="emulator latency per MNS call")
    parser.add_argument("--demo-seconds", type=float, default=10.0, help="cap on each (a) demo row, s")
    parser.add_argument("--trickle-seconds", type=float, default=15.0, help="length of each latency row, s")
    parser.add_argument(
        "--latency-rates",
        type=lambda text: [float(rate) for rate in text.split(",") if rate],
        default=[1000.0, 2000.0],
        help="fixed rates (msg/s, comma-separated) for extra latency rows; empty: none",
    )
    parser.add_argument(
        "--latency-debug", action="store_true", help="daemon at debug level in latency rows, for a per-batch breakdown"
    )
    parser.add_argument("--per-queue", type=int, default=2000, help="messages per queue in the 8-queue row")
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="idle CPU window, s")
    parser.add_argument(
        "--preload-keys", type=int, default=100000, help="stored receipts for the full-window RSS row (0: skip)"
    )
    parser.add_argument("--poll-ms", type=float, default=20.0, help="emulator state polling interval, ms")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of the throughput rows; medians, and ratios paired by round"
    )
    parser.add_argument(
        "--pin-cpu",
        type=int,
        default=0,
        help="add loopback rows with the daemon pinned to this one CPU, as CPUAffinity= would (-1: none)",
    )
    parser.add_argument("--quick", action="store_true", help="a fifth of every size (smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.latency_messages, args.per_queue = args.messages // 5, args.latency_messages // 5, 400
        args.demo_seconds, args.trickle_seconds, args.idle_seconds = 3.0, 5.0, 5.0
    poll = args.poll_ms / 1000
    bench_began = time.perf_counter()
    results: dict[str, Any] = {"throughput": {}, "latency": {}}
    # Other processes on the machine skew every row; the 1-minute load average before each row says how much.
    loads: dict[str, float] = {}
    # A fresh emulator per row: a long poll the stopped daemon left waiting would otherwise take up
    # to 16 messages of the next row and hide them for the visibility timeout.
    with tempfile.TemporaryDirectory(prefix="daemon-bench-") as scratch:
        folder = Path(scratch)
        steps: list[tuple[str, int, float]] = [("loopback", args.messages, 0.0)]
        if args.latency_ms > 0:
            steps.append((f"+{args.latency_ms:g} ms", args.latency_messages, args.latency_ms / 1000))
        for network, count, latency in steps:
            results["throughput"][network] = throughput_rows(network, count, latency, folder, args, loads)
        results["fsync_probe"] = fsync_probe(folder)
        peak = results["throughput"]["loopback"]
        results["latency"], results["latency_at_rates"] = latency_rows(peak, SINKS, folder, args, loads)
        loads["eight queues"] = os.getloadavg()[0]
        # RSS varies by a few MB from drain to drain; the target row is the highest of --repeat drains.
        drains = []
        for attempt in range(args.repeat):
            with EmulatorProcess(EIGHT_TYPES) as emulator:
                idle_seconds = args.idle_seconds if attempt == 0 else 0.0
                where = folder / f"eight-{attempt}"
                drains.append(eight_queues(emulator, where, args.per_queue, idle_seconds, poll))
        worst = max(drains, key=lambda row: row["rss_mb"])
        results["eight_queues"] = {
            **worst,
            **{key: value for key, value in drains[0].items() if key.startswith("idle")},
            "all_rss_mb": [row["rss_mb"] for row in drains],
        }
        if args.preload_keys:
            with EmulatorProcess(EIGHT_TYPES) as emulator:
                results["eight_queues_full_window"] = eight_queues(
                    emulator, folder / "eight-full", args.per_queue, 0.0, poll, args.preload_keys
                )
        results["load_average_1min"] = loads
    print_report(results, args, time.perf_counter() - bench_began)


if __name__ == "__main__":
    main()
