"""Emulator ceiling: BatchReceiveMessage + BatchDeleteMessage throughput and long-poll wake-up latency.

The emulator runs as its own process (as it does beside the daemon in later benchmarks) and the
clients are the real ``aliyun-mns-sdk``, one connection per thread. Run with ``make bench`` or::

    .venv/bin/python bench/emulator_bench.py [--messages 20000] [--wakeups 200]

Figures drift with the machine's load; compare the rows of one run with each other.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import Message

QUEUE = "Alicom-Queue-i1-SmsReport"


def start_emulator() -> tuple[subprocess.Popen[str], dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    process = subprocess.Popen(  # noqa: S603  (our own interpreter and module)
        [
            sys.executable,
            "-m",
            "mns_consumer",
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--json",
            "--queue",
            f"SmsReport={QUEUE}",
            "--max-long-polls",
            "64",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())


def seed(described: dict[str, Any], count: int) -> None:
    with httpx.Client(base_url=described["admin_url"], trust_env=False, timeout=120) as admin:
        for start in range(0, count, 2000):
            admin.post("receipts", json={"message_type": "SmsReport", "count": min(2000, count - start)})


def account_for(described: dict[str, Any]) -> Account:
    return Account(described["mns_endpoint"], described["access_key_id"], described["access_key_secret"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drain(described: dict[str, Any], threads: int, total: int, emulator_pid: int) -> dict[str, float]:
    """Receive and delete ``total`` messages with ``threads`` SDK clients; returns rates and emulator CPU."""
    seed(described, total)
    counted = [0] * threads
    requests = [0] * threads
    barrier = threading.Barrier(threads + 1)

    def worker(index: int) -> None:
        account = account_for(described)
        queue = account.get_queue(QUEUE)
        barrier.wait()
        try:
            while True:
                try:
                    batch = queue.batch_receive_message(16, 1)
                except MNSServerException as exc:
                    if exc.type == "MessageNotExist":
                        return
                    raise
                queue.batch_delete_message([m.receipt_handle for m in batch])
                counted[index] += len(batch)
                requests[index] += 2
        finally:
            account.mns_client.close_connection()

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    cpu_before = cpu_seconds(emulator_pid)
    for thread in workers:
        thread.join()
    emulator_cpu = cpu_seconds(emulator_pid) - cpu_before
    # The last empty receive of each worker waits its 1 s out; that second is not throughput.
    elapsed = time.perf_counter() - began - 1.0
    return {
        "messages": float(sum(counted)),
        "seconds": elapsed,
        "messages_per_second": sum(counted) / elapsed,
        "requests_per_second": sum(requests) / elapsed,
        "emulator_cpu_ms_per_request": emulator_cpu * 1000 / sum(requests),
        # What one core of emulator could serve if clients were free: the emulator's own ceiling.
        "emulator_ceiling_messages_per_core_second": sum(counted) / emulator_cpu if emulator_cpu else 0.0,
    }


def wakeups(described: dict[str, Any], samples: int) -> dict[str, float]:
    """Time from a send starting to a waiting long poll returning that message, ``samples`` times."""
    receiver_account, sender_account = account_for(described), account_for(described)
    receiver, sender = receiver_account.get_queue(QUEUE), sender_account.get_queue(QUEUE)
    latencies: list[float] = []
    try:
        for _ in range(samples):
            result: dict[str, float] = {}
            waiting = threading.Event()

            def receive(waiting: threading.Event, result: dict[str, float]) -> None:
                waiting.set()
                message = receiver.receive_message(30)
                result["returned"] = time.perf_counter()
                receiver.delete_message(message.receipt_handle)

            thread = threading.Thread(target=receive, args=(waiting, result))
            thread.start()
            waiting.wait()
            time.sleep(0.005)  # let the receive reach the server and start waiting
            sent = time.perf_counter()
            sender.send_message(Message("eyJ3YWtlIjoxfQ=="))
            thread.join()
            latencies.append(result["returned"] - sent)
    finally:
        receiver_account.mns_client.close_connection()
        sender_account.mns_client.close_connection()
    latencies.sort()
    return {
        "samples": float(len(latencies)),
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000, help="messages drained per run")
    parser.add_argument("--wakeups", type=int, default=200, help="long-poll wake-up samples")
    args = parser.parse_args()
    process, described = start_emulator()
    try:
        one = drain(described, 1, args.messages, process.pid)
        four = drain(described, 4, args.messages, process.pid)
        wake = wakeups(described, args.wakeups)
    finally:
        process.terminate()
        process.wait(timeout=15)
    print(f"emulator benchmark ({os.cpu_count()} cores, emulator in its own process, aliyun-mns-sdk clients)")
    print(f"{'clients':>8} {'messages':>9} {'msg/s':>9} {'req/s':>8} {'emu CPU ms/req':>15} {'emu msg/core-s':>15}")
    for threads, row in ((1, one), (4, four)):
        print(
            f"{threads:>8} {int(row['messages']):>9} {row['messages_per_second']:>9.0f}"
            f" {row['requests_per_second']:>8.0f} {row['emulator_cpu_ms_per_request']:>15.3f}"
            f" {row['emulator_ceiling_messages_per_core_second']:>15.0f}"
        )
    print(f"4 clients / 1 client: {four['messages_per_second'] / one['messages_per_second']:.2f}x")
    print(
        f"long-poll wake-up ({int(wake['samples'])} samples): p50 {wake['p50_ms']:.2f} ms, p99 {wake['p99_ms']:.2f} ms"
    )
    print(json.dumps({"one_client": one, "four_clients": four, "wakeup": wake}))


if __name__ == "__main__":
    main()
