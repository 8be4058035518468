"""Which HTTP client carries the SDK-signed MNS calls: httpx, urllib3 or http.client, on loopback and at +20 ms.

Each row runs receive(16) + delete cycles against an in-process emulator for a few seconds: the SDK
signs (``MNSClient.build_header``), the client sends, ``mns_xml`` parses. It reports receipts a second
and the client thread's own CPU per 1,000 receipts (``time.thread_time``, so the emulator's threads are
not counted). ``--mnsqueue`` adds a row for :class:`~mns_consumer.alicom.queue.MnsQueue` itself.

    .venv/bin/python bench/transport_bench.py [--seconds 4] [--mnsqueue]
"""

from __future__ import annotations

import argparse
import http.client
import ssl
import threading
import time
from collections.abc import Callable

import httpx
import urllib3
from mns.account import Account
from mns.auth import StaticCredentialsProvider
from mns.mns_http import RequestInternal
from mns.mns_request import BatchDeleteMessageRequest, BatchReceiveMessageRequest

from mns_consumer.alicom.mns_xml import parse_batch_receive, receipt_handles_xml
from mns_consumer.alicom.queue import MnsQueue
from mns_consumer.emulator import Emulator, EmulatorSettings
from mns_consumer.emulator.wan import WanProfile

QUEUE = "Alicom-Queue-i1-SmsReport"
Send = Callable[[str, str, bytes, dict[str, str]], tuple[int, bytes]]


def _sender(kind: str, emulator: Emulator) -> Send:
    if kind == "httpx":
        client = httpx.Client(verify=ssl.create_default_context(), trust_env=False)
        timeout = httpx.Timeout(10, connect=5)

        def send_httpx(method: str, uri: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
            answer = client.request(method, emulator.url + uri, content=body, headers=headers, timeout=timeout)
            return answer.status_code, answer.content

        return send_httpx
    if kind == "http.client":
        connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=10)

        def send_http_client(method: str, uri: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
            connection.request(method, uri, body=body or None, headers=headers)
            answer = connection.getresponse()
            return answer.status, answer.read()

        return send_http_client
    pool = urllib3.HTTPConnectionPool("127.0.0.1", emulator.port, maxsize=1, retries=False)
    limits = urllib3.Timeout(connect=5, read=10)

    def send_urllib3(method: str, uri: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        answer = pool.urlopen(method, uri, body=body or None, headers=headers, timeout=limits)
        return answer.status, answer.data

    return send_urllib3


def _cycles(kind: str, emulator: Emulator, seconds: float) -> tuple[int, float]:
    settings = emulator.settings
    credentials = StaticCredentialsProvider(settings.access_key_id, settings.access_key_secret, "")
    received = 0
    # Built before the clock starts: its TLS context (the system CA store) costs about as much CPU as
    # a few hundred calls, once per client and thread, and the urllib3 row builds none.
    queue = MnsQueue(emulator.url, QUEUE, credentials) if kind == "MnsQueue" else None
    started = time.thread_time()
    deadline = time.monotonic() + seconds
    if queue is not None:
        while time.monotonic() < deadline:
            messages = queue.receive(16, 0)
            queue.delete([message.receipt_handle for message in messages])
            received += len(messages)
        queue.close()
        return received, time.thread_time() - started
    signer = Account(emulator.url, credentials_provider=credentials).mns_client
    send = _sender(kind, emulator)
    uri = f"/queues/{QUEUE}/messages?numOfMessages=16&waitseconds=0"
    while time.monotonic() < deadline:
        internal = RequestInternal("GET", uri)
        signer.build_header(BatchReceiveMessageRequest(QUEUE, 16, False, 0), internal)
        status, body = send("GET", uri, b"", internal.header)
        handles = [message.receipt_handle for message in parse_batch_receive(body)] if status == 200 else []
        if handles:
            data = receipt_handles_xml(handles)
            internal = RequestInternal("DELETE", f"/queues/{QUEUE}/messages", data=data)
            signer.build_header(BatchDeleteMessageRequest(QUEUE, handles), internal)
            send("DELETE", f"/queues/{QUEUE}/messages", data, internal.header)
        received += len(handles)
    return received, time.thread_time() - started


def _row(kind: str, emulator: Emulator, seconds: float, threads: int) -> tuple[int, float]:
    """Receipts and client CPU seconds of ``threads`` threads running cycles side by side."""
    results: list[tuple[int, float]] = []
    workers = [
        threading.Thread(target=lambda: results.append(_cycles(kind, emulator, seconds))) for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(count for count, _ in results), sum(cpu for _, cpu in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each row, s")
    parser.add_argument("--mnsqueue", action="store_true", help="add a row for MnsQueue itself")
    args = parser.parse_args()
    kinds = ["httpx", "urllib3", "http.client"] + (["MnsQueue"] if args.mnsqueue else [])
    print("| network | client | receipts/s | client CPU ms per 1,000 receipts |\n|---|---|---|---|")
    for label, wan, threads in (("loopback", None, 1), ("20 ms, 4 threads", WanProfile(0.02), 4)):
        emulator = Emulator(EmulatorSettings(queues={"SmsReport": QUEUE}, wan=wan)).start()
        try:
            for kind in kinds:
                emulator.produce("SmsReport", 60_000 if wan is None else 10_000)
                received, cpu = _row(kind, emulator, args.seconds, threads)
                print(f"| {label} | {kind} | {received / args.seconds:,.0f} | {1e6 * cpu / max(received, 1):.0f} |")
        finally:
            emulator.stop()


if __name__ == "__main__":
    main()
