"""Backlog catch-up: a seeded backlog drained into SQLite and PostgreSQL across a WAN, four consumers side by side.

Every row runs against a fresh emulator process with the WAN profile (``--latency-ms``, ``--jitter-ms``)
on MNS calls, over plain HTTP or TLS, and with the flow limiter on at its documented limits
(``--flow-limit``), so a consumer that holds too much or holds it too long gets the 429s it would get
from Alibaba. The consumers:

``daemon``
    ``mns-consumer run`` with its defaults (``max_receivers: 16``, ``max_in_flight_messages: 512``).
``daemon max_receivers=1``
    The same daemon with one receiver (the design before backlog catch-up: one long poll per queue).
``java-style puller``
    Built the way Alibaba's Java puller is (``MessageReceiver`` in aliyun-sms-java-sdk's samples): one
    thread batch-receiving 16 with the real ``aliyun-mns-sdk``, a pool of 16 workers, each storing its
    own message (one INSERT and COMMIT) and deleting it (DeleteMessage). With the master AccessKey,
    which costs the same per call as a queue token.
``demo loop``
    Alibaba's Python demo: ReceiveMessage, store, DeleteMessage, one message at a time (at most
    ``--demo-seconds``).

The daemon's window runs from the first receive that handed out a message (emulator admin state,
``first_received_ms``) to the last delete in the emulator's deletion log, as in ``bench/daemon_bench.py``:
start-up is excluded. The in-process consumers time themselves from their first call. The slower
baselines drain ``--baseline-messages`` rather than the whole backlog (their rate is steady; a
50,000-message drain at a few hundred a second would take minutes per row). CPU per receipt is the
consumer's CPU (the daemon's process and its children; the bench process for the in-process rows)
over the messages it took.

A last row drains the backlog with the flow limiter answering ``--throttle-probability`` (30 %) of
all calls with 429 and checks that nothing was lost or stored twice.

Run with::

    .venv/bin/python bench/backlog_bench.py [--messages 50000] [--latencies 20,50] [--protocols http,tls]
        [--sinks sqlite,postgresql] [--baseline-messages 5000] [--demo-seconds 15]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import queue as queue_module
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from mns.account import Account
from mns.mns_exception import MNSServerException

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import daemon_bench as base  # the emulator process, CPU accounting and drain timing

from mns_consumer.emulator.consumer_config import emulator_config
from mns_consumer.sinks.database import receipts_table

QUEUE_TYPE = "SmsReport"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGETS = {("sqlite", 50.0): 2500.0, ("postgresql", 50.0): 2000.0}
"""Receipts a second the daemon must reach at +50 ms per call, by sink."""


class WanEmulator(base.EmulatorProcess):
    """The emulator in its own process, with a WAN profile, optional TLS and the flow limiter on."""

    def __init__(self, latency_ms: float, jitter_ms: float, tls_dir: Path | None, throttle: float = 0.0) -> None:
        options = ["--latency-ms", str(latency_ms), "--jitter-ms", str(jitter_ms), "--flow-limit"]
        if throttle:
            options += ["--throttle-probability", str(throttle)]
        if tls_dir is not None:
            options += ["--tls", "--tls-dir", str(tls_dir)]
        super().__init__((QUEUE_TYPE,), *options, max_long_polls=16)

    def state(self) -> dict[str, Any]:
        return dict(self.admin.get("state").json())


# -- sinks as the in-process consumers use them ------------------------------------------------------


class RowStore:
    """One INSERT and COMMIT per message into the daemon's own table layout (thread-safe: one connection a thread)."""

    def __init__(self, url: str, table: str) -> None:
        self.engine = sa.create_engine(url, pool_size=20, connect_args={"timeout": 30} if "sqlite" in url else {})
        self.table = receipts_table(sa.MetaData(), table, backend=self.engine.dialect.name)
        self.table.create(self.engine, checkfirst=True)
        if "sqlite" in url:
            with self.engine.begin() as connection:
                connection.exec_driver_sql("PRAGMA journal_mode=WAL")

    def store(self, message_id: str, body: str) -> None:
        receipt = json.loads(base64.b64decode(body))
        row = {
            "dedupe_key": message_id, "kind": "delivery_report", "message_type": QUEUE_TYPE, "source": "mns",
            "queue": "bench", "phone_number": receipt.get("phone_number"), "biz_id": receipt.get("biz_id"),
            "out_id": receipt.get("out_id"), "status": "delivered" if receipt.get("success") else "failed",
            "raw": body.encode(), "extra": "{}",
        }  # fmt: skip
        with self.engine.begin() as connection:
            connection.execute(self.table.insert(), row)

    def count(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(self.table)).scalar_one())

    def drop(self) -> None:
        self.table.drop(self.engine, checkfirst=True)
        self.engine.dispose()


