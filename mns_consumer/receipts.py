"""Decoders of every supported Alicom receipt body into one normalized :class:`Receipt`, and its dedupe key.

:func:`decode_mns_body` takes an MNS body, base64 or already decoded (reference 3.6, pitfall 1);
:func:`decode_push` an HTTP push array (reference 5), each element on its own; :func:`decode_object` a
parsed object (backfill). Every failure is a :class:`~mns_consumer.errors.DecodeError` naming the field
and why, never quoting a value (receipts hold phone numbers; reasons reach logs and dead letters).

Normalization (reference 4, 4.9) is what docs/receipts.md says: times become aware datetimes (mainland
ones Beijing time), loose spellings of numbers, ids and flags are accepted, unmapped fields kept in ``extra``.

A dedupe key is the SHA-256 of the compact ASCII JSON ``[family, *identity]`` (:data:`IDENTITY_FIELDS`),
values normalized so no spelling, encoding or source changes it. ``report_time`` and ``err_code`` stay
out so a backfill dedupes against the MNS receipt; ``render_status`` is the numeric code; ``tmp_ops`` is
the sorted ``[vendorCode, state]`` pairs of ``tmpOps`` (absent: none), so vendor order and ``desc`` do not count.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from functools import lru_cache
from json.encoder import encode_basestring_ascii
from typing import Any, Final, TypeVar

from mns_consumer.errors import DecodeError
from mns_consumer.opt_out import DEFAULT_MATCHER
from mns_consumer.outcomes import classify
from mns_consumer.receipt_model import Kind, Receipt, Source, Status

__all__ = [
    "BEIJING",
    "IDENTITY_FIELDS",
    "JSON_DECODER",
    "MESSAGE_TYPES",
    "Receipt",
    "decode_mns_body",
    "decode_object",
    "decode_push",
    "dedupe_key",
]

IDENTITY_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "SmsReport": ("biz_id", "phone_number", "status"),
    "SmsReport/international": ("message_id", "to", "status"),
    "DypnsSmsVerifyReport": ("biz_id", "phone_number", "status"),
    "GlobeSmsReport": ("message_id", "to", "status"),
    "SmsUp": ("phone_number", "sequence_id", "send_time", "dest_code"),
    "SignSmsReport": ("sign_name", "order_id", "sign_status"),
    "TemplateSmsReport": ("template_code", "order_id", "template_status"),
    "MnsCardVender": ("mobile", "out_id", "render_status"),
    "MnsCardTemplate": ("template_code", "approval_status", "tmp_ops"),
}
"""Dedupe key family -> the names of its identity values, in key order (see the module docstring)."""

BEIJING: Final = timezone(timedelta(hours=8), "Asia/Shanghai")
"""Alibaba's platform time zone, in which mainland receipt times are written without an offset."""

_T = TypeVar("_T")
_INTERNATIONAL_KEYS = ("To", "MessageId", "Status")
_MAINLAND_KEYS = ("biz_id", "phone_number")
_REVIEW_STATUSES: Mapping[str, Status] = {"approving": "approving", "approved": "approved", "rejected": "rejected"}


def dedupe_key(family: str, **identity: str | datetime | None) -> str:
    """The dedupe key of a receipt from its identity values (see :data:`IDENTITY_FIELDS` and docs/receipts.md).

    For code that builds receipts from other data (backfill), with the values normalized as the decoders
    do (stripped text, numbers as decimal strings, :data:`Status` values, aware datetimes), e.g.
    ``dedupe_key("SmsReport", biz_id="812^0", phone_number="13900001111", status="delivered")``.
    Returns 64 lower-case hex digits.

    Raises:
        ValueError: If the family is unknown, the names are not exactly its identity fields, or a
            datetime is naive. These are programming errors, not bad receipts.
    """
    names = IDENTITY_FIELDS.get(family)
    if names is None:
        raise ValueError(f"unknown dedupe family {family!r}; known: {', '.join(IDENTITY_FIELDS)}")
    if set(identity) != set(names):
        raise ValueError(f"{family} identity is {', '.join(names)}; got {', '.join(sorted(identity)) or 'nothing'}")
    for name in names:
        value = identity[name]
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError(f"{family} identity {name} must be timezone-aware")
    return _key(family, [identity[name] for name in names])


