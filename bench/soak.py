"""Soak: the daemon against the emulator for a long while, under steady traffic and periodic faults.

Processes: the emulator (``python -m mns_consumer emulator``), the daemon under watch and a second
replica (both ``python -m mns_consumer run``), each in its own process. This process seeds receipts
over the MNS API (the real ``aliyun-mns-sdk``, master key) at ``--rate`` receipts a second, 70% to
SmsReport and 30% to SmsUp, pushes SmsReport receipts to the watched daemon's push receiver with the
emulator's push client, and stores nothing itself: both daemons write into one PostgreSQL table,
reached through a :class:`~tests.support.tcp_proxy.TcpProxy` that can be cut.

The run has four phases, as shares of its length: warm-up (0-10%), baseline (10-15%, no faults),
faults (15-75%: six evenly spaced windows, each 40% of its slot) and a quiet tail (75-100%). The
faults, in order: MNS 5xx on receive/delete, dropped connections on receive/delete, a 429 storm (the
flow limiter: a share of every MNS call refused, and receives refused above a low received-not-deleted
bound), queue tokens expired, the PostgreSQL sink cut off at the proxy, and the replica killed with
SIGKILL (restarted when the window ends). The watched daemon is never faulted directly.

Every ``--sample-seconds`` the watched daemon's RSS (its child processes included), open file
descriptors, threads and lag (the largest ``mns_consumer_queue_oldest_message_age_seconds`` of its
MNS queues, scraped from /metrics) are recorded, with the throughput (deleted per second, from the
emulator's deletion log). At the end seeding and pushing stop, the daemons drain and stop, and every
receipt seeded or acknowledged by a push must be in PostgreSQL exactly once.

Bounds (each a failed check when broken; they are about leaks and recovery, not speed):

* RSS: the median of the last 20% of samples may exceed the baseline median by at most
  max(``--rss-bound-mb``, ``--rss-bound-ratio`` x baseline).
* File descriptors and threads: the median of the last 20% within ``--fd-slack`` / ``--thread-slack``
  of the baseline median.
* Lag: after each fault window it falls under ``--lag-bound-seconds`` before the next window opens,
  or within ``--lag-recovery-seconds`` if that is later (compressed runs).
* Nothing lost, nothing doubled; both daemons exit 0 on SIGTERM; the watched daemon never restarts.

The report (``soak.json``, ``soak.md`` and, when matplotlib is installed, ``soak.png``) goes to
``--out``. Run with::

    make soak                       # SOAK_MINUTES=30 by default
    .venv/bin/python bench/soak.py --minutes 30 --out build/soak
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import yaml
from mns.account import Account
from mns.mns_exception import MNSClientException, MNSServerException
from mns.queue import Message
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mns_consumer.consume.poller import KEEPER_CONNECTIONS
from mns_consumer.emulator.clock import Clock
from mns_consumer.emulator.consumer_config import emulator_config
from mns_consumer.emulator.push_client import push_receipts
from mns_consumer.emulator.samples import ReceiptFactory, encode_body
from mns_consumer.receipts import decode_mns_body, decode_push
from tests.support.tcp_proxy import TcpProxy

SEEDED_SHARES = {"SmsReport": 0.7, "SmsUp": 0.3}
"""Seeded traffic by queue."""
PUSH_TYPE = "SmsReport"
PUSH_PATH = "/alicom/SmsReport"
PUSH_SECRET = "soak-Push-Secret-9c2e7d41"
LAG_METRIC = "mns_consumer_queue_oldest_message_age_seconds"
DAEMON_OPERATIONS = ("BatchReceiveMessage", "BatchDeleteMessage")
"""The MNS calls the 5xx and drop faults hit: the daemons', not the seeder's sends."""
FAULTS = ("mns_5xx", "dropped_connections", "429_storm", "token_expiry", "sink_outage", "replica_kill")
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:{port}/test"


@dataclasses.dataclass
class SoakSettings:
    """How long, how much traffic, and the bounds that fail the soak."""

    minutes: float = 30.0
    rate_per_second: float = 200.0
    push_per_second: float = 10.0
    sample_seconds: float = 5.0
    rss_bound_mb: float = 20.0
    rss_bound_ratio: float = 0.25
    fd_slack: int = 5
    thread_slack: int = 3
    lag_bound_seconds: float = 10.0
    lag_recovery_seconds: float = 60.0
    drain_deadline_seconds: float = 300.0
    postgres_port: int = 5432
    out: Path = Path("build/soak")
    plot: bool = True

    @property
    def seconds(self) -> float:
        """The run's length before the final drain, s."""
        return self.minutes * 60


@dataclasses.dataclass
class FaultWindow:
    """One fault: when it was switched on and off (s since the start) and how the lag came back."""

    name: str
    start: float
    end: float
    lag_max_seconds: float = 0.0
    lag_after_seconds: float | None = None
    recovered_after_seconds: float | None = None


