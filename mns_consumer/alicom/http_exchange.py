"""The poller's bulk MNS calls on the wire: a request written in one send, its answer read in one or two.

BatchReceiveMessage and BatchDeleteMessage are nearly every request a busy daemon makes. Sent through
the SDK, each went through ``http.client``: a validated ``putheader`` call per header, a buffered reader
and a line-by-line read of the status and headers per answer, and a socket timeout that makes every
send and read two system calls (poll, then the call), each handing the GIL back. Here the request is
written in one ``sendall`` and the answer read with as few ``recv`` calls as its size needs (one for
a receive of 16 receipts). The SDK still builds and signs every request (``MNSClient.build_header``)
and decodes every error answer (``MNSClient.check_status``): only the bytes on the socket are ours.

Framing is RFC 9112's, as much as a client of one server needs: ``Content-Length``, the chunked
transfer coding, or a body that runs until the server closes; interim 1xx answers are skipped. An
answer that breaks it raises :class:`AnswerError`, whose message names what was wrong and never quotes
the answer (a receive's answer holds receipts, with phone numbers).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

__all__ = ["Answer", "AnswerError", "ConnectionLostError", "encode_request", "exchange"]

_READ_BYTES: Final = 64 * 1024
"""Bytes asked of each ``recv``: a receive of 16 receipts (about 10 KB) arrives in one."""
MAX_HEAD_BYTES: Final = 64 * 1024
"""Longest status line and header block accepted, as ``http.client`` bounds a header line."""
MAX_BODY_BYTES: Final = 64 * 1024 * 1024
"""Longest body accepted: 16 messages of 64 KiB are about 1.4 MB once base64-encoded and wrapped in XML."""

_STATUS_LINE: Final = re.compile(r"HTTP/1\.([01]) ([1-9][0-9]{2})(?: [^\r\n]*)?")
_FIELD_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CHUNK_SIZE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")
_FRAMING_FIELDS: Final = frozenset({"connection", "content-length", "transfer-encoding"})


class AnswerError(OSError):
    """The answer is not HTTP/1.1 this client can read, or it ended before its end.

    An ``OSError`` like the socket's own failures, since the connection it came on is unusable.
    """


class ConnectionLostError(AnswerError):
    """The connection failed before any byte of the answer arrived: the request may be sent again.

    On a kept-alive connection this is how a server's idle timeout shows: it closed (or reset) the
    connection while the client thought it open.
    """


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer.

    Attributes:
        status: The status code.
        headers: Header fields with their names as sent; a name sent twice keeps its last value, as
            the SDK's ``dict(response.getheaders())`` does.
        body: The body, de-chunked.
        keep_alive: Whether the connection may carry the next request.
    """

    status: int
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


def encode_request(method: str, target: str, headers: Mapping[str, str], body: bytes) -> bytes:
    """An HTTP/1.1 request as ``http.client`` writes it for ``request(method, target, body, headers)``.

    ``Accept-Encoding: identity`` and ``Content-Length`` come first, as ``http.client`` adds them, then
    the fields in the order given; ``headers`` must hold ``host``, as the SDK's always do.

    Raises:
        ValueError: If a field name is not an HTTP token, or a value holds a line break or NUL (it
            could inject fields) or a character outside Latin-1. The message names the field, never
            its value: values include the security token and the signature.
    """
    lines = [f"{method} {target} HTTP/1.1", "Accept-Encoding: identity", f"Content-Length: {len(body)}"]
    for name, value in headers.items():
        if not _is_field_name(name):
            raise ValueError(f"{name!r} is not a valid HTTP field name")
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"the value of the {name} field holds a line break or NUL")
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    try:
        head = "\r\n".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("a request field holds a character outside Latin-1") from None
    return head + body if body else head


@lru_cache(maxsize=64)
def _is_field_name(name: str) -> bool:
    # The SDK sends the same dozen names on every request: checked once each.
    return _FIELD_NAME.fullmatch(name) is not None


def exchange(sock: socket.socket, request: bytes) -> Answer:
    """Send a request on a connected socket and read its answer.

    The socket may have a Python timeout or be blocking with kernel timeouts (``SO_RCVTIMEO``,
    ``SO_SNDTIMEO``); either way an expired timeout raises ``TimeoutError``.

    Raises:
        ConnectionLostError: If the send failed, or the connection was closed or reset before any byte of
            the answer arrived.
        AnswerError: If the answer broke off or is not readable HTTP/1.1.
        TimeoutError: If a send or read outlasted the socket's timeout.
        OSError: For any other failure of the socket.
    """
    try:
        sock.sendall(request)
    except BlockingIOError:
        raise TimeoutError("timed out") from None
    except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
        raise ConnectionLostError(f"the connection failed while sending: {type(exc).__name__}") from exc
    return _Incoming(sock).answer()


