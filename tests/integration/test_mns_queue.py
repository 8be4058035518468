"""MnsQueue against the emulator through the real ``aliyun-mns-sdk``: data, errors, timeouts and abort."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mns.auth import StaticCredentialsProvider

from mns_consumer.alicom.queue import (
    ABORTED,
    NETWORK_ERROR,
    TIMEOUT,
    MnsQueue,
    ReceivedMessage,
    tls_context,
)
from mns_consumer.emulator import Emulator
from mns_consumer.emulator.tls import generate_tls_material
from mns_consumer.errors import MessageGone, QueueAuthError, QueueNotFound, QueueUnavailable
from tests.support.tcp_proxy import TcpProxy

QUEUE = "Alicom-Queue-i1-SmsReport"

OpenQueue = Callable[..., MnsQueue]


@pytest.fixture
def open_queue() -> Iterator[OpenQueue]:
    """A factory of MnsQueue clients (master key by default); every one it made is closed afterwards."""
    opened: list[MnsQueue] = []

    def open_(
        emulator: Emulator, queue_name: str = QUEUE, credentials: Any = None, endpoint_url: str = "", **kwargs: Any
    ) -> MnsQueue:
        if credentials is None:
            settings = emulator.settings
            credentials = StaticCredentialsProvider(settings.access_key_id, settings.access_key_secret, "")
        client = MnsQueue(endpoint_url or emulator.url, queue_name, credentials, **kwargs)
        opened.append(client)
        return client

    yield open_
    for client in opened:
        client.close()


@pytest.fixture
def tls_emulator(make_emulator: Callable[..., Emulator], monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """An HTTPS emulator whose certificate the SDK's default context trusts through SSL_CERT_FILE."""
    emulator = make_emulator(tls=True)
    assert emulator.tls is not None
    monkeypatch.setenv("SSL_CERT_FILE", str(emulator.tls.cert_path))
    return emulator


@pytest.fixture(params=["http", "https"])
def any_emulator(request: pytest.FixtureRequest) -> Emulator:
    """The emulator over plain HTTP, then over HTTPS: the SDK builds the two connections differently."""
    name = "emulator" if request.param == "http" else "tls_emulator"
    emulator: Emulator = request.getfixturevalue(name)
    return emulator


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail the test if it does not within ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached")
        time.sleep(0.02)


# -- receive -------------------------------------------------------------------------------------


def test_receive_returns_nothing_from_an_empty_queue(emulator: Emulator, open_queue: OpenQueue) -> None:
    """An empty queue is the idle path: an empty list, not an error."""
    assert open_queue(emulator).receive(16, 0) == []


def test_receive_returns_messages_with_the_body_exactly_as_stored(
    any_emulator: Emulator, open_queue: OpenQueue
) -> None:
    """Received messages carry the base64 body text MNS holds, undecoded, and their MNS attributes."""
    generated = any_emulator.produce("SmsReport", 3)

    messages = open_queue(any_emulator).receive(16, 0)

    assert sorted(m.body for m in messages) == sorted(g.body for g in generated)
    for message in messages:
        assert isinstance(message, ReceivedMessage)
        assert message.receipt_handle
        assert message.dequeue_count == 1
        assert len(message.body_md5) == 32
        assert message.next_visible_time_ms > message.enqueue_time_ms
        assert message.first_dequeue_time_ms >= message.enqueue_time_ms
        assert 1 <= message.priority <= 16


def test_answers_larger_than_the_read_buffer_arrive_whole_and_the_connection_is_reused(
    any_emulator: Emulator, open_queue: OpenQueue
) -> None:
    """A 1 MB answer arrives whole, and the following calls reuse the one connection, over HTTP and HTTPS."""
    bodies = [f"{n:02d}" + "QUJD" * 16_000 for n in range(16)]  # 16 bodies of 64,002 characters
    for body in bodies:
        any_emulator.send_body(QUEUE, body)
    proxy = TcpProxy("127.0.0.1", any_emulator.port).start()
    try:
        client = open_queue(
            any_emulator, endpoint_url=any_emulator.url.replace(str(any_emulator.port), str(proxy.port))
        )

        messages = client.receive(16, 0)
        assert client.delete([m.receipt_handle for m in messages]) == {}
        assert client.receive(16, 0) == []

        assert sorted(m.body for m in messages) == bodies
        assert proxy.accepted == 1
    finally:
        proxy.stop()


