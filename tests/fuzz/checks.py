"""The invariant each fuzz target checks, as plain functions of the input bytes.

The atheris runner (``tests/fuzz/run.py``, ``make fuzz``) calls them on generated inputs, and
``tests/unit/test_fuzz_regressions.py`` calls them on every corpus file and every crasher, so ``make test``
keeps the cases without atheris. A check returns normally when the input is handled as the code promises
and raises otherwise: ``AssertionError`` for a broken promise, or whatever undocumented exception escaped.

Input formats (one file of the corpus is one input, readable as text):

* ``mns_body`` and ``push_body``: the MessageType, a newline, then the body as sent (``SmsUp\\n{...}``).
* ``push_http``: raw HTTP request bytes sent to a real :class:`PushReceiver` on loopback. A
  ``Content-Length: *`` header is replaced by the true length of what follows the blank line, so the
  fuzzer can change a body without breaking its framing; any other value is sent as it is.
* ``config``: the bytes of a YAML configuration file.
* ``replay``: the bytes of a dead-letter file (JSON Lines).
"""

from __future__ import annotations

import atexit
import base64
import functools
import json
import math
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import yaml

from mns_consumer.config import Config, load_config, parse_config
from mns_consumer.errors import ConfigError, DecodeError
from mns_consumer.observe.events import Events
from mns_consumer.observe.redaction import redact_text
from mns_consumer.push.receiver import PushReceiver
from mns_consumer.push.spool import Spool
from mns_consumer.receipts import MESSAGE_TYPES, Receipt, decode_mns_body, decode_push
from mns_consumer.replay import replay_dead_letters
from mns_consumer.sinks.base import DeadLetter
from mns_consumer.sinks.dead_letter import dead_letter_to_json_dict, read_dead_letters
from mns_consumer.sinks.file import encode_json_line
from mns_consumer.testing import RecordingSink

INTERNAL_ERROR: Final = "internal decoder error"
"""The reason prefix of the decoders' catch-all: a DecodeError with it is a decoder bug, not bad input."""

GOOD_RECEIPTS: Final[dict[str, bytes]] = {
    # The reference's examples (alicom-receipts.md, section 4), one per MessageType.
    "SmsReport": '{"phone_number":"13900001111","send_time":"2024-05-01 10:00:00","report_time":"2024-05-01 10:00:04",'
    '"success":true,"err_code":"DELIVERED","err_msg":"用户接收成功","sms_size":"1",'
    '"biz_id":"812345678901234567^0","out_id":"order-42"}'.encode(),
    "DypnsSmsVerifyReport": b'{"phone_number":"13900001111","send_time":"2024-05-01 10:00:00","success":true,'
    b'"err_code":"DELIVERED","biz_id":"812345678901234567^0"}',
    "GlobeSmsReport": b'{"to":"6591234567","status":"2","message_id":"12441353","send_date":"2024-05-01 10:00:00",'
    b'"receive_date":"2024-05-01 10:00:06","error_code":"SP_UNKNOW_ERROR","error_description":"carrier unknown error"}',
    "SmsUp": b'{"phone_number":"13900001111","content":"TD","send_time":"2024-05-01 10:05:00",'
    b'"dest_code":"1234","sequence_id":1234567890,"sign_name":"ExampleSign"}',
    "SignSmsReport": b'{"sign_name":"ExampleSign","sign_status":"approved","reason":"","sign_source":"enterprise",'
    b'"sign_scene":"general","remark":"login codes","create_date":"2024-05-01 09:00:00","orderId":"2001234"}',
    "TemplateSmsReport": '{"template_code":"SMS_123456789","template_name":"login code","template_status":"rejected",'
    '"reason":"wrong category","remark":"","create_date":"2024-05-01 09:00:00",'
    '"template_type":"验证码","template_content":"Your code is ${code}","order_id":"205101"}'.encode(),
    "MnsCardVender": b'{"mobile":"13900001111","outId":"card-7","render_status":"0","desc":"ok"}',
    "MnsCardTemplate": b'{"approval_status":2,"extData":{},"template_code":"CARD_SMS_1234",'
    b'"tmpOps":[{"state":2,"desc":"rejected","vendorCode":"OPPO"},{"state":1,"desc":"ok","vendorCode":"HUAWEI"}],'
    b'"desc":"OPPO rejected"}',
}


