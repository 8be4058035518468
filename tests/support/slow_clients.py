"""Clients that attack an HTTP server's capacity: slow-loris connections and an oversize body.

Used to check that the push receiver sheds them without starving valid pushes. The slow connections
are driven by one thread (an attacker needs no thread per connection), so 200 of them cost the test
little.
"""

from __future__ import annotations

import socket
import threading
import time

import httpx


class SlowLoris:
    """Connections that send a push's request one byte at a time, from one thread, never finishing it."""

    def __init__(self, port: int, path: str, count: int, interval_seconds: float = 1.0) -> None:
        self.request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000000\r\n\r\n"
        ).encode() + b"[" * 1_000_000
        self.interval_seconds = interval_seconds
        self.sockets: list[socket.socket] = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            self.sockets.append(sock)
            # Paced like a patient attacker, so each connection is accepted rather than lost in the backlog.
            time.sleep(0.01)
        self.sent = [0] * count
        self.closed_by_server = [False] * count
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._drip, daemon=True)
        self.thread.start()

    def _drip(self) -> None:
        while not self.stop.wait(self.interval_seconds):
            for n, sock in enumerate(self.sockets):
                if self.closed_by_server[n]:
                    continue
                try:
                    sock.send(self.request[self.sent[n] : self.sent[n] + 1])
                    self.sent[n] += 1
                except OSError:
                    self.closed_by_server[n] = True

    def held(self) -> int:
        """How many connections the server has not closed (as far as the last byte sent tells)."""
        return self.closed_by_server.count(False)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        for sock in self.sockets:
            sock.close()


def oversize_push(port: int, path: str, max_body_bytes: int) -> int | None:
    """POST a body larger than the limit, streaming it; returns the status answered (None: reset first)."""
    body = b"[" + b"0," * max_body_bytes + b"0]"
    try:
        answer = httpx.post(
            f"http://127.0.0.1:{port}{path}",
            content=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),
            headers={"Content-Type": "application/json", "Content-Length": str(len(body))},
            timeout=30,
        )
    except httpx.HTTPError:
        return None
    return answer.status_code
