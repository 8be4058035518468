"""Sink write throughput: receipts per second for batches of 16 and 256, one process, each sink side by side.

Run with ``make bench`` or::

    .venv/bin/python bench/sink_bench.py [--receipts 20000] [--only file,sqlite]

``sqlite-ckpt1000`` is the SQLite sink with ``wal_autocheckpoint_pages: 1000`` (SQLite's own default)
beside the sink's default of 10000, to show what the larger checkpoints buy. Any database kind with
``-nostatus`` appended (``sqlite-nostatus``, ``postgresql-nostatus``) runs without the status and
opt-out tables, to show what they cost (every receipt here is a new message's delivery report).

Targets (issue 3): file >= 20,000/s with an fsync per batch of 256, SQLite >= 10,000/s,
PostgreSQL >= 5,000/s, webhook to a local receiver >= 2,000/s. Absolute figures drift on shared
machines; each line also prints its ratio to the target.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mns_consumer.sinks.base import Sink, parse_sink_config
from tests.support.receipts import make_receipt

TARGETS = {
    "file": 20000,
    "sqlite": 10000,
    "sqlite-ckpt1000": 10000,
    "sqlite-nostatus": 10000,
    "postgresql-nostatus": 5000,
    "mariadb-nostatus": 5000,
    "postgresql": 5000,
    "mariadb": 5000,
    "webhook": 2000,
    "s3": 0,
}

RECEIVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        # One write for head and body: two small writes stall on delayed ACKs (~40 ms per request).
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    def log_message(self, *a): pass
s = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
print("ready", flush=True)
s.serve_forever()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def webhook_receiver() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)], stdout=subprocess.PIPE, text=True)  # noqa: S603
    try:
        assert process.stdout is not None
        process.stdout.readline()
        yield f"http://127.0.0.1:{port}/receipts"
    finally:
        process.terminate()
        process.wait(timeout=10)


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def sink_under_test(kind: str, folder: Path) -> Iterator[Sink | None]:
    if kind.endswith("-nostatus"):
        with _sink_under_test(kind.removesuffix("-nostatus"), folder, status_table=False, opt_out_table=False) as sink:
            yield sink
        return
    with _sink_under_test(kind, folder) as sink:
        yield sink


@contextmanager
def _sink_under_test(kind: str, folder: Path, **database: Any) -> Iterator[Sink | None]:
    config: dict[str, Any]
    if kind == "file":
        config = {"type": "file", "path": str(folder / "{message_type}.jsonl")}
    elif kind in ("sqlite", "sqlite-ckpt1000"):
        config = {"type": "database", "url": f"sqlite:///{folder / 'receipts.db'}", "table": "bench_receipts"}
        if kind == "sqlite-ckpt1000":
            config["wal_autocheckpoint_pages"] = 1000
    elif kind == "postgresql":
        if not reachable(5432):
            yield None
            return
        config = {
            "type": "database",
            "url": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
            "table": "bench_receipts",
        }
    elif kind == "mariadb":
        if not reachable(3306):
            yield None
            return
        config = {"type": "database", "url": "mysql+pymysql://root@127.0.0.1:3306/test", "table": "bench_receipts"}
    elif kind == "webhook":
        with webhook_receiver() as url:
            sink = parse_sink_config({"type": "webhook", "url": url}).build("bench")
            yield sink
        return
    else:
        raise ValueError(kind)
    config.update(database)
    sink = parse_sink_config(config).build("bench")
    yield sink
    if kind in ("postgresql", "mariadb"):
        drop_table(config["url"])


def drop_table(url: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        for table in ("bench_receipts", "bench_receipts_status", "bench_receipts_opt_outs"):
            connection.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


def measure(sink: Sink, receipts: int, batch_size: int, offset: int) -> float:
    batches = [
        [make_receipt(offset + n) for n in range(start, min(start + batch_size, receipts))]
        for start in range(0, receipts, batch_size)
    ]
    began = time.perf_counter()
    for batch in batches:
        result = sink.write(batch)
        assert len(result.accepted) == len(batch), "the benchmark expects every receipt accepted"
    return receipts / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receipts", type=int, default=20000, help="receipts per measurement")
    parser.add_argument(
        "--only", default="file,sqlite,sqlite-ckpt1000,postgresql,mariadb,webhook", help="comma-separated sinks"
    )
    args = parser.parse_args()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(f"sink write throughput, receipts/s ({os.cpu_count()} cores, one process)")
    print(f"{'sink':<20} {'batch 16':>10} {'batch 256':>10} {'target':>8} {'256/target':>11}")
    for kind in args.only.split(","):
        with tempfile.TemporaryDirectory() as folder, sink_under_test(kind, Path(folder)) as sink:
            if sink is None:
                print(f"{kind:<20} {'skipped: server not reachable':>41}")
                continue
            sink.open()
            try:
                rates = {size: measure(sink, args.receipts, size, offset) for size, offset in ((16, 0), (256, 10**7))}
            finally:
                sink.close()
        target = TARGETS[kind]
        ratio = f"{rates[256] / target:.2f}x" if target else "-"
        print(f"{kind:<20} {rates[16]:>10,.0f} {rates[256]:>10,.0f} {target:>8,} {ratio:>11}")


if __name__ == "__main__":
    main()