@dataclasses.dataclass
class SoakResult:
    """Everything the report holds; ``failures`` empty means the soak passed."""

    settings: dict[str, Any]
    samples: list[dict[str, float | str]]
    faults: list[FaultWindow]
    checks: list[dict[str, Any]]
    verification: dict[str, Any]
    summary: dict[str, Any]

    @property
    def failures(self) -> list[str]:
        """The checks that failed, one line each."""
        return [f"{check['name']}: {check['detail']}" for check in self.checks if not check["ok"]]


def clean_env() -> dict[str, str]:
    """The environment without proxies: the Tea SDK sends even loopback requests through them."""
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("MALLOC_ARENA_MAX", "2")  # as the systemd unit, the image and the manifests set it
    return env


def free_port() -> int:
    """A port free right now on loopback (the daemons' HTTP and push listeners; 9464 may be taken)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- /proc ----------------------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """Live child processes of ``pid`` (a token fetch in progress, a sink's writer)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                found += [int(child) for child in children.read().split()]
    return found


def status_fields(pid: int) -> dict[str, int]:
    """VmRSS (KiB) and Threads of a process."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "Threads"):
                found[key] = int(value.split()[0])
    return found


def family_rss_mb(pid: int) -> float:
    """RSS of a process and of its live children, MiB."""
    total = status_fields(pid).get("VmRSS", 0)
    for child in children_of(pid):
        with contextlib.suppress(OSError):
            total += status_fields(child).get("VmRSS", 0)
    return total / 1024


# -- the processes --------------------------------------------------------------------------------


class EmulatorProcess:
    """The emulator in its own process, driven over its admin endpoint."""

    def __init__(self, folder: Path) -> None:
        queue_args = [arg for t in SEEDED_SHARES for arg in ("--queue", f"{t}=Alicom-Queue-i1-{t}")]
        self._stderr = (folder / "emulator.stderr").open("wb")
        self.process = subprocess.Popen(  # noqa: S603  (our own interpreter and module)
            [sys.executable, "-m", "mns_consumer", "emulator", "--listen", "127.0.0.1:0", "--json", *queue_args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=clean_env(),
        )
        assert self.process.stdout is not None
        self.described: dict[str, Any] = json.loads(self.process.stdout.readline())
        self.admin = httpx.Client(base_url=self.described["admin_url"] + "/", trust_env=False, timeout=60)
        self.queues: dict[str, str] = self.described["queues"]

    def close(self) -> None:
        """Stop the emulator and release its pipes."""
        self.admin.close()
        self.process.terminate()
        self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()

    def post(self, route: str, payload: dict[str, Any]) -> None:
        self.admin.post(route, json=payload).raise_for_status()

    def delete(self, route: str) -> None:
        self.admin.delete(route).raise_for_status()

    def deleted_since_last(self) -> int:
        """Messages deleted from every queue since the previous call (the deletion log is cleared)."""
        total = 0
        for name in self.queues.values():
            reply = self.admin.get("deletions", params={"queue": name, "clear": "1"})
            total += len(reply.raise_for_status().json()["deletions"])
        return total

    def remaining(self) -> int:
        """Messages still in the queues: visible, in flight and delayed."""
        queues = self.admin.get("state").raise_for_status().json()["queues"]
        return sum(q["active"] + q["inactive"] + q["delayed"] for q in queues.values())


class DaemonProcess:
    """One ``mns-consumer run``; it can be killed and started again on the same configuration."""

    def __init__(self, config: dict[str, Any], folder: Path, label: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.label = label
        self.log_path = folder / "daemon.log"
        self.config_path = folder / "config.yaml"
        self.config_path.write_text(
            yaml.safe_dump({**config, "logging": {"format": "json", "file": str(self.log_path)}})
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, ready_deadline_seconds: float = 120.0) -> None:
        """Start and wait for a new ``daemon.ready`` line."""
        readies = self._count('"daemon.ready"')
        with (self.folder / f"stderr-{self.starts + 1}.txt").open("wb") as stderr:
            self.process = subprocess.Popen(  # noqa: S603  (our own interpreter and module)
                [sys.executable, "-m", "mns_consumer", "run", "--config", str(self.config_path)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=clean_env(),
                cwd=self.folder,
            )
        self.starts += 1
        deadline = time.monotonic() + ready_deadline_seconds
        while self._count('"daemon.ready"') <= readies:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited {self.process.returncode} before ready; see {self.folder}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.label} not ready within {ready_deadline_seconds:g} s; see {self.folder}")
            time.sleep(0.1)

    def _count(self, needle: str) -> int:
        if not self.log_path.exists():
            return 0
        return self.log_path.read_text(encoding="utf-8", errors="replace").count(needle)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self, deadline_seconds: float = 120.0) -> int:
        """SIGTERM and the exit code (SIGKILL after the deadline, reported as -9)."""
        assert self.process is not None
        if self.process.poll() is not None:
            return self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=deadline_seconds)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9


# -- traffic --------------------------------------------------------------------------------------


class Seeder:
    """Sends receipts over the MNS API at a steady rate and remembers every dedupe key it sent."""

    def __init__(self, emulator: EmulatorProcess, rate_per_second: float, stop: threading.Event) -> None:
        self.emulator = emulator
        self.rate = rate_per_second
        self.stop = stop
        self.keys: set[str] = set()
        self.sent = 0
        self.retries = 0
        self.errors: list[str] = []
        self._factory = ReceiptFactory(Clock(), 11)

    def run(self) -> None:
        """Seed until ``stop``; an unexpected error is kept (and fails the soak) rather than lost with the thread."""
        try:
            self._run()
        except Exception as error:  # noqa: BLE001  (reported by the checks)
            self.errors.append(f"seeder: {type(error).__name__}: {error}")

    def _run(self) -> None:
        key_id, secret = self.emulator.described["access_key_id"], self.emulator.described["access_key_secret"]
        account = Account(self.emulator.described["mns_endpoint"], key_id, secret)
        queues = {t: account.get_queue(self.emulator.queues[t]) for t in SEEDED_SHARES}
        for queue in queues.values():
            queue.set_encoding(False)
        began = time.monotonic()
        due = {t: 0.0 for t in SEEDED_SHARES}
        try:
            while not self.stop.wait(0.1):
                elapsed = time.monotonic() - began
                for message_type, share in SEEDED_SHARES.items():
                    count = int(elapsed * self.rate * share - due[message_type])
                    for start in range(0, count, 16):
                        if self.stop.is_set():
                            return
                        size = min(16, count - start)
                        self._send(queues[message_type], message_type, size)
                        due[message_type] += size
        finally:
            account.mns_client.close_connection()

    def _send(self, queue: Any, message_type: str, count: int) -> None:
        """One BatchSendMessage, retried until it goes through (a resend after a lost answer is a duplicate,
        which MNS allows and the sink absorbs)."""
        queue_name = self.emulator.queues[message_type]
        bodies = [encode_body(item.receipt) for item in self._factory.make_many(message_type, count)]
        for body in bodies:
            self.keys.add(decode_mns_body(message_type, body, queue=queue_name).dedupe_key)
        while True:
            try:
                queue.batch_send_message([Message(body) for body in bodies])
                self.sent += count
                return
            except (MNSServerException, MNSClientException):
                self.retries += 1
                if self.stop.wait(0.05):
                    return


class Pusher:
    """POSTs receipts to the watched daemon's push route once a second; remembers what was acknowledged."""

    def __init__(self, url: str, per_second: float, stop: threading.Event) -> None:
        self.url = url
        self.per_second = per_second
        self.stop = stop
        self.keys: set[str] = set()
        self.accepted = 0
        self.not_accepted = 0
        self.errors: list[str] = []
        self._factory = ReceiptFactory(Clock(), 23)

    def run(self) -> None:
        """Push until ``stop``; an unexpected error is kept (and fails the soak)."""
        try:
            self._run()
        except Exception as error:  # noqa: BLE001  (reported by the checks)
            self.errors.append(f"pusher: {type(error).__name__}: {error}")

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            receipts = [dict(item.receipt) for item in self._factory.make_many(PUSH_TYPE, int(self.per_second))]
            report = push_receipts(
                self.url,
                receipts,
                message_type=PUSH_TYPE,
                batch_size=50,
                retry_delays_seconds=(1.0, 2.0),
                stop=self.stop,
            )
            if report.accepted_receipts == len(receipts):
                decoded = decode_push(PUSH_TYPE, json.dumps(receipts).encode())
                self.keys.update(item.dedupe_key for item in decoded if not isinstance(item, Exception))
                self.accepted += len(receipts)
            else:
                # Partly acknowledged batches are not checked key by key: count them as not acknowledged.
                self.not_accepted += len(receipts)


# -- faults ---------------------------------------------------------------------------------------


class Faults:
    """Switches each fault on and off; the replica and the proxy belong to it for that reason."""

    def __init__(self, emulator: EmulatorProcess, proxy: TcpProxy, replica: DaemonProcess) -> None:
        self.emulator = emulator
        self.proxy = proxy
        self.replica = replica

    def switch_on(self, name: str) -> None:
        if name in ("mns_5xx", "dropped_connections"):
            rule: dict[str, Any] = (
                {"kind": "error", "status": 503, "code": "ServiceUnavailable", "probability": 0.5}
                if name == "mns_5xx"
                else {"kind": "drop", "probability": 0.3}
            )
            for operation in DAEMON_OPERATIONS:
                self.emulator.post("faults", {**rule, "service": "mns", "operation": operation})
        elif name == "429_storm":
            limits = {"throttle_probability": 0.3, "hold_seconds": 0.1, "max_received_not_deleted": 40}
            self.emulator.post("flow-limiter", limits)
        elif name == "token_expiry":
            self.emulator.post("tokens/expire", {})
        elif name == "sink_outage":
            self.proxy.stop()
        elif name == "replica_kill":
            self.replica.kill()

    def switch_off(self, name: str) -> None:
        if name in ("mns_5xx", "dropped_connections"):
            self.emulator.delete("faults")
        elif name == "429_storm":
            self.emulator.delete("flow-limiter")
        elif name == "token_expiry":
            self.emulator.post("tokens/expire", {})  # once more at the end: a refresh right after one
        elif name == "sink_outage":
            self.proxy.start()
        elif name == "replica_kill":
            self.replica.start()


def fault_schedule(seconds: float) -> list[FaultWindow]:
    """Six windows evenly spaced over 15-75% of the run, each 40% of its slot."""
    first, last = 0.15 * seconds, 0.75 * seconds
    slot = (last - first) / len(FAULTS)
    return [FaultWindow(name, first + i * slot, first + i * slot + 0.4 * slot) for i, name in enumerate(FAULTS)]


# -- sampling -------------------------------------------------------------------------------------


def scrape_lag(client: httpx.Client, metrics_url: str) -> float:
    """The largest oldest-message age over the daemon's MNS queues (push routes excluded), s."""
    text = client.get(metrics_url).raise_for_status().text
    ages = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == LAG_METRIC and not sample.labels.get("queue", "").startswith("push:")
    ]
    return max(ages, default=0.0)


