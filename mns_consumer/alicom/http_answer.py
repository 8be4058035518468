"""How an MNS client reads an HTTP answer: a larger buffer, and headers split without the email parser.

``http.client`` parses every answer's headers with ``email.parser``: a feed parser built for mail,
which cost 20-55 µs of CPU per request, 5-20% of a BatchReceiveMessage or BatchDeleteMessage round
trip against the emulator, receive and delete in one thread (py-spy on the busy daemon put it higher,
at up to 40% of the GIL time of a round trip). MNS answers carry a handful of plain ``Name: value``
lines, which :func:`parse_plain_headers` splits directly into the same
:class:`http.client.HTTPMessage` the email parser builds; any block it is not certain to read
identically (a folded line, a stray CR, a name the email parser would not accept, a multipart or
message type) goes to the email parser as before. Only connections given :class:`AnswerResponse` as
their ``response_class`` use it: ``http.client`` itself is not patched.
"""

from __future__ import annotations

import email.parser
import http.client
import io
import re
import socket
import types
from typing import Any, Final, Literal, cast

__all__ = ["AnswerResponse", "parse_plain_headers"]

_ANSWER_BUFFER_BYTES: Final = 64 * 1024

# A header block the email parser reads as exactly its lines' (name, value) pairs: every line a name of
# printable characters without a colon (its headerRE), then the value up to a single line end, and a
# blank line to close it. The email parser splits lines at CR as well as LF, so a value holds neither;
# it strips leading blanks and the line end. Checked on the whole block in one call, then split.
_PLAIN_BLOCK: Final = re.compile(r"(?:[!-9;-~]+:[^\r\n]*\r?\n)*\r?\n")
_PLAIN_FIELD: Final = re.compile(r"([!-9;-~]+):[ \t]*([^\r\n]*)\r?\n")
# A multipart or message/* type makes the email parser look into the (absent) body.
_NESTED_TYPE: Final = re.compile(r"^content-type:[ \t]*(?:multipart|message)", re.IGNORECASE | re.MULTILINE)


def parse_plain_headers(fp: io.BufferedIOBase, _class: type[http.client.HTTPMessage] = http.client.HTTPMessage) -> Any:
    """Read a header block from ``fp``, as ``http.client.parse_headers`` does, and parse it.

    Returns the message ``email.parser`` would build: the same headers in the same order, an empty
    payload and no defects. Lines are read by ``http.client``'s own reader, with its limits on line
    length and count.
    """
    lines: list[bytes] = http.client._read_headers(fp)  # type: ignore[attr-defined]
    text = b"".join(lines).decode("iso-8859-1")
    fields = _plain_fields(text)
    if fields is None:
        return email.parser.Parser(_class=_class).parsestr(text)
    message = _class()
    for name, value in fields:
        message.set_raw(name, value)
    message.set_payload("")
    return message


def _plain_fields(text: str) -> list[tuple[str, str]] | None:
    """The (name, value) pairs of a block of plain header lines, or None if any line is not plain.

    A block that ends without its blank line (the answer ended inside its headers) is not plain either.
    """
    if _PLAIN_BLOCK.fullmatch(text) is None or _NESTED_TYPE.search(text) is not None:
        return None
    return _PLAIN_FIELD.findall(text)


def _begin_with_plain_headers() -> Any:
    """``HTTPResponse.begin`` exactly as ``http.client`` defines it, reading headers with our parser.

    The function is the standard library's own code object, run with a copy of its module's globals
    in which ``parse_headers`` is :func:`parse_plain_headers`: status line, 100-continue, framing and
    keep-alive rules stay ``http.client``'s, and nothing outside this class changes.
    """
    stock = http.client.HTTPResponse.begin
    if "parse_headers" not in stock.__code__.co_names:
        return stock  # a Python whose begin() reads headers otherwise: keep its own
    namespace = dict(stock.__globals__, parse_headers=parse_plain_headers)
    return types.FunctionType(stock.__code__, namespace, stock.__name__, stock.__defaults__, stock.__closure__)


class _LargeBufferSocket:
    """The socket as ``HTTPResponse.__init__`` sees it: its one call, ``makefile``, gets a 64 KiB buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def makefile(self, mode: Literal["rb"]) -> io.BufferedReader:
        return cast("io.BufferedReader", self._sock.makefile("rb", buffering=_ANSWER_BUFFER_BYTES))


class AnswerResponse(http.client.HTTPResponse):
    """An HTTP response read through a 64 KiB buffer, its headers split by :func:`parse_plain_headers`.

    A BatchReceiveMessage answer of 16 receipts is about 10 KB, so the default 8 KiB buffer takes two
    reads of the socket, each a system call that releases the GIL (with a socket timeout, two: poll and
    recv), and getting it back costs a busy daemon more than the call itself.
    """

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(_LargeBufferSocket(sock), *args, **kwargs)  # type: ignore[arg-type]

    begin = _begin_with_plain_headers()
