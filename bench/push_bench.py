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

Alibaba drops a push for good after it is refused or answered after 700 ms three times, so three more
scenarios check the receiver's availability (``--scenario``):

* ``burst``: ``--rounds`` rounds of ``--burst`` clients opening fresh connections at the same instant,
  each sending one push; counts connection resets and reports the answer p50/p99 (target: no reset,
  p99 under 700 ms);
* ``slow``: push-server runs under ``prlimit --nofile=--nofile`` (systemd's default soft limit is
  1024) while ``--slow`` connections send a request head one byte every ``--drip`` seconds; then
  ``--pushes`` pushes on fresh connections must each be acknowledged ``{"code":0}`` (reports how many
  were, their p99, and the daemon's threads and descriptors);
* ``drain-memory``: a spool of ``--entries`` pushes of ``--batch`` receipts (more than one round) is
  written, then push-server drains it into the file sink; reports the daemon's peak RSS (VmHWM).

To measure another checkout (before/after), run from outside the repository with
``PYTHONPATH=<its folder>``: the daemon then imports that ``mns_consumer``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
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


def _config(folder: Path, sink: dict[str, Any], **push: Any) -> Path:
    config = {
        "sinks": {"out": sink},
        "dead_letter": {"type": "file", "path": str(folder / "dead-letter.jsonl")},
        "logging": {"format": "json", "level": "warning"},
        "http": {"listen": "127.0.0.1:0"},
        "push": {
            "listen": "127.0.0.1:0",
            "spool_path": str(folder / "spool.db"),
            "routes": [{"path": PATH, "secret": SECRET, "message_type": "SmsReport", "sinks": ["out"]}],
            **push,
        },
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _start(config: Path, folder: Path, prefix: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], str, str]:
    """Start push-server; return it, the push URL and the /healthz URL (ports read from its log)."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    stderr = folder / "daemon.stderr"
    # Logging at warning hides the listening events, so ask for info just for the start.
    data = yaml.safe_load(config.read_text())
    data["logging"]["level"] = "info"
    config.write_text(yaml.safe_dump(data))
    process = subprocess.Popen(  # noqa: S603  (our own interpreter and module)
        [*prefix, sys.executable, "-m", "mns_consumer", "push-server", "--config", str(config)],
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


def _raw_push(host: str, port: int, target: str, body: bytes) -> bytes:
    """One push on a fresh connection (as Alibaba's pushes arrive); returns the whole answer."""
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json;charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, port), timeout=30) as connection:
        connection.sendall(head + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def _acknowledged(answer: bytes) -> bool:
    try:
        return bool(json.loads(answer.split(b"\r\n\r\n", 1)[1]).get("code") == 0)
    except (IndexError, ValueError):
        return False


def burst(folder: Path, args: argparse.Namespace) -> None:
    """Rounds of clients connecting at the same instant; resets and answer percentiles."""
    process, url, _ = _start(_config(folder, {"type": "file", "path": str(folder / "receipts.jsonl")}), folder)
    parsed = httpx.URL(url)
    host, port, target = parsed.host, int(parsed.port or 80), parsed.raw_path.decode()
    latencies: list[float] = []
    print(f"{args.burst} clients per round, each one push of {args.batch} receipts on a fresh connection\n")
    print("| round | resets | other errors | not acknowledged | p50 | p99 |")
    print("|---|---|---|---|---|---|")
    try:
        for round_number in range(args.rounds):
            bodies = _bodies(args.burst, args.batch, seed=100 + round_number)
            barrier = threading.Barrier(args.burst)
            outcome: dict[str, int] = {"reset": 0, "error": 0, "refused": 0}
            times: list[float] = []
            lock = threading.Lock()

            def client(
                body: bytes,
                barrier: threading.Barrier = barrier,
                outcome: dict[str, int] = outcome,
                times: list[float] = times,
                lock: threading.Lock = lock,
            ) -> None:
                barrier.wait()
                started = time.perf_counter()
                try:
                    answer = _raw_push(host, port, target, body)
                except ConnectionResetError:
                    kind = "reset"
                except OSError:
                    kind = "error"
                else:
                    kind = "" if _acknowledged(answer) else "refused"
                with lock:
                    times.append(time.perf_counter() - started)
                    if kind:
                        outcome[kind] += 1

            threads = [threading.Thread(target=client, args=(body,)) for body in bodies]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            latencies.extend(times)
            print(
                f"| {round_number + 1} | {outcome['reset']} | {outcome['error']} | {outcome['refused']} "
                f"| {statistics.median(times) * 1000:.0f} ms | {_percentile(times, 0.99) * 1000:.0f} ms |"
            )
            time.sleep(1)
    finally:
        process.terminate()
        process.wait(timeout=60)
    print(
        f"\nall rounds: p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p99 {_percentile(latencies, 0.99) * 1000:.0f} ms"
    )


def _proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


class _Drippers:
    """Connections sending a request head and then a byte every ``drip_seconds``, never finishing it."""

    def __init__(self, host: str, port: int, head: bytes, drip_seconds: float) -> None:
        self.address = (host, port)
        self.head = head
        self.drip_seconds = drip_seconds
        self.connections: list[socket.socket] = []
        self.opened = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._drip, daemon=True).start()

    def open(self, count: int) -> None:
        """Open up to ``count``, one at a time while the earlier ones drip (as clients trickling in would);
        three connects in a row timing out mean the listener stopped accepting."""
        failures = 0
        while self.opened < count and failures < 3:
            try:
                connection = socket.create_connection(self.address, timeout=1)
                connection.sendall(self.head)
            except OSError:
                failures += 1
                continue
            failures = 0
            connection.setblocking(False)
            with self._lock:
                self.connections.append(connection)
                self.opened += 1

    def _drip(self) -> None:
        while not self._stop.wait(self.drip_seconds):
            with self._lock:
                for connection in list(self.connections):
                    try:
                        connection.send(b"a")
                    except BlockingIOError:
                        continue
                    except OSError:
                        self.connections.remove(connection)
                        connection.close()

    def close(self) -> None:
        """Stop dripping and close every connection."""
        self._stop.set()
        with self._lock:
            for connection in self.connections:
                connection.close()


