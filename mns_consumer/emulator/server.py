"""One HTTP(S) server on one port that plays MNS, Dybaseapi and Dysmsapi, with faults on demand.

Requests are told apart the way the real hosts are:

* ``/queues/...`` is MNS (REST, XML, ``MNS id:signature`` auth);
* ``POST /`` naming an action in ``x-acs-action`` (ACS3 signing) or ``Action`` (classic signing) is the
  POP front end of Dybaseapi (``QueryTokenForMnsQueue``) and Dysmsapi (``QuerySendDetails``);
* ``/__emulator/...`` is the admin endpoint (JSON): state, fault switches, the clock, token expiry,
  receipt seeding, the flow limiter, short batches and the WAN profile. It is unauthenticated, which is
  why the emulator binds to loopback by default.

Beyond faults, three switches make it answer as the service does today: the flow limiter (HTTP 429
``TooManyRequests``, :mod:`~mns_consumer.emulator.flow_limiter`), short batches (a BatchReceiveMessage
answering fewer messages than are visible, reference 3.10) and a WAN profile
(:mod:`~mns_consumer.emulator.wan`). All three are off unless set.

Each connection gets a thread, so a long poll holds only its own connection, as on the real service.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mns_consumer.emulator.admin import AdminApi
from mns_consumer.emulator.clock import Clock
from mns_consumer.emulator.credentials import CredentialStore
from mns_consumer.emulator.faults import FaultRule, Faults
from mns_consumer.emulator.flow_limiter import FlowLimiter, FlowLimits, too_many_requests
from mns_consumer.emulator.http_reply import Reply
from mns_consumer.emulator.mns_api import MnsApi, MnsRequest, flow_units, route
from mns_consumer.emulator.mns_auth import MnsAuthenticator
from mns_consumer.emulator.pop import PopApi
from mns_consumer.emulator.queues import Consumption, Delivery, MnsFault, Queue, QueueAttributes, QueueStore
from mns_consumer.emulator.samples import GeneratedReceipt, ReceiptFactory, encode_body, malformed_body
from mns_consumer.emulator.send_log import SendLog
from mns_consumer.emulator.settings import EmulatorSettings
from mns_consumer.emulator.tls import TlsMaterial, generate_tls_material
from mns_consumer.emulator.wan import WanProfile, handshake_round_trips
from mns_consumer.errors import EmulatorError

ADMIN_PREFIX = "/__emulator/"
MAX_REQUEST_BYTES = 2 * 1024 * 1024
MAX_TRICKLE_RECEIPTS = 1_000_000
"""A trickle's receipts are generated up front; this keeps one request from exhausting memory."""


