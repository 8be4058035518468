"""HTTP push receiver: acknowledgement latency and receipts per second, with the file and SQLite sinks.

Run with ``make bench`` or::

    .venv/bin/python bench/push_bench.py [--pushes 300] [--batch 100] [--clients 4]

For each sink, ``mns-consumer push-server`` runs as its own process. Then

* **ack latency**: one client POSTs ``--pushes`` arrays of ``--batch`` SmsReport receipts one after
  another (as Alibaba sends one URL's pushes) and records each answer's latency, from sending the
  request to reading the whole answer;
* **throughput**: ``--clients`` clients push ``--pushes`` arrays each, concurrently, and the clock
  stops when every receipt has left the spool (stored in the sink), read from ``/healthz``.

Target: the ack p99 stays far inside Alibaba's 700 ms (the spool commit is one fsync).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mns_consumer.emulator.clock import Clock
from mns_consumer.emulator.samples import ReceiptFactory

SECRET = "bench-push-secret-0123456789"
PATH = "/alicom/SmsReport"


def _config(folder: Path, sink: dict[str, Any]) -> Path:
    config = {
        "sinks": {"out": sink},
        "dead_letter": {"type": "file", "path": str(folder / "dead-letter.jsonl")},
        "logging": {"format": "json", "level": "warning"},
        "http": {"listen": "127.0.0.1:0"},
        "push": {
            "listen": "127.0.0.1:0",
            "spool_path": str(folder / "spool.db"),
            "routes": [{"path": PATH, "secret": SECRET, "message_type": "SmsReport", "sinks": ["out"]}],
        },
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _start(config: Path, folder: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """Start push-server; return it, the push URL and the /healthz URL (ports read from its log)."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    stderr = folder / "daemon.stderr"
    # Logging at warning hides the listening events, so ask for info just for the start.
    data = yaml.safe_load(config.read_text())
    data["logging"]["level"] = "info"
    config.write_text(yaml.safe_dump(data))
    process = subprocess.Popen(  # noqa: S603  (our own interpreter and module)
        [sys.executable, "-m", "mns_consumer", "push-server", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=stderr.open("wb"),
        env=env,
    )
    deadline = time.monotonic() + 60
    push_port = http_port = None
    while time.monotonic() < deadline and (push_port is None or http_port is None):
        time.sleep(0.1)
        for line in stderr.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "push.listening":
                push_port = event["address"].rpartition(":")[2]
            elif event.get("event") == "http.listening":
                http_port = event["address"].rpartition(":")[2]
    if push_port is None or http_port is None:
        process.kill()
        raise SystemExit(f"push-server did not start:\n{stderr.read_text()}")
    return process, f"http://127.0.0.1:{push_port}{PATH}/{SECRET}", f"http://127.0.0.1:{http_port}/healthz"


def _bodies(count: int, batch: int, seed: int) -> list[bytes]:
    factory = ReceiptFactory(Clock(), seed)
    return [
        json.dumps([item.receipt for item in factory.make_many("SmsReport", batch)], ensure_ascii=False).encode()
        for _ in range(count)
    ]


def _post_all(url: str, bodies: list[bytes], latencies: list[float]) -> None:
    headers = {"Content-Type": "application/json;charset=utf-8"}
    with httpx.Client(trust_env=False, timeout=10) as client:
        for body in bodies:
            started = time.perf_counter()
            answer = client.post(url, content=body, headers=headers)
            latencies.append(time.perf_counter() - started)
            if answer.status_code != 200 or answer.json().get("code") != 0:
                raise SystemExit(f"push refused: {answer.status_code} {answer.text}")


def _wait_spool_empty(health: str) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if httpx.get(health, trust_env=False).json()["push"]["spool_entries"] == 0:
            return
        time.sleep(0.02)
    raise SystemExit("the spool did not drain within 600 s")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def bench(name: str, sink: dict[str, Any], folder: Path, args: argparse.Namespace) -> dict[str, float]:
    """Latency and throughput of one sink."""
    process, url, health = _start(_config(folder, sink), folder)
    try:
        sequential: list[float] = []
        _post_all(url, _bodies(args.pushes, args.batch, seed=1), sequential)
        _wait_spool_empty(health)

        concurrent: list[float] = []
        work = [_bodies(args.pushes, args.batch, seed=10 + n) for n in range(args.clients)]
        started = time.perf_counter()
        threads = [threading.Thread(target=_post_all, args=(url, bodies, concurrent)) for bodies in work]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        acked = time.perf_counter() - started
        _wait_spool_empty(health)
        stored = time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=60)
    receipts = args.clients * args.pushes * args.batch
    return {
        "ack_p50_ms": statistics.median(sequential) * 1000,
        "ack_p99_ms": _percentile(sequential, 0.99) * 1000,
        "concurrent_ack_p99_ms": _percentile(concurrent, 0.99) * 1000,
        "acked_per_second": receipts / acked,
        "stored_per_second": receipts / stored,
    }


def main() -> None:
    """Run the benchmark for each sink and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=300, help="pushes per client")
    parser.add_argument("--batch", type=int, default=100, help="receipts per push")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients in the throughput run")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="push-bench-") as temp:
        for name in ("file", "sqlite"):
            folder = Path(temp) / name
            folder.mkdir()
            sink = (
                {"type": "file", "path": str(folder / "receipts.jsonl")}
                if name == "file"
                else {"type": "database", "url": f"sqlite:///{folder / 'receipts.db'}"}
            )
            rows.append((name, bench(name, sink, folder, args)))
    print(
        f"{args.pushes} pushes of {args.batch} SmsReport receipts; throughput with {args.clients} concurrent clients\n"
    )
    print("| sink | ack p50 | ack p99 | ack p99, concurrent | acknowledged receipts/s | stored receipts/s |")
    print("|---|---|---|---|---|---|")
    for name, row in rows:
        print(
            f"| {name} | {row['ack_p50_ms']:.1f} ms | {row['ack_p99_ms']:.1f} ms "
            f"| {row['concurrent_ack_p99_ms']:.1f} ms | {row['acked_per_second']:,.0f} "
            f"| {row['stored_per_second']:,.0f} |"
        )


if __name__ == "__main__":
    main()
