"""One MNS queue as the poller sees it: batch receive, batch delete, visibility changes, abort.

The SDK (``aliyun-mns-sdk``) signs every request and decodes every error answer; urllib3 carries them
(chosen over httpx for half the CPU per receipt: docs/benchmarks.md). The SDK has no public way to sign
without sending, so its two public-named steps are called around our transport: ``MNSClient.build_header``
(sign, security token) and ``MNSClient.check_status`` (error XML to ``MNSServerException``). Its own
``http.client`` transport has no read timeout over HTTPS, no proxy support and no way to interrupt a long
poll (reference 3.7, pitfalls 9 and 10).

Error mapping (the raised error keeps the MNS or local ``code``): ``MessageNotExist`` on receive is the
idle path (``[]``); ``QueueNotExist`` is :class:`QueueNotFound`; ``AccessDenied``, ``TimeExpired`` and any
code naming a key, token, signature or authorization is :class:`QueueAuthError` (the poller refreshes
its token); ``MessageNotExist``/``ReceiptHandleError`` on change_visibility is :class:`MessageGone`;
``TooManyRequests`` (429), ``QpsLimitExceeded`` and ``Throttling.*`` are :class:`QueueThrottled`
(backpressure); anything else, and every transport failure, is :class:`QueueUnavailable`. Messages
never quote the SDK's or urllib3's text, which can hold response bodies or header values (the token).
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import ssl
import threading
from collections.abc import Sequence
from typing import Any, Final

import urllib3
from mns.account import Account
from mns.auth import CredentialsProvider
from mns.mns_exception import MNSClientNetworkException, MNSClientParameterException, MNSServerException
from mns.mns_http import RequestInternal, ResponseInternal
from mns.mns_request import (
    BatchDeleteMessageRequest,
    BatchReceiveMessageRequest,
    ChangeMessageVisibilityRequest,
    GetQueueAttributesRequest,
    ResponseBase,
)
from mns.mns_tool import BatchDeleteMessageValidator
from mns.mns_xml_handler import BatchDeleteMessageDecoder, ChangeMsgVisDecoder, ErrorDecoder, GetQueueAttrDecoder
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ProtocolError, ReadTimeoutError

from mns_consumer.alicom.message import ReceivedMessage
from mns_consumer.alicom.mns_xml import parse_batch_receive, receipt_handles_xml
from mns_consumer.errors import (
    AlicomError,
    DamagedAnswerError,
    MessageGone,
    QueueAuthError,
    QueueNotFound,
    QueueThrottled,
    QueueUnavailable,
)

__all__ = [
    "ABORTED",
    "MAX_BATCH_SIZE",
    "MAX_VISIBILITY_TIMEOUT_SECONDS",
    "MAX_WAIT_SECONDS",
    "NETWORK_ERROR",
    "RESP_DATA_DAMAGED",
    "TIMEOUT",
    "UNEXPECTED_STATUS",
    "MnsQueue",
    "ReceivedMessage",
]

MAX_BATCH_SIZE: Final = 16
"""Most messages one BatchReceiveMessage returns and one BatchDeleteMessage accepts (reference 3.5)."""
MAX_WAIT_SECONDS: Final = 30
"""Longest long-poll wait MNS accepts (reference 3.5)."""
MAX_VISIBILITY_TIMEOUT_SECONDS: Final = 43200
"""Longest visibility timeout MNS accepts (reference 3.4, ChangeMessageVisibility)."""

ABORTED: Final = "Aborted"
"""``QueueUnavailable.code`` of a call interrupted by :meth:`MnsQueue.abort`."""
NETWORK_ERROR: Final = "NetworkError"
"""``QueueUnavailable.code`` when the connection (or the proxy) failed or broke mid-answer."""
TIMEOUT: Final = "Timeout"
"""``QueueUnavailable.code`` when connecting or the answer took longer than the call's timeout."""
RESP_DATA_DAMAGED: Final = "RespDataDamaged"
"""``QueueUnavailable.code`` when the answer could not be parsed (reference pitfall 14)."""
UNEXPECTED_STATUS: Final = "UnexpectedStatus"
"""``QueueUnavailable.code`` when the HTTP status was outside 200-600."""