def take_sample(
    began: float,
    daemon: DaemonProcess,
    replica: DaemonProcess,
    emulator: EmulatorProcess,
    client: httpx.Client,
    metrics_url: str,
    previous: dict[str, float],
) -> dict[str, float | str]:
    """One row: the watched daemon's RSS, FDs, threads and lag, and the deletions since the last row."""
    now = time.monotonic()
    deleted = emulator.deleted_since_last()
    interval = now - previous.get("at", began)
    previous["at"] = now
    fields = status_fields(daemon.pid)
    try:
        lag: float | str = scrape_lag(client, metrics_url)
    except httpx.HTTPError as error:
        lag = f"scrape failed: {type(error).__name__}"
    return {
        "t": now - began,
        "rss_mb": family_rss_mb(daemon.pid),
        "fds": float(len(os.listdir(f"/proc/{daemon.pid}/fd"))),
        "threads": float(fields["Threads"]),
        "lag_seconds": lag,
        "deleted_per_second": deleted / interval if interval > 0 else 0.0,
        "replica_rss_mb": family_rss_mb(replica.pid) if replica.alive() else 0.0,
        "load_1min": os.getloadavg()[0],
    }


# -- the run --------------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_table(settings: SoakSettings) -> Iterator[tuple[sa.Engine, str]]:
    """A direct engine on the shared server and a fresh table name, dropped afterwards."""
    engine = sa.create_engine(
        POSTGRES_URL.format(port=settings.postgres_port),
        poolclass=sa.pool.NullPool,
        connect_args={"connect_timeout": 3},
    )
    table = f"soak_{uuid.uuid4().hex[:12]}"
    try:
        yield engine, table
    finally:
        with contextlib.suppress(sa.exc.SQLAlchemyError), engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def daemon_config(emulator: EmulatorProcess, folder: Path, sink_url: str, table: str, push: bool) -> dict[str, Any]:
    """Both queues into one PostgreSQL sink; the watched daemon also serves the push route."""
    config: dict[str, Any] = dict(emulator_config(emulator.described, folder))
    config["queues"] = [{"message_type": t, "queue_name": q, "sinks": ["db"]} for t, q in emulator.queues.items()]
    config["sinks"] = {"db": {"type": "database", "url": sink_url, "table": table, "connect_timeout_seconds": 2}}
    config["http"] = {"listen": f"127.0.0.1:{free_port()}"}
    config["sink_retry_max_seconds"] = 5
    config["mns_retry_max_seconds"] = 5
    if push:
        config["push"] = {
            "listen": f"127.0.0.1:{free_port()}",
            "spool_path": str(folder / "spool.db"),
            "routes": [{"path": PUSH_PATH, "secret": PUSH_SECRET, "message_type": PUSH_TYPE, "sinks": ["db"]}],
        }
    return config


