"""One MNS queue as the poller sees it: batch receive, batch delete, visibility changes, abort.

The SDK (``aliyun-mns-sdk``) signs every request and decodes every error answer; the standard library's
``http.client``, which the SDK itself sends with, carries them on one kept-alive connection per client
(chosen over urllib3 and httpx, which add a third and two thirds to its CPU per call: docs/benchmarks.md).
The SDK has no public way to sign without sending, so its two public-named steps are called around our
transport: ``MNSClient.build_header`` (sign, security token) and ``MNSClient.check_status`` (error XML to
``MNSServerException``). The SDK's own connection has no read timeout over HTTPS, no proxy and no way to
interrupt a long poll (reference 3.7, pitfalls 9 and 10); here the connect and read timeouts are the
socket's, an HTTPS endpoint behind a proxy is tunnelled (CONNECT), and abort shuts the socket down.

Error mapping (the raised error keeps the MNS or local ``code``): ``MessageNotExist`` on receive is the
idle path (``[]``); ``QueueNotExist`` is :class:`QueueNotFound`; ``AccessDenied``, ``TimeExpired`` and any
code naming a key, token, signature or authorization is :class:`QueueAuthError` (the poller refreshes
its token); ``MessageNotExist``/``ReceiptHandleError`` on change_visibility is :class:`MessageGone`;
``TooManyRequests`` (429), ``QpsLimitExceeded`` and ``Throttling.*`` are :class:`QueueThrottled`
(backpressure); anything else, and every transport failure, is :class:`QueueUnavailable`. Messages
never quote the SDK's or http.client's text, which can hold response bodies or header values (the token).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import socket
import ssl
import threading
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlsplit

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
        self._queue_name = queue_name
        base_url = endpoint_url.rstrip("/")
        self._request_timeout_seconds = float(request_timeout_seconds)
        self._connect_timeout_seconds = float(connect_timeout_seconds)
        target = urlsplit(base_url)
        self._tls = target.scheme == "https"
        self._address = (target.hostname or "", target.port)
        # The proxy was decided by Endpoints, the same way for MNS, Dybaseapi and Dysmsapi. HTTPS is
        # tunnelled through it (CONNECT) and then sent as if direct; plain HTTP is forwarded, with the
        # whole URL in the request line.
        self._proxy = urlsplit(proxy) if proxy else None
        if self._proxy is not None and self._proxy.scheme == "https" and self._tls:
            raise ValueError("an https:// proxy cannot tunnel HTTPS (http.client has no TLS in TLS): use http://")
        forwarded = self._proxy is not None and not self._tls
        self._target_prefix = base_url if forwarded else ""
        self._proxy_headers = {"Accept": "*/*"} if forwarded else {}
        # The context of the first hop's TLS (endpoint or proxy); none for plain HTTP, as reading the
        # system CA store costs tens of milliseconds and about a megabyte.
        self._context: ssl.SSLContext | None = None
        if self._tls or (self._proxy is not None and self._proxy.scheme == "https"):
            try:
                self._context = tls_context(ca_file)
            except OSError as exc:
                raise ValueError(f"cannot load ca_file {ca_file}: {exc}") from exc
        self._lock = threading.Lock()
        self._abort_requested = False
        self._connection: http.client.HTTPConnection | None = None

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
            connection = self._connection
        sock = None if connection is None else connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the connection. Safe to call more than once."""
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

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
        """Sign with the SDK, send with http.client, let the SDK decode an error answer; return a success body.

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
        for attempt in (1, 2):
            connection = self._connection
            fresh = connection is None or connection.sock is None  # (closed after a Connection: close answer)
            try:
                if connection is None or fresh:
                    connection = self._connect(operation)
                connection.sock.settimeout(timeout_seconds)
                connection.request(internal.method, self._target_prefix + uri, body=body or None, headers=headers)
                answer = connection.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                # A kept-alive connection the server closed while idle fails before any answer: send
                # again once on a new one, as the SDK did. A repeated receive at worst hides messages
                # for their visibility timeout; a repeated delete finds its handles used.
                with self._lock:
                    stale = attempt == 1 and not (fresh or self._abort_requested or isinstance(exc, TimeoutError))
                if not stale:
                    raise self._network_error(operation, exc, timeout_seconds) from None
                continue
            try:
                content = answer.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise self._network_error(operation, exc, timeout_seconds) from None
            break
        status = answer.status
        if 200 <= status < 400:
            return content
        if not 400 <= status <= 600:
            raise QueueUnavailable(UNEXPECTED_STATUS, self._where(operation, f"HTTP status {status}"))
        try:
            response = ResponseBase()
            response.header = {name.lower(): value for name, value in answer.getheaders()}
            text = content.decode("utf-8")
            self._signer.check_status(internal, ResponseInternal(status, response.header, text), response, decoder)
        except (UnicodeDecodeError, MNSClientNetworkException):
            raise QueueUnavailable(
                RESP_DATA_DAMAGED, self._where(operation, "the error answer could not be parsed")
            ) from None
        raise QueueUnavailable(UNEXPECTED_STATUS, self._where(operation, f"HTTP status {status}"))

    def _connect(self, operation: str) -> http.client.HTTPConnection:
        """A new connection (TCP, proxy tunnel, TLS), each step within the connect timeout; kept for abort()."""
        host, port = self._address
        if self._proxy is not None:
            host, port = self._proxy.hostname or "", self._proxy.port
        timeout = self._connect_timeout_seconds
        connection = (
            http.client.HTTPConnection(host, port, timeout=timeout)
            if self._context is None
            else http.client.HTTPSConnection(host, port, timeout=timeout, context=self._context)
        )
        if self._proxy is not None and self._tls:
            connection.set_tunnel(*self._address)
        try:
            connection.connect()
        except TimeoutError:
            connection.close()
            raise QueueUnavailable(TIMEOUT, self._where(operation, f"no connection within {timeout:g} s")) from None
        with self._lock:
            self._connection = connection
            aborted = self._abort_requested
        if aborted:
            # abort() landed while connecting, before there was a socket to shut down.
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
        return connection

    def _decode(self, operation: str, decoder: Any, body: bytes) -> Any:
        try:
            return decoder.decode(body.decode("utf-8"))
        except (UnicodeDecodeError, MNSClientNetworkException):
            raise QueueUnavailable(
                RESP_DATA_DAMAGED, self._where(operation, "the answer could not be parsed")
            ) from None

    def _network_error(self, operation: str, exc: BaseException, timeout_seconds: float) -> QueueUnavailable:
        """Map a transport failure, reporting it as ``Aborted`` when abort() caused it."""
        with self._lock:
            aborted, self._abort_requested = self._abort_requested, False
        if aborted:
            return QueueUnavailable(ABORTED, self._where(operation, "aborted by MnsQueue.abort()"))
        if isinstance(exc, TimeoutError):
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


def _describe(exc: BaseException) -> str:
    """A safe description of a transport failure: the OS error if there is one, else only its type.

    http.client's own texts may quote what the peer or a proxy answered.
    """
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or 'connection failed'}"
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