class Emulator:
    """A running (or startable) emulator of the Alibaba endpoints mns-consumer talks to.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with Emulator(EmulatorSettings(queues={"SmsReport": "Alicom-Queue-i1-SmsReport"})) as emulator:
            emulator.produce("SmsReport", 10)
            ...  # point the SDKs at emulator.endpoint
    """

    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        self.settings = settings or EmulatorSettings()
        self.clock = Clock()
        self.faults = Faults(self.settings.seed)
        self.credentials = CredentialStore(self.clock, self.settings.token_ttl_seconds)
        self.credentials.add_master_key(self.settings.access_key_id, self.settings.access_key_secret)
        self.store = QueueStore(self.clock, self.settings.max_long_polls_per_queue)
        self.send_log = SendLog()
        self.receipts = ReceiptFactory(self.clock, self.settings.seed)
        self.stopping = threading.Event()
        self.flow_limiter = FlowLimiter(self.clock, self.faults.draw, self.settings.flow_limits)
        self.short_batch_probability = 0.0
        self.set_short_batches(self.settings.short_batch_probability)
        self.wan: WanProfile | None = None
        self._wan_rule_id: int | None = None
        self.set_wan(self.settings.wan)
        self.mns = MnsApi(self.settings, self.store, self.stopping, short_batch=self._short_batch)
        self.mns_auth = MnsAuthenticator(self.settings, self.clock, self.credentials)
        self.pop = PopApi(self.settings, self.clock, self.credentials, self.send_log)
        self.admin = AdminApi(self)
        self.tls: TlsMaterial | None = None
        self._random = random.Random(self.settings.seed)
        self._random_lock = threading.Lock()
        self._tls_tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        attributes = QueueAttributes.from_defaults(self.settings.queue_defaults)
        for queue_name in self.settings.queues.values():
            self.store.create(queue_name, attributes)

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind the socket, serve in a background thread, and seed receipts if configured.

        Raises:
            EmulatorError: If the address cannot be bound.
        """
        if self._server is not None:
            return self
        context: ssl.SSLContext | None = None
        if self.settings.tls:
            directory = self.settings.tls_dir
            if directory is None:
                self._tls_tempdir = tempfile.TemporaryDirectory(prefix="mns-consumer-emulator-")
                directory = Path(self._tls_tempdir.name)
            directory.mkdir(parents=True, exist_ok=True)
            self.tls = generate_tls_material(directory, hosts=(self.settings.host,))
            context = self.tls.server_context()
        try:
            self._server = _Server((self.settings.host, self.settings.port), self, context)
        except OSError as exc:
            raise EmulatorError(f"cannot listen on {self.settings.host}:{self.settings.port}: {exc}") from exc
        self.stopping.clear()
        # A short poll interval keeps stop() quick; the accept loop itself is event-driven.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="mns-emulator", daemon=True
        )
        self._thread.start()
        for message_type in self.settings.queues:
            if self.settings.seed_receipts:
                self.produce(message_type, self.settings.seed_receipts)
        return self

    def stop(self) -> None:
        """Stop serving: wake long polls and hung connections, close the socket, join the thread."""
        self.stopping.set()
        for name in self.store.names():
            with contextlib.suppress(MnsFault):
                self.store.get(name).wake()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._tls_tempdir is not None:
            self._tls_tempdir.cleanup()
            self._tls_tempdir = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- where it listens ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port.

        Raises:
            EmulatorError: If the emulator is not started.
        """
        if self._server is None:
            raise EmulatorError("the emulator is not started")
        return int(self._server.server_address[1])

    @property
    def scheme(self) -> str:
        """``https`` in TLS mode, else ``http``."""
        return "https" if self.settings.tls else "http"

    @property
    def endpoint(self) -> str:
        """``host:port``: what Tea clients take as ``Config.endpoint`` (with ``protocol=scheme``)."""
        host = self.settings.host
        if ":" in host:
            host = f"[{host}]"
        if host in ("0.0.0.0", "[::]"):  # noqa: S104  (a wildcard bind is reached through loopback)
            host = "127.0.0.1"
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The MNS endpoint URL, e.g. ``http://127.0.0.1:9100``: what ``mns.account.Account`` takes."""
        return f"{self.scheme}://{self.endpoint}"

    # -- queues and receipts ---------------------------------------------------------------------

    def queue(self, name: str) -> Queue:
        """The emulated queue of that name.

        Raises:
            MnsFault: ``QueueNotExist`` when there is none.
        """
        return self.store.get(name)

    def queue_for(self, message_type: str) -> str:
        """The queue name serving a MessageType.

        Raises:
            EmulatorError: If the type has no configured queue.
        """
        try:
            return self.settings.queues[message_type]
        except KeyError:
            known = ", ".join(sorted(self.settings.queues)) or "none"
            raise EmulatorError(f"no queue is configured for {message_type}; configured: {known}") from None

    def produce(
        self, message_type: str, count: int, *, variant: str = "mainland", malformed: int = 0
    ) -> list[GeneratedReceipt]:
        """Generate ``count`` realistic receipts and enqueue them as Alibaba does (base64 of UTF-8 JSON).

        SmsReport receipts are recorded in the send log first, so QuerySendDetails agrees with them. A
        ``lose`` fault on the producer keeps a receipt out of the queue while its send stays logged.
        ``malformed`` extra poison bodies are enqueued among them.

        Returns:
            The receipts generated, including the ones a ``lose`` fault kept out of the queue.
        """
        queue_name = self.queue_for(message_type)
        queue = self.store.get(queue_name)
        generated = self.receipts.make_many(message_type, count, variant=variant)
        for item in generated:
            if item.send_record is not None:
                self.send_log.add(item.send_record)
            if self.faults.fire("producer", "produce", queue_name):
                continue
            queue.send(encode_body(item.receipt))
        for _ in range(malformed):
            with self._random_lock:
                body = malformed_body(self._random)
            queue.send(body)
        return generated

    def trickle(self, message_type: str, rate_per_second: float, seconds: float) -> threading.Thread:
        """Enqueue ``rate_per_second`` receipts a second for ``seconds``, from a thread, as a steady producer.

        Every receipt is generated (and its send logged) before the first is enqueued, so producing
        costs the emulator almost nothing while a consumer is measured; receipt ``i`` is enqueued
        ``i / rate_per_second`` seconds after the start (late ones at once, so a stall comes out as
        the burst a real producer would send). A ``lose`` fault applies as in :meth:`produce`.

        Returns:
            The producer thread, already started; it ends after the last receipt or on :meth:`stop`.

        Raises:
            EmulatorError: If the type has no queue; ValueError for a rate or length that is not positive,
                or more than :data:`MAX_TRICKLE_RECEIPTS` receipts in all.
        """
        if rate_per_second <= 0 or seconds <= 0:
            raise ValueError("rate_per_second and seconds must be positive")
        if rate_per_second * seconds > MAX_TRICKLE_RECEIPTS:
            raise ValueError(f"a trickle holds at most {MAX_TRICKLE_RECEIPTS} receipts (rate x seconds)")
        queue_name = self.queue_for(message_type)
        queue = self.store.get(queue_name)
        generated = self.receipts.make_many(message_type, round(rate_per_second * seconds))
        bodies: list[str] = []
        for item in generated:
            if item.send_record is not None:
                self.send_log.add(item.send_record)
            bodies.append(encode_body(item.receipt))

        def produce() -> None:
            began = time.monotonic()
            sent = 0
            while sent < len(bodies) and not self.stopping.is_set():
                due = min(len(bodies), int((time.monotonic() - began) * rate_per_second) + 1)
                while sent < due:
                    if not self.faults.fire("producer", "produce", queue_name):
                        queue.send(bodies[sent])
                    sent += 1
                self.stopping.wait(max(0.001, began + sent / rate_per_second - time.monotonic()))

        thread = threading.Thread(target=produce, name=f"trickle:{queue_name}", daemon=True)
        thread.start()
        return thread

    def send_body(self, queue_name: str, body: str, *, priority: int | None = None) -> str:
        """Enqueue a raw body string into any queue; returns the MessageId."""
        return self.store.get(queue_name).send(body, priority=priority).message_id

    def add_fault(self, **fields: Any) -> FaultRule:
        """Switch a fault on; the keyword arguments are :class:`FaultRule` fields."""
        return self.faults.add(FaultRule(**fields))

    def set_flow_limits(self, limits: FlowLimits | None) -> None:
        """Switch the flow limiter on with these limits (``FlowLimits()``: the documented ones), or off with None."""
        self.flow_limiter.configure(limits)

    def set_short_batches(self, probability: float) -> None:
        """Cut this share of BatchReceiveMessage answers short (0 switches it off).

        Raises:
            ValueError: If ``probability`` is not between 0 and 1.
        """
        if not 0.0 <= probability <= 1.0:
            raise ValueError("the short-batch probability must be between 0 and 1")
        self.short_batch_probability = probability

    def set_wan(self, profile: WanProfile | None) -> None:
        """Answer as if over a WAN with this profile (replacing any earlier one), or on loopback with None."""
        if self._wan_rule_id is not None:
            self.faults.remove(self._wan_rule_id)
            self._wan_rule_id = None
        self.wan = profile
        if profile is not None:
            self._wan_rule_id = self.faults.add(profile.rule()).rule_id

    def expire_tokens(self) -> int:
        """Expire every queue token now. Returns how many were live."""
        return self.credentials.expire_all()

    def describe(self) -> dict[str, Any]:
        """What a client needs to reach this emulator (the master secret included: it is a test key)."""
        return {
            "mns_endpoint": self.url,
            "dybaseapi_endpoint": self.endpoint,
            "dysmsapi_endpoint": self.endpoint,
            "protocol": self.scheme,
            "access_key_id": self.settings.access_key_id,
            "access_key_secret": self.settings.access_key_secret,
            "queues": dict(self.settings.queues),
            "token_ttl_seconds": self.settings.token_ttl_seconds,
            "ca_file": str(self.tls.cert_path) if self.tls else None,
            "admin_url": f"{self.url}{ADMIN_PREFIX}",
        }

    # -- request handling (called from connection threads) ---------------------------------------

    def serve_mns(
        self, method: str, raw_target: str, headers: Mapping[str, str], body: bytes, *, handshake_round_trips: int = 0
    ) -> _Outcome:
        """Authenticate, route, apply faults and the flow limiter, and answer one MNS request.

        ``handshake_round_trips`` is what the request's connection cost to set up, if it is the first
        request on it (0 otherwise); latency rules with ``handshake`` charge it.
        """
        try:
            request = route(method, raw_target, body)
        except MnsFault as fault:
            return _Outcome(self.mns.error(fault))
        outcome, post = self._pre_faults("mns", request.operation, request.queue, self.mns.error, handshake_round_trips)
        if outcome is not None:
            return outcome
        drop = any(r.kind == "drop" for r in post)
        try:
            caller = self.mns_auth.authenticate(method, raw_target, headers, body)
        except MnsFault as fault:
            return _Outcome(self.mns.error(fault), drop=drop)
        if self.flow_limiter.check(request.operation, request.queue, lambda: self._consumption(request.queue)):
            # Backpressure: the service holds a refused request before answering (reference 3.9).
            limits = self.flow_limiter.limits
            self.stopping.wait(limits.hold_seconds if limits else 0.0)
            return _Outcome(self.mns.error(too_many_requests()), drop=drop)
        reply, deliveries = self.mns.handle(request, caller)
        self.flow_limiter.charge(flow_units(request, reply, deliveries))
        return self._post_faults(request, reply, deliveries, post)

    def serve_pop(
        self, method: str, raw_target: str, headers: Mapping[str, str], body: bytes, *, handshake_round_trips: int = 0
    ) -> _Outcome:
        """Apply faults and answer one Dybaseapi/Dysmsapi request."""
        operation = self.pop.operation(raw_target.partition("?")[2], headers) or ""
        service = PopApi.service_of(operation) if operation else "dybaseapi"

        def pop_error(fault: MnsFault) -> Reply:
            return self.pop.error(fault.status, fault.code, fault.message)

        outcome, post = self._pre_faults(service, operation, None, pop_error, handshake_round_trips)
        if outcome is not None:
            return outcome
        reply = self.pop.handle(method, raw_target, headers, body)
        return _Outcome(reply, drop=any(r.kind == "drop" for r in post))

    def _consumption(self, queue_name: str | None) -> Consumption | None:
        if queue_name is None:
            return None
        try:
            return self.store.get(queue_name).consumption()
        except MnsFault:
            return None

    def _short_batch(self, could_take: int) -> int | None:
        """How many messages a batch receive that could take ``could_take`` takes: fewer, or None for all."""
        probability = self.short_batch_probability
        if not probability or self.faults.draw() >= probability:
            return None
        return self.faults.draw_below(could_take)

    def _pre_faults(
        self,
        service: str,
        operation: str,
        queue: str | None,
        render: Callable[[MnsFault], Reply],
        handshake_round_trips: int = 0,
    ) -> tuple[_Outcome | None, list[FaultRule]]:
        """Apply the faults that act before a request is served; return the ones that act after it."""
        fired = self.faults.fire(service, operation, queue)
        post = [r for r in fired if r.kind in ("drop", "duplicate", "malformed")]
        for rule in fired:
            if rule.kind == "latency" and (rule.seconds or rule.jitter_seconds):
                round_trips = 1 + (handshake_round_trips if rule.handshake else 0)
                self.stopping.wait(self.faults.delay_seconds(rule, round_trips))
        for rule in fired:
            if rule.kind == "hang":
                seconds = self.settings.hang_seconds_max if rule.seconds is None else rule.seconds
                return _Outcome(None, hang_seconds=min(seconds, self.settings.hang_seconds_max)), []
            if rule.kind == "error":
                return _Outcome(render(MnsFault(rule.code, rule.status, rule.message))), []
        return None, post

    def _post_faults(
        self, request: MnsRequest, reply: Reply, deliveries: list[Delivery], rules: list[FaultRule]
    ) -> _Outcome:
        drop = False
        for rule in rules:
            if rule.kind == "drop":
                drop = True
            elif rule.kind == "duplicate" and request.queue:
                queue = self.store.get(request.queue)
                for delivery in deliveries:
                    queue.send(delivery.body)
            elif rule.kind == "malformed" and request.queue:
                queue = self.store.get(request.queue)
                for delivery in deliveries:
                    with self._random_lock:
                        poison = malformed_body(self._random)
                    queue.rewrite_body(delivery.message_id, poison)
        return _Outcome(reply, drop=drop)


