"""Replicas side by side: how a fixed backlog drains with 1, 2 and 3 daemons on separate "hosts".

Each replica is ``mns-consumer run`` in its own network namespace with its own address, on a bridge
whose address holds the emulator (its own process, ``python -m mns_consumer emulator``, answering every
MNS call ``--latency-ms`` late with a ``latency`` fault) and a forwarder to the machine's PostgreSQL
(or MariaDB), which listens on 127.0.0.1 only (:mod:`tests.support.replica_network`, needs root). All
replicas consume the one SmsReport queue into one table. (The latency is the emulator's, not ``tc
netem`` on the veths: these machines' kernels have no sch_netem.)

A row starts its replicas on an empty queue and waits until every one of them logged ``daemon.ready``
(their long polls are then waiting), then seeds the backlog over the admin endpoint. Its window runs
from the first receive that handed out a message (admin ``state``, ``first_received_ms``) to the last
delete in the emulator's deletion log, both on the emulator's clock: start-up stays outside it, and
so does nothing of the drain. Every row gets a fresh emulator and a fresh table; a round runs the three
rows in turn, and with ``--repeat N`` a row shows its median run and a ratio is the median of the
ratios taken within a round, since the machine's speed drifts.

Besides receipts/s, each row shows each replica's share of the deletes and its receipts per receive
(its ``/metrics``, scraped on its own address: ``mns_consumer_receipts_received_total`` over the count
of ``mns_consumer_receive_seconds``), the emulator's CPU seconds, the table's row count (must be the
backlog) and the 1-minute load average. Run with::

    .venv/bin/python bench/replicas_bench.py [--messages 15000] [--latency-ms 20] [--repeat 1] [--database postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon_bench import DRAIN_POLL_SECONDS, QUEUE, QUEUE_TYPE, EmulatorProcess, clean_env, cpu_seconds

from mns_consumer.emulator.consumer_config import emulator_config  # what `emulator --print-config` prints
from tests.support.replica_network import BoundTcpProxy, NetworkUnavailable, ReplicaNetwork

METRICS_PORT = 9464
"""Each replica's metrics port, on its own address: every namespace has its own ports, as hosts do."""
DATABASES = {
    "postgresql": ("postgresql+psycopg", "postgres", 5432),
    "mariadb": ("mysql+pymysql", "root", 3306),
}
"""--database -> (driver URL scheme, user, port on 127.0.0.1); database ``test``, no password."""


def emulator_on(host: str, latency_seconds: float, folder: Path) -> EmulatorProcess:
    """The emulator in its own process on the bridge address, every MNS call ``latency_seconds`` late."""
    folder.mkdir(parents=True, exist_ok=True)
    emulator = EmulatorProcess((QUEUE_TYPE,), host=host, stderr=folder / "emulator.stderr")
    try:
        emulator.add_latency(latency_seconds)
    except BaseException:
        emulator.close()
        raise
    return emulator