def account_of(emulator: WanEmulator) -> Account:
    if emulator.described["ca_file"]:
        # The MNS SDK builds HTTPS connections with Python's default context, which reads this.
        os.environ["SSL_CERT_FILE"] = str(emulator.described["ca_file"])
    key_id, secret = emulator.master_key()
    return Account(emulator.described["mns_endpoint"], key_id, secret)


def java_style_puller(emulator: WanEmulator, store: RowStore, count: int) -> dict[str, float]:
    """One receiving thread (BatchReceiveMessage 16), 16 workers each storing and deleting its own message."""
    name = emulator.queues[QUEUE_TYPE]
    handed: queue_module.Queue[Any] = queue_module.Queue(maxsize=16)
    done = [0]
    lock = threading.Lock()
    local = threading.local()

    def work() -> None:
        while (message := handed.get()) is not None:
            if not hasattr(local, "queue"):
                local.queue = account_of(emulator).get_queue(name)
                local.queue.set_encoding(False)
            store.store(message.message_id, message.message_body)
            local.queue.delete_message(message.receipt_handle)
            with lock:
                done[0] += 1

    receiver = account_of(emulator).get_queue(name)
    receiver.set_encoding(False)
    began, cpu_began = time.perf_counter(), time.process_time()
    received = 0
    with ThreadPoolExecutor(16) as pool:
        for _ in range(16):
            pool.submit(work)
        while received < count:
            try:
                batch = receiver.batch_receive_message(16, 1)
            except MNSServerException as exc:
                if exc.type in ("MessageNotExist", "TooManyRequests"):
                    continue
                raise
            for message in batch:
                handed.put(message)
            received += len(batch)
        for _ in range(16):
            handed.put(None)
    seconds = time.perf_counter() - began
    return {"messages": float(done[0]), "seconds": seconds, "consumer_cpu_seconds": time.process_time() - cpu_began}


def demo_loop(emulator: WanEmulator, store: RowStore, count: int, max_seconds: float) -> dict[str, float]:
    """Alibaba's demo: ReceiveMessage (3 s wait), store, DeleteMessage, one message at a time."""
    queue = account_of(emulator).get_queue(emulator.queues[QUEUE_TYPE])
    queue.set_encoding(False)
    done = 0
    began, cpu_began = time.perf_counter(), time.process_time()
    while done < count and time.perf_counter() - began < max_seconds:
        try:
            message = queue.receive_message(3)
        except MNSServerException as exc:
            if exc.type in ("MessageNotExist", "TooManyRequests"):
                continue
            raise
        store.store(message.message_id, message.message_body)
        queue.delete_message(message.receipt_handle)
        done += 1
    seconds = time.perf_counter() - began
    return {"messages": float(done), "seconds": seconds, "consumer_cpu_seconds": time.process_time() - cpu_began}


# -- the daemon ---------------------------------------------------------------------------------------


def daemon_row(
    emulator: WanEmulator, folder: Path, sink: dict[str, Any], count: int, queue_settings: dict[str, Any]
) -> dict[str, Any]:
    """Start the daemon on the seeded backlog, time its drain as the emulator recorded it, stop it."""
    folder.mkdir(parents=True, exist_ok=True)
    config = emulator_config(emulator.described, folder)
    config["queues"] = [
        {"message_type": QUEUE_TYPE, "queue_name": emulator.queues[QUEUE_TYPE], "sinks": ["db"], **queue_settings}
    ]
    config["sinks"] = {"db": sink}
    log_path = folder / "daemon.log"
    config["logging"] = {"level": "info", "file": str(log_path)}
    config["http"] = {"listen": f"127.0.0.1:{base.free_port()}"}
    config_path = folder / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    process = subprocess.Popen(  # noqa: S603  (our own interpreter and module)
        [sys.executable, "-m", "mns_consumer", "run", "--config", str(config_path)],
        env=base.clean_env(),
        cwd=folder,
        stderr=subprocess.PIPE,
        text=True,
    )
    daemon = _Daemon(process, log_path)
    try:
        daemon.wait_ready()
        row: dict[str, Any] = base.watch_drain(emulator, [emulator.queues[QUEUE_TYPE]], count, daemon, 0.02)  # type: ignore[arg-type]
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=120)
    events = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    stopped = [event for event in events if event.get("event") == "daemon.stopped"]
    row["exit_code"] = code
    row["summary"] = (
        {k: stopped[-1].get(k) for k in ("received", "deleted", "delete_failed", "throttled")} if stopped else {}
    )
    row["max_receivers"] = max(
        (event["receivers"] for event in events if event.get("event") == "receivers.changed"), default=1
    )
    return row