def split_typed(data: bytes) -> tuple[str, bytes]:
    """``TYPE\\nBODY`` as (type, body); the type is read as Latin-1 so that any byte is a character."""
    head, _, body = data.partition(b"\n")
    return head.decode("latin-1").strip(), body


# --- receipts -------------------------------------------------------------------------------------


def _check_decode_error(exc: DecodeError, message_type: str, raw: bytes) -> None:
    """A refusal is a dead letter that keeps the body, says why, and is not the decoders' catch-all."""
    assert not exc.reason.startswith(INTERNAL_ERROR), f"decoder bug reached the catch-all: {exc.reason}"
    assert exc.raw == raw, "the DecodeError does not carry the raw body it refuses"
    assert exc.message_type == message_type
    assert exc.reason.strip(), "a DecodeError without a reason"
    # The MessageType comes from the configuration, not the body: a reason may name it.
    quoted = _quoted_value(exc.reason.replace(repr(message_type), ""), raw)
    assert quoted is None, f"the reason quotes a value of the body ({quoted!r}): {exc.reason}"
    _check_dead_letter_keeps(raw, message_type, str(exc))


def _quoted_value(reason: str, raw: bytes) -> str | None:
    """A value of the body (six characters or more, not also a key) that the reason repeats, if any.

    Reasons travel to logs and replay output, which more people read than raw bodies: they name the field
    and the kind of value, never the value (a phone number, a message text).
    """
    try:
        document = json.loads(raw.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        try:
            document = json.loads(base64.b64decode(b"".join(raw.split()), validate=True).decode("utf-8-sig"))
        except (ValueError, RecursionError):
            return None
    values: set[str] = set()
    keys: set[str] = set()
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            keys.update(str(key) for key in item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and len(item.strip()) >= 6:
            values.add(item.strip())
        elif isinstance(item, int) and not isinstance(item, bool) and 6 <= len(str(abs(item))) <= 100:
            values.add(str(item))
    for value in sorted(values - keys - set(MESSAGE_TYPES)):
        if value in reason:
            return value
    return None


def _check_dead_letter_keeps(raw: bytes, message_type: str, reason: str) -> None:
    """The dead-letter file line of this body reads back as the same bytes (nothing lost on the way)."""
    letter = DeadLetter(message_type, "mns", "q", raw, reason, datetime(2024, 5, 1, tzinfo=UTC))
    line = encode_json_line(dead_letter_to_json_dict(letter))
    with tempfile.NamedTemporaryFile(dir=_scratch(), suffix=".jsonl") as file:
        file.write(line)
        file.flush()
        (back,) = read_dead_letters(file.name)
    assert back.raw == raw, "a dead letter's raw body does not survive the dead-letter file"
    # Reasons are redacted as they are written (secrets, phone numbers: see redact_text).
    assert back.reason == redact_text(reason)


def _check_receipt(receipt: Receipt, message_type: str, raw: bytes) -> None:
    """An accepted receipt keeps its body and can be written by every sink (compact UTF-8 JSON)."""
    assert receipt.raw == raw
    assert receipt.message_type == message_type
    assert len(receipt.dedupe_key) == 64
    assert all(c in "0123456789abcdef" for c in receipt.dedupe_key)
    line = encode_json_line(receipt.to_json_dict())
    back = Receipt.from_json_dict(json.loads(line))
    assert back.dedupe_key == receipt.dedupe_key, "a stored receipt does not read back with its dedupe key"


def check_mns_body(data: bytes) -> None:
    """``decode_mns_body``: only DecodeError escapes, never its catch-all; base64 and raw JSON agree.

    The body is tried as bytes (the SDK's default decoding) and as text (``set_encoding(False)``); a body
    accepted as raw JSON must also be accepted, with the same dedupe key, once base64-encoded, as Alibaba
    enqueues it (reference 3.6).
    """
    message_type, body = split_typed(data)
    outcomes: list[Receipt | None] = []
    for given in (body, body.decode("utf-8", "surrogateescape")):
        raw = given.encode("utf-8", "surrogatepass") if isinstance(given, str) else given
        try:
            receipt = decode_mns_body(message_type, given, queue="q")
        except DecodeError as exc:
            _check_decode_error(exc, message_type, raw)
            outcomes.append(None)
        else:
            _check_receipt(receipt, message_type, raw)
            outcomes.append(receipt)
    direct = outcomes[0]
    if direct is not None and body.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] == b"{":
        encoded = base64.b64encode(body)
        try:
            via_base64 = decode_mns_body(message_type, encoded, queue="q")
        except DecodeError as exc:
            raise AssertionError(f"accepted as raw JSON, refused as its base64: {exc.reason}") from None
        assert via_base64.dedupe_key == direct.dedupe_key, "raw JSON and its base64 give different dedupe keys"


def check_push_body(data: bytes) -> None:
    """``decode_push``: one element at a time, and a good receipt next to a bad one is never lost.

    The payload is decoded as it is, then spliced as the second element after the reference example of its
    type: either the whole array is refused with its raw body (a dead letter that keeps everything), or the
    good receipt decodes exactly as it does alone.
    """
    message_type, payload = split_typed(data)
    _check_push_payload(message_type, payload)
    good = GOOD_RECEIPTS.get(message_type)
    if good is None:
        return
    alone = decode_push(message_type, b"[" + good + b"]")[0]
    assert isinstance(alone, Receipt)
    spliced = b"[" + good + b"," + payload + b"]"
    results = _check_push_payload(message_type, spliced)
    if results is None:
        return
    first = results[0]
    assert isinstance(first, Receipt), f"the good receipt next to a bad one was refused: {first}"
    assert first.dedupe_key == alone.dedupe_key


def _check_push_payload(message_type: str, payload: bytes) -> list[Receipt | DecodeError] | None:
    try:
        results = decode_push(message_type, payload, route="push:fuzz")
    except DecodeError as exc:
        _check_decode_error(exc, message_type, payload)
        return None
    for result in results:
        if isinstance(result, DecodeError):
            _check_decode_error(result, message_type, result.raw)
            assert result.raw, "a refused push element without its raw JSON"
        else:
            _check_receipt(result, message_type, result.raw)
    return results


# --- push receiver over loopback --------------------------------------------------------------------

SECRET: Final = "Fuzz-Secret-0123456789abcdef"
ROUTES: Final[dict[str, str]] = {"SmsReport": "/alicom/SmsReport", "SmsUp": "/alicom/SmsUp"}
ANSWER_SECONDS: Final = 5.0
"""How long the receiver may take to answer one input (a hang guard under atheris's own -timeout)."""


class ReceiverUnderTest:
    """A real PushReceiver on 127.0.0.1 with its spool in a scratch folder, recording handler errors."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="fuzz-push-", dir=_scratch())
        routes = [
            {"path": path, "secret": SECRET, "message_type": message_type, "sinks": ["recording"]}
            for message_type, path in ROUTES.items()
        ]
        config = parse_config(
            {
                "sinks": {"recording": {"type": "file", "path": os.path.join(self.folder, "sink.jsonl")}},
                "dead_letter": {"type": "file", "path": os.path.join(self.folder, "dead-letter.jsonl")},
                "push": {
                    "listen": "127.0.0.1:0",
                    "spool_path": os.path.join(self.folder, "spool.db"),
                    "routes": routes,
                    "max_body_bytes": 1024 * 1024,
                    "max_items": 1000,
                    "read_timeout_seconds": ANSWER_SECONDS,
                },
            },
            "fuzz.yaml",
        )
        assert config.push is not None
        self.config = config.push
        self.spool = Spool(self.config.spool_path)
        self.spool.open()
        self.errors: list[BaseException] = []
        self.receiver = PushReceiver(self.config, self.spool, Events())
        # The server's handle_error is where the standard library reports an exception a request raised.
        self.receiver._server.handle_error = self._record_error  # type: ignore[method-assign]
        self.receiver.start()

    def _record_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if error is not None and not isinstance(error, ConnectionError | TimeoutError):
            self.errors.append(error)

    def exchange(self, request: bytes) -> bytes:
        """Send the bytes, close the sending side, and read everything the receiver answers."""
        with socket.create_connection(("127.0.0.1", self.receiver.port), timeout=ANSWER_SECONDS) as connection:
            try:
                connection.sendall(request)
                connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the receiver closed first (a refusal before the whole request was read): read its answer
            chunks = []
            try:
                while chunk := connection.recv(65536):
                    chunks.append(chunk)
            except ConnectionResetError:
                pass
            except TimeoutError:
                raise AssertionError(f"the receiver did not answer within {ANSWER_SECONDS} s") from None
        return b"".join(chunks)

    def take_spooled(self) -> list[tuple[str, bytes]]:
        """Every entry the spool holds (route, body), removed."""
        taken: list[tuple[str, bytes]] = []
        for route in (f"push:{message_type}" for message_type in ROUTES):
            entries = self.spool.take(route, 1000)
            if entries:
                self.spool.remove(entries)
            taken.extend((entry.route, entry.body) for entry in entries)
        return taken


_RECEIVER: ReceiverUnderTest | None = None
_RECEIVER_LOCK = threading.Lock()


def receiver() -> ReceiverUnderTest:
    """The process's receiver under test, started on first use (a process serves one for all inputs)."""
    global _RECEIVER  # noqa: PLW0603  (one server per process: starting one per input would dominate the run)
    with _RECEIVER_LOCK:
        if _RECEIVER is None:
            _RECEIVER = ReceiverUnderTest()
        return _RECEIVER


def close_receiver() -> None:
    """Stop the receiver under test, if one was started, and close its spool."""
    global _RECEIVER  # noqa: PLW0603
    with _RECEIVER_LOCK:
        if _RECEIVER is not None:
            _RECEIVER.receiver.stop()
            _RECEIVER.spool.close()
            _RECEIVER = None


def frame(data: bytes) -> bytes:
    """The request to send: ``Content-Length: *`` replaced by the length of the body after the head."""
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        return data
    lines = head.split(b"\r\n")
    for index, line in enumerate(lines):
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"content-length" and value.strip() == b"*":
            lines[index] = name + b": " + str(len(body)).encode()
    return b"\r\n".join(lines) + separator + body


def _route_of(head: bytes) -> str | None:
    """The MessageType a canonical request line POSTs to, or None for any other line."""
    for message_type, path in ROUTES.items():
        if head.startswith(f"POST {path}/{SECRET} HTTP/1.1\r\n".encode()):
            return message_type
    return None


def _is_canonical(head: bytes, length: int) -> bool:
    """A well-formed push head: the route's request line, JSON UTF-8 content type, one true length."""
    lines = head.split(b"\r\n")
    # Control characters (a bare CR splits a header line in two for the standard library) make a head
    # invalid (RFC 9112 2.2, 5), whatever a refusal of it then says.
    if any((byte < 32 and byte != 9) or byte == 127 for line in lines for byte in line):
        return False
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or name != name.strip() or name.lower() in headers:
            return False
        headers[name.lower()] = value.strip()
    return (
        _route_of(head) is not None
        and headers.get(b"content-type", b"").lower() in (b"application/json", b"application/json;charset=utf-8")
        and headers.get(b"content-length", b"") == str(length).encode()
        and headers.keys() <= {b"host", b"content-type", b"content-length", b"user-agent"}
    )


def check_push_http(data: bytes) -> None:
    """The push receiver over a real socket: every request is answered, none raises, nothing is lost.

    * No request makes the handler raise (the server's ``handle_error``) or leaves the client unanswered.
    * Every answer is HTTP; a 200 means exactly the body sent is spooled, and its spooled body decodes
      element by element (the worker's promise: only a whole body it cannot parse becomes one dead letter).
    * A well-formed push (the route, JSON content type, true length) whose body is a JSON array within the
      limits is accepted: refusing it makes Alibaba drop its good receipts after three retries (reference 5).
    """
    under_test = receiver()
    request = frame(data)
    under_test.take_spooled()
    del under_test.errors[:]
    answer = under_test.exchange(request)
    errors = list(under_test.errors)
    assert not errors, f"the push handler raised {errors[0]!r}"
    # A request line without an HTTP/1.x version is answered as HTTP/0.9 is: a body without a status line.
    if re.match(rb"[^ \r\n]+ [^ \r\n]+ HTTP/1\.[01]\r\n", request):
        assert answer.startswith(b"HTTP/1."), f"not an HTTP/1 answer: {answer[:60]!r}"
    spooled = under_test.take_spooled()
    statuses = [line.split(b" ")[1] for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.")]
    head, _, body = request.partition(b"\r\n\r\n")
    # An empty array is answered 200 with nothing to store.
    assert len(spooled) <= statuses.count(b"200"), f"{len(spooled)} spooled for answers {statuses}"
    for route, stored in spooled:
        message_type = route.removeprefix("push:")
        try:
            results = decode_push(message_type, stored, route=route)
        except DecodeError as exc:
            raise AssertionError(f"an acknowledged push does not decode element by element: {exc.reason}") from None
        assert results, "an acknowledged push with no receipts in it"
    message_type = _route_of(head)
    if message_type is None or not _is_canonical(head, len(body)) or len(body) > under_test.config.max_body_bytes:
        return
    try:
        elements = decode_push(message_type, body)
    except DecodeError:
        return
    # A byte order mark is not JSON (RFC 8259 8.1): the decoders forgive one, the receiver need not.
    if body.lstrip(b" \t\r\n")[:1] == b"[" and 0 < len(elements) <= under_test.config.max_items:
        assert statuses[:1] == [b"200"], f"a well-formed push of {len(elements)} receipts was refused: {answer[:200]!r}"


# --- configuration ---------------------------------------------------------------------------------


MAX_CONFIG_VALUES: Final = 100_000
"""Values a configuration may hold once its aliases are expanded; past it, loading is a denial of service."""


def check_config(data: bytes) -> None:
    """``load_config`` on a YAML file: a ConfigError naming the file, or a Config the daemon can use.

    Never a traceback (the daemon would exit 1 and restart in a loop instead of exiting 2 with the key).
    A Config it returns has only finite numbers and ports that can be bound, came from a file that gives
    no key twice (the second one would silently win), and does not expand its aliases past
    :data:`MAX_CONFIG_VALUES` values (an alias bomb costs seconds and hundreds of MB before it is refused).
    """
    duplicate, values = _yaml_shape(data)
    with tempfile.NamedTemporaryFile(dir=_scratch(), suffix=".yaml") as file:
        file.write(data)
        file.flush()
        try:
            config: Config | ConfigError = load_config(file.name)
        except ConfigError as exc:
            config = exc
    if isinstance(config, ConfigError):
        assert config.source == file.name
        assert str(config).startswith(file.name)
        return
    assert duplicate is None, f"a key given twice was accepted (the last one silently wins): {duplicate}"
    assert values <= MAX_CONFIG_VALUES, f"a configuration of {values} values once its aliases expand was accepted"
    _check_usable(config.masked())


def _check_usable(value: Any, path: str = "") -> None:
    """Every number is finite and every ``listen`` port fits in 16 bits: what the daemon will bind and wait on."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_usable(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_usable(item, f"{path}[{index}]")
    elif isinstance(value, float):
        assert math.isfinite(value), f"{path} was accepted as {value}"
    elif isinstance(value, str) and path.endswith("listen"):
        port = int(value.rpartition(":")[2])
        assert port <= 65535, f"{path} was accepted with port {port}"


def _yaml_shape(data: bytes) -> tuple[str | None, int]:
    """A key given twice in one mapping (or None), and how many values the document holds with aliases expanded.

    Both come from PyYAML's node graph, in which an alias is the anchored node itself, so the size is
    counted once per node (a recursive anchor counts as unbounded) and nothing is expanded.
    """
    try:
        # libyaml's composer when PyYAML has it: the pure-Python one costs as much as the load under test.
        root = yaml.compose(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (yaml.YAMLError, ValueError, RecursionError):
        return None, 0
    if root is None:
        return None, 0
    sizes: dict[int, int] = {}
    duplicate: str | None = None

    def size(node: yaml.Node, active: frozenset[int]) -> int:
        nonlocal duplicate
        if id(node) in active:
            return MAX_CONFIG_VALUES + 1
        if id(node) in sizes:
            return sizes[id(node)]
        total = 1
        inner = active | {id(node)}
        if isinstance(node, yaml.MappingNode):
            seen: set[tuple[str, str]] = set()
            for key, item in node.value:
                if isinstance(key, yaml.ScalarNode):
                    spelled = (key.tag, key.value)
                    if spelled in seen and duplicate is None:
                        duplicate = f"{key.value!r} on line {key.start_mark.line + 1}"
                    seen.add(spelled)
                total += size(key, inner) + size(item, inner)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item, inner) for item in node.value)
        sizes[id(node)] = total = min(total, MAX_CONFIG_VALUES + 1)
        return total

    try:
        values = size(root, frozenset())
    except RecursionError:
        return duplicate, MAX_CONFIG_VALUES + 1
    return duplicate, values


# --- dead-letter replay ----------------------------------------------------------------------------

_REPLAY_CONFIG: Final = {
    "sinks": {"recording": {"type": "file", "path": "/nonexistent/recording.jsonl"}},
    "dead_letter": {"type": "file", "path": "/nonexistent/dead-letter.jsonl"},
    "queues": [
        {"message_type": message_type, "queue_name": f"Alicom-Queue-1-{message_type}", "sinks": ["recording"]}
        for message_type in MESSAGE_TYPES
        if message_type != "MnsCardTemplate"
    ],
}


@functools.cache
def _replay_config() -> Config:
    return parse_config(_REPLAY_CONFIG, "replay.yaml")


def check_replay(data: bytes) -> None:
    """``replay_dead_letters`` on a dead-letter file: ValueError for a bad line, else every letter accounted.

    Each letter read is replayed into a recording sink or kept, with its raw body, among the remaining ones;
    a DecodeError never escapes (a letter that still does not decode stays a letter).
    """
    config = _replay_config()
    recording = RecordingSink("recording")
    build: Callable[[str], RecordingSink] = lambda name: recording  # noqa: E731
    with tempfile.NamedTemporaryFile(dir=_scratch(), suffix=".jsonl") as file:
        file.write(data)
        file.flush()
        try:
            letters = list(read_dead_letters(file.name))
        except ValueError as exc:
            refusal = str(exc)
        else:
            refusal = None
            report = replay_dead_letters(Path(file.name), config, build_sink=build)
    if refusal is not None:
        assert f"{file.name}: line " in refusal, f"a bad dead-letter file refused without its line: {refusal}"
        return
    assert report.read == len(letters)
    assert report.replayed + len(report.remaining) == report.read, "a dead letter vanished during replay"
    assert report.still_failing == len(report.remaining)
    raws = {letter.raw for letter in letters}
    assert all(letter.raw in raws for letter in report.remaining), "a remaining letter lost its raw body"


# --- shared -----------------------------------------------------------------------------------------

_SCRATCH: str | None = None


_SCRATCH_PREFIX: Final = "mns-consumer-fuzz-"


def _scratch_base() -> str:
    # In memory where there is /dev/shm: the checks write a file per input, and the spool fsyncs.
    shm = "/dev/shm"  # noqa: S108  (a private folder is made inside it)
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


def _scratch() -> str:
    """A private scratch folder of this process, named after its pid (see :func:`remove_stale_scratch`)."""
    global _SCRATCH  # noqa: PLW0603  (made once per process)
    if _SCRATCH is None:
        _SCRATCH = tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{os.getpid()}-", dir=_scratch_base())
        atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)
    return _SCRATCH


def remove_stale_scratch() -> None:
    """Remove the scratch folders of fuzz processes that are gone.

    libFuzzer ends a run with ``exit()`` from C, so Python's ``atexit`` never removes the folder of a
    ``make fuzz`` run; the next run does.
    """
    for folder in Path(_scratch_base()).glob(f"{_SCRATCH_PREFIX}*"):
        pid = folder.name.removeprefix(_SCRATCH_PREFIX).partition("-")[0]
        if pid.isascii() and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


KNOWN_BUGS: Final[dict[str, tuple[tuple[str, str, str], ...]]] = {
    # target -> (exception type, text in its message, the branch fixing it): bugs being fixed elsewhere while
    # the fuzzer runs. ``make fuzz`` notes them once and goes on looking for new ones; drop an entry once its
    # branch is merged, so that the fuzzer stops on it again. None is open.
}


def known_bug(target: str, error: BaseException) -> tuple[str, str] | None:
    """(the branch fixing it, its signature) if an error of a target is a known bug, or None for a new one."""
    for type_name, text, branch in KNOWN_BUGS.get(target, ()):
        if type(error).__name__ == type_name and text in str(error):
            return branch, f"{type_name}: {text}" if text else type_name
    return None


CHECKS: Final[dict[str, Callable[[bytes], None]]] = {
    "mns_body": check_mns_body,
    "push_body": check_push_body,
    "push_http": check_push_http,
    "config": check_config,
    "replay": check_replay,
}
"""Target name (and corpus folder name) -> its check."""
