"""AnswerResponse reads what http.client reads: same headers, same framing, only faster for plain blocks."""

from __future__ import annotations

import http.client
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mns_consumer.alicom import http_answer
from mns_consumer.alicom.http_answer import AnswerResponse, parse_plain_headers

MNS_HEADERS = (
    b"Server: AliyunMNS\r\n"
    b"Content-Type: text/xml;charset=utf-8\r\n"
    b"Content-Length: 12\r\n"
    b"Connection: keep-alive\r\n"
    b"x-mns-request-id: 65F1A2B3C4D5E6F708090A0B\r\n"
    b"x-mns-version: 2015-06-06\r\n"
    b"Date: Fri, 04 Dec 2026 10:00:00 GMT\r\n"
    b"\r\n"
)


def summary(message: Any, rest: bytes) -> tuple[Any, ...]:
    """Everything a reader of the parsed headers can observe, and the bytes left for the body."""
    return (
        message.items(),
        _payload(message.get_payload()),
        [type(defect) for defect in message.defects],
        message.get_unixfrom(),
        message.preamble,
        message.epilogue,
        message.get_content_type(),
        rest,
    )


def _payload(payload: Any) -> Any:
    """A payload comparable by value: nested messages (message/* types) by their headers and payload."""
    if isinstance(payload, list):
        return [(part.items(), _payload(part.get_payload())) for part in payload]
    return payload


def both(block: bytes) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(ours, http.client's) summaries of one header block followed by a body."""
    ours_fp, stock_fp = io.BytesIO(block + b"BODY"), io.BytesIO(block + b"BODY")
    ours = parse_plain_headers(ours_fp)  # type: ignore[arg-type]
    stock = http.client.parse_headers(stock_fp)
    return summary(ours, ours_fp.read()), summary(stock, stock_fp.read())


def test_an_mns_answer_takes_the_plain_path_and_reads_as_http_client_reads_it() -> None:
    assert http_answer._plain_fields(MNS_HEADERS.decode("iso-8859-1")) is not None
    ours, stock = both(MNS_HEADERS)
    assert ours == stock
    assert dict(ours[0])["x-mns-request-id"] == "65F1A2B3C4D5E6F708090A0B"


@pytest.mark.parametrize(
    "block",
    [
        b"X-A: one\r\n  folded\r\nX-B: two\r\n\r\n",  # a continuation line
        b"X-A: one\rX-B: two\r\n\r\n",  # a bare CR inside a line
        b"From someone Fri Dec  4 10:00:00 2026\r\nX-A: 1\r\n\r\n",  # a mailbox From_ line
        b": no name\r\nX-A: 1\r\n\r\n",  # an empty name
        b"X A: space in the name\r\n\r\n",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n",
        b"content-type:\tMessage/rfc822\r\n\r\n",
        b"X-A: 1\r\n",  # the answer ended inside its headers
        b"X-A: caf\xe9 \x85 \x0c tail  \r\n\n",
        b"X-Dup: 1\r\nx-dup: 2\r\nX-DUP:3\r\n\r\n",
        b"X-Time:10:00:00\r\nX-Tab:\t \tvalue\r\n\r\n",
        b"\r\n",
    ],
)
def test_unusual_blocks_read_exactly_as_http_client_reads_them(block: bytes) -> None:
    ours, stock = both(block)
    assert ours == stock


_BLANKS = st.lists(st.sampled_from([b" ", b"\t"]), max_size=3).map(b"".join)
_TEXT = st.lists(
    st.sampled_from([b"a", b"Z", b"-", b":", b" ", b"\t", b"\r", b"\xe9", b"\x85", b"\x0b", b"\x0c", b"\x00"]),
    max_size=10,
).map(b"".join)
_NAMES = st.sampled_from([b"X-A", b"Content-Type", b"From", b"Server", b"x-mns-request-id", b"", b"B c", b" X"])
_HEADER_LINE = st.builds(
    lambda name, blanks, text, end: name + b":" + blanks + text + end,
    _NAMES,
    _BLANKS,
    _TEXT,
    st.sampled_from([b"\r\n", b"\n", b"\r\r\n"]),
)


@settings(max_examples=500, deadline=None)
@given(
    lines=st.lists(_HEADER_LINE, max_size=6),
    last=st.sampled_from([b"\r\n", b"\n", b""]),
)
def test_any_header_block_reads_exactly_as_http_client_reads_it(lines: list[bytes], last: bytes) -> None:
    ours, stock = both(b"".join(lines) + last)
    assert ours == stock


@pytest.fixture
def server() -> Iterator[str]:
    """A local HTTP/1.1 server answering /plain (Content-Length) and /chunked, on one kept-alive connection."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path == "/chunked":
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.write(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
                return
            body = b"<Messages/>" * 3000  # larger than the buffer of one read
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_answers_over_a_kept_alive_connection_read_as_with_http_client(server: str) -> None:
    """Framing stays http.client's: fixed-length and chunked bodies, several answers on one connection."""
    ours = http.client.HTTPConnection(server, timeout=5)
    ours.response_class = AnswerResponse
    stock = http.client.HTTPConnection(server, timeout=5)
    try:
        for path in ("/plain", "/chunked", "/plain"):
            answers = []
            for connection in (ours, stock):
                connection.request("GET", path)
                response = connection.getresponse()
                answers.append((response.status, response.getheader("Content-Type"), response.read()))
            assert answers[0] == answers[1]
            assert type(response) is http.client.HTTPResponse
        assert ours.sock is not None  # still the first connection: keep-alive worked
    finally:
        ours.close()
        stock.close()


def test_only_answer_responses_use_the_plain_parser() -> None:
    """http.client itself is left alone: other clients in the process keep the email parser."""
    assert AnswerResponse.begin.__globals__["parse_headers"] is parse_plain_headers
    assert http.client.HTTPResponse.begin.__globals__["parse_headers"] is http.client.parse_headers
    assert http.client.parse_headers is not parse_plain_headers