_AUTH_CODES: Final = frozenset({"AccessDenied", "TimeExpired"})
# MNS does not document the code of an expired or invalid STS token (reference 3.3, 10), so any code
# that names a credential part counts as an auth failure, which makes the poller refresh its token.
_AUTH_MARKERS: Final = ("AccessKey", "SecurityToken", "Signature", "Authorization", "Forbidden", "Unauthorized")
_GONE_CODES: Final = frozenset({"MessageNotExist", "ReceiptHandleError"})
_THROTTLE_CODES: Final = frozenset({"TooManyRequests", "QpsLimitExceeded"})


class MnsQueue:
    """A client of one MNS queue, with explicit timeouts, abort, proxy and mapped errors.

    One instance per thread (one pooled connection each); only :meth:`abort` may be called from another.
    A receive may take ``wait_seconds + request_timeout_seconds``; every other call
    ``request_timeout_seconds``; connecting (TCP, proxy, TLS) ``connect_timeout_seconds``. Credentials
    are read on every request, so a refreshed queue token takes effect at once.

    Args:
        endpoint_url: ``http://`` or ``https://`` MNS endpoint.
        queue_name: The queue.
        credentials: Any ``mns.auth.CredentialsProvider``; its ``security_token`` is ``""`` when none.
        ca_file: A PEM bundle to trust instead of the system's (which honours ``SSL_CERT_FILE``).
        proxy: Proxy URL for this endpoint (see :meth:`Endpoints.proxy_for
            <mns_consumer.alicom.endpoints.Endpoints.proxy_for>`); None connects directly.

    Raises:
        ValueError: If a timeout is not positive, the SDK refuses the URL, or ``ca_file`` cannot be loaded.
    """

    def __init__(
        self,
        endpoint_url: str,
        queue_name: str,
        credentials: CredentialsProvider,
        *,
        request_timeout_seconds: float = 10.0,
        connect_timeout_seconds: float = 5.0,
        ca_file: str | None = None,
        proxy: str | None = None,
    ) -> None:
        if request_timeout_seconds <= 0 or connect_timeout_seconds <= 0:
            raise ValueError("request_timeout_seconds and connect_timeout_seconds must be positive")
        try:
            self._signer: Any = Account(endpoint_url, credentials_provider=credentials).mns_client
        except MNSClientParameterException as exc:
            raise ValueError(f"{exc.type}: {exc.message}") from exc
        try:
            context = tls_context(ca_file)
        except OSError as exc:
            raise ValueError(f"cannot load ca_file {ca_file}: {exc}") from exc
        self._queue_name = queue_name
        base_url = endpoint_url.rstrip("/")
        self._request_timeout_seconds = float(request_timeout_seconds)
        self._connect_timeout_seconds = float(connect_timeout_seconds)
        # The proxy was decided by Endpoints, the same way for MNS, Dybaseapi and Dysmsapi.
        pool_settings: dict[str, Any] = {"maxsize": 1, "retries": False, "ssl_context": context}
        manager = urllib3.ProxyManager(proxy, **pool_settings) if proxy else urllib3.PoolManager(**pool_settings)
        manager.pool_classes_by_scheme = _POOL_CLASSES
        # One endpoint, one pool: asked for once, not found again by the manager on every call.
        self._pool = manager.connection_from_url(base_url)
        # What ProxyManager.urlopen adds to plain HTTP through a proxy: the whole URL in the request line
        # and an Accept header. HTTPS through a proxy is tunnelled (CONNECT) and sent as if direct.
        forwarded = proxy is not None and base_url.startswith("http://")
        self._target_prefix = base_url if forwarded else ""
        self._proxy_headers = {"Accept": "*/*"} if forwarded else {}
        self._lock = threading.Lock()
        self._abort_requested = False
        self._sock: socket.socket | None = None
        # Whether the current attempt opened its connection (only a kept-alive one may be stale).
        self._connected = False

    @property
    def queue_name(self) -> str:
        """The queue this client reads."""
        return self._queue_name

    def receive(self, batch_size: int, wait_seconds: int) -> list[ReceivedMessage]:
        """Receive up to ``batch_size`` (1-16) messages, long-polling up to ``wait_seconds`` (0-30).

        Returns ``[]`` when none arrived within the wait: the idle path, not an error (pitfall 2).

        Raises:
            ValueError: If an argument is out of range.
            QueueNotFound, QueueAuthError, QueueUnavailable: See the module docstring.
        """
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, not {batch_size}")
        if not 0 <= wait_seconds <= MAX_WAIT_SECONDS:
            raise ValueError(f"wait_seconds must be between 0 and {MAX_WAIT_SECONDS}, not {wait_seconds}")
        operation = "BatchReceiveMessage"
        request = BatchReceiveMessageRequest(self._queue_name, batch_size, False, wait_seconds)
        uri = f"/queues/{self._queue_name}/messages?numOfMessages={batch_size}&waitseconds={wait_seconds}"
        try:
            body = self._call(operation, request, uri, wait_seconds + self._request_timeout_seconds)
        except MNSServerException as exc:
            if exc.type == "MessageNotExist":
                return []
            raise self._server_error(operation, exc) from exc
        try:
            # ElementTree, seven times faster than the SDK's minidom (mns_xml).
            return parse_batch_receive(body)
        except DamagedAnswerError as exc:
            raise QueueUnavailable(RESP_DATA_DAMAGED, self._where(operation, f"the answer is damaged: {exc}")) from None

    def delete(self, handles: Sequence[str]) -> dict[str, str]:
        """Delete messages by receipt handle, in BatchDeleteMessage calls of at most 16 handles.

        Returns:
            Each handle MNS refused, with its error code (``ReceiptHandleError`` for a stale or used one);
            empty when every message was deleted.

        Raises:
            QueueNotFound, QueueAuthError, QueueUnavailable: A whole request failed. Batches sent before
                it stay deleted; the rest stay in the queue.
        """
        if isinstance(handles, str):
            raise TypeError("handles must be a sequence of receipt handles, not one string")
        operation = "BatchDeleteMessage"
        failed: dict[str, str] = {}
        for start in range(0, len(handles), MAX_BATCH_SIZE):
            chunk = list(handles[start : start + MAX_BATCH_SIZE])
            request = BatchDeleteMessageRequest(self._queue_name, chunk)
            BatchDeleteMessageValidator.validate(request)
            uri = f"/queues/{self._queue_name}/messages"
            try:
                self._call(
                    operation,
                    request,
                    uri,
                    self._request_timeout_seconds,
                    body=receipt_handles_xml(chunk),
                    decoder=BatchDeleteMessageDecoder,
                )
            except MNSServerException as exc:
                # A partial failure lists only the refused handles, in sub_errors (reference 3.4).
                if exc.sub_errors is None:
                    raise self._server_error(operation, exc) from exc
                failed.update({str(item["ReceiptHandle"]): str(item["ErrorCode"]) for item in exc.sub_errors})
        return failed

    def change_visibility(self, handle: str, visibility_timeout_seconds: int) -> tuple[str, int]:
        """Make a received message invisible for ``visibility_timeout_seconds`` (1-43200) from now.

        Returns:
            The new receipt handle (the old one is refused from now on) and the next-visible time in ms.

        Raises:
            MessageGone: The message was deleted, expired, or the handle is stale.
            QueueAuthError: Also when a queue token may not make this call (reference 10).
            QueueNotFound, QueueUnavailable: See the module docstring.
        """
        if not 1 <= visibility_timeout_seconds <= MAX_VISIBILITY_TIMEOUT_SECONDS:
            raise ValueError(
                f"visibility_timeout_seconds must be between 1 and {MAX_VISIBILITY_TIMEOUT_SECONDS}, "
                f"not {visibility_timeout_seconds}"
            )
        operation = "ChangeMessageVisibility"
        request = ChangeMessageVisibilityRequest(self._queue_name, handle, visibility_timeout_seconds)
        uri = (
            f"/queues/{self._queue_name}/messages?ReceiptHandle={handle}&VisibilityTimeout={visibility_timeout_seconds}"
        )
        try:
            body = self._call(operation, request, uri, self._request_timeout_seconds)
            new_handle, next_visible = self._decode(operation, ChangeMsgVisDecoder, body)
        except MNSServerException as exc:
            if exc.type in _GONE_CODES:
                raise MessageGone(
                    str(exc.type), self._where(operation, str(exc.message)), request_id=_optional_str(exc.req_id)
                ) from exc
            raise self._server_error(operation, exc) from exc
        try:
            return str(new_handle), int(next_visible)
        except (TypeError, ValueError) as exc:
            raise QueueUnavailable(
                RESP_DATA_DAMAGED, self._where(operation, "NextVisibleTime is not a number")
            ) from exc

    def probe(self) -> str:
        """Check that the queue exists and the credentials are accepted, without taking any message.

        A queue token refused GetQueueAttributes (AccessDenied) still proves signature and token.

        Returns:
            A one-line description, e.g. ``"3 active, 0 inactive, 0 delayed"``.
        """
        operation = "GetQueueAttributes"
        request = GetQueueAttributesRequest(self._queue_name)
        try:
            body = self._call(operation, request, f"/queues/{self._queue_name}", self._request_timeout_seconds)
            attributes = self._decode(operation, GetQueueAttrDecoder, body)
        except MNSServerException as exc:
            error = self._server_error(operation, exc)
            if isinstance(error, QueueAuthError) and error.code == "AccessDenied":
                return "reachable; the token may not read queue attributes"
            raise error from exc
        return "{ActiveMessages} active, {InactiveMessages} inactive, {DelayMessages} delayed".format(**attributes)

    def abort(self) -> None:
        """Interrupt the call in progress from any thread (e.g. a 30 s long poll during shutdown).

        The live socket is shut down, so the call fails at once with ``QueueUnavailable("Aborted")``;
        closing it would not wake a blocked read. An abort between calls fails the next call instead,
        without touching the network, so a stop request is never lost.
        """
        with self._lock:
            self._abort_requested = True
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the connection. Safe to call more than once."""
        self._pool.close()

    # -- internals -------------------------------------------------------------------------------

    def _call(
        self,
        operation: str,
        request: Any,
        uri: str,
        timeout_seconds: float,
        *,
        body: bytes = b"",
        decoder: Any = ErrorDecoder,
    ) -> bytes:
        """Sign with the SDK, send with urllib3, let the SDK decode an error answer; return a success body.

        Raises:
            MNSServerException: For an error answer, as the SDK's own methods raise it.
            QueueUnavailable: For a transport failure or an abort.
        """
        with self._lock:
            aborted, self._abort_requested = self._abort_requested, False
        if aborted:
            raise QueueUnavailable(ABORTED, self._where(operation, "aborted before it started"))
        internal = RequestInternal(request.method, uri, data=body or "")
        self._signer.build_header(request, internal)
        headers = {**self._proxy_headers, **internal.header}
        headers["Host"] = headers.pop("host")  # as urllib3 names it
        timeout = urllib3.Timeout(connect=self._connect_timeout_seconds, read=timeout_seconds)
        _calling.queue = self
        try:
            for attempt in (1, 2):
                self._connected = False
                try:
                    answer = self._pool.urlopen(
                        internal.method,
                        self._target_prefix + uri,
                        body=body or None,
                        headers=headers,
                        timeout=timeout,
                        preload_content=False,
                        redirect=False,
                        assert_same_host=False,
                    )
                    break
                except ProtocolError as exc:
                    # A kept-alive connection the server closed while idle fails before any answer: send
                    # again once on a new one, as the SDK did. A repeated receive at worst hides messages
                    # for their visibility timeout; a repeated delete finds its handles used.
                    with self._lock:
                        stale = attempt == 1 and not (self._connected or self._abort_requested)
                    if not stale:
                        raise self._network_error(operation, exc, timeout_seconds) from None
                except HTTPError as exc:
                    raise self._network_error(operation, exc, timeout_seconds) from None
            try:
                content = answer.read()
            except HTTPError as exc:
                raise self._network_error(operation, exc, timeout_seconds) from None
            finally:
                answer.release_conn()
        finally:
            _calling.queue = None
        status = answer.status
        if 200 <= status < 400:
            return content
        if not 400 <= status <= 600:
            raise QueueUnavailable(UNEXPECTED_STATUS, self._where(operation, f"HTTP status {status}"))
        try:
            response = ResponseBase()
            response.header = {name.lower(): value for name, value in answer.headers.items()}
            text = content.decode("utf-8")
            self._signer.check_status(internal, ResponseInternal(status, response.header, text), response, decoder)
        except (UnicodeDecodeError, MNSClientNetworkException):
            raise QueueUnavailable(
                RESP_DATA_DAMAGED, self._where(operation, "the error answer could not be parsed")
            ) from None
        raise QueueUnavailable(UNEXPECTED_STATUS, self._where(operation, f"HTTP status {status}"))

    def _decode(self, operation: str, decoder: Any, body: bytes) -> Any:
        try:
            return decoder.decode(body.decode("utf-8"))
        except (UnicodeDecodeError, MNSClientNetworkException):
            raise QueueUnavailable(
                RESP_DATA_DAMAGED, self._where(operation, "the answer could not be parsed")
            ) from None

    def _connected_on(self, sock: socket.socket) -> None:
        """Called by this thread's new connection: keep its socket for :meth:`abort`."""
        with self._lock:
            self._sock = sock
            self._connected = True
            aborted = self._abort_requested
        if aborted:
            # abort() landed while connecting, before there was a socket to shut down.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _network_error(self, operation: str, exc: HTTPError, timeout_seconds: float) -> QueueUnavailable:
        """Map a transport failure, reporting it as ``Aborted`` when abort() caused it."""
        with self._lock:
            aborted, self._abort_requested = self._abort_requested, False
        if aborted:
            return QueueUnavailable(ABORTED, self._where(operation, "aborted by MnsQueue.abort()"))
        if isinstance(exc, ConnectTimeoutError) and not isinstance(exc, NewConnectionError):
            where = f"no connection within {self._connect_timeout_seconds:g} s"
            return QueueUnavailable(TIMEOUT, self._where(operation, where))
        if isinstance(exc, ReadTimeoutError):
            return QueueUnavailable(TIMEOUT, self._where(operation, f"no answer within {timeout_seconds:g} s"))
        return QueueUnavailable(NETWORK_ERROR, self._where(operation, _describe(exc)))

    def _server_error(self, operation: str, exc: Any) -> AlicomError:
        """Map an MNS error answer to QueueNotFound, QueueAuthError, QueueThrottled or QueueUnavailable."""
        code = str(exc.type)
        message = self._where(operation, str(exc.message))
        request_id = _optional_str(exc.req_id)
        if code == "QueueNotExist":
            return QueueNotFound(code, message, request_id=request_id)
        if code in _AUTH_CODES or any(marker in code for marker in _AUTH_MARKERS):
            return QueueAuthError(code, message, request_id=request_id)
        if code in _THROTTLE_CODES or code.startswith("Throttling"):
            return QueueThrottled(code, message, request_id=request_id)
        return QueueUnavailable(code, message, request_id=request_id)

    def _where(self, operation: str, what: str) -> str:
        return f"{operation} on {self._queue_name}: {what}"


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _describe(exc: HTTPError) -> str:
    """A safe description of a transport failure: the OS error if there is one, else only its type.

    urllib3's and http.client's own texts may quote request headers, the security token included.
    """
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__context__
    if isinstance(cause, OSError):
        return f"{type(cause).__name__}: {cause.strerror or 'connection failed'}"
    return type(exc).__name__


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The process's TLS context for ``ca_file`` (None: the system store and SSL_CERT_FILE, as the SDK trusted).

    Shared by every client: building one reads the whole CA bundle, which cost each new receiver thread
    tens of milliseconds of CPU and about a megabyte, and a context is safe to share between threads.
    """
    return _shared_context(ca_file, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=8)
def _shared_context(ca_file: str | None, cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """One context per trust source; the variables are part of the key, as they decide what None trusts."""
    return ssl.create_default_context(cafile=ca_file)


class _Calling(threading.local):
    queue: MnsQueue | None = None


_calling = _Calling()
"""The MnsQueue whose call runs on this thread: new connections report their socket to it."""


class _Connection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        if _calling.queue is not None and self.sock is not None:
            _calling.queue._connected_on(self.sock)


class _TlsConnection(_Connection, HTTPSConnection):
    """Reports its socket once HTTPSConnection.connect (TCP, proxy tunnel, TLS) is done (MRO)."""


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = _TlsConnection


_POOL_CLASSES: Final = {"http": _Pool, "https": _TlsPool}
"""urllib3's pools with connections that report their socket (urllib3 has no connect hook)."""