class _Incoming:
    """The bytes of one answer as they arrive, and a read position in them."""

    __slots__ = ("data", "position", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = bytearray()
        self.position = 0

    def answer(self) -> Answer:
        while True:
            status, version, headers, framing = self._head()
            if status >= 200:
                break
            if status == 101:
                raise AnswerError("the server switched protocols")
            # 100 Continue and other interim answers carry no body; the real one follows.
        keep_alive = _keeps_alive(version, framing.get("connection"))
        if status in (204, 304):
            body = b""
        else:
            body, framed = self._body(framing)
            keep_alive = keep_alive and framed
        if self.position != len(self.data):
            # Bytes beyond the answer: the server does not speak HTTP as this client reads it.
            keep_alive = False
        return Answer(status=status, headers=headers, body=body, keep_alive=keep_alive)

    def _fill(self) -> bool:
        """Read once more from the socket; False when the peer closed the connection."""
        try:
            chunk = self.sock.recv(_READ_BYTES)
        except BlockingIOError:
            raise TimeoutError("timed out") from None
        except (ConnectionResetError, ConnectionAbortedError) as exc:
            if not self.data:
                raise ConnectionLostError(f"the connection was reset before the answer: {type(exc).__name__}") from exc
            raise AnswerError(f"the connection was reset during the answer: {type(exc).__name__}") from exc
        if not chunk:
            return False
        self.data += chunk
        return True

    def _head(self) -> tuple[int, int, dict[str, str], dict[str, str]]:
        """Status, minor version, header fields, and the framing fields by lowercase name."""
        start = self.position
        searched = start
        while (end := self.data.find(b"\r\n\r\n", searched)) < 0:
            if len(self.data) - start > MAX_HEAD_BYTES:
                raise AnswerError(f"the status line and headers exceed {MAX_HEAD_BYTES} bytes")
            searched = max(start, len(self.data) - 3)
            if not self._fill():
                if not self.data:
                    raise ConnectionLostError("the server closed the connection before answering")
                raise AnswerError("the answer ended inside its status line or headers")
        if end - start > MAX_HEAD_BYTES:
            raise AnswerError(f"the status line and headers exceed {MAX_HEAD_BYTES} bytes")
        self.position = end + 4
        lines = self.data[start:end].decode("latin-1").split("\r\n")
        matched = _STATUS_LINE.fullmatch(lines[0])
        if matched is None:
            raise AnswerError("the status line is not HTTP/1.0 or HTTP/1.1")
        headers: dict[str, str] = {}
        framing: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not _is_field_name(name):
                # A folded line (obsolete in RFC 9112) lands here too: its name starts with a blank.
                raise AnswerError("a header line is not 'name: value'")
            value = value.strip(" \t")
            headers[name] = value
            lowered = name.lower()
            if lowered in _FRAMING_FIELDS:
                # A field sent more than once is one comma-separated list (RFC 9110 section 5.3).
                framing[lowered] = f"{framing[lowered]}, {value}" if lowered in framing else value
        return int(matched[2]), int(matched[1]), headers, framing

    def _body(self, framing: dict[str, str]) -> tuple[bytes, bool]:
        """The body and whether it was framed (the connection may go on), per RFC 9112 section 6.3."""
        coding = framing.get("transfer-encoding")
        if coding is not None:
            if coding.rsplit(",", 1)[-1].strip().lower() == "chunked":
                # A length sent beside the coding is ignored, and the connection closed after (6.3, 3).
                return self._chunked(), "content-length" not in framing
            return self._until_close(), False
        length = framing.get("content-length")
        if length is None:
            return self._until_close(), False
        values = {value.strip() for value in length.split(",")}
        if len(values) != 1 or not (size := values.pop()).isdigit() or not size.isascii():
            raise AnswerError("Content-Length is not one decimal number")
        if int(size) > MAX_BODY_BYTES:
            raise AnswerError(f"the body is longer than {MAX_BODY_BYTES} bytes")
        return self._take(int(size)), True

    def _take(self, size: int) -> bytes:
        while len(self.data) - self.position < size:
            if not self._fill():
                raise AnswerError("the answer ended inside its body")
        start = self.position
        self.position += size
        return bytes(self.data[start : self.position])

    def _line(self) -> bytes:
        while (end := self.data.find(b"\r\n", self.position)) < 0:
            if len(self.data) - self.position > MAX_HEAD_BYTES:
                raise AnswerError("a chunk-size or trailer line is too long")
            if not self._fill():
                raise AnswerError("the answer ended inside its chunked body")
        line = bytes(self.data[self.position : end])
        self.position = end + 2
        return line

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            matched = _CHUNK_SIZE.fullmatch(self._line())
            if matched is None:
                raise AnswerError("a chunk-size line is not hexadecimal")
            size = int(matched[1], 16)
            if size == 0:
                break
            total += size
            if total > MAX_BODY_BYTES:
                raise AnswerError(f"the body is longer than {MAX_BODY_BYTES} bytes")
            parts.append(self._take(size))
            if self._line():
                raise AnswerError("a chunk is longer than its size")
        while self._line():
            pass  # trailer fields: nothing an MNS client reads
        return b"".join(parts)

    def _until_close(self) -> bytes:
        while self._fill():
            if len(self.data) - self.position > MAX_BODY_BYTES:
                raise AnswerError(f"the body is longer than {MAX_BODY_BYTES} bytes")
        body = bytes(self.data[self.position :])
        self.position = len(self.data)
        return body


def _keeps_alive(version: int, connection: str | None) -> bool:
    options = {token.strip().lower() for token in (connection or "").split(",")}
    if "close" in options:
        return False
    return version == 1 or "keep-alive" in options
