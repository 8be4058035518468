"""The HTTP endpoint Alibaba's batch push mode POSTs receipts to (reference section 5).

A push is answered ``200 {"code":0,"msg":"接收成功"}`` only once its body is committed to the
:class:`~mns_consumer.push.spool.Spool`, so the answer never waits for a sink and stays far inside
Alibaba's 700 ms. Refusals carry a ``code`` equal to the HTTP status and store nothing. Elements of a
valid array that are not valid receipts are accepted and dead-lettered by the workers: a 4xx would make
Alibaba resend the whole array, then drop the good receipts with the bad. Alibaba drops a push after
three refused or slow attempts, so the ``ThreadingHTTPServer`` has a deep backlog, one
``read_timeout_seconds`` deadline per request, and a connection cap that sheds the connection waiting
longest for its request.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import json
import re
import resource
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from mns_consumer.config import PushConfig, PushRouteConfig
from mns_consumer.errors import PushRejected, SpoolUnavailable
from mns_consumer.observe.events import Events
from mns_consumer.observe.health import LISTEN_BACKLOG
from mns_consumer.observe.metrics import UNKNOWN_PUSH_ROUTE
from mns_consumer.push.spool import Spool
from mns_consumer.receipts import JSON_DECODER

log = structlog.get_logger("mns_consumer.push")

ACCEPTED_BODY = json.dumps({"code": 0, "msg": "接收成功"}, ensure_ascii=False).encode("utf-8")
"""Alibaba's documented success answer (reference 5); only ``code`` is checked, as a number."""

URL_CHECK_BODY = json.dumps({"code": 0, "msg": "成功"}, ensure_ascii=False).encode("utf-8")
"""The answer Alibaba's console expects, within 700 ms, when it checks a callback URL (a GET), before saving it."""

RETRY_AFTER_SECONDS = 60
"""Hint sent with 503s; Alibaba keeps its own schedule (1, 5, 10 minutes) regardless."""

RESERVED_DESCRIPTORS = 64
"""Descriptors left to everything else (spool, sinks, logs, metrics) when the connection cap is derived
from ``RLIMIT_NOFILE``: a listener out of descriptors cannot accept anything, pushes included."""

_ASCII_DIGITS = re.compile(r"[0-9]{1,18}")
"""A ``Content-Length`` (RFC 9110 8.6): ASCII digits only; ``str.isdigit`` also takes ``²`` and ``٣``."""