def _key(family: str, values: Iterable[str | datetime | None]) -> str:
    """:func:`dedupe_key` of identity values already checked and in key order (the decoders' own call)."""
    parts = [encode_basestring_ascii(family)]
    for value in values:
        text = value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value
        # What json.dumps(ensure_ascii=True, compact) writes for strings and nulls, without its set-up on
        # every call; ASCII escapes keep any text (lone surrogates included) encodable.
        parts.append("null" if text is None else encode_basestring_ascii(text))
    canonical = "[" + ",".join(parts) + "]"
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def decode_mns_body(
    message_type: str, body: bytes | str, *, queue: str | None = None, source: Source = "mns"
) -> Receipt:
    """Decode one MNS message body of the given MessageType; ``raw`` is the body as given (text as UTF-8).

    The body may be the base64 text Alibaba enqueues (the SDK with ``set_encoding(False)``) or the JSON
    bytes the SDK already decoded (its default): a body that parses as a JSON object is used as it is,
    anything else must be strict base64 of UTF-8 JSON (reference 3.6, pitfall 1).

    Raises:
        DecodeError: If the type is unknown, the body is neither a JSON object nor base64 of one, or
            the object is not a valid receipt of that type.
    """
    # surrogatepass: a str body with lone surrogates must still be kept, byte for byte, for dead letters.
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
    return _guarded(message_type, raw, lambda: _decode_mns_body(message_type, raw, queue, source))


def decode_object(
    message_type: str, obj: Mapping[str, Any], *, raw: bytes, source: Source, queue: str | None
) -> Receipt:
    """Decode one receipt JSON object of the given MessageType, parsed from ``raw``.

    Raises:
        DecodeError: If the type is unknown, ``obj`` is not a JSON object, a required field is missing
            or of an impossible type, or a value (status, time, count) cannot be understood.
    """
    return _guarded(message_type, raw, lambda: _decode_object(message_type, obj, raw, source, queue))


def decode_push(message_type: str, payload: bytes, *, route: str | None = None) -> list[Receipt | DecodeError]:
    """Decode one HTTP push body: a JSON array of receipt objects (a single object is accepted too).

    Each element decodes on its own, with ``source="push"``, ``queue=route`` and, as ``raw``, the bytes of
    that element exactly as they were in the body, so a dead letter holds exactly the element that failed
    and replaying it decodes what Alibaba sent (re-encoding would turn ``1e400`` into ``Infinity`` and a
    lone ``\\ud800`` escape into replacement characters). ``message_type`` is the route's (pushes carry
    none, reference 5). Returns one result per element, in order: its receipt or its DecodeError.

    Raises:
        DecodeError: If the type is unknown, or the payload is not UTF-8 JSON, or is JSON but neither an
            array nor an object.
    """
    raw = bytes(payload)
    elements = _guarded(message_type, raw, lambda: _push_elements(message_type, raw))
    results: list[Receipt | DecodeError] = []
    for element, element_raw in elements:
        try:
            results.append(decode_object(message_type, element, raw=element_raw, source="push", queue=route))
        except DecodeError as exc:
            results.append(exc)
    return results


def _guarded(message_type: str, raw: bytes, decode: Callable[[], _T]) -> _T:
    """Run a decoder of a known MessageType so that whatever it raises reaches the caller as a DecodeError."""
    if message_type not in _DECODERS:
        raise DecodeError(
            message_type, "", f"unknown message type {message_type!r}; known: {', '.join(MESSAGE_TYPES)}", raw
        )
    try:
        return decode()
    except DecodeError:
        raise
    except RecursionError:
        raise DecodeError(message_type, "", "body is nested too deeply", raw) from None
    # A decoder bug must not crash-loop a poller on one message: dead-lettered, it can be replayed once fixed.
    # The exception's text may quote the body, so only its type goes into the reason (the chain keeps it).
    except Exception as exc:
        raise DecodeError(message_type, "", f"internal decoder error ({type(exc).__name__})", raw) from exc