class _Outcome:
    """What the connection handler must do: send a reply, cut it mid-way, or hold the connection."""

    __slots__ = ("drop", "hang_seconds", "reply")

    def __init__(self, reply: Reply | None, *, drop: bool = False, hang_seconds: float = 0.0) -> None:
        self.reply = reply
        self.drop = drop
        self.hang_seconds = hang_seconds


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: Emulator, context: ssl.SSLContext | None) -> None:
        self.emulator = emulator
        self.tls_context = context
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls_context is None:
            super().finish_request(request, client_address)
            return
        # The TLS handshake runs in the connection's own thread, so a client that never completes it
        # holds only that thread, never the accept loop. The wrapped socket owns the descriptor from
        # here on, so it is closed here: shutdown_request() only sees the detached plain socket.
        request.settimeout(10)
        tls = self.tls_context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        try:
            tls.do_handshake()
            tls.settimeout(None)
            super().finish_request(tls, client_address)
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                tls.shutdown(socket.SHUT_RDWR)
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-request is routine for an emulator under fault injection.
        return


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "mns-consumer-emulator"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self._requests_served = 0

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        emulator = self.server.emulator
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            self._write(Reply(413, b"request too large"))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        target = self.path
        if target.startswith(ADMIN_PREFIX):
            self._write(emulator.admin.handle(self.command, target, body))
            return
        # The first request on a connection pays for setting it up, when a WAN profile says so.
        handshake = 0
        if self._requests_served == 0:
            handshake = handshake_round_trips(getattr(self.connection, "version", lambda: None)())
        self._requests_served += 1
        if target.startswith("/queues"):
            outcome = emulator.serve_mns(self.command, target, headers, body, handshake_round_trips=handshake)
        elif target == "/" or target.startswith("/?"):
            outcome = emulator.serve_pop(self.command, target, headers, body, handshake_round_trips=handshake)
        else:
            self._write(Reply.json(404, json.dumps({"Code": "InvalidRequestURL", "Message": f"No route: {target}"})))
            return
        if outcome.reply is None:
            emulator.stopping.wait(outcome.hang_seconds)
            self.close_connection = True
            return
        self._write(outcome.reply, drop=outcome.drop)

    def _write(self, reply: Reply, *, drop: bool = False) -> None:
        head = [f"HTTP/1.1 {reply.status} {self.responses.get(reply.status, ('',))[0]}"]
        head.append(f"Date: {self.date_time_string()}")
        head.append(f"Server: {self.server_version}")
        head.extend(f"{name}: {value}" for name, value in reply.headers.items())
        head.append(f"Content-Length: {len(reply.body)}")
        if self.close_connection:
            head.append("Connection: close")
        payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body
        if drop:
            # Headers promise the whole body; half of it arrives, then the connection is cut.
            cut = len(payload) - max(1, len(reply.body) // 2)
            with contextlib.suppress(OSError):
                self.wfile.write(payload[:cut])
                self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(payload)


@contextlib.contextmanager
def running_emulator(settings: EmulatorSettings | None = None, **overrides: Any) -> Iterator[Emulator]:
    """Start an emulator (on a free loopback port unless told otherwise) and stop it afterwards.

    Args:
        settings: Full settings; ``overrides`` replace single fields of it (or of the defaults).
    """
    base = settings or EmulatorSettings()
    if overrides:
        base = EmulatorSettings(**{**base.__dict__, **overrides})
    emulator = Emulator(base)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()
