"""A real local webhook receiver, and the webhook sink's environment for the contract suite.

:class:`WebhookReceiver` behaves like a well-written receiver of the documented wire format: it checks
``X-Signature`` (401 when wrong), refuses a request containing a receipt whose phone number is
:data:`REJECT_PHONE` (422), ignores a request whose ``Idempotency-Key`` it has seen (200), and keeps one
copy per ``dedupe_key``. It also records what a sink could get wrong: every request as received, and
the dedupe keys of every request it took as new (:attr:`WebhookReceiver.deliveries`), so a sink that
sends a receipt again in another request shows up as a repeated key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.webhook import WebhookSink, WebhookSinkConfig, verify_signature

SECRET = "contract-suite-webhook-secret"
REJECT_PHONE = "REJECT-ME"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the receiver got it."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class ScriptedReply:
    """A reply the receiver gives instead of handling the next request."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        with self.connections_lock:
            self.connections.add(conn)
        return conn, address

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections reset by a stop are expected; stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, each reply waits for a delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        request = RecordedRequest(self.path, dict(self.headers.items()), body)
        status, headers, reply = self.server.receiver.handle(request)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


class WebhookReceiver:
    """An HTTP(S) server on ``127.0.0.1`` receiving webhook posts in a thread; stop and start at will.

    Attributes:
        requests: Every request received, in order.
        stored: One receipt (as JSON) per dedupe key, as a receiver would keep them.
        deliveries: Dedupe keys of every request taken as new, repeats included.
        script: Replies to give, in order, before handling requests normally; None handles one normally.
        delay_seconds: How long to wait before answering each request.
    """

    def __init__(self, secret: str | None = SECRET, *, tls: ssl.SSLContext | None = None) -> None:
        self.secret = secret
        self.tls = tls
        self.requests: list[RecordedRequest] = []
        self.stored: dict[str, dict[str, Any]] = {}
        self.deliveries: list[str] = []
        self.script: deque[ScriptedReply | None] = deque()
        self.delay_seconds = 0.0
        self._idempotency_keys: set[str] = set()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """Where to POST."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        """Listen (again, on the same port once one was chosen)."""
        server = _Server(self.port, self)
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port and reset every open connection, as a crashed server would."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with server.connections_lock:
            connections = list(server.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def handle(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        """Answer one request: the status, headers and body to send back."""
        with self._lock:
            self.requests.append(request)
            scripted = self.script.popleft() if self.script else None
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        if scripted is not None:
            return scripted.status, scripted.headers, scripted.body
        headers = {key.lower(): value for key, value in request.headers.items()}
        if self.secret is not None and not verify_signature(
            self.secret, headers.get("x-timestamp", ""), request.body, headers.get("x-signature", "")
        ):
            return 401, {}, b"bad signature"
        receipts = json.loads(request.body)["receipts"]
        if any(receipt.get("phone_number") == REJECT_PHONE for receipt in receipts):
            return 422, {"Content-Type": "text/plain"}, f"phone_number {REJECT_PHONE} is not a number".encode()
        with self._lock:
            key = headers.get("idempotency-key", "")
            if key in self._idempotency_keys:
                return 200, {}, b'{"duplicate":true}'
            self._idempotency_keys.add(key)
            for receipt in receipts:
                self.deliveries.append(receipt["dedupe_key"])
                self.stored.setdefault(receipt["dedupe_key"], receipt)
        return 200, {}, b'{"ok":true}'


class WebhookEnv:
    """The webhook sink against a :class:`WebhookReceiver`, one receipt per request.

    One receipt per request is what lets a receiver reject one receipt and take the others, which the
    contract suite expects; batch mode is covered by ``tests/integration/test_webhook_sink.py``.
    """

    def __init__(self) -> None:
        self.receiver = WebhookReceiver().start()

    def config(self, **overrides: Any) -> WebhookSinkConfig:
        """The sink's configuration pointing at the receiver."""
        settings: dict[str, Any] = {
            "url": self.receiver.url,
            "secret": SECRET,
            "one_per_request": True,
            "connect_timeout_seconds": 2,
            "read_timeout_seconds": 5,
        }
        return WebhookSinkConfig.model_validate({**settings, **overrides})

    def make_sink(self) -> WebhookSink:
        """A new, unopened sink posting to the receiver."""
        return self.config().build("webhook")

    def stored_keys(self) -> list[str]:
        """The dedupe keys of every request the receiver took as new, repeats included."""
        return list(self.receiver.deliveries)

    def rejectable(self, base: Receipt) -> Receipt | None:
        """``base`` with the phone number the receiver refuses."""
        return dataclasses.replace(base, phone_number=REJECT_PHONE)

    def make_unavailable(self) -> None:
        """Stop the receiver: the port is closed."""
        self.receiver.stop()

    def restore(self) -> None:
        """Start the receiver again on the same port, with what it stored."""
        self.receiver.start()

    def close(self) -> None:
        """Stop the receiver."""
        self.receiver.stop()


def make_env(kind: str, tmp_path: Path) -> WebhookEnv:
    """The contract suite's webhook environment (``kind`` is always ``webhook``)."""
    del kind, tmp_path
    return WebhookEnv()
