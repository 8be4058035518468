"""The MNS transport writes what http.client writes and reads answers as http.client reads them."""

from __future__ import annotations

import http.client
import io
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mns_consumer.alicom import http_exchange
from mns_consumer.alicom.http_exchange import Answer, AnswerError, ConnectionLostError, encode_request, exchange

MNS_HEADERS = {
    "x-mns-version": "2015-06-06",
    "host": "127.0.0.1:8000",
    "date": "Fri, 04 Dec 2026 10:00:00 GMT",
    "user-agent": "aliyun-sdk-python/1.3.0(Linux/6.1/x86_64;3.11.7)",
    "Authorization": "MNS STS.key:c2lnbmF0dXJl",
    "security-token": "CAIS-token",
    "Connection": "Keep-Alive",
}


class RecordingSocket:
    """What http.client hands the socket: the bytes of a request, joined."""

    def __init__(self) -> None:
        self.sent = b""

    def sendall(self, data: bytes) -> None:
        self.sent += bytes(data)

    def close(self) -> None:
        pass


def stock_request(method: str, target: str, headers: dict[str, str], body: bytes | str) -> bytes:
    """The bytes http.client sends for ``request(method, target, body, headers)``, as the SDK calls it."""
    connection = http.client.HTTPConnection("127.0.0.1", 8000)
    recorder = RecordingSocket()
    connection.sock = recorder  # type: ignore[assignment]
    connection.request(method, target, body, headers)
    return recorder.sent


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        ("GET", "/queues/Alicom-Queue-i1-SmsReport/messages?numOfMessages=16&waitseconds=30", b""),
        ("DELETE", "/queues/Alicom-Queue-i1-SmsReport/messages", b'<?xml version="1.0"?><ReceiptHandles/>'),
    ],
)
def test_a_request_is_the_bytes_http_client_sends(method: str, target: str, body: bytes) -> None:
    """Receive and delete go out byte for byte as the SDK's http.client call wrote them."""
    headers = dict(MNS_HEADERS, **({"content-md5": "bWQ1", "content-type": "text/xml;charset=UTF-8"} if body else {}))
    sdk_body: bytes | str = body or ""  # the SDK passes "" for a request without a body

    assert encode_request(method, target, headers, body) == stock_request(method, target, headers, sdk_body)


@pytest.mark.parametrize("bad", ["token\r\nInjected: yes", "token\nx", "tok\0en"])
def test_a_value_that_could_inject_fields_is_refused_without_quoting_it(bad: str) -> None:
    """A line break or NUL in a value is an error that names the field, never its value."""
    with pytest.raises(ValueError, match="security-token") as caught:
        encode_request("GET", "/", dict(MNS_HEADERS, **{"security-token": bad}), b"")
    assert "token" not in str(caught.value).replace("security-token", "")


def test_invalid_field_names_and_non_latin1_values_are_refused() -> None:
    with pytest.raises(ValueError, match="not a valid HTTP field name"):
        encode_request("GET", "/", {"bad name": "x"}, b"")
    with pytest.raises(ValueError, match="outside Latin-1"):
        encode_request("GET", "/", {"x-note": "\u4e2d"}, b"")


# -- reading answers ------------------------------------------------------------------------------


class Trickle:
    """A socket whose answer arrives in the given pieces, one per recv: how a slow network splits it.

    A real socket cannot be made to split an answer at chosen bytes; the kernel coalesces what was
    sent. Everything else runs over real sockets below.
    """

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)
        self.sent = b""

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def recv(self, size: int) -> bytes:
        if not self.pieces:
            return b""
        piece = self.pieces.pop(0)
        if len(piece) > size:
            self.pieces.insert(0, piece[size:])
        return piece[:size]


def read_pieces(pieces: list[bytes]) -> Answer:
    return exchange(Trickle(pieces), b"GET / HTTP/1.1\r\n\r\n")  # type: ignore[arg-type]