def test_long_poll_outlasts_a_shorter_request_timeout(emulator: Emulator, open_queue: OpenQueue) -> None:
    """The socket timeout of a receive covers its wait, so a 2 s poll with a 1 s request timeout ends empty."""
    assert open_queue(emulator, request_timeout_seconds=1).receive(1, 2) == []


@pytest.mark.parametrize(("batch_size", "wait_seconds"), [(0, 0), (17, 0), (1, -1), (1, 31)])
def test_receive_refuses_arguments_outside_the_mns_limits(
    emulator: Emulator, open_queue: OpenQueue, batch_size: int, wait_seconds: int
) -> None:
    """Batch size and wait are checked locally against 1..16 and 0..30."""
    with pytest.raises(ValueError, match="must be between"):
        open_queue(emulator).receive(batch_size, wait_seconds)


# -- delete --------------------------------------------------------------------------------------


def test_delete_removes_more_than_one_batch_of_messages(emulator: Emulator, open_queue: OpenQueue) -> None:
    """Twenty handles go out in batches of at most 16 and every message is deleted."""
    emulator.produce("SmsReport", 20)
    client = open_queue(emulator)
    messages = client.receive(16, 0) + client.receive(16, 0)
    assert len(messages) == 20

    assert client.delete([m.receipt_handle for m in messages]) == {}
    assert emulator.queue(QUEUE).message_ids() == []


def test_delete_reports_only_the_handles_mns_refused(emulator: Emulator, open_queue: OpenQueue) -> None:
    """A partial failure returns the stale handle with its code and still deletes the rest."""
    # Given two received messages, one already deleted
    emulator.produce("SmsReport", 2)
    client = open_queue(emulator)
    first, second = client.receive(16, 0)
    assert client.delete([first.receipt_handle]) == {}

    # When both handles are deleted together
    failed = client.delete([first.receipt_handle, second.receipt_handle])

    # Then only the used one is reported, and the queue is empty
    assert failed == {first.receipt_handle: "ReceiptHandleError"}
    assert emulator.queue(QUEUE).message_ids() == []


def test_delete_of_no_handles_sends_nothing(emulator: Emulator, open_queue: OpenQueue) -> None:
    """An empty delete is a no-op, even against a failing server."""
    emulator.add_fault(kind="error", operation="BatchDeleteMessage", status=503, code="ServiceUnavailable")
    assert open_queue(emulator).delete([]) == {}


# -- change_visibility ---------------------------------------------------------------------------


def test_change_visibility_issues_a_new_handle_and_the_old_one_is_refused(
    emulator: Emulator, open_queue: OpenQueue
) -> None:
    """The new handle and an integer next-visible time come back; only the new handle deletes."""
    emulator.produce("SmsReport", 1)
    client = open_queue(emulator)
    (message,) = client.receive(1, 0)

    new_handle, next_visible_time_ms = client.change_visibility(message.receipt_handle, 600)

    assert isinstance(next_visible_time_ms, int)
    assert next_visible_time_ms > message.next_visible_time_ms
    assert new_handle != message.receipt_handle
    assert client.delete([message.receipt_handle]) == {message.receipt_handle: "ReceiptHandleError"}
    assert client.delete([new_handle]) == {}


def test_change_visibility_of_a_deleted_message_raises_message_gone(emulator: Emulator, open_queue: OpenQueue) -> None:
    """A handle whose message is gone is told apart from an outage."""
    emulator.produce("SmsReport", 1)
    client = open_queue(emulator)
    (message,) = client.receive(1, 0)
    client.delete([message.receipt_handle])

    with pytest.raises(MessageGone) as caught:
        client.change_visibility(message.receipt_handle, 60)
    assert caught.value.code in ("MessageNotExist", "ReceiptHandleError")
    assert caught.value.request_id