def slow(folder: Path, args: argparse.Namespace) -> None:
    """Valid pushes while many connections drip their request head, under a low open-files limit."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        raise SystemExit("prlimit (util-linux) is needed for this scenario")
    config = _config(folder, {"type": "file", "path": str(folder / "receipts.jsonl")})
    process, url, _ = _start(config, folder, (prlimit, f"--nofile={args.nofile}:{args.nofile}", "--"))
    parsed = httpx.URL(url)
    host, port, target = parsed.host, int(parsed.port or 80), parsed.raw_path.decode()
    drippers = _Drippers(host, port, f"POST {target} HTTP/1.1\r\nHost: {host}\r\nX-Slow: ".encode(), args.drip)
    try:
        drippers.open(args.slow)
        threads, descriptors = _proc_status(process.pid, "Threads"), len(os.listdir(f"/proc/{process.pid}/fd"))
        acknowledged, times = 0, []
        for body in _bodies(args.pushes, args.batch, seed=7):
            started = time.perf_counter()
            with contextlib.suppress(OSError):
                acknowledged += _acknowledged(_raw_push(host, port, target, body))
            times.append(time.perf_counter() - started)
    finally:
        drippers.close()
        process.terminate()
        process.wait(timeout=60)
    print(
        f"nofile {args.nofile}, {args.slow} slow connections (a byte every {args.drip:g} s): "
        f"{acknowledged}/{args.pushes} pushes acknowledged, p50 {statistics.median(times) * 1000:.0f} ms, "
        f"p99 {_percentile(times, 0.99) * 1000:.0f} ms; daemon threads {threads}, descriptors {descriptors}; "
        f"{drippers.opened} slow connections opened before the pushes"
    )


def drain_memory(folder: Path, args: argparse.Namespace) -> None:
    """Peak RSS of push-server draining a spool larger than one round."""
    from mns_consumer.push.spool import Spool

    spool = Spool(folder / "spool.db")
    spool.open()
    for body in _bodies(args.entries, args.batch, seed=3):
        spool.append("push:SmsReport", "SmsReport", body, args.batch)
    spool.close()
    push = {} if args.round_receipts is None else {"spool_batch_receipts": args.round_receipts}
    config = _config(folder, {"type": "file", "path": str(folder / "receipts.jsonl")}, **push)
    started = time.perf_counter()
    process, _, health = _start(config, folder)
    try:
        _wait_spool_empty(health)
        drained = time.perf_counter() - started
        peak_kb = _proc_status(process.pid, "VmHWM")
        now_kb = _proc_status(process.pid, "VmRSS")
    finally:
        process.terminate()
        process.wait(timeout=60)
    rounds = "default" if args.round_receipts is None else f"{args.round_receipts:,}"
    print(
        f"{args.entries} spooled pushes of {args.batch} receipts, spool_batch_receipts {rounds}: peak RSS "
        f"{peak_kb / 1024:.0f} MB (RSS after draining {now_kb / 1024:.0f} MB), drained in {drained:.1f} s"
    )


def main() -> None:
    """Run the chosen scenario and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("throughput", "burst", "slow", "drain-memory"), default="throughput")
    parser.add_argument("--pushes", type=int, default=300, help="pushes per client (slow: pushes sent)")
    parser.add_argument("--batch", type=int, default=100, help="receipts per push")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients in the throughput run")
    parser.add_argument("--burst", type=int, default=64, help="burst: clients connecting at once")
    parser.add_argument("--rounds", type=int, default=5, help="burst: rounds")
    parser.add_argument("--slow", type=int, default=2000, help="slow: connections dripping their request")
    parser.add_argument("--drip", type=float, default=5.0, help="slow: seconds between bytes")
    parser.add_argument("--nofile", type=int, default=1024, help="slow: the daemon's open-files limit")
    parser.add_argument("--entries", type=int, default=200, help="drain-memory: spooled pushes")
    parser.add_argument(
        "--round-receipts",
        type=int,
        default=None,
        help="drain-memory: push.spool_batch_receipts (default: its default)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="push-bench-") as temp:
        if args.scenario == "burst":
            burst(Path(temp), args)
            return
        if args.scenario == "slow":
            slow(Path(temp), args)
            return
        if args.scenario == "drain-memory":
            drain_memory(Path(temp), args)
            return
        rows = []
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