def stock_answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (as the SDK collects them) and body, as http.client reads ``raw``."""

    class Source:
        def makefile(self, mode: str) -> io.BufferedReader:
            return io.BufferedReader(io.BytesIO(raw))  # type: ignore[arg-type]

    response = http.client.HTTPResponse(Source(), method="GET")  # type: ignore[arg-type]
    response.begin()
    return response.status, {name: value.strip(" \t") for name, value in response.getheaders()}, response.read()


field_names = st.sampled_from(["Server", "x-mns-request-id", "X-Extra", "Date", "x-mns-version", "Content-Type"])
field_values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30)


@st.composite
def answers(draw: st.DrawFn) -> tuple[bytes, str]:
    status = draw(st.sampled_from([200, 204, 400, 404, 500, 503]))
    fields = draw(st.lists(st.tuples(field_names, field_values), max_size=6))
    body = b"" if status == 204 else draw(st.binary(max_size=3000))
    # A 204 answer has no body whatever its fields say; it is sent without framing fields here.
    framing = "none" if status == 204 else draw(st.sampled_from(["length", "chunked", "close"]))
    head = [f"HTTP/1.1 {status} Reason Phrase"] + [f"{name}: {value}" for name, value in fields]
    if framing == "length":
        head.append(f"Content-Length: {len(body)}")
        payload = body
    elif framing == "chunked":
        head.append("Transfer-Encoding: chunked")
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True) if b > a]
        payload = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\nTrailer: t\r\n\r\n"
    elif framing == "close":
        head.append("Connection: close")
        payload = body
    else:
        payload = b""
    return "\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + payload, framing


@settings(max_examples=300, deadline=None)
@given(answer=answers(), splits=st.lists(st.integers(1, 200), max_size=8))
def test_any_answer_in_any_pieces_reads_as_http_client_reads_it(answer: tuple[bytes, str], splits: list[int]) -> None:
    """Status, fields and body agree with http.client for every framing, however the bytes arrive."""
    raw, framing = answer
    pieces, rest = [], raw
    for size in splits:
        pieces.append(rest[:size])
        rest = rest[size:]
    pieces.append(rest)

    ours = read_pieces([piece for piece in pieces if piece])

    assert (ours.status, ours.headers, ours.body) == stock_answer(raw)
    assert ours.keep_alive == (framing != "close")


def test_interim_answers_are_skipped_and_connection_options_are_read() -> None:
    continued = read_pieces([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    assert (continued.status, continued.body, continued.keep_alive) == (200, b"ok", True)

    closing = read_pieces([b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n"])
    assert not closing.keep_alive
    old = read_pieces([b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"])
    assert not old.keep_alive
    old_kept = read_pieces([b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"])
    assert old_kept.keep_alive


def test_bytes_beyond_the_answer_end_the_connection() -> None:
    """Extra bytes would be read as the next answer's start: the connection is not reused."""
    answer = read_pieces([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokJUNK"])
    assert (answer.body, answer.keep_alive) == (b"ok", False)


def test_a_name_sent_twice_keeps_its_last_value_and_lengths_sent_twice_must_agree() -> None:
    answer = read_pieces([b"HTTP/1.1 200 OK\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"])
    assert answer.headers["X-A"] == "2"
    assert answer.body == b"ok"
    with pytest.raises(AnswerError, match="Content-Length"):
        read_pieces([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk"])


@pytest.mark.parametrize(
    ("pieces", "reason"),
    [
        ([b"HTTP/1.1 200 OK\r\nContent-"], "ended inside its status line or headers"),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"], "ended inside its body"),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"], "ended inside its body"),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"], "not hexadecimal"),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n"], "longer than its size"),
        ([b"ICY 200 OK\r\n\r\n"], "not HTTP/1.0 or HTTP/1.1"),
        ([b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n"], "not 'name: value'"),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"], "Content-Length"),
        ([b"HTTP/1.1 101 Switching Protocols\r\n\r\n"], "switched protocols"),
        ([b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * (70 * 1024)], "exceed"),
    ],
)
def test_broken_answers_are_answer_errors_that_never_quote_the_answer(pieces: list[bytes], reason: str) -> None:
    with pytest.raises(AnswerError, match=reason) as caught:
        read_pieces(pieces)
    assert not isinstance(caught.value, ConnectionLostError)
    assert "folded" not in str(caught.value)
    assert "abc" not in str(caught.value)


def test_a_body_over_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_exchange, "MAX_BODY_BYTES", 8)
    with pytest.raises(AnswerError, match="longer than 8 bytes"):
        read_pieces([b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n123456789"])
    with pytest.raises(AnswerError, match="longer than 8 bytes"):
        read_pieces([b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"123456789"])


# -- over real sockets ------------------------------------------------------------------------------


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    client, server = socket.socketpair()
    yield client, server
    client.close()
    server.close()


def test_a_connection_closed_before_any_answer_byte_is_lost_not_broken(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """What a kept-alive connection the server timed out looks like: the request may be sent again."""
    client, server = pair
    server.close()
    with pytest.raises(ConnectionLostError):
        exchange(client, b"GET / HTTP/1.1\r\n\r\n")


def test_a_reset_connection_is_lost() -> None:
    """A connection the server reset (RST) while idle fails the send or the first read as lost."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    accepted.close()
    try:
        with pytest.raises(ConnectionLostError):
            exchange(client, b"GET / HTTP/1.1\r\n\r\n")
    finally:
        client.close()
        listener.close()


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kernel", [True, False], ids=["SO_RCVTIMEO", "python-timeout"])
def test_a_silent_peer_times_out(pair: tuple[socket.socket, socket.socket], kernel: bool) -> None:
    """Both ways of bounding a read end in TimeoutError: kernel timeouts on a blocking socket, or Python's."""
    client, server = pair
    if kernel:
        client.settimeout(None)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("@ll", 0, 200_000))
    else:
        client.settimeout(0.2)
    with pytest.raises(TimeoutError):
        exchange(client, b"GET / HTTP/1.1\r\n\r\n")
    assert server.recv(100) == b"GET / HTTP/1.1\r\n\r\n"


def test_a_large_answer_arrives_whole_over_a_socket(pair: tuple[socket.socket, socket.socket]) -> None:
    """A body bigger than one read (a receive of 16 large receipts) is read to its length."""
    client, server = pair
    body = bytes(range(256)) * 4096  # 1 MiB
    writer = threading.Thread(
        target=server.sendall, args=(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),)
    )
    writer.start()
    answer = exchange(client, b"GET / HTTP/1.1\r\n\r\n")
    writer.join()
    assert answer.body == body
    assert answer.keep_alive


def test_stock_reader_oracle_is_http_client() -> None:
    """The oracle above is http.client itself, reading through a buffered file as it does on a socket."""
    assert stock_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") == (200, {"Content-Length": "2"}, b"ok")