@pytest.mark.parametrize("seconds", [0, 43201])
def test_change_visibility_refuses_timeouts_outside_the_mns_limits(
    emulator: Emulator, open_queue: OpenQueue, seconds: int
) -> None:
    """The visibility timeout is checked locally against 1..43200."""
    with pytest.raises(ValueError, match="must be between"):
        open_queue(emulator).change_visibility("1-handle", seconds)


# -- errors from MNS -----------------------------------------------------------------------------


def test_unknown_queue_raises_queue_not_found(emulator: Emulator, open_queue: OpenQueue) -> None:
    """QueueNotExist becomes QueueNotFound with MNS's request id."""
    with pytest.raises(QueueNotFound) as caught:
        open_queue(emulator, "Alicom-Queue-i1-Nope").receive(1, 0)
    assert caught.value.code == "QueueNotExist"
    assert caught.value.request_id


def test_wrong_secret_raises_queue_auth_error_without_the_secret(emulator: Emulator, open_queue: OpenQueue) -> None:
    """SignatureDoesNotMatch becomes QueueAuthError, and the secret appears nowhere in it."""
    secret = "not-the-emulator-secret-0123456789"
    credentials = StaticCredentialsProvider(emulator.settings.access_key_id, secret, "")
    with pytest.raises(QueueAuthError) as caught:
        open_queue(emulator, credentials=credentials).receive(1, 0)
    assert caught.value.code == "SignatureDoesNotMatch"
    assert secret not in str(caught.value)


def test_expired_queue_token_raises_queue_auth_error(emulator: Emulator, open_queue: OpenQueue) -> None:
    """A queue token that worked is refused once expired, as an auth error naming no secret."""
    # Given a client using a temporary queue credential that works
    token = emulator.credentials.mint("SmsReport", QUEUE)
    credentials = StaticCredentialsProvider(token.access_key_id, token.access_key_secret, token.security_token)
    client = open_queue(emulator, credentials=credentials)
    assert client.receive(1, 0) == []

    # When every token expires
    emulator.expire_tokens()

    # Then the next call is an auth error that leaks neither the secret nor the token
    with pytest.raises(QueueAuthError) as caught:
        client.receive(1, 0)
    assert caught.value.code == emulator.settings.expired_token_code
    assert token.access_key_secret not in str(caught.value)
    assert token.security_token not in str(caught.value)


@pytest.mark.parametrize(
    ("status", "code"), [(503, "ServiceUnavailable"), (500, "InternalError"), (503, "QpsLimitExceeded")]
)
def test_server_errors_raise_queue_unavailable_with_their_code(
    emulator: Emulator, open_queue: OpenQueue, status: int, code: str
) -> None:
    """5xx and throttling answers are QueueUnavailable, keeping MNS's code."""
    emulator.add_fault(kind="error", operation="BatchReceiveMessage", status=status, code=code, times=1)
    client = open_queue(emulator)

    with pytest.raises(QueueUnavailable) as caught:
        client.receive(1, 0)

    assert caught.value.code == code
    assert client.receive(1, 0) == []


def test_whole_delete_failure_raises_instead_of_reporting_handles(emulator: Emulator, open_queue: OpenQueue) -> None:
    """A BatchDeleteMessage refused as a whole is an error, not a map of failed handles."""
    emulator.produce("SmsReport", 1)
    client = open_queue(emulator)
    (message,) = client.receive(1, 0)
    emulator.add_fault(kind="error", operation="BatchDeleteMessage", status=503, code="ServiceUnavailable", times=1)

    with pytest.raises(QueueUnavailable) as caught:
        client.delete([message.receipt_handle])

    assert caught.value.code == "ServiceUnavailable"
    assert client.delete([message.receipt_handle]) == {}


# -- transport failures --------------------------------------------------------------------------