def wait_for(condition: Callable[[], bool], deadline_seconds: float) -> bool:
    """Poll ``condition`` once a second; False if it still fails after the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(1.0)
    return True


def run_soak(settings: SoakSettings, log: Callable[[str], None] = print) -> SoakResult:
    """Run the soak and judge it; the report files are written by :func:`write_report`."""
    settings.out = settings.out.resolve()  # the daemons run in their own folders
    settings.out.mkdir(parents=True, exist_ok=True)
    faults = fault_schedule(settings.seconds)
    samples: list[dict[str, float | str]] = []
    stop = threading.Event()
    with postgres_table(settings) as (engine, table), contextlib.ExitStack() as stack:
        proxy = TcpProxy("127.0.0.1", settings.postgres_port).start()
        stack.callback(proxy.stop)
        emulator = EmulatorProcess(settings.out)
        stack.callback(emulator.close)
        sink_url = POSTGRES_URL.format(port=proxy.port)
        watched = DaemonProcess(
            daemon_config(emulator, settings.out / "daemon", sink_url, table, True), settings.out / "daemon", "daemon"
        )
        replica = DaemonProcess(
            daemon_config(emulator, settings.out / "replica", sink_url, table, False),
            settings.out / "replica",
            "replica",
        )
        stack.callback(replica.kill)
        stack.callback(watched.kill)
        watched.start()
        replica.start()
        config = yaml.safe_load(watched.config_path.read_text())
        metrics_url = f"http://{config['http']['listen']}/metrics"
        push_url = f"http://{config['push']['listen']}{PUSH_PATH}/{PUSH_SECRET}"
        seeder = Seeder(emulator, settings.rate_per_second, stop)
        pusher = Pusher(push_url, settings.push_per_second, stop)
        threads = [threading.Thread(target=worker.run, name=type(worker).__name__) for worker in (seeder, pusher)]
        for thread in threads:
            thread.start()
        client = stack.enter_context(httpx.Client(trust_env=False, timeout=10))
        try:
            drive(
                settings, faults, Faults(emulator, proxy, replica), watched, emulator, client, metrics_url, samples, log
            )
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
        verification = drain_and_verify(settings, emulator, watched, replica, engine, table, seeder, pusher, log)
    checks = judge(settings, samples, faults, verification)
    summary = summarise(settings, samples, faults, seeder, pusher)
    return SoakResult(
        dataclasses.asdict(settings) | {"out": str(settings.out)}, samples, faults, checks, verification, summary
    )


def drive(
    settings: SoakSettings,
    faults: list[FaultWindow],
    switch: Faults,
    watched: DaemonProcess,
    emulator: EmulatorProcess,
    client: httpx.Client,
    metrics_url: str,
    samples: list[dict[str, float | str]],
    log: Callable[[str], None],
) -> None:
    """Sample every ``sample_seconds`` until the run's length, switching faults on and off on schedule."""
    began, previous = time.monotonic(), dict[str, float]()
    pending = list(faults)
    active: list[FaultWindow] = []
    try:
        while (elapsed := time.monotonic() - began) < settings.seconds:
            for window in [w for w in pending if w.start <= elapsed]:
                log(f"{elapsed:7.1f} s  fault on: {window.name}")
                switch.switch_on(window.name)
                pending.remove(window)
                active.append(window)
            for window in [w for w in active if w.end <= elapsed]:
                log(f"{elapsed:7.1f} s  fault off: {window.name}")
                switch.switch_off(window.name)
                active.remove(window)
            if not watched.alive():
                code = watched.process.returncode if watched.process else None
                raise RuntimeError(f"the watched daemon exited {code}; see {watched.folder}")
            sample = take_sample(began, watched, switch.replica, emulator, client, metrics_url, previous)
            samples.append(sample)
            if len(samples) % max(1, int(60 / settings.sample_seconds)) == 0:
                log(
                    f"{sample['t']:7.1f} s  rss {sample['rss_mb']:.1f} MiB, fds {sample['fds']:.0f},"
                    f" threads {sample['threads']:.0f}, lag {sample['lag_seconds']},"
                    f" {sample['deleted_per_second']:.0f} deleted/s"
                )
            next_at = began + len(samples) * settings.sample_seconds
            time.sleep(max(0.05, min(next_at - time.monotonic(), settings.sample_seconds)))
    finally:
        for window in active:
            switch.switch_off(window.name)


