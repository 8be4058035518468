"""One MNS queue as the poller sees it: batch receive, batch delete, visibility changes, abort.

:class:`MnsQueue` wraps ``aliyun-mns-sdk`` 1.3.0 and is the only code that catches its exceptions. It
adds what the SDK lacks (reference 3.7, pitfalls 9 and 10): an explicit socket timeout on every call,
over HTTP and HTTPS alike, a way to interrupt a long poll from another thread, and our own errors.

Error mapping (the raised error always keeps the MNS or local ``code``):

* ``MessageNotExist`` on receive: no error, ``receive`` returns ``[]`` (the idle path, pitfall 2).
* ``QueueNotExist``: :class:`~mns_consumer.errors.QueueNotFound`.
* ``AccessDenied``, ``TimeExpired`` and any code naming an AccessKey, security token, signature or
  authorization (``InvalidAccessKeyId``, ``SignatureDoesNotMatch``, ``SecurityTokenExpired``,
  ``InvalidSecurityToken.*``, ``MissingAuthorizationHeader``, ...):
  :class:`~mns_consumer.errors.QueueAuthError`, on which the poller refreshes its token (pitfall 3).
* ``MessageNotExist`` or ``ReceiptHandleError`` on change_visibility: :class:`MessageGone`.
* Per-handle failures of BatchDeleteMessage: data, returned by ``delete``.
* ``TooManyRequests`` (HTTP 429, SMQ's flow limiter, reference 3.9), ``QpsLimitExceeded`` and
  ``Throttling.*``: :class:`~mns_consumer.errors.QueueThrottled`, a ``QueueUnavailable`` the poller
  treats as backpressure (slow down), not as a failure.
* Any other server code (``InternalError``, ``ServiceUnavailable``, unknown ones):
  :class:`~mns_consumer.errors.QueueUnavailable`.
* Network failure, socket timeout, unparsable answer, HTTP status outside 200-600: ``QueueUnavailable``
  with code ``NetworkError``, ``Timeout``, ``RespDataDamaged`` or ``UnexpectedStatus``.
* A call interrupted by :meth:`MnsQueue.abort`: ``QueueUnavailable`` with code ``Aborted``.
* ``MNSClientParameterException`` (the SDK's own argument checks: a bug here): ``ValueError``.

Messages are built from the error code, the server's message and local facts only, never from the
SDK's exception text: that text can quote raw response XML (message bodies) or, for a header that
``http.client`` refuses, the header value itself, which may be the security token.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import struct
import threading
import warnings
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Final, TypeVar

from mns.account import Account
from mns.auth import CredentialsProvider
from mns.mns_exception import MNSClientNetworkException, MNSClientParameterException, MNSServerException
from mns.mns_http import RequestInternal, ResponseInternal
from mns.mns_request import (
    BatchDeleteMessageRequest,
    BatchDeleteMessageResponse,
    BatchReceiveMessageRequest,
    BatchReceiveMessageResponse,
)
from mns.mns_tool import BatchDeleteMessageValidator
from mns.mns_xml_handler import BatchDeleteMessageDecoder, ErrorDecoder

from mns_consumer.alicom.http_exchange import Answer, ConnectionLostError, encode_request, exchange
from mns_consumer.alicom.message import ReceivedMessage
from mns_consumer.alicom.mns_xml import DamagedAnswerError, parse_batch_receive, receipt_handles_xml
from mns_consumer.errors import AlicomError, QueueAuthError, QueueNotFound, QueueThrottled, QueueUnavailable

__all__ = [
    "ABORTED",
    "MAX_BATCH_SIZE",
    "MAX_VISIBILITY_TIMEOUT_SECONDS",
    "MAX_WAIT_SECONDS",
    "NETWORK_ERROR",
    "RESP_DATA_DAMAGED",
    "TIMEOUT",
    "UNEXPECTED_STATUS",
    "MessageGone",
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
"""``QueueUnavailable.code`` when the connection failed or broke mid-answer."""

TIMEOUT: Final = "Timeout"
"""``QueueUnavailable.code`` when connecting or the answer took longer than the call's timeout."""

RESP_DATA_DAMAGED: Final = "RespDataDamaged"
"""``QueueUnavailable.code`` when the answer could not be parsed (reference pitfall 14)."""