class PushReceiver:
    """Serves the push routes on ``push.listen`` in background threads, writing into a spool.

    ``on_spooled`` is called with the route's name after each stored push (it wakes the route's worker).
    ``tls`` says whether it serves HTTPS itself; ``port`` and ``address`` (``host:port``) are as bound.
    """

    def __init__(
        self, config: PushConfig, spool: Spool, events: Events, on_spooled: Callable[[str], None] = lambda _: None
    ) -> None:
        self.config = config
        self.spool = spool
        self.events = events
        self.on_spooled = on_spooled
        self.accepting = threading.Event()  # cleared: pushes are answered 503, so Alibaba retries them later
        self.accepting.set()
        self._routes = [(route.url_path().encode("utf-8"), route) for route in config.routes]
        handler = type("PushHandler", (_Handler,), {"owner": self, "timeout": config.read_timeout_seconds})
        self._server = _Server(config.address(), handler, config.read_timeout_seconds, config.max_connections)
        if config.tls_cert_file is not None and config.tls_key_file is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
            # The handshake runs in the connection's thread (see _Handler.setup), not in the accept loop.
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.2,), name="push", daemon=True)
        self.tls = config.tls_cert_file is not None
        self.port = int(self._server.server_address[1])
        self.address = f"{config.address()[0]}:{self.port}"

    def alive(self) -> bool:
        """Whether the accept loop runs."""
        return self._thread.is_alive()

    def start(self) -> PushReceiver:
        """Serve in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.accepting.clear()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def route_for(self, path: bytes) -> PushRouteConfig | None:
        """The route whose whole path (secret included) is ``path``, compared in constant time."""
        # Every route is compared, so the time taken says nothing about how much of a secret matched.
        found = [route for candidate, route in self._routes if hmac.compare_digest(candidate, path)]
        return found[-1] if found else None

    def handle_push(self, route: PushRouteConfig, content_type: str, body: bytes) -> int:
        """Check and spool one push body; returns how many receipts it holds.

        Raises:
            PushRejected: If it must be refused (nothing was stored).
        """
        if not self.accepting.is_set():
            raise PushRejected(503, "drain", "the receiver is shutting down; send it again later")
        if not _is_json_utf8(content_type):
            raise PushRejected(415, "request", "Content-Type must be application/json (UTF-8)")
        try:
            document: Any = JSON_DECODER.decode(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            # NaN and Infinity included: the workers' decoder refuses them, and refusing the push here
            # keeps Alibaba retrying it instead of losing its good receipts in one undecodable dead letter.
            raise PushRejected(400, "body", "the body is not UTF-8 JSON (NaN and Infinity are not JSON)") from None
        if not isinstance(document, list):
            raise PushRejected(400, "body", "the body must be a JSON array of receipts")
        if len(document) > self.config.max_items:
            raise PushRejected(413, "request", f"more than {self.config.max_items} receipts in one push")
        if not document:
            return 0
        try:
            self.spool.append(route.label, route.message_type, body, len(document))
        except SpoolUnavailable as exc:
            self.events.push_spool_failed(route.label, route.message_type, exc.reason)
            raise PushRejected(503, "spool", "the push could not be stored; send it again later") from None
        self.on_spooled(route.label)
        return len(document)


class _Connection(io.RawIOBase):
    """One accepted connection: whether it is waiting for a request, since when, and its reads, each
    bounded by what is left of the request's deadline (the socket timeout bounds only one recv)."""

    def __init__(self, sock: socket.socket, read_timeout_seconds: float) -> None:
        super().__init__()
        self.sock = sock
        self.expect_request(read_timeout_seconds)

    def expect_request(self, read_timeout_seconds: float) -> None:
        """The next request (line, headers, body) must arrive within the deadline from now."""
        self.reading = True
        self.waiting_since = time.monotonic()
        self.deadline = self.waiting_since + read_timeout_seconds

    def shed(self) -> None:
        """Wake the connection's thread, whose read then sees the end of the stream, and let it close."""
        # socket.socket's own shutdown: an SSLSocket's would drop its TLS state under the reading thread.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive within read_timeout_seconds")
        self.sock.settimeout(remaining)
        return self.sock.recv_into(buffer)