class ReplicaProcess:
    """One ``mns-consumer run`` inside replica ``index``'s namespace, logging to a file."""

    def __init__(self, network: ReplicaNetwork, index: int, config: dict[str, Any], folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.address = network.addresses[index]
        self.log_path = folder / "daemon.log"
        config = {
            **config,
            "logging": {"level": "info", "file": str(self.log_path)},
            "dead_letter": {"type": "file", "path": str(folder / "dead-letter.jsonl")},
            "http": {"listen": f"{self.address}:{METRICS_PORT}"},
        }
        config_path = folder / "config.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        argv = [sys.executable, "-m", "mns_consumer", "run", "--config", str(config_path)]
        self.process = subprocess.Popen(  # noqa: S603  (our own interpreter and module, in the namespace)
            network.command(index, argv), env=clean_env(), cwd=folder, stderr=subprocess.PIPE, text=True
        )

    def wait_ready(self, timeout_seconds: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"replica exited {self.process.returncode}: {self.process.stderr.read()}")  # type: ignore[union-attr]
            if self.log_path.exists() and '"daemon.ready"' in self.log_path.read_text():
                return
            time.sleep(0.05)
        raise RuntimeError(f"replica not ready within {timeout_seconds:g} s")

    def receipts_per_receive(self) -> float:
        """Receipts received over receives made (empty ones included), from the replica's /metrics."""
        text = httpx.get(f"http://{self.address}:{METRICS_PORT}/metrics", trust_env=False, timeout=10).text
        received = receives = 0.0
        for line in text.splitlines():
            if line.startswith("mns_consumer_receipts_received_total{"):
                received += float(line.rsplit(" ", 1)[1])
            elif line.startswith("mns_consumer_receive_seconds_count{"):
                receives += float(line.rsplit(" ", 1)[1])
        return received / receives if receives else 0.0

    def stop(self) -> dict[str, Any]:
        """SIGTERM, and the ``daemon.stopped`` line (counts at exit)."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        if code != 0:
            raise RuntimeError(f"replica exited {code}: {self.process.stderr.read()}")  # type: ignore[union-attr]
        for line in reversed(self.log_path.read_text().splitlines()):
            if '"daemon.stopped"' in line:
                return dict(json.loads(line))
        raise RuntimeError("no daemon.stopped line")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


def drain_row(
    network: ReplicaNetwork, database_url: str, admin: sa.Engine, replicas: int, args: argparse.Namespace, folder: Path
) -> dict[str, Any]:
    """Start ``replicas`` daemons on an empty queue, seed the backlog, and time its drain."""
    table = f"receipts_bench_{uuid.uuid4().hex[:10]}"
    emulator = emulator_on(network.server_address, args.latency_ms / 1000, folder / f"{replicas}x-emulator")
    started: list[ReplicaProcess] = []
    try:
        config = emulator_config(emulator.described, folder)
        config["queues"] = [{"message_type": QUEUE_TYPE, "queue_name": QUEUE, "sinks": ["db"]}]
        config["sinks"] = {"db": {"type": "database", "url": database_url, "table": table}}
        for index in range(replicas):
            started.append(ReplicaProcess(network, index, config, folder / f"{replicas}x-replica-{index}"))
        for replica in started:
            replica.wait_ready()
        load = os.getloadavg()[0]
        seeding = time.perf_counter()
        emulator.seed(QUEUE_TYPE, args.messages)
        seeding = time.perf_counter() - seeding
        cpu_emulator = cpu_seconds(emulator.pid)
        while emulator.remaining() != (0, 0):
            time.sleep(DRAIN_POLL_SECONDS)
        cpu_emulator = cpu_seconds(emulator.pid) - cpu_emulator
        seconds = emulator.drain_seconds([QUEUE])
        per_receive = [replica.receipts_per_receive() for replica in started]
        deleted = [int(replica.stop()["deleted"]) for replica in started]
        with admin.connect() as connection:
            rows = connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
        return {
            "replicas": replicas,
            "messages": args.messages,
            "seconds": round(seconds, 3),
            "receipts_per_second": round(args.messages / seconds, 1),
            "deleted_by_replica": deleted,
            "receipts_per_receive": [round(value, 2) for value in per_receive],
            "rows": int(rows),
            "emulator_cpu_seconds": round(cpu_emulator, 2),
            "seeding_seconds": round(seeding, 2),
            "load_1m": round(load, 2),
        }
    finally:
        for replica in started:
            replica.kill()
        emulator.close()
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=15000, help="backlog drained by every row")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="added to every MNS call by the emulator")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the three rows")
    parser.add_argument("--database", choices=sorted(DATABASES), default="postgresql")
    args = parser.parse_args()

    scheme, user, port = DATABASES[args.database]
    admin = sa.create_engine(f"{scheme}://{user}@127.0.0.1:{port}/test", poolclass=sa.pool.NullPool)
    try:
        network = ReplicaNetwork(3)
    except NetworkUnavailable as exc:
        print(f"replicas_bench: cannot make network namespaces: {exc}", file=sys.stderr)
        return 2
    forwarder = BoundTcpProxy(network.server_address, "127.0.0.1", port).start()
    database_url = f"{scheme}://{user}@{network.server_address}:{forwarder.port}/test"
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: [], 3: []}
    try:
        with tempfile.TemporaryDirectory(prefix="replicas-bench-") as scratch:
            for round_number in range(args.repeat):
                for replicas, rows in runs.items():
                    folder = Path(scratch) / f"round-{round_number}"
                    row = drain_row(network, database_url, admin, replicas, args, folder)
                    rows.append(row)
                    print(json.dumps({"round": round_number, **row}), flush=True)
    finally:
        forwarder.stop()
        network.close()
        admin.dispose()

    print(f"\n{args.messages} receipts, +{args.latency_ms:g} ms per MNS call, {args.database}, {args.repeat} round(s)")
    base = [row["receipts_per_second"] for row in runs[1]]
    summary: dict[str, Any] = {}
    for replicas, rows in runs.items():
        rate = statistics.median(row["receipts_per_second"] for row in rows)
        ratio = statistics.median(row["receipts_per_second"] / b for row, b in zip(rows, base, strict=True))
        median_row = min(rows, key=lambda row: abs(row["receipts_per_second"] - rate))
        shares = "/".join(str(n) for n in median_row["deleted_by_replica"])
        print(
            f"  {replicas} replica(s): {rate:8.1f} receipts/s   x{ratio:.2f} of 1 replica   "
            f"deleted per replica {shares}   receipts per receive {median_row['receipts_per_receive']}"
        )
        summary[f"replicas_{replicas}"] = {"receipts_per_second": rate, "ratio_to_one": round(ratio, 3)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
