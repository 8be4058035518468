"""The daemon's own HTTP endpoint: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz`` for probes.

Liveness and readiness themselves are the supervisor's probes; both bodies are JSON with the state
that explains them, for an operator to read directly.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

LISTEN_BACKLOG = 1024
"""Connections the kernel holds for a listener until it accepts them (the push receiver's too).

socketserver's default of 5 resets most of a burst of clients (docs/benchmarks.md, HTTP push).
Linux caps it at ``net.core.somaxconn`` (4096 by default)."""

Probe = Callable[[], tuple[bool, dict[str, Any]]]
"""Returns whether the probe passes and the JSON-ready state that explains it."""


class HealthServer:
    """Serves metrics and probes on ``host:port`` in a background thread."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, liveness: Probe, readiness: Probe) -> None:
        self.registry = registry
        self.liveness = liveness
        self.readiness = readiness
        handler = type("Handler", (_Handler,), {"owner": self})
        self._server = _Server((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.2,), name="health", daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        """Serve in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Server(ThreadingHTTPServer):
    request_queue_size = LISTEN_BACKLOG


class _Handler(BaseHTTPRequestHandler):
    owner: HealthServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Head and body go out in two writes; without NODELAY the second waits for a delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._answer(200, generate_latest(self.owner.registry), CONTENT_TYPE_LATEST)
        elif path in ("/healthz", "/readyz"):
            probe = self.owner.liveness if path == "/healthz" else self.owner.readiness
            passing, state = probe()
            body = json.dumps({"status": "ok" if passing else "failing", **state}, default=str).encode()
            self._answer(200 if passing else 503, body, "application/json")
        else:
            self._answer(404, b'{"error": "not found; try /metrics, /healthz or /readyz"}', "application/json")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)