class _Daemon:
    """What ``watch_drain`` asks of a daemon: its CPU (with its children)."""

    def __init__(self, process: subprocess.Popen[str], log_path: Path) -> None:
        self.process, self.log_path, self.pid = process, log_path, process.pid

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited {self.process.returncode}: {self.process.stderr.read()}")  # type: ignore[union-attr]
            if self.log_path.exists() and '"daemon.ready"' in self.log_path.read_text():
                return
            time.sleep(0.05)
        raise RuntimeError("daemon not ready within 60 s")

    def cpu(self) -> float:
        return base.family_cpu_seconds(self.pid)


# -- the matrix ---------------------------------------------------------------------------------------


def sink_of(kind: str, folder: Path) -> tuple[dict[str, Any], str]:
    """The daemon's sink section and the SQLAlchemy URL the bench reads it back with."""
    if kind == "sqlite":
        path = folder / "receipts.db"
        return {"type": "database", "url": f"sqlite:///{path}"}, f"sqlite:///{path}"
    table = f"bench_{uuid.uuid4().hex[:10]}"
    return {"type": "database", "url": POSTGRES_URL, "table": table}, POSTGRES_URL


def stored_rows(url: str, table: str) -> tuple[int, int]:
    """(rows, distinct dedupe keys) of a sink table."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows, distinct = connection.execute(
                sa.text(f"SELECT count(*), count(DISTINCT dedupe_key) FROM {table}")  # noqa: S608
            ).one()
        return int(rows), int(distinct)
    finally:
        engine.dispose()


def drop_table(url: str, table: str) -> None:
    if url.startswith("sqlite"):
        return
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    engine.dispose()


def run_row(
    consumer: str, kind: str, latency_ms: float, protocol: str, args: argparse.Namespace, folder: Path
) -> dict[str, Any]:
    """One consumer, one sink, one network, against a fresh emulator."""
    folder.mkdir(parents=True, exist_ok=True)
    tls_dir = folder / "tls" if protocol == "tls" else None
    throttle = args.throttle_probability if consumer == "daemon 30% 429" else 0.0
    count = (
        args.messages if consumer.startswith("daemon") and "max_receivers" not in consumer else args.baseline_messages
    )
    load = os.getloadavg()[0]
    with WanEmulator(latency_ms, args.jitter_ms, tls_dir, throttle) as emulator:
        emulator.seed(QUEUE_TYPE, count)
        sink, url = sink_of(kind, folder)
        table = str(sink.get("table", "sms_receipts"))
        emulator_cpu = emulator.cpu()
        try:
            if consumer.startswith("daemon"):
                settings = {"max_receivers": 1} if "max_receivers" in consumer else json.loads(args.daemon_settings)
                row = daemon_row(emulator, folder / "daemon", sink, count, settings)
            else:
                store = RowStore(url, table)
                try:
                    if consumer == "java-style puller":
                        row = java_style_puller(emulator, store, count)
                    else:
                        row = demo_loop(emulator, store, count, args.demo_seconds)
                finally:
                    store.engine.dispose()
            row["emulator_cpu_seconds"] = emulator.cpu() - emulator_cpu
            state = emulator.state()
            queue_state = state["queues"][emulator.queues[QUEUE_TYPE]]
            refused = state["flow_limiter"]["refused"]
            row["refused_429"] = refused
            row["received_not_deleted_max"] = queue_state.get("received_not_deleted_max")
            row["rows"], row["distinct_rows"] = stored_rows(url, table)
            row["left_in_queue"] = queue_state["active"] + queue_state["inactive"] + queue_state["delayed"]
        finally:
            drop_table(url, table)
    row.update(consumer=consumer, sink=kind, latency_ms=latency_ms, protocol=protocol, load_average=load)
    row["messages_per_second"] = row["messages"] / row["seconds"] if row["seconds"] else 0.0
    row["cpu_ms_per_receipt"] = 1000 * row["consumer_cpu_seconds"] / max(1.0, row["messages"])
    return row


def describe(row: dict[str, Any]) -> str:
    flow = {rule: sum(ops.values()) for rule, ops in row["refused_429"].items()}
    return (
        f"{row['sink']:<10} +{row['latency_ms']:>4.0f} ms {row['protocol']:<4} {row['consumer']:<24}"
        f" {row['messages_per_second']:>7.0f} receipts/s  {row['cpu_ms_per_receipt']:.2f} ms CPU/receipt"
        f"  ({row['messages']:.0f} in {row['seconds']:.1f} s; held max {row['received_not_deleted_max']};"
        f" 429s {flow or 0}; rows {row['rows']}/{row['distinct_rows']} distinct; left {row['left_in_queue']};"
        f" load {row['load_average']:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50000, help="backlog drained by the daemon rows")
    parser.add_argument("--baseline-messages", type=int, default=5000, help="backlog of the slower baselines")
    parser.add_argument("--latencies", default="20,50", help="ms added to every MNS call, comma-separated")
    parser.add_argument("--jitter-ms", type=float, default=5.0, help="each call's latency varies by up to this")
    parser.add_argument("--protocols", default="http,tls", help="http, tls or both")
    parser.add_argument("--sinks", default="sqlite,postgresql", help="sqlite, postgresql or both")
    parser.add_argument(
        "--consumers",
        default="daemon,daemon max_receivers=1,java-style puller,demo loop",
        help="rows to run, comma-separated",
    )
    parser.add_argument(
        "--daemon-settings", default="{}", help="extra queues[] keys of the daemon row, as JSON (default: none)"
    )
    parser.add_argument("--demo-seconds", type=float, default=15.0, help="cap on each demo row, s")
    parser.add_argument("--throttle-probability", type=float, default=0.3, help="share of calls refused in the 429 row")
    parser.add_argument("--no-throttle-row", action="store_true", help="skip the 30 %% 429 row")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="backlog-bench-") as tmp:
        folder = Path(tmp)
        for kind in args.sinks.split(","):
            for latency in (float(x) for x in args.latencies.split(",")):
                for protocol in args.protocols.split(","):
                    for consumer in args.consumers.split(","):
                        where = folder / f"{kind}-{latency:g}-{protocol}-{consumer}".replace(" ", "_")
                        rows.append(run_row(consumer, kind, latency, protocol, args, where))
                        print(describe(rows[-1]), file=sys.stderr, flush=True)
        if not args.no_throttle_row:
            kind, latency = args.sinks.split(",")[0], float(args.latencies.split(",")[-1])
            rows.append(run_row("daemon 30% 429", kind, latency, "http", args, folder / "throttled"))
            print(describe(rows[-1]), file=sys.stderr, flush=True)
    print("\nTargets (daemon, defaults):")
    for row in rows:
        target = TARGETS.get((row["sink"], row["latency_ms"]))
        if row["consumer"] == "daemon" and target:
            verdict = "met" if row["messages_per_second"] >= target else "MISSED"
            print(f"  {row['sink']} +{row['latency_ms']:.0f} ms {row['protocol']}: "
                  f"{row['messages_per_second']:.0f}/s vs {target:.0f}/s {verdict}")  # fmt: skip
        if row["consumer"] == "daemon":
            abnormal = {r: n for r, n in row["refused_429"].items() if r.startswith("received_not_deleted")}
            print(f"    abnormal-consumption 429s: {abnormal or 0}")
        if row["consumer"] == "daemon 30% 429":
            ok = row["rows"] == row["distinct_rows"] == row["messages"] and row["left_in_queue"] == 0
            print(f"  30% 429: drained={row['left_in_queue'] == 0} lost_or_doubled={'no' if ok else 'YES'} "
                  f"received={row['summary'].get('received')} rows={row['rows']}")  # fmt: skip
    print(json.dumps({"arguments": vars(args), "rows": rows}))


if __name__ == "__main__":
    main()