def test_dropped_answer_raises_network_error_and_the_next_call_reconnects(
    emulator: Emulator, open_queue: OpenQueue
) -> None:
    """A connection cut mid-answer is a NetworkError; the following call works on a new connection."""
    emulator.add_fault(kind="drop", operation="BatchReceiveMessage", times=1)
    client = open_queue(emulator)

    with pytest.raises(QueueUnavailable) as caught:
        client.receive(1, 0)
    assert caught.value.code == NETWORK_ERROR

    emulator.produce("SmsReport", 1)
    assert len(client.receive(1, 0)) == 1


def test_a_kept_alive_connection_the_server_dropped_is_replaced_and_the_call_sent_again(
    emulator: Emulator, open_queue: OpenQueue
) -> None:
    """A server that reset an idle kept-alive connection costs nothing: the call goes out again on a new one."""
    proxy = TcpProxy("127.0.0.1", emulator.port).start()
    try:
        # Given a client whose connection carried a call and was then reset by the server's side
        client = open_queue(emulator, endpoint_url=f"http://127.0.0.1:{proxy.port}")
        assert client.receive(1, 0) == []
        proxy.stop()
        proxy.start()
        emulator.produce("SmsReport", 2)

        # When it receives and deletes
        messages = client.receive(16, 0)
        assert client.delete([message.receipt_handle for message in messages]) == {}

        # Then both calls went through, on a new connection
        assert len(messages) == 2
        counts = emulator.queue(QUEUE).counts()
        assert (counts.active, counts.inactive) == (0, 0)
    finally:
        proxy.stop()


@contextlib.contextmanager
def answering_peer(reply: bytes) -> Iterator[tuple[int, list[bytes]]]:
    """A TCP peer that reads each connection's request, sends ``reply`` (``b""``: nothing) and closes it.

    Yields its port and the requests it read, one per connection.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                requests.append(connection.recv(65536))
                connection.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1]), requests
    finally:
        listener.close()
        thread.join(5)


def test_a_new_connection_closed_before_any_answer_is_a_network_error_not_sent_again(open_queue: OpenQueue) -> None:
    """Only a kept-alive connection may have gone stale: a new one that fails is an error at once."""
    with answering_peer(b"") as (port, requests):
        credentials = StaticCredentialsProvider("key", "secret", "")
        client = MnsQueue(f"http://127.0.0.1:{port}", QUEUE, credentials)
        try:
            with pytest.raises(QueueUnavailable) as caught:
                client.receive(1, 0)
            assert caught.value.code == NETWORK_ERROR
            assert len(requests) == 1
        finally:
            client.close()


def test_a_tunnel_the_proxy_refuses_is_a_network_error_not_asked_for_again() -> None:
    """A connection that could not be made (a proxy answering CONNECT with 403) is not a stale one: one try."""
    with answering_peer(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n") as (port, requests):
        credentials = StaticCredentialsProvider("key", "secret", "")
        client = MnsQueue("https://mns.example", QUEUE, credentials, proxy=f"http://127.0.0.1:{port}")
        try:
            with pytest.raises(QueueUnavailable) as caught:
                client.receive(1, 0)
            assert caught.value.code == NETWORK_ERROR
            assert [request.split(b" ")[:2] for request in requests] == [[b"CONNECT", b"mns.example:443"]]
        finally:
            client.close()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("warm", [False, True], ids=["new-connection", "kept-alive-connection"])
def test_hanging_peer_times_out_within_the_request_timeout(
    any_emulator: Emulator, open_queue: OpenQueue, warm: bool
) -> None:
    """A peer that never answers is a Timeout after the request timeout, over HTTP and HTTPS alike."""
    # Given a client with a 1 s request timeout, on a new or an already used connection
    client = open_queue(any_emulator, request_timeout_seconds=1)
    if warm:
        assert client.receive(1, 0) == []
    any_emulator.add_fault(kind="hang", operation="BatchReceiveMessage", seconds=60, times=1)

    # When the server holds the request for a minute
    with pytest.raises(QueueUnavailable) as caught:
        client.receive(1, 0)

    # Then the call gives up on its own, and the next one works
    assert caught.value.code == TIMEOUT
    assert client.receive(1, 0) == []


def test_ca_file_trusts_an_https_endpoint_without_ssl_cert_file(
    make_emulator: Callable[..., Emulator], open_queue: OpenQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An explicit CA bundle replaces the default trust store for the SDK's HTTPS connection."""
    emulator = make_emulator(tls=True)
    assert emulator.tls is not None
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)

    assert open_queue(emulator, ca_file=str(emulator.tls.cert_path)).receive(1, 0) == []