def _decode_mns_body(message_type: str, raw: bytes, queue: str | None, source: Source) -> Receipt:
    fast = _strict_base64_json(raw)
    if fast is not None:
        return _decode_object(message_type, fast[0], raw, source, queue, plain=fast[1])
    if not raw.strip():
        raise DecodeError(message_type, "", "body is empty", raw)
    try:
        direct = _load_json(message_type, raw, raw)
    except DecodeError as exc:
        direct_error, is_json = exc, False
    else:
        if isinstance(direct, dict):
            return _decode_object(message_type, direct, raw, source, queue)
        direct_error = DecodeError(message_type, "", f"body is a JSON {_json_type(direct)}, not an object", raw)
        is_json = True
    try:
        # Base64 never contains braces, so a body that is not a JSON object is taken as base64; whitespace
        # (line wrapping, a trailing newline) is not part of base64 and is dropped before the strict check.
        decoded = base64.b64decode(b"".join(raw.split()), validate=True)
        obj = _load_json(message_type, decoded, raw)
    except (binascii.Error, ValueError, DecodeError) as exc:
        if is_json:
            raise direct_error from None
        if isinstance(exc, DecodeError):
            raise DecodeError(
                message_type, "", f"body is base64, but {exc.reason.removeprefix('body ')}", raw
            ) from None
        raise DecodeError(
            message_type, "", f"body is neither a JSON object nor base64 of one ({direct_error.reason})", raw
        ) from None
    if not isinstance(obj, dict):
        raise DecodeError(message_type, "", f"body is base64 of a JSON {_json_type(obj)}, not an object", raw)
    return _decode_object(message_type, obj, raw, source, queue)


def _push_elements(message_type: str, raw: bytes) -> list[tuple[Any, bytes]]:
    """Each element of a push body (an array, or one object) with its bytes, sliced from the body."""
    with contextlib.suppress(ValueError, IndexError):  # UnicodeDecodeError is a ValueError
        elements = _scan_elements(raw.decode("utf-8-sig"))
        if elements is not None:
            return elements
    # Not an array or object of valid JSON: the whole-body parse words why.
    data = _load_json(message_type, raw, raw)
    raise DecodeError(message_type, "", f"push body is a JSON {_json_type(data)}, not an array or object", raw)


def _scan_elements(text: str) -> list[tuple[Any, bytes]] | None:
    """Parse a JSON array (or object) element by element with ``raw_decode``, which says where each ends.

    UTF-8 text re-encodes to exactly the bytes it was decoded from, so each slice is the element as sent.
    None when the text is another JSON value; ValueError (or IndexError) when it is not JSON.
    """
    start = _skip_space(text, 0)
    if text[start] == "{":
        element, end = JSON_DECODER.raw_decode(text, start)
        if _skip_space(text, end) != len(text):
            raise ValueError("extra data after the object")
        return [(element, text[start:end].encode("utf-8"))]
    if text[start] != "[":
        return None
    elements: list[tuple[Any, bytes]] = []
    position = _skip_space(text, start + 1)
    more = text[position] != "]"
    while more:
        element, end = JSON_DECODER.raw_decode(text, position)
        elements.append((element, text[position:end].encode("utf-8")))
        position = _skip_space(text, end)
        more = text[position] == ","
        if more:
            position = _skip_space(text, position + 1)
    if text[position] != "]" or _skip_space(text, position + 1) != len(text):
        raise ValueError("expected an array's elements separated by , and closed by ]")
    return elements


def _skip_space(text: str, position: int) -> int:
    """The first position from ``position`` on that is not JSON whitespace."""
    while position < len(text) and text[position] in " \t\n\r":
        position += 1
    return position