UNEXPECTED_STATUS: Final = "UnexpectedStatus"
"""``QueueUnavailable.code`` when the HTTP status was outside 200-600 (the SDK's ``UnkownError``)."""

_AUTH_CODES: Final = frozenset({"AccessDenied", "TimeExpired"})
# MNS does not document the code of an expired or invalid STS token (reference 3.3, 10), so any code
# that names a credential part counts as an auth failure, which makes the poller refresh its token.
_AUTH_MARKERS: Final = ("AccessKey", "SecurityToken", "Signature", "Authorization", "Forbidden", "Unauthorized")
_GONE_CODES: Final = frozenset({"MessageNotExist", "ReceiptHandleError"})
_THROTTLE_CODES: Final = frozenset({"TooManyRequests", "QpsLimitExceeded"})

_T = TypeVar("_T")


class MessageGone(AlicomError):  # noqa: N818  (a state, named as one: see STYLE.md)
    """The receipt handle no longer designates a message this consumer holds.

    Raised by :meth:`MnsQueue.change_visibility` for ``MessageNotExist`` (the message was deleted or
    expired) and ``ReceiptHandleError`` (the handle is stale: the message became visible again and may
    have been handed to another consumer, reference pitfall 11). Retrying cannot help; the receipt will
    come back through a new receive if it still exists, and its dedupe key absorbs the repeat.
    """


