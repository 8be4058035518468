"""The push-server daemon under connection pressure: bursts of new connections, and slow clients.

Alibaba drops a push for good after it is refused or answered after 700 ms three times, so a reset or
a starved listener loses receipts. The daemon is a subprocess; for the slow-client case its open-files
limit is lowered with ``prlimit`` (util-linux), as a systemd unit without ``LimitNOFILE`` would leave it.
Waits are hang guards; latency figures live in ``bench/push_bench.py``.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.daemon_harness import FAST_SETTINGS, Daemon, DaemonFactory, clean_env
from tests.support.receipts import pushed_receipts

SECRET = "e2e-Connections-Secret-7c1f"
PATH = "/alicom/SmsReport"


def _config(tmp_path: Path, **push: Any) -> dict[str, Any]:
    return {
        "sinks": {"archive": {"type": "file", "path": str(tmp_path / "archive.jsonl")}},
        "dead_letter": {"type": "file", "path": str(tmp_path / "dead-letter.jsonl")},
        "logging": {"format": "json", "level": "info"},
        "http": {"listen": "127.0.0.1:0"},
        "push": {
            "listen": "127.0.0.1:0",
            "spool_path": str(tmp_path / "state" / "spool.db"),
            "routes": [{"path": PATH, "secret": SECRET, "message_type": "SmsReport", "sinks": ["archive"]}],
            **push,
        },
        **FAST_SETTINGS,
    }


def _body(seed: int) -> bytes:
    return json.dumps(pushed_receipts("SmsReport", 5, seed)).encode()


def _raw_push(port: int, body: bytes) -> bytes:
    """One push on a fresh connection; the whole answer (the server closes nothing on success, so read it all)."""
    head = (
        f"POST {PATH}/{SECRET} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


class _LimitedDaemon(Daemon):
    """A daemon started under ``prlimit --nofile``, as systemd would start it with a low LimitNOFILE."""

    def __init__(self, config_path: Path, output_dir: Path, nofile: int) -> None:
        super().__init__(config_path, output_dir, "limited", "push-server")
        self.nofile = nofile

    def start(self) -> Daemon:
        prlimit = shutil.which("prlimit")
        if prlimit is None:
            pytest.skip("prlimit (util-linux) is not installed")
        with self.stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [
                    prlimit,
                    f"--nofile={self.nofile}:{self.nofile}",
                    "--",
                    *(sys.executable, "-m", "mns_consumer", self.command, "--config", str(self.config_path)),
                ],
                stdout=stdout,
                stderr=stderr,
                env=clean_env(),
                cwd=self.config_path.parent,
            )
        return self


def _listen_backlog(port: int) -> int:
    """The backlog the kernel holds for the listener on ``port`` (``ss`` shows it as Send-Q)."""
    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("ss (iproute2) is not installed")
    lines = subprocess.run(
        [ss, "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True, timeout=10
    ).stdout.split()
    return int(lines[2])


def test_a_burst_of_64_new_connections_is_absorbed_without_a_reset(daemons: DaemonFactory, tmp_path: Path) -> None:
    """64 clients connecting at the same instant all get {"code":0}; none is reset or left waiting by the backlog."""
    daemon = daemons.start(_config(tmp_path), command="push-server")
    port = int(daemon.push_url(PATH).rsplit(":", 1)[1].split("/", 1)[0])
    metrics_port = int(daemon.http_url("/metrics").rsplit(":", 1)[1].split("/", 1)[0])
    # Both listeners hold a burst in the kernel (socketserver's default is 5).
    assert _listen_backlog(port) >= 64
    assert _listen_backlog(metrics_port) >= 64
    for round_number in range(3):
        barrier = threading.Barrier(64)
        bodies = [_body(1000 * round_number + index) for index in range(64)]
        with ThreadPoolExecutor(64) as pool:
            outcomes = list(pool.map(lambda body, barrier=barrier: _at_once(barrier, port, body), bodies))
        errors = [outcome for outcome in outcomes if isinstance(outcome, OSError)]
        assert errors == [], f"round {round_number}: {len(errors)} connection errors, e.g. {errors[:3]}"
        answers = [outcome for outcome in outcomes if isinstance(outcome, bytes)]
        assert all(json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"code": 0, "msg": "接收成功"} for answer in answers)


def _at_once(barrier: threading.Barrier, port: int, body: bytes) -> bytes | OSError:
    """Wait for every client of the round, then push; the answer, or the error (a reset among them)."""
    barrier.wait()
    try:
        return _raw_push(port, body)
    except OSError as exc:
        return exc


class _SlowClients:
    """Connections that send a request head one byte every ``drip_seconds`` and never finish it.

    They are opened one at a time (each accepted, or shed, in turn) while the earlier ones already
    drip; a listener that stopped accepting shows as connects timing out, and three in a row end the
    opening.
    """

    HEAD = f"POST {PATH}/{SECRET} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode()

    def __init__(self, port: int, count: int, drip_seconds: float) -> None:
        self.port = port
        self.count = count
        self.drip_seconds = drip_seconds
        self.open: dict[socket.socket, int] = {}
        self.opened = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._drip, daemon=True), threading.Thread(target=self._connect)]

    def start(self) -> _SlowClients:
        for thread in self._threads:
            thread.start()
        self._threads[1].join(120)
        return self

    def still_open(self) -> int:
        with self._lock:
            return len(self.open)

    def _connect(self) -> None:
        failures = 0
        while self.opened < self.count and failures < 3:
            try:
                connection = socket.create_connection(("127.0.0.1", self.port), timeout=1)
            except OSError:
                failures += 1
                continue
            failures = 0
            connection.setblocking(False)
            with self._lock:
                self.open[connection] = 0
                self.opened += 1

    def _drip(self) -> None:
        while not self._stop.wait(self.drip_seconds):
            with self._lock:
                for connection, sent in list(self.open.items()):
                    try:
                        if connection.recv(1024) == b"":
                            raise ConnectionResetError("closed by the server")
                    except BlockingIOError:
                        pass
                    except OSError:
                        del self.open[connection]
                        connection.close()
                        continue
                    try:
                        self.open[connection] = sent + connection.send(self.HEAD[sent : sent + 1] or b"a")
                    except BlockingIOError:
                        continue
                    except OSError:
                        del self.open[connection]
                        connection.close()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        for connection in self.open:
            connection.close()


def test_valid_pushes_are_acknowledged_while_hundreds_of_slow_connections_are_open(
    daemons: DaemonFactory, tmp_path: Path
) -> None:
    """Under a 256-descriptor limit, 600 clients dripping bytes neither starve pushes nor outlive the deadline."""
    # Given a push-server limited to 256 open files, whose requests must arrive within 5 s
    daemon = _LimitedDaemon(daemons.write(_config(tmp_path, read_timeout_seconds=5)), tmp_path, nofile=256)
    daemons.made.append(daemon)
    daemon.start()
    daemon.wait_ready()
    port = int(daemon.push_url(PATH).rsplit(":", 1)[1].split("/", 1)[0])
    # When 600 connections send their request head one byte every 0.5 s
    slow = _SlowClients(port, 600, 0.5).start()
    try:
        assert slow.still_open() >= 150
        # Then pushes on fresh connections are still acknowledged
        for seed in range(20):
            answer = httpx.post(
                f"http://127.0.0.1:{port}{PATH}/{SECRET}",
                content=_body(seed),
                headers={"Content-Type": "application/json"},
                timeout=20,
                trust_env=False,
            )
            assert answer.json() == {"code": 0, "msg": "接收成功"}
        # (the listener kept accepting: none of the 600 slow connections failed to connect)
        assert slow.opened == 600
        # And every slow connection is closed, by the shedding or at its 5 s deadline, while it keeps dripping
        deadline = time.monotonic() + 30
        while slow.still_open() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert slow.still_open() == 0, f"{slow.still_open()} slow connections still open 30 s after the pushes"
    finally:
        slow.stop()
    assert daemon.alive(), daemon.describe()