def drain_and_verify(
    settings: SoakSettings,
    emulator: EmulatorProcess,
    watched: DaemonProcess,
    replica: DaemonProcess,
    engine: sa.Engine,
    table: str,
    seeder: Seeder,
    pusher: Pusher,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Let the daemons empty the queues and the spool, stop them, and compare PostgreSQL with what was sent."""
    expected = seeder.keys | pusher.keys

    def stored_count() -> int:
        with engine.connect() as connection:
            return int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608

    drained = wait_for(
        lambda: emulator.remaining() == 0 and stored_count() >= len(expected), settings.drain_deadline_seconds
    )
    log(f"drained: {drained}; stopping the daemons")
    exit_codes = {"daemon": watched.stop(), "replica": replica.stop()}
    with engine.connect() as connection:
        rows = connection.execute(sa.text(f"SELECT dedupe_key, count(*) FROM {table} GROUP BY dedupe_key")).all()  # noqa: S608
    stored = {str(key): int(count) for key, count in rows}
    letters = 0
    for folder in (watched.folder, replica.folder):
        path = folder / "dead-letter.jsonl"
        letters += len(path.read_text().splitlines()) if path.exists() else 0
    return {
        "drained": drained,
        "exit_codes": exit_codes,
        "seeded": seeder.sent,
        "seeded_unique_keys": len(seeder.keys),
        "seed_retries": seeder.retries,
        "pushed_acknowledged": pusher.accepted,
        "pushed_not_acknowledged": pusher.not_accepted,
        "expected": len(expected),
        "stored": len(stored),
        "missing": len(expected - stored.keys()),
        # A push the client gave up on may still have been spooled and stored: only judged when none was.
        "unexpected": len(stored.keys() - expected) if not pusher.not_accepted else 0,
        "traffic_errors": seeder.errors + pusher.errors,
        "doubled": sum(1 for count in stored.values() if count > 1),
        "dead_letters": letters,
        "watched_daemon_starts": watched.starts,
        "replica_starts": replica.starts,
    }


# -- judging and reporting ------------------------------------------------------------------------


def numeric(samples: list[dict[str, float | str]], key: str) -> list[float]:
    """The values of one series, skipping samples where it failed (a scrape refused during a fault)."""
    return [float(s[key]) for s in samples if isinstance(s[key], float)]


KEEPER_POOL_PER_QUEUE = KEEPER_CONNECTIONS
"""Threads (or descriptors) one queue may keep after a slow sink: its visibility keeper's workers, each
with a connection. Extra receivers a backlog started retire once it is drained, so they count for nothing."""


def phase(samples: list[dict[str, float | str]], start: float, end: float) -> list[dict[str, float | str]]:
    """The samples taken in [start, end) s."""
    return [s for s in samples if start <= float(s["t"]) < end]


def judge(
    settings: SoakSettings,
    samples: list[dict[str, float | str]],
    faults: list[FaultWindow],
    verification: dict[str, Any],
) -> list[dict[str, Any]]:
    """Every bound as a check: name, ok, detail."""
    seconds = settings.seconds
    baseline = phase(samples, 0.10 * seconds, 0.15 * seconds)
    tail = phase(samples, 0.80 * seconds, seconds + 1)
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"name": name, "ok": bool(ok), "detail": detail})

    if not baseline or not tail:
        check("samples", False, f"{len(baseline)} baseline and {len(tail)} tail samples: too few")
        return checks
    base_rss, end_rss = statistics.median(numeric(baseline, "rss_mb")), statistics.median(numeric(tail, "rss_mb"))
    allowed = max(settings.rss_bound_mb, settings.rss_bound_ratio * base_rss)
    check(
        "rss",
        end_rss - base_rss <= allowed,
        f"baseline {base_rss:.1f} MiB, end {end_rss:.1f} MiB, growth {end_rss - base_rss:+.1f} (bound +{allowed:.1f})",
    )
    # A slow sink starts each queue's visibility keeper, whose workers and connections stay for the next
    # one (a bounded pool, not a leak), so the bound allows that pool and nothing more. A leak also keeps
    # growing through the quiet tail, which the second check catches.
    pool = KEEPER_POOL_PER_QUEUE * len(SEEDED_SHARES)
    quiet = phase(samples, 0.75 * seconds, 0.80 * seconds)
    for key, slack in (("fds", settings.fd_slack), ("threads", settings.thread_slack)):
        base, end = statistics.median(numeric(baseline, key)), statistics.median(numeric(tail, key))
        check(
            key,
            end - base <= slack + pool and base - end <= slack,
            f"baseline {base:.0f}, end {end:.0f} (bound -{slack} .. +{slack} + {pool} for the visibility keepers)",
        )
        if quiet:
            settled = statistics.median(numeric(quiet, key))
            check(
                f"{key} in the quiet tail",
                end - settled <= slack,
                f"{settled:.0f} as the faults ended, {end:.0f} at the end (bound +{slack})",
            )
    for index, window in enumerate(faults):
        next_start = faults[index + 1].start if index + 1 < len(faults) else seconds + 1
        # Until the next window opens, and at least lag_recovery_seconds: in a compressed run the
        # windows come faster than a backlog can drain, without anything being wrong.
        deadline = window.end + max(settings.lag_recovery_seconds, next_start - window.end)
        window.lag_max_seconds = max(numeric(phase(samples, window.start, next_start), "lag_seconds"), default=0.0)
        after = [s for s in phase(samples, window.end, deadline) if isinstance(s["lag_seconds"], float)]
        recovered = [s for s in after if float(s["lag_seconds"]) < settings.lag_bound_seconds]
        window.recovered_after_seconds = float(recovered[0]["t"]) - window.end if recovered else None
        until_next = numeric(phase(samples, window.end, next_start), "lag_seconds")
        window.lag_after_seconds = until_next[-1] if until_next else None
        check(
            f"lag after {window.name}",
            bool(recovered),
            f"max {window.lag_max_seconds:.1f} s; under {settings.lag_bound_seconds:g} s "
            + (
                f"{window.recovered_after_seconds:.1f} s after the fault cleared"
                if recovered
                else f"not within {deadline - window.end:.0f} s of the fault clearing"
            ),
        )
    v = verification
    check(
        "drained",
        v["drained"],
        "queues empty and every expected receipt stored" if v["drained"] else "not within the deadline",
    )
    check("nothing lost", v["missing"] == 0, f"{v['missing']} of {v['expected']} expected receipts missing")
    check("nothing doubled", v["doubled"] == 0, f"{v['doubled']} dedupe keys stored more than once")
    check("nothing unexpected", v["unexpected"] == 0, f"{v['unexpected']} stored receipts nobody sent")
    check(
        "traffic kept flowing", not v["traffic_errors"], "; ".join(v["traffic_errors"]) or "no seeder or pusher error"
    )
    check("no dead letters", v["dead_letters"] == 0, f"{v['dead_letters']} dead letters")
    check("clean exits", v["exit_codes"] == {"daemon": 0, "replica": 0}, f"exit codes {v['exit_codes']}")
    check(
        "watched daemon never restarted", v["watched_daemon_starts"] == 1, f"started {v['watched_daemon_starts']} times"
    )
    return checks


def summarise(
    settings: SoakSettings,
    samples: list[dict[str, float | str]],
    faults: list[FaultWindow],
    seeder: Seeder,
    pusher: Pusher,
) -> dict[str, Any]:
    """The headline figures of the report: RSS, FDs, threads, throughput, faults survived."""
    rss = numeric(samples, "rss_mb")
    post_warmup = phase(samples, 0.10 * settings.seconds, settings.seconds + 1)
    throughput = numeric(post_warmup, "deleted_per_second")
    return {
        "rss_mb": {
            "start": rss[0],
            "baseline_median": statistics.median(
                numeric(phase(samples, 0.10 * settings.seconds, 0.15 * settings.seconds), "rss_mb")
            )
            if rss
            else 0.0,
            "end": rss[-1],
            "max": max(rss),
        },
        "fds": {
            "start": numeric(samples, "fds")[0],
            "end": numeric(samples, "fds")[-1],
            "max": max(numeric(samples, "fds")),
        },
        "threads": {
            "start": numeric(samples, "threads")[0],
            "end": numeric(samples, "threads")[-1],
            "max": max(numeric(samples, "threads")),
        },
        "throughput_per_second": {
            "median": statistics.median(throughput),
            "max": max(throughput),
            "offered": settings.rate_per_second + settings.push_per_second,
        },
        "seeded": seeder.sent,
        "pushed": pusher.accepted,
        "faults_survived": sum(1 for f in faults if f.recovered_after_seconds is not None),
        "faults": len(faults),
        "samples": len(samples),
    }


def write_report(result: SoakResult, out: Path, plot: bool = True) -> list[Path]:
    """soak.json, soak.md and (matplotlib permitting) soak.png; returns the paths written."""
    written = [out / "soak.json", out / "soak.md"]
    payload = {
        "settings": result.settings,
        "summary": result.summary,
        "verification": result.verification,
        "faults": [dataclasses.asdict(f) for f in result.faults],
        "checks": result.checks,
        "passed": not result.failures,
        "samples": result.samples,
    }
    written[0].write_text(json.dumps(payload, indent=1, default=str))
    written[1].write_text(markdown(result))
    if plot:
        try:
            path = plot_png(result, out / "soak.png")
        except ImportError:
            pass
        else:
            written.append(path)
    return written


def markdown(result: SoakResult) -> str:
    """The report as markdown: headline figures, one row per fault, one row per check."""
    s, v = result.summary, result.verification
    lines = [
        f"# Soak: {result.settings['minutes']:g} minutes, {'PASSED' if not result.failures else 'FAILED'}",
        "",
        f"- Traffic: {s['seeded']} receipts seeded over MNS, {s['pushed']} pushed and acknowledged; throughput after"
        f" warm-up median {s['throughput_per_second']['median']:.0f}/s, max {s['throughput_per_second']['max']:.0f}/s"
        f" (offered {s['throughput_per_second']['offered']:.0f}/s)",
        f"- RSS (daemon + children): start {s['rss_mb']['start']:.1f} MiB,"
        f" baseline {s['rss_mb']['baseline_median']:.1f}, end {s['rss_mb']['end']:.1f}, max {s['rss_mb']['max']:.1f}",
        f"- File descriptors: start {s['fds']['start']:.0f}, end {s['fds']['end']:.0f}, max {s['fds']['max']:.0f};"
        f" threads: start {s['threads']['start']:.0f}, end {s['threads']['end']:.0f}, max {s['threads']['max']:.0f}",
        f"- Faults survived: {s['faults_survived']} of {s['faults']}",
        f"- Verification: expected {v['expected']}, stored {v['stored']}, missing {v['missing']},"
        f" doubled {v['doubled']}, dead letters {v['dead_letters']}, exit codes {v['exit_codes']}",
        "",
        "| fault | window (s) | lag max (s) | back under bound after (s) |",
        "|---|---|---|---|",
    ]
    for f in result.faults:
        recovered = f"{f.recovered_after_seconds:.1f}" if f.recovered_after_seconds is not None else "never"
        lines.append(f"| {f.name} | {f.start:.0f}-{f.end:.0f} | {f.lag_max_seconds:.1f} | {recovered} |")
    lines += ["", "| check | ok | detail |", "|---|---|---|"]
    lines += [f"| {c['name']} | {'yes' if c['ok'] else 'NO'} | {c['detail']} |" for c in result.checks]
    return "\n".join(lines) + "\n"


def plot_png(result: SoakResult, path: Path) -> Path:
    """Memory, lag and throughput over time, fault windows shaded and named."""
    import matplotlib  # optional: the `soak` dependency group

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import blended_transform_factory

    minutes = [float(s["t"]) / 60 for s in result.samples]
    figure, axes = plt.subplots(3, 1, sharex=True, figsize=(10, 7.5), dpi=90)
    series = (
        ("rss_mb", "RSS, MiB (daemon + children)", "tab:blue"),
        ("lag_seconds", "lag, s (oldest message age)", "tab:red"),
        ("deleted_per_second", "deleted per second", "tab:green"),
    )
    for axis, (key, label, colour) in zip(axes, series, strict=True):
        points = [(m, float(s[key])) for m, s in zip(minutes, result.samples, strict=True) if isinstance(s[key], float)]
        axis.plot([p[0] for p in points], [p[1] for p in points], color=colour, linewidth=1)
        axis.set_ylabel(label, fontsize=9)
        axis.grid(alpha=0.3)
        for window in result.faults:
            axis.axvspan(window.start / 60, window.end / 60, color="orange", alpha=0.2)
    if result.samples and "replica_rss_mb" in result.samples[0]:
        replica = [(m, float(s["replica_rss_mb"])) for m, s in zip(minutes, result.samples, strict=True)]
        axes[0].plot([p[0] for p in replica], [p[1] for p in replica], color="tab:gray", linewidth=0.8, label="replica")
        axes[0].legend(loc="lower right", fontsize=8)
    axes[1].axhline(result.settings["lag_bound_seconds"], color="black", linestyle="--", linewidth=0.8)
    labels_at = blended_transform_factory(axes[0].transData, axes[0].transAxes)
    for index, window in enumerate(result.faults):
        axes[0].text(
            (window.start + window.end) / 120,
            1.02 + 0.1 * (index % 2),  # staggered, so neighbouring names never overlap
            window.name,
            transform=labels_at,
            fontsize=7,
            ha="center",
            va="bottom",
        )
    axes[-1].set_xlabel("minutes")
    figure.suptitle(f"mns-consumer soak, {result.settings['minutes']:g} min (fault windows shaded)", fontsize=11)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def main() -> None:
    """``make soak``: run, write the report, exit 1 if any bound was broken."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_minutes = float(os.environ.get("SOAK_MINUTES", "30"))
    parser.add_argument(
        "--minutes", type=float, default=default_minutes, help="length before the final drain (SOAK_MINUTES)"
    )
    parser.add_argument("--rate", type=float, default=200.0, help="receipts seeded a second over MNS")
    parser.add_argument("--push-rate", type=float, default=10.0, help="receipts pushed a second")
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--rss-bound-mb", type=float, default=20.0)
    parser.add_argument("--rss-bound-ratio", type=float, default=0.25)
    parser.add_argument("--fd-slack", type=int, default=5)
    parser.add_argument("--thread-slack", type=int, default=3)
    parser.add_argument("--lag-bound-seconds", type=float, default=10.0)
    parser.add_argument(
        "--lag-recovery-seconds",
        type=float,
        default=60.0,
        help="lag must fall under the bound within this long after a fault, or before the next one if later",
    )
    parser.add_argument("--out", type=Path, default=Path("build/soak"))
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args()
    settings = SoakSettings(
        minutes=args.minutes,
        rate_per_second=args.rate,
        push_per_second=args.push_rate,
        sample_seconds=args.sample_seconds,
        rss_bound_mb=args.rss_bound_mb,
        rss_bound_ratio=args.rss_bound_ratio,
        fd_slack=args.fd_slack,
        thread_slack=args.thread_slack,
        lag_bound_seconds=args.lag_bound_seconds,
        lag_recovery_seconds=args.lag_recovery_seconds,
        out=args.out,
        plot=not args.no_plot,
    )
    result = run_soak(settings, log=lambda line: print(line, flush=True))
    for path in write_report(result, settings.out, plot=settings.plot):
        print(f"wrote {path}")
    print(markdown(result))
    sys.exit(1 if result.failures else 0)


if __name__ == "__main__":
    main()