class _Server(ThreadingHTTPServer):
    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], read_timeout_seconds: float, max_connections: int
    ) -> None:
        super().__init__(address, handler)
        self.read_timeout_seconds = read_timeout_seconds
        # Lowered to fit the soft RLIMIT_NOFILE with RESERVED_DESCRIPTORS to spare.
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY:
            max_connections = max(1, min(max_connections, soft - RESERVED_DESCRIPTORS))
        self.max_connections = max_connections
        self._connections: dict[int, _Connection] = {}
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        connection = _Connection(request, self.read_timeout_seconds)
        with self._connections_lock:
            refused = len(self._connections) >= self.max_connections and not self._shed_one()
            if not refused:
                self._connections[id(request)] = connection
        if refused:
            # Every slot is storing a push: closing at once lets the client retry rather than wait.
            log.warning("push.connection_refused", connections=self.max_connections)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def _shed_one(self) -> bool:
        """Shed the connection waiting longest for its request; False if none waits (lock held)."""
        oldest = min(((c.waiting_since, key) for key, c in self._connections.items() if c.reading), default=None)
        if oldest is not None:
            self._connections.pop(oldest[1]).shed()
        return oldest is not None

    def connection(self, request: Any) -> _Connection:
        """The state of an accepted connection (a shed one keeps its state, though no longer counted)."""
        with self._connections_lock:
            found = self._connections.get(id(request))
        return found if found is not None else _Connection(request, self.read_timeout_seconds)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.pop(id(request), None)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; a broken connection is routine, and a bug is logged
        # without the request line (whose path may hold a secret).
        log.debug("push.connection_error", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    owner: PushReceiver
    protocol_version = "HTTP/1.1"
    server_version = "mns-consumer"
    sys_version = ""

    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._state = self.server.connection(self.request)
        # Every read of the request goes through the deadline.
        self.rfile.close()
        self.rfile = io.BufferedReader(self._state)
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def handle_one_request(self) -> None:
        super().handle_one_request()
        # A kept-alive connection gets a fresh deadline for its next request (and is sheddable meanwhile).
        self._state.expect_request(self.server.read_timeout_seconds)

    def log_message(self, format: str, *args: Any) -> None:
        # The standard library logs the request line, whose path holds the route's secret: never.
        return

    def do_POST(self) -> None:
        started = time.monotonic()
        route = self._route()
        if route is None:
            return
        try:
            body = self._read_body()
            self._state.reading = False
            if not body:
                self._answer_url_check(route)
                return
            receipts = self.owner.handle_push(route, self.headers.get("Content-Type", ""), body)
        except PushRejected as rejected:
            self._refuse(route, rejected)
            return
        self._answer(200, ACCEPTED_BODY)
        self.owner.events.push_accepted(route.label, route.message_type, receipts, time.monotonic() - started)

    def _read_body(self) -> bytes:
        lengths = self.headers.get_all("Content-Length") or []
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None and lengths:
            # Which of the two framings a proxy in front used is unknowable: the smuggling case.
            raise PushRejected(400, "request", "Transfer-Encoding and Content-Length together")
        if encoding is not None and encoding.strip().lower() != "identity":
            raise PushRejected(411, "request", "send the body with a Content-Length")
        if not lengths:
            # Neither Content-Length nor Transfer-Encoding: no body (RFC 9112 6.3), as in a URL check.
            return b""
        length_text = lengths[0].strip()
        if not _ASCII_DIGITS.fullmatch(length_text):
            raise PushRejected(400, "request", "Content-Length must be ASCII digits")
        if any(other.strip() != length_text for other in lengths[1:]):
            raise PushRejected(400, "request", "Content-Length is given twice with different values")
        length = int(length_text)
        if length > self.owner.config.max_body_bytes:
            raise PushRejected(413, "request", f"the body exceeds {self.owner.config.max_body_bytes} bytes")
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            raise PushRejected(400, "request", "the body ended before Content-Length")
        return body

    def do_GET(self) -> None:
        route = self._route()
        if route is not None:
            self._answer_url_check(route)

    def _answer_url_check(self, route: PushRouteConfig) -> None:
        """Answer the console's URL check (a GET, or an empty POST): nothing is stored or counted."""
        self._answer(200, URL_CHECK_BODY)
        log.info("push.url_checked", queue=route.label, message_type=route.message_type, method=self.command)

    def _not_post(self) -> None:
        route = self._route()
        if route is not None:
            self._refuse(route, PushRejected(405, "request", "only POST is served here"))

    def _route(self) -> PushRouteConfig | None:
        """The route the request's path names; None after answering 404 when it names none."""
        route = self.owner.route_for(self.path.split("?", 1)[0].encode("utf-8", "surrogateescape"))
        if route is None:
            self._refuse(None, PushRejected(404, "route", "no push route here"))
        return route

    # BaseHTTPRequestHandler dispatches on these names.
    do_HEAD = do_GET  # noqa: N815
    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_post  # noqa: N815

    def _refuse(self, route: PushRouteConfig | None, rejected: PushRejected) -> None:
        headers = {"Allow": "POST, GET"} if rejected.status == 405 else {}
        if rejected.status == 503:
            headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        if rejected.status in (400, 411, 413, 415) or route is None:
            # The body may be unread (or half read): the connection cannot be reused.
            self.close_connection = True
        # Counted before the answer, so whoever sees the 503 also sees it in /metrics.
        label, message_type = (route.label, route.message_type) if route is not None else (UNKNOWN_PUSH_ROUTE, "")
        self.owner.events.push_rejected(label, message_type, rejected.stage, rejected.status, rejected.message)
        body = json.dumps({"code": rejected.status, "msg": rejected.message}).encode("utf-8")
        self._answer(rejected.status, body, headers)

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _is_json_utf8(content_type: str) -> bool:
    """``application/json``, with no charset or a UTF-8 one (Alibaba sends ``;charset=utf-8``)."""
    media, _, parameters = content_type.partition(";")
    if media.strip().lower() != "application/json":
        return False
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True