def _strict_base64_json(raw: bytes) -> tuple[dict[str, Any], bool] | None:
    """The common case, taken first: a body that is unwrapped base64 of a UTF-8 JSON object.

    Returns the object and whether it is known to be plain (see below), or None for anything else,
    which takes the full path of :func:`_decode_mns_body`: that one also words the error. Strict
    ``a2b_base64`` accepts only what ``b64decode(validate=True)`` accepts, and decodes it the same.
    """
    try:
        decoded = binascii.a2b_base64(raw, strict_mode=True)
        text = decoded.decode("utf-8")
        obj = _FINITE_JSON_DECODER.decode(text[1:] if text[:1] == "\ufeff" else text)
    except (ValueError, RecursionError):  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None
    if type(obj) is not dict:
        return None
    # The decoder refused NaN and out-of-range numbers; only a \uD8xx-\uDFxx escape can still yield text
    # that is not Unicode, so the costly re-encoding check runs only then.
    return obj, b"\\ud" not in decoded and b"\\uD" not in decoded


def _load_json(message_type: str, data: bytes, raw: bytes) -> Any:
    """Parse UTF-8 JSON (a byte order mark is tolerated), refusing NaN and Infinity, which JSON lacks."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DecodeError(message_type, "", f"body is not UTF-8 (byte {exc.start})", raw) from None
    try:
        return JSON_DECODER.decode(text)
    except RecursionError:
        raise DecodeError(message_type, "", "JSON is nested too deeply", raw) from None
    except ValueError as exc:
        raise DecodeError(message_type, "", f"body is not valid JSON ({_short(str(exc))})", raw) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    # json.loads reads 1e400 as inf, which no sink can write back as JSON (see _FINITE_JSON_DECODER).
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {_short(text, 40)} is out of range")
    return value


# Built once (json.loads with options builds one per call, microseconds per receipt). The fast path's also
# refuses numbers beyond the float range, so such a body takes the full path, whose plain-data check words
# the refusal; push payloads use the other, so that such a number costs only its own element.
JSON_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)
"""Parses JSON, refusing ``NaN`` and ``Infinity`` (not JSON); the push receiver checks bodies with it too."""
_FINITE_JSON_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _decode_object(
    message_type: str, obj: Mapping[str, Any], raw: bytes, source: Source, queue: str | None, *, plain: bool = False
) -> Receipt:
    """Decode one JSON object; ``plain`` says it is known to hold only JSON data that encodes as UTF-8."""
    if type(obj) is not dict and not isinstance(obj, Mapping):
        raise DecodeError(message_type, "", f"body is a JSON {_json_type(obj)}, not an object", raw)
    if not plain:
        _check_plain(message_type, obj, raw)
    fields = _Fields(message_type, obj, raw, source, queue)
    decoder = _DECODERS[message_type]
    keys = obj.keys()
    # The international site's SmsReport is told by its PascalCase keys (reference 4.7).
    if decoder is _MAINLAND_REPORT and not keys.isdisjoint(_INTERNATIONAL_KEYS) and keys.isdisjoint(_MAINLAND_KEYS):
        decoder = _INTERNATIONAL_REPORT
    return decoder(fields)


def _check_plain(message_type: str, obj: Mapping[str, Any], raw: bytes) -> None:
    try:
        # Sinks write receipts as UTF-8 JSON; a value they could not write must fail here, not there.
        json.dumps(obj, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise DecodeError(message_type, "", "body contains a lone surrogate escape (not valid Unicode)", raw) from None
    except (TypeError, ValueError) as exc:
        raise DecodeError(message_type, "", f"body is not plain JSON data ({_short(str(exc))})", raw) from None


@dataclasses.dataclass(slots=True, repr=False, eq=False)
class _Fields:
    """One body being decoded: typed access to its fields (no repr: bodies hold phone numbers).

    Every accessor takes the field's spellings in order of preference and uses the first one present
    and not null.
    """

    message_type: str
    obj: Mapping[str, Any]
    raw: bytes
    source: Source
    queue: str | None

    def error(self, field: str, reason: str) -> DecodeError:
        """A DecodeError about one field of this body."""
        return DecodeError(self.message_type, field, reason, self.raw)

    def _lookup(self, names: tuple[str, ...]) -> tuple[str, Any]:
        get = self.obj.get
        for name in names:
            value = get(name)
            if value is not None:
                return name, value
        return names[0], None

    def _absent(self, names: tuple[str, ...], null: str = "required field is null") -> DecodeError:
        present = any(name in self.obj for name in names)
        return self.error(names[0], null if present else "required field is missing")

    def text(self, *names: str) -> str | None:
        """An optional text field; numbers are accepted as their decimal text, empty reads as absent."""
        name, value = self._lookup(names)
        if value is None:
            return None
        text = value if type(value) is str else _as_text(value)
        if text is None:
            raise self.error(name, f"expected a string, got {_kind(value)}")
        return text or None

    def identity(self, *names: str) -> str:
        """A required identity field as stripped text."""
        name, value = self._lookup(names)
        if value is None:
            raise self._absent(names)
        text = value if type(value) is str else _as_text(value)
        if text is None:
            raise self.error(name, f"expected a string or an integer, got {_kind(value)}")
        text = text.strip()
        if not text:
            raise self.error(name, "required field is empty")
        return text

    def number(self, *names: str) -> str:
        """A required identity field that may be a number: ``"0042"`` reads as ``"42"``."""
        text = self.identity(*names)
        # int() refuses longer digit strings (CPython's conversion limit); such a string is kept as text.
        return str(int(text)) if text.isascii() and text.isdigit() and len(text) <= 4300 else text

    def code(self, *names: str) -> int:
        """A required integer status code, given as a number or a decimal string (reference pitfall 17)."""
        name, value = self._lookup(names)
        if value is None:
            raise self._absent(names)
        code = _as_code(value)
        if code is None:
            raise self.error(
                name, f"expected an integer code (a number or a string of digits), got {_kind(value, _OTHER_FORM)}"
            )
        return code

    def flag(self, name: str) -> bool:
        """A required boolean: ``true``/``false``, their strings in any case, or 1/0 (reference 4.9)."""
        value = self.obj.get(name)
        if value is True or value is False:
            return value
        if value is None:
            raise self._absent((name,))
        if isinstance(value, int) and value in (0, 1):
            return value == 1
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return value.strip().lower() in ("true", "1")
        raise self.error(
            name,
            "expected true or false (or their strings in any case, or 1 or 0), "
            f"got {_kind(value, _OTHER_FORM, integer='an integer other than 0 or 1')}",
        )

    def time(self, *names: str) -> datetime | None:
        """An optional time as an aware datetime (Beijing time when the text carries no offset)."""
        name, value = self._lookup(names)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.error(name, f"expected a time string, got {_kind(value)}")
        parsed = _parse_time(value)
        if parsed is None:
            raise self.error(name, f"{_EXPECTED_TIME}, got {_kind(value, _OTHER_FORM)}")
        if not 1 < parsed.year < 9999:
            # Shifting to UTC, as dedupe keys and sinks do, overflows only on the first or last day datetime
            # holds (an offset is less than a day): 0001-01-01 00:00:00 Beijing time, for one.
            try:
                parsed.astimezone(UTC)
            except OverflowError:
                raise self.error(name, _OUT_OF_RANGE_TIME) from None
        return parsed

    def required_time(self, *names: str) -> datetime:
        """A required time (an identity field)."""
        parsed = self.time(*names)
        if parsed is None:
            raise self._absent(names, "required field is null or empty")
        return parsed

    def count(self, *names: str) -> int | None:
        """An optional non-negative count, given as a number or a decimal string (``sms_size: "1"``)."""
        name, value = self._lookup(names)
        if value is None or value == "":
            return None
        count = _as_code(value)
        if count is None:
            raise self.error(name, f"expected a non-negative integer, got {_kind(value, _OTHER_FORM)}")
        return count


def _coded(statuses: Mapping[int, Status]) -> Callable[[_Fields, str], Status]:
    """An accessor of a numeric status code mapped to its normalized status."""

    def status(fields: _Fields, name: str) -> Status:
        code = fields.code(name)
        if code not in statuses:
            known = ", ".join(f"{number} ({value})" for number, value in statuses.items())
            raise fields.error(name, f"unknown status code: expected one of {known}, got another integer")
        return statuses[code]

    return status


def _review_status(fields: _Fields, name: str) -> Status:
    """A review status word (``approving``, ``approved``, ``rejected``), in any case."""
    word = fields.identity(name).lower()
    if word not in _REVIEW_STATUSES:
        raise fields.error(
            name, f"unknown review status: expected one of {', '.join(_REVIEW_STATUSES)} (any case), got another string"
        )
    return _REVIEW_STATUSES[word]


def _canonical_tmp_ops(fields: _Fields, name: str) -> str:
    """``tmpOps`` as the compact JSON of its sorted ``[vendorCode, state]`` pairs."""
    ops = fields.obj.get(name)
    if ops is None:
        return "[]"
    if not isinstance(ops, list):
        raise fields.error(name, f"expected an array, got {_kind(ops)}")
    pairs: list[tuple[str, str]] = []
    for index, op in enumerate(ops):
        if not isinstance(op, Mapping):
            raise fields.error(f"{name}[{index}]", f"expected an object, got {_kind(op)}")
        vendor = _as_text(op.get("vendorCode"))
        state = _as_code(op.get("state"))
        if vendor is None or not vendor.strip():
            raise fields.error(
                f"{name}[{index}].vendorCode", f"expected a non-empty string, got {_kind(op.get('vendorCode'))}"
            )
        if state is None:
            raise fields.error(
                f"{name}[{index}].state", f"expected a non-negative integer, got {_kind(op.get('state'), _OTHER_FORM)}"
            )
        pairs.append((vendor.strip(), str(state)))
    return json.dumps(sorted(pairs), ensure_ascii=True, separators=(",", ":"))


_RECEIPT_ATTRIBUTES: Final = frozenset(item.name for item in dataclasses.fields(Receipt))


class _Format:
    """How one body shape becomes a Receipt, as data; called with its fields, it decodes them.

    ``reads`` are ``(key, accessor, body spellings)``, read in order, so the first bad field is the one
    reported. A key is a Receipt attribute, an identity value, or one of ``extra``, whose normalized
    value replaces the body's. A body field read into an attribute or ``extra`` is mapped; every other
    field (identity values kept under their own name included) stays in ``extra`` as received.
    ``identity`` names the keys of the dedupe key in order; ``family`` None means the MessageType.
    """

    def __init__(
        self,
        kind: Kind,
        identity: tuple[str, ...],
        *reads: tuple[str, Callable[..., Any], tuple[str, ...]],
        extra: tuple[str, ...] = (),
        family: str | None = None,
    ) -> None:
        self.kind, self.family, self.identity, self.reads, self.extra = kind, family, identity, reads, extra
        self.mapped = frozenset(
            name for key, _, names in reads if key in _RECEIPT_ATTRIBUTES or key in extra for name in names
        )
        self.attributes = tuple(key for key, _, _ in reads if key in _RECEIPT_ATTRIBUTES)

    def __call__(self, fields: _Fields) -> Receipt:
        values = {key: read(fields, *names) for key, read, names in self.reads}
        obj, mapped = fields.obj, self.mapped
        extra = {} if obj.keys() <= mapped else {key: value for key, value in obj.items() if key not in mapped}
        for key in self.extra:
            extra[key] = values[key]
        attributes = {key: values[key] for key in self.attributes}
        if self.kind == "delivery_report":
            outcome = classify(values["status"], values["error_code"])
            attributes["outcome_class"], attributes["retryable"] = outcome or (None, None)
        return Receipt(
            kind=self.kind,
            message_type=fields.message_type,
            source=fields.source,
            queue=fields.queue,
            raw=fields.raw,
            dedupe_key=_key(self.family or fields.message_type, [values[key] for key in self.identity]),
            extra=extra,
            **attributes,
        )


# SmsReport (reference 4.1); DypnsSmsVerifyReport shares its field set, not its dedupe family.
_MAINLAND_REPORT: Final = _Format(
    "delivery_report",
    ("biz_id", "phone_number", "status"),
    ("biz_id", _Fields.identity, ("biz_id",)),
    ("phone_number", _Fields.identity, ("phone_number",)),
    ("status", lambda fields, name: "delivered" if fields.flag(name) else "failed", ("success",)),
    ("error_code", _Fields.text, ("err_code",)),
    ("out_id", _Fields.text, ("out_id", "outId")),
    ("error_message", _Fields.text, ("err_msg",)),
    ("sent_at", _Fields.time, ("send_time",)),
    ("reported_at", _Fields.time, ("report_time",)),
    ("sms_parts", _Fields.count, ("sms_size",)),
)
# The international site's SmsReport (reference 4.7): PascalCase, Status 1/2/6, RFC 2822 dates.
_INTERNATIONAL_REPORT: Final = _Format(
    "delivery_report",
    ("message_id", "phone_number", "status"),
    ("message_id", _Fields.identity, ("MessageId",)),
    ("phone_number", _Fields.identity, ("To",)),
    ("status", _coded({1: "delivered", 2: "failed", 6: "expired"}), ("Status",)),
    ("error_code", _Fields.text, ("ErrorCode",)),
    ("out_id", _Fields.text, ("OutId", "out_id", "outId")),
    ("error_message", _Fields.text, ("ErrorDescription",)),
    ("sent_at", _Fields.time, ("SendDate",)),
    ("reported_at", _Fields.time, ("ReceiveDate",)),
    ("sms_parts", _Fields.count, ("SmsSize",)),
    family="SmsReport/international",
)
_DECODERS: Final[Mapping[str, Callable[[_Fields], Receipt]]] = {
    "SmsReport": _MAINLAND_REPORT,
    # GlobeSmsReport (reference 4.6): status "1" delivered or "2" failed, Beijing times.
    "GlobeSmsReport": _Format(
        "delivery_report",
        ("message_id", "phone_number", "status"),
        ("message_id", _Fields.identity, ("message_id",)),
        ("phone_number", _Fields.identity, ("to",)),
        ("status", _coded({1: "delivered", 2: "failed"}), ("status",)),
        ("error_code", _Fields.text, ("error_code",)),
        ("out_id", _Fields.text, ("out_id", "outId")),
        ("error_message", _Fields.text, ("error_description",)),
        ("sent_at", _Fields.time, ("send_date",)),
        ("reported_at", _Fields.time, ("receive_date",)),
    ),
    # SmsUp (reference 4.2): a reply; ``sequence_id`` may be a number or a string.
    "SmsUp": _Format(
        "reply",
        ("phone_number", "sequence_id", "sent_at", "dest_code"),
        ("phone_number", _Fields.identity, ("phone_number",)),
        ("sequence_id", _Fields.number, ("sequence_id",)),
        ("dest_code", _Fields.identity, ("dest_code",)),
        ("sent_at", _Fields.required_time, ("send_time",)),
        ("content", _Fields.text, ("content",)),
        ("status", lambda fields: "received", ()),
        # The default keywords; the daemon re-reads the reply with the configured opt_out matcher.
        ("opt_out", lambda fields, name: DEFAULT_MATCHER(fields.text(name)), ("content",)),
        ("sign_name", _Fields.text, ("sign_name",)),
        extra=("sequence_id",),
    ),
    # SignSmsReport (reference 4.3): a signature review step; ``order_id`` or ``orderId`` by mode.
    "SignSmsReport": _Format(
        "sign_review",
        ("sign_name", "order_id", "status"),
        ("sign_name", _Fields.identity, ("sign_name",)),
        ("order_id", _Fields.identity, ("order_id", "orderId")),
        ("status", _review_status, ("sign_status",)),
        ("reason", _Fields.text, ("reason",)),
        ("reported_at", _Fields.time, ("create_date",)),
        extra=("order_id",),
    ),
    # TemplateSmsReport (reference 4.4): a template review step; its content keeps ``${var}`` holes.
    "TemplateSmsReport": _Format(
        "template_review",
        ("template_code", "order_id", "status"),
        ("template_code", _Fields.identity, ("template_code",)),
        ("order_id", _Fields.identity, ("order_id", "orderId")),
        ("status", _review_status, ("template_status",)),
        ("reason", _Fields.text, ("reason",)),
        ("content", _Fields.text, ("template_content",)),
        ("reported_at", _Fields.time, ("create_date",)),
        extra=("order_id",),
    ),
    # MnsCardVender (reference 4.5): a card render result.
    "MnsCardVender": _Format(
        "card_render",
        ("phone_number", "out_id", "render_status"),
        ("phone_number", _Fields.identity, ("mobile", "phone_number")),
        ("out_id", _Fields.identity, ("outId", "out_id")),
        ("render_status", lambda fields, name: str(fields.code(name)), ("render_status",)),
        # 0 is success, every other code a failure.
        ("status", lambda fields, name: "rendered" if fields.code(name) == 0 else "failed", ("render_status",)),
        ("reason", _Fields.text, ("desc",)),
    ),
    # MnsCardTemplate (reference 4.5): a card template review summed over phone vendors (``tmpOps``).
    "MnsCardTemplate": _Format(
        "card_template_review",
        ("template_code", "status", "tmp_ops"),
        ("template_code", _Fields.identity, ("template_code",)),
        ("status", _coded({0: "approving", 1: "approved", 2: "rejected"}), ("approval_status",)),
        ("tmp_ops", _canonical_tmp_ops, ("tmpOps",)),
        ("reason", _Fields.text, ("desc",)),
    ),
    "DypnsSmsVerifyReport": _MAINLAND_REPORT,
}

MESSAGE_TYPES: Final[tuple[str, ...]] = tuple(_DECODERS)
"""The MessageTypes this module decodes; any other is rejected with this list in the reason."""


def _as_text(value: Any) -> str | None:
    """A JSON scalar as text: strings as they are, integers (also integral floats) in decimal; else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return None