# -- abort ---------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("warm", [False, True], ids=["new-connection", "kept-alive-connection"])
def test_abort_interrupts_a_long_poll_from_another_thread(
    any_emulator: Emulator, open_queue: OpenQueue, warm: bool
) -> None:
    """abort() ends a 30 s long poll on an empty queue at once; the next call reconnects and works.

    On a kept-alive connection the abort is not taken for a stale connection: the poll is not sent again.
    """
    client = open_queue(any_emulator)
    if warm:
        assert client.receive(1, 0) == []
    outcome: list[BaseException | list[ReceivedMessage]] = []

    def poll() -> None:
        try:
            outcome.append(client.receive(16, 30))
        except QueueUnavailable as exc:
            outcome.append(exc)

    # Given a long poll waiting in the server
    poller = threading.Thread(target=poll, name="long-poll")
    poller.start()
    wait_until(lambda: any_emulator.queue(QUEUE).waiting_polls() == 1)

    # When another thread aborts it
    client.abort()
    poller.join(10)

    # Then the poll failed as aborted, and the client still works
    assert not poller.is_alive()
    (error,) = outcome
    assert isinstance(error, QueueUnavailable)
    assert error.code == ABORTED
    # (A message produced now could go to the abandoned poll still waiting in the server, as in MNS.)
    assert client.receive(1, 0) == []


def test_abort_between_calls_fails_only_the_next_call(emulator: Emulator, open_queue: OpenQueue) -> None:
    """An abort that lands before a call starts is not lost: that call fails, the one after works."""
    client = open_queue(emulator)
    assert client.receive(1, 0) == []

    client.abort()

    with pytest.raises(QueueUnavailable) as caught:
        client.receive(16, 30)
    assert caught.value.code == ABORTED
    assert client.receive(1, 0) == []


def _closed_port() -> int:
    probe = socket.create_server(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    return port


@pytest.mark.timeout(20)
@pytest.mark.parametrize("through", ["endpoint", "proxy"])
def test_a_refused_connection_is_a_network_error_at_once(
    emulator: Emulator, open_queue: OpenQueue, through: str
) -> None:
    """A closed endpoint port, or a proxy that is not there, fails the call as NetworkError, not as Timeout."""
    closed = f"http://127.0.0.1:{_closed_port()}"
    setting = {"endpoint_url": closed} if through == "endpoint" else {"proxy": closed}
    client = open_queue(emulator, **setting)

    with pytest.raises(QueueUnavailable) as caught:
        client.receive(1, 0)

    assert caught.value.code == NETWORK_ERROR
    assert "ConnectionRefusedError" in str(caught.value)


def test_an_https_proxy_is_refused_for_an_https_endpoint_before_any_call() -> None:
    """HTTPS is tunnelled through a proxy spoken to in plain HTTP (configuration refuses the rest first)."""
    with pytest.raises(ValueError, match="https:// proxy cannot tunnel HTTPS"):
        MnsQueue(
            "https://127.0.0.1:1", QUEUE, StaticCredentialsProvider("id", "secret", ""), proxy="https://127.0.0.1:2"
        )


def test_clients_share_one_tls_context_per_trust_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each receiver thread's client reuses the process's context instead of reading the CA bundle again,
    and a different SSL_CERT_FILE (what a None ca_file trusts) gets a context of its own."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    first = tls_context(None)
    assert tls_context(None) is first

    material = generate_tls_material(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(material.cert_path))
    assert tls_context(None) is not first
    assert tls_context(str(material.cert_path)) is tls_context(str(material.cert_path))
