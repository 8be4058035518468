"""``mns-consumer emulator`` as users run it: a subprocess, real signals, real clients."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from mns.account import Account
from mns.mns_exception import MNSServerException


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def emulator_process() -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """The emulator CLI on a free port with seeded receipts; yields the process and its printed endpoints."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mns_consumer",
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--json",
            "--seed-receipts",
            "5",
            "--queue",
            "SmsUp=Alicom-Queue-i9-SmsUp",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert process.stdout is not None
        described = json.loads(process.stdout.readline())
        yield process, described
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def test_emulator_command_serves_seeded_receipts_and_stops_cleanly_on_sigterm(
    emulator_process: tuple[subprocess.Popen[str], dict[str, Any]],
) -> None:
    """The printed endpoint and credentials work with the real SDK, and SIGTERM exits 0."""
    process, described = emulator_process
    assert described["queues"] == {"SmsUp": "Alicom-Queue-i9-SmsUp"}
    account = Account(described["mns_endpoint"], described["access_key_id"], described["access_key_secret"])
    try:
        messages = account.get_queue("Alicom-Queue-i9-SmsUp").batch_receive_message(16, 0)
    finally:
        account.mns_client.close_connection()
    bodies = [json.loads(m.message_body) for m in messages]
    assert len(bodies) == 5
    assert all({"phone_number", "content", "send_time"} <= set(body) for body in bodies)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0


def test_emulator_command_refuses_a_bad_listen_address_with_exit_2() -> None:
    """A malformed --listen is a usage error: exit 2 and a message saying what to write."""
    result = subprocess.run(
        [sys.executable, "-m", "mns_consumer", "emulator", "--listen", "nowhere"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "HOST:PORT" in result.stderr


class _Receiver(BaseHTTPRequestHandler):
    received: list[list[dict[str, Any]]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body))
        payload = b'{"code":0,"msg":"ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_push_command_posts_json_arrays_and_reports_them_accepted() -> None:
    """``emulator push`` POSTs the receipts as JSON arrays and exits 0 when all were accepted."""
    received: list[list[dict[str, Any]]] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/alicom/SmsReport"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "mns_consumer",
                "emulator",
                "push",
                "--url",
                url,
                "--type",
                "SmsReport",
                "--count",
                "7",
                "--batch-size",
                "3",
                "--json",
            ],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["accepted_receipts"] == 7
    assert [len(batch) for batch in received] == [3, 3, 1]
    assert all("biz_id" in receipt for batch in received for receipt in batch)


def test_version_and_help_work_without_starting_anything() -> None:
    """``--version`` prints the version, and the emulator's help ends with worked examples."""
    version = subprocess.run(
        [sys.executable, "-m", "mns_consumer", "--version"], capture_output=True, text=True, env=_env(), check=True
    )
    assert version.stdout.startswith("mns-consumer, version ")
    helptext = subprocess.run(
        [sys.executable, "-m", "mns_consumer", "emulator", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    )
    assert "Examples:" in helptext.stdout
    assert "--seed-receipts" in helptext.stdout


def test_emulator_command_refuses_seeding_a_type_it_cannot_generate_with_exit_2() -> None:
    """Seeding a queue of a MessageType without a sample generator is a clear usage error, not a traceback."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mns_consumer",
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--seed-receipts",
            "1",
            "--queue",
            "VoiceReport=Alicom-Queue-i1-VoiceReport",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown message type 'VoiceReport'" in result.stderr
    assert "Traceback" not in result.stderr


def test_emulator_command_sets_the_flow_limiter_short_batches_and_wan_profile() -> None:
    """The service options reach the running emulator: its state shows them and a throttled call gets 429."""
    options = ["--throttle-probability", "1", "--flow-hold-ms", "100", "--max-received-not-deleted-minutes", "10"]
    options += [
        "--short-batch-probability",
        "0.5",
        "--latency-ms",
        "20",
        "--jitter-ms",
        "5",
        "--latency-services",
        "all",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "mns_consumer", "emulator", "--listen", "127.0.0.1:0", "--json", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert process.stdout is not None
        described = json.loads(process.stdout.readline())
        state = httpx.get(f"{described['admin_url']}state", timeout=10).json()
        account = Account(described["mns_endpoint"], described["access_key_id"], described["access_key_secret"])
        try:
            with pytest.raises(MNSServerException, match="TooManyRequests"):
                account.get_queue("Alicom-Queue-i1-SmsReport").receive_message(0)
        finally:
            account.mns_client.close_connection()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=15)
    limits = state["flow_limiter"]["limits"]
    assert (limits["throttle_probability"], limits["hold_seconds"], limits["account_tps"]) == (1.0, 0.1, 20_000)
    assert limits["max_received_not_deleted_seconds"] == 600
    assert state["short_batch_probability"] == 0.5
    assert state["wan"] == {"latency_ms": 20.0, "jitter_ms": 5.0, "services": "all", "handshake": True}


def test_emulator_command_refuses_a_negative_limit_with_exit_2() -> None:
    """A flow limit out of range is a usage error naming the limit."""
    result = subprocess.run(
        [sys.executable, "-m", "mns_consumer", "emulator", "--listen", "127.0.0.1:0", "--account-tps", "-5"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "account_tps must be zero or more" in result.stderr