def _as_code(value: Any) -> int | None:
    """A non-negative integer given as a number or a decimal string; None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        # A status code or segment count has a handful of digits; more is not a code.
        if not (text.isascii() and text.isdigit() and len(text) <= 18):
            return None
        value = int(text)
    if isinstance(value, int) and value >= 0:
        return value
    return None


# Receipts of one burst share their seconds; datetimes are immutable, so receipts may share them.
@lru_cache(maxsize=256)
def _parse_time(value: str) -> datetime | None:
    """A receipt time as an aware datetime, or None when it is in none of the known formats."""
    text = value.strip()
    if len(text) == 19 and text.isascii() and text[4] + text[7] + text[10] + text[13] + text[16] == "-- ::":
        # yyyy-MM-dd HH:mm:ss, by far the most common form: fromisoformat (offset included) is faster than
        # strptime and replace(tzinfo=...), and agrees with them on every 19-character string of that shape.
        try:
            return datetime.fromisoformat(text + "+08:00")
        except ValueError:
            pass
    formats = ("%Y%m%d%H%M%S",) if len(text) == 14 and text.isascii() and text.isdigit() else ()
    for time_format in (*formats, "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, time_format).replace(tzinfo=BEIJING)
        except ValueError:
            continue
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # RFC 2822's "-0000" means UTC with no local zone known; parsedate_to_datetime leaves it naive.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _json_type(value: Any) -> str:
    """The JSON name of a value's type, for error reasons."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


_OTHER_FORM: Final = "a string of another form"
_EXPECTED_TIME: Final = "expected a time like 2024-01-01 00:00:00 (or yyyyMMddHHmmss, or an RFC 2822 date)"
_OUT_OF_RANGE_TIME: Final = (
    "expected a time that can be shifted to UTC (years 1 to 9999), got one outside that range once shifted to UTC"
)


def _kind(value: Any, string: str = "a string", *, integer: str | None = None) -> str:
    """What kind of JSON value ``value`` is, for the "got ..." of an error reason; never the value itself.

    ``string`` names a non-blank string (:data:`_OTHER_FORM` when one of the right form would have done),
    ``integer`` a non-negative integer when some integers would have done.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "a number out of range"
        if not value.is_integer():
            return "a number with a fraction"
    if isinstance(value, int | float):
        if value < 0:
            return "a negative integer"
        return integer or "an integer"
    if isinstance(value, str):
        if not value:
            return "an empty string"
        return "a blank string" if not value.strip() else string
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    # Only an object built in code (decode_object) holds anything else; its type name holds no data.
    return f"a {type(value).__name__}"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