class MnsQueue:
    """A client of one MNS queue, with explicit timeouts, abort and mapped errors.

    Not thread-safe: the SDK keeps one HTTP connection per client with mutable state (reference 3.7,
    pitfall 10), so use one instance per thread. The single exception is :meth:`abort`, which exists to
    be called from another thread.

    Timeouts: every call runs with a socket timeout, for connect, TLS handshake and every read. A receive
    uses ``wait_seconds + request_timeout_seconds``, so a long poll is never cut by its own wait; every
    other call uses ``request_timeout_seconds``. A new connection is opened with
    ``connect_timeout_seconds`` and then switched to the call's timeout.

    Credentials are read from ``credentials.get_credentials()`` on every request, so a provider that
    refreshes queue tokens takes effect without rebuilding this object. It must return a
    ``security_token`` of ``""``, never ``None``, when there is no token (reference 3.7).

    Usable as a context manager, which calls :meth:`close` on exit.
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
    ) -> None:
        """Prepare a client; no connection is opened until the first call.

        Args:
            endpoint_url: MNS endpoint, ``http://`` or ``https://``, e.g.
                ``https://1943695596114318.mns.cn-hangzhou.aliyuncs.com``.
            queue_name: The queue, e.g. ``Alicom-Queue-1234567890-SmsReport``.
            credentials: Any ``mns.auth.CredentialsProvider``; read on every request.
            request_timeout_seconds: How long any call may wait for its answer, on top of a receive's
                long-poll wait.
            connect_timeout_seconds: How long opening a connection (TCP and TLS) may take.
            ca_file: A PEM CA bundle to trust instead of the system's, for an ``https://`` endpoint (e.g.
                the emulator's certificate); ignored for ``http://``. Without it the SDK's default
                context applies, which honours ``SSL_CERT_FILE``.

        Raises:
            ValueError: If a timeout is not positive, the SDK refuses the endpoint URL, or ``ca_file``
                cannot be loaded.
        """
        if request_timeout_seconds <= 0 or connect_timeout_seconds <= 0:
            raise ValueError("request_timeout_seconds and connect_timeout_seconds must be positive")
        try:
            account = Account(endpoint_url, credentials_provider=credentials)
        except MNSClientParameterException as exc:
            raise ValueError(f"{exc.type}: {exc.message}") from exc
        self._queue_name = queue_name
        self._request_timeout_seconds = float(request_timeout_seconds)
        self._connect_timeout_seconds = float(connect_timeout_seconds)
        self._client: Any = account.mns_client
        self._http: Any = account.mns_client.http
        if ca_file is not None and self._http.is_https:
            try:
                context = ssl.create_default_context(cafile=ca_file)
            except OSError as exc:
                raise ValueError(f"cannot load ca_file {ca_file}: {exc}") from exc
            # The SDK builds its HTTPSConnection without a context argument; this is the attribute
            # http.client wraps the socket with at connect time.
            self._http.conn._context = context
        self._queue: Any = account.get_queue(queue_name)
        # Bodies stay as MNS sent them; decoding is the receipt decoders' job (reference 3.6, pitfall 1).
        self._queue.set_encoding(False)
        self._lock = threading.Lock()
        self._abort_requested = False
        # The socket and the timeouts it was last given, so an unchanged one costs no system call.
        self._armed: tuple[socket.socket, bool, float] | None = None
        # True from connecting until an answer came back on the connection: only a connection that
        # already carried an answer may have gone stale while kept alive.
        self._fresh_connection = True

    @property
    def queue_name(self) -> str:
        """The queue this client reads."""
        return self._queue_name

    def receive(self, batch_size: int, wait_seconds: int) -> list[ReceivedMessage]:
        """Receive up to ``batch_size`` messages, long-polling up to ``wait_seconds`` for the first.

        Each message received becomes invisible for the queue's visibility timeout and gets a new
        receipt handle (reference 3.5).

        Args:
            batch_size: 1 to 16.
            wait_seconds: 0 to 30; 0 answers at once.

        Returns:
            The messages, possibly fewer than asked; ``[]`` when none arrived within the wait, which is
            the idle path of every poll, not an error (reference pitfall 2).

        Raises:
            ValueError: If an argument is out of range.
            QueueNotFound: If the queue does not exist.
            QueueAuthError: If MNS refused the credentials.
            QueueUnavailable: On a server error, throttling, network failure, timeout or abort.
        """
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, not {batch_size}")
        if not 0 <= wait_seconds <= MAX_WAIT_SECONDS:
            raise ValueError(f"wait_seconds must be between 0 and {MAX_WAIT_SECONDS}, not {wait_seconds}")
        operation = "BatchReceiveMessage"
        timeout_seconds = wait_seconds + self._request_timeout_seconds
        call = functools.partial(self._batch_receive, batch_size, wait_seconds, timeout_seconds)
        try:
            answer = self._invoke(operation, timeout_seconds, call, kernel_timeouts=True)
        except MNSServerException as exc:
            if exc.type == "MessageNotExist":
                return []
            raise self._server_error(operation, exc) from exc
        try:
            return parse_batch_receive(answer)
        except DamagedAnswerError as exc:
            raise QueueUnavailable(RESP_DATA_DAMAGED, self._where(operation, f"the answer is damaged: {exc}")) from None

    def _batch_receive(self, batch_size: int, wait_seconds: int, timeout_seconds: float) -> bytes:
        """``Queue.batch_receive_message`` up to the parse: the SDK builds, signs and maps error answers.

        The transport (:mod:`mns_consumer.alicom.http_exchange`) and the parse of a successful answer
        (:mod:`mns_consumer.alicom.mns_xml`, seven times faster than the SDK's minidom) are ours.
        Returns the answer's XML document.
        """
        request = BatchReceiveMessageRequest(self._queue_name, batch_size, False, wait_seconds)
        internal = RequestInternal(
            request.method, f"/queues/{self._queue_name}/messages?numOfMessages={batch_size}&waitseconds={wait_seconds}"
        )
        return self._exchange(request, internal, BatchReceiveMessageResponse(), timeout_seconds).body

    def delete(self, handles: Sequence[str]) -> dict[str, str]:
        """Delete messages by receipt handle, in BatchDeleteMessage calls of at most 16 handles.

        Args:
            handles: Receipt handles from :meth:`receive` or :meth:`change_visibility`.

        Returns:
            Each handle MNS refused, mapped to its error code (``ReceiptHandleError`` for a handle that
            is stale or already used, reference pitfall 11); empty when every message was deleted.

        Raises:
            QueueNotFound: If the queue does not exist.
            QueueAuthError: If MNS refused the credentials.
            QueueUnavailable: If a whole request failed. Batches sent before it stay deleted; the
                messages of the failed batch and of any later one stay in the queue.
        """
        if isinstance(handles, str):
            raise TypeError("handles must be a sequence of receipt handles, not one string")
        operation = "BatchDeleteMessage"
        failed: dict[str, str] = {}
        for start in range(0, len(handles), MAX_BATCH_SIZE):
            chunk = list(handles[start : start + MAX_BATCH_SIZE])
            call = functools.partial(self._batch_delete, chunk)
            try:
                self._invoke(operation, self._request_timeout_seconds, call, kernel_timeouts=True)
            except MNSServerException as exc:
                # A partial failure lists only the refused handles, in sub_errors (reference 3.4).
                if exc.sub_errors is None:
                    raise self._server_error(operation, exc) from exc
                failed.update({str(item["ReceiptHandle"]): str(item["ErrorCode"]) for item in exc.sub_errors})
        return failed

    def _batch_delete(self, handles: list[str]) -> None:
        """``Queue.batch_delete_message`` with the request body written by us (the SDK builds it with minidom).

        The SDK signs and maps error answers, a partial failure's ``sub_errors`` included.
        """
        request = BatchDeleteMessageRequest(self._queue_name, handles)
        BatchDeleteMessageValidator.validate(request)
        internal = RequestInternal(request.method, f"/queues/{self._queue_name}/messages")
        internal.data = receipt_handles_xml(handles)
        self._exchange(
            request, internal, BatchDeleteMessageResponse(), self._request_timeout_seconds, BatchDeleteMessageDecoder
        )

    def _exchange(
        self, request: Any, internal: Any, response: Any, timeout_seconds: float, error_decoder: Any = ErrorDecoder
    ) -> Answer:
        """The SDK's steps of a call once its request is built (sign, map an error answer), our transport between.

        Raises:
            MNSServerException: For an error answer, decoded by ``error_decoder``, as the SDK's own
                methods raise it.
            MNSClientNetworkException: As the SDK's transport raises it, for a failed exchange.
        """
        self._client.build_header(request, internal)
        answer = self._send(internal, timeout_seconds)
        response.status, response.header = answer.status, answer.headers
        # Only an error answer's body is read by check_status, as text (the SDK decodes every answer).
        text = "" if 200 <= answer.status < 400 else _answer_text(answer, internal)
        sdk_answer = ResponseInternal(answer.status, answer.headers, text)
        self._client.check_status(internal, sdk_answer, response, error_decoder)
        return answer

    def _send(self, internal: Any, timeout_seconds: float) -> Answer:
        """Send a signed request and read its answer, again once on a new connection if a kept-alive one went stale.

        The SDK re-sends in that case too (on a status line that never came). A send is repeated only
        when no byte of an answer arrived and the call was not aborted; a repeated receive at worst hides
        messages for their visibility timeout, and a repeated delete finds the handles already used.
        """
        connection = self._http.conn
        try:
            request = encode_request(internal.method, internal.uri, internal.header, _request_body(internal.data))
            while True:
                reused = not self._fresh_connection
                try:
                    answer = exchange(connection.sock, request)
                    break
                except ConnectionLostError:
                    connection.close()
                    with self._lock:
                        aborted = self._abort_requested
                    if not reused or aborted:
                        raise
                    self._arm_connection(timeout_seconds, kernel_timeouts=True)
        except (OSError, ValueError) as exc:
            connection.close()
            raise MNSClientNetworkException("NetWorkException", _describe(exc), internal.get_req_id()) from exc
        self._fresh_connection = False
        if not answer.keep_alive:
            connection.close()
        return answer

    def change_visibility(self, handle: str, visibility_timeout_seconds: int) -> tuple[str, int]:
        """Make a received message invisible for ``visibility_timeout_seconds`` from now.

        Args:
            handle: The message's current receipt handle.
            visibility_timeout_seconds: 1 to 43200.

        Returns:
            The new receipt handle, which replaces ``handle`` (the old one is refused from now on), and
            the new next-visible time in milliseconds since the epoch.

        Raises:
            ValueError: If the timeout is out of range.
            MessageGone: If the message was deleted, expired, or the handle is stale.
            QueueNotFound: If the queue does not exist.
            QueueAuthError: If MNS refused the credentials (a queue token may not allow this call,
                reference 10).
            QueueUnavailable: On a server error, throttling, network failure, timeout or abort.
        """
        if not 1 <= visibility_timeout_seconds <= MAX_VISIBILITY_TIMEOUT_SECONDS:
            raise ValueError(
                f"visibility_timeout_seconds must be between 1 and {MAX_VISIBILITY_TIMEOUT_SECONDS}, "
                f"not {visibility_timeout_seconds}"
            )
        operation = "ChangeMessageVisibility"
        call = functools.partial(self._queue.change_message_visibility, handle, visibility_timeout_seconds)
        try:
            raw = self._invoke(operation, self._request_timeout_seconds, call)
        except MNSServerException as exc:
            if exc.type in _GONE_CODES:
                raise MessageGone(
                    str(exc.type), self._where(operation, str(exc.message)), request_id=_optional_str(exc.req_id)
                ) from exc
            raise self._server_error(operation, exc) from exc
        try:
            # The SDK hands NextVisibleTime back as the XML text (reference 3.4).
            return str(raw.receipt_handle), int(raw.next_visible_time)
        except (TypeError, ValueError) as exc:
            raise QueueUnavailable(
                RESP_DATA_DAMAGED, self._where(operation, "NextVisibleTime is not a number")
            ) from exc

    def abort(self) -> None:
        """Interrupt the call in progress, from any thread, e.g. a 30 s long poll during shutdown.

        The live socket is shut down, so the blocked call fails at once with
        ``QueueUnavailable(code="Aborted")``. When no call is in progress, the next call to start fails
        that way instead, without touching the network: a stop request that lands between two calls is
        never lost. Only one call fails per abort; the call after it opens a new connection.

        A call whose answer was already complete when the abort landed returns normally, and the next
        call fails with ``Aborted``.
        """
        with self._lock:
            self._abort_requested = True
            connection = self._http.conn
            # The SDK re-sends once on a fresh connection when an answer ends early (its stale
            # keep-alive handling); with auto-open off that re-send fails instead of polling again.
            # _send, which carries receives and deletes, checks _abort_requested instead.
            connection.auto_open = 0
            sock = connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed or not yet connected
                sock.shutdown(socket.SHUT_RDWR)

    def probe(self) -> str:
        """Check that the queue exists and the credentials are accepted, without taking any message.

        GetQueueAttributes is tried first; a queue token that may not read attributes (AccessDenied)
        still proves the signature and the token were accepted, which is what a probe needs.

        Returns:
            A one-line description, e.g. ``"3 active, 0 inactive, 0 delayed"``.

        Raises:
            QueueNotFound: If the queue does not exist.
            QueueAuthError: If MNS refused the credentials for another reason than permissions.
            QueueUnavailable: On a server error, throttling or a network failure.
        """
        operation = "GetQueueAttributes"
        try:
            meta = self._invoke(operation, self._request_timeout_seconds, self._queue.get_attributes)
        except MNSServerException as exc:
            error = self._server_error(operation, exc)
            if isinstance(error, QueueAuthError) and error.code == "AccessDenied":
                return "reachable; the token may not read queue attributes"
            raise error from exc
        with warnings.catch_warnings():
            # The SDK marks its public count getters deprecated but offers no other way to read them.
            warnings.simplefilter("ignore", DeprecationWarning)
            counts = (meta.active_messages, meta.inactive_messages, meta.delay_messages)
        return "{} active, {} inactive, {} delayed".format(*counts)

    def close(self) -> None:
        """Close the connection. Safe to call more than once; a later call would reconnect."""
        self._http.conn.close()

    def __enter__(self) -> MnsQueue:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------

    def _invoke(
        self, operation: str, timeout_seconds: float, call: Callable[[], _T], *, kernel_timeouts: bool = False
    ) -> _T:
        """Run one call with its socket timeout set, honouring abort and mapping client-side failures.

        ``kernel_timeouts`` is for calls that go through :meth:`_send` rather than the SDK's
        ``http.client`` (see :meth:`_arm_connection`). Server errors (``MNSServerException``) pass
        through for the caller to map, since their meaning depends on the operation.
        """
        self._start_call(operation)
        try:
            self._arm_connection(timeout_seconds, kernel_timeouts=kernel_timeouts)
            with self._lock:
                # abort() may have landed while connecting, before there was a socket to shut down.
                aborted = self._abort_requested
            if aborted:
                raise ConnectionAbortedError
            return call()
        except MNSClientNetworkException as exc:
            raise self._network_error(operation, str(exc.type), exc.__context__, timeout_seconds) from exc
        except MNSClientParameterException as exc:
            raise ValueError(f"{operation}: {exc.type}: {exc.message}") from exc
        except OSError as exc:
            # Only our own connect (or the abort check) raises outside the SDK's wrapping; a half-made
            # TLS connection would otherwise be reused as plain TCP.
            self._http.conn.close()
            raise self._network_error(operation, "NetWorkException", exc, self._connect_timeout_seconds) from exc

    def _start_call(self, operation: str) -> None:
        """Fail at once if an abort is pending, else re-enable the connection abort() disabled."""
        with self._lock:
            aborted = self._abort_requested
            self._abort_requested = False
            self._http.conn.auto_open = 1
        if aborted:
            self._http.conn.close()
            raise QueueUnavailable(ABORTED, self._where(operation, "aborted before it started"))

    def _arm_connection(self, timeout_seconds: float, *, kernel_timeouts: bool) -> None:
        """Give this call's socket, existing or new, an explicit timeout (reference 3.7, pitfall 9).

        The SDK's plain-HTTP connection reads ``connection_timeout`` when it connects; its HTTPS
        connection is built without one and reads the standard ``timeout`` attribute. Both are set, so
        whichever class is in use picks its own up, and a connection the SDK reopens by itself (after a
        stale keep-alive) is bounded by the call's timeout. A new connection is opened here with the
        connect timeout, and the live socket then gets the call's timeout, so no call churns connections.

        With ``kernel_timeouts``, a plain-HTTP socket is made blocking with ``SO_RCVTIMEO`` and
        ``SO_SNDTIMEO`` instead: Python's own timeout polls before every send and read, two system calls
        where one does, and each hands the GIL to another thread. Only :func:`exchange` reads such a
        socket (it reports the kernel's EAGAIN as a timeout); TLS sockets keep Python's timeout.
        """
        connection = self._http.conn
        if connection.sock is None:
            connection.connection_timeout = connection.timeout = self._connect_timeout_seconds
            connection.connect()
            self._fresh_connection = True
        connection.connection_timeout = connection.timeout = timeout_seconds
        sock = connection.sock
        kernel = kernel_timeouts and not self._http.is_https
        # Each connection mostly makes one kind of call, so its timeouts rarely change: set only then.
        if self._armed is not None and self._armed[0] is sock and self._armed[1:] == (kernel, timeout_seconds):
            return
        if kernel:
            sock.settimeout(None)
            whole = int(timeout_seconds)
            interval = struct.pack("@ll", whole, int((timeout_seconds - whole) * 1_000_000))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, interval)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, interval)
        else:
            sock.settimeout(timeout_seconds)
        self._armed = (sock, kernel, timeout_seconds)

    def _network_error(
        self, operation: str, sdk_type: str, cause: BaseException | None, timeout_seconds: float
    ) -> QueueUnavailable:
        """Map a transport failure, reporting it as ``Aborted`` when abort() caused it."""
        with self._lock:
            aborted = self._abort_requested
            self._abort_requested = False
        if aborted:
            return QueueUnavailable(ABORTED, self._where(operation, "aborted by MnsQueue.abort()"))
        if sdk_type == "RespDataDamaged":
            return QueueUnavailable(RESP_DATA_DAMAGED, self._where(operation, "the answer could not be parsed"))
        if sdk_type == "UnkownError":
            return QueueUnavailable(UNEXPECTED_STATUS, self._where(operation, "the HTTP status was outside 200-600"))
        if _is_timeout(cause):
            return QueueUnavailable(TIMEOUT, self._where(operation, f"no answer within {timeout_seconds:g} s"))
        return QueueUnavailable(NETWORK_ERROR, self._where(operation, _describe(cause)))

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


def _request_body(data: str | bytes) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def _answer_text(answer: Answer, internal: Any) -> str:
    """An error answer's body as the text the SDK's decoders read."""
    try:
        return answer.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MNSClientNetworkException("NetWorkException", "the answer is not UTF-8", internal.get_req_id()) from exc


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _is_timeout(error: BaseException | None) -> bool:
    """Whether a transport failure was a timeout (connect, TLS handshake or read)."""
    if isinstance(error, TimeoutError):
        return True
    # The SDK's HTTP connect() re-raises a failed connect as OSError(<the original error>).
    return isinstance(error, OSError) and len(error.args) == 1 and isinstance(error.args[0], TimeoutError)


def _describe(error: BaseException | None) -> str:
    """A safe description of a transport failure."""
    if error is None:
        return "the connection failed"
    if isinstance(error, OSError):
        return f"{type(error).__name__}: {error}"
    # Other exceptions (http.client's header checks among them) may quote request headers, the
    # security token included, so only their type is reported.
    return type(error).__name__
